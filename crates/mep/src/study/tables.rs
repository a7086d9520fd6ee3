//! The tables of a study: Table 1 of Gu & Borovykh (2023) (how many pairs are joined by
//! the straight line, by a non-linear path, or by neither, per space) and the mean ± std
//! of each recorded figure per space and category. Rewritten atomically after every result.

use super::certificates::{self, CertificateRecord};
use super::store::write_atomic;
use super::{Category, PairResult};
use crate::Result;
use serde::Serialize;
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

    fn get(&self, c: Category) -> usize {
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

fn fmt_num(x: f64) -> String {
    if x != 0.0 && (x.abs() >= 1e4 || x.abs() < 1e-3) {
        format!("{x:.3e}")
    } else {
        format!("{x:.4}")
    }
}

/// Table 1 as Markdown (counts with the share of each column) followed by the table of
/// figures, mean ± std per space and category.
pub fn markdown(spaces: &[String], results: &[PairResult], pairs: usize) -> String {
    let counts = count(spaces, results);
    let mut s = String::new();
    let _ = writeln!(s, "# Table 1: how pairs of one class are joined\n");
    let _ = writeln!(
        s,
        "{pairs} pairs; results so far per space: {}.\n",
        counts
            .iter()
            .map(|c| format!("{} {}", c.space, c.total()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(s, "| path | {} |", spaces.join(" | "));
    let _ = writeln!(s, "|---|{}", "---:|".repeat(spaces.len()));
    for row in rows(&counts) {
        let cells: Vec<String> = counts
            .iter()
            .map(|c| {
                let n = c.get(row);
                let t = c.total();
                if t == 0 {
                    "0".to_string()
                } else {
                    format!("{n} ({:.1} %)", 100.0 * n as f64 / t as f64)
                }
            })
            .collect();
        let _ = writeln!(s, "| {row} | {} |", cells.join(" | "));
    }
    let _ = writeln!(
        s,
        "| total | {} |",
        counts
            .iter()
            .map(|c| c.total().to_string())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(s, "\n## Figures per space and category (mean ± std)\n");
    let _ = writeln!(
        s,
        "| space | category | n | {} |",
        FIGURES.iter().map(|f| f.name).collect::<Vec<_>>().join(" | ")
    );
    let _ = writeln!(s, "|---|---|---:|{}", "---:|".repeat(FIGURES.len()));
    for space in spaces {
        for row in rows(&counts) {
            let sel: Vec<&PairResult> = results
                .iter()
                .filter(|r| &r.space == space && r.category == row)
                .collect();
            if sel.is_empty() {
                continue;
            }
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
    }
    s
}

/// Table 1 as CSV: a row per category, a column of counts per space, and a `total` row.
pub fn table1_csv(spaces: &[String], results: &[PairResult]) -> String {
    let counts = count(spaces, results);
    let mut s = format!("category,{}\n", spaces.join(","));
    for row in rows(&counts) {
        let cells: Vec<String> = counts.iter().map(|c| c.get(row).to_string()).collect();
        let _ = writeln!(s, "{row},{}", cells.join(","));
    }
    let _ = writeln!(
        s,
        "total,{}",
        counts
            .iter()
            .map(|c| c.total().to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    s
}

/// The figures as CSV: a row per space and category with n, then mean and std of each.
pub fn stats_csv(spaces: &[String], results: &[PairResult]) -> String {
    let counts = count(spaces, results);
    let mut s = String::from("space,category,n");
    for f in &FIGURES {
        let _ = write!(s, ",{0}_mean,{0}_std", f.name);
    }
    s.push('\n');
    let opt = |x: Option<f64>| x.map_or(String::new(), |v| v.to_string());
    for space in spaces {
        for row in rows(&counts) {
            let sel: Vec<&PairResult> = results
                .iter()
                .filter(|r| &r.space == space && r.category == row)
                .collect();
            if sel.is_empty() {
                continue;
            }
            let _ = write!(s, "{space},{row},{}", sel.len());
            for f in &FIGURES {
                let (_, m, sd) = mean_std(sel.iter().filter_map(|r| (f.get)(r)));
                let _ = write!(s, ",{},{}", opt(m), opt(sd));
            }
            s.push('\n');
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

/// Writes `table1.md`, `table1.csv` and `table1_stats.csv` into `dir`, each atomically,
/// with the exact verdicts of `dir/certificates.jsonl` when there are any.
pub fn write_tables(dir: &Path, spaces: &[String], results: &[PairResult], pairs: usize) -> Result<()> {
    let certs = certificates::read_certificates(dir)?;
    let mut md = markdown(spaces, results, pairs);
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
            let _ = writeln!(csv, "{name},{}", cells.join(","));
        }
    }
    write_atomic(&dir.join("table1.md"), md.as_bytes())?;
    write_atomic(&dir.join("table1.csv"), csv.as_bytes())?;
    write_atomic(&dir.join("table1_stats.csv"), stats_csv(spaces, results).as_bytes())
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
