//! The modules of the `mep` library import each other without a circle: each top-level
//! module (`connect`, `certify`, `study`, ...) is a floor, and an arrow only goes down.
//! The edges are read from the source: every `crate::X` path in a file of `src/Y.rs` or
//! `src/Y/**.rs` (comments left out) is an arrow Y → X. A circle is reported as the
//! modules it goes through.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The `.rs` files under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules each module's code names through `crate::`.
fn module_edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let module_of = |f: &Path| -> Option<String> {
        let rel = f.strip_prefix(src).unwrap();
        let first = rel.components().next()?.as_os_str().to_str()?.to_string();
        let name = first.trim_end_matches(".rs").to_string();
        // The crate root and the binary are not modules of the library.
        (name != "lib" && name != "main").then_some(name)
    };
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(f)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for f in &files {
        let Some(from) = module_of(f) else { continue };
        let text = std::fs::read_to_string(f).unwrap();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            for (at, _) in code.match_indices("crate::") {
                // `crate::` preceded by an identifier character is another path (`mep_crate::`).
                if code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let rest = &code[at + "crate::".len()..];
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if modules.contains(&name) && name != from {
                    edges.get_mut(&from).unwrap().insert(name);
                }
            }
        }
    }
    edges
}

/// A circle of `edges`, as the modules it passes through (first repeated at the end).
fn find_circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    // Depth-first search; a module met again while still on the stack closes a circle.
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(k) = stack.iter().position(|s| s == m) {
            let mut circle = stack[k..].to_vec();
            circle.push(m.to_string());
            return Some(circle);
        }
        if done.contains(m) {
            return None;
        }
        stack.push(m.to_string());
        for next in &edges[m] {
            if let Some(c) = visit(next, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|m| visit(m, edges, &mut Vec::new(), &mut done))
}

#[test]
fn mep_modules_import_each_other_without_a_circle() {
    let edges = module_edges(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    // The reader must see the modules, or the test proves nothing.
    for m in ["study", "connect", "certify", "figures", "report"] {
        assert!(edges.contains_key(m), "module {m} not found: {:?}", edges.keys());
    }
    if let Some(circle) = find_circle(&edges) {
        panic!(
            "the modules of mep import each other in a circle: {}",
            circle.join(" → ")
        );
    }
}

#[test]
fn the_study_module_imports_no_command() {
    let edges = module_edges(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let commands = [
        "connect", "certify", "figures", "report", "train", "decoder", "eval", "forward",
    ];
    let up: Vec<&String> = edges["study"]
        .iter()
        .filter(|m| commands.contains(&m.as_str()))
        .collect();
    assert!(
        up.is_empty(),
        "study imports {up:?}; the commands import study, not the reverse"
    );
}

#[test]
fn a_circle_is_found_and_named() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, to) in [("certify", "connect"), ("connect", "certify"), ("connect", "study")] {
        edges.entry(from.into()).or_default().insert(to.into());
        edges.entry(to.into()).or_default();
    }
    assert_eq!(
        find_circle(&edges),
        Some(vec![
            "certify".to_string(),
            "connect".to_string(),
            "certify".to_string()
        ])
    );
    edges.get_mut("connect").unwrap().remove("certify");
    assert_eq!(find_circle(&edges), None);
}
