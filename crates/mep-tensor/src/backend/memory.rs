//! Buffers: allocation, host transfers, copies and fills.

use crate::error::{check_len, Result, TensorError};
use crate::precision::Precision;

/// Buffers of f32 owned by a backend; every other family builds on it.
pub trait Memory: Send + Sync + 'static {
    /// A buffer of f32 owned by this backend.
    type Buf: Send + Sync;

    /// A short name for messages ("cpu", "cuda").
    fn name(&self) -> &'static str;

    /// A buffer of `len` elements whose contents are unspecified (reused memory).
    fn alloc(&self, len: usize) -> Result<Self::Buf>;
    /// A buffer of `len` zeros.
    fn zeros(&self, len: usize) -> Result<Self::Buf>;
    /// A buffer holding a copy of `data`.
    fn upload(&self, data: &[f32]) -> Result<Self::Buf>;
    /// The buffer's contents, copied to the host.
    fn download(&self, buf: &Self::Buf) -> Result<Vec<f32>>;
    /// Number of elements in `buf`.
    fn len(&self, buf: &Self::Buf) -> usize;
    /// Every element of `buf` set to `value`.
    fn fill(&self, buf: &mut Self::Buf, value: f32) -> Result<()>;

    /// The arithmetic this backend's convolutions and linear layers run in now
    /// ([`crate::precision`] has the rule). Precision is backend state, not an op argument, so
    /// that one model runs its search in TF32 and its checks in fp32 by switching it.
    fn precision(&self) -> Precision {
        Precision::Fp32
    }
    /// Switches the arithmetic of convolutions and linear layers for every later op. A backend
    /// without kernels for `p` refuses it by name rather than run fp32 in its place; fp32 is
    /// always accepted.
    fn set_precision(&self, p: Precision) -> Result<()> {
        match p {
            Precision::Fp32 => Ok(()),
            other => Err(TensorError::Invalid {
                op: "set_precision",
                msg: format!("backend {} has no {other} kernels; use fp32", self.name()),
            }),
        }
    }

    /// Records the ops `work` issues, without running them, so that [`Recorded::replay`] runs
    /// them again on the same buffers (a CUDA graph on the kernel backend); `Ok(None)`, with
    /// `work` not called, on a backend whose ops run as they are called (the CPU). `work`
    /// must not copy to or from the host and, after a warm-up call of the same work, finds
    /// every buffer it allocates in the backend's pool.
    fn record(
        &self,
        work: &mut dyn FnMut() -> std::result::Result<(), RecordError>,
    ) -> Result<Option<Box<dyn Recorded>>> {
        let _ = work;
        Ok(None)
    }

    checked_ops! {
        /// `dst = src`; lengths must agree.
        fn copy(&self, src: &Self::Buf, dst: &mut Self::Buf) -> Result<()> => run_copy {
            check_len("copy", "dst", self.len(src), self.len(dst))?;
        }
    }
}

/// The error of the work handed to [`Memory::record`], kept as the recording's cause.
pub type RecordError = Box<dyn std::error::Error + Send + Sync>;

/// Work recorded by [`Memory::record`].
pub trait Recorded {
    /// Runs the recorded ops again, in order with the backend's other work.
    fn replay(&self) -> Result<()>;
}

/// [`check_len`] for an optional buffer: an absent one passes.
pub(crate) fn check_opt<M: Memory + ?Sized>(
    m: &M,
    op: &'static str,
    arg: &'static str,
    expected: usize,
    b: Option<&M::Buf>,
) -> Result<()> {
    b.map_or(Ok(()), |b| check_len(op, arg, expected, m.len(b)))
}
