//! `mep report DIR`: one page about a study folder of `mep connect` — its Table 1 beside
//! the paper's, the figures per space, the configuration, the classifier's accuracy and,
//! when `cargo xtask reproduce` made the folder, which preset ran and how long each step
//! took. Written as `DIR/report.md` and, from the same Markdown, `DIR/report.html`.
//!
//! Every share comes with its Wilson 95 % interval and every median of a barrier height or
//! length ratio with a bootstrap 95 % interval ([`crate::study::stats`]). Table 1 counts the
//! paper's pairs (natural endpoints); pairs with misclassified or adversarial endpoints get
//! sections of their own ([`endpoints_markdown`]), the adversarial one with the ROC AUC of
//! the barrier height as a detector. [`report_with`] with a `compare` folder also writes
//! `DIR/compare.md` and `DIR/compare.html` ([`compare`]): two studies side by side.

mod compare;

pub use compare::{compare, CompareFiles};

use crate::figures::{render_study, FigureContext, FigureKind, FigureOptions, RenderedFigure};
use crate::study::{self, read_results, stats, Category, Endpoints, Manifest, PairResult, RESULTS};
use crate::{MepError, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Table 1 of Gu & Borovykh (2023): 25 pairs of CIFAR-10 test images, ResNet-50 fine-tuned
/// at 224×224. `(space, linear, nonlinear, none)`; the paper's "first intermediate layer"
/// is `layer1` and its "last layer" is `pool`.
pub const PAPER_TABLE1: [(&str, usize, usize, usize); 3] =
    [("input", 19, 6, 0), ("layer1", 14, 11, 0), ("pool", 25, 0, 0)];

/// The paper's counts for `space`, if the paper studied it.
pub fn paper_counts(space: &str) -> Option<(usize, usize, usize)> {
    PAPER_TABLE1
        .iter()
        .find(|(s, ..)| *s == space)
        .map(|&(_, l, n, x)| (l, n, x))
}

/// Linear results per space whose figures the report shows (every other result's are shown).
pub const LINEAR_SAMPLE: usize = 2;

/// What `mep report` wrote.
#[derive(Clone, Debug)]
pub struct ReportFiles {
    pub markdown: PathBuf,
    pub html: PathBuf,
    /// The comparison page, when [`ReportOptions::compare`] named a second study.
    pub compare: Option<CompareFiles>,
}

/// What [`report_with`] adds to the plain report.
#[derive(Clone, Debug, Default)]
pub struct ReportOptions {
    /// A second study folder to set beside this one in `DIR/compare.md` and `.html`.
    pub compare: Option<PathBuf>,
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Writes `dir/report.md` and `dir/report.html` for the study folder `dir`.
///
/// Errors when `dir` is not a study folder of `mep connect` or holds no result yet.
pub fn report(dir: &Path) -> Result<ReportFiles> {
    report_with(dir, &ReportOptions::default())
}

/// [`report`], and with `opts.compare` the comparison page of [`compare`] (the second
/// folder is checked before anything is written, and the report links the page).
pub fn report_with(dir: &Path, options: &ReportOptions) -> Result<ReportFiles> {
    if let Some(other) = &options.compare {
        compare::check_study(other, "mep report --compare")?;
    }
    if !dir.join(study::MANIFEST).exists() && dir.join(crate::graph::GRAPH_MANIFEST).exists() {
        return graph_report(dir);
    }
    let manifest = Manifest::read(dir)?.ok_or_else(|| MepError::Missing {
        path: dir.to_path_buf(),
        what: "no manifest.json here".into(),
        hint: Some("`mep report` needs a folder that `mep connect --out` wrote".into()),
    })?;
    let _lock = crate::lock::FolderLock::acquire(dir, "mep report")?;
    let (results, _) = read_results(&dir.join(RESULTS), true)?;
    if results.is_empty() {
        return Err(MepError::Missing {
            path: dir.to_path_buf(),
            what: format!("no results yet in {RESULTS}"),
            hint: Some("run `mep connect` first (or let it finish a pair)".into()),
        });
    }
    if !results.iter().any(|r| r.path_file.is_some()) {
        return Err(MepError::Missing {
            path: dir.to_path_buf(),
            what: format!(
                "none of the {} results has a saved path (paths/), so there is nothing to draw",
                results.len()
            ),
            hint: Some("rerun `mep connect` into this folder".into()),
        });
    }
    let missing: Vec<String> = results
        .iter()
        .filter_map(|r| r.path_file.as_ref().filter(|f| !dir.join(f).is_file()))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(MepError::Results {
            path: dir.join(RESULTS),
            msg: format!(
                "{} path file{} named here {} missing: {}; rerun the same `mep connect` command into this \
                 folder to compute {} again",
                missing.len(),
                if missing.len() == 1 { "" } else { "s" },
                if missing.len() == 1 { "is" } else { "are" },
                missing.join(", "),
                if missing.len() == 1 { "it" } else { "them" }
            ),
        });
    }
    let ctx = FigureContext::open(dir)?;
    let opts = FigureOptions {
        linear_sample: Some(LINEAR_SAMPLE),
        ..FigureOptions::default()
    };
    let figures = render_study(&ctx, &opts)?;
    let mut md = markdown(dir, &manifest, &results, &figures);
    // The class graph `cargo xtask reproduce` draws into DIR/graph.
    if let Some(section) = crate::graph::report_section(&dir.join("graph"), "graph")? {
        md.push_str(&section);
    }
    let compared = match &options.compare {
        Some(other) => {
            let files = compare::write(dir, other, &manifest, &results)?;
            let note = format!(
                "Compared with the study in `{}`: [compare.md](compare.md), [compare.html](compare.html).\n\n",
                other.display()
            );
            let at = md.find("## Table 1").unwrap_or(md.len());
            md.insert_str(at, &note);
            Some(files)
        }
        None => None,
    };
    let files = ReportFiles {
        markdown: dir.join("report.md"),
        html: dir.join("report.html"),
        compare: compared,
    };
    study::write_atomic(&files.markdown, md.as_bytes())?;
    study::write_atomic(&files.html, html(&md, "mep report").as_bytes())?;
    Ok(files)
}

/// The report of a folder of `mep graph`: its settings and the class graphs.
fn graph_report(dir: &Path) -> Result<ReportFiles> {
    let m = crate::graph::GraphManifest::read(dir)?.ok_or_else(|| MepError::Missing {
        path: dir.join(crate::graph::GRAPH_MANIFEST),
        what: "no graph manifest".into(),
        hint: None,
    })?;
    let _lock = crate::lock::FolderLock::acquire(dir, "mep report")?;
    let section = crate::graph::report_section(dir, ".")?.ok_or_else(|| MepError::Missing {
        path: dir.join(crate::graph::GRAPHS),
        what: "no class graph yet".into(),
        hint: Some("run `mep graph` into this folder first (or let it finish a class and space)".into()),
    })?;
    let mut md = String::from("# mep report: class graphs\n\n");
    let _ = writeln!(
        md,
        "{} (weights SHA-256 `{}`) on {}; spaces {}; strategy {}, {} images per class, NEB with {} pivots, {} sub-points, at most {} steps.\n",
        m.settings.arch,
        m.settings.weights_sha256,
        m.settings.dataset,
        m.settings.spaces.join(", "),
        m.graph.strategy,
        m.graph.images,
        m.settings.pivots,
        m.settings.sub_points,
        m.settings.max_steps
    );
    md.push_str(&section);
    let files = ReportFiles {
        markdown: dir.join("report.md"),
        html: dir.join("report.html"),
        compare: None,
    };
    study::write_atomic(&files.markdown, md.as_bytes())?;
    study::write_atomic(&files.html, html(&md, "mep report: class graphs").as_bytes())?;
    Ok(files)
}

fn markdown(dir: &Path, m: &Manifest, results: &[PairResult], figures: &[RenderedFigure]) -> String {
    let s = &m.settings;
    let mut out = String::new();
    let _ = writeln!(out, "# mep report: {} on {}\n", s.arch, s.dataset);
    let reproduce = read_json(&dir.join("reproduce.json"));
    if let Some(r) = &reproduce {
        let _ = writeln!(
            out,
            "Made by `cargo xtask reproduce --preset {}`: {}.\n",
            r["preset"].as_str().unwrap_or("?"),
            r["about"].as_str().unwrap_or("")
        );
    }
    let pairs = m.pair_list.len();
    let done: std::collections::BTreeSet<(usize, &str)> = results.iter().map(|r| (r.pair, r.space.as_str())).collect();
    let expected = pairs * s.spaces.len();
    let _ = writeln!(
        out,
        "{pairs} pairs of same-class test images, {} of {expected} (pair, space) results{}; {} candidate pairs skipped \
         because the model misclassified an endpoint.\n",
        done.len(),
        if done.len() < expected { " (the study is not finished)" } else { "" },
        m.skipped
    );
    if s.precision != crate::Precision::Fp32 {
        let _ = writeln!(
            out,
            "The NEB's gradient steps ran in {}; the straight lines and every dense check that decided a \
             category ran in fp32.\n",
            s.precision
        );
    }

    // Table 1 beside the paper's: the natural pairs only.
    let all_results = results;
    let natural = study::of_endpoints(all_results, Endpoints::Natural);
    let results = natural.as_slice();
    let counts = study::count(&s.spaces, results);
    let _ = writeln!(out, "## Table 1: ours beside the paper's\n");
    let _ = writeln!(
        out,
        "Each cell: our count, then in brackets the paper's (Gu & Borovykh 2023, Table 1: ResNet-50 fine-tuned \
         on CIFAR-10 at 224×224, 25 pairs), then our share of the column with its Wilson 95 % score interval. \
         The paper's \"first intermediate layer\" is `layer1`, its \"last layer\" `pool`; a space the paper did \
         not study shows —.{}{}\n",
        if s.arch == "resnet50" && s.dataset.starts_with("cifar") {
            ""
        } else {
            " This run's model and data differ from the paper's, so the comparison is qualitative."
        },
        if results.len() < all_results.len() {
            format!(
                " Only the {} results of pairs with natural endpoints are counted here; the {} with misclassified \
                 or adversarial endpoints have sections of their own below.",
                results.len(),
                all_results.len() - results.len()
            )
        } else {
            String::new()
        }
    );
    let _ = writeln!(out, "| path | {} |", s.spaces.join(" | "));
    let _ = writeln!(out, "|---|{}", "---:|".repeat(s.spaces.len()));
    let rows: [(Category, usize); 3] = [(Category::Linear, 0), (Category::Nonlinear, 1), (Category::NoPath, 2)];
    for (cat, k) in rows {
        let cells: Vec<String> = counts
            .iter()
            .map(|c| {
                let paper = paper_counts(&c.space).map(|p| [p.0, p.1, p.2][k]);
                let ours = c.get(cat);
                let interval = c.share(cat).map_or(String::new(), |(p, lo, hi)| {
                    format!(" · {:.0} % [{:.0}–{:.0} %]", 100.0 * p, 100.0 * lo, 100.0 * hi)
                });
                format!("{ours} ({}){interval}", paper.map_or("—".into(), |p| p.to_string()))
            })
            .collect();
        let _ = writeln!(out, "| {cat} | {} |", cells.join(" | "));
    }
    if counts.iter().any(|c| c.error > 0) {
        let cells: Vec<String> = counts.iter().map(|c| c.error.to_string()).collect();
        let _ = writeln!(out, "| error | {} |", cells.join(" | "));
    }
    let _ = writeln!(out, "| total | {} |", study::totals(&counts, " | "));
    let _ = writeln!(out);
    if let Some(f) = figures.iter().find(|f| f.kind == FigureKind::Depth) {
        let _ = writeln!(out, "### By depth\n");
        let _ = writeln!(
            out,
            "The linear and nonlinear shares of Table 1 with the spaces from the input to the last layer, \
             with their Wilson 95 % intervals.\n"
        );
        let _ = writeln!(out, "![linear share by depth]({})\n", f.relative);
    }

    let certs = study::read_certificates(dir).unwrap_or_default();
    let _ = write!(out, "{}", study::certified_markdown(&s.spaces, &certs));
    if certs.iter().any(|c| c.exact == study::Exact::Undecided) {
        let budget = certs.iter().map(|c| c.max_pieces).max().unwrap_or(0);
        let _ = writeln!(
            out,
            "\nUndecided paths ran out of the piece budget ({budget} affine pieces per segment, \
             `--max-pieces`) or have a margin within tolerance of zero; remove `certificates.jsonl` and rerun \
             `mep certify DIR --max-pieces N` with a larger N to decide more.\n"
        );
    }
    for c in certs.iter().filter(|c| c.exact == study::Exact::Refuted) {
        let iv: Vec<String> = c.refuted.iter().map(|(a, b)| format!("[{a:.6}, {b:.6}]")).collect();
        let _ = writeln!(
            out,
            "- pair {} in `{}` ({}, sampled: {}): refuted, the path leaves the class for u in {} \
             (u = 0 … 1 along the path), between the sampled points.",
            c.pair,
            c.space,
            c.class,
            c.category,
            iv.join(", ")
        );
    }
    let _ = writeln!(out);

    // The figures per space and category come from the same code as table1.md.
    let tables_md = study::markdown(&s.spaces, all_results, pairs);
    if let Some(i) = tables_md.find("## Figures") {
        let _ = writeln!(out, "{}", &tables_md[i..]);
    }

    let link = |k: FigureKind| figures.iter().find(|f| f.kind == k).map(|f| f.relative.as_str());
    out.push_str(&endpoints_markdown(
        &s.classes,
        &s.spaces,
        all_results,
        link(FigureKind::Misclassified),
        link(FigureKind::Adversarial),
    ));
    let results = all_results;

    figures_markdown(&mut out, dir, &s.spaces, results, figures);

    let _ = writeln!(out, "## Pairs\n");
    let _ = writeln!(out, "| pair | i | j | class | {} |", s.spaces.join(" | "));
    let _ = writeln!(out, "|---:|---:|---:|---|{}", "---|".repeat(s.spaces.len()));
    let mut by_pair: Vec<usize> = results.iter().map(|r| r.pair).collect();
    by_pair.sort_unstable();
    by_pair.dedup();
    for k in by_pair {
        let rs: Vec<&PairResult> = results.iter().filter(|r| r.pair == k).collect();
        let first = rs[0];
        let cells: Vec<String> = s
            .spaces
            .iter()
            .map(|sp| {
                rs.iter().find(|r| &r.space == sp).map_or("…".to_string(), |r| {
                    let steps = if r.steps > 0 {
                        format!(", {} steps", r.steps)
                    } else {
                        String::new()
                    };
                    let exact = certs
                        .iter()
                        .find(|c| c.pair == r.pair && &c.space == sp)
                        .map_or(String::new(), |c| format!("; {}", c.exact));
                    format!("{}{steps}{exact}", r.category)
                })
            })
            .collect();
        let endpoints = if first.endpoints.is_natural() {
            String::new()
        } else {
            format!(" ({})", first.endpoints)
        };
        let _ = writeln!(
            out,
            "| {k} | {} | {} | {}{endpoints} | {} |",
            first.i,
            first.j,
            first.class_name,
            cells.join(" | ")
        );
    }
    let _ = writeln!(out);

    let _ = writeln!(out, "## The classifier\n");
    let train_report = read_json(&dir.join("model").join("report.json"))
        .or_else(|| m.weights.parent().and_then(|p| read_json(&p.join("report.json"))));
    let _ = writeln!(
        out,
        "- checkpoint `{}` (SHA-256 `{}`)",
        m.weights.display(),
        s.weights_sha256
    );
    if let Some(t) = &train_report {
        if let Some(acc) = t["test"]["accuracy"].as_f64() {
            let _ = writeln!(
                out,
                "- test accuracy {:.2} % after {} epochs of `mep train` ({:.0} s)",
                100.0 * acc,
                t["epochs"].as_array().map_or(0, |e| e.len()),
                t["seconds"].as_f64().unwrap_or(0.0)
            );
        }
    }
    let _ = writeln!(
        out,
        "- data `{}` ({} test images), input size {}, normalised with mean {:?} and std {:?}\n",
        m.data,
        s.test_images,
        s.input_size.map_or("as stored".into(), |n| format!("{n}×{n}")),
        s.mean,
        s.std
    );

    let _ = writeln!(out, "## Configuration\n");
    let _ = writeln!(out, "```json");
    let _ = writeln!(out, "{}", serde_json::to_string_pretty(s).unwrap_or_default());
    let _ = writeln!(out, "```\n");

    if let Some(r) = &reproduce {
        if let Some(steps) = r["steps"].as_array() {
            let _ = writeln!(out, "## Timings\n");
            let _ = writeln!(out, "| step | seconds | command |");
            let _ = writeln!(out, "|---|---:|---|");
            for st in steps {
                let _ = writeln!(
                    out,
                    "| {}{} | {:.1} | `{}` |",
                    st["name"].as_str().unwrap_or("?"),
                    if st["cached"].as_bool() == Some(true) {
                        " (cached)"
                    } else {
                        ""
                    },
                    st["seconds"].as_f64().unwrap_or(0.0),
                    st["command"].as_str().unwrap_or("")
                );
            }
            let _ = writeln!(out);
        }
    }
    let wall: f64 = results.iter().map(|r| r.seconds).sum();
    let _ = writeln!(out, "Path search: {wall:.1} s of wall time summed over the results.");
    out
}

/// The figures: the line's maximum loss per space, the decoders' reconstructions, then per
/// space every bent path (and a sample of straight lines) as images with the model's
/// softmax and as a loss profile.
fn figures_markdown(
    out: &mut String,
    dir: &Path,
    spaces: &[String],
    results: &[PairResult],
    figures: &[RenderedFigure],
) {
    let of_kind = |k: FigureKind| figures.iter().find(|f| f.kind == k);
    if let Some(f) = of_kind(FigureKind::MaxLossDistribution) {
        let _ = writeln!(out, "## The largest loss along the straight line\n");
        let _ = writeln!(out, "![largest loss along the line per space]({})\n", f.relative);
    }
    if let Some(f) = of_kind(FigureKind::Reconstructions) {
        let _ = writeln!(out, "## Decoders\n");
        let _ = writeln!(
            out,
            "Test images (top) and what each space's decoder makes of their encodings, so that points \
             of latent paths can be looked at.\n"
        );
        let _ = writeln!(out, "![decoder reconstructions]({})\n", f.relative);
        decoder_table(out, dir);
    } else {
        let _ = writeln!(
            out,
            "No decoders in `decoders/`: latent points are drawn as placeholders \
             (`mep decoder train --out DIR/decoders/CUT.safetensors` adds one).\n"
        );
    }
    let _ = writeln!(out, "## Along the paths\n");
    let _ = writeln!(
        out,
        "Each pair figure has a row for the straight line and one for the found path, {} points evenly \
         spaced by arc length; under each image the model's softmax, the pair's class in red; a red frame \
         marks a point classified as another class. Each loss plot shows the cross-entropy along the \
         densely sampled line and path. Every non-linear pair is shown, and the first {LINEAR_SAMPLE} linear \
         ones of each space.\n",
        crate::figures::DEFAULT_K
    );
    for space in spaces {
        let shown: Vec<&PairResult> = results
            .iter()
            .filter(|r| &r.space == space)
            .filter(|r| {
                figures
                    .iter()
                    .any(|f| f.kind == FigureKind::Pair && f.pair == Some(r.pair) && f.space.as_deref() == Some(space))
            })
            .collect();
        if shown.is_empty() {
            continue;
        }
        let _ = writeln!(out, "### {space}\n");
        for r in shown {
            let find = |k: FigureKind| {
                figures
                    .iter()
                    .find(|f| f.kind == k && f.pair == Some(r.pair) && f.space.as_deref() == Some(space))
            };
            let what = match r.category {
                Category::Linear => "joined by the straight line".to_string(),
                Category::Nonlinear => format!("joined by a path the NEB found in {} steps", r.steps),
                Category::NoPath => format!("no path found in {} steps", r.steps),
                Category::Error => "error".to_string(),
            };
            let _ = writeln!(
                out,
                "**Pair {}** ({}: test images {} and {}): {what}; largest loss on the line {}, on the path {}.\n",
                r.pair,
                r.class_name,
                r.i,
                r.j,
                r.line_max_loss.map_or("—".into(), |v| format!("{v:.3}")),
                r.path_max_loss.map_or("—".into(), |v| format!("{v:.3}")),
            );
            if let Some(f) = find(FigureKind::Pair) {
                let _ = writeln!(out, "![pair {} in {space}]({})\n", r.pair, f.relative);
            }
            if let Some(f) = find(FigureKind::Loss) {
                let _ = writeln!(out, "![loss along pair {} in {space}]({})\n", r.pair, f.relative);
            }
        }
    }
}

/// The name of class `c` from the study's class names (its number when out of range).
fn class_name(classes: &[String], c: usize) -> String {
    classes.get(c).cloned().unwrap_or_else(|| format!("class {c}"))
}

/// Pairs listed per endpoint kind in the report before the rest are only counted.
pub const LISTED_PAIRS: usize = 20;

/// The report's sections on pairs whose endpoints are not natural, each shown only when
/// the study has such results (empty otherwise):
///
/// - **Misclassified endpoints**: per space, the counts of linear / nonlinear / none with
///   Wilson 95 % intervals for misclassified-predicted pairs (checked in the class the model
///   predicts) and misclassified-true pairs (checked in the true class), the pairs with the
///   class each was checked in, and the joined share beside the natural pairs'
///   (`misclassified_figure` links the figure of it);
/// - **Adversarial endpoints**: per space, the counts for adversarial and natural pairs,
///   the medians of both barrier heights (`line_max_loss`, `path_max_loss`) with bootstrap
///   intervals, and the ROC AUC of each barrier as a detector of adversarial pairs
///   (adversarial = positive, natural = negative; [`stats::roc_auc`]).
pub fn endpoints_markdown(
    classes: &[String],
    spaces: &[String],
    results: &[PairResult],
    misclassified_figure: Option<&str>,
    adversarial_figure: Option<&str>,
) -> String {
    let mut out = String::new();
    let kinds = study::other_endpoints(results);
    let natural = study::of_endpoints(results, Endpoints::Natural);
    let natural_counts = study::count(spaces, &natural);
    let mis: Vec<Endpoints> = kinds
        .iter()
        .copied()
        .filter(|k| matches!(k, Endpoints::MisclassifiedPredicted | Endpoints::MisclassifiedTrue))
        .collect();
    if !mis.is_empty() {
        let _ = writeln!(out, "## Misclassified endpoints\n");
        let _ = writeln!(
            out,
            "Pairs whose first image the model misclassifies, joined to an image the model puts in the class \
             checked: either the class the model predicts for the misclassified image (misclassified-predicted) \
             or its true class (misclassified-true). Each cell: the count, its share of the column and the \
             share's Wilson 95 % score interval.\n"
        );
        for kind in &mis {
            let of_kind = study::of_endpoints(results, *kind);
            let checked = match kind {
                Endpoints::MisclassifiedPredicted => "checked in the predicted class",
                _ => "checked in the true class",
            };
            let _ = writeln!(out, "### {kind}: {checked}\n");
            let _ = writeln!(out, "{}\n", study::endpoints_note(*kind));
            out.push_str(&study::counts_markdown(spaces, &of_kind));
            let _ = writeln!(out);
            // One row per pair: its first result names the classes.
            let mut seen = std::collections::BTreeSet::new();
            let listed: Vec<&PairResult> = of_kind.iter().filter(|r| seen.insert(r.pair)).collect();
            let _ = writeln!(
                out,
                "| pair | image i | its label | model's class for it | checked in | image j |"
            );
            let _ = writeln!(out, "|---:|---:|---|---|---|---:|");
            for r in listed.iter().take(LISTED_PAIRS) {
                let (label, predicted) = match kind {
                    Endpoints::MisclassifiedPredicted => (r.true_class, Some(r.class)),
                    _ => (Some(r.class), r.predicted),
                };
                let name = |c: Option<usize>| c.map_or("?".to_string(), |c| class_name(classes, c));
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | **{}** | {} |",
                    r.pair,
                    r.i,
                    name(label),
                    name(predicted),
                    class_name(classes, r.class),
                    r.j
                );
            }
            if listed.len() > LISTED_PAIRS {
                let _ = writeln!(out, "\n… and {} more pairs.", listed.len() - LISTED_PAIRS);
            }
            let _ = writeln!(out);
        }
        let _ = writeln!(out, "### Joined in the class, per kind of endpoints\n");
        let _ = writeln!(
            out,
            "The share of pairs joined by the straight line or an NEB path (linear + nonlinear), with its \
             Wilson 95 % interval.\n"
        );
        let mut header = vec!["natural".to_string()];
        header.extend(mis.iter().map(|k| k.to_string()));
        let _ = writeln!(out, "| space | {} |", header.join(" | "));
        let _ = writeln!(out, "|---|{}", "---:|".repeat(header.len()));
        let per_kind: Vec<Vec<study::SpaceCounts>> = mis
            .iter()
            .map(|k| study::count(spaces, &study::of_endpoints(results, *k)))
            .collect();
        for (i, space) in spaces.iter().enumerate() {
            let joined = |c: &study::SpaceCounts| study::share_cell(c.linear + c.nonlinear, c.total());
            let mut cells = vec![joined(&natural_counts[i])];
            cells.extend(per_kind.iter().map(|cs| joined(&cs[i])));
            let _ = writeln!(out, "| {space} | {} |", cells.join(" | "));
        }
        let _ = writeln!(out);
        if let Some(f) = misclassified_figure {
            let _ = writeln!(out, "![joined share per kind of endpoints]({f})\n");
        }
    }
    if kinds.contains(&Endpoints::Adversarial) {
        let adv = study::of_endpoints(results, Endpoints::Adversarial);
        let adv_counts = study::count(spaces, &adv);
        let _ = writeln!(out, "## Adversarial endpoints\n");
        let _ = writeln!(
            out,
            "{} Natural pairs are the pairs of Table 1. Each count: its share of the row's pairs and the \
             share's Wilson 95 % interval.\n",
            study::endpoints_note(Endpoints::Adversarial)
        );
        let _ = writeln!(out, "| space | endpoints | linear | nonlinear | none | total |");
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|");
        for (i, space) in spaces.iter().enumerate() {
            for (name, c) in [("adversarial", &adv_counts[i]), ("natural", &natural_counts[i])] {
                let t = c.total();
                let _ = writeln!(
                    out,
                    "| {space} | {name} | {} | {} | {} | {t} |",
                    study::share_cell(c.linear, t),
                    study::share_cell(c.nonlinear, t),
                    study::share_cell(c.none, t)
                );
            }
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "### Barrier heights: is the barrier a detector?\n");
        let _ = writeln!(
            out,
            "The barrier is the largest loss along the straight line (`line_max_loss`) or along the final path \
             (`path_max_loss`). Medians with bootstrap 95 % intervals ({} resamples); the ROC AUC is the \
             probability that an adversarial pair's barrier is above a natural pair's (Mann–Whitney, ties \
             count 1/2): 1 separates them perfectly, 0.5 is chance, below 0.5 adversarial barriers are lower.\n",
            stats::BOOTSTRAP_RESAMPLES
        );
        let _ = writeln!(
            out,
            "| space | barrier | adversarial: median [95 %] | natural: median [95 %] | ROC AUC |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|");
        for space in spaces {
            let a: Vec<&PairResult> = adv.iter().filter(|r| &r.space == space).collect();
            let n: Vec<&PairResult> = natural.iter().filter(|r| &r.space == space).collect();
            for barrier in ["line_max_loss", "path_max_loss"] {
                let values = |rs: &[&PairResult]| -> Vec<f64> {
                    rs.iter()
                        .filter_map(|r| {
                            if barrier == "line_max_loss" {
                                r.line_max_loss
                            } else {
                                r.path_max_loss
                            }
                        })
                        .collect()
                };
                let auc = stats::roc_auc(&values(&a), &values(&n));
                let _ = writeln!(
                    out,
                    "| {space} | {barrier} | {} | {} | {} |",
                    study::median_cell(study::median_of(barrier, &a)),
                    study::median_cell(study::median_of(barrier, &n)),
                    auc.map_or("—".to_string(), |v| format!("{v:.3}"))
                );
            }
        }
        let _ = writeln!(out);
        if let Some(f) = adversarial_figure {
            let _ = writeln!(out, "![joined share, adversarial and natural endpoints]({f})\n");
        }
    }
    out
}

/// How each decoder in `dir/decoders/` was trained and how well it reconstructs held-out
/// images, from the reports `mep decoder train` leaves beside the checkpoints.
fn decoder_table(out: &mut String, dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir.join(crate::figures::DECODERS)) else {
        return;
    };
    let mut reports: Vec<serde_json::Value> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| read_json(&p))
        .collect();
    if reports.is_empty() {
        return;
    }
    reports.sort_by(|a, b| a["cut"].as_str().cmp(&b["cut"].as_str()));
    let _ = writeln!(
        out,
        "| cut | filters | train images | epochs | held-out MSE | MSE of the mean image | seconds |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|");
    for r in reports {
        let last = r["epochs"].as_array().and_then(|e| e.last()).cloned();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.4} | {:.0} |",
            r["cut"].as_str().unwrap_or("?"),
            r["filters"],
            r["train_images"],
            r["epochs"].as_array().map_or(0, |e| e.len()),
            last.and_then(|l| l["test_mse"].as_f64())
                .map_or("—".into(), |v| format!("{v:.4}")),
            r["mean_image_mse"].as_f64().unwrap_or(f64::NAN),
            r["seconds"].as_f64().unwrap_or(0.0)
        );
    }
    let _ = writeln!(out);
}

/// The page around the Markdown rendered by pulldown-cmark (tables on).
fn html(md: &str, title: &str) -> String {
    let mut body = String::new();
    let parser = pulldown_cmark::Parser::new_ext(md, pulldown_cmark::Options::ENABLE_TABLES);
    pulldown_cmark::html::push_html(&mut body, parser);
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>\n<style>\n\
         body {{ font-family: sans-serif; max-width: 70em; margin: 2em auto; padding: 0 1em; }}\n\
         table {{ border-collapse: collapse; margin: 1em 0; }}\n\
         th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; }}\n\
         td {{ text-align: right; }}\n\
         pre {{ background: #f6f6f6; padding: 0.8em; overflow-x: auto; }}\n\
         img {{ max-width: 100%; }}\n</style></head><body>\n{body}</body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_counts_are_the_papers_table_1() {
        // Gu & Borovykh (2023), Table 1: 25 pairs in each column.
        assert_eq!(paper_counts("input"), Some((19, 6, 0)));
        assert_eq!(paper_counts("layer1"), Some((14, 11, 0)));
        assert_eq!(paper_counts("pool"), Some((25, 0, 0)));
        assert_eq!(paper_counts("layer2"), None);
        for (_, l, n, x) in PAPER_TABLE1 {
            assert_eq!(l + n + x, 25);
        }
    }

    #[test]
    fn html_renders_tables() {
        let h = html("| a | b |\n|---|---|\n| 1 | 2 |\n", "t");
        assert!(h.contains("<table>") && h.contains("<td>1</td>"), "{h}");
    }

    #[test]
    fn a_folder_without_a_manifest_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = report(dir.path()).unwrap_err().to_string();
        assert!(e.contains("no manifest.json"), "{e}");
    }
}
