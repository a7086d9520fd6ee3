//! The pair figure: K points along the straight line and along the found path of one pair
//! in one space, each as an image above the network's softmax over the classes.

use super::draw::{font, palette, save_png, shorten, upscale, Align, Canvas};
use super::{argmax, path_label, FigureContext, PathPivots, Rect, MIN_IMAGE_PX};
use crate::study::{Category, PairResult};
use crate::{MepError, Result};
use image::RgbImage;
use mep_resnet::Cut;
use mep_tensor::Backend;
use std::path::Path;

/// One column of a row of a pair figure.
#[derive(Clone, Debug, PartialEq)]
pub struct PairCell {
    /// The point's dense parameter t ∈ [0, 1] along its path ((segment + fraction) / (P − 1),
    /// as on the loss plot's axis).
    pub t: f64,
    /// The point's arc-length fraction along its path (the columns are evenly spaced in it).
    pub arc: f64,
    /// The class the network predicts at the point.
    pub predicted: usize,
    /// The softmax over the classes.
    pub probs: Vec<f64>,
    /// Whether the prediction differs from the target (the cell has a red frame).
    pub left_class: bool,
    /// Where the image (or placeholder) is.
    pub image: Rect,
    /// Where the bar chart is.
    pub chart: Rect,
    /// The target class's bar (red).
    pub target_bar: Rect,
}

/// One row of a pair figure: a path.
#[derive(Clone, Debug, PartialEq)]
pub struct PairRow {
    /// The row's title ("straight line", "found path (…)").
    pub label: String,
    pub cells: Vec<PairCell>,
}

/// What [`pair_figure`] drew.
#[derive(Clone, Debug, PartialEq)]
pub struct PairFigure {
    pub width: u32,
    pub height: u32,
    /// The straight line, then the found path (one row only for a `linear` result, whose
    /// found path is the line).
    pub rows: Vec<PairRow>,
    /// Whether the cells show images (false: a latent cut without a decoder, placeholders).
    pub images: bool,
}

/// Points sampled along a path: their coordinates (rows), dense parameters t and arc-length
/// fractions.
type Samples = (Vec<f32>, Vec<f64>, Vec<f64>);

/// `k` points evenly spaced by arc length along the polyline through the `p` rows of
/// `data` (each `dim` values): the points, their dense parameters t and arc fractions.
fn along(data: &[f32], p: usize, dim: usize, k: usize) -> Samples {
    let seg: Vec<f64> = (0..p - 1)
        .map(|s| {
            let (a, b) = (&data[s * dim..(s + 1) * dim], &data[(s + 1) * dim..(s + 2) * dim]);
            a.iter()
                .zip(b)
                .map(|(x, y)| (*y as f64 - *x as f64).powi(2))
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    let total: f64 = seg.iter().sum();
    let mut points = Vec::with_capacity(k * dim);
    let (mut ts, mut arcs) = (Vec::with_capacity(k), Vec::with_capacity(k));
    for q in 0..k {
        let u = q as f64 / (k - 1) as f64;
        // The segment s and the fraction f of it where the point lies.
        let (s, f) = if total > 0.0 {
            let target = u * total;
            let mut acc = 0.0;
            let mut found = (p - 2, 1.0);
            for (s, &l) in seg.iter().enumerate() {
                if target <= acc + l || s == p - 2 {
                    found = (
                        s,
                        if l > 0.0 {
                            ((target - acc) / l).clamp(0.0, 1.0)
                        } else {
                            0.0
                        },
                    );
                    break;
                }
                acc += l;
            }
            found
        } else {
            let x = u * (p - 1) as f64;
            let s = (x.floor() as usize).min(p - 2);
            (s, x - s as f64)
        };
        let (a, b) = (&data[s * dim..(s + 1) * dim], &data[(s + 1) * dim..(s + 2) * dim]);
        points.extend(
            a.iter()
                .zip(b)
                .map(|(x, y)| ((1.0 - f) * *x as f64 + f * *y as f64) as f32),
        );
        ts.push((s as f64 + f) / (p - 1) as f64);
        arcs.push(u);
    }
    (points, ts, arcs)
}

/// Draws the pair figure of `result` (a pair in a space) to `out`: one row for the straight
/// line between the path's endpoints and one for the found path (only the line's row for a
/// `linear` result), each with `k` points evenly spaced by arc length. A cell shows the
/// point's image (the de-normalised input at `input`; the decoder's image of a latent point,
/// or a placeholder "no decoder for <cut>"), enlarged to at least [`MIN_IMAGE_PX`], the
/// network's softmax below it with the target's bar in red, and a red frame with
/// "→ <class>" where the prediction is another class.
///
/// Errors: `k` < 2, a result without a path file (category `error`), a missing or
/// malformed path file (see [`FigureContext::read_path`]), an unwritable `out`.
pub fn pair_figure<B: Backend>(
    ctx: &FigureContext<B>,
    result: &PairResult,
    k: usize,
    out: &Path,
) -> Result<PairFigure> {
    if k < 2 {
        return Err(MepError::unusable(
            "a pair figure",
            format!("needs at least 2 points per path (k = {k})"),
        ));
    }
    let path: PathPivots = ctx.read_path(result)?;
    let classes = &ctx.manifest.settings.classes;
    if result.class >= classes.len() {
        return Err(MepError::Results {
            path: ctx.dir.join(crate::study::RESULTS),
            msg: format!(
                "pair {} has class {}, but the study has {} classes",
                result.pair,
                result.class,
                classes.len()
            ),
        });
    }
    let dim = path.dim();
    let p = path.pivots;
    let line_only = result.category == Category::Linear || p == 2;
    let mut ends = path.pivot(0).to_vec();
    ends.extend_from_slice(path.pivot(p - 1));
    let mut rows: Vec<(String, Samples)> = vec![(
        if line_only {
            format!("straight line = found path ({})", path_label(result))
        } else {
            "straight line".to_string()
        },
        along(&ends, 2, dim, k),
    )];
    if !line_only {
        rows.push((
            format!("found path ({})", path_label(result)),
            along(&path.data, p, dim, k),
        ));
    }
    let all: Vec<f32> = rows.iter().flat_map(|r| r.1 .0.iter().copied()).collect();
    let probs = ctx.head_probs(path.cut, &path.point_shape, &all)?;
    let images = ctx.point_images(path.cut, &path.point_shape, &all)?;

    let f = font()?;
    let measure = Canvas::new(1, 1, &f);
    let side = images
        .as_ref()
        .and_then(|v| v.first())
        .map_or(MIN_IMAGE_PX as u32, |i| i.width());
    let factor = (MIN_IMAGE_PX as u32).div_ceil(side).max(1);
    let img_w = images
        .as_ref()
        .and_then(|v| v.first())
        .map_or(MIN_IMAGE_PX as u32, |i| i.width() * factor);
    let img_h = images
        .as_ref()
        .and_then(|v| v.first())
        .map_or(MIN_IMAGE_PX as u32, |i| i.height() * factor);
    let n_classes = classes.len();
    let show_names = n_classes <= 20;
    let name_size = 10.0f32;
    let names: Vec<String> = classes.iter().map(|c| shorten(c, 14)).collect();
    let chart_w = img_w.max(if show_names { 12 * n_classes as u32 } else { 0 });
    let cell_w = chart_w.max(img_w) + 8;
    let gap = 12u32;
    let margin = 14u32;
    let caption_h = 16u32;
    let status_h = 18u32;
    let chart_h = 50u32;
    let names_h = if show_names {
        names
            .iter()
            .map(|n| measure.text_width(name_size, n))
            .fold(0.0, f64::max)
            .ceil() as u32
            + 6
    } else {
        20
    };
    let label_h = 24u32;
    let row_h = label_h + caption_h + 6 + img_h + 4 + status_h + chart_h + names_h + 14;
    let title = format!(
        "pair {}: test images {} and {} (class {}), space `{}`",
        result.pair, result.i, result.j, result.class_name, result.space
    );
    let fmt = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.3}"));
    let subtitle = format!(
        "{}: largest loss on the line {}, on the found path {}",
        result.category,
        fmt(result.line_max_loss),
        fmt(result.path_max_loss)
    );
    let mut footer = vec![format!(
        "Columns: {k} points evenly spaced by arc length along each path; t is the dense parameter of the loss plot. \
         Bars: softmax over the classes, the target {} in red.",
        result.class_name
    )];
    footer.push("A red frame and \"→ class\" mark a point the network puts in another class.".to_string());
    if images.is_none() {
        footer.push(format!(
            "No decoder for `{}`: put one at {}/{}.safetensors in the study folder (mep decoder train) to see its \
             points as images.",
            path.cut,
            super::DECODERS,
            path.cut
        ));
    }
    let content_w = k as u32 * cell_w + (k as u32 - 1) * gap;
    let text_w = std::iter::once(measure.text_width(17.0, &title))
        .chain(std::iter::once(measure.text_width(13.0, &subtitle)))
        .chain(footer.iter().map(|s| measure.text_width(12.0, s)))
        .fold(0.0, f64::max)
        .ceil() as u32;
    let width = 2 * margin + content_w.max(text_w);
    let top = margin + 26 + 22;
    let height = top + rows.len() as u32 * row_h + footer.len() as u32 * 17 + margin;
    let mut c = Canvas::new(width, height, &f);
    c.text(margin as f64, margin as f64, 17.0, palette::TEXT, &title, Align::Left);
    c.text(
        margin as f64,
        (margin + 26) as f64,
        13.0,
        palette::MUTED,
        &subtitle,
        Align::Left,
    );

    let mut drawn = Vec::new();
    let mut point = 0usize;
    for (r, (label, (_, ts, arcs))) in rows.iter().enumerate() {
        let y0 = top + r as u32 * row_h;
        c.text(margin as f64, y0 as f64 + 2.0, 14.0, palette::TEXT, label, Align::Left);
        let mut cells = Vec::new();
        for q in 0..k {
            let x0 = margin + q as u32 * (cell_w + gap);
            let pr = &probs[point];
            let predicted = argmax(pr);
            let left = predicted != result.class;
            let cx = x0 as f64 + cell_w as f64 / 2.0;
            let cy = y0 + label_h;
            c.text(
                cx,
                cy as f64,
                11.0,
                palette::MUTED,
                &format!("t = {:.2}", ts[q]),
                Align::Center,
            );
            let ix = x0 + (cell_w - img_w) / 2;
            let iy = cy + caption_h + 6;
            match &images {
                Some(imgs) => c.blit(&fit(&imgs[point], factor, img_w, img_h), ix as i64, iy as i64),
                None => placeholder(&mut c, path.cut, ix, iy, img_w, img_h),
            }
            if left {
                c.stroke_rect(
                    ix as i64 - 4,
                    iy as i64 - 4,
                    img_w as i64 + 8,
                    img_h as i64 + 8,
                    3,
                    palette::TARGET,
                );
            } else {
                c.stroke_rect(
                    ix as i64 - 1,
                    iy as i64 - 1,
                    img_w as i64 + 2,
                    img_h as i64 + 2,
                    1,
                    palette::FRAME,
                );
            }
            let sy = iy + img_h + 6;
            if left {
                let name = shorten(&classes[predicted], 16);
                c.text(
                    cx,
                    sy as f64,
                    12.0,
                    palette::TARGET,
                    &format!("→ {name}"),
                    Align::Center,
                );
            } else {
                let s = format!("p = {:.2}", pr[result.class]);
                c.text(cx, sy as f64, 12.0, palette::MUTED, &s, Align::Center);
            }
            let chart = Rect {
                x: x0 + (cell_w - chart_w) / 2,
                y: sy + status_h,
                w: chart_w,
                h: chart_h,
            };
            let target_bar = bars(&mut c, &chart, pr, result.class);
            if show_names {
                let bw = chart.w as f64 / n_classes as f64;
                for (cl, name) in names.iter().enumerate() {
                    let color = if cl == result.class {
                        palette::TARGET
                    } else {
                        palette::MUTED
                    };
                    let x = chart.x as f64 + (cl as f64 + 0.5) * bw;
                    c.text_vertical(x, (chart.y + chart.h + 4) as f64, name_size, color, name, true);
                }
            } else if q == 0 {
                let s = format!("target: {}", shorten(&result.class_name, 20));
                c.text(
                    chart.x as f64,
                    (chart.y + chart.h + 3) as f64,
                    11.0,
                    palette::TARGET,
                    &s,
                    Align::Left,
                );
            }
            cells.push(super::PairCell {
                t: ts[q],
                arc: arcs[q],
                predicted,
                probs: pr.clone(),
                left_class: left,
                image: Rect {
                    x: ix,
                    y: iy,
                    w: img_w,
                    h: img_h,
                },
                chart,
                target_bar,
            });
            point += 1;
        }
        drawn.push(PairRow {
            label: label.clone(),
            cells,
        });
    }
    let fy = top + rows.len() as u32 * row_h;
    for (n, line) in footer.iter().enumerate() {
        c.text(
            margin as f64,
            (fy + n as u32 * 17) as f64,
            12.0,
            palette::MUTED,
            line,
            Align::Left,
        );
    }
    save_png(&c.into_image(), out)?;
    Ok(PairFigure {
        width,
        height,
        rows: drawn,
        images: images.is_some(),
    })
}

/// `img` enlarged by `factor`, or (a decoder's output of another size) resized to w × h.
fn fit(img: &RgbImage, factor: u32, w: u32, h: u32) -> RgbImage {
    let up = upscale(img, factor);
    if up.dimensions() == (w, h) {
        up
    } else {
        image::imageops::resize(img, w, h, image::imageops::FilterType::Nearest)
    }
}

/// A grey box saying "no decoder for <cut>".
fn placeholder(c: &mut Canvas, cut: Cut, x: u32, y: u32, w: u32, h: u32) {
    c.fill_rect(x as i64, y as i64, w as i64, h as i64, palette::PLACEHOLDER);
    let cx = x as f64 + w as f64 / 2.0;
    let cy = y as f64 + h as f64 / 2.0;
    c.text(cx, cy - 16.0, 12.0, palette::MUTED, "no decoder", Align::Center);
    c.text(cx, cy + 1.0, 12.0, palette::MUTED, &format!("for {cut}"), Align::Center);
}

/// The bar chart of `probs` in `chart` (heights: probability × chart height, at least one
/// pixel), the `target` bar in red and drawn last; returns the target bar's rectangle.
fn bars(c: &mut Canvas, chart: &Rect, probs: &[f64], target: usize) -> Rect {
    let n = probs.len().max(1);
    let bw = chart.w as f64 / n as f64;
    let bottom = (chart.y + chart.h) as i64;
    c.fill_rect(chart.x as i64, chart.y as i64, chart.w as i64, 1, palette::GRID);
    let bar = |cl: usize, min_w: i64| {
        let x0 = (chart.x as f64 + cl as f64 * bw).round() as i64;
        let x1 = (chart.x as f64 + (cl + 1) as f64 * bw).round() as i64;
        let inset = if bw >= 6.0 { 1 } else { 0 };
        let w = (x1 - x0 - 2 * inset).max(min_w);
        let h = ((probs[cl].clamp(0.0, 1.0) * (chart.h - 1) as f64).round() as i64).max(1);
        (x0 + inset, bottom - h, w, h)
    };
    for cl in (0..probs.len()).filter(|&cl| cl != target) {
        let (x, y, w, h) = bar(cl, 1);
        c.fill_rect(x, y, w, h, palette::BAR);
    }
    let (x, y, w, h) = bar(target, 2);
    c.fill_rect(x, y, w, h, palette::TARGET);
    c.fill_rect(chart.x as i64, bottom, chart.w as i64, 1, palette::MUTED);
    Rect {
        x: x as u32,
        y: y as u32,
        w: w as u32,
        h: h as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_evenly_spaced_by_arc_length() {
        // An L-shaped path (0,0) → (3,0) → (3,1): length 4, so 5 points lie at arc 0, 1, 2,
        // 3, 4, i.e. (0,0), (1,0), (2,0), (3,0), (3,1); their t is (segment + fraction) / 2.
        let data = [0.0, 0.0, 3.0, 0.0, 3.0, 1.0];
        let (pts, ts, arcs) = along(&data, 3, 2, 5);
        let want = [0.0, 0.0, 1.0, 0.0, 2.0, 0.0, 3.0, 0.0, 3.0, 1.0];
        for (a, b) in pts.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{pts:?}");
        }
        let want_t = [0.0, 1.0 / 6.0, 2.0 / 6.0, 0.5, 1.0];
        for (a, b) in ts.iter().zip(want_t) {
            assert!((a - b).abs() < 1e-12, "{ts:?}");
        }
        assert_eq!(arcs, [0.0, 0.25, 0.5, 0.75, 1.0]);
    }

    #[test]
    fn a_path_of_length_zero_is_sampled_by_t() {
        let data = [1.0f32; 6];
        let (pts, ts, _) = along(&data, 3, 2, 3);
        assert_eq!(pts, vec![1.0; 6]);
        assert_eq!(ts, [0.0, 0.5, 1.0]);
    }
}
