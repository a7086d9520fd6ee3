//! The figure of a class graph (`mep graph`): each node is its image, placed by
//! classical multidimensional scaling of the distances in the space, and each examined
//! edge a line coloured by how the pair is joined (the spanning tree of barriers drawn
//! thicker).

use super::draw::{font, palette, save_png, Align, Canvas, Rgb};
use crate::Result;
use image::RgbImage;
use std::path::Path;

const SIDE: u32 = 900;
const MARGIN: f64 = 40.0;
const TOP: f64 = 64.0;

/// 2-D coordinates of `n` points from their pairwise distances `dist(a, b)`: classical
/// MDS (the two leading eigenvectors of the double-centred squared distances, by power
/// iteration from a fixed start, so the layout is the same on every run).
pub fn mds_layout(n: usize, dist: impl Fn(usize, usize) -> f64) -> Vec<(f64, f64)> {
    if n == 0 {
        return Vec::new();
    }
    let mut m = vec![0.0f64; n * n];
    for a in 0..n {
        for b in 0..n {
            if a != b {
                let d = dist(a, b);
                m[a * n + b] = if d.is_finite() { d * d } else { 0.0 };
            }
        }
    }
    let row: Vec<f64> = (0..n)
        .map(|a| m[a * n..(a + 1) * n].iter().sum::<f64>() / n as f64)
        .collect();
    let all = row.iter().sum::<f64>() / n as f64;
    for a in 0..n {
        for b in 0..n {
            m[a * n + b] = -0.5 * (m[a * n + b] - row[a] - row[b] + all);
        }
    }
    let mut axes: Vec<Vec<f64>> = Vec::new();
    for k in 0..2 {
        let mut v: Vec<f64> = (0..n).map(|a| 1.0 + ((a * 7 + k * 3) % 11) as f64 / 11.0).collect();
        let mut lambda = 0.0;
        for _ in 0..200 {
            let mut w: Vec<f64> = (0..n).map(|a| (0..n).map(|b| m[a * n + b] * v[b]).sum()).collect();
            for u in &axes {
                let un: f64 = u.iter().map(|x| x * x).sum();
                if un > 0.0 {
                    let p: f64 = w.iter().zip(u).map(|(x, y)| x * y).sum::<f64>() / un;
                    for (x, y) in w.iter_mut().zip(u) {
                        *x -= p * y;
                    }
                }
            }
            let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm == 0.0 || !norm.is_finite() {
                break;
            }
            lambda = norm;
            v = w.into_iter().map(|x| x / norm).collect();
        }
        axes.push(v.iter().map(|x| x * lambda.sqrt()).collect());
    }
    (0..n).map(|a| (axes[0][a], axes[1][a])).collect()
}

/// How an edge of a graph figure is drawn: the kinds of `mep graph`'s edges that are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgeStyle {
    Linear,
    Nonlinear,
    None,
    Error,
}

impl EdgeStyle {
    fn colour(self) -> (Rgb, f64) {
        match self {
            EdgeStyle::Linear => (palette::LINEAR, 1.5),
            EdgeStyle::Nonlinear => (palette::NONLINEAR, 2.0),
            EdgeStyle::None => (palette::NONE, 1.5),
            EdgeStyle::Error => (palette::ERROR, 1.0),
        }
    }
}

/// What a graph figure shows besides its nodes.
pub struct GraphPicture<'a> {
    pub title: &'a str,
    /// Legend entries: a style and its label (e.g. "linear (28)").
    pub legend: &'a [(EdgeStyle, String)],
    /// A grey note after the legend.
    pub note: &'a str,
    /// Edges `(a, b, style, thick)`: node indices, and whether to draw it thicker.
    pub edges: &'a [(usize, usize, EdgeStyle, bool)],
    /// Nodes framed in the target colour (e.g. adversarial images); may be empty.
    pub marked: &'a [bool],
}

/// Draws `pic` with `layout` (one point per node) and `thumbs` (each node's image) to `out`.
pub fn graph_figure(pic: &GraphPicture<'_>, layout: &[(f64, f64)], thumbs: &[RgbImage], out: &Path) -> Result<()> {
    let font = font()?;
    let mut c = Canvas::new(SIDE, SIDE, &font);
    let thumb = thumbs.first().map_or(24, |t| t.width()) as f64;
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in layout {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    let span = (x1 - x0).max(y1 - y0).max(1e-12);
    let inner = SIDE as f64 - 2.0 * MARGIN - thumb;
    let px = |p: (f64, f64)| -> (f64, f64) {
        (
            MARGIN + thumb / 2.0 + (p.0 - x0) / span * inner,
            TOP + thumb / 2.0 + (p.1 - y0) / span * (inner - (TOP - MARGIN)),
        )
    };
    c.text(MARGIN, 10.0, 18.0, palette::TEXT, pic.title, Align::Left);
    let mut x = MARGIN;
    for (style, label) in pic.legend {
        let (col, _) = style.colour();
        c.line(x, 44.0, x + 22.0, 44.0, 3.0, col);
        x += 28.0;
        x += c.text(x, 36.0, 13.0, palette::TEXT, label, Align::Left) + 18.0;
    }
    c.text(x, 36.0, 13.0, palette::MUTED, pic.note, Align::Left);
    for &(a, b, style, thick) in pic.edges {
        let (Some(&pa), Some(&pb)) = (layout.get(a), layout.get(b)) else {
            continue;
        };
        let (col, w) = style.colour();
        let ((ax, ay), (bx, by)) = (px(pa), px(pb));
        c.line(ax, ay, bx, by, if thick { w + 2.0 } else { w }, col);
    }
    for (k, (t, &p)) in thumbs.iter().zip(layout).enumerate() {
        let (cx, cy) = px(p);
        let (l, tp) = ((cx - thumb / 2.0).round() as i64, (cy - thumb / 2.0).round() as i64);
        // A marked node gets a wider frame in the target colour.
        let (f, col) = if pic.marked.get(k).copied().unwrap_or(false) {
            (3, palette::TARGET)
        } else {
            (1, palette::FRAME)
        };
        c.fill_rect(l - f, tp - f, t.width() as i64 + 2 * f, t.height() as i64 + 2 * f, col);
        c.blit(t, l, tp);
    }
    save_png(&c.into_image(), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mds_recovers_points_on_a_line_up_to_sign_and_shift() {
        let pos: [f64; 4] = [0.0, 1.0, 3.0, 6.0];
        let l = mds_layout(4, |a, b| (pos[a] - pos[b]).abs());
        let d = |a: usize, b: usize| ((l[a].0 - l[b].0).powi(2) + (l[a].1 - l[b].1).powi(2)).sqrt();
        for a in 0..4 {
            for b in 0..4 {
                assert!((d(a, b) - (pos[a] - pos[b]).abs()).abs() < 1e-6, "{a} {b}");
            }
        }
    }
}
