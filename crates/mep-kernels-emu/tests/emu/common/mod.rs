//! Shared by the per-kernel test modules: deterministic data, launch shapes, the emulated device with
//! typed buffers, and the tolerance check.
#![allow(dead_code)]

use mep_kernels::{Arg, Dims, Launcher};
use mep_kernels_emu::{EmuLauncher, EmuMem};

/// Deterministic values in `[lo, hi)` from the workspace's generator (mep-rng), one stream
/// per `seed`.
pub fn data(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut rng = mep_rng::SplitMix64::new(seed);
    (0..n).map(|_| lo + (hi - lo) * rng.unit_f32()).collect()
}

/// Sizes that are not multiples of the block sizes, plus a one-element buffer.
pub const SIZES: [usize; 4] = [1, 37, 1000, 4099];

/// Which version of a kernel runs (see the header comment of its kernels/*.cu file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// The simple one: usually one thread per output.
    V1,
    /// The fast one: grid-stride, vectorised or with block reductions.
    V2,
}

impl Version {
    /// Both versions, for tests that run each.
    pub const ALL: [Version; 2] = [Version::V1, Version::V2];

    /// The entry point of `op` (`axpy_f32`) in this version (`axpy_f32_v2`).
    pub fn of(self, op: &str) -> String {
        match self {
            Version::V1 => format!("{op}_v1"),
            Version::V2 => format!("{op}_v2"),
        }
    }
}

/// A 1-D launch configuration: `grid` blocks of `block` threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Launch {
    /// Number of blocks.
    pub grid: u32,
    /// Threads per block.
    pub block: u32,
}

impl Launch {
    /// `grid` blocks of `block` threads.
    pub fn new(grid: u32, block: u32) -> Launch {
        Launch { grid, block }
    }
    /// Enough blocks of `block` threads for one thread per element of `n` (at least one block).
    pub fn cover(n: usize, block: u32) -> Launch {
        let grid = n.div_ceil(block.max(1) as usize).max(1);
        Launch::new(u32::try_from(grid).unwrap(), block)
    }
}

/// The launches a kernel version is tested with for `n` work items: v1 covers the items with
/// one thread each (blocks of 32 and 128, multi-block); v2 is grid-stride (one block, and 3
/// blocks of 64 so that each thread takes several items).
pub fn launches(v: Version, n: usize) -> Vec<Launch> {
    match v {
        Version::V1 => vec![Launch::cover(n, 32), Launch::cover(n, 128)],
        Version::V2 => vec![Launch::new(1, 32), Launch::new(3, 64)],
    }
}

/// A value a kernel reads or writes through a pointer.
pub trait Elem: Copy {
    const SIZE: usize;
    fn put(self, out: &mut Vec<u8>);
    fn get(bytes: &[u8]) -> Self;
}

macro_rules! elem {
    ($($t:ty),*) => {$(
        impl Elem for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn put(self, out: &mut Vec<u8>) {
                out.extend(self.to_ne_bytes());
            }
            fn get(bytes: &[u8]) -> Self {
                <$t>::from_ne_bytes(bytes.try_into().unwrap())
            }
        }
    )*};
}
elem!(f32, f64, i32);

/// The emulated device, driven as `KernelBackend` drives it (alloc, write, launch by name with
/// `Arg`s, read), but with whatever kernel version and launch shape a test asks for.
pub struct Dev(pub EmuLauncher);

impl Dev {
    pub fn new() -> Dev {
        Dev(EmuLauncher::new())
    }
    /// A device buffer holding `values`.
    pub fn upload<T: Elem>(&self, values: &[T]) -> EmuMem {
        let mut bytes = Vec::with_capacity(values.len() * T::SIZE);
        values.iter().for_each(|v| v.put(&mut bytes));
        let mut mem = self.0.alloc(bytes.len()).unwrap();
        self.0.write(&mut mem, 0, &bytes).unwrap();
        mem
    }
    /// The `n` values at the start of `mem`.
    pub fn download<T: Elem>(&self, mem: &EmuMem, n: usize) -> Vec<T> {
        let mut bytes = vec![0u8; n * T::SIZE];
        self.0.read(mem, 0, &mut bytes).unwrap();
        bytes.chunks_exact(T::SIZE).map(T::get).collect()
    }
    /// The address of element `index` of a buffer of `T`s, as a kernel argument.
    pub fn ptr_at<T: Elem>(&self, mem: &EmuMem, index: usize) -> Arg {
        Arg::Ptr(self.0.ptr(mem) + (index * T::SIZE) as u64)
    }
    /// The address of `mem`, as a kernel argument.
    pub fn ptr(&self, mem: &EmuMem) -> Arg {
        Arg::Ptr(self.0.ptr(mem))
    }
    /// Runs `kernel` on a 1-D launch.
    pub fn run(&self, kernel: &str, l: Launch, args: &[Arg]) -> mep_kernels::Result<()> {
        self.0.launch(kernel, Dims::x(l.grid), Dims::x(l.block), args)
    }
}

/// `n` as a kernel's `long long`.
pub fn i64_arg(n: usize) -> Arg {
    Arg::I64(i64::try_from(n).unwrap())
}

/// Fails, listing the first mismatches with their indices, unless every
/// `|got − want| ≤ atol + rtol·|want|` (NaN matches NaN).
pub fn assert_close<T: Into<f64> + Copy>(what: &str, got: &[T], want: &[T], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let bad: Vec<String> = got
        .iter()
        .zip(want)
        .enumerate()
        .filter_map(|(i, (&g, &w))| {
            let (g, w): (f64, f64) = (g.into(), w.into());
            let ok = (g.is_nan() && w.is_nan()) || (g - w).abs() <= atol + rtol * w.abs();
            (!ok).then(|| format!("[{i}] got {g:e}, want {w:e}, diff {:e}", (g - w).abs()))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: {} of {} mismatches (atol {atol:e}, rtol {rtol:e}); first: {}",
        bad.len(),
        got.len(),
        bad.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
    );
}
