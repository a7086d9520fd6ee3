//! ptxas' resource report (`-Xptxas=-v`): registers, shared memory, stack and spills per
//! kernel, and which kernels are hot enough that a spill is a bug.
//!
//! The report reads, per entry function:
//!
//! ```text
//! ptxas info    : Compiling entry function 'fill_f32_v2' for 'sm_90'
//! ptxas info    : Function properties for fill_f32_v2
//! ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
//! ptxas info    : Used 32 registers, used 0 barriers, 512 bytes smem
//! ```

use std::collections::HashMap;

/// The NVRTC options that make the report: `-Xptxas=-v`, and `--no-cache`. NVRTC 12.9 and
/// later keep PTX and CUBINs in the CUDA driver's compute cache where a driver is installed,
/// and a family served from that cache skips ptxas, so its log has no report at all. That is
/// how kernels-check on an H200 (NVRTC 13.0) lost the reports of `reduce` for sm_90: the
/// conformance step had just compiled that family for the GPU's own architecture.
pub const REPORT_OPTIONS: &[&str] = &["-Xptxas=-v", "--no-cache"];

/// What ptxas reported for one kernel on one architecture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelResources {
    /// The target, e.g. `sm_90`.
    pub arch: String,
    /// The kernel's `extern "C"` name.
    pub kernel: String,
    /// Registers per thread.
    pub registers: u32,
    /// Static shared memory per block, in bytes.
    pub smem_bytes: u64,
    /// Stack frame per thread, in bytes.
    pub stack_bytes: u64,
    /// Bytes stored to local memory because registers ran out.
    pub spill_store_bytes: u64,
    /// Bytes loaded back from such spills.
    pub spill_load_bytes: u64,
}

impl KernelResources {
    /// Whether ptxas spilled registers to local memory.
    pub fn spills(&self) -> bool {
        self.spill_store_bytes > 0 || self.spill_load_bytes > 0
    }
}

/// `(base, version)` of a kernel name `<base>_v<N>`.
fn split_version(kernel: &str) -> Option<(&str, u32)> {
    let (base, v) = kernel.rsplit_once("_v")?;
    Some((base, v.parse().ok()?))
}

/// Whether `kernel` is hot among the kernels `all`: the version the fast kernel set runs,
/// that is the highest version of its base name (`axpy_f32_v2` beside `axpy_f32_v1`; a v1
/// that has no faster twin, like `neb_forces_f32_v1`, is its own fast version).
pub fn is_hot<S: AsRef<str>>(kernel: &str, all: &[S]) -> bool {
    let Some((base, version)) = split_version(kernel) else {
        return false;
    };
    !all.iter()
        .filter_map(|k| split_version(k.as_ref()))
        .any(|(b, v)| b == base && v > version)
}

/// The number just before `unit` in `line` (`"32 registers"` → 32 for `" registers"`).
fn number_before(line: &str, unit: &str) -> Option<u64> {
    let end = line.find(unit)?;
    let head = line[..end].trim_end();
    let start = head.rfind(|c: char| !c.is_ascii_digit()).map_or(0, |i| i + 1);
    head[start..].parse().ok()
}

/// The text between the first pair of single quotes after `from`.
fn quoted(line: &str, from: usize) -> Option<&str> {
    let rest = &line[from..];
    let a = rest.find('\'')? + 1;
    let b = a + rest[a..].find('\'')?;
    Some(&rest[a..b])
}

/// Parses a ptxas `-v` report into one row per entry function that has a "Used … registers"
/// line, in the order ptxas compiled them. Lines it does not know are skipped.
pub fn parse_log(log: &str) -> Vec<KernelResources> {
    let mut rows: Vec<KernelResources> = Vec::new();
    // Stack and spills come under "Function properties for <name>", for entries and for
    // non-inlined device functions alike, so they are joined to entries by name at the end.
    let mut frames: HashMap<(String, String), (u64, u64, u64)> = HashMap::new();
    let mut entry: Option<(String, String)> = None;
    let mut props_of: Option<String> = None;

    for line in log.lines() {
        if let Some(i) = line.find("Compiling entry function") {
            let kernel = quoted(line, i);
            let arch = line.rfind(" for ").and_then(|j| quoted(line, j));
            entry = kernel.zip(arch).map(|(k, a)| (k.to_string(), a.to_string()));
            props_of = None;
        } else if let Some(i) = line.find("Function properties for ") {
            props_of = Some(line[i + "Function properties for ".len()..].trim().to_string());
        } else if line.contains("bytes stack frame") {
            if let (Some(name), Some((_, arch))) = (&props_of, &entry) {
                let frame = (
                    number_before(line, " bytes stack frame").unwrap_or(0),
                    number_before(line, " bytes spill stores").unwrap_or(0),
                    number_before(line, " bytes spill loads").unwrap_or(0),
                );
                frames.insert((arch.clone(), name.clone()), frame);
            }
        } else if line.contains(" registers") && line.contains("Used ") {
            if let (Some((kernel, arch)), Some(registers)) = (&entry, number_before(line, " registers")) {
                rows.push(KernelResources {
                    arch: arch.clone(),
                    kernel: kernel.clone(),
                    registers: registers as u32,
                    smem_bytes: number_before(line, " bytes smem").unwrap_or(0),
                    stack_bytes: 0,
                    spill_store_bytes: 0,
                    spill_load_bytes: 0,
                });
            }
        }
    }
    for r in &mut rows {
        if let Some(&(stack, st, ld)) = frames.get(&(r.arch.clone(), r.kernel.clone())) {
            (r.stack_bytes, r.spill_store_bytes, r.spill_load_bytes) = (stack, st, ld);
        }
    }
    rows
}

/// `rows` as an aligned text table (a `hot` column marks [`is_hot`] kernels).
pub fn format_table(rows: &[KernelResources]) -> String {
    let names: Vec<&str> = rows.iter().map(|r| r.kernel.as_str()).collect();
    let header = [
        "arch",
        "kernel",
        "hot",
        "regs",
        "smem B",
        "stack B",
        "spill st B",
        "spill ld B",
    ];
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.arch.clone(),
                r.kernel.clone(),
                if is_hot(&r.kernel, &names) { "hot" } else { "" }.to_string(),
                r.registers.to_string(),
                r.smem_bytes.to_string(),
                r.stack_bytes.to_string(),
                r.spill_store_bytes.to_string(),
                r.spill_load_bytes.to_string(),
            ]
        })
        .collect();
    let mut width = header.map(str::len);
    for row in &cells {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cols: &[String]| {
        let parts: Vec<String> = cols
            .iter()
            .zip(width)
            .enumerate()
            // Names left-aligned, numbers right-aligned.
            .map(|(i, (c, w))| if i < 3 { format!("{c:<w$}") } else { format!("{c:>w$}") })
            .collect();
        parts.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(&header.map(String::from));
    for row in &cells {
        out += &line(row);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // As NVRTC 13 printed it for sm_90 (trimmed), plus a non-inlined device function and an
    // old-style "Used" line without barriers or smem.
    const SAMPLE: &str = "\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'fill_f32_v2' for 'sm_90'
ptxas info    : Function properties for fill_f32_v2
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 32 registers, used 0 barriers, 512 bytes smem
ptxas info    : Compile time = 23.781 ms
ptxas info    : Function properties for _Z6helperv
ptxas         .     16 bytes stack frame, 8 bytes spill stores, 8 bytes spill loads
ptxas info    : Compiling entry function 'neb_forces_f32_v1' for 'sm_90'
ptxas info    : Function properties for neb_forces_f32_v1
ptxas         .     24 bytes stack frame, 20 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers, 2048 bytes smem, 400 bytes cmem[0]
ptxas info    : Compiling entry function 'fill_f32_v1' for 'sm_80'
ptxas info    : Function properties for fill_f32_v1
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 10 registers, 372 bytes cmem[0]
ptxas info    : Compiling entry function 'dot_f32_v1' for 'sm_90'
ptxas info    : Function properties for dot_f32_v1
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 14 registers, used 0 barriers
ptxas info    : Compile time = 1.785 ms
";

    #[test]
    fn parses_each_entry_with_its_frame() {
        let rows = parse_log(SAMPLE);
        assert_eq!(rows.len(), 4);
        assert_eq!(
            rows[0],
            KernelResources {
                arch: "sm_90".into(),
                kernel: "fill_f32_v2".into(),
                registers: 32,
                smem_bytes: 512,
                stack_bytes: 0,
                spill_store_bytes: 0,
                spill_load_bytes: 0,
            }
        );
        let neb = &rows[1];
        assert_eq!((neb.registers, neb.smem_bytes, neb.stack_bytes), (255, 2048, 24));
        assert_eq!((neb.spill_store_bytes, neb.spill_load_bytes), (20, 12));
        assert!(neb.spills() && !rows[0].spills());
        assert_eq!(
            (rows[2].arch.as_str(), rows[2].registers, rows[2].smem_bytes),
            ("sm_80", 10, 0)
        );
        assert_eq!(
            (rows[3].kernel.as_str(), rows[3].registers, rows[3].smem_bytes),
            ("dot_f32_v1", 14, 0)
        );
    }

    #[test]
    fn the_report_bypasses_the_driver_cache() {
        assert!(REPORT_OPTIONS.contains(&"-Xptxas=-v") && REPORT_OPTIONS.contains(&"--no-cache"));
    }

    #[test]
    fn ignores_noise_and_empty_logs() {
        assert!(parse_log("").is_empty());
        assert!(parse_log("warning: something\nptxas info    : Used 3 registers\n").is_empty());
    }

    #[test]
    fn hot_means_the_highest_version() {
        let all = [
            "axpy_f32_v1",
            "axpy_f32_v2",
            "neb_forces_f32_v1",
            "conv_f32_v1",
            "conv_f32_v3",
            "helper",
        ];
        assert!(is_hot("axpy_f32_v2", &all) && is_hot("conv_f32_v3", &all) && is_hot("neb_forces_f32_v1", &all));
        assert!(!is_hot("axpy_f32_v1", &all) && !is_hot("conv_f32_v1", &all));
        assert!(!is_hot("helper", &all) && !is_hot("x_vx", &all));
    }

    #[test]
    fn table_has_a_row_per_kernel() {
        let t = format_table(&parse_log(SAMPLE));
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(lines[0].starts_with("arch") && lines[0].contains("spill ld B"));
        assert!(lines[2].contains("neb_forces_f32_v1") && lines[2].contains("hot") && lines[2].ends_with("12"));
        assert!(!lines[3].contains("hot"));
    }
}
