//! Shares across spaces with their Wilson 95 % intervals ([`crate::study::stats::wilson`]):
//! [`depth_figure`], the linear and nonlinear shares of Table 1 with the spaces in network
//! order (does connectivity grow with depth, as the paper's input, `layer1` and `pool`
//! suggest?), and [`endpoints_figure`], the share of joined pairs (linear or nonlinear) per
//! space for each kind of endpoints (natural, misclassified, adversarial) as grouped bars.

use super::draw::{font, palette, save_png, Align, Canvas, Rgb};
use super::plot::{Axes, Scale};
use crate::study::{count, of_endpoints, stats, Category, Endpoints, PairResult, SpaceCounts};
use crate::{MepError, Result};
use mep_resnet::Cut;
use std::path::Path;

/// The file name of [`depth_figure`] in [`super::FIGURES`].
pub const DEPTH_FIGURE: &str = "depth.png";
/// The file name of [`endpoints_figure`] for misclassified endpoints in [`super::FIGURES`].
pub const MISCLASSIFIED_FIGURE: &str = "endpoints_misclassified.png";
/// The file name of [`endpoints_figure`] for adversarial endpoints in [`super::FIGURES`].
pub const ADVERSARIAL_FIGURE: &str = "endpoints_adversarial.png";

/// `spaces` from the input to the last layer (input, stem, layer1 … layer4, pool); names
/// that are not cuts keep their order after them.
pub fn network_order(spaces: &[String]) -> Vec<String> {
    let mut v: Vec<(Option<Cut>, usize, String)> = spaces
        .iter()
        .enumerate()
        .map(|(i, s)| (s.parse::<Cut>().ok(), i, s.clone()))
        .collect();
    // Known cuts first, by depth; the rest by their given position.
    v.sort_by(|a, b| match (a.0, b.0) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.1.cmp(&b.1),
    });
    v.into_iter().map(|(_, _, s)| s).collect()
}

/// One series of a share chart: `k` of `n` per space (`n = 0`: nothing drawn there).
struct Series {
    name: String,
    color: Rgb,
    shares: Vec<(usize, usize)>,
}

#[derive(Clone, Copy, PartialEq)]
enum Style {
    /// Points joined by lines, with error bars: a trend across spaces.
    Points,
    /// Grouped bars with error bars: kinds side by side within a space.
    Bars,
}

/// Draws `series` over the columns `xlabels`, y = share in [0, 1] with the Wilson 95 %
/// interval of each as an error bar, to `out`.
fn share_chart(
    title: &str,
    subtitle: &str,
    xlabels: &[String],
    series: &[Series],
    style: Style,
    out: &Path,
) -> Result<()> {
    let f = font()?;
    let col_w = 130.0;
    let left = 90.0;
    let legend_w = 230.0;
    let width = (left + col_w * xlabels.len() as f64 + legend_w).max(560.0) as u32;
    let height = 480u32;
    let mut c = Canvas::new(width, height, &f);
    c.text(16.0, 12.0, 17.0, palette::TEXT, title, Align::Left);
    c.text(16.0, 36.0, 13.0, palette::MUTED, subtitle, Align::Left);
    let axes = Axes {
        left,
        top: 70.0,
        width: col_w * xlabels.len() as f64,
        height: 320.0,
        x: Scale {
            lo: 0.0,
            hi: xlabels.len() as f64,
            log: false,
        },
        y: Scale {
            lo: 0.0,
            hi: 1.0,
            log: false,
        },
    };
    let yticks: Vec<(f64, String)> = axes
        .y
        .ticks(5)
        .into_iter()
        .map(|(v, _)| (v, format!("{:.0} %", 100.0 * v)))
        .collect();
    axes.draw(&mut c, &[], &yticks, "", "share of pairs (Wilson 95 % interval)");
    let bottom = axes.top + axes.height;
    let ns = series.len().max(1) as f64;
    for (k, label) in xlabels.iter().enumerate() {
        let xc = axes.px(k as f64 + 0.5);
        c.text(xc, bottom + 8.0, 13.0, palette::TEXT, label, Align::Center);
        let mut ns_here: Vec<String> = series
            .iter()
            .filter(|s| s.shares[k].1 > 0)
            .map(|s| s.shares[k].1.to_string())
            .collect();
        // Series of one set of pairs (the depth figure's) share their n: say it once.
        if ns_here.windows(2).all(|w| w[0] == w[1]) {
            ns_here.truncate(1);
        }
        if !ns_here.is_empty() {
            c.text(
                xc,
                bottom + 28.0,
                11.0,
                palette::MUTED,
                &format!("n = {}", ns_here.join(" / ")),
                Align::Center,
            );
        }
    }
    let group = 0.7 * col_w;
    let slot = group / ns;
    let error_bar = |c: &mut Canvas, x: f64, lo: f64, hi: f64, color: Rgb| {
        let (ylo, yhi) = (axes.py(lo), axes.py(hi));
        c.line(x, ylo, x, yhi, 1.4, color);
        c.line(x - 5.0, ylo, x + 5.0, ylo, 1.4, color);
        c.line(x - 5.0, yhi, x + 5.0, yhi, 1.4, color);
    };
    for (si, s) in series.iter().enumerate() {
        // Each series sits at its own offset in the column so the error bars do not overlap.
        let dx = -group / 2.0 + slot * (si as f64 + 0.5);
        let mut line: Vec<(f64, f64)> = Vec::new();
        for (k, &(hits, n)) in s.shares.iter().enumerate() {
            if n == 0 {
                if style == Style::Points && line.len() > 1 {
                    c.polyline(&line, 1.6, s.color);
                }
                line.clear();
                continue;
            }
            let x = axes.px(k as f64 + 0.5) + if style == Style::Bars { dx } else { dx * 0.25 };
            let p = hits as f64 / n as f64;
            let (lo, hi) = stats::wilson(hits, n);
            match style {
                Style::Bars => {
                    let top = axes.py(p);
                    let w = (slot * 0.85).max(2.0);
                    c.fill_rect(
                        (x - w / 2.0).round() as i64,
                        top.round() as i64,
                        w.round() as i64,
                        (bottom - top).round().max(1.0) as i64,
                        s.color,
                    );
                    error_bar(&mut c, x, lo, hi, palette::BLACK);
                }
                Style::Points => {
                    error_bar(&mut c, x, lo, hi, s.color);
                    line.push((x, axes.py(p)));
                }
            }
        }
        if style == Style::Points {
            if line.len() > 1 {
                c.polyline(&line, 1.6, s.color);
            }
            for (k, &(hits, n)) in s.shares.iter().enumerate() {
                if n > 0 {
                    let x = axes.px(k as f64 + 0.5) + dx * 0.25;
                    c.disc(x, axes.py(hits as f64 / n as f64), 4.5, s.color);
                }
            }
        }
    }
    let lx = axes.left + axes.width + 24.0;
    let mut ly = axes.top + 4.0;
    for s in series {
        c.fill_rect(lx as i64, ly as i64 + 2, 14, 12, s.color);
        c.text(lx + 20.0, ly, 12.0, palette::TEXT, &s.name, Align::Left);
        ly += 20.0;
    }
    save_png(&c.into_image(), out)
}

fn no_spaces(what: &str) -> MepError {
    MepError::unusable(what, "needs at least one space")
}

/// Draws the linear and nonlinear shares of Table 1 (natural pairs only) per space, spaces
/// in network order ([`network_order`]), each with its Wilson 95 % interval, to `out`.
/// Returns the counts drawn, in that order.
pub fn depth_figure(spaces: &[String], results: &[PairResult], out: &Path) -> Result<Vec<SpaceCounts>> {
    if spaces.is_empty() {
        return Err(no_spaces("the figure of the linear share by depth"));
    }
    let order = network_order(spaces);
    let counts = count(&order, &of_endpoints(results, Endpoints::Natural));
    let series = |name: &str, color, cat| Series {
        name: name.to_string(),
        color,
        shares: counts.iter().map(|c| (c.get(cat), c.total())).collect(),
    };
    share_chart(
        "Linear and nonlinear share by depth",
        "pairs with natural endpoints (Table 1); bars: Wilson 95 % score intervals",
        &order,
        &[
            series("linear (straight line)", palette::LINEAR, Category::Linear),
            series("nonlinear (NEB path)", palette::NONLINEAR, Category::Nonlinear),
        ],
        Style::Points,
        out,
    )?;
    Ok(counts)
}

/// The colour of an endpoint kind in [`endpoints_figure`].
fn endpoints_color(e: Endpoints) -> Rgb {
    match e {
        Endpoints::Natural => palette::LINE,
        Endpoints::MisclassifiedPredicted => palette::PATH,
        Endpoints::MisclassifiedTrue => [148, 103, 189],
        Endpoints::Adversarial => palette::TARGET,
    }
}

/// Draws, per space (network order), the share of pairs joined in the class (linear or
/// nonlinear) for each of `kinds` as grouped bars with Wilson 95 % intervals, to `out`.
/// Returns the counts per kind, spaces in that order.
pub fn endpoints_figure(
    spaces: &[String],
    results: &[PairResult],
    kinds: &[Endpoints],
    out: &Path,
) -> Result<Vec<(Endpoints, Vec<SpaceCounts>)>> {
    if spaces.is_empty() {
        return Err(no_spaces("the figure of joined shares per endpoint kind"));
    }
    let order = network_order(spaces);
    let counts: Vec<(Endpoints, Vec<SpaceCounts>)> = kinds
        .iter()
        .map(|&k| (k, count(&order, &of_endpoints(results, k))))
        .collect();
    let series: Vec<Series> = counts
        .iter()
        .map(|(k, cs)| Series {
            name: k.to_string(),
            color: endpoints_color(*k),
            shares: cs.iter().map(|c| (c.linear + c.nonlinear, c.total())).collect(),
        })
        .collect();
    share_chart(
        "Pairs joined in the class, per kind of endpoints",
        "share joined by the line or an NEB path; bars: Wilson 95 % score intervals",
        &order,
        &series,
        Style::Bars,
        out,
    )?;
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_sort_from_input_to_pool() {
        let s: Vec<String> = ["pool", "layer3", "input", "odd", "stem", "layer1"]
            .map(String::from)
            .to_vec();
        assert_eq!(network_order(&s), ["input", "stem", "layer1", "layer3", "pool", "odd"]);
    }
}
