//! The report's figures, as PNG files (Gu & Borovykh 2023, Figs. 2–5 show the same
//! things):
//!
//! - [`pair_figure`]: for one pair in one space, K points evenly spaced by arc length along
//!   the straight line and along the found path, each as an image (the input itself, or the
//!   decoder's image of a latent point) above a bar chart of the network's softmax, the
//!   target class's bar in red and a red frame where the prediction leaves the class;
//! - [`loss_plot`]: the cross-entropy along the densely sampled line and path against the
//!   dense parameter t ∈ [0, 1], with the points where the prediction leaves the class;
//! - [`max_loss_distribution`]: the largest loss along the straight line, per space, over
//!   all pairs of a study (`results.jsonl`'s `line_max_loss`);
//! - [`reconstructions`]: test images beside `decode(encode(x, cut))` for each cut that
//!   has a decoder;
//! - [`depth_figure`]: the linear and nonlinear shares per space in network order, with
//!   Wilson 95 % intervals; [`endpoints_figure`]: the joined share per space for each kind
//!   of endpoints (natural, misclassified, adversarial).
//!
//! [`FigureContext::open`] reads a study folder of `mep connect` through
//! [`crate::study::Study`] (its manifest, network and dataset) with the decoders in
//! `DIR/decoders/<cut>.safetensors`, and [`render_study`] draws every figure into `DIR/figures/`. Pictures are drawn with the `image` crate and
//! text in DejaVu Sans, embedded in the binary (`assets/DejaVuSans.ttf`), so the figures
//! look the same on a machine without fonts.
//!
//! ```no_run
//! use mep::figures::{render_study, FigureContext, FigureOptions};
//! let ctx = FigureContext::open("runs/study".as_ref())?;
//! for f in render_study(&ctx, &FigureOptions::default())? {
//!     println!("{} ({:.2} s)", f.path.display(), f.seconds);
//! }
//! # Ok::<(), mep::MepError>(())
//! ```

mod depth;
mod distribution;
mod draw;
mod graph;
mod loss;
mod pair;
mod plot;
mod recon;

pub use depth::{
    depth_figure, endpoints_figure, network_order, ADVERSARIAL_FIGURE, DEPTH_FIGURE, MISCLASSIFIED_FIGURE,
};
pub use distribution::{max_loss_distribution, SpaceSummary};
pub use draw::palette;
pub use graph::{graph_figure, mds_layout, EdgeStyle, GraphPicture};
pub use loss::{loss_plot, LossPlot, Profile};
pub use pair::{pair_figure, PairCell, PairFigure, PairRow};
pub use recon::{default_indices, reconstructions, Reconstructions};

pub use crate::study::PathPivots;
use crate::study::{Category, Manifest, PairResult, Study, RESULTS};
use crate::{MepError, Result};
use image::RgbImage;
use mep_data::Dataset;
use mep_decoder::{Decoder, Source};
use mep_resnet::{Cut, FoldedResNet};
use mep_tensor::{Backend, CpuBackend, Tensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Points per path in a pair figure unless told otherwise.
pub const DEFAULT_K: usize = 8;
/// Images are enlarged (nearest neighbour, by an integer factor) to at least this side.
pub const MIN_IMAGE_PX: usize = 96;
/// The folder of a study that holds its decoders, one `<cut>.safetensors` per cut.
pub const DECODERS: &str = "decoders";
/// The folder of a study that [`render_study`] draws into.
pub const FIGURES: &str = "figures";

/// A rectangle of a figure, in pixels from its top-left corner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl Rect {
    /// The pixel at the centre.
    pub fn center(&self) -> (u32, u32) {
        (self.x + self.w / 2, self.y + self.h / 2)
    }
}

/// What the figures of a study need: the study, read through [`Study`] (its backend,
/// network, manifest, folder and dataset, reached through `Deref`), and the decoders by cut.
pub struct FigureContext<B: Backend> {
    /// The study the figures draw.
    pub study: Study<B>,
    /// A decoder per latent cut; a cut without one gets placeholders in pair figures.
    pub decoders: BTreeMap<Cut, Decoder<B>>,
}

impl<B: Backend> std::ops::Deref for FigureContext<B> {
    type Target = Study<B>;
    fn deref(&self) -> &Study<B> {
        &self.study
    }
}

impl FigureContext<CpuBackend> {
    /// Opens the study folder `dir` of `mep connect` on the CPU backend ([`Study::open`])
    /// and every decoder in `dir/decoders/<cut>.safetensors`.
    pub fn open(dir: &Path) -> Result<Self> {
        let mut ctx = FigureContext::from_study(Study::open(dir)?);
        ctx.load_decoders()?;
        Ok(ctx)
    }
}

impl<B: Backend> FigureContext<B> {
    /// A context for the study in `dir` described by `manifest`, drawn with `net` on
    /// `backend`; no decoders yet. Errors as [`Study::new`] does.
    pub fn new(backend: B, net: FoldedResNet<B>, manifest: Manifest, dir: impl Into<PathBuf>) -> Result<Self> {
        Ok(FigureContext::from_study(Study::new(backend, net, manifest, dir)?))
    }

    /// A context for `study`, without decoders yet.
    pub fn from_study(study: Study<B>) -> Self {
        FigureContext {
            study,
            decoders: BTreeMap::new(),
        }
    }

    /// The same context with `data` as the study's dataset ([`Study::with_dataset`]).
    pub fn with_dataset(self, data: Dataset) -> Result<Self> {
        Ok(FigureContext {
            study: self.study.with_dataset(data)?,
            decoders: self.decoders,
        })
    }

    /// Loads the decoder at `path` for `cut`; refused when it was made for another
    /// architecture, cut, input size or width of network.
    pub fn load_decoder(&mut self, cut: Cut, path: &Path) -> Result<()> {
        let d = crate::decoder::load_decoder(&self.backend, path, &self.net, cut, self.input_size()?)?;
        self.decoders.insert(cut, d);
        Ok(())
    }

    /// Adds a decoder already in hand, checked against the network as
    /// [`FigureContext::load_decoder`] checks a file.
    pub fn insert_decoder(&mut self, decoder: Decoder<B>) -> Result<()> {
        let cut = decoder.config.cut;
        let want = Source {
            arch: self.net.arch,
            cut,
            input_size: self.input_size()?,
            in_shape: self.point_shape(cut)?,
        };
        decoder.config.check_source(Path::new("the decoder given"), &want)?;
        self.decoders.insert(cut, decoder);
        Ok(())
    }

    /// Loads every `dir/decoders/<cut>.safetensors` there is (for the cuts of the
    /// architecture other than `input`); returns their cuts.
    pub fn load_decoders(&mut self) -> Result<Vec<Cut>> {
        let mut found = Vec::new();
        for cut in self.net.arch.cuts() {
            if cut == Cut::Input {
                continue;
            }
            let path = self.dir.join(DECODERS).join(format!("{cut}.safetensors"));
            if path.is_file() {
                self.load_decoder(cut, &path)?;
                found.push(cut);
            }
        }
        Ok(found)
    }

    /// The softmax over the classes at each of the points (rows of `points`, of `shape`
    /// at `cut`), in batches of the study's `batch`.
    pub fn head_probs(&self, cut: Cut, shape: &[usize], points: &[f32]) -> Result<Vec<Vec<f64>>> {
        let b = &self.backend;
        let dim: usize = shape.iter().product();
        let c = self.net.num_classes;
        let mut out = Vec::with_capacity(points.len() / dim.max(1));
        for chunk in points.chunks(self.manifest.batch.max(1) * dim.max(1)) {
            let mut dims = vec![chunk.len() / dim];
            dims.extend_from_slice(shape);
            let z = Tensor::from_slice(b, dims.as_slice(), chunk)?;
            let logits = self.net.head(b, &z, cut)?.to_vec(b)?;
            out.extend(logits.chunks(c).map(softmax));
        }
        Ok(out)
    }

    /// The image of each point (rows of `points`, of `shape` at `cut`) in [0, 1]: at `input`
    /// the point itself with the normalisation undone; elsewhere the decoder's image of it,
    /// or `None` when the cut has no decoder.
    pub fn point_images(&self, cut: Cut, shape: &[usize], points: &[f32]) -> Result<Option<Vec<RgbImage>>> {
        let dim: usize = shape.iter().product();
        let n = points.len() / dim.max(1);
        if cut == Cut::Input {
            let [3, h, w] = shape[..] else {
                return Err(MepError::unusable(
                    "an input point",
                    format!("shape {shape:?}, not [3, H, W]"),
                ));
            };
            let s = &self.manifest.settings;
            return Ok(Some(
                points
                    .chunks(dim)
                    .map(|p| {
                        let plane = h * w;
                        let raw: Vec<f32> = p
                            .iter()
                            .enumerate()
                            .map(|(i, v)| v * s.std[i / plane] + s.mean[i / plane])
                            .collect();
                        draw::planar_to_rgb(&raw, h, w)
                    })
                    .collect(),
            ));
        }
        let Some(dec) = self.decoders.get(&cut) else {
            return Ok(None);
        };
        let b = &self.backend;
        let mut dims = vec![n];
        dims.extend_from_slice(shape);
        let z = Tensor::from_slice(b, dims.as_slice(), points)?;
        let y = crate::decoder::decode(b, dec, &z)?;
        let side = dec.config.out_size;
        let pixels = y.to_vec(b)?;
        Ok(Some(
            pixels
                .chunks(3 * side * side)
                .map(|p| draw::planar_to_rgb(p, side, side))
                .collect(),
        ))
    }
}

/// Softmax of one row of logits, in f64 (max subtracted first).
fn softmax(logits: &[f32]) -> Vec<f64> {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = logits.iter().map(|&l| (l as f64 - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

/// The index of the largest value.
fn argmax(v: &[f64]) -> usize {
    v.iter()
        .enumerate()
        .fold(
            (0, f64::NEG_INFINITY),
            |(bi, bv), (i, &x)| if x > bv { (i, x) } else { (bi, bv) },
        )
        .0
}

/// How a result's found path came about, for row labels and legends.
fn path_label(r: &PairResult) -> String {
    match r.category {
        Category::Linear => "linear: the straight line stays in the class".to_string(),
        Category::Nonlinear => format!(
            "nonlinear: {} NEB steps, {} pivots{}",
            r.steps,
            r.pivots,
            r.length_ratio
                .map_or(String::new(), |l| format!(", {l:.2}× the line's length"))
        ),
        Category::NoPath => format!(
            "none: no path in the class after {} NEB steps ({} pivots)",
            r.steps, r.pivots
        ),
        Category::Error => format!("error: {}", r.message.as_deref().unwrap_or("?")),
    }
}

/// What [`render_study`] draws.
#[derive(Clone, Debug, PartialEq)]
pub struct FigureOptions {
    /// K, points per path in the pair figures (at least 2).
    pub k: usize,
    /// S for the loss plots; `None`: the study's.
    pub sub_points: Option<usize>,
    /// Test images in the reconstruction figure (one per class, in class order).
    pub reconstruction_images: usize,
    /// Draw pair figures and loss plots only for these spaces (empty: all).
    pub spaces: Vec<String>,
    /// Draw pair figures and loss plots only for the first this many pairs (`None`: all).
    pub max_pairs: Option<usize>,
    /// Of the `linear` results, draw only the first this many per space (`None`: all);
    /// the other categories are always drawn. A report shows every bent path and a sample
    /// of straight ones.
    pub linear_sample: Option<usize>,
}

impl Default for FigureOptions {
    fn default() -> Self {
        FigureOptions {
            k: DEFAULT_K,
            sub_points: None,
            reconstruction_images: 8,
            spaces: Vec::new(),
            max_pairs: None,
            linear_sample: None,
        }
    }
}

/// Which figure a file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FigureKind {
    /// [`pair_figure`].
    Pair,
    /// [`loss_plot`].
    Loss,
    /// [`max_loss_distribution`].
    MaxLossDistribution,
    /// [`reconstructions`].
    Reconstructions,
    /// [`depth_figure`].
    Depth,
    /// [`endpoints_figure`] of natural and misclassified endpoints.
    Misclassified,
    /// [`endpoints_figure`] of natural and adversarial endpoints.
    Adversarial,
}

/// A figure [`render_study`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderedFigure {
    pub kind: FigureKind,
    /// The pair, for pair figures and loss plots.
    pub pair: Option<usize>,
    /// The space, for pair figures and loss plots.
    pub space: Option<String>,
    /// The PNG file.
    pub path: PathBuf,
    /// Its path relative to the study folder, with `/` (for links in the report).
    pub relative: String,
    /// Time to compute and draw it.
    pub seconds: f64,
}

/// The file name of a pair figure in [`FIGURES`].
pub fn pair_figure_name(pair: usize, space: &str) -> String {
    format!("pair{pair:06}_{space}.png")
}

/// The file name of a loss plot in [`FIGURES`].
pub fn loss_plot_name(pair: usize, space: &str) -> String {
    format!("loss_pair{pair:06}_{space}.png")
}

/// The file name of the distribution of line maximum losses in [`FIGURES`].
pub const MAX_LOSS_FIGURE: &str = "line_max_loss.png";
/// The file name of the reconstruction figure in [`FIGURES`].
pub const RECONSTRUCTIONS_FIGURE: &str = "reconstructions.png";

/// Draws the figures of the study of `ctx` into `ctx.dir/figures/`: a pair figure and a
/// loss plot per (pair, space) result that has a path (results of category `error` have
/// none and are left out), the distribution of the line's maximum loss, the shares by
/// depth, the joined shares per kind of endpoints when the study has misclassified or
/// adversarial endpoints, and the decoder reconstructions when the study has decoders.
pub fn render_study<B: Backend>(ctx: &FigureContext<B>, opts: &FigureOptions) -> Result<Vec<RenderedFigure>> {
    let results = ctx.results()?;
    if results.is_empty() {
        return Err(MepError::Missing {
            path: ctx.dir.clone(),
            what: format!("no results yet in {RESULTS}"),
            hint: Some("run `mep connect` first".into()),
        });
    }
    let dir = ctx.dir.join(FIGURES);
    let mut out = Vec::new();
    let mut timed = |kind, pair, space: Option<&str>, name: String, f: &mut dyn FnMut(&Path) -> Result<()>| {
        let path = dir.join(&name);
        let started = Instant::now();
        f(&path)?;
        out.push(RenderedFigure {
            kind,
            pair,
            space: space.map(str::to_string),
            path,
            relative: format!("{FIGURES}/{name}"),
            seconds: started.elapsed().as_secs_f64(),
        });
        Ok::<(), MepError>(())
    };
    let mut pairs: Vec<usize> = results.iter().map(|r| r.pair).collect();
    pairs.sort_unstable();
    pairs.dedup();
    let kept: Vec<usize> = pairs.into_iter().take(opts.max_pairs.unwrap_or(usize::MAX)).collect();
    let mut linear_drawn: std::collections::BTreeMap<&str, usize> = Default::default();
    for r in &results {
        if r.path_file.is_none()
            || !kept.contains(&r.pair)
            || !(opts.spaces.is_empty() || opts.spaces.contains(&r.space))
        {
            continue;
        }
        if r.category == Category::Linear {
            let n = linear_drawn.entry(r.space.as_str()).or_default();
            if *n >= opts.linear_sample.unwrap_or(usize::MAX) {
                continue;
            }
            *n += 1;
        }
        timed(
            FigureKind::Pair,
            Some(r.pair),
            Some(&r.space),
            pair_figure_name(r.pair, &r.space),
            &mut |p| pair_figure(ctx, r, opts.k, p).map(|_| ()),
        )?;
        timed(
            FigureKind::Loss,
            Some(r.pair),
            Some(&r.space),
            loss_plot_name(r.pair, &r.space),
            &mut |p| loss_plot(ctx, r, opts.sub_points, p).map(|_| ()),
        )?;
    }
    timed(
        FigureKind::MaxLossDistribution,
        None,
        None,
        MAX_LOSS_FIGURE.to_string(),
        &mut |p| max_loss_distribution(&ctx.manifest.settings.spaces, &results, p).map(|_| ()),
    )?;
    let spaces = &ctx.manifest.settings.spaces;
    timed(FigureKind::Depth, None, None, DEPTH_FIGURE.to_string(), &mut |p| {
        depth_figure(spaces, &results, p).map(|_| ())
    })?;
    let has = |k: crate::study::Endpoints| results.iter().any(|r| r.endpoints == k);
    use crate::study::Endpoints as E;
    if has(E::MisclassifiedPredicted) || has(E::MisclassifiedTrue) {
        timed(
            FigureKind::Misclassified,
            None,
            None,
            MISCLASSIFIED_FIGURE.to_string(),
            &mut |p| {
                let kinds = [E::Natural, E::MisclassifiedPredicted, E::MisclassifiedTrue];
                endpoints_figure(spaces, &results, &kinds, p).map(|_| ())
            },
        )?;
    }
    if has(E::Adversarial) {
        timed(
            FigureKind::Adversarial,
            None,
            None,
            ADVERSARIAL_FIGURE.to_string(),
            &mut |p| endpoints_figure(spaces, &results, &[E::Natural, E::Adversarial], p).map(|_| ()),
        )?;
    }
    if !ctx.decoders.is_empty() && opts.reconstruction_images > 0 {
        let indices = default_indices(ctx, opts.reconstruction_images)?;
        timed(
            FigureKind::Reconstructions,
            None,
            None,
            RECONSTRUCTIONS_FIGURE.to_string(),
            &mut |p| reconstructions(ctx, &[], &indices, p).map(|_| ()),
        )?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_keeps_the_order() {
        let p = softmax(&[1.0, 3.0, 2.0]);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(argmax(&p), 1);
        // e^3 / (e + e^3 + e^2) = 0.6652409557748219 (computed with Python's math.exp).
        assert!((p[1] - 0.665_240_955_774_821_9).abs() < 1e-12);
        // Large logits do not overflow.
        let q = softmax(&[1000.0, 1000.0]);
        assert!((q[0] - 0.5).abs() < 1e-12);
    }
}
