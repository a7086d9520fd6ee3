//! Shared set-up of mep's benchmarks: the rows of the PyTorch comparison and a
//! deterministic model and input for each.

use mep_resnet::{Arch, Network, ResNet};
use mep_tensor::{CpuBackend, Tensor};

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
pub fn setup(b: &CpuBackend, row: &Row) -> (Network<CpuBackend>, Tensor<CpuBackend>, Vec<usize>) {
    let model = ResNet::init(b, row.arch, row.arch.default_width(), row.classes, 1).expect("init");
    let net = Network::fold(b, &model).expect("fold");
    let mut rng = mep_nn::init::Rng::new(2);
    let n = row.batch * 3 * row.size * row.size;
    let x: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    let x = Tensor::from_vec(b, [row.batch, 3, row.size, row.size], x).expect("input");
    let targets = (0..row.batch).map(|i| i % row.classes).collect();
    (net, x, targets)
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
}
