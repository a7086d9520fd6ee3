//! The tables of a study: Table 1 of Gu & Borovykh (2023) (how many pairs are joined by
//! the straight line, by a non-linear path, or by neither, per space), each share with its
//! Wilson 95 % interval ([`stats::wilson`]), the mean ± std of each recorded figure per
//! space and category, and the medians of the barrier heights and length ratios with
//! bootstrap 95 % intervals ([`stats::median_ci`]). Table 1 counts the paper's pairs
//! (natural endpoints) only; pairs with misclassified or adversarial endpoints get tables
//! of their own. Rewritten atomically after every result.

use super::certificates::{self, CertificateRecord};
use super::stats;
use super::store::write_atomic;
use super::{Category, Endpoints, PairResult};
use crate::Result;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

/// The counts of one space's column of Table 1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SpaceCounts {
    /// The space (column).
    pub space: String,
    /// Pairs joined by the straight line.
    pub linear: usize,
    /// Pairs joined by a path the NEB found.
    pub nonlinear: usize,
    /// Pairs joined by neither.
    pub none: usize,
    /// Searches that met a non-finite energy.
    pub error: usize,
}

impl SpaceCounts {
    /// The results counted in this column.
    pub fn total(&self) -> usize {
        self.linear + self.nonlinear + self.none + self.error
    }

    /// The share of category `c` in this column and its Wilson 95 % interval, `None` for
    /// an empty column.
    pub fn share(&self, c: Category) -> Option<(f64, f64, f64)> {
        let (k, n) = (self.get(c), self.total());
        (n > 0).then(|| {
            let (lo, hi) = stats::wilson(k, n);
            (k as f64 / n as f64, lo, hi)
        })
    }

    /// The count of category `c`.
    pub fn get(&self, c: Category) -> usize {
        match c {
            Category::Linear => self.linear,
            Category::Nonlinear => self.nonlinear,
            Category::NoPath => self.none,
            Category::Error => self.error,
        }
    }
}

/// Table 1: the count of each category per space, spaces in the order given.
pub fn count(spaces: &[String], results: &[PairResult]) -> Vec<SpaceCounts> {
    spaces
        .iter()
        .map(|s| {
            let mut c = SpaceCounts {
                space: s.clone(),
                linear: 0,
                nonlinear: 0,
                none: 0,
                error: 0,
            };
            for r in results.iter().filter(|r| &r.space == s) {
                match r.category {
                    Category::Linear => c.linear += 1,
                    Category::Nonlinear => c.nonlinear += 1,
                    Category::NoPath => c.none += 1,
                    Category::Error => c.error += 1,
                }
            }
            c
        })
        .collect()
}

/// The results whose endpoints are `kind`, in their order.
pub fn of_endpoints(results: &[PairResult], kind: Endpoints) -> Vec<PairResult> {
    results.iter().filter(|r| r.endpoints == kind).cloned().collect()
}

/// The endpoint kinds other than natural that `results` hold, in [`Endpoints`] order.
pub fn other_endpoints(results: &[PairResult]) -> Vec<Endpoints> {
    let mut kinds: Vec<Endpoints> = results
        .iter()
        .map(|r| r.endpoints)
        .filter(|e| !e.is_natural())
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    kinds
}

/// A cell of Table 1: the count, its share and the share's Wilson 95 % interval, as
/// `19 (76 %, 57–89 %)`; a bare `0` for an empty column.
pub fn share_cell(k: usize, n: usize) -> String {
    if n == 0 {
        return "0".to_string();
    }
    let (lo, hi) = stats::wilson(k, n);
    format!(
        "{k} ({:.0} %, {:.0}–{:.0} %)",
        100.0 * k as f64 / n as f64,
        100.0 * lo,
        100.0 * hi
    )
}

/// The rows Table 1 shows: error only when some result is one.
fn rows(counts: &[SpaceCounts]) -> Vec<Category> {
    let mut rows = vec![Category::Linear, Category::Nonlinear, Category::NoPath];
    if counts.iter().any(|c| c.error > 0) {
        rows.push(Category::Error);
    }
    rows
}

/// One recorded figure of a result, by name.
struct Figure {
    name: &'static str,
    get: fn(&PairResult) -> Option<f64>,
}

const FIGURES: [Figure; 8] = [
    Figure {
        name: "line_max_loss",
        get: |r| r.line_max_loss,
    },
    Figure {
        name: "line_min_prob",
        get: |r| r.line_min_prob,
    },
    Figure {
        name: "path_max_loss",
        get: |r| r.path_max_loss,
    },
    Figure {
        name: "path_min_prob",
        get: |r| r.path_min_prob,
    },
    Figure {
        name: "steps",
        get: |r| Some(r.steps as f64),
    },
    Figure {
        name: "pivots",
        get: |r| Some(r.pivots as f64),
    },
    Figure {
        name: "length_ratio",
        get: |r| r.length_ratio,
    },
    Figure {
        name: "seconds",
        get: |r| Some(r.seconds),
    },
];

/// Mean and sample standard deviation (n − 1) of the finite values; the std is `None`
/// below two values, both are `None` without any.
fn mean_std(values: impl Iterator<Item = f64>) -> (usize, Option<f64>, Option<f64>) {
    let v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    let n = v.len();
    if n == 0 {
        return (0, None, None);
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    let std = (n > 1).then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt());
    (n, Some(mean), std)
}

pub(crate) fn fmt_num(x: f64) -> String {
    if x != 0.0 && (x.abs() >= 1e4 || x.abs() < 1e-3) {
        format!("{x:.3e}")
    } else {
        format!("{x:.4}")
    }
}

/// The non-empty (space, category) groups of `results`, spaces in the order given and
/// categories in Table 1's row order: the rows of the tables of figures.
fn groups<'a>(spaces: &'a [String], results: &'a [PairResult]) -> Vec<(&'a str, Category, Vec<&'a PairResult>)> {
    let counts = count(spaces, results);
    let mut out = Vec::new();
    for space in spaces {
        for row in rows(&counts) {
            let sel: Vec<&PairResult> = results
                .iter()
                .filter(|r| &r.space == space && r.category == row)
                .collect();
            if !sel.is_empty() {
                out.push((space.as_str(), row, sel));
            }
        }
    }
    out
}

/// The columns' totals joined by `sep`: the total row of Table 1.
pub(crate) fn totals(counts: &[SpaceCounts], sep: &str) -> String {
    counts
        .iter()
        .map(|c| c.total().to_string())
        .collect::<Vec<_>>()
        .join(sep)
}

/// The figures whose medians the tables give with bootstrap intervals: the barrier heights
/// (largest loss along the final path and along the line) and the length ratio.
pub const MEDIAN_FIGURES: [&str; 3] = ["path_max_loss", "line_max_loss", "length_ratio"];

fn median_figure(name: &str) -> fn(&PairResult) -> Option<f64> {
    match name {
        "path_max_loss" => |r| r.path_max_loss,
        "line_max_loss" => |r| r.line_max_loss,
        _ => |r| r.length_ratio,
    }
}

/// The median of figure `name` (one of [`MEDIAN_FIGURES`]) over `results` with its
/// bootstrap 95 % interval ([`stats::median_ci`], seeded with [`stats::BOOTSTRAP_SEED`]).
pub fn median_of(name: &str, results: &[&PairResult]) -> Option<(f64, f64, f64)> {
    let get = median_figure(name);
    let v: Vec<f64> = results.iter().filter_map(|r| get(r)).collect();
    stats::median_ci(&v, stats::BOOTSTRAP_SEED)
}

/// The medians of [`MEDIAN_FIGURES`] of one set of results per (space, category),
/// bootstrapped once for all the tables that show them.
struct Medians(HashMap<(String, Category), [MedianCi; 3]>);

/// A median with its bootstrap interval, `(median, lo, hi)`, if there were values.
type MedianCi = Option<(f64, f64, f64)>;

impl Medians {
    fn new(spaces: &[String], results: &[PairResult]) -> Self {
        Medians(
            groups(spaces, results)
                .into_iter()
                .map(|(space, row, sel)| ((space.to_string(), row), MEDIAN_FIGURES.map(|f| median_of(f, &sel))))
                .collect(),
        )
    }

    fn get(&self, space: &str, row: Category) -> [MedianCi; 3] {
        self.0.get(&(space.to_string(), row)).copied().unwrap_or([None; 3])
    }
}

/// A median with its interval as `1.234 [0.98, 1.50]`, or `—`.
pub fn median_cell(m: Option<(f64, f64, f64)>) -> String {
    m.map_or("—".to_string(), |(m, lo, hi)| {
        format!("{} [{}, {}]", fmt_num(m), fmt_num(lo), fmt_num(hi))
    })
}

/// Table 1 of `results` (all of one endpoint kind) as Markdown rows under a header of
/// `spaces`: each cell the count with its share and Wilson interval, then a total row.
pub fn counts_markdown(spaces: &[String], results: &[PairResult]) -> String {
    let counts = count(spaces, results);
    let mut s = String::new();
    let _ = writeln!(s, "| path | {} |", spaces.join(" | "));
    let _ = writeln!(s, "|---|{}", "---:|".repeat(spaces.len()));
    for row in rows(&counts) {
        let cells: Vec<String> = counts.iter().map(|c| share_cell(c.get(row), c.total())).collect();
        let _ = writeln!(s, "| {row} | {} |", cells.join(" | "));
    }
    let _ = writeln!(s, "| total | {} |", totals(&counts, " | "));
    s
}

/// The medians of [`MEDIAN_FIGURES`] per space and category of `results` as a Markdown
/// table, each with its bootstrap 95 % interval.
pub fn medians_markdown(spaces: &[String], results: &[PairResult]) -> String {
    medians_markdown_with(spaces, results, &Medians::new(spaces, results))
}

fn medians_markdown_with(spaces: &[String], results: &[PairResult], medians: &Medians) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "| space | category | n | {} |", MEDIAN_FIGURES.join(" | "));
    let _ = writeln!(s, "|---|---|---:|{}", "---:|".repeat(MEDIAN_FIGURES.len()));
    for (space, row, sel) in groups(spaces, results) {
        let cells: Vec<String> = medians.get(space, row).into_iter().map(median_cell).collect();
        let _ = writeln!(s, "| {space} | {row} | {} | {} |", sel.len(), cells.join(" | "));
    }
    s
}

/// Table 1 as Markdown (counts with the share of each column and its Wilson 95 %
/// interval) over the natural pairs, a table per other endpoint kind, then the table of
/// figures (mean ± std per space and category) and the medians with bootstrap intervals.
pub fn markdown(spaces: &[String], results: &[PairResult], pairs: usize) -> String {
    let natural = of_endpoints(results, Endpoints::Natural);
    markdown_with(spaces, results, &natural, pairs, &Medians::new(spaces, &natural))
}

/// [`markdown`] given the natural results and their medians.
fn markdown_with(
    spaces: &[String],
    all: &[PairResult],
    results: &[PairResult],
    pairs: usize,
    medians: &Medians,
) -> String {
    let counts = count(spaces, results);
    let mut s = String::new();
    let _ = writeln!(s, "# Table 1: how pairs of one class are joined\n");
    let _ = writeln!(
        s,
        "{pairs} pairs; results so far per space: {}.{}\n",
        counts
            .iter()
            .map(|c| format!("{} {}", c.space, c.total()))
            .collect::<Vec<_>>()
            .join(", "),
        if results.len() < all.len() {
            format!(
                " Table 1 counts the {} results of pairs with natural endpoints; the other {} have tables of \
                 their own below.",
                results.len(),
                all.len() - results.len()
            )
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        s,
        "Each cell: the count, its share of the column and the share's Wilson 95 % score interval.\n"
    );
    s.push_str(&counts_markdown(spaces, results));
    for kind in other_endpoints(all) {
        let _ = writeln!(s, "\n## Endpoints {kind}\n");
        let _ = writeln!(s, "{}\n", endpoints_note(kind));
        s.push_str(&counts_markdown(spaces, &of_endpoints(all, kind)));
    }
    let _ = writeln!(s, "\n## Figures per space and category (mean ± std)\n");
    let _ = writeln!(
        s,
        "| space | category | n | {} |",
        FIGURES.iter().map(|f| f.name).collect::<Vec<_>>().join(" | ")
    );
    let _ = writeln!(s, "|---|---|---:|{}", "---:|".repeat(FIGURES.len()));
    for (space, row, sel) in groups(spaces, results) {
        let cells: Vec<String> = FIGURES
            .iter()
            .map(|f| match mean_std(sel.iter().filter_map(|r| (f.get)(r))) {
                (_, Some(m), Some(sd)) => format!("{} ± {}", fmt_num(m), fmt_num(sd)),
                (_, Some(m), None) => fmt_num(m),
                _ => "—".to_string(),
            })
            .collect();
        let _ = writeln!(s, "| {space} | {row} | {} | {} |", sel.len(), cells.join(" | "));
    }
    let _ = writeln!(
        s,
        "\n## Medians per space and category (bootstrap 95 % intervals)\n\nEach cell: the median, then in \
         brackets the 2.5 % and 97.5 % quantiles of the medians of {} resamples drawn with replacement \
         (percentile bootstrap, seeded: the same on every run).\n",
        stats::BOOTSTRAP_RESAMPLES
    );
    s.push_str(&medians_markdown_with(spaces, results, medians));
    s
}

/// What the `class` of a pair with endpoints `kind` is, in one sentence.
pub fn endpoints_note(kind: Endpoints) -> &'static str {
    match kind {
        Endpoints::Natural => "Two correctly classified test images of the class (the paper's pairs).",
        Endpoints::MisclassifiedPredicted => {
            "The first image is misclassified; the path is checked in the class the model predicts for it."
        }
        Endpoints::MisclassifiedTrue => {
            "The first image is misclassified; the path is checked in its true class (its label)."
        }
        Endpoints::Adversarial => {
            "The first image is adversarial (`mep attack`); the path is checked in the class the model \
             puts it in."
        }
    }
}

/// Table 1 as CSV over the natural pairs: a row per category, a column of counts per
/// space, and a `total` row; then, for each space, `SPACE_share`, `SPACE_lo` and
/// `SPACE_hi` (the share as a fraction and its Wilson 95 % interval; empty in the total row).
pub fn table1_csv(spaces: &[String], results: &[PairResult]) -> String {
    let natural = of_endpoints(results, Endpoints::Natural);
    let counts = count(spaces, &natural);
    let mut s = format!("category,{}", spaces.join(","));
    for sp in spaces {
        let _ = write!(s, ",{sp}_share,{sp}_lo,{sp}_hi");
    }
    s.push('\n');
    for row in rows(&counts) {
        let cells: Vec<String> = counts.iter().map(|c| c.get(row).to_string()).collect();
        let _ = write!(s, "{row},{}", cells.join(","));
        for c in &counts {
            match c.share(row) {
                Some((p, lo, hi)) => {
                    let _ = write!(s, ",{p},{lo},{hi}");
                }
                None => s.push_str(",,,"),
            }
        }
        s.push('\n');
    }
    let _ = writeln!(s, "total,{}{}", totals(&counts, ","), ",,,".repeat(spaces.len()));
    s
}

/// `,median,lo,hi` of each of [`MEDIAN_FIGURES`] (empty fields where there is none).
fn median_columns(medians: [MedianCi; 3]) -> String {
    let mut s = String::new();
    for m in medians {
        match m {
            Some((m, lo, hi)) => {
                let _ = write!(s, ",{m},{lo},{hi}");
            }
            None => s.push_str(",,,"),
        }
    }
    s
}

/// The figures as CSV over the natural pairs: a row per space and category with n, the
/// mean and std of each figure, then the median of each of [`MEDIAN_FIGURES`] with its
/// bootstrap 95 % interval (`NAME_median`, `NAME_median_lo`, `NAME_median_hi`).
pub fn stats_csv(spaces: &[String], results: &[PairResult]) -> String {
    let natural = of_endpoints(results, Endpoints::Natural);
    stats_csv_with(spaces, &natural, &Medians::new(spaces, &natural))
}

/// [`stats_csv`] given the natural results and their medians.
fn stats_csv_with(spaces: &[String], results: &[PairResult], medians: &Medians) -> String {
    let mut s = String::from("space,category,n");
    for f in &FIGURES {
        let _ = write!(s, ",{0}_mean,{0}_std", f.name);
    }
    for f in MEDIAN_FIGURES {
        let _ = write!(s, ",{f}_median,{f}_median_lo,{f}_median_hi");
    }
    s.push('\n');
    let opt = |x: Option<f64>| x.map_or(String::new(), |v| v.to_string());
    for (space, row, sel) in groups(spaces, results) {
        let _ = write!(s, "{space},{row},{}", sel.len());
        for f in &FIGURES {
            let (_, m, sd) = mean_std(sel.iter().filter_map(|r| (f.get)(r)));
            let _ = write!(s, ",{},{}", opt(m), opt(sd));
        }
        s.push_str(&median_columns(medians.get(space, row)));
        s.push('\n');
    }
    s
}

/// Every endpoint kind's Table 1 in one long CSV (`table1_endpoints.csv`, a row per
/// endpoint kind, space and category present): `endpoints,space,category,count,total,
/// share,share_lo,share_hi`, then the medians of [`MEDIAN_FIGURES`] with their bootstrap
/// intervals. Natural pairs are the rows of Table 1.
pub fn endpoints_csv(spaces: &[String], results: &[PairResult]) -> String {
    let natural = of_endpoints(results, Endpoints::Natural);
    endpoints_csv_with(spaces, results, &Medians::new(spaces, &natural))
}

/// [`endpoints_csv`] given the natural results' medians.
fn endpoints_csv_with(spaces: &[String], results: &[PairResult], natural: &Medians) -> String {
    let mut s = String::from("endpoints,space,category,count,total,share,share_lo,share_hi");
    for f in MEDIAN_FIGURES {
        let _ = write!(s, ",{f}_median,{f}_median_lo,{f}_median_hi");
    }
    s.push('\n');
    let mut kinds = vec![Endpoints::Natural];
    kinds.extend(other_endpoints(results));
    for kind in kinds {
        let of_kind = of_endpoints(results, kind);
        let counts = count(spaces, &of_kind);
        let computed;
        let medians = if kind.is_natural() {
            natural
        } else {
            computed = Medians::new(spaces, &of_kind);
            &computed
        };
        for c in &counts {
            if c.total() == 0 {
                continue;
            }
            for row in rows(&counts) {
                let (p, lo, hi) = c.share(row).unwrap_or((0.0, 0.0, 1.0));
                let _ = write!(s, "{kind},{},{row},{},{},{p},{lo},{hi}", c.space, c.get(row), c.total());
                s.push_str(&median_columns(medians.get(&c.space, row)));
                s.push('\n');
            }
        }
    }
    s
}

/// The exact verdicts of `mep certify` as Markdown rows under Table 1: per space, how many
/// of the certified paths are certified, refuted or undecided. Empty without certificates.
pub fn certified_markdown(spaces: &[String], certs: &[CertificateRecord]) -> String {
    if certs.is_empty() {
        return String::new();
    }
    let counts = certificates::count(spaces, certs);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n## Exact certification (`mep certify`)\n\nOf each space's saved paths (straight lines of linear \
         pairs, found paths of the others), how many stay in the class at every point (certified), leave it \
         between the sampled points (refuted), or could not be decided.\n"
    );
    let _ = writeln!(s, "| exact | {} |", spaces.join(" | "));
    let _ = writeln!(s, "|---|{}", "---:|".repeat(spaces.len()));
    type Pick = fn(&(String, usize, usize, usize)) -> usize;
    let rows: [(&str, Pick); 3] = [("certified", |c| c.1), ("refuted", |c| c.2), ("undecided", |c| c.3)];
    for (name, get) in rows {
        let cells: Vec<String> = counts
            .iter()
            .map(|c| format!("{} of {}", get(c), c.1 + c.2 + c.3))
            .collect();
        let _ = writeln!(s, "| {name} | {} |", cells.join(" | "));
    }
    s
}

/// Writes `table1.md`, `table1.csv`, `table1_stats.csv` and `table1_endpoints.csv` into
/// `dir`, each atomically,
/// with the exact verdicts of `dir/certificates.jsonl` when there are any.
pub fn write_tables(dir: &Path, spaces: &[String], results: &[PairResult], pairs: usize) -> Result<()> {
    let certs = certificates::read_certificates(dir)?;
    // The bootstrap is the costly part: once per rewrite for the three files.
    let natural = of_endpoints(results, Endpoints::Natural);
    let medians = Medians::new(spaces, &natural);
    let mut md = markdown_with(spaces, results, &natural, pairs, &medians);
    let mut csv = table1_csv(spaces, results);
    let exact = certified_markdown(spaces, &certs);
    if !exact.is_empty() {
        let at = md.find("\n## Figures").unwrap_or(md.len());
        md.insert_str(at, &exact);
        for (i, name) in ["certified", "refuted", "undecided"].iter().enumerate() {
            let cells: Vec<String> = certificates::count(spaces, &certs)
                .iter()
                .map(|c| [c.1, c.2, c.3][i].to_string())
                .collect();
            // Empty share columns keep every row as wide as the header.
            let _ = writeln!(csv, "{name},{}{}", cells.join(","), ",,,".repeat(spaces.len()));
        }
    }
    write_atomic(&dir.join("table1.md"), md.as_bytes())?;
    write_atomic(&dir.join("table1.csv"), csv.as_bytes())?;
    write_atomic(
        &dir.join("table1_stats.csv"),
        stats_csv_with(spaces, &natural, &medians).as_bytes(),
    )?;
    write_atomic(
        &dir.join("table1_endpoints.csv"),
        endpoints_csv_with(spaces, results, &medians).as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_std() {
        // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, sample variance 32/7.
        let (n, m, s) = mean_std([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0, f64::NAN].into_iter());
        assert_eq!(n, 8);
        assert_eq!(m, Some(5.0));
        assert!((s.unwrap() - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_std([3.0].into_iter()), (1, Some(3.0), None));
    }
}
