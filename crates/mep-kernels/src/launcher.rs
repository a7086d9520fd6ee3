//! What a device must offer to run kernels/*.cu: memory, copies and launches by name.
//!
//! The CUDA backend (`mep-cuda`) implements it with cudarc, the CPU emulation
//! (`mep-kernels-emu`) with host memory and the g++-compiled kernels, so both run the same
//! host code in [`KernelBackend`](crate::KernelBackend): which kernel, which grid, which
//! arguments.

use crate::error::Result;

/// A launch's grid or block size (x, y, z).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub x: u32,
    pub y: u32,
    pub z: u32,
}

impl Dims {
    /// `x` × 1 × 1.
    pub const fn x(x: u32) -> Dims {
        Dims { x, y: 1, z: 1 }
    }
    /// `x` × `y` × `z`.
    pub const fn xyz(x: u32, y: u32, z: u32) -> Dims {
        Dims { x, y, z }
    }
}

/// One kernel argument, by value, in the kernel's parameter order. `Ptr` is a device address
/// ([`Launcher::ptr`] plus a byte offset); the kernel's C types are `long long` for `I64`,
/// `int` for `I32`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arg {
    Ptr(u64),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
}

impl Arg {
    /// The argument's bytes, as the kernel reads them from its parameter buffer.
    pub fn bytes(&self) -> [u8; 8] {
        match *self {
            Arg::Ptr(p) => p.to_ne_bytes(),
            Arg::I64(v) => v.to_ne_bytes(),
            Arg::F64(v) => v.to_ne_bytes(),
            Arg::I32(v) => pad4(v.to_ne_bytes()),
            Arg::F32(v) => pad4(v.to_ne_bytes()),
        }
    }
}

fn pad4(b: [u8; 4]) -> [u8; 8] {
    [b[0], b[1], b[2], b[3], 0, 0, 0, 0]
}

/// A device that runs the kernels of kernels/*.cu.
///
/// Memory is untyped bytes; offsets and lengths are in bytes. Operations are ordered as
/// issued (one stream); `read` returns once the data is on the host.
pub trait Launcher: Send + Sync + 'static {
    /// One device allocation.
    type Mem: Send + Sync;

    /// A short name for messages ("cuda", "emu").
    fn name(&self) -> &'static str;
    /// `bytes` bytes of unspecified contents (`bytes` may be 0).
    fn alloc(&self, bytes: usize) -> Result<Self::Mem>;
    /// Copies `src` into `mem` at byte `offset`.
    fn write(&self, mem: &mut Self::Mem, offset: usize, src: &[u8]) -> Result<()>;
    /// Copies `dst.len()` bytes of `mem` from byte `offset` into `dst`.
    fn read(&self, mem: &Self::Mem, offset: usize, dst: &mut [u8]) -> Result<()>;
    /// Copies `bytes` bytes from `src` at `src_offset` to `dst` at `dst_offset`.
    fn copy(
        &self,
        src: &Self::Mem,
        src_offset: usize,
        dst: &mut Self::Mem,
        dst_offset: usize,
        bytes: usize,
    ) -> Result<()>;
    /// The device address of the first byte of `mem`, for [`Arg::Ptr`].
    fn ptr(&self, mem: &Self::Mem) -> u64;
    /// Runs kernel `kernel` (its `extern "C"` name, e.g. `axpy_f32_v2`) on `grid` blocks of
    /// `block` threads with `args`.
    fn launch(&self, kernel: &str, grid: Dims, block: Dims, args: &[Arg]) -> Result<()>;
    /// Waits for everything issued so far.
    fn synchronize(&self) -> Result<()>;
    /// Why this device cannot run the tensor-core kernels (TF32 and bf16 `mma.sync`, sm_80
    /// and newer), or `None` when it can (the default).
    fn tensor_cores_missing(&self) -> Option<String> {
        None
    }
    /// Records the launches and device-to-device copies that `work` issues, without running
    /// them, into a graph that [`Replay::replay`] runs again with the same addresses and
    /// arguments. Host copies, allocations and synchronisation inside `work` are errors.
    /// An error of `work` is returned as [`KernelError::Launch`](crate::KernelError::Launch)
    /// naming it, and the launcher stays usable.
    ///
    /// Call it through [`KernelBackend::capture`](crate::KernelBackend::capture), whose pool
    /// keeps the graph's memory apart; the default says the launcher cannot capture.
    fn capture(&self, work: &mut dyn FnMut() -> std::result::Result<(), String>) -> Result<Box<dyn Replay>> {
        let _ = work;
        Err(crate::KernelError::Unavailable(format!(
            "the {} launcher cannot capture graphs",
            self.name()
        )))
    }
}

/// A launcher's captured graph (see [`Launcher::capture`]). `Send` but not `Sync`: a CUDA
/// graph may move between threads but must not be launched from two at once.
pub trait Replay: Send {
    /// Runs the recorded work again, in order with the launcher's other work.
    fn replay(&self) -> Result<()>;
    /// Whether nothing was recorded.
    fn is_empty(&self) -> bool;
}
