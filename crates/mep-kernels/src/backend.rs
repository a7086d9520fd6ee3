//! [`KernelBackend`]: the Backend trait on any [`Launcher`], one kernel launch (or a few) per
//! operation. Buffers live here; each op family's host code (`impl Conv for KernelBackend`,
//! ...) lives in `ops/<family>.rs`.

use crate::error::KernelError;
use crate::launcher::{Arg, Dims, Launcher, Replay};
use crate::ops;
use crate::pool::{Block, GraphBlocks, Pool, PoolStats};
use mep_tensor::precision::Precision;
use mep_tensor::{Checked, Memory, Result, TensorError};
use std::collections::HashMap;
use std::fmt::Display;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

/// Which version of each kernel runs (see the header comment of each kernels/*.cu).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Kernels {
    /// The fast versions (tiled, grid-stride, vectorised); the default.
    #[default]
    Fast,
    /// The simple v1 versions, the readable specification; tests run both.
    Simple,
}

/// A buffer of f32 in a launcher's memory (a block of the backend's pool, which gets it back
/// when the buffer is dropped).
pub struct DevBuf<M> {
    pub(crate) mem: Block<M>,
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
///
/// Device memory comes from a caching pool (see [`pool_stats`](Self::pool_stats)): once a
/// computation has run, running it again allocates nothing from the device, and
/// [`capture`](Self::capture) can record it into a graph.
pub struct KernelBackend<L: Launcher> {
    launcher: L,
    kernels: Kernels,
    pool: Arc<Pool<L::Mem>>,
    // Target arrays of one class repeated n times (an energy's targets), uploaded once and
    // kept by (class, n): a NEB step then makes no host copy and can be captured in a graph.
    uniform_targets: Mutex<KeptTargets<L::Mem>>,
    /// The arithmetic of convolutions and linear layers, as an index of [`Precision::ALL`]:
    /// backend state that `&self` switches (see [`Memory::set_precision`]).
    precision: AtomicU8,
}

/// Device copies of target arrays by (class, n).
type KeptTargets<M> = HashMap<(usize, usize), Arc<Block<M>>>;

/// The most (class, n) target arrays [`KernelBackend`] keeps on the device.
pub(crate) const UNIFORM_TARGETS_KEPT: usize = 256;

impl<L: Launcher> KernelBackend<L> {
    /// The fast kernels on `launcher`.
    pub fn new(launcher: L) -> Self {
        Self::with_kernels(launcher, Kernels::Fast)
    }
    /// The given kernel versions on `launcher`.
    pub fn with_kernels(launcher: L, kernels: Kernels) -> Self {
        KernelBackend {
            launcher,
            kernels,
            pool: Pool::new(),
            uniform_targets: Mutex::new(HashMap::new()),
            precision: AtomicU8::new(0),
        }
    }
    /// The memory pool's counters: device allocations, cache hits, bytes cached.
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }
    /// Releases the pool's free blocks to the device (e.g. before handing memory to another
    /// program); returns their bytes. Blocks of live graphs stay. Allocating afterwards works
    /// as before, from the device again.
    pub fn trim(&self) -> usize {
        self.pool.trim()
    }

    /// Records the launches that `work` issues into a graph (a CUDA graph on a GPU, a launch
    /// list in the emulation) without running them; returns it with `work`'s output.
    /// [`Graph::launch`] then replays the work, writing the same buffers again.
    ///
    /// The way to use it: run `work` once eagerly and drop its outputs (the warm-up fills the
    /// pool), then capture, then replay and read the outputs `work` returned.
    /// - Inside `work`, allocations come from the pool's cache only (a miss is an error that
    ///   names the size: warm up first), and no host copies (`upload`, `download`, `dot`,
    ///   `norm`, ops with host arguments such as targets) or synchronisation may happen.
    /// - Every block allocated or freed inside `work` belongs to the graph until the graph is
    ///   dropped: intermediates stay reserved for the replays, and outputs dropped early are
    ///   not handed to another buffer while the graph lives.
    /// - Buffers made before the capture and used inside it (inputs, weights) are the
    ///   caller's: they must outlive the graph; write new inputs into them with `copy`
    ///   before a replay.
    /// - One capture at a time per backend, from the thread that issues the work.
    ///
    /// An error of `work`, or of the launcher, is returned; nothing is left capturing.
    pub fn capture<T, E: Display>(
        &self,
        work: impl FnOnce() -> std::result::Result<T, E>,
    ) -> Result<(Graph<L::Mem>, T)> {
        let blocks = self.pool.begin_capture().map_err(|e| self.err(e))?;
        // Built first, so that the blocks return to the pool on every early return.
        let blocks = GraphHold {
            pool: self.pool.clone(),
            blocks,
        };
        // Ends the capture even if `work` panics.
        struct EndCapture<'a, M>(&'a Pool<M>);
        impl<M> Drop for EndCapture<'_, M> {
            fn drop(&mut self) {
                self.0.end_capture();
            }
        }
        let end = EndCapture(&self.pool);
        let mut work = Some(work);
        let mut out = None;
        let recorded = self.launcher.capture(&mut || {
            let work = work.take().ok_or("the captured work ran twice")?;
            out = Some(work().map_err(|e| e.to_string())?);
            Ok(())
        });
        drop(end);
        let replay = recorded.map_err(|e| self.err(e))?;
        let out = out.ok_or_else(|| {
            self.err(KernelError::Launch {
                kernel: "(graph capture)".into(),
                msg: "the launcher never ran the captured work".into(),
            })
        })?;
        Ok((
            Graph {
                backend: self.launcher.name(),
                replay,
                blocks,
            },
            out,
        ))
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
    /// `targets` (classes, already checked) as the kernels' `int` on the device. A class
    /// repeated (an energy's targets) is uploaded once and kept, up to
    /// [`UNIFORM_TARGETS_KEPT`] of them; others are a temporary copy.
    pub(crate) fn targets_on_device(&self, targets: &[usize]) -> Result<Arc<Block<L::Mem>>> {
        let upload = || {
            let bytes: Vec<u8> = targets.iter().flat_map(|&t| (t as i32).to_ne_bytes()).collect();
            self.temp_bytes(&bytes).map(Arc::new)
        };
        let Some(&class) = targets.first().filter(|&&c| targets.iter().all(|&t| t == c)) else {
            return upload();
        };
        let mut kept = self.uniform_targets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = kept.get(&(class, targets.len())) {
            return Ok(b.clone());
        }
        let b = upload()?;
        if kept.len() < UNIFORM_TARGETS_KEPT {
            kept.insert((class, targets.len()), b.clone());
        }
        Ok(b)
    }
    /// A device copy of `bytes` (small host arguments: targets, plans), freed when dropped.
    pub(crate) fn temp_bytes(&self, bytes: &[u8]) -> Result<Block<L::Mem>> {
        let mut m = self.alloc_bytes(bytes.len())?;
        self.launcher.write(&mut m, 0, bytes).map_err(|e| self.err(e))?;
        Ok(m)
    }
    /// A device array of `n` f64 zeros (accumulators the kernels add into).
    pub(crate) fn temp_f64_zeros(&self, n: usize) -> Result<Block<L::Mem>> {
        self.temp_bytes(&vec![0u8; 8 * n])
    }
    /// A device array of `n` f64 of unspecified contents (for kernels that write every one):
    /// no host copy, which on a GPU would also wait for the stream.
    pub(crate) fn temp_f64(&self, n: usize) -> Result<Block<L::Mem>> {
        self.alloc_bytes(8 * n)
    }
    /// `bytes` bytes from the pool.
    fn alloc_bytes(&self, bytes: usize) -> Result<Block<L::Mem>> {
        self.pool.alloc(&self.launcher, bytes).map_err(|e| self.err(e))
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

/// A captured graph of a [`KernelBackend`] (see [`KernelBackend::capture`]); holds the pool
/// blocks of its intermediates and outputs while it lives.
pub struct Graph<M> {
    backend: &'static str,
    // Dropped before `blocks`: the launcher's graph goes first, then its memory is freed.
    replay: Box<dyn Replay>,
    blocks: GraphHold<M>,
}

impl<M> mep_tensor::backend::Recorded for Graph<M> {
    fn replay(&self) -> Result<()> {
        self.launch()
    }
}

impl<M> Graph<M> {
    /// Replays the recorded work (asynchronously on a GPU, in order with the backend's other
    /// work).
    pub fn launch(&self) -> Result<()> {
        self.replay.replay().map_err(|e| TensorError::Device {
            backend: self.backend,
            source: Box::new(e),
        })
    }
    /// Whether the capture recorded nothing.
    pub fn is_empty(&self) -> bool {
        self.replay.is_empty()
    }
    /// Bytes of the pool blocks the graph holds and no buffer does (its intermediates, and
    /// outputs already dropped).
    pub fn held_bytes(&self) -> usize {
        self.blocks.blocks.free_bytes()
    }
}

/// A graph's blocks; gives them back to the pool when the graph is dropped.
struct GraphHold<M> {
    pool: Arc<Pool<M>>,
    blocks: Arc<GraphBlocks<M>>,
}

impl<M> Drop for GraphHold<M> {
    fn drop(&mut self) {
        self.pool.graph_dropped(&self.blocks);
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

    fn record(
        &self,
        work: &mut dyn FnMut() -> std::result::Result<(), mep_tensor::RecordError>,
    ) -> Result<Option<Box<dyn mep_tensor::Recorded>>> {
        let (graph, ()) = self.capture(work)?;
        Ok(Some(Box::new(graph)))
    }

    fn precision(&self) -> Precision {
        Precision::ALL[self.precision.load(Ordering::Relaxed) as usize]
    }
    /// Every precision has kernels: fp32 the SIMT ones (fast or simple), TF32 and bf16 the
    /// tensor-core ones (conv_region.cu v4, conv_wgrad.cu v5, linear.cu v3 and v4), whichever
    /// [`Kernels`] says, since they have no simple twin (their conformance reference is the
    /// CPU's product of the rounded operands); where a cp.async version exists (linear.cu
    /// v4, conv_region.cu v5, conv_wgrad.cu v6) the fast set runs it and the simple set the register-staged
    /// one it replaces. A device without TF32/bf16 tensor cores (older
    /// than sm_80) refuses those by name.
    fn set_precision(&self, p: Precision) -> Result<()> {
        if p != Precision::Fp32 {
            if let Some(why) = self.launcher.tensor_cores_missing() {
                return Err(TensorError::Invalid {
                    op: "set_precision",
                    msg: format!("backend {} has no {p} kernels here: {why}; use fp32", self.name()),
                });
            }
        }
        self.precision.store(p.index() as u8, Ordering::Relaxed);
        Ok(())
    }

    fn alloc(&self, len: usize) -> Result<Self::Buf> {
        let bytes = len.checked_mul(4).ok_or_else(|| {
            self.err(KernelError::OutOfMemory {
                bytes: usize::MAX,
                msg: format!("{len} f32 values are more bytes than an address space holds"),
            })
        })?;
        let mem = self.alloc_bytes(bytes)?;
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
        fn tensor_cores_missing(&self) -> Option<String> {
            Some("full is sm_75".into())
        }
    }

    #[test]
    fn a_device_without_tensor_cores_refuses_tf32_and_bf16_by_name() {
        let b = KernelBackend::new(Full);
        for p in [Precision::Tf32, Precision::Bf16] {
            let e = b.set_precision(p).expect_err("no tensor cores");
            assert_eq!(
                e.to_string(),
                format!("set_precision: backend full has no {p} kernels here: full is sm_75; use fp32")
            );
            assert_eq!(b.precision(), Precision::Fp32);
        }
        b.set_precision(Precision::Fp32).unwrap();
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
