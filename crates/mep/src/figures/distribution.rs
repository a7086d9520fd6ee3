//! The distribution of the largest loss along the straight line, per space: a box
//! (quartiles, median, min–max whiskers) and one dot per pair coloured by its category.

use super::draw::{font, palette, save_png, Align, Canvas, Rgb};
use super::plot::{Axes, Scale};
use crate::study::{Category, PairResult};
use crate::{MepError, Result};
use std::path::Path;

/// The line maximum losses of one space.
#[derive(Clone, Debug, PartialEq)]
pub struct SpaceSummary {
    pub space: String,
    /// Results with a (finite) `line_max_loss`.
    pub n: usize,
    /// Results of the space without one (errors before the line was checked).
    pub missing: usize,
    /// Smallest, first quartile, median, third quartile, largest (`None` when n = 0).
    /// Quartiles interpolate linearly between order statistics (numpy's default).
    pub five: Option<[f64; 5]>,
}

/// The q-quantile of sorted `v` (linear interpolation between order statistics, as
/// numpy.quantile's default "linear" method, Hyndman & Fan 1996 type 7).
fn quantile(v: &[f64], q: f64) -> f64 {
    let h = (v.len() - 1) as f64 * q;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

fn category_color(c: Category) -> Rgb {
    match c {
        Category::Linear => palette::LINEAR,
        Category::Nonlinear => palette::NONLINEAR,
        Category::NoPath => palette::NONE,
        Category::Error => palette::ERROR,
    }
}

/// A deterministic offset in [−1, 1] for pair `k` (so dots of equal loss do not hide each
/// other, and the figure is the same on every run).
fn jitter(k: usize) -> f64 {
    mep_rng::SplitMix64::new(k as u64).unit_f64() * 2.0 - 1.0
}

/// Draws, for each of `spaces` (in order), the `line_max_loss` of its `results` as a box and
/// dots to `out`; the scale is logarithmic when the values span more than 1.5 decades.
/// Returns each space's summary. Errors: no space, or no result with a line maximum loss.
pub fn max_loss_distribution(spaces: &[String], results: &[PairResult], out: &Path) -> Result<Vec<SpaceSummary>> {
    if spaces.is_empty() {
        return Err(MepError::unusable(
            "the distribution of line maximum losses",
            "needs at least one space",
        ));
    }
    let per_space: Vec<Vec<&PairResult>> = spaces
        .iter()
        .map(|s| results.iter().filter(|r| &r.space == s).collect())
        .collect();
    let value = |r: &PairResult| r.line_max_loss.filter(|v| v.is_finite());
    let mut summaries = Vec::new();
    for (space, rs) in spaces.iter().zip(&per_space) {
        let mut v: Vec<f64> = rs.iter().filter_map(|r| value(r)).collect();
        v.sort_by(f64::total_cmp);
        summaries.push(SpaceSummary {
            space: space.clone(),
            n: v.len(),
            missing: rs.len() - v.len(),
            five: (!v.is_empty()).then(|| {
                [
                    v[0],
                    quantile(&v, 0.25),
                    quantile(&v, 0.5),
                    quantile(&v, 0.75),
                    v[v.len() - 1],
                ]
            }),
        });
    }
    let all: Vec<f64> = per_space.iter().flatten().filter_map(|r| value(r)).collect();
    if all.is_empty() {
        return Err(MepError::unusable(
            "the distribution of line maximum losses",
            format!(
                "no result of the spaces {} has a line maximum loss: nothing to plot",
                spaces.join(", ")
            ),
        ));
    }
    let max = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min_pos = all.iter().copied().filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min);
    let log = min_pos.is_finite() && max / min_pos > 10f64.powf(1.5);
    let y = if log {
        Scale {
            lo: 10f64.powf(min_pos.log10().floor()),
            hi: 10f64.powf(max.log10().ceil()),
            log: true,
        }
    } else {
        Scale {
            lo: 0.0,
            hi: if max > 0.0 { max * 1.1 } else { 1.0 },
            log: false,
        }
    };

    let f = font()?;
    let col_w = 140.0;
    let legend_w = 150.0;
    let left = 90.0;
    let width = (left + col_w * spaces.len() as f64 + legend_w + 20.0).max(560.0) as u32;
    let height = 500u32;
    let mut c = Canvas::new(width, height, &f);
    c.text(
        16.0,
        12.0,
        17.0,
        palette::TEXT,
        "Largest loss along the straight line, per space",
        Align::Left,
    );
    c.text(
        16.0,
        36.0,
        13.0,
        palette::MUTED,
        "one dot per pair, coloured by its category; box: quartiles and median; whiskers: min to max",
        Align::Left,
    );
    let axes = Axes {
        left,
        top: 70.0,
        width: col_w * spaces.len() as f64,
        height: 340.0,
        x: Scale {
            lo: 0.0,
            hi: spaces.len() as f64,
            log: false,
        },
        y,
    };
    axes.draw(
        &mut c,
        &[],
        &axes.y.ticks(5),
        "",
        if log {
            "max cross-entropy on the line (log scale)"
        } else {
            "max cross-entropy on the line"
        },
    );
    let clamp = |v: f64| v.clamp(y.lo, y.hi);
    for (k, (s, rs)) in summaries.iter().zip(&per_space).enumerate() {
        let xc = axes.px(k as f64 + 0.5);
        let bottom = axes.top + axes.height;
        c.text(xc, bottom + 8.0, 13.0, palette::TEXT, &s.space, Align::Center);
        let note = if s.missing > 0 {
            format!("n = {} ({} without)", s.n, s.missing)
        } else {
            format!("n = {}", s.n)
        };
        c.text(xc, bottom + 28.0, 11.0, palette::MUTED, &note, Align::Center);
        let Some([lo, q1, med, q3, hi]) = s.five else {
            c.text(
                xc,
                axes.top + axes.height / 2.0,
                12.0,
                palette::MUTED,
                "no results",
                Align::Center,
            );
            continue;
        };
        let (ylo, yq1, ymed, yq3, yhi) = (
            axes.py(clamp(lo)),
            axes.py(clamp(q1)),
            axes.py(clamp(med)),
            axes.py(clamp(q3)),
            axes.py(clamp(hi)),
        );
        let half = 32.0;
        c.line(xc, yhi, xc, yq3, 1.2, palette::MUTED);
        c.line(xc, yq1, xc, ylo, 1.2, palette::MUTED);
        c.line(xc - 12.0, yhi, xc + 12.0, yhi, 1.2, palette::MUTED);
        c.line(xc - 12.0, ylo, xc + 12.0, ylo, 1.2, palette::MUTED);
        c.fill_rect(
            (xc - half) as i64,
            yq3.round() as i64,
            (2.0 * half) as i64,
            (yq1 - yq3).round().max(1.0) as i64,
            [238, 238, 242],
        );
        c.stroke_rect(
            (xc - half) as i64,
            yq3.round() as i64,
            (2.0 * half) as i64,
            (yq1 - yq3).round().max(1.0) as i64 + 1,
            1,
            palette::MUTED,
        );
        for r in rs {
            if let Some(v) = value(r) {
                let x = xc + jitter(r.pair) * (half - 6.0);
                c.disc(x, axes.py(clamp(v)), 4.0, category_color(r.category));
            }
        }
        c.line(xc - half, ymed, xc + half, ymed, 2.2, palette::BLACK);
    }
    // The legend: the categories present.
    let mut ly = axes.top + 4.0;
    let lx = axes.left + axes.width + 24.0;
    c.text(lx, ly, 12.0, palette::TEXT, "category", Align::Left);
    ly += 22.0;
    for cat in [Category::Linear, Category::Nonlinear, Category::NoPath, Category::Error] {
        if per_space
            .iter()
            .flatten()
            .any(|r| r.category == cat && value(r).is_some())
        {
            c.disc(lx + 6.0, ly + 8.0, 4.5, category_color(cat));
            c.text(lx + 18.0, ly, 12.0, palette::TEXT, &cat.to_string(), Align::Left);
            ly += 20.0;
        }
    }
    save_png(&c.into_image(), out)?;
    Ok(summaries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_like_numpy() {
        // numpy.quantile([1, 2, 3, 4], [0.25, 0.5, 0.75]) = [1.75, 2.5, 3.25].
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.25), 1.75);
        assert_eq!(quantile(&v, 0.5), 2.5);
        assert_eq!(quantile(&v, 0.75), 3.25);
        assert_eq!(quantile(&[7.0], 0.5), 7.0);
    }

    #[test]
    fn jitter_is_in_range_and_spread() {
        let v: Vec<f64> = (0..1000).map(jitter).collect();
        assert!(v.iter().all(|x| (-1.0..1.0).contains(x)));
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.1, "{mean}");
    }
}
