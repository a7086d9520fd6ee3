//! [`KernelBackend`]: the Backend trait on any [`Launcher`], one kernel launch (or a few) per
//! operation. Buffers live here; each op family's host code (`impl Conv for KernelBackend`,
//! ...) lives in `ops/<family>.rs`.

use crate::error::KernelError;
use crate::launcher::{Arg, Dims, Launcher};
use crate::ops;
use mep_tensor::{Checked, Memory, Result, TensorError};

/// Which version of each kernel runs (see the header comment of each kernels/*.cu).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Kernels {
    /// The fast versions (tiled, grid-stride, vectorised); the default.
    #[default]
    Fast,
    /// The simple v1 versions, the readable specification; tests run both.
    Simple,
}

/// A buffer of f32 in a launcher's memory.
pub struct DevBuf<M> {
    pub(crate) mem: M,
    pub(crate) len: usize,
}

impl<M> DevBuf<M> {
    /// The launcher's allocation (e.g. to hand its address to a kernel of your own).
    pub fn mem(&self) -> &M {
        &self.mem
    }
    /// Number of f32 elements.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the buffer holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The Backend of the hand-written kernels, on the device behind `L`.
///
/// ```
/// # fn demo<L: mep_kernels::Launcher>(launcher: L) -> mep_tensor::Result<()> {
/// use mep_kernels::KernelBackend;
/// use mep_tensor::prelude::*;
/// let b = KernelBackend::new(launcher);
/// let x = b.upload(&[1.0, 2.0])?;
/// let mut y = b.upload(&[10.0, 20.0])?;
/// b.axpy(2.0, &x, &mut y)?;
/// assert_eq!(b.download(&y)?, vec![12.0, 24.0]);
/// # Ok(()) }
/// ```
pub struct KernelBackend<L: Launcher> {
    launcher: L,
    kernels: Kernels,
}

impl<L: Launcher> KernelBackend<L> {
    /// The fast kernels on `launcher`.
    pub fn new(launcher: L) -> Self {
        KernelBackend {
            launcher,
            kernels: Kernels::Fast,
        }
    }
    /// The given kernel versions on `launcher`.
    pub fn with_kernels(launcher: L, kernels: Kernels) -> Self {
        KernelBackend { launcher, kernels }
    }
    /// The launcher.
    pub fn launcher(&self) -> &L {
        &self.launcher
    }
    /// Which kernel versions run.
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }
    /// Whether the fast versions run.
    pub(crate) fn fast(&self) -> bool {
        self.kernels == Kernels::Fast
    }

    /// A launcher error as the Backend's error, kept as its source; out of memory stays
    /// apart so that callers can tell it from a failed device.
    pub(crate) fn err(&self, e: KernelError) -> TensorError {
        let backend = self.launcher.name();
        match e {
            KernelError::OutOfMemory { bytes, .. } => TensorError::OutOfMemory {
                backend,
                bytes: Some(bytes),
                source: Box::new(e),
            },
            e => TensorError::Device {
                backend,
                source: Box::new(e),
            },
        }
    }
    /// Launches `kernel` (full name, e.g. `axpy_f32_v2`).
    pub(crate) fn launch(&self, kernel: &str, grid: Dims, block: Dims, args: &[Arg]) -> Result<()> {
        self.launcher.launch(kernel, grid, block, args).map_err(|e| self.err(e))
    }
    /// The device address of `b`'s first element.
    pub(crate) fn ptr(&self, b: &DevBuf<L::Mem>) -> Arg {
        Arg::Ptr(self.launcher.ptr(&b.mem))
    }
    /// The device address of element `offset` of `b` (f32 elements).
    pub(crate) fn ptr_at(&self, b: &DevBuf<L::Mem>, offset: usize) -> Arg {
        Arg::Ptr(self.launcher.ptr(&b.mem) + 4 * offset as u64)
    }
    /// A device copy of `bytes` (small host arguments: targets, plans), freed when dropped.
    pub(crate) fn temp_bytes(&self, bytes: &[u8]) -> Result<L::Mem> {
        let mut m = self.launcher.alloc(bytes.len()).map_err(|e| self.err(e))?;
        self.launcher.write(&mut m, 0, bytes).map_err(|e| self.err(e))?;
        Ok(m)
    }
    /// A device array of `n` f64 zeros (accumulators the kernels add into).
    pub(crate) fn temp_f64_zeros(&self, n: usize) -> Result<L::Mem> {
        self.temp_bytes(&vec![0u8; 8 * n])
    }
    /// A device array of `n` f64 of unspecified contents (for kernels that write every one):
    /// no host copy, which on a GPU would also wait for the stream.
    pub(crate) fn temp_f64(&self, n: usize) -> Result<L::Mem> {
        self.launcher.alloc(8 * n).map_err(|e| self.err(e))
    }
    /// Reads `n` f64 from `mem`.
    pub(crate) fn read_f64(&self, mem: &L::Mem, n: usize) -> Result<Vec<f64>> {
        let mut bytes = vec![0u8; 8 * n];
        self.launcher.read(mem, 0, &mut bytes).map_err(|e| self.err(e))?;
        Ok(bytes
            .chunks_exact(8)
            .map(|c| f64::from_ne_bytes(c.try_into().expect("8-byte chunks")))
            .collect())
    }
    /// The device address of a launcher allocation.
    pub(crate) fn mem_ptr(&self, m: &L::Mem) -> Arg {
        Arg::Ptr(self.launcher.ptr(m))
    }
}

/// Blocks for one thread per element of `n` (at least one; capped at 2^31 − 1).
pub(crate) fn blocks_for(n: usize, block: u32) -> u32 {
    n.div_ceil(block as usize).clamp(1, i32::MAX as usize) as u32
}

/// `n` as a kernel's `long long`.
pub(crate) fn i64_of(n: usize) -> Arg {
    Arg::I64(n as i64)
}

/// `n` as a kernel's `int`; an error naming `what` when it does not fit.
pub(crate) fn i32_of(op: &'static str, what: &str, n: usize) -> Result<Arg> {
    i32::try_from(n).map(Arg::I32).map_err(|_| TensorError::Invalid {
        op,
        msg: format!("{what} = {n} does not fit the kernel's int"),
    })
}

fn f32_bytes(data: &[f32]) -> Vec<u8> {
    data.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

impl<L: Launcher> Memory for KernelBackend<L> {
    type Buf = DevBuf<L::Mem>;

    fn name(&self) -> &'static str {
        self.launcher.name()
    }

    fn alloc(&self, len: usize) -> Result<Self::Buf> {
        let bytes = len.checked_mul(4).ok_or_else(|| {
            self.err(KernelError::OutOfMemory {
                bytes: usize::MAX,
                msg: format!("{len} f32 values are more bytes than an address space holds"),
            })
        })?;
        let mem = self.launcher.alloc(bytes).map_err(|e| self.err(e))?;
        Ok(DevBuf { mem, len })
    }
    fn zeros(&self, len: usize) -> Result<Self::Buf> {
        let mut b = self.alloc(len)?;
        self.fill(&mut b, 0.0)?;
        Ok(b)
    }
    fn upload(&self, data: &[f32]) -> Result<Self::Buf> {
        let mut b = self.alloc(data.len())?;
        self.launcher
            .write(&mut b.mem, 0, &f32_bytes(data))
            .map_err(|e| self.err(e))?;
        Ok(b)
    }
    fn download(&self, buf: &Self::Buf) -> Result<Vec<f32>> {
        let mut bytes = vec![0u8; 4 * buf.len];
        self.launcher.read(&buf.mem, 0, &mut bytes).map_err(|e| self.err(e))?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_ne_bytes(c.try_into().expect("4-byte chunks")))
            .collect())
    }
    fn len(&self, buf: &Self::Buf) -> usize {
        buf.len
    }
    fn fill(&self, buf: &mut Self::Buf, value: f32) -> Result<()> {
        ops::elementwise::fill(self, buf, value)
    }
    fn run_copy(&self, _: Checked, src: &Self::Buf, dst: &mut Self::Buf) -> Result<()> {
        self.launcher
            .copy(&src.mem, 0, &mut dst.mem, 0, 4 * src.len)
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    /// A device with no memory at all: every allocation of more than 0 bytes fails as out of
    /// memory, every launch as a failed launch.
    struct Full;

    impl Launcher for Full {
        type Mem = ();
        fn name(&self) -> &'static str {
            "full"
        }
        fn alloc(&self, bytes: usize) -> crate::Result<()> {
            match bytes {
                0 => Ok(()),
                _ => Err(KernelError::OutOfMemory {
                    bytes,
                    msg: format!("allocating {bytes} bytes on full failed: out of memory"),
                }),
            }
        }
        fn write(&self, _: &mut (), _: usize, _: &[u8]) -> crate::Result<()> {
            Ok(())
        }
        fn read(&self, _: &(), _: usize, _: &mut [u8]) -> crate::Result<()> {
            Ok(())
        }
        fn copy(&self, _: &(), _: usize, _: &mut (), _: usize, _: usize) -> crate::Result<()> {
            Ok(())
        }
        fn ptr(&self, _: &()) -> u64 {
            0
        }
        fn launch(&self, kernel: &str, _: Dims, _: Dims, _: &[Arg]) -> crate::Result<()> {
            Err(KernelError::Launch {
                kernel: kernel.into(),
                msg: "device lost".into(),
            })
        }
        fn synchronize(&self) -> crate::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn out_of_memory_stays_out_of_memory_with_the_kernel_error_as_source() {
        let b = KernelBackend::new(Full);
        let e = b.alloc(3).err().expect("no memory");
        assert!(e.is_out_of_memory(), "{e:?}");
        assert!(matches!(
            e,
            TensorError::OutOfMemory {
                backend: "full",
                bytes: Some(12),
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "backend full: device memory: allocating 12 bytes on full failed: out of memory"
        );
        let source = e.source().and_then(|s| s.downcast_ref::<KernelError>());
        assert!(source.is_some_and(KernelError::is_out_of_memory), "{source:?}");
    }

    #[test]
    fn other_device_failures_are_device_errors_with_the_kernel_error_as_source() {
        let b = KernelBackend::new(Full);
        let e = b
            .launch("axpy_f32_v2", Dims::x(1), Dims::x(1), &[])
            .expect_err("launch fails");
        assert!(!e.is_out_of_memory());
        assert!(matches!(e, TensorError::Device { backend: "full", .. }), "{e:?}");
        assert_eq!(e.to_string(), "backend full: kernel axpy_f32_v2: device lost");
        let source = e.source().and_then(|s| s.downcast_ref::<KernelError>());
        assert!(matches!(source, Some(KernelError::Launch { .. })), "{source:?}");
    }
}
