//! The `mep` command.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mep",
    version,
    about = "Path connectivity of inputs through a classifier (Gu & Borovykh 2023)"
)]
struct Cli {
    /// Worker threads for the CPU backend (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Where forward, train, eval, connect, graph, attack and decoder train compute: cpu, cuda (GPU 0;
    /// an error naming the reason when there is none) or auto (cuda when usable, else cpu).
    /// certify runs its bounds' zonotopes there in f64 (the same certificates; ExactLine and
    /// CROWN stay on the CPU); report computes on the CPU.
    #[arg(long, global = true, default_value = "cpu")]
    device: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a checkpoint on inputs; write logits, every cut's activation and, with
    /// --target, the loss and its input gradient.
    #[command(allow_negative_numbers = true)]
    Forward {
        /// resnet18, resnet34, resnet50, resnet101, resnet152, resnet20, resnet32, resnet44, resnet56, resnet110
        #[arg(long)]
        arch: String,
        /// Checkpoint (safetensors with torchvision key names).
        #[arg(long)]
        weights: PathBuf,
        /// safetensors file with tensor `input` [N, 3, H, W], already normalised.
        #[arg(long)]
        input: PathBuf,
        /// Target class: adds `loss` (mean cross-entropy) and `input_grad`.
        #[arg(long)]
        target: Option<usize>,
        /// Output safetensors file.
        #[arg(long)]
        out: PathBuf,
        /// Arithmetic of convolutions and linear layers: fp32, tf32 (operands rounded to TF32,
        /// fp32 sums) or bf16 (autocast: bf16 operands and results, fp32 sums; batch norm,
        /// losses and the optimiser fp32). A backend without such kernels refuses it.
        #[arg(long, default_value = "fp32")]
        precision: mep::Precision,
    },
    /// Train or fine-tune a ResNet; a checkpoint after every epoch, --resume to continue.
    // Negative numbers are values (`--lr -0.1`), so that the command's own check names them.
    #[command(allow_negative_numbers = true)]
    Train {
        #[arg(long)]
        arch: String,
        /// Start from this checkpoint (e.g. ImageNet weights; the classifier is replaced
        /// when the class count differs). Default: torchvision's initialisation.
        #[arg(long)]
        init: Option<PathBuf>,
        /// `synthetic`, `cifar10`, a CIFAR-10 archive or folder, or an image folder.
        #[arg(long, default_value = "synthetic")]
        data: String,
        /// Resize images to SIZE×SIZE (the paper: 224 for CIFAR-10).
        #[arg(long)]
        size: Option<usize>,
        #[arg(long, default_value_t = 10)]
        epochs: usize,
        #[arg(long, default_value_t = 128)]
        batch_size: usize,
        #[arg(long, value_enum, default_value_t = Opt::Adam)]
        optimizer: Opt,
        /// Initial learning rate, decayed to 0 by a cosine schedule.
        #[arg(long, allow_hyphen_values = true, default_value_t = 1e-3)]
        lr: f32,
        /// SGD momentum.
        #[arg(long, allow_hyphen_values = true, default_value_t = 0.9)]
        momentum: f32,
        #[arg(long, allow_hyphen_values = true, default_value_t = 0.0)]
        weight_decay: f32,
        /// Turn off random crop (padding 4) and horizontal flip.
        #[arg(long)]
        no_augment: bool,
        /// Stem width when training from scratch (default: the architecture's).
        #[arg(long)]
        width: Option<usize>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Folder for checkpoint.safetensors, model.safetensors and report.json.
        #[arg(long, default_value = "runs/train")]
        out: PathBuf,
        /// Continue from OUT/checkpoint.safetensors (refused when the run there was
        /// started with other settings).
        #[arg(long)]
        resume: bool,
        /// Replace the run already in OUT (without it or --resume, a folder holding a
        /// run is refused).
        #[arg(long, conflicts_with = "resume")]
        overwrite: bool,
        /// Stop after N epochs in this run (the schedule still spans --epochs); continue
        /// later with --resume. For time-limited jobs.
        #[arg(long)]
        stop_after: Option<usize>,
        /// Stop after N optimizer steps, inside an epoch if need be, saving nothing: checks
        /// that a recipe reproduces a run's first steps (compare the losses it prints with
        /// first_step_losses in the run's report.json).
        #[arg(long)]
        stop_after_steps: Option<usize>,
        /// Threads that read, augment and resize the training batches ahead of the steps
        /// (default: one per core but one, at most 8). The batches are the same for any N.
        #[arg(long, value_name = "N")]
        loader_threads: Option<usize>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Arithmetic of convolutions and linear layers: fp32, tf32 (operands rounded to TF32,
        /// fp32 sums) or bf16 (autocast: bf16 operands and results, fp32 sums; batch norm,
        /// losses and the optimiser fp32). A backend without such kernels refuses it.
        #[arg(long, default_value = "fp32")]
        precision: mep::Precision,
    },
    /// Accuracy and per-class accuracy of a checkpoint on a dataset.
    #[command(allow_negative_numbers = true)]
    Eval {
        #[arg(long)]
        arch: String,
        #[arg(long)]
        weights: PathBuf,
        #[arg(long, default_value = "synthetic")]
        data: String,
        #[arg(long, default_value = "test")]
        split: String,
        /// Input size (default: the one `mep train` recorded, else the images' own).
        #[arg(long)]
        size: Option<usize>,
        #[arg(long, default_value_t = 128)]
        batch_size: usize,
        /// Arithmetic of convolutions and linear layers: fp32, tf32 (operands rounded to TF32,
        /// fp32 sums) or bf16 (autocast: bf16 operands and results, fp32 sums; batch norm,
        /// losses and the optimiser fp32). A backend without such kernels refuses it.
        #[arg(long, default_value = "fp32")]
        precision: mep::Precision,
    },
    /// The connectivity experiment (paper Table 1): for random same-class pairs, is the
    /// straight line between them classified as their class in each space, or a path the
    /// nudged elastic band finds? Resumable; `--shard i/n` splits it over jobs.
    Connect(Box<ConnectCli>),
    /// Projected gradient descent (PGD, L-inf or L2, untargeted or targeted) on the
    /// network's input gradient; writes the adversarial and natural images as an image
    /// folder (`--data OUT`), OUT/attack.jsonl, OUT/attack.json and OUT/pairs.csv for
    /// `mep connect --data OUT --pairs-file OUT/pairs.csv`.
    Attack(Box<AttackCli>),
    /// The connectivity of whole classes: join a class's test images, in each space, by
    /// straight lines and, where the class still falls apart, NEB paths, until it is one
    /// component or the budget is spent. Writes each graph as JSON and GraphML.
    Graph(Box<GraphCli>),
    /// Join the folders of a sharded `mep connect` study (or `mep graph` run) into one.
    Merge {
        /// The merged study's folder.
        #[arg(long)]
        out: PathBuf,
        /// The shard folders.
        #[arg(required = true)]
        shards: Vec<PathBuf>,
    },
    /// Train a decoder from a cut point back to images (Gu & Borovykh 2023, Tables 2–4),
    /// with the classifier frozen.
    Decoder {
        #[command(subcommand)]
        command: DecoderCommand,
    },
    /// Prove, for every path a study saved, whether all its points stay in the class
    /// (bounds with bisection, ExactLine, or both); writes DIR/certificates.jsonl and a
    /// certified row in the tables.
    Certify {
        /// The study folder (`mep connect --out`).
        dir: PathBuf,
        /// `bounds`: bound propagation with bisection over the path; `exact`: ExactLine's
        /// partition into affine pieces; `auto`: bounds, then ExactLine on what they leave.
        #[arg(long, default_value = "exact")]
        method: mep_certify::Method,
        /// The most linear pieces per segment (ExactLine) before the segment is undecided.
        #[arg(long, default_value_t = CERTIFY_MAX_PIECES)]
        max_pieces: usize,
        /// The most intervals the bounds examine per path.
        #[arg(long, default_value_t = mep_certify::CertifyOptions::default().max_intervals)]
        max_intervals: usize,
        /// Intervals of a segment's parameter t narrower than this are not bisected further.
        #[arg(long, default_value_t = mep_certify::CertifyOptions::default().min_width)]
        min_width: f64,
        /// Relative tolerance: a margin within tol · max |logit| of zero is undecided.
        #[arg(long, default_value_t = 1e-9)]
        tol: f64,
        #[arg(long)]
        quiet: bool,
        /// Certify nothing: print the work each space's certificates need (the neurons that
        /// change sign on the paths, and the multiply-adds that carry their symbols to the
        /// logits) and about how long that takes here. Writes nothing.
        #[arg(long)]
        estimate: bool,
        /// Points per segment at which --estimate looks for sign changes.
        #[arg(long, default_value_t = 257, requires = "estimate")]
        samples: usize,
    },
    /// Write DIR/report.md and DIR/report.html for a study folder of `mep connect` (or a
    /// folder of `mep graph`).
    Report {
        /// The study folder (`mep connect --out`).
        dir: PathBuf,
        /// A second study folder: also writes DIR/compare.md and DIR/compare.html, the two
        /// studies' Table 1 and medians side by side with their intervals.
        #[arg(long, value_name = "OTHER")]
        compare: Option<PathBuf>,
    },
}

/// The trained network and the test images of a study, a graph or an attack.
#[derive(clap::Args)]
struct NetCli {
    /// resnet18, resnet34, resnet50, resnet101, resnet152, resnet20, resnet32, resnet44, resnet56, resnet110
    #[arg(long)]
    arch: String,
    /// Checkpoint (safetensors with torchvision key names).
    #[arg(long)]
    weights: PathBuf,
    /// `synthetic`, `cifar10`, a CIFAR-10 archive or folder, or an image folder; the images
    /// come from its test split.
    #[arg(long, default_value = "synthetic")]
    data: String,
    /// Input size (default: the one `mep train` recorded, else the images' own).
    #[arg(long)]
    size: Option<usize>,
}

/// The model, the data and the spaces of a study or a graph.
#[derive(clap::Args)]
struct ModelCli {
    #[command(flatten)]
    net: NetCli,
    /// Spaces: `input` and/or cuts (stem, layer1 … layer4, pool), comma-separated.
    #[arg(long = "space", value_delimiter = ',', default_value = "input,layer1,pool")]
    spaces: Vec<String>,
}

impl ModelCli {
    /// `mep connect`'s defaults for this model, with `neb`'s search settings, into `out`.
    fn args(self, neb: NebCli, out: PathBuf, device: mep::device::Device) -> mep::Result<mep::connect::ConnectArgs> {
        let NetCli {
            arch,
            weights,
            data,
            size,
        } = self.net;
        let mut a = mep::connect::ConnectArgs::new(arch, weights, data, out);
        neb.apply(&mut a)?;
        a.size = size;
        a.spaces = self.spaces;
        a.device = device;
        Ok(a)
    }
}

#[derive(clap::Args)]
struct ConnectCli {
    #[command(flatten)]
    model: ModelCli,
    /// Random same-class pairs to study [default: 25]; with --endpoints misclassified,
    /// misclassified images, each giving two pairs.
    #[arg(long)]
    pairs: Option<usize>,
    /// Study the pairs of this CSV file instead: dataset indices `i,j`, one pair a line,
    /// optionally `,adversarial` (`i` an image of `mep attack`) or `,natural`; `#` comments
    /// allowed.
    #[arg(long)]
    pairs_file: Option<PathBuf>,
    /// Draw pairs only from these classes (names or numbers), comma-separated; with
    /// --endpoints misclassified, the true classes of the misclassified images.
    #[arg(long = "class", value_delimiter = ',')]
    classes: Vec<String>,
    /// Which pairs: `correct` (two correctly classified images of a class), `all` (two
    /// images of a class, whatever the model predicts) or `misclassified` (each misclassified
    /// image with a correctly classified image of its predicted class, checked there, and
    /// one of its true class, checked there with the misclassified endpoint itself exempt)
    /// [default: correct].
    #[arg(long, value_enum)]
    endpoints: Option<EndpointsOpt>,
    /// The same as --endpoints all (its older name).
    #[arg(long)]
    allow_misclassified: bool,
    #[command(flatten)]
    neb: NebCli,
    /// Seed of the pair draw (the same pairs in every space and shard).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The most points per network call.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// The study folder (rerun the same command to resume).
    #[arg(long)]
    out: PathBuf,
    /// Study the pairs k with k % n == i.
    #[arg(long)]
    shard: Option<String>,
    /// Stop after N new results (time-limited jobs); rerun to continue.
    #[arg(long)]
    stop_after: Option<usize>,
    /// Certify each pair's saved paths exactly as the study goes (as `mep certify`).
    #[arg(long)]
    certify: bool,
    /// With --certify: the most linear pieces per segment before it is undecided.
    #[arg(long, default_value_t = CERTIFY_MAX_PIECES)]
    max_pieces: usize,
    /// With --certify: how (as `mep certify --method`).
    #[arg(long, default_value = "exact")]
    certify_method: mep_certify::Method,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// The settings of the nudged elastic band, shared by `connect` and `graph`.
#[derive(clap::Args)]
struct NebCli {
    /// Pivots N of a path, endpoints included.
    #[arg(long, default_value_t = 10)]
    pivots: usize,
    /// Dense sub-points S per segment: lines and paths are checked at (N−1)·S+1 points.
    #[arg(long, default_value_t = 8)]
    sub_points: usize,
    /// The optimiser moving the pivots.
    #[arg(long, value_enum, default_value_t = SearchOpt::Adam)]
    optimizer: SearchOpt,
    /// Learning rate relative to the endpoint distance: lr = step · ‖z2 − z1‖ / √D.
    #[arg(long, default_value_t = 0.01)]
    step: f64,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// Spring constant k, or `inf` (pivots redistributed to equal arc length).
    #[arg(long, default_value = "inf")]
    spring: String,
    /// Switch the climbing image on after this fraction of --max-steps.
    #[arg(long)]
    climbing_after: Option<f64>,
    /// Stop when the largest perpendicular force is at most this.
    #[arg(long)]
    fmax: Option<f64>,
    /// Check the dense path every this many steps.
    #[arg(long, default_value_t = 1)]
    check_every: usize,
    /// AutoNEB: insert a pivot where the dense loss departs from the pivots' by more than this.
    #[arg(long)]
    insert_threshold: Option<f64>,
    /// The most pivots insertion may grow a path to [default: 2·pivots].
    #[arg(long)]
    max_pivots: Option<usize>,
    /// NEB step budget per pair and space.
    #[arg(long, default_value_t = 100)]
    max_steps: usize,
    /// Arithmetic of the NEB's gradient steps: fp32, tf32 or bf16 (as on `mep train`). The
    /// endpoints, the straight-line check and the dense checks of paths that decide
    /// linear / nonlinear / none always run in fp32. Recorded in the manifest and each result.
    #[arg(long, default_value = "fp32")]
    precision: mep::Precision,
    /// Record each NEB step once in a CUDA graph and replay it (one driver call per step; the
    /// same paths). Holds the step's intermediates while a search runs; ignored on the CPU.
    #[arg(long)]
    cuda_graph: bool,
}

impl NebCli {
    /// Sets the NEB's fields of `a` (the rest untouched).
    fn apply(self, a: &mut mep::connect::ConnectArgs) -> mep::Result<()> {
        use mep::connect::SearchOptimizer;
        a.spring = match self.spring.trim() {
            "inf" | "infinity" | "∞" => None,
            k => Some(
                k.parse::<f64>()
                    .map_err(|_| mep::MepError::option("--spring", k, "expected a number or `inf`"))?,
            ),
        };
        a.pivots = self.pivots;
        a.sub_points = self.sub_points;
        a.optimizer = match self.optimizer {
            SearchOpt::Adam => SearchOptimizer::Adam,
            SearchOpt::Sgd => SearchOptimizer::Sgd,
            SearchOpt::Fire => SearchOptimizer::Fire,
        };
        a.step = self.step;
        a.momentum = self.momentum;
        a.climbing_after = self.climbing_after;
        a.fmax = self.fmax;
        a.check_every = self.check_every;
        a.insert_threshold = self.insert_threshold;
        a.max_pivots = self.max_pivots;
        a.max_steps = self.max_steps;
        a.precision = self.precision;
        a.cuda_graph = self.cuda_graph;
        Ok(())
    }
}

const CERTIFY_MAX_PIECES: usize = 100_000;

// Negative numbers are values (`--eps -1`), so that the command's own check names them.
#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
struct AttackCli {
    #[command(flatten)]
    net: NetCli,
    /// The perturbation's ball: linf or l2.
    #[arg(long, default_value = "linf")]
    norm: String,
    /// Its radius in pixel units of [0, 1] images, a number or a fraction such as 8/255
    /// [default: 8/255 for linf, 0.5 for l2].
    #[arg(long, allow_hyphen_values = true, value_parser = number_or_fraction)]
    eps: Option<f64>,
    /// The step size alpha, a number or a fraction [default: 2/255 for linf, 0.1 for l2].
    #[arg(long, allow_hyphen_values = true, value_parser = number_or_fraction)]
    step: Option<f64>,
    /// Gradient steps.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Targeted: push every image into this class (name or number); default untargeted.
    #[arg(long)]
    target: Option<String>,
    /// How many correctly classified test images to attack.
    #[arg(long, default_value_t = 100)]
    images: usize,
    /// Attack only images of these classes (names or numbers), comma-separated.
    #[arg(long = "class", value_delimiter = ',')]
    classes: Vec<String>,
    /// Seed of the choice of images and of the random starts.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Images per network call.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Start each image at a random point of the ball.
    #[arg(long)]
    random_start: bool,
    /// The output folder (new or empty); its images are written at --size.
    #[arg(long)]
    out: PathBuf,
    /// No progress messages.
    #[arg(long)]
    quiet: bool,
}

/// `0.5` or `8/255`: attack radii and steps are usually written as fractions of 255.
fn number_or_fraction(s: &str) -> Result<f64, String> {
    let number = |t: &str| t.trim().parse::<f64>().map_err(|_| format!("`{t}` is not a number"));
    match s.split_once('/') {
        Some((a, b)) => Ok(number(a)? / number(b)?),
        None => number(s),
    }
}

fn attack_args(c: AttackCli, device: mep::device::Device) -> mep::Result<mep::attack::AttackArgs> {
    Ok(mep::attack::AttackArgs {
        arch: c.net.arch,
        weights: c.net.weights,
        data: c.net.data,
        size: c.net.size,
        norm: c.norm.parse()?,
        eps: c.eps,
        step: c.step,
        steps: c.steps,
        random_start: c.random_start,
        target: c.target,
        images: c.images,
        classes: c.classes,
        seed: c.seed,
        batch: c.batch,
        out: c.out,
        device,
        quiet: c.quiet,
    })
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum EndpointsOpt {
    Correct,
    Misclassified,
    All,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SearchOpt {
    Adam,
    Sgd,
    Fire,
}

fn connect_args(c: ConnectCli, device: mep::device::Device) -> mep::Result<mep::connect::ConnectArgs> {
    use mep::connect::EndpointSelection;
    // The library reads `correct` with the flag as `all` (what the flag always meant); said
    // outright on the command line, the two contradict each other.
    if c.allow_misclassified && matches!(c.endpoints, Some(EndpointsOpt::Correct)) {
        return Err(mep::MepError::option(
            "--allow-misclassified",
            "with --endpoints correct",
            "--allow-misclassified is `--endpoints all`; give one of the two",
        ));
    }
    let mut a = c.model.args(c.neb, c.out, device)?;
    a.pairs = c.pairs;
    a.pairs_file = c.pairs_file;
    a.classes = c.classes;
    a.endpoints = match c.endpoints {
        None | Some(EndpointsOpt::Correct) => EndpointSelection::Correct,
        Some(EndpointsOpt::Misclassified) => EndpointSelection::Misclassified,
        Some(EndpointsOpt::All) => EndpointSelection::All,
    };
    a.allow_misclassified = c.allow_misclassified;
    a.seed = c.seed;
    a.batch = c.batch;
    a.shard = c.shard.as_deref().map(str::parse).transpose()?;
    a.quiet = c.quiet;
    a.stop_after = c.stop_after;
    a.certify = c.certify.then(|| mep::certify::CertifyArgs {
        max_pieces: c.max_pieces,
        method: c.certify_method,
        device,
        ..mep::certify::CertifyArgs::new(PathBuf::new())
    });
    Ok(a)
}

#[derive(clap::Args)]
struct GraphCli {
    #[command(flatten)]
    model: ModelCli,
    /// Classes to graph (names or numbers), comma-separated [default: every class].
    #[arg(long = "class", value_delimiter = ',')]
    classes: Vec<String>,
    /// Nodes per class: test images the model classifies correctly, in a seeded shuffle.
    #[arg(long, default_value_t = 20)]
    images: usize,
    /// Keep misclassified images as nodes.
    #[arg(long)]
    include_misclassified: bool,
    /// auto (all up to 10 nodes, else disconnected), all, disconnected or mst.
    #[arg(long, default_value = "auto")]
    strategy: String,
    /// NEB runs per class and space [default: the number of nodes].
    #[arg(long)]
    max_searches: Option<usize>,
    /// Lines tried between two components before their shortest failed link is searched.
    #[arg(long, default_value_t = 3)]
    lines_per_link: usize,
    #[command(flatten)]
    neb: NebCli,
    /// Seed of the node draw and the searches.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The most points per network call.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// The graph folder (rerun the same command to resume).
    #[arg(long)]
    out: PathBuf,
    /// Graph the (class, space) units k with k % n == i.
    #[arg(long)]
    shard: Option<String>,
    /// Stop once N new edges are examined (a batch of lines is examined whole, so a few
    /// more may be); rerun to continue.
    #[arg(long)]
    stop_after: Option<usize>,
    /// No progress output.
    #[arg(long)]
    quiet: bool,
}

fn graph_args(c: GraphCli, device: mep::device::Device) -> mep::Result<mep::graph::GraphArgs> {
    let mut a = c.model.args(c.neb, c.out, device)?;
    a.classes = c.classes;
    a.seed = c.seed;
    a.batch = c.batch;
    a.shard = c.shard.as_deref().map(str::parse).transpose()?;
    a.quiet = c.quiet;
    a.stop_after = c.stop_after;
    Ok(mep::graph::GraphArgs {
        search: a,
        images: c.images,
        include_misclassified: c.include_misclassified,
        strategy: c
            .strategy
            .parse()
            .map_err(|why: String| mep::MepError::option("--strategy", &c.strategy, why))?,
        max_searches: c.max_searches,
        lines_per_link: c.lines_per_link,
    })
}

#[derive(Subcommand)]
enum DecoderCommand {
    /// Train a decoder on (encode(x, cut), x) pairs of the training split.
    #[command(allow_negative_numbers = true)]
    Train {
        #[arg(long)]
        arch: String,
        /// The classifier's checkpoint.
        #[arg(long)]
        weights: PathBuf,
        #[arg(long, default_value = "synthetic")]
        data: String,
        /// The cut whose points the decoder maps to images (e.g. pool, layer1).
        #[arg(long, default_value = "pool")]
        cut: String,
        /// Input size (default: the one `mep train` recorded in the checkpoint).
        #[arg(long)]
        size: Option<usize>,
        /// Default: the paper's (5 at pool, 10 elsewhere).
        #[arg(long)]
        epochs: Option<usize>,
        /// Default: the paper's (128 at pool, 32 elsewhere).
        #[arg(long)]
        batch_size: Option<usize>,
        /// Default: 1e-3 (the paper's).
        #[arg(long, allow_hyphen_values = true)]
        lr: Option<f32>,
        /// Multiplies the paper's filter counts (0.125 makes a CPU-sized decoder).
        #[arg(long, allow_hyphen_values = true, default_value_t = 1.0)]
        filters_scale: f32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Train on the first N images of the train split only (a quick decoder).
        #[arg(long)]
        train_images: Option<usize>,
        /// Output decoder checkpoint (safetensors).
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        quiet: bool,
        /// Arithmetic of convolutions and linear layers: fp32, tf32 (operands rounded to TF32,
        /// fp32 sums) or bf16 (autocast: bf16 operands and results, fp32 sums; batch norm,
        /// losses and the optimiser fp32). A backend without such kernels refuses it.
        #[arg(long, default_value = "fp32")]
        precision: mep::Precision,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Opt {
    Adam,
    Sgd,
}

fn main() -> ExitCode {
    mep::memory::keep_freed_memory();
    let cli = Cli::parse();
    if let Some(t) = cli.threads {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if let Err(e) = mep::device::check_threads(t, cores) {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        if let Err(e) = rayon::ThreadPoolBuilder::new().num_threads(t).build_global() {
            eprintln!("error: --threads {t}: {e}");
            return ExitCode::from(2);
        }
    }
    let device: mep::device::Device = match cli.device.parse() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Forward {
            arch,
            weights,
            input,
            target,
            out,
            precision,
        } => mep::forward::forward(&mep::forward::ForwardArgs {
            arch,
            weights,
            input,
            target,
            out: out.clone(),
            device,
            precision,
        })
        .map(|r| {
            print!("{r}");
            println!("wrote {}", out.display());
        }),
        Command::Train {
            arch,
            init,
            data,
            size,
            epochs,
            batch_size,
            optimizer,
            lr,
            momentum,
            weight_decay,
            no_augment,
            width,
            seed,
            out,
            resume,
            overwrite,
            stop_after,
            stop_after_steps,
            loader_threads,
            quiet,
            precision,
        } => mep::train::train(&mep::train::TrainArgs {
            arch,
            init,
            data,
            size,
            epochs,
            batch_size,
            optimizer: match optimizer {
                Opt::Adam => mep::train::OptimizerKind::Adam,
                Opt::Sgd => mep::train::OptimizerKind::Sgd,
            },
            lr,
            momentum,
            weight_decay,
            augment: !no_augment,
            width,
            seed,
            out,
            resume,
            overwrite,
            stop_after,
            stop_after_steps,
            quiet,
            device,
            loader_threads,
            precision,
        })
        .map(|r| print!("{r}")),
        Command::Eval {
            arch,
            weights,
            data,
            split,
            size,
            batch_size,
            precision,
        } => mep::eval::eval(&mep::eval::EvalArgs {
            arch,
            weights,
            data,
            split,
            size,
            batch_size,
            device,
            precision,
        })
        .map(|r| print!("{r}")),
        Command::Connect(c) => connect_args(*c, device)
            .and_then(|a| mep::connect::connect(&a))
            .map(|r| print!("{r}")),
        Command::Graph(c) => graph_args(*c, device)
            .and_then(|a| mep::graph::graph(&a))
            .map(|r| print!("{r}")),
        Command::Attack(c) => attack_args(*c, device)
            .and_then(|a| mep::attack::attack(&a))
            .map(|r| print!("{r}")),
        Command::Merge { out, shards } => {
            let args = mep::connect::MergeArgs { out, shards };
            if args.shards[0].join(mep::graph::GRAPH_MANIFEST).exists() {
                mep::graph::merge(&args).map(|rows| {
                    println!("merged {} graph shards: {} graphs", args.shards.len(), rows.len());
                    println!("wrote {}", args.out.display());
                })
            } else {
                mep::connect::merge(&args).map(|r| print!("{r}"))
            }
        }
        Command::Decoder {
            command:
                DecoderCommand::Train {
                    arch,
                    weights,
                    data,
                    cut,
                    size,
                    epochs,
                    batch_size,
                    lr,
                    filters_scale,
                    seed,
                    train_images,
                    out,
                    quiet,
                    precision,
                },
        } => mep::decoder::train_decoder(&mep::decoder::DecoderTrainArgs {
            arch,
            weights,
            data,
            cut,
            size,
            epochs,
            batch_size,
            lr,
            filters_scale,
            seed,
            train_images,
            out,
            quiet,
            device,
            precision,
        })
        .map(|r| print!("{r}")),
        Command::Certify {
            dir,
            estimate: true,
            samples,
            ..
        } => mep::certify::estimate(&dir, samples).map(|r| print!("{r}")),
        Command::Certify {
            dir,
            method,
            max_pieces,
            max_intervals,
            min_width,
            tol,
            quiet,
            ..
        } => mep::certify::certify(&mep::certify::CertifyArgs {
            dir,
            max_pieces,
            tol,
            method,
            max_intervals,
            min_width,
            quiet,
            device,
        })
        .map(|r| print!("{r}")),
        Command::Report { dir, compare } => mep::report::report_with(&dir, &mep::report::ReportOptions { compare })
            .map(|f| {
                println!("wrote {}", f.markdown.display());
                println!("wrote {}", f.html.display());
                if let Some(c) = &f.compare {
                    println!("wrote {}", c.markdown.display());
                    println!("wrote {}", c.html.display());
                }
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
