//! The loss plot: the cross-entropy along the densely sampled straight line and found path
//! of one pair in one space, against the dense parameter t.

use super::draw::{font, palette, save_png, Align, Canvas};
use super::plot::{Axes, Scale};
use super::{path_label, FigureContext};
use crate::connect::HeadEnergy;
use crate::study::{Category, PairResult};
use crate::{MepError, Result};
use mep_neb::{Neb, NebConfig, Path as NebPath};
use mep_tensor::Backend;
use std::path::Path;

/// The colour of the found path's pivots.
const PIVOT: [u8; 3] = [150, 75, 0];

/// The energy profile of a path sampled densely: (P − 1)·S + 1 points.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    /// P, the pivots of the path (endpoints included).
    pub pivots: usize,
    /// The dense parameter of each point, (segment + j/S) / (P − 1).
    pub t: Vec<f64>,
    /// The cross-entropy of the target class at each point.
    pub loss: Vec<f64>,
    /// The predicted class at each point.
    pub predicted: Vec<usize>,
    /// The target's softmax probability at each point.
    pub target_prob: Vec<f64>,
}

impl Profile {
    /// The largest loss along the path.
    pub fn max_loss(&self) -> f64 {
        self.loss.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }

    /// How many points are predicted as another class than `target`.
    pub fn leaving(&self, target: usize) -> usize {
        self.predicted.iter().filter(|&&p| p != target).count()
    }
}

/// What [`loss_plot`] drew.
#[derive(Clone, Debug, PartialEq)]
pub struct LossPlot {
    pub width: u32,
    pub height: u32,
    /// The straight line between the endpoints, with the study's N pivots.
    pub line: Profile,
    /// The found path (`None` for a `linear` result: it is the line).
    pub path: Option<Profile>,
}

fn profile<B: Backend>(
    ctx: &FigureContext<B>,
    energy: &mut HeadEnergy<'_, B>,
    path: NebPath<B>,
    s: usize,
) -> Result<Profile> {
    let b = &ctx.backend;
    let pivots = path.pivots();
    let config = NebConfig {
        sub_points: s,
        ..NebConfig::default()
    };
    let d = Neb::new(b, config, path)?.dense(b, energy)?;
    Ok(Profile {
        pivots,
        t: d.t,
        loss: d.energies,
        predicted: d.aux.iter().map(|a| a.predicted).collect(),
        target_prob: d.aux.iter().map(|a| a.target_prob).collect(),
    })
}

/// Draws the loss plot of `result` (a pair in a space) to `out`: the cross-entropy of the
/// target along the straight line (the study's N pivots, as `mep connect` checked it) and
/// along the found path, each sampled at S sub-points per segment (`sub_points`, default
/// the study's), against t ∈ [0, 1]; points predicted as another class are marked red, the
/// found path's pivots by dots. Its maxima are `results.jsonl`'s `line_max_loss` and
/// `path_max_loss` when S is the study's.
///
/// Errors as [`super::pair_figure`]'s, and S = 0.
pub fn loss_plot<B: Backend>(
    ctx: &FigureContext<B>,
    result: &PairResult,
    sub_points: Option<usize>,
    out: &Path,
) -> Result<LossPlot> {
    let s = sub_points.unwrap_or(ctx.manifest.settings.sub_points);
    if s == 0 {
        return Err(MepError::unusable(
            "a loss plot",
            "needs at least 1 sub-point per segment",
        ));
    }
    let path = ctx.read_path(result)?;
    let b = &ctx.backend;
    let dim = path.dim();
    let mut energy =
        HeadEnergy::new(&ctx.net, path.cut, result.class, &path.point_shape)?.with_max_batch(ctx.manifest.batch.max(1));
    let (z1, z2) = (b.upload(path.pivot(0))?, b.upload(path.pivot(path.pivots - 1))?);
    let n = ctx.manifest.settings.pivots.max(2);
    let line = profile(ctx, &mut energy, NebPath::straight(b, &z1, &z2, dim, n)?, s)?;
    let found = if result.category == Category::Linear || path.pivots == 2 {
        None
    } else {
        Some(profile(
            ctx,
            &mut energy,
            NebPath::from_host(b, &path.data, path.pivots, dim)?,
            s,
        )?)
    };

    let f = font()?;
    let (width, height) = (760u32, 470u32);
    let mut c = Canvas::new(width, height, &f);
    let class = &result.class_name;
    c.text(
        16.0,
        12.0,
        17.0,
        palette::TEXT,
        &format!(
            "pair {} (class {class}), space `{}`: cross-entropy along the paths",
            result.pair, result.space
        ),
        Align::Left,
    );
    c.text(16.0, 36.0, 13.0, palette::MUTED, &path_label(result), Align::Left);
    let ymax = std::iter::once(&line)
        .chain(found.as_ref())
        .map(|p| p.max_loss())
        .fold(0.0f64, f64::max);
    let ymax = if ymax.is_finite() && ymax > 0.0 {
        ymax * 1.08
    } else {
        1.0
    };
    let axes = Axes {
        left: 80.0,
        top: 66.0,
        width: 650.0,
        height: 320.0,
        x: Scale {
            lo: 0.0,
            hi: 1.0,
            log: false,
        },
        y: Scale {
            lo: 0.0,
            hi: ymax,
            log: false,
        },
    };
    axes.draw(
        &mut c,
        &axes.x.ticks(5),
        &axes.y.ticks(5),
        &format!("t (dense path parameter; {s} sub-points per segment)"),
        "cross-entropy",
    );
    let curve = |c: &mut Canvas, p: &Profile, color| {
        let pts: Vec<(f64, f64)> =
            p.t.iter()
                .zip(&p.loss)
                .map(|(t, l)| (axes.px(*t), axes.py(l.min(ymax))))
                .collect();
        c.polyline(&pts, 2.2, color);
    };
    let marks = |c: &mut Canvas, p: &Profile| {
        for ((t, l), pr) in p.t.iter().zip(&p.loss).zip(&p.predicted) {
            if *pr != result.class {
                c.disc(axes.px(*t), axes.py(l.min(ymax)), 3.2, palette::TARGET);
            }
        }
    };
    curve(&mut c, &line, palette::LINE);
    if let Some(p) = &found {
        curve(&mut c, p, palette::PATH);
        // The pivots: every S-th dense point.
        for (t, l) in p.t.iter().zip(&p.loss).step_by(s) {
            c.disc(axes.px(*t), axes.py(l.min(ymax)), 3.0, PIVOT);
        }
        marks(&mut c, p);
    }
    marks(&mut c, &line);

    // The legend, under the plot.
    let ly = axes.top + axes.height + 48.0;
    let mut x = axes.left;
    let entry = |c: &mut Canvas, x: &mut f64, color, label: &str, disc: bool| {
        if disc {
            c.disc(*x + 11.0, ly + 8.0, 4.0, color);
        } else {
            c.line(*x, ly + 8.0, *x + 22.0, ly + 8.0, 2.5, color);
        }
        *x += 28.0 + c.text(*x + 28.0, ly, 12.0, palette::TEXT, label, Align::Left) + 18.0;
    };
    let line_label = format!(
        "straight line{} (max {:.3})",
        if found.is_none() { " = found path" } else { "" },
        line.max_loss()
    );
    entry(&mut c, &mut x, palette::LINE, &line_label, false);
    if let Some(p) = &found {
        let l = format!("found path (max {:.3})", p.max_loss());
        entry(&mut c, &mut x, palette::PATH, &l, false);
        entry(&mut c, &mut x, PIVOT, &format!("its {} pivots", p.pivots), true);
    }
    entry(&mut c, &mut x, palette::TARGET, &format!("predicted ≠ {class}"), true);
    save_png(&c.into_image(), out)?;
    Ok(LossPlot {
        width,
        height,
        line,
        path: found,
    })
}
