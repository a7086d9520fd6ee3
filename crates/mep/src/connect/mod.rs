//! `mep connect`: the connectivity experiment of Gu & Borovykh (2023), Table 1. For
//! random pairs of same-class test images and each chosen space (the input or the
//! activation at a cut), is the straight line between the two encodings classified as
//! their class all along (`linear`)? If not, does the nudged elastic band find a path
//! that is (`nonlinear`), within the step budget (`none` if not)?
//!
//! A study lives in one folder: `manifest.json` (every setting that changes results and
//! the pair list), `results.jsonl` (one line per pair and space, appended and synced as
//! each is found), `table1.md`/`table1.csv`/`table1_stats.csv` (rewritten after each
//! result) and `paths/` (each final path as safetensors). Rerunning the same command
//! resumes; `--shard i/n` studies every n-th pair and [`merge`] joins the shards.
//!
//! `--endpoints` says which pairs: `correct` (the paper's: both images classified
//! correctly), `all` (both of one class, whatever the model predicts) or `misclassified`
//! (a misclassified image with a correctly classified image of the class the model predicts
//! for it, and with one of its own class: [`EndpointSelection`], [`pairs::draw_misclassified`]).

mod energy;
mod merge;
pub mod pairs;
mod search;

pub(crate) use search::Search;

pub use energy::{HeadAux, HeadEnergy};
pub(crate) use merge::link_or_copy;
pub use merge::{merge, MergeArgs, MergeReport};
// The study folder's types and files, where users of `mep connect` have found them.
pub use crate::study::{
    count as count_categories, parse_jsonl, read_jsonl, read_results, Category, EndpointSelection, Endpoints, Manifest,
    Pair, PairResult, Settings, Shard, SpaceCounts, MANIFEST, PATHS, RESULTS,
};

use crate::data::{open_dataset, resolve_transform};
use crate::eval::class_rows;
use crate::study;
use crate::{MepError, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mep_data::{Dataset, Split, Transform};
use mep_resnet::{Arch, Cut, FoldedResNet};
use mep_tensor::{Backend, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

/// The optimiser that moves the pivots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchOptimizer {
    /// Adam (the default), PyTorch's semantics.
    Adam,
    /// SGD with `momentum`.
    Sgd,
    /// FIRE (Bitzek et al. 2006), ASE's parameters, its largest step scaled by `step`.
    Fire,
}

impl fmt::Display for SearchOptimizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SearchOptimizer::Adam => "adam",
            SearchOptimizer::Sgd => "sgd",
            SearchOptimizer::Fire => "fire",
        })
    }
}

/// The most points of one densely sampled path, (N−1)·S+1: far beyond any study (the
/// paper's is 73), and low enough that the counts never overflow.
pub const MAX_DENSE_POINTS: usize = 1 << 24;

/// Pairs studied when neither `pairs` nor `pairs_file` says otherwise.
pub const DEFAULT_PAIRS: usize = 25;

/// What `mep connect` reads. [`ConnectArgs::new`] gives the command's defaults.
#[derive(Clone, Debug)]
pub struct ConnectArgs {
    /// The architecture (`resnet20`, `resnet50`, ...).
    pub arch: String,
    /// The checkpoint (safetensors, torchvision key names).
    pub weights: PathBuf,
    /// The dataset, as [`open_dataset`] reads it; pairs come from its test split.
    pub data: String,
    /// Input size, overriding the one the checkpoint records.
    pub size: Option<usize>,
    /// The spaces: `input` or any cut of the architecture.
    pub spaces: Vec<String>,
    /// Random pairs to draw (default [`DEFAULT_PAIRS`]); with `pairs_file`, none. With
    /// [`EndpointSelection::Misclassified`], misclassified images to draw, each giving two
    /// pairs.
    pub pairs: Option<usize>,
    /// A CSV of dataset indices `i,j` to study instead of random pairs.
    pub pairs_file: Option<PathBuf>,
    /// Draw only from these classes (names or numbers); with
    /// [`EndpointSelection::Misclassified`], the true classes of the misclassified images.
    pub classes: Vec<String>,
    /// Which pairs to draw (`--endpoints`).
    pub endpoints: EndpointSelection,
    /// `--allow-misclassified`, the older name of [`EndpointSelection::All`]: with
    /// `endpoints` left at `correct` it selects `all`; with `misclassified` it is refused
    /// ([`ConnectArgs::endpoint_selection`]).
    pub allow_misclassified: bool,
    /// N: pivots of the path, endpoints included.
    pub pivots: usize,
    /// S: dense sub-points per segment; the line and paths are checked at (N−1)·S+1 points.
    pub sub_points: usize,
    /// The optimiser that moves the pivots.
    pub optimizer: SearchOptimizer,
    /// The learning rate relative to the endpoint distance: lr = step · ‖z2 − z1‖ / √D.
    pub step: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Spring constant k; `None` is k = ∞ (pivots redistributed to equal arc length).
    pub spring: Option<f64>,
    /// Switch on the climbing image after this fraction of `max_steps`.
    pub climbing_after: Option<f64>,
    /// Stop when the largest perpendicular force is at most this.
    pub fmax: Option<f64>,
    /// Check the dense path every this many steps.
    pub check_every: usize,
    /// AutoNEB insertion: add a pivot where the dense profile departs from the pivots'
    /// by more than this.
    pub insert_threshold: Option<f64>,
    /// The most pivots insertion may grow a path to (default 2·`pivots`).
    pub max_pivots: Option<usize>,
    /// The NEB's step budget per pair and space.
    pub max_steps: usize,
    /// Seed of the pair draw; each (pair, space) search derives its own from it.
    pub seed: u64,
    /// The most points per network call.
    pub batch: usize,
    /// The study folder.
    pub out: PathBuf,
    /// Study only this slice of the pairs.
    pub shard: Option<Shard>,
    /// No progress bar.
    pub quiet: bool,
    /// Stop after this many new results (time-limited jobs; rerun to continue).
    pub stop_after: Option<usize>,
    /// Certify each pair's saved paths exactly as the study goes (`mep certify`'s
    /// settings); certification does not change the results, so it is not a setting.
    pub certify: Option<crate::certify::CertifyArgs>,
    /// Where the search computes (not a setting of the study: a study may resume on another
    /// device).
    pub device: crate::device::Device,
    /// The arithmetic of the NEB's gradient evaluations (`--precision`, a setting of the
    /// study). Everything that decides a category (the endpoints' encodings and classes, the
    /// dense checks of lines and paths) runs in fp32 whatever it is.
    pub precision: crate::Precision,
    /// Record each NEB step once and replay it (`--cuda-graph`: a CUDA graph on a GPU,
    /// [`mep_neb::Stepping::Graph`]); not a setting of the study, the paths are the same bits.
    pub cuda_graph: bool,
}

impl ConnectArgs {
    /// The command's defaults for a study of `weights` (of `arch`) on `data`, written to `out`.
    pub fn new(
        arch: impl Into<String>,
        weights: impl Into<PathBuf>,
        data: impl Into<String>,
        out: impl Into<PathBuf>,
    ) -> Self {
        ConnectArgs {
            device: Default::default(),
            arch: arch.into(),
            weights: weights.into(),
            data: data.into(),
            size: None,
            spaces: ["input", "layer1", "pool"].map(String::from).to_vec(),
            pairs: None,
            pairs_file: None,
            classes: Vec::new(),
            endpoints: EndpointSelection::Correct,
            allow_misclassified: false,
            pivots: 10,
            sub_points: 8,
            optimizer: SearchOptimizer::Adam,
            step: 0.01,
            momentum: 0.9,
            spring: None,
            climbing_after: None,
            fmax: None,
            check_every: 1,
            insert_threshold: None,
            max_pivots: None,
            max_steps: 100,
            seed: 0,
            batch: 64,
            out: out.into(),
            shard: None,
            quiet: false,
            stop_after: None,
            certify: None,
            precision: crate::Precision::Fp32,
            cuda_graph: false,
        }
    }

    /// The most pivots a path may reach: `--max-pivots` (by default 2·N) when AutoNEB
    /// insertion is on, else N. What the dense-path bound, the memory estimate, the manifest
    /// and the search all use.
    pub fn most_pivots(&self) -> usize {
        match self.insert_threshold {
            Some(_) => self
                .max_pivots
                .unwrap_or(self.pivots.saturating_mul(2))
                .max(self.pivots),
            None => self.pivots,
        }
    }

    /// The pairs to draw: `endpoints`, with `--allow-misclassified` read as `all`; the
    /// flag beside `--endpoints misclassified` is refused, as the two ask for different pairs.
    pub fn endpoint_selection(&self) -> Result<EndpointSelection> {
        match (self.endpoints, self.allow_misclassified) {
            (e, false) => Ok(e),
            (EndpointSelection::Correct | EndpointSelection::All, true) => Ok(EndpointSelection::All),
            (EndpointSelection::Misclassified, true) => Err(MepError::option(
                "--allow-misclassified",
                "with --endpoints misclassified",
                "--allow-misclassified is `--endpoints all` (pairs of one class, misclassified or not); \
                 give one of the two",
            )),
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |option: &str, value: &dyn fmt::Display, reason: &str| Err(MepError::option(option, value, reason));
        if self.endpoint_selection()? == EndpointSelection::Misclassified && self.pairs_file.is_some() {
            return Err(MepError::option(
                "--endpoints",
                "misclassified",
                "draws its own pairs (each misclassified image with a correctly classified image of its \
                 predicted and of its true class); it does not apply to --pairs-file (use `all` to keep \
                 the file's pairs whatever the model predicts)",
            ));
        }
        if self.pivots < 2 {
            return bad("--pivots", &self.pivots, "a path needs at least 2 (its endpoints)");
        }
        if self.sub_points == 0 {
            return bad("--sub-points", &0, "must be at least 1");
        }
        // The dense line has (N−1)·S+1 points; the NEB may grow N to --max-pivots.
        let most_pivots = self.most_pivots();
        if (most_pivots - 1)
            .checked_mul(self.sub_points)
            .and_then(|n| n.checked_add(1))
            .is_none_or(|n| n > MAX_DENSE_POINTS)
        {
            let (option, value) = match self.max_pivots {
                Some(m) if most_pivots > self.pivots => ("--max-pivots", m),
                _ => ("--pivots", self.pivots),
            };
            let growth = if most_pivots > value {
                format!(" (insertion grows paths to {most_pivots} pivots)")
            } else {
                String::new()
            };
            return bad(
                option,
                &format!("{value} with --sub-points {}{growth}", self.sub_points),
                &format!(
                    "the dense path would have more than {MAX_DENSE_POINTS} points; lower {option} or --sub-points"
                ),
            );
        }
        if !(self.step.is_finite() && self.step > 0.0) {
            return bad("--step", &self.step, "must be positive");
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad("--momentum", &self.momentum, "must be in [0, 1)");
        }
        if let Some(k) = self.spring {
            if !(k.is_finite() && k >= 0.0) {
                return bad("--spring", &k, "must be a non-negative number or `inf`");
            }
        }
        if let Some(c) = self.climbing_after {
            if !(0.0..=1.0).contains(&c) {
                return bad("--climbing-after", &c, "must be a fraction in [0, 1]");
            }
        }
        if let Some(f) = self.fmax {
            if !(f.is_finite() && f >= 0.0) {
                return bad("--fmax", &f, "must be a finite non-negative number");
            }
        }
        if self.check_every == 0 {
            return bad("--check-every", &0, "must be at least 1");
        }
        if let Some(t) = self.insert_threshold {
            if !(t.is_finite() && t >= 0.0) {
                return bad("--insert-threshold", &t, "must be a finite non-negative number");
            }
        }
        if let Some(m) = self.max_pivots {
            if self.insert_threshold.is_none() {
                return bad(
                    "--max-pivots",
                    &m,
                    "needs --insert-threshold (it bounds pivot insertion)",
                );
            }
            if m < self.pivots {
                return bad(
                    "--max-pivots",
                    &m,
                    &format!("must be at least --pivots {}", self.pivots),
                );
            }
        }
        if self.size == Some(0) {
            return bad("--size", &0, "images need at least 1 pixel a side");
        }
        if self.batch == 0 {
            return bad("--batch", &0, "must be at least 1");
        }
        if self.pairs == Some(0) {
            return bad("--pairs", &0, "must be at least 1");
        }
        if self.pairs_file.is_some() && self.pairs.is_some() {
            return Err(MepError::option_unset(
                "--pairs-file",
                "give --pairs or --pairs-file, not both",
            ));
        }
        if self.pairs_file.is_some() && !self.classes.is_empty() {
            return Err(MepError::option_unset(
                "--class",
                "restricts random pairs; it does not apply to --pairs-file",
            ));
        }
        if self.stop_after == Some(0) {
            return bad("--stop-after", &0, "must be at least 1");
        }
        if let Some(c) = &self.certify {
            c.validate()?;
        }
        Ok(())
    }
}

/// The spaces named by `names` (each `input` or a cut of `arch`), in the order given.
pub fn parse_spaces(names: &[String], arch: Arch) -> Result<Vec<Cut>> {
    let cuts = || arch.cuts().iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ");
    if names.is_empty() {
        return Err(MepError::option_unset(
            "--space",
            format!("name at least one space ({})", cuts()),
        ));
    }
    let mut out = Vec::new();
    for name in names {
        let cut = Cut::from_str(name.trim())
            .ok()
            .filter(|c| arch.position(*c).is_ok())
            .ok_or_else(|| {
                MepError::option(
                    "--space",
                    name,
                    format!("{} has no such cut; its cuts are {}", arch.name(), cuts()),
                )
            })?;
        if out.contains(&cut) {
            return Err(MepError::option("--space", name, "named twice"));
        }
        out.push(cut);
    }
    Ok(out)
}

/// What a run of `mep connect` did.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectReport {
    /// The study folder.
    pub out: PathBuf,
    /// The spaces, in the order of the table's columns.
    pub spaces: Vec<String>,
    /// Pairs in the whole study.
    pub pairs: usize,
    /// Pairs in this folder's shard (all of them without a shard).
    pub shard_pairs: usize,
    /// The shard studied.
    pub shard: Option<Shard>,
    /// Which pairs the study draws.
    pub endpoints: EndpointSelection,
    /// Candidate pairs skipped for a misclassified endpoint; with `--endpoints
    /// misclassified`, misclassified images passed over (no class predicted, or no
    /// correctly classified image left to pair them with).
    pub skipped: usize,
    /// Results found in the folder from earlier runs.
    pub resumed: usize,
    /// Results computed by this run.
    pub computed: usize,
    /// With `--certify`: saved paths certified by this run, resumed results' included.
    pub certified: Option<usize>,
    /// Whether every (pair, space) of the shard has its result.
    pub complete: bool,
    /// Table 1 over every result in the folder.
    pub counts: Vec<SpaceCounts>,
    /// Wall time of this run.
    pub seconds: f64,
}

impl fmt::Display for ConnectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shard = self
            .shard
            .map_or(String::new(), |s| format!(" (shard {s}: {} pairs)", self.shard_pairs));
        let skipped = match self.endpoints {
            EndpointSelection::Misclassified => format!(
                "{} misclassified images passed over (no class predicted, or no partner left)",
                self.skipped
            ),
            _ => format!("{} skipped for a misclassified endpoint", self.skipped),
        };
        writeln!(
            f,
            "{} pairs{shard}, {skipped}; {} results computed, {} resumed, in {:.1} s",
            self.pairs, self.computed, self.resumed, self.seconds
        )?;
        writeln!(
            f,
            "{:<10} {}",
            "path",
            self.spaces.iter().map(|s| format!("{s:>9}")).collect::<String>()
        )?;
        let row = |name: &str, get: fn(&SpaceCounts) -> usize| {
            format!(
                "{name:<10} {}",
                self.counts.iter().map(|c| format!("{:>9}", get(c))).collect::<String>()
            )
        };
        writeln!(f, "{}", row("linear", |c| c.linear))?;
        writeln!(f, "{}", row("nonlinear", |c| c.nonlinear))?;
        writeln!(f, "{}", row("none", |c| c.none))?;
        if self.counts.iter().any(|c| c.error > 0) {
            writeln!(f, "{}", row("error", |c| c.error))?;
        }
        if let Some(n) = self.certified {
            writeln!(
                f,
                "{n} saved paths certified by this run (verdicts in certificates.jsonl and table1.md)"
            )?;
        }
        if !self.complete {
            writeln!(f, "stopped early: rerun the same command to continue")?;
        }
        writeln!(f, "wrote {}", self.out.display())
    }
}

/// `n` images of `split` through `transform`, as one `[n, 3, H, W]` batch.
pub(crate) fn load_images<B: Backend>(b: &B, split: &Split, transform: &Transform, idx: &[usize]) -> Result<Tensor<B>> {
    let mut data = Vec::new();
    let mut hw = None;
    for &i in idx {
        let img = split.image(i)?;
        let (h, w) = transform.output_hw(&img);
        if *hw.get_or_insert((h, w)) != (h, w) {
            return Err(MepError::unusable(
                format!("test image {i}"),
                format!("{h}x{w} after the transform, others {hw:?}; pass --size to resize all images"),
            ));
        }
        let start = data.len();
        data.resize(start + 3 * h * w, 0.0);
        transform.apply(&img, &mut mep_data::Rng::new(0), &mut data[start..])?;
    }
    let (h, w) = hw.unwrap_or((0, 0));
    Ok(Tensor::from_vec(b, [idx.len(), 3, h, w], data)?)
}

/// Runs `mep connect` on the backend `args.device` names.
pub fn connect(args: &ConnectArgs) -> Result<ConnectReport> {
    args.validate()?;
    let data = open_dataset(&args.data)?;
    crate::on_device!(args.device, |b| connect_with(b, args, &data))
}

fn sha256_of(path: &Path) -> Result<String> {
    Ok(mep_fetch::Checksum::of_file(path, mep_fetch::Algorithm::Sha256)?
        .hex()
        .to_string())
}

/// Refuses, before the study folder is made, a study whose largest search (the biggest
/// space at the most pivots) or pair selection cannot fit the machine's memory.
fn check_memory<B: Backend>(
    b: &B,
    args: &ConnectArgs,
    arch: Arch,
    width: usize,
    net: &FoldedResNet<B>,
    cuts: &[Cut],
    size: usize,
) -> Result<()> {
    let f = crate::memory::resnet_footprint(arch, width, size, net.num_classes);
    let pivots = args.most_pivots();
    let mut d: f64 = 0.0;
    let mut widest = Cut::Input;
    for &cut in cuts {
        let n = crate::memory::cut_numel(arch, size, cut, net.channels(cut)?);
        if n > d {
            (d, widest) = (n, cut);
        }
    }
    let needed = if b.name() == "cpu" {
        crate::memory::search_bytes(&f, pivots, d, args.batch).max(f.inference_bytes(args.batch))
    } else {
        // On a GPU the host holds the images of a batch and a path for its file; the
        // device's share is not known here (the backend does not report free memory).
        f.host_bytes(args.batch, 0) + 4.0 * pivots as f64 * d
    };
    crate::memory::ensure_fits(
        needed,
        &format!(
            "a search in {widest} of {} (width {width}) at --size {size} with {pivots} pivots and --batch {}",
            arch.name(),
            args.batch
        ),
        "--pivots (or --max-pivots), --batch or --size, or leave the widest space out of --space",
    )
}

/// As [`connect`], on backend `b` and a dataset already in hand (`args.data` is then only
/// recorded). The steps: `Model::load` (network, spaces, settings), the memory check,
/// `open_study` (the manifest, with the pairs planned by `plan_pairs` in a new folder),
/// `resume` (the results already there), `Run::pair` for each pair of the shard, and
/// `Run::finish`.
pub fn connect_with<B: Backend>(b: &B, args: &ConnectArgs, data: &Dataset) -> Result<ConnectReport> {
    let started = Instant::now();
    args.validate()?;
    // Before any work; the backend then stays in fp32 but for the NEB's gradient steps.
    crate::device::check_precision(b, args.precision)?;
    let model = Model::load(b, args, data)?;
    let size = crate::data::image_size(&data.test, model.transform.size)?;
    check_memory(b, args, model.arch, model.width, &model.net, &model.cuts, size)?;
    let out = &args.out;
    // Held to the end of the run: a second `mep connect` on this folder is refused.
    let _lock = crate::lock::FolderLock::acquire(out, "mep connect")?;
    let manifest = open_study(b, args, data, &model)?;
    let mine: Vec<&Pair> = manifest
        .pair_list
        .iter()
        .filter(|p| args.shard.is_none_or(|s| s.contains(p.pair)))
        .collect();
    let resumed = resume(args, &manifest, &model.spaces)?;
    study::paths_dir(out)?;
    study::write_tables(out, &model.spaces, &resumed.results, mine.len())?;
    let mut run = Run::start(b, args, data, &model, resumed, &mine)?;
    for p in &mine {
        if !run.pair(p)? {
            break;
        }
    }
    run.finish(&manifest, &mine, started)
}

/// The network of a study, its spaces and input transform, and the settings they make.
pub(crate) struct Model<B: Backend> {
    pub arch: Arch,
    pub width: usize,
    pub net: FoldedResNet<B>,
    pub cuts: Vec<Cut>,
    pub spaces: Vec<String>,
    pub transform: Transform,
    pub class_filter: Vec<usize>,
    pub settings: Settings,
}

impl<B: Backend> Model<B> {
    /// Loads and folds the checkpoint, resolves the spaces, the transform and `--class`, and
    /// records every setting that changes results; refuses a model whose classes are not
    /// the dataset's.
    pub(crate) fn load(b: &B, args: &ConnectArgs, data: &Dataset) -> Result<Self> {
        let arch: Arch = args.arch.parse()?;
        let cuts = parse_spaces(&args.spaces, arch)?;
        let spaces: Vec<String> = cuts.iter().map(|c| c.to_string()).collect();
        let (net, width, recorded) = crate::eval::load_folded(b, arch, &args.weights)?;
        let split = &data.test;
        let transform = resolve_transform(recorded, args.size, split)?;
        if net.num_classes != data.classes.len() {
            return Err(MepError::ClassMismatch {
                model: format!("{}: the model", args.weights.display()),
                model_classes: net.num_classes,
                data: format!("the dataset {}", data.name),
                data_classes: data.classes.len(),
            });
        }
        let class_filter = pairs::parse_classes(&args.classes, &data.classes)?;
        let endpoints = args.endpoint_selection()?;
        let settings = Settings {
            arch: arch.name().to_string(),
            weights_sha256: sha256_of(&args.weights)?,
            dataset: data.name.clone(),
            classes: data.classes.clone(),
            test_images: split.len(),
            input_size: transform.size,
            mean: transform.mean,
            std: transform.std,
            spaces: spaces.clone(),
            pairs: match (&args.pairs_file, args.pairs) {
                (Some(_), _) => None,
                (None, p) => Some(p.unwrap_or(DEFAULT_PAIRS)),
            },
            pairs_file_sha256: args.pairs_file.as_deref().map(sha256_of).transpose()?,
            class_filter: class_filter.clone(),
            allow_misclassified: endpoints == EndpointSelection::All,
            endpoints,
            seed: args.seed,
            pivots: args.pivots,
            sub_points: args.sub_points,
            optimizer: args.optimizer.to_string(),
            step: args.step,
            momentum: args.momentum,
            spring: args.spring,
            climbing_after: args.climbing_after,
            fmax: args.fmax,
            check_every: args.check_every,
            insert_threshold: args.insert_threshold,
            max_pivots: args.insert_threshold.map(|_| args.most_pivots()),
            max_steps: args.max_steps,
            precision: args.precision,
        };
        Ok(Model {
            arch,
            width,
            net,
            cuts,
            spaces,
            transform,
            class_filter,
            settings,
        })
    }
}

/// The manifest of `args.out`: the one there, when its settings and shard are these; else,
/// in a folder without results, a new one with the pairs of [`plan_pairs`], written.
fn open_study<B: Backend>(b: &B, args: &ConnectArgs, data: &Dataset, model: &Model<B>) -> Result<Manifest> {
    let out = &args.out;
    if let Some(m) = Manifest::read(out)? {
        let mut differences = m.settings.differences(&model.settings);
        if m.shard != args.shard {
            let show = |s: Option<Shard>| s.map_or("none".to_string(), |s| s.to_string());
            differences.push(format!("shard: {} → {}", show(m.shard), show(args.shard)));
        }
        if !differences.is_empty() {
            return Err(MepError::ConfigMismatch {
                manifest: out.join(MANIFEST),
                differences,
            });
        }
        return Ok(m);
    }
    if out.join(RESULTS).exists() {
        return Err(MepError::Results {
            path: out.join(RESULTS),
            msg: format!("results without a {MANIFEST}: not a study folder of `mep connect`"),
        });
    }
    if out.join(study::GRAPH_MANIFEST).exists() {
        return Err(MepError::unusable(
            out.display().to_string(),
            "holds a graph of `mep graph` (graph_manifest.json); give `mep connect` a folder of its own",
        ));
    }
    let selection = plan_pairs(b, args, data, model)?;
    let m = Manifest {
        tool: format!("mep {}", env!("CARGO_PKG_VERSION")),
        settings: model.settings.clone(),
        weights: args.weights.clone(),
        data: args.data.clone(),
        shard: args.shard,
        batch: args.batch,
        pair_list: selection.pairs,
        skipped: selection.skipped,
        merged_from: Vec::new(),
    };
    m.write(out)?;
    Ok(m)
}

/// The pairs of a new study (`model.settings.endpoints` says which): those of
/// `--pairs-file`, or a seeded draw; with `correct`, only pairs whose endpoints the model
/// classifies correctly; with `misclassified`, the pairs of [`pairs::draw_misclassified`].
fn plan_pairs<B: Backend>(b: &B, args: &ConnectArgs, data: &Dataset, model: &Model<B>) -> Result<pairs::Selection> {
    let split = &data.test;
    let net = &model.net;
    let endpoints = model.settings.endpoints;
    // An image whose logits are not finite is in no class.
    let mut predict = |idx: &[usize]| -> Result<Vec<Option<usize>>> {
        let x = load_images(b, split, &model.transform, idx)?;
        let logits = net.head(b, &x, Cut::Input)?.to_vec(b)?;
        Ok(class_rows(&logits, net.num_classes))
    };
    let count = args.pairs.unwrap_or(DEFAULT_PAIRS);
    if endpoints == EndpointSelection::Misclassified {
        // validate() refused --pairs-file with this selection.
        return pairs::draw_misclassified(
            &split.labels,
            &data.classes,
            &model.class_filter,
            count,
            args.seed,
            &mut predict,
            args.batch,
        );
    }
    let mut classify = |idx: &[usize]| -> Result<Vec<bool>> {
        Ok(predict(idx)?
            .into_iter()
            .zip(idx)
            .map(|(p, &i)| p == Some(split.labels[i]))
            .collect())
    };
    let check: Option<&mut pairs::Classify<'_>> = (endpoints == EndpointSelection::Correct).then_some(&mut classify);
    let selection = match &args.pairs_file {
        Some(file) => {
            let listed = pairs::read_pairs_file(file, &split.labels, &data.classes)?;
            match check {
                Some(c) => pairs::keep_correct(listed, c, args.batch)?,
                None => pairs::Selection {
                    pairs: listed,
                    skipped: 0,
                },
            }
        }
        None => pairs::draw_pairs(
            &split.labels,
            &data.classes,
            &model.class_filter,
            count,
            args.seed,
            check,
            args.batch,
        )?,
    };
    if selection.pairs.is_empty() {
        return Err(MepError::unusable(
            "no pair left to study",
            format!(
                "the model misclassifies an endpoint of all {} (pass --endpoints all, or --allow-misclassified, to keep them)",
                selection.skipped
            ),
        ));
    }
    Ok(selection)
}

/// The results a study folder already holds, its results file open for appending, and
/// which (pair, space) they cover.
struct Resumed {
    file: study::JsonlFile,
    results: Vec<PairResult>,
    done: HashSet<(usize, String)>,
}

/// Reads the results already in `args.out`, refusing one that is not of this study (or of
/// this shard) or appears twice; a result whose path file was deleted is dropped (with its
/// certificate), to be computed again.
fn resume(args: &ConnectArgs, manifest: &Manifest, spaces: &[String]) -> Result<Resumed> {
    let out = &args.out;
    let (mut file, mut results) = study::open_results(out)?;
    let mut done: HashSet<(usize, String)> = HashSet::new();
    for r in &results {
        let fits = manifest.pair_list.get(r.pair).is_some_and(|p| p.i == r.i && p.j == r.j)
            && spaces.contains(&r.space)
            && args.shard.is_none_or(|s| s.contains(r.pair));
        if !fits || !done.insert((r.pair, r.space.clone())) {
            return Err(MepError::Results {
                path: out.join(RESULTS),
                msg: format!(
                    "the result of pair {} ({},{}) in space {} {} this study",
                    r.pair,
                    r.i,
                    r.j,
                    r.space,
                    if fits { "appears twice in" } else { "does not belong to" }
                ),
            });
        }
    }
    let gone: std::collections::BTreeSet<(usize, String)> = results
        .iter()
        .filter(|r| r.path_file.as_ref().is_some_and(|f| !out.join(f).is_file()))
        .map(|r| (r.pair, r.space.clone()))
        .collect();
    if !gone.is_empty() {
        for (pair, space) in &gone {
            if !args.quiet {
                eprintln!(
                    "note: the path file of pair {pair} in {space} ({}) is missing; computing that result again",
                    study::path_file_name(*pair, space)
                );
            }
            done.remove(&(*pair, space.clone()));
        }
        results.retain(|r| !gone.contains(&(r.pair, r.space.clone())));
        file = study::rewrite_results(out, &results)?;
        study::forget_certificates(out, &gone)?;
    }
    Ok(Resumed { file, results, done })
}

/// A study under way: the search, the results so far, the progress bar and, with
/// `--certify`, the certification.
struct Run<'a, B: Backend> {
    args: &'a ConnectArgs,
    data: &'a Dataset,
    model: &'a Model<B>,
    search: search::Search<'a, B>,
    certification: Option<crate::certify::Certification>,
    file: study::JsonlFile,
    results: Vec<PairResult>,
    done: HashSet<(usize, String)>,
    /// Pairs of this shard (the tables' count).
    shard_pairs: usize,
    resumed: usize,
    computed: usize,
    certified: usize,
    stopped: bool,
    bar: ProgressBar,
}

impl<'a, B: Backend> Run<'a, B> {
    /// Starts the progress bar over the pairs of this shard, `mine`, and, with `--certify`,
    /// opens the certification and certifies the resumed results that lack a certificate.
    fn start(
        b: &'a B,
        args: &'a ConnectArgs,
        data: &'a Dataset,
        model: &'a Model<B>,
        resumed: Resumed,
        mine: &[&Pair],
    ) -> Result<Self> {
        let shard_pairs = mine.len();
        let bar = if args.quiet || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            ProgressBar::with_draw_target(Some(shard_pairs as u64), ProgressDrawTarget::stderr())
        };
        bar.set_style(
            ProgressStyle::with_template("pairs [{bar:30}] {pos}/{len} {elapsed_precise} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let search = search::Search {
            b,
            net: &model.net,
            arch: model.arch,
            args,
            out: &args.out,
        };
        // Opened once: the network is converted to f64 once for the whole study.
        let certification = args
            .certify
            .as_ref()
            .map(|c| {
                crate::certify::Certification::open(&crate::certify::CertifyArgs {
                    dir: args.out.clone(),
                    quiet: true,
                    ..c.clone()
                })
            })
            .transpose()?;
        let mut run = Run {
            args,
            data,
            model,
            search,
            certification,
            resumed: resumed.results.len(),
            file: resumed.file,
            results: resumed.results,
            done: resumed.done,
            shard_pairs,
            computed: 0,
            certified: 0,
            stopped: false,
            bar,
        };
        run.bar
            .set_position(mine.iter().filter(|p| run.finished(p)).count() as u64);
        // Results resumed from an earlier run (with or without --certify) that lack a certificate.
        if let Some(c) = run.certification.as_mut() {
            run.bar.set_message("certifying resumed paths");
            let n = c.certify_pending(&run.results)?;
            if n > 0 {
                run.certified += n;
                study::write_tables(&args.out, &model.spaces, &run.results, shard_pairs)?;
            }
        }
        Ok(run)
    }

    /// Whether every space of `p` has its result.
    fn finished(&self, p: &Pair) -> bool {
        self.model
            .spaces
            .iter()
            .all(|s| self.done.contains(&(p.pair, s.clone())))
    }

    /// Computes the results of `p` that are missing, each appended and the tables rewritten
    /// after it, then (with `--certify`) certifies them. Returns false when `--stop-after`
    /// stopped the run.
    fn pair(&mut self, p: &Pair) -> Result<bool> {
        if self.finished(p) {
            return Ok(true);
        }
        let (b, args, model, out) = (self.search.b, self.args, self.model, &self.args.out);
        let x = load_images(b, &self.data.test, &model.transform, &[p.i, p.j])?;
        for (cut, space) in model.cuts.iter().zip(&model.spaces) {
            if self.done.contains(&(p.pair, space.clone())) {
                continue;
            }
            if args.stop_after.is_some_and(|n| self.computed >= n) {
                self.stopped = true;
                return Ok(false);
            }
            self.bar.set_message(format!("pair {} {space}", p.pair));
            let bar = &self.bar;
            let r = self.search.run(p, *cut, &x, &mut |step, max_loss| {
                bar.set_message(format!("pair {} {space} step {step} max loss {max_loss:.3}", p.pair));
            })?;
            self.file.append(&r)?;
            self.done.insert((p.pair, space.clone()));
            self.results.push(r);
            self.computed += 1;
            study::write_tables(out, &model.spaces, &self.results, self.shard_pairs)?;
        }
        if let Some(c) = self.certification.as_mut() {
            self.bar.set_message(format!("pair {} certifying", p.pair));
            self.certified += c.certify_pending(&self.results)?;
            study::write_tables(out, &model.spaces, &self.results, self.shard_pairs)?;
        }
        self.bar.inc(1);
        Ok(true)
    }

    /// Clears the progress bar and reports what the run did.
    fn finish(self, manifest: &Manifest, mine: &[&Pair], started: Instant) -> Result<ConnectReport> {
        self.bar.finish_and_clear();
        let complete = !self.stopped && mine.iter().all(|p| self.finished(p));
        let spaces = &self.model.spaces;
        Ok(ConnectReport {
            out: self.args.out.clone(),
            spaces: spaces.clone(),
            pairs: manifest.pair_list.len(),
            shard_pairs: mine.len(),
            shard: self.args.shard,
            endpoints: manifest.settings.endpoints,
            skipped: manifest.skipped,
            resumed: self.resumed,
            computed: self.computed,
            certified: self.args.certify.as_ref().map(|_| self.certified),
            complete,
            counts: study::count(spaces, &self.results),
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}
