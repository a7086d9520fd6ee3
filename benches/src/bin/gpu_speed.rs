//! mep's side of the GPU speed table (`cargo xtask gpu-check`; PyTorch's side is
//! `tools/torch_speed.py`, which times the same cases under the same names).
//!
//! `gpu_speed [--iters 20] [--warmup 3] [--device 0] [--case SUBSTRING]... [--quick] [--backend cuda|cpu]`
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
//! - on the GPU, the forward captured once in a CUDA graph and replayed (checked against the
//!   eager forward first).
//!
//! Each case: `--warmup` untimed calls, then `--iters` timed ones, each ended by a device
//! synchronisation. One JSON object per case on stdout:
//! `{"impl":"mep","case":…,"median_ms":…,"min_ms":…,"max_ms":…,"iters":…,"device":…}`, or
//! `{"impl":"mep","case":…,"error":…}` for a case that failed (exit status 1).
//! Without a usable GPU it exits with status 2 and says why; `--backend cpu` runs the same
//! cases on the CPU backend, and `--quick` shrinks them (batch 2 at 64×64, 2 moving pivots,
//! 2 iterations) to check this program itself.

use mep::connect::HeadEnergy;
use mep_benches::{cuda_sync, median, normal_vec, time_ms, Device};
use mep_neb::{Neb, NebConfig, Path};
use mep_nn::Adam;
use mep_resnet::{Arch, Cut, FoldedResNet, ResNet};
use mep_tensor::{AdamParams, Backend, CpuBackend, Tensor};

const CLASSES: usize = 10;

/// The sizes of the cases.
struct Config {
    batch: usize,
    size: usize,
    /// The interior pivots, the ones that move; the path has two more.
    moving: usize,
}

impl Config {
    fn new(quick: bool) -> Config {
        if quick {
            Config {
                batch: 2,
                size: 64,
                moving: 2,
            }
        } else {
            Config {
                batch: 32,
                size: 224,
                moving: 32,
            }
        }
    }
    // The names tools/torch_speed.py gives the same cases.
    fn forward(&self) -> String {
        format!("resnet50 {0}x{0} b{1} forward", self.size, self.batch)
    }
    fn backward(&self) -> String {
        format!("resnet50 {0}x{0} b{1} forward+backward to input", self.size, self.batch)
    }
    fn neb(&self, cut: Cut) -> String {
        let s = if cut == Cut::Input { self.size } else { self.size / 4 };
        format!("neb step {cut} {s}x{s}, {} pivots", self.moving)
    }
    fn train(&self) -> String {
        format!("resnet50 {0}x{0} b{1} training step (Adam)", self.size, self.batch)
    }
    fn graph(&self) -> String {
        format!("resnet50 {0}x{0} b{1} forward, CUDA graph", self.size, self.batch)
    }
}

struct Args {
    iters: usize,
    warmup: usize,
    ordinal: usize,
    cases: Vec<String>,
    quick: bool,
    cpu: bool,
}

const USAGE: &str = "usage: gpu_speed [--iters N] [--warmup N] [--device ORDINAL] [--case SUBSTRING]... [--quick] \
                     [--backend cuda|cpu]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        iters: 20,
        warmup: 3,
        ordinal: 0,
        cases: Vec::new(),
        quick: false,
        cpu: false,
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
                "cuda" => a.cpu = false,
                "cpu" => a.cpu = true,
                other => return Err(format!("--backend {other}: expected cuda or cpu")),
            },
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument `{other}`; {USAGE}")),
        }
    }
    if a.quick {
        (a.iters, a.warmup) = (2, 1);
    }
    Ok(a)
}

/// Why a case did not run: the API cannot do it yet (reported, not a failure), or it failed.
enum CaseError {
    Unsupported(String),
    Failed(String),
}

impl From<String> for CaseError {
    fn from(e: String) -> Self {
        CaseError::Failed(e)
    }
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

/// [`report`] for a case the backend may not support: unsupported counts as no failure.
fn report_optional(case: &str, device: &str, backend: &str, r: Result<Vec<f64>, CaseError>) -> bool {
    match r {
        Ok(ms) => report(case, device, backend, Ok(ms)),
        Err(CaseError::Failed(e)) => report(case, device, backend, Err(e)),
        Err(CaseError::Unsupported(e)) => {
            eprintln!("gpu_speed: case `{case}` skipped: {e}");
            let line = serde_json::json!({
                "impl": "mep", "case": case, "error": e, "unsupported": true, "device": device, "backend": backend,
            });
            println!("{line}");
            true
        }
    }
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
    for cut in [Cut::Input, Cut::Layer(1)] {
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
fn train_case<B: Backend>(
    b: &B,
    x: &Tensor<B>,
    targets: &[usize],
    time: &Timer,
) -> Result<Vec<f64>, String> {
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

/// The forward captured once in a CUDA graph, checked against the eager forward, then
/// replayed. A capture the launcher refuses (e.g. the forward allocates its activations, which
/// a capture may not) is `Unsupported`; wrong replayed logits are a failure.
fn graph_case(
    b: &mep_cuda::CudaBackend,
    net: &FoldedResNet<mep_cuda::CudaBackend>,
    x: &Tensor<mep_cuda::CudaBackend>,
    args: &Args,
) -> Result<Vec<f64>, CaseError> {
    let eager = net
        .head(b, x, Cut::Input)
        .and_then(|y| Ok(y.to_vec(b)?))
        .map_err(|e| e.to_string())?;
    let mut y = None;
    let graph = b
        .launcher()
        .capture(|| net.head(b, x, Cut::Input).map(|t| y = Some(t)))
        .map_err(|e| CaseError::Unsupported(format!("capturing the forward failed: {e}")))?;
    if graph.is_empty() {
        return Err(CaseError::Failed("the capture recorded no work".into()));
    }
    let y = y.ok_or_else(|| "the captured forward returned no output".to_string())?;
    graph.launch().map_err(|e| e.to_string())?;
    let replayed = y.to_vec(b).map_err(|e| e.to_string())?;
    let worst = eager
        .iter()
        .zip(&replayed)
        .map(|(a, r)| ((a - r).abs() / (1e-3 + a.abs())) as f64)
        .fold(0.0, f64::max);
    if replayed.len() != eager.len() || worst > 1e-3 {
        return Err(CaseError::Failed(format!(
            "the replayed graph's logits differ from the eager forward's (worst relative {worst:.2e})"
        )));
    }
    let r = time_ms(args.warmup, args.iters, &|| cuda_sync(b), || {
        graph.launch().map_err(|e| e.to_string())
    });
    drop(graph);
    drop(y);
    Ok(r?)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("gpu_speed: {e}");
            std::process::exit(2);
        }
    };
    let cfg = Config::new(args.quick);
    let device = if args.cpu {
        Device::Cpu(CpuBackend::new(), "--backend cpu".into())
    } else {
        Device::cuda_or_cpu(args.ordinal)
    };
    let ok = match device {
        Device::Cpu(_, why) if !args.cpu => {
            eprintln!(
                "gpu_speed: no usable GPU: {why}\n(`gpu_speed --backend cpu [--quick]` runs the same cases on the CPU backend)"
            );
            std::process::exit(2);
        }
        Device::Cpu(b, _) => cases(&b, &|| Ok(()), &cfg, &args, "cpu").map(|(.., all)| all),
        Device::Cuda(b) => {
            let b = *b;
            let name = b.launcher().device_name().to_string();
            eprintln!(
                "gpu_speed: {name} ({}, driver CUDA {}.{})",
                b.launcher().arch(),
                b.launcher().driver_version() / 1000,
                b.launcher().driver_version() % 1000 / 10
            );
            cases(&b, &|| cuda_sync(&b), &cfg, &args, &name).map(|(net, x, mut all)| {
                let case = cfg.graph();
                if args.cases.is_empty() || args.cases.iter().any(|c| case.contains(c.as_str())) {
                    all &= report_optional(&case, &name, "cuda", graph_case(&b, &net, &x, &args));
                }
                all
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
