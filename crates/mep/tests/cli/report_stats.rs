//! The statistics of the tables and the report, on study folders written by hand (a
//! manifest and results, no model): Wilson intervals in Table 1 and its CSV, medians with
//! bootstrap intervals, the sections on misclassified and adversarial endpoints with the
//! ROC AUC of the barrier, the figures by depth and by endpoint kind, and the comparison
//! of two studies. The counts of natural pairs are the paper's Table 1 (input 19/6/0,
//! layer1 14/11/0, pool 25/0/0), so the intervals can be checked against known values.

use crate::common;

use mep::report::{compare, endpoints_markdown, report_with, ReportOptions};
use mep::study::{self, Category, Endpoints, Manifest, Pair, PairResult, Settings};
use std::path::{Path, PathBuf};

const CLASSES: [&str; 3] = ["cat", "dog", "ship"];

fn spaces() -> Vec<String> {
    ["input", "layer1", "pool"].map(String::from).to_vec()
}

fn result(pair: usize, space: &str, category: Category, endpoints: Endpoints, line: f64, path: f64) -> PairResult {
    let (class, true_class, predicted) = match endpoints {
        Endpoints::MisclassifiedPredicted => (1, Some(2), None),
        Endpoints::MisclassifiedTrue => (2, None, Some(0)),
        _ => (0, None, None),
    };
    PairResult {
        pair,
        i: 100 + pair,
        j: 200 + pair,
        class,
        class_name: CLASSES[class].into(),
        endpoints,
        true_class,
        predicted,
        space: space.into(),
        category,
        distance: Some(10.0),
        line_max_loss: Some(line),
        line_min_prob: Some(0.4),
        path_max_loss: Some(path),
        path_min_prob: Some(0.5),
        steps: if category == Category::Linear { 0 } else { 20 },
        pivots: if category == Category::Linear { 2 } else { 8 },
        length_ratio: Some(if category == Category::Linear {
            1.0
        } else {
            1.1 + pair as f64 / 100.0
        }),
        seconds: 0.1,
        path_file: None,
        message: None,
        precision: Default::default(),
    }
}

/// Natural pairs 0..25 with `linear[s]` linear pairs in space `s` (the rest nonlinear),
/// path barrier 0.05 everywhere and line barrier 0.1 · (pair + 1); then 4 pairs
/// misclassified-predicted, 3 misclassified-true and 4 adversarial (line barriers 10 to
/// 13, path barriers 0.05, 0.05, 5, 5) when `extra`.
fn results(linear: [usize; 3], extra: bool) -> Vec<PairResult> {
    let mut out = Vec::new();
    for (s, space) in spaces().iter().enumerate() {
        for k in 0..25 {
            let cat = if k < linear[s] {
                Category::Linear
            } else {
                Category::Nonlinear
            };
            out.push(result(k, space, cat, Endpoints::Natural, 0.1 * (k + 1) as f64, 0.05));
        }
        if !extra {
            continue;
        }
        let mp = [
            Category::Linear,
            Category::Nonlinear,
            Category::Nonlinear,
            Category::NoPath,
        ];
        for (k, c) in mp.into_iter().enumerate() {
            out.push(result(25 + k, space, c, Endpoints::MisclassifiedPredicted, 3.0, 1.0));
        }
        for k in 0..3 {
            out.push(result(
                29 + k,
                space,
                Category::NoPath,
                Endpoints::MisclassifiedTrue,
                4.0,
                2.0,
            ));
        }
        for (k, path) in [0.05, 0.05, 5.0, 5.0].into_iter().enumerate() {
            let line = 10.0 + k as f64;
            out.push(result(
                33 + k,
                space,
                Category::Nonlinear,
                Endpoints::Adversarial,
                line,
                path,
            ));
        }
    }
    out
}

fn manifest(sha: &str, dataset: &str, pairs: usize) -> Manifest {
    let pair_list = (0..pairs)
        .map(|k| Pair {
            pair: k,
            i: 100 + k,
            j: 200 + k,
            class: 0,
            class_name: "cat".into(),
            endpoints: Endpoints::Natural,
            true_class: None,
            predicted: None,
        })
        .collect();
    Manifest {
        tool: "mep 0.1.0".into(),
        settings: Settings {
            arch: "resnet20".into(),
            weights_sha256: sha.repeat(32),
            dataset: dataset.into(),
            classes: CLASSES.map(String::from).to_vec(),
            test_images: 300,
            input_size: Some(32),
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            spaces: spaces(),
            pairs: Some(pairs),
            pairs_file_sha256: None,
            class_filter: vec![],
            allow_misclassified: false,
            endpoints: Default::default(),
            seed: 0,
            pivots: 8,
            sub_points: 4,
            optimizer: "adam".into(),
            step: 0.01,
            momentum: 0.9,
            spring: None,
            climbing_after: None,
            fmax: None,
            check_every: 10,
            insert_threshold: None,
            max_pivots: None,
            max_steps: 100,
            precision: Default::default(),
        },
        weights: "model.safetensors".into(),
        data: dataset.into(),
        shard: None,
        batch: 64,
        pair_list,
        skipped: 0,
        merged_from: vec![],
    }
}

/// A study folder holding `manifest.json`, `results.jsonl` and its tables.
fn study_folder(dir: PathBuf, m: &Manifest, rs: &[PairResult]) -> PathBuf {
    std::fs::create_dir_all(&dir).unwrap();
    m.write(&dir).unwrap();
    study::rewrite_results(&dir, rs).unwrap();
    study::write_tables(&dir, &m.settings.spaces, rs, m.pair_list.len()).unwrap();
    dir
}

fn csv(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.split(',').map(String::from).collect())
        .collect()
}

#[test]
fn table1_has_wilson_intervals_and_medians_and_other_endpoints_apart() {
    let dir = common::tmpdir("report-stats", "tables");
    let rs = results([19, 14, 25], true);
    study_folder(dir.clone(), &manifest("ab", "synthetic", 36), &rs);

    let md = std::fs::read_to_string(dir.join("table1.md")).unwrap();
    // Wilson 95 % for 19/25: 0.5657–0.8850; 14/25: 0.3707–0.7333; 25/25: 0.8668–1.
    assert!(
        md.contains("| linear | 19 (76 %, 57–89 %) | 14 (56 %, 37–73 %) | 25 (100 %, 87–100 %) |"),
        "{md}"
    );
    assert!(
        md.contains("| nonlinear | 6 (24 %, 11–43 %) | 11 (44 %, 27–63 %) | 0 (0 %, 0–13 %) |"),
        "{md}"
    );
    // Only natural pairs are in Table 1; each other kind has its own table.
    assert!(md.contains("| total | 25 | 25 | 25 |"), "{md}");
    for kind in ["misclassified-predicted", "misclassified-true", "adversarial"] {
        assert!(md.contains(&format!("## Endpoints {kind}")), "{kind}: {md}");
    }
    assert!(
        md.contains("| total | 4 | 4 | 4 |") && md.contains("| total | 3 | 3 | 3 |"),
        "{md}"
    );
    assert!(md.contains("bootstrap 95 % intervals"), "{md}");

    // table1.csv: the old columns first, then share, lo and hi per space.
    let t = csv(&dir.join("table1.csv"));
    assert_eq!(
        t[0],
        [
            "category",
            "input",
            "layer1",
            "pool",
            "input_share",
            "input_lo",
            "input_hi",
            "layer1_share",
            "layer1_lo",
            "layer1_hi",
            "pool_share",
            "pool_lo",
            "pool_hi"
        ]
    );
    assert!(t.iter().all(|r| r.len() == t[0].len()), "{t:?}");
    let linear = t.iter().find(|r| r[0] == "linear").unwrap();
    assert_eq!(&linear[1..4], ["19", "14", "25"]);
    let f = |s: &str| s.parse::<f64>().unwrap();
    assert_eq!(f(&linear[4]), 0.76);
    assert!((f(&linear[5]) - 0.5657031648291211).abs() < 1e-12);
    assert!((f(&linear[6]) - 0.8850368637354755).abs() < 1e-12);
    assert_eq!(t.last().unwrap()[0..4], ["total", "25", "25", "25"]);

    // table1_stats.csv: mean ± std kept, medians with intervals added.
    let st = csv(&dir.join("table1_stats.csv"));
    let col = |name: &str| {
        st[0]
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("{name}: {:?}", st[0]))
    };
    assert!(col("line_max_loss_mean") < col("path_max_loss_median"));
    let row = st.iter().find(|r| r[0] == "input" && r[1] == "linear").unwrap();
    assert_eq!(row[2], "19");
    // Line barriers 0.1 … 1.9 of the 19 linear pairs: median 1.0.
    let (m, lo, hi) = (
        f(&row[col("line_max_loss_median")]),
        f(&row[col("line_max_loss_median_lo")]),
        f(&row[col("line_max_loss_median_hi")]),
    );
    assert!(
        (m - 1.0).abs() < 1e-12 && lo < m && m < hi && lo >= 0.1 && hi <= 1.9,
        "{m} {lo} {hi}"
    );
    assert_eq!(f(&row[col("path_max_loss_median_lo")]), 0.05);
    assert!(st.iter().all(|r| r.len() == st[0].len()));
    assert_eq!(st.len(), 1 + 2 + 2 + 1, "natural rows only: {st:?}");

    // table1_endpoints.csv: every kind, long format.
    let e = csv(&dir.join("table1_endpoints.csv"));
    assert_eq!(
        e[0][..8],
        [
            "endpoints",
            "space",
            "category",
            "count",
            "total",
            "share",
            "share_lo",
            "share_hi"
        ]
    );
    let adv = e
        .iter()
        .find(|r| r[0] == "adversarial" && r[1] == "pool" && r[2] == "nonlinear")
        .unwrap();
    assert_eq!((adv[3].as_str(), adv[4].as_str(), f(&adv[5])), ("4", "4", 1.0));
    assert!(e
        .iter()
        .any(|r| r[0] == "natural" && r[1] == "input" && r[2] == "linear" && r[3] == "19"));
    // Rewritten the same from the same results (the bootstrap is seeded).
    let before = std::fs::read(dir.join("table1_stats.csv")).unwrap();
    study::write_tables(&dir, &spaces(), &rs, 36).unwrap();
    assert_eq!(std::fs::read(dir.join("table1_stats.csv")).unwrap(), before);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn endpoint_sections_state_the_class_and_the_barriers_auc() {
    let rs = results([19, 14, 25], true);
    let classes: Vec<String> = CLASSES.map(String::from).to_vec();
    let md = endpoints_markdown(
        &classes,
        &spaces(),
        &rs,
        Some("figures/endpoints_misclassified.png"),
        None,
    );
    assert!(md.contains("## Misclassified endpoints"), "{md}");
    assert!(
        md.contains("### misclassified-predicted: checked in the predicted class"),
        "{md}"
    );
    assert!(md.contains("### misclassified-true: checked in the true class"), "{md}");
    // Misclassified-predicted: label ship, predicted and checked in dog.
    assert!(md.contains("| 25 | 125 | ship | dog | **dog** | 225 |"), "{md}");
    // Misclassified-true: label ship (checked in it), predicted cat.
    assert!(md.contains("| 29 | 129 | ship | cat | **ship** | 229 |"), "{md}");
    // 1 linear of 4 misclassified-predicted: 25 %, Wilson 4.6–70 %.
    assert!(md.contains("| linear | 1 (25 %, 5–70 %) |"), "{md}");
    // Joined shares beside the natural pairs': 25/25 natural, 3/4, 0/3.
    assert!(
        md.contains("| input | 25 (100 %, 87–100 %) | 3 (75 %, 30–95 %) | 0 (0 %, 0–56 %) |"),
        "{md}"
    );
    assert!(md.contains("![joined share per kind of endpoints](figures/endpoints_misclassified.png)"));

    assert!(md.contains("## Adversarial endpoints"), "{md}");
    // Line barriers 10–13 above every natural one (≤ 2.5): AUC 1. Path barriers 0.05, 0.05,
    // 5, 5 against 25 natural 0.05: (2 · 25 · ½ + 2 · 25) / (4 · 25) = 0.75.
    for space in spaces() {
        assert!(md.contains(&format!("| {space} | line_max_loss | ")), "{md}");
        let line = md
            .lines()
            .find(|l| l.starts_with(&format!("| {space} | line_max_loss |")))
            .unwrap();
        assert!(line.ends_with("| 1.000 |"), "{line}");
        let path = md
            .lines()
            .find(|l| l.starts_with(&format!("| {space} | path_max_loss |")))
            .unwrap();
        assert!(path.ends_with("| 0.750 |"), "{path}");
    }
    // Adversarial line medians 11.5 (of 10, 11, 12, 13); natural 1.3 (of 0.1 … 2.5).
    assert!(md.contains("| input | line_max_loss | 11.5000 ["), "{md}");
    assert!(md.contains("| 1.3000 ["), "{md}");
    assert!(
        md.contains("| input | adversarial | 0 (0 %, 0–49 %) | 4 (100 %, 51–100 %) |"),
        "{md}"
    );

    // Natural pairs only: no section at all.
    let plain = endpoints_markdown(&classes, &spaces(), &results([19, 14, 25], false), None, None);
    assert!(plain.is_empty(), "{plain}");
}

#[test]
fn the_figures_by_depth_and_by_endpoints_are_drawn_in_network_order() {
    let dir = common::tmpdir("report-stats", "figures");
    let rs = results([19, 14, 25], true);
    let shuffled: Vec<String> = ["pool", "input", "layer1"].map(String::from).to_vec();
    let out = dir.join("depth.png");
    let counts = mep::figures::depth_figure(&shuffled, &rs, &out).unwrap();
    let order: Vec<&str> = counts.iter().map(|c| c.space.as_str()).collect();
    assert_eq!(order, ["input", "layer1", "pool"]);
    assert_eq!((counts[0].linear, counts[0].nonlinear, counts[0].total()), (19, 6, 25));
    let img = image::open(&out).unwrap().to_rgb8();
    assert!(img.width() >= 560 && img.height() == 480);
    // The linear series is drawn in its colour.
    assert!(img.pixels().any(|p| p.0 == mep::figures::palette::LINEAR));

    let out = dir.join("endpoints.png");
    let kinds = [
        Endpoints::Natural,
        Endpoints::MisclassifiedPredicted,
        Endpoints::MisclassifiedTrue,
    ];
    let per_kind = mep::figures::endpoints_figure(&shuffled, &rs, &kinds, &out).unwrap();
    assert_eq!(per_kind.len(), 3);
    assert_eq!(per_kind[1].1[0].total(), 4);
    assert!(image::open(&out).is_ok());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn compare_sets_two_studies_side_by_side_and_refuses_a_non_study() {
    let root = common::tmpdir("report-stats", "compare");
    let a = study_folder(
        root.join("trained"),
        &manifest("ab", "synthetic", 36),
        &results([19, 14, 25], true),
    );
    let b = study_folder(
        root.join("untrained"),
        &manifest("cd", "cifar10", 25),
        &results([10, 5, 0], false),
    );
    let files = compare(&a, &b).unwrap();
    assert_eq!(files.markdown, a.join("compare.md"));
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    assert!(md.contains("# mep compare: trained beside untrained"), "{md}");
    assert!(md.contains(&format!("`{}`", "ab".repeat(32))) && md.contains(&format!("`{}`", "cd".repeat(32))));
    assert!(md.contains("| dataset | synthetic | cifar10 |"), "{md}");
    // 19/25 against 10/25: +36 points; Newcombe's interval (Python, math only): 8.6 to 56.8.
    assert!(
        md.contains("| input | linear | 19 (76 %, 57–89 %) | 10 (40 %, 23–59 %) | +36 pts [+9, +57] |"),
        "{md}"
    );
    assert!(
        md.contains("| pool | linear | 25 (100 %, 87–100 %) | 0 (0 %, 0–13 %) |"),
        "{md}"
    );
    // Medians side by side; the length ratio over nonlinear pairs only.
    assert!(md.contains("| input | line_max_loss | all pairs | 1.3000 ["), "{md}");
    assert!(md.contains("| pool | length_ratio | nonlinear pairs | — | "), "{md}");
    let html = std::fs::read_to_string(&files.html).unwrap();
    assert!(html.contains("<table>") && html.contains("<title>mep compare</title>"));

    // A folder that is not a study: a clear error, nothing written.
    std::fs::remove_file(a.join("compare.md")).unwrap();
    let not = root.join("not-a-study");
    std::fs::create_dir_all(&not).unwrap();
    let e = compare(&a, &not).unwrap_err().to_string();
    assert!(e.contains("not a study folder") && e.contains("not-a-study"), "{e}");
    assert!(!a.join("compare.md").exists());
    // The report refuses it before drawing anything (this folder has no model).
    let e = report_with(
        &a,
        &ReportOptions {
            compare: Some(not.clone()),
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("not a study folder"), "{e}");
    let e = compare(&a, &root.join("missing")).unwrap_err().to_string();
    assert!(e.contains("no such folder"), "{e}");
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn the_command_line_refuses_a_compare_folder_that_is_not_a_study() {
    let root = common::tmpdir("report-stats", "cli");
    let a = study_folder(
        root.join("a"),
        &manifest("ab", "synthetic", 25),
        &results([19, 14, 25], false),
    );
    let not = root.join("plain");
    std::fs::create_dir_all(&not).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mep"))
        .args(["report", a.to_str().unwrap(), "--compare", not.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("not a study folder") && err.contains("plain"), "{err}");
    assert!(!a.join("report.md").exists() && !a.join("compare.md").exists());
    std::fs::remove_dir_all(&root).ok();
}
