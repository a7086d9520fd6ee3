//! Shared set-up of mep's benchmarks: the rows of the PyTorch comparison and a
//! deterministic model and input for each (on any backend), timing with a device
//! synchronisation, and the choice of the GPU or the CPU for the GPU benchmarks.

use mep_kernels::Launcher;
use mep_resnet::{Arch, FoldedResNet, ResNet};
use mep_tensor::{Backend, CpuBackend, Tensor};
use std::time::Instant;

/// One row of the comparison table.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    pub name: &'static str,
    pub arch: Arch,
    pub size: usize,
    pub batch: usize,
    pub classes: usize,
}

/// The rows of BENCHMARKS.md, named as `benches/pytorch_resnet.py` names them.
pub const ROWS: [Row; 3] = [
    Row {
        name: "resnet50 224x224 b8",
        arch: Arch::ResNet50,
        size: 224,
        batch: 8,
        classes: 10,
    },
    Row {
        name: "resnet50 32x32 b64",
        arch: Arch::ResNet50,
        size: 32,
        batch: 64,
        classes: 10,
    },
    Row {
        name: "resnet20 32x32 b128",
        arch: Arch::ResNet20,
        size: 32,
        batch: 128,
        classes: 10,
    },
];

/// A folded network with torchvision's initialisation and an N(0,1)-ish input for `row`.
pub fn setup<B: Backend>(b: &B, row: &Row) -> (FoldedResNet<B>, Tensor<B>, Vec<usize>) {
    let model = ResNet::init(b, row.arch, row.arch.default_width(), row.classes, 1).expect("init");
    let net = FoldedResNet::fold(b, &model).expect("fold");
    let x = Tensor::from_vec(
        b,
        [row.batch, 3, row.size, row.size],
        normal_vec(row.batch * 3 * row.size * row.size, 2),
    )
    .expect("input");
    let targets = (0..row.batch).map(|i| i % row.classes).collect();
    (net, x, targets)
}

/// `n` draws of N(0, 1) (as f32) from seed `seed`.
pub fn normal_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = mep_nn::init::Rng::new(seed);
    (0..n).map(|_| rng.normal() as f32).collect()
}

/// Where a GPU benchmark runs: the CUDA backend when a GPU can be used, else the CPU backend
/// and the reason there is no GPU.
pub enum Device {
    Cuda(Box<mep_cuda::CudaBackend>),
    Cpu(CpuBackend, String),
}

impl Device {
    /// The CUDA backend on GPU `ordinal`, or the CPU with the reason.
    pub fn cuda_or_cpu(ordinal: usize) -> Device {
        match mep_cuda::cuda_backend(ordinal) {
            Ok(b) => Device::Cuda(Box::new(b)),
            Err(e) => Device::Cpu(CpuBackend::new(), e.to_string()),
        }
    }
}

/// Waits for the CUDA backend to finish everything issued (so a timing covers the work, not
/// only its launch).
pub fn cuda_sync(b: &mep_cuda::CudaBackend) -> Result<(), String> {
    b.launcher().synchronize().map_err(|e| e.to_string())
}

/// Runs `f` `warmup` times, then `iters` times timed, each followed by `sync`; the times in ms.
pub fn time_ms(
    warmup: usize,
    iters: usize,
    sync: &dyn Fn() -> Result<(), String>,
    mut f: impl FnMut() -> Result<(), String>,
) -> Result<Vec<f64>, String> {
    for _ in 0..warmup {
        f()?;
    }
    sync()?;
    (0..iters)
        .map(|_| {
            let t = Instant::now();
            f()?;
            sync()?;
            Ok(t.elapsed().as_secs_f64() * 1e3)
        })
        .collect()
}

/// The median of `v` (the upper one of an even count); NaN when empty.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Peak resident memory of this process in MiB (VmHWM), where /proc has it.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The options every timing binary takes: `--row NAME [--iters N] [--threads T]`.
pub struct TimingArgs {
    pub row: Option<String>,
    pub iters: usize,
    pub threads: usize,
}

impl TimingArgs {
    /// Reads the process's arguments (defaults: 10 iterations, 2 threads).
    pub fn from_env() -> Self {
        let args: Vec<String> = std::env::args().collect();
        let arg = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        TimingArgs {
            row: arg("--row"),
            iters: arg("--iters").and_then(|s| s.parse().ok()).unwrap_or(10),
            threads: arg("--threads").and_then(|s| s.parse().ok()).unwrap_or(2),
        }
    }

    /// Sizes rayon's global pool to `--threads`, before any timing: both timing binaries
    /// measure at a fixed thread count.
    pub fn init_threads(&self) {
        rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .build_global()
            .expect("thread pool");
    }
}
