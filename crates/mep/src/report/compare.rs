//! `mep report DIR --compare OTHER`: two studies side by side in `DIR/compare.md` and
//! `DIR/compare.html` — each named by its folder and its manifest's architecture, weights
//! SHA-256 and dataset; Table 1 per space with Wilson 95 % intervals and the difference of
//! the shares with Newcombe's interval; the medians of the barrier heights and of the
//! length ratio with bootstrap 95 % intervals. It reads only the manifests and results, so
//! it needs neither model nor data.

use crate::figures::network_order;
use crate::study::{self, read_results, stats, Category, Endpoints, Manifest, PairResult, RESULTS};
use crate::{MepError, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What [`compare`] wrote.
#[derive(Clone, Debug)]
pub struct CompareFiles {
    pub markdown: PathBuf,
    pub html: PathBuf,
}

/// Refuses, for `command`, a folder that is not a study folder of `mep connect` or holds
/// no result yet.
pub(super) fn check_study(dir: &Path, command: &str) -> Result<()> {
    study::check_folder(dir, command)?;
    let (results, _) = read_results(&dir.join(RESULTS), true)?;
    if results.is_empty() {
        return Err(MepError::Missing {
            path: dir.to_path_buf(),
            what: format!("no results yet in {RESULTS}, so there is nothing to compare"),
            hint: Some("run `mep connect` into that folder first".into()),
        });
    }
    Ok(())
}

/// Writes `dir/compare.md` and `dir/compare.html`: the study in `dir` beside the one in
/// `other`. Errors, before writing anything, when either folder is not a study folder of
/// `mep connect` (no `manifest.json`) or holds no result.
pub fn compare(dir: &Path, other: &Path) -> Result<CompareFiles> {
    check_study(dir, "mep report --compare")?;
    check_study(other, "mep report --compare")?;
    let manifest = read_manifest(dir)?;
    let (results, _) = read_results(&dir.join(RESULTS), true)?;
    let _lock = crate::lock::FolderLock::acquire(dir, "mep report --compare")?;
    write(dir, other, &manifest, &results)
}

fn read_manifest(dir: &Path) -> Result<Manifest> {
    Manifest::read(dir)?.ok_or_else(|| MepError::Missing {
        path: dir.to_path_buf(),
        what: format!("not a study folder (no {})", study::MANIFEST),
        hint: Some("`mep report --compare` needs folders that `mep connect --out` wrote".into()),
    })
}

/// [`compare`] with the first study already read (the report has it in hand).
pub(super) fn write(dir: &Path, other: &Path, manifest: &Manifest, results: &[PairResult]) -> Result<CompareFiles> {
    check_study(other, "mep report --compare")?;
    let other_manifest = read_manifest(other)?;
    let (other_results, _) = read_results(&other.join(RESULTS), true)?;
    let a = Side {
        dir,
        manifest,
        results: study::of_endpoints(results, Endpoints::Natural),
    };
    let b = Side {
        dir: other,
        manifest: &other_manifest,
        results: study::of_endpoints(&other_results, Endpoints::Natural),
    };
    let md = markdown(&a, &b);
    let files = CompareFiles {
        markdown: dir.join("compare.md"),
        html: dir.join("compare.html"),
    };
    study::write_atomic(&files.markdown, md.as_bytes())?;
    study::write_atomic(&files.html, super::html(&md, "mep compare").as_bytes())?;
    Ok(files)
}

/// One study of the comparison: its natural results only (Table 1's).
struct Side<'a> {
    dir: &'a Path,
    manifest: &'a Manifest,
    results: Vec<PairResult>,
}

impl Side<'_> {
    /// The folder's last component, to head columns.
    fn name(&self) -> String {
        self.dir
            .file_name()
            .map_or_else(|| self.dir.display().to_string(), |n| n.to_string_lossy().into_owned())
    }
}

/// The figures whose medians are compared: barrier heights over every pair of a space, the
/// length ratio over the nonlinear pairs (a linear pair's is 1 by definition).
const MEDIANS: [(&str, &str, Option<Category>); 3] = [
    ("line_max_loss", "all pairs", None),
    ("path_max_loss", "all pairs", None),
    ("length_ratio", "nonlinear pairs", Some(Category::Nonlinear)),
];

fn markdown(a: &Side, b: &Side) -> String {
    let (na, nb) = (a.name(), b.name());
    // Two folders of the same name (runs/x/study, runs/y/study) are told apart as A and B.
    let (na, nb) = if na == nb {
        (format!("A: {na}"), format!("B: {nb}"))
    } else {
        (na, nb)
    };
    let mut out = String::new();
    let _ = writeln!(out, "# mep compare: {na} beside {nb}\n");
    let _ = writeln!(out, "| | {na} | {nb} |");
    let _ = writeln!(out, "|---|---|---|");
    let (sa, sb) = (&a.manifest.settings, &b.manifest.settings);
    let rows: [(&str, String, String); 7] = [
        (
            "folder",
            format!("`{}`", a.dir.display()),
            format!("`{}`", b.dir.display()),
        ),
        ("architecture", sa.arch.clone(), sb.arch.clone()),
        (
            "weights SHA-256",
            format!("`{}`", sa.weights_sha256),
            format!("`{}`", sb.weights_sha256),
        ),
        ("dataset", sa.dataset.clone(), sb.dataset.clone()),
        ("spaces", sa.spaces.join(", "), sb.spaces.join(", ")),
        (
            "pairs",
            a.manifest.pair_list.len().to_string(),
            b.manifest.pair_list.len().to_string(),
        ),
        (
            "natural results",
            a.results.len().to_string(),
            b.results.len().to_string(),
        ),
    ];
    for (name, x, y) in rows {
        let _ = writeln!(out, "| {name} | {x} | {y} |");
    }
    let diffs = sa.differences(sb);
    if !diffs.is_empty() {
        let _ = writeln!(out, "\nSettings that differ: {}.", diffs.join("; "));
    }
    let mut both: Vec<String> = sa.spaces.clone();
    both.extend(sb.spaces.iter().filter(|s| !sa.spaces.contains(s)).cloned());
    let spaces = network_order(&both);
    let (ca, cb) = (study::count(&spaces, &a.results), study::count(&spaces, &b.results));

    let _ = writeln!(out, "\n## Table 1 side by side\n");
    let _ = writeln!(
        out,
        "Pairs with natural endpoints only. Each cell: the count, its share of the space's pairs and the \
         share's Wilson 95 % score interval; the last column is the difference of the shares ({na} − {nb}) \
         with Newcombe's hybrid score 95 % interval (Newcombe 1998, method 10). A space a study did not run \
         shows —.\n"
    );
    let _ = writeln!(out, "| space | category | {na} | {nb} | difference [95 %] |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|");
    for (i, space) in spaces.iter().enumerate() {
        let ran = |s: &study::Settings| s.spaces.contains(space);
        for cat in [Category::Linear, Category::Nonlinear, Category::NoPath] {
            let cell = |ran: bool, c: &study::SpaceCounts| {
                if ran {
                    study::share_cell(c.get(cat), c.total())
                } else {
                    "—".to_string()
                }
            };
            let diff = stats::newcombe_difference(ca[i].get(cat), ca[i].total(), cb[i].get(cat), cb[i].total())
                .map_or("—".to_string(), |(d, lo, hi)| {
                    format!("{:+.0} pts [{:+.0}, {:+.0}]", 100.0 * d, 100.0 * lo, 100.0 * hi)
                });
            let _ = writeln!(
                out,
                "| {space} | {cat} | {} | {} | {diff} |",
                cell(ran(sa), &ca[i]),
                cell(ran(sb), &cb[i])
            );
        }
    }

    let _ = writeln!(out, "\n## Medians side by side\n");
    let _ = writeln!(
        out,
        "The barrier heights (largest loss along the line, along the final path) over every pair of a space, \
         and the length ratio of the found path over the nonlinear pairs; each the median with a percentile \
         bootstrap 95 % interval ({} resamples, seeded) and, after it, how many values.\n",
        stats::BOOTSTRAP_RESAMPLES
    );
    let _ = writeln!(out, "| space | figure | over | {na} | {nb} |");
    let _ = writeln!(out, "|---|---|---|---:|---:|");
    for space in &spaces {
        for (figure, over, only) in MEDIANS {
            let cell = |side: &Side| {
                let sel: Vec<&PairResult> = side
                    .results
                    .iter()
                    .filter(|r| &r.space == space && only.is_none_or(|c| r.category == c))
                    .collect();
                if sel.is_empty() {
                    return "—".to_string();
                }
                format!(
                    "{} (n = {})",
                    study::median_cell(study::median_of(figure, &sel)),
                    sel.len()
                )
            };
            let _ = writeln!(out, "| {space} | {figure} | {over} | {} | {} |", cell(a), cell(b));
        }
    }
    out
}
