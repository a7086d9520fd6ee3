//! The `extern "C"` kernels of a source and their parameter sizes, so that the launcher can
//! find a kernel's family by name and refuse a launch whose argument list does not match the
//! kernel (instead of the driver reading past the parameter array).
//!
//! Reads what the kernels of kernels/*.cu use: `__launch_bounds__(…)` between `void` and the
//! name, and object-like macros standing for parameter lists (`CONV_GEOM_PARAMS`).
//!
//! crates/mep-kernels-emu/build.rs includes this file (`#[path]`) to list each family's kernels
//! in the emulation's generated tables, so it uses the standard library only.

use std::collections::HashMap;

/// The size in bytes of each parameter, in order (`None` for a type the parser does not
/// know), or `None` when the parameter list could not be read.
pub type ParamSizes = Option<Vec<Option<usize>>>;

/// One kernel's name and the size in bytes of each parameter, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelSig {
    /// The `extern "C"` name.
    pub name: String,
    /// Parameter sizes (`None` for a type this parser does not know), or `None` when the
    /// parameter list could not be read (an unknown macro, say): then nothing is checked.
    pub params: ParamSizes,
}

/// Every `__global__` kernel of `source`, in order of appearance.
pub fn kernels(source: &str) -> Vec<KernelSig> {
    let macros = object_macros(source);
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(i) = rest.find("__global__") {
        rest = &rest[i + "__global__".len()..];
        let mut s = rest.trim_start();
        let Some(after_void) = s.strip_prefix("void") else {
            continue;
        };
        s = after_void.trim_start();
        if let Some(lb) = s.strip_prefix("__launch_bounds__") {
            let Some(end) = balanced(lb.trim_start()) else { continue };
            s = lb.trim_start()[end..].trim_start();
        }
        let name_len = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        let (name, tail) = s.split_at(name_len);
        let tail = tail.trim_start();
        let Some(end) = balanced(tail) else { continue };
        if name.is_empty() {
            continue;
        }
        out.push(KernelSig {
            name: name.to_string(),
            params: param_list(&expand(&tail[1..end - 1], &macros)),
        });
        rest = &tail[end..];
    }
    out
}

/// The parameter sizes of kernel `kernel` in `source` (see [`KernelSig::params`]); `None` also
/// when there is no such kernel.
pub fn param_sizes(source: &str, kernel: &str) -> ParamSizes {
    kernels(source).into_iter().find(|k| k.name == kernel)?.params
}

/// For text starting with `(`, the length up to and including its matching `)`.
fn balanced(s: &str) -> Option<usize> {
    if !s.starts_with('(') {
        return None;
    }
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// `#define NAME body` macros without parameters (line continuations joined).
fn object_macros(source: &str) -> HashMap<String, String> {
    let joined = source.replace("\\\r\n", " ").replace("\\\n", " ");
    let mut macros = HashMap::new();
    for line in joined.lines() {
        let Some(def) = line.trim_start().strip_prefix("#define") else {
            continue;
        };
        let def = def.trim_start();
        let name_len = def
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(def.len());
        let (name, body) = def.split_at(name_len);
        if name.is_empty() || body.starts_with('(') {
            continue;
        }
        let body = body.split("//").next().unwrap_or("").trim();
        macros.insert(name.to_string(), body.to_string());
    }
    macros
}

/// `text` with macro names replaced by their bodies (nested macros too, a few levels deep).
fn expand(text: &str, macros: &HashMap<String, String>) -> String {
    let mut text = text.to_string();
    for _ in 0..8 {
        let mut out = String::with_capacity(text.len());
        let mut changed = false;
        let mut word = String::new();
        for c in text.chars().chain(std::iter::once(' ')) {
            if c.is_ascii_alphanumeric() || c == '_' {
                word.push(c);
                continue;
            }
            match macros.get(&word) {
                Some(body) => {
                    out += body;
                    changed = true;
                }
                None => out += &word,
            }
            word.clear();
            out.push(c);
        }
        out.pop();
        text = out;
        if !changed {
            break;
        }
    }
    text
}

/// Sizes of a comma-separated parameter list; `None` if a parameter is not a declaration.
fn param_list(params: &str) -> ParamSizes {
    let params = params.trim();
    if params.is_empty() || params == "void" {
        return Some(Vec::new());
    }
    params
        .split(',')
        .map(|decl| {
            // A lone word is an unexpanded macro or a nameless parameter: not understood.
            (decl.split_whitespace().count() >= 2 || decl.contains('*')).then(|| param_size(decl))
        })
        .collect()
}

/// The size of one parameter declaration (`const float* __restrict__ x`, `long long n`).
fn param_size(decl: &str) -> Option<usize> {
    if decl.contains('*') {
        return Some(8);
    }
    let words: Vec<&str> = decl
        .split_whitespace()
        .filter(|w| !matches!(*w, "const" | "unsigned"))
        .collect();
    // The last word is the parameter's name.
    let ty = words.get(..words.len().checked_sub(1)?)?.join(" ");
    match ty.as_str() {
        "long long" | "long long int" | "double" | "size_t" | "int64_t" | "uint64_t" => Some(8),
        "int" | "float" | "uint32_t" | "int32_t" => Some(4),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sizes_of_a_signature() {
        let src = "extern \"C\" __global__ void a_v1(long long n, int act, float s, const float* __restrict__ x,\n\
                   double* out, unsigned int u, Thing t) {}\n\
                   extern \"C\" __global__ void b_v1() {}";
        assert_eq!(
            param_sizes(src, "a_v1"),
            Some(vec![Some(8), Some(4), Some(4), Some(8), Some(8), Some(4), None])
        );
        assert_eq!(param_sizes(src, "b_v1"), Some(vec![]));
        assert_eq!(param_sizes(src, "a_v"), None);
    }

    #[test]
    fn reads_launch_bounds_and_parameter_macros() {
        let src = "#define T 256\n\
                   #define GEOM                 \\\n    int n, int c // geometry\n\
                   #define F(x) (x)\n\
                   extern \"C\" __global__ void __launch_bounds__(T)\n    k_v2(GEOM, const float* x) {}\n\
                   extern \"C\" __global__ void __launch_bounds__(F(T), 2) k2_v2(UNKNOWN, float* y) {}\n\
                   __device__ void helper(int a) {}";
        let ks = kernels(src);
        assert_eq!(ks.len(), 2);
        assert_eq!(ks[0].name, "k_v2");
        assert_eq!(ks[0].params, Some(vec![Some(4), Some(4), Some(8)]));
        assert_eq!(ks[1].name, "k2_v2");
        assert_eq!(ks[1].params, None, "an unknown macro is not guessed at");
    }

    #[test]
    fn every_kernel_in_the_sources_has_known_sizes() {
        for (family, _) in crate::sources::FAMILIES {
            let src = crate::sources::nvrtc_source(family).unwrap();
            let ks = kernels(&src);
            assert_eq!(
                ks.len(),
                src.matches("__global__").count(),
                "{family}: a kernel was not read"
            );
            for k in ks {
                let sizes = k
                    .params
                    .unwrap_or_else(|| panic!("{family}: parameters of {} not read", k.name));
                assert!(
                    sizes.iter().all(Option::is_some),
                    "{family}: {} has a parameter of unknown size: {sizes:?}",
                    k.name
                );
            }
        }
    }
}
