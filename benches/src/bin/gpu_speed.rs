//! mep's side of the GPU speed table (`cargo xtask gpu-check`; PyTorch's side is
//! `tools/torch_speed.py`, which times the same cases under the same names).
//!
//! `gpu_speed [--iters 20] [--warmup 3] [--device 0] [--case SUBSTRING]... [--quick] [--backend cuda|cpu|emu]`
//!
//! Cases, fp32, on a folded ResNet-50 (torchvision's initialisation, 10 classes) at 224×224,
//! batch 32:
//! - the forward (`FoldedResNet::head` from the input);
//! - forward + backward to the input (`FoldedResNet::head_loss_grad`, mean cross-entropy);
//! - one NEB step (`Neb::step`, k = ∞ and Adam, the defaults) in `input` and in `layer1`:
//!   a straight path of 34 pivots between two images, of which the 32 interior ones move and
//!   are evaluated in one batch;
//! - one training step (`ResNet::train_step`: training-mode forward, mean cross-entropy,
//!   backward with weight gradients, Adam), what `mep train` does per batch without the data
//!   loading: images/s = 1000 · batch / median_ms;
//! - on the GPU (and in the emulation), the forward captured once in a CUDA graph and
//!   replayed, checked against the eager forward; the energy+gradient call of a NEB step
//!   in `input` captured likewise (PyTorch's graph row of the same name captures the same);
//!   and the whole NEB step in `input` (`Neb::step_on_device`: energies and gradients,
//!   forces, Adam, the redistribution) captured once and replayed, each replay between the
//!   host's `prepare_device_step` and `finish_device_step` (Adam's bias terms in, energies and
//!   force norms out), its path checked bit for bit against eager `Neb::step`s; PyTorch has
//!   no graph of a whole step, so that row compares with its eager NEB step. The eager cases
//!   before them are the warm-up that fills KernelBackend's memory pool, so the captures
//!   allocate nothing; the pool's counters go to stderr.
//!
//! `--precision tf32|bf16` sets the backend's precision (tensor cores on the GPU) and runs
//! the forward, forward+backward and training-step cases only, named with " (tf32)" or
//! " (bf16)" after them, as `tools/torch_speed.py --precision` names PyTorch's in the same
//! mode (TF32 + channels_last; bf16 autocast + channels_last).
//!
//! Each case: `--warmup` untimed calls, then `--iters` timed ones, each ended by a device
//! synchronisation. One JSON object per case on stdout:
//! `{"impl":"mep","case":…,"median_ms":…,"min_ms":…,"max_ms":…,"iters":…,"device":…}`, or
//! `{"impl":"mep","case":…,"error":…}` for a case that failed (exit status 1).
//! Without a usable GPU it exits with status 2 and says why; `--backend cpu` runs the same
//! cases on the CPU backend, `--backend emu` on the CUDA kernels in the CPU emulation (graph
//! cases included; slow, use it with `--quick`), and `--quick` shrinks them (batch 2 at 64×64,
//! 2 moving pivots, 2 iterations) to check this program itself.

use mep::connect::HeadEnergy;
use mep_benches::{cuda_sync, median, normal_vec, time_ms};
use mep_kernels::{DevBuf, KernelBackend, Launcher, PoolStats};
use mep_neb::{Neb, NebConfig, Path};
use mep_nn::Adam;
use mep_resnet::{Arch, Cut, FoldedResNet, ResNet};
use mep_tensor::prelude::*;
use mep_tensor::{AdamParams, CpuBackend, Precision, Tensor};

const CLASSES: usize = 10;

/// The sizes of the cases.
struct Config {
    batch: usize,
    size: usize,
    /// The interior pivots, the ones that move; the path has two more.
    moving: usize,
    /// `""` in fp32, else `" (tf32)"` or `" (bf16)"` after the names of the cases that run in
    /// that precision (forward, forward+backward, training step), as torch_speed.py names them.
    mode: String,
}

impl Config {
    fn new(quick: bool, precision: Precision) -> Config {
        let mode = match precision {
            Precision::Fp32 => String::new(),
            p => format!(" ({p})"),
        };
        if quick {
            Config {
                batch: 2,
                size: 64,
                moving: 2,
                mode,
            }
        } else {
            Config {
                batch: 32,
                size: 224,
                moving: 32,
                mode,
            }
        }
    }
    // The names tools/torch_speed.py gives the same cases.
    fn forward(&self) -> String {
        format!("resnet50 {0}x{0} b{1} forward{2}", self.size, self.batch, self.mode)
    }
    fn backward(&self) -> String {
        format!(
            "resnet50 {0}x{0} b{1} forward+backward to input{2}",
            self.size, self.batch, self.mode
        )
    }
    fn neb(&self, cut: Cut) -> String {
        let s = if cut == Cut::Input { self.size } else { self.size / 4 };
        format!("neb step {cut} {s}x{s}, {} pivots", self.moving)
    }
    fn train(&self) -> String {
        format!(
            "resnet50 {0}x{0} b{1} training step (Adam){2}",
            self.size, self.batch, self.mode
        )
    }
    fn graph(&self) -> String {
        format!("resnet50 {0}x{0} b{1} forward, CUDA graph", self.size, self.batch)
    }
    fn graph_neb(&self) -> String {
        format!(
            "neb step input {0}x{0}, {1} pivots, energy+gradient, CUDA graph",
            self.size, self.moving
        )
    }
    // PyTorch has no such row: compare it with the eager step `neb(Cut::Input)`.
    fn graph_neb_step(&self) -> String {
        format!(
            "neb step input {0}x{0}, {1} pivots, whole step, CUDA graph",
            self.size, self.moving
        )
    }
}

struct Args {
    iters: usize,
    warmup: usize,
    ordinal: usize,
    cases: Vec<String>,
    quick: bool,
    backend: BackendArg,
    precision: Precision,
}

/// `--backend`: the GPU, the CPU backend, or the CUDA kernels in the CPU emulation (slow:
/// for checking this program's graph cases without a GPU, with `--quick`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum BackendArg {
    Cuda,
    Cpu,
    Emu,
}

/// Where the cases run.
enum Device {
    Cuda(Box<mep_cuda::CudaBackend>),
    Cpu(CpuBackend, String),
    Emu,
}

const USAGE: &str = "usage: gpu_speed [--iters N] [--warmup N] [--device ORDINAL] [--case SUBSTRING]... [--quick] \
                     [--backend cuda|cpu|emu] [--precision fp32|tf32|bf16]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        iters: 20,
        warmup: 3,
        ordinal: 0,
        cases: Vec::new(),
        quick: false,
        backend: BackendArg::Cuda,
        precision: Precision::Fp32,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value; {USAGE}"))
        };
        let count = |v: String| {
            v.parse::<usize>()
                .map_err(|_| format!("{flag} {v}: expected a count; {USAGE}"))
        };
        match flag.as_str() {
            "--iters" => a.iters = count(value()?)?.max(1),
            "--warmup" => a.warmup = count(value()?)?,
            "--device" => a.ordinal = count(value()?)?,
            "--case" => a.cases.push(value()?),
            "--quick" => a.quick = true,
            "--backend" => match value()?.as_str() {
                "cuda" => a.backend = BackendArg::Cuda,
                "cpu" => a.backend = BackendArg::Cpu,
                "emu" => a.backend = BackendArg::Emu,
                other => return Err(format!("--backend {other}: expected cuda, cpu or emu")),
            },
            "--precision" => a.precision = value()?.parse().map_err(|e| format!("--precision: {e}"))?,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument `{other}`; {USAGE}")),
        }
    }
    if a.quick {
        (a.iters, a.warmup) = (2, 1);
    }
    Ok(a)
}

/// Prints one case's JSON line; returns whether it ran.
fn report(case: &str, device: &str, backend: &str, r: Result<Vec<f64>, String>) -> bool {
    let line = match &r {
        Ok(ms) => serde_json::json!({
            "impl": "mep",
            "case": case,
            "median_ms": (median(ms) * 1e4).round() / 1e4,
            "min_ms": (ms.iter().copied().fold(f64::INFINITY, f64::min) * 1e4).round() / 1e4,
            "max_ms": (ms.iter().copied().fold(0.0, f64::max) * 1e4).round() / 1e4,
            "iters": ms.len(),
            "device": device,
            "backend": backend,
        }),
        Err(e) => {
            eprintln!("gpu_speed: case `{case}` failed: {e}");
            serde_json::json!({"impl": "mep", "case": case, "error": e, "device": device, "backend": backend})
        }
    };
    println!("{line}");
    r.is_ok()
}

/// The timed cases that run on any backend; returns the network and input for the graph case
/// and whether every case ran.
fn cases<B: Backend>(
    b: &B,
    sync: &dyn Fn() -> Result<(), String>,
    cfg: &Config,
    args: &Args,
    device: &str,
) -> Result<(FoldedResNet<B>, Tensor<B>, bool), String> {
    let wanted = |name: &str| args.cases.is_empty() || args.cases.iter().any(|c| name.contains(c.as_str()));
    b.set_precision(args.precision)
        .map_err(|e| format!("--precision {}: {e}", args.precision))?;
    let model = ResNet::init(b, Arch::ResNet50, Arch::ResNet50.default_width(), CLASSES, 1)
        .map_err(|e| format!("building the ResNet-50: {e}"))?;
    let net = FoldedResNet::fold(b, &model).map_err(|e| format!("folding the ResNet-50: {e}"))?;
    drop(model);
    let (n, s) = (cfg.batch, cfg.size);
    let x = Tensor::from_vec(b, [n, 3, s, s], normal_vec(n * 3 * s * s, 2)).map_err(|e| e.to_string())?;
    let targets: Vec<usize> = (0..n).map(|i| i % CLASSES).collect();
    let time = |f: &mut dyn FnMut() -> Result<(), String>| time_ms(args.warmup, args.iters, sync, f);
    let mut all = true;

    let name = cfg.forward();
    if wanted(&name) {
        let r = time(&mut || net.head(b, &x, Cut::Input).map(drop).map_err(|e| e.to_string()));
        all &= report(&name, device, b.name(), r);
    }
    let name = cfg.backward();
    if wanted(&name) {
        let scale = 1.0 / n as f32;
        let r = time(&mut || {
            net.head_loss_grad(b, &x, Cut::Input, &targets, scale)
                .map(drop)
                .map_err(|e| e.to_string())
        });
        all &= report(&name, device, b.name(), r);
    }
    // The NEB cases and the graphs are fp32's rows (a search's gradient steps may run in
    // TF32/bf16, but PyTorch's side of those rows is fp32).
    let neb_cuts = if args.precision == Precision::Fp32 {
        &[Cut::Input, Cut::Layer(1)][..]
    } else {
        &[]
    };
    for &cut in neb_cuts {
        let name = cfg.neb(cut);
        if wanted(&name) {
            let r = neb_step(b, &net, cut, cfg).and_then(|(mut neb, mut energy)| {
                time(&mut || neb.step(b, &mut energy).map(drop).map_err(|e| e.to_string()))
            });
            all &= report(&name, device, b.name(), r);
        }
    }
    let name = cfg.train();
    if wanted(&name) {
        let r = train_case(b, &x, &targets, &time);
        all &= report(&name, device, b.name(), r);
    }
    Ok((net, x, all))
}

/// Times a call: `--warmup` untimed, then `--iters` timed ones (ms), each ended by a sync.
type Timer<'a> = dyn Fn(&mut dyn FnMut() -> Result<(), String>) -> Result<Vec<f64>, String> + 'a;

/// Training steps of a second ResNet-50 (the same initialisation, unfolded) on the batch `x`.
fn train_case<B: Backend>(b: &B, x: &Tensor<B>, targets: &[usize], time: &Timer) -> Result<Vec<f64>, String> {
    let mut model = ResNet::init(b, Arch::ResNet50, Arch::ResNet50.default_width(), CLASSES, 1)
        .map_err(|e| format!("building the ResNet-50 to train: {e}"))?;
    let mut adam = Adam::new(AdamParams::default());
    time(&mut || {
        let batch = x.duplicate(b).map_err(|e| e.to_string())?;
        model
            .train_step(b, batch, targets, &mut adam)
            .map(drop)
            .map_err(|e| e.to_string())
    })
}

/// A NEB on the straight path between two random images (encoded at `cut`), with `moving`
/// interior pivots evaluated in one batch, and its energy (cross-entropy against class 0).
#[allow(clippy::type_complexity)]
fn neb_step<'n, B: Backend>(
    b: &B,
    net: &'n FoldedResNet<B>,
    cut: Cut,
    cfg: &Config,
) -> Result<(Neb<B>, HeadEnergy<'n, B>), String> {
    let s = cfg.size;
    let ends = Tensor::from_vec(b, [2, 3, s, s], normal_vec(2 * 3 * s * s, 3)).map_err(|e| e.to_string())?;
    let z = net.encode(b, &ends, cut).map_err(|e| e.to_string())?;
    let point_shape = z.shape.dims()[1..].to_vec();
    let dim: usize = point_shape.iter().product();
    let mut za = b.alloc(dim).map_err(|e| e.to_string())?;
    let mut zb = b.alloc(dim).map_err(|e| e.to_string())?;
    b.copy_rows(dim, &z.buf, 0, &mut za, 0, 1).map_err(|e| e.to_string())?;
    b.copy_rows(dim, &z.buf, 1, &mut zb, 0, 1).map_err(|e| e.to_string())?;
    let path = Path::straight(b, &za, &zb, dim, cfg.moving + 2).map_err(|e| e.to_string())?;
    let energy = HeadEnergy::new(net, cut, 0, &point_shape)
        .map_err(|e| e.to_string())?
        .with_max_batch(cfg.moving);
    let config = NebConfig {
        max_steps: usize::MAX,
        ..NebConfig::default()
    };
    let neb = Neb::new(b, config, path).map_err(|e| e.to_string())?;
    Ok((neb, energy))
}

/// The forward captured once in a graph and replayed. The eager forward before it is the
/// warm-up that fills the memory pool (its output is dropped), so the capture allocates
/// nothing from the device; the replayed logits must equal the eager ones.
fn graph_forward<L: Launcher>(
    b: &KernelBackend<L>,
    net: &FoldedResNet<KernelBackend<L>>,
    x: &Tensor<KernelBackend<L>>,
    args: &Args,
    sync: &dyn Fn() -> Result<(), String>,
) -> Result<Vec<f64>, String> {
    let eager = net
        .head(b, x, Cut::Input)
        .and_then(|y| Ok(y.to_vec(b)?))
        .map_err(|e| e.to_string())?;
    let before = b.pool_stats();
    let (graph, mut y) = b
        .capture(|| net.head(b, x, Cut::Input))
        .map_err(|e| format!("capturing the forward failed: {e}"))?;
    check_capture(b, &graph, before)?;
    // The capture only recorded: NaN shows whether the replay wrote the logits.
    b.fill(&mut y.buf, f32::NAN).map_err(|e| e.to_string())?;
    graph.launch().map_err(|e| e.to_string())?;
    let replayed = y.to_vec(b).map_err(|e| e.to_string())?;
    agree("logits", &eager, &replayed)?;
    let r = time_ms(args.warmup, args.iters, sync, || {
        graph.launch().map_err(|e| e.to_string())
    });
    pool_note(b, "forward graph", Some(graph.held_bytes()));
    r
}

/// The energy+gradient call of a NEB step in `input` (what `HeadEnergy` computes for the
/// moving pivots: the points copied into the network's input, its forward, the per-pivot
/// cross-entropy against class 0 and the backward to the input, `head_loss_grad_into` with the
/// losses left on the device) captured in a graph and replayed: the twin of PyTorch's graph
/// row of the same name. The eager call before it is the warm-up (and puts the targets on the
/// device once); the whole step is `graph_neb_step`.
fn graph_neb_energy<L: Launcher>(
    b: &KernelBackend<L>,
    net: &FoldedResNet<KernelBackend<L>>,
    cfg: &Config,
    args: &Args,
    sync: &dyn Fn() -> Result<(), String>,
) -> Result<Vec<f64>, String> {
    let (n, s) = (cfg.moving, cfg.size);
    let targets = vec![0; n];
    let points = Tensor::from_vec(b, [n, 3, s, s], normal_vec(n * 3 * s * s, 4)).map_err(|e| e.to_string())?;
    let mut z = Tensor::alloc(b, [n, 3, s, s]).map_err(|e| e.to_string())?;
    let mut losses = b.alloc(n).map_err(|e| e.to_string())?;
    let call = |z: &mut Tensor<KernelBackend<L>>, losses: &mut DevBuf<L::Mem>| {
        b.copy(&points.buf, &mut z.buf)?;
        net.head_loss_grad_into(b, z, Cut::Input, &targets, 1.0, losses)
    };
    // Eagerly: the warm-up, and the reference gradient.
    let (_, _, grad) = call(&mut z, &mut losses).map_err(|e| e.to_string())?;
    let want = grad.to_vec(b).map_err(|e| e.to_string())?;
    drop(grad);
    let before = b.pool_stats();
    let (graph, (_, _, mut grad)) = b
        .capture(|| call(&mut z, &mut losses))
        .map_err(|e| format!("capturing the energy+gradient call failed: {e}"))?;
    check_capture(b, &graph, before)?;
    b.fill(&mut grad.buf, f32::NAN).map_err(|e| e.to_string())?;
    graph.launch().map_err(|e| e.to_string())?;
    agree("gradients", &want, &grad.to_vec(b).map_err(|e| e.to_string())?)?;
    let r = time_ms(args.warmup, args.iters, sync, || {
        graph.launch().map_err(|e| e.to_string())
    });
    pool_note(b, "NEB energy+gradient graph", Some(graph.held_bytes()));
    r
}

/// The whole NEB step in `input` captured once and replayed: each timed call is the host's
/// `prepare_device_step` (Adam's bias terms), the replay and `finish_device_step` (energies,
/// force norms and segment lengths read back, as an eager step reads them). A second NEB
/// steps eagerly beside it; the paths must agree bit for bit after the warm-up step and the
/// first replay.
fn graph_neb_step<L: Launcher>(
    b: &KernelBackend<L>,
    net: &FoldedResNet<KernelBackend<L>>,
    cfg: &Config,
    args: &Args,
    sync: &dyn Fn() -> Result<(), String>,
) -> Result<Vec<f64>, String> {
    let s = |e: mep_neb::NebError| e.to_string();
    let (mut eager, mut eager_energy) = neb_step(b, net, Cut::Input, cfg)?;
    let (mut neb, mut energy) = neb_step(b, net, Cut::Input, cfg)?;
    let same_path = |eager: &Neb<KernelBackend<L>>, neb: &Neb<KernelBackend<L>>, when: &str| {
        let (a, g) = (eager.path().to_vec(b).map_err(s)?, neb.path().to_vec(b).map_err(s)?);
        if a.iter().zip(&g).any(|(x, y)| x.to_bits() != y.to_bits()) {
            return Err(format!("the path after the {when} differs from the eager step's"));
        }
        Ok(())
    };
    // The warm-up: one step through the device path fills the pool.
    eager.step(b, &mut eager_energy).map_err(s)?;
    neb.step_device(b, &mut energy).map_err(s)?;
    same_path(&eager, &neb, "warm-up step")?;
    neb.prepare_device_step(b, &mut energy).map_err(s)?;
    let before = b.pool_stats();
    let (graph, ()) = b
        .capture(|| neb.step_on_device(b, &mut energy))
        .map_err(|e| format!("capturing the NEB step failed: {e}"))?;
    check_capture(b, &graph, before)?;
    graph.launch().map_err(|e| e.to_string())?;
    neb.finish_device_step(b).map_err(s)?;
    eager.step(b, &mut eager_energy).map_err(s)?;
    same_path(&eager, &neb, "first replay")?;
    let key = neb.device_step_key();
    let r = time_ms(args.warmup, args.iters, sync, || {
        neb.prepare_device_step(b, &mut energy).map_err(s)?;
        graph.launch().map_err(|e| e.to_string())?;
        neb.finish_device_step(b).map_err(s).map(drop)
    });
    // The defaults never insert pivots nor climb, so the one capture served every step.
    if neb.device_step_key() != key {
        return Err("the step's pivots or climbing switch changed while timing".into());
    }
    pool_note(b, "NEB step graph", Some(graph.held_bytes()));
    r
}

/// A capture must record work and, after the warm-up, allocate nothing from the device.
fn check_capture<L: Launcher>(
    b: &KernelBackend<L>,
    graph: &mep_kernels::Graph<L::Mem>,
    before: PoolStats,
) -> Result<(), String> {
    if graph.is_empty() {
        return Err("the capture recorded no work".into());
    }
    let after = b.pool_stats();
    if after.allocations != before.allocations {
        return Err(format!(
            "the capture made {} device allocations after the warm-up",
            after.allocations - before.allocations
        ));
    }
    Ok(())
}

/// `got` within 1e-3 relative of `want`, else an error naming `what` and the worst element.
fn agree(what: &str, want: &[f32], got: &[f32]) -> Result<(), String> {
    let worst = want
        .iter()
        .zip(got)
        .map(|(a, r)| ((a - r).abs() / (1e-3 + a.abs())) as f64)
        .fold(0.0, |m: f64, v| if v.is_nan() { f64::INFINITY } else { m.max(v) });
    if want.len() != got.len() || worst > 1e-3 {
        return Err(format!(
            "the replayed graph's {what} differ from the eager ones (worst relative {worst:.2e}, {} vs {} values)",
            got.len(),
            want.len()
        ));
    }
    Ok(())
}

/// The memory pool's counters on stderr, after `what`.
fn pool_note<L: Launcher>(b: &KernelBackend<L>, what: &str, graph_bytes: Option<usize>) {
    let s = b.pool_stats();
    let mb = |bytes: usize| bytes as f64 / (1 << 20) as f64;
    let held = graph_bytes.map_or(String::new(), |g| format!(", {:.1} MiB held by the graph", mb(g)));
    eprintln!(
        "gpu_speed: pool after the {what}: {} device allocations, {} cache hits, {:.1} MiB cached of {:.1} MiB{held}",
        s.allocations,
        s.hits,
        mb(s.cached_bytes),
        mb(s.device_bytes)
    );
}

/// The graph cases of a kernel backend; returns whether every one ran.
fn graph_cases<L: Launcher>(
    b: &KernelBackend<L>,
    net: &FoldedResNet<KernelBackend<L>>,
    x: &Tensor<KernelBackend<L>>,
    cfg: &Config,
    args: &Args,
    device: &str,
    sync: &dyn Fn() -> Result<(), String>,
) -> bool {
    let wanted = |name: &str| args.cases.is_empty() || args.cases.iter().any(|c| name.contains(c.as_str()));
    pool_note(b, "eager cases", None);
    let mut all = true;
    let case = cfg.graph();
    if wanted(&case) {
        all &= report(&case, device, b.name(), graph_forward(b, net, x, args, sync));
    }
    let case = cfg.graph_neb();
    if wanted(&case) {
        all &= report(&case, device, b.name(), graph_neb_energy(b, net, cfg, args, sync));
    }
    let case = cfg.graph_neb_step();
    if wanted(&case) {
        all &= report(&case, device, b.name(), graph_neb_step(b, net, cfg, args, sync));
    }
    all
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("gpu_speed: {e}");
            std::process::exit(2);
        }
    };
    let cfg = Config::new(args.quick, args.precision);
    let device = match args.backend {
        BackendArg::Cpu => Device::Cpu(CpuBackend::new(), "--backend cpu".into()),
        BackendArg::Emu => Device::Emu,
        BackendArg::Cuda => match mep_benches::Device::cuda_or_cpu(args.ordinal) {
            mep_benches::Device::Cuda(b) => Device::Cuda(b),
            mep_benches::Device::Cpu(b, why) => Device::Cpu(b, why),
        },
    };
    let ok = match device {
        Device::Cpu(_, why) if args.backend == BackendArg::Cuda => {
            eprintln!(
                "gpu_speed: no usable GPU: {why}\n(`gpu_speed --backend cpu [--quick]` runs the same cases on the CPU backend)"
            );
            std::process::exit(2);
        }
        Device::Cpu(b, _) => cases(&b, &|| Ok(()), &cfg, &args, "cpu").map(|(.., all)| all),
        Device::Emu => {
            let b = mep_kernels_emu::EmuLauncher::backend();
            let sync = || Ok(());
            cases(&b, &sync, &cfg, &args, "emu").map(|(net, x, all)| {
                all & (args.precision != Precision::Fp32 || graph_cases(&b, &net, &x, &cfg, &args, "emu", &sync))
            })
        }
        Device::Cuda(b) => {
            let b = *b;
            let name = b.launcher().device_name().to_string();
            eprintln!(
                "gpu_speed: {name} ({}, driver CUDA {}.{})",
                b.launcher().arch(),
                b.launcher().driver_version() / 1000,
                b.launcher().driver_version() % 1000 / 10
            );
            let sync = || cuda_sync(&b);
            cases(&b, &sync, &cfg, &args, &name).map(|(net, x, all)| {
                all & (args.precision != Precision::Fp32 || graph_cases(&b, &net, &x, &cfg, &args, &name, &sync))
            })
        }
    };
    match ok {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("gpu_speed: {e}");
            std::process::exit(1);
        }
    }
}
