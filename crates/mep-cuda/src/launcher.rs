//! [`CudaLauncher`]: the [`Launcher`](mep_kernels::Launcher) of NVIDIA GPUs, through cudarc.
//!
//! One context and one stream per launcher, so every operation runs in issue order and no
//! per-buffer events are needed (cudarc's event tracking is switched off). Kernels are
//! compiled by NVRTC per family on first use, cached on disk (see [`crate::cache`]) and
//! launched with `cuLaunchKernel`. Without the `cuda` feature the same types exist but
//! [`CudaLauncher::new`] always returns [`KernelError::Unavailable`].

#[cfg(feature = "cuda")]
pub use imp::{CudaLauncher, CudaMem, Graph};
#[cfg(not(feature = "cuda"))]
pub use stub::{CudaLauncher, CudaMem, Graph};

#[cfg(feature = "cuda")]
use mep_kernels::KernelError;

/// `MEP_CUDA_SYNC=1` makes every launch wait for its kernel, so that a fault names the kernel
/// that caused it rather than surfacing at the next read.
pub const SYNC_ENV: &str = "MEP_CUDA_SYNC";

#[cfg(feature = "cuda")]
fn driver_msg(e: &cudarc::driver::DriverError) -> String {
    let name = e.error_name().map(|s| s.to_string_lossy().into_owned());
    let text = e.error_string().map(|s| s.to_string_lossy().into_owned());
    match (name, text) {
        (Ok(n), Ok(t)) => format!("{n} ({t})"),
        _ => format!("CUDA error {}", e.0 as u32),
    }
}

#[cfg(feature = "cuda")]
fn unavailable(msg: String) -> KernelError {
    KernelError::Unavailable(msg)
}

#[cfg(feature = "cuda")]
mod imp {
    use super::{driver_msg, unavailable, SYNC_ENV};
    use crate::cache::KernelCache;
    use crate::nvrtc;
    use cudarc::driver::{result, sys, CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr};
    use mep_kernels::launcher::{Arg, Dims, Launcher, Replay};
    use mep_kernels::signature::{self, ParamSizes};
    use mep_kernels::{sources, KernelError, Result};
    use std::collections::HashMap;
    use std::ffi::c_void;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex, MutexGuard};

    /// A device allocation of bytes. Freed (asynchronously, in stream order) when dropped.
    pub struct CudaMem {
        ptr: u64,
        bytes: usize,
        // `None` for zero bytes: the driver refuses empty allocations.
        _slice: Option<CudaSlice<u8>>,
    }

    impl CudaMem {
        /// Size in bytes.
        pub fn bytes(&self) -> usize {
            self.bytes
        }
    }

    /// A loaded kernel and its parameter sizes (from the source) for checking launches.
    struct KernelFn {
        func: CudaFunction,
        params: ParamSizes,
    }

    /// The launcher of one NVIDIA GPU: one context and one stream, so work runs in issue
    /// order; each kernel family is compiled by NVRTC on first use (or found in the disk
    /// cache, see [`crate::cache`]) and kernels are launched with `cuLaunchKernel`.
    ///
    /// Wrap it in [`KernelBackend`](mep_kernels::KernelBackend) (or call
    /// [`cuda_backend`](crate::cuda_backend)) to get the Backend.
    pub struct CudaLauncher {
        ctx: Arc<CudaContext>,
        stream: Arc<CudaStream>,
        arch: String,
        device_name: String,
        driver_version: i32,
        cache: KernelCache,
        sync_launches: bool,
        // Every kernel of kernels/*.cu: its family and parameter sizes.
        table: HashMap<String, (&'static str, ParamSizes)>,
        modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
        kernels: Mutex<HashMap<String, Arc<KernelFn>>>,
        // Set during `capture`, so that host copies and allocations fail with a message that
        // names the rule instead of the driver's.
        capturing: AtomicBool,
    }

    fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        // The maps stay consistent even if a holder panicked: entries are inserted whole.
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn kernel_table() -> HashMap<String, (&'static str, ParamSizes)> {
        let mut table = HashMap::new();
        for (family, _) in sources::FAMILIES {
            for k in signature::kernels(&sources::nvrtc_source(family).unwrap_or_default()) {
                table.insert(k.name, (*family, k.params));
            }
        }
        table
    }

    /// Why GPU `ordinal` cannot be used, or `Ok` if it can be opened.
    fn check_device(ordinal: usize) -> Result<()> {
        // SAFETY: only tries to dlopen the candidate library names; cudarc would panic on the
        // first driver call without it.
        if !unsafe { sys::is_culib_present() } {
            return Err(unavailable(
                "no NVIDIA driver: libcuda.so could not be loaded (install the NVIDIA driver, or run on a machine \
                 with a GPU)"
                    .into(),
            ));
        }
        match result::init() {
            Ok(()) => {}
            Err(e) if e.0 == sys::CUresult::CUDA_ERROR_NO_DEVICE => {
                return Err(unavailable("no GPU: the NVIDIA driver found no CUDA device".into()))
            }
            Err(e) => {
                return Err(unavailable(format!(
                    "the CUDA driver failed to initialise: {}",
                    driver_msg(&e)
                )))
            }
        }
        let count = result::device::get_count()
            .map_err(|e| unavailable(format!("counting GPUs failed: {}", driver_msg(&e))))?;
        if count <= 0 {
            return Err(unavailable("no GPU: the NVIDIA driver sees 0 CUDA devices".into()));
        }
        if ordinal >= count as usize {
            return Err(unavailable(format!(
                "GPU {ordinal} was asked for, but the driver sees {count} GPU{} (ordinals 0..={})",
                if count == 1 { "" } else { "s" },
                count - 1
            )));
        }
        Ok(())
    }

    impl CudaLauncher {
        /// Opens GPU `ordinal` (0 is the first). Never panics: a missing driver, no GPU, an
        /// ordinal out of range or a missing NVRTC are [`KernelError::Unavailable`] saying so.
        pub fn new(ordinal: usize) -> Result<CudaLauncher> {
            check_device(ordinal)?;
            if !nvrtc::available() {
                return Err(unavailable(format!(
                    "NVRTC (libnvrtc.so) could not be loaded, and the GPU kernels are compiled by it: {}",
                    nvrtc::INSTALL_HINT
                )));
            }
            let gpu_err = |what: &str, e: cudarc::driver::DriverError| {
                unavailable(format!("GPU {ordinal}: {what} failed: {}", driver_msg(&e)))
            };
            let ctx = CudaContext::new(ordinal).map_err(|e| gpu_err("creating a context", e))?;
            // SAFETY: all work goes to one stream, in issue order, so no buffer needs events;
            // it is switched off before any allocation is made.
            unsafe { ctx.disable_event_tracking() };
            let stream = ctx.new_stream().map_err(|e| gpu_err("creating a stream", e))?;
            let (major, minor) = ctx
                .compute_capability()
                .map_err(|e| gpu_err("reading the compute capability", e))?;
            let device_name = ctx.name().unwrap_or_else(|_| format!("GPU {ordinal}"));
            let mut driver_version = 0;
            // SAFETY: the driver library is loaded (checked above); the pointer is valid.
            let _ = unsafe { sys::cuDriverGetVersion(&mut driver_version) };
            Ok(CudaLauncher {
                ctx,
                stream,
                arch: format!("sm_{major}{minor}"),
                device_name,
                driver_version,
                cache: KernelCache::from_env(),
                sync_launches: std::env::var(SYNC_ENV).is_ok_and(|v| v == "1"),
                table: kernel_table(),
                modules: Mutex::new(HashMap::new()),
                kernels: Mutex::new(HashMap::new()),
                capturing: AtomicBool::new(false),
            })
        }

        /// The GPU's architecture as NVRTC names it (`sm_90` on an H100/H200).
        pub fn arch(&self) -> &str {
            &self.arch
        }
        /// The GPU's name as the driver reports it.
        pub fn device_name(&self) -> &str {
            &self.device_name
        }
        /// The driver's CUDA version, e.g. 12040 for 12.4.
        pub fn driver_version(&self) -> i32 {
            self.driver_version
        }
        /// The device ordinal.
        pub fn ordinal(&self) -> usize {
            self.ctx.ordinal()
        }

        /// Compiles (or finds in the cache) and loads every kernel family now, instead of on
        /// first use; [`Launcher::capture`] calls it, since loading is not capturable.
        pub fn preload_all(&self) -> Result<()> {
            for (family, _) in sources::FAMILIES {
                self.module(family)?;
            }
            Ok(())
        }

        fn module(&self, family: &'static str) -> Result<Arc<CudaModule>> {
            // Held while compiling, so that two threads never compile the same family.
            let mut modules = lock(&self.modules);
            if let Some(m) = modules.get(family) {
                return Ok(m.clone());
            }
            let driver_version = self.driver_version;
            let module = nvrtc::load_cached(&self.cache, family, &self.arch, &[], |cubin| {
                self.ctx
                    .load_module(cudarc::nvrtc::Ptx::from_binary(cubin.to_vec()))
                    .map_err(|e| KernelError::Compile {
                        family: family.into(),
                        arch: self.arch.clone(),
                        log: format!(
                            "the driver (CUDA {}.{}) refused the CUBIN: {}",
                            driver_version / 1000,
                            driver_version % 1000 / 10,
                            driver_msg(&e)
                        ),
                    })
            })?;
            modules.insert(family, module.clone());
            Ok(module)
        }

        fn kernel(&self, name: &str) -> Result<Arc<KernelFn>> {
            if let Some(k) = lock(&self.kernels).get(name) {
                return Ok(k.clone());
            }
            let (family, params) = self
                .table
                .get(name)
                .ok_or_else(|| KernelError::UnknownKernel(name.into()))?;
            let module = self.module(family)?;
            // `name` is a kernel name found in the source, so it has no NUL byte.
            let func = module.load_function(name).map_err(|e| KernelError::Launch {
                kernel: name.into(),
                msg: format!("not found in the loaded {family} module: {}", driver_msg(&e)),
            })?;
            let k = Arc::new(KernelFn {
                func,
                params: params.clone(),
            });
            lock(&self.kernels).insert(name.to_string(), k.clone());
            Ok(k)
        }

        fn bind(&self) -> Result<()> {
            self.ctx.bind_to_thread().map_err(|e| {
                KernelError::Memory(format!(
                    "CUDA error (from this or an earlier operation): {}",
                    driver_msg(&e)
                ))
            })
        }

        fn not_capturing(&self, what: &str) -> Result<()> {
            if self.capturing.load(Ordering::Relaxed) {
                return Err(KernelError::Memory(format!(
                    "{what} is not allowed while capturing a graph (only launches and device-to-device copies are)"
                )));
            }
            Ok(())
        }

        fn range_check(what: &str, offset: usize, len: usize, bytes: usize) -> Result<()> {
            if offset.checked_add(len).is_none_or(|end| end > bytes) {
                return Err(KernelError::Memory(format!(
                    "{what} {len} bytes at offset {offset} of a {bytes}-byte buffer is out of range"
                )));
            }
            Ok(())
        }
    }

    /// A captured sequence of launches and copies; see [`CudaLauncher`]'s
    /// [`Launcher::capture`].
    pub struct Graph {
        // `None` when nothing was captured.
        graph: Option<cudarc::driver::CudaGraph>,
        // The graph's kernels live in these modules; they must not be unloaded before it.
        _modules: Vec<Arc<CudaModule>>,
    }

    // SAFETY: the driver's graph handles may be used from any thread, one at a time; `Graph`
    // is not `Sync`, so no two threads launch it at once.
    unsafe impl Send for Graph {}

    impl Replay for Graph {
        /// Replays the graph on the launcher's stream (asynchronously, in order with the
        /// launcher's other work).
        fn replay(&self) -> Result<()> {
            match &self.graph {
                None => Ok(()),
                Some(g) => g.launch().map_err(|e| KernelError::Launch {
                    kernel: "(graph)".into(),
                    msg: format!("replaying the graph failed: {}", driver_msg(&e)),
                }),
            }
        }
        fn is_empty(&self) -> bool {
            self.graph.is_none()
        }
    }

    fn arg_size(a: &Arg) -> usize {
        match a {
            Arg::I32(_) | Arg::F32(_) => 4,
            Arg::Ptr(_) | Arg::I64(_) | Arg::F64(_) => 8,
        }
    }

    /// Calls `f` with cuLaunchKernel's `kernelParams`: a pointer to each argument's value.
    fn with_params<R>(args: &[Arg], f: impl FnOnce(&mut [*mut c_void]) -> R) -> R {
        const N: usize = 32;
        fn fill(args: &[Arg], vals: &mut [u64], ptrs: &mut [*mut c_void]) {
            for ((a, v), p) in args.iter().zip(vals.iter_mut()).zip(ptrs.iter_mut()) {
                // 4-byte arguments sit in the first 4 bytes (Arg::bytes), which is all the
                // driver copies for an `int` or `float` parameter.
                *v = u64::from_ne_bytes(a.bytes());
                *p = (v as *mut u64).cast();
            }
        }
        if args.len() <= N {
            let mut vals = [0u64; N];
            let mut ptrs = [std::ptr::null_mut(); N];
            fill(args, &mut vals, &mut ptrs);
            f(&mut ptrs[..args.len()])
        } else {
            let mut vals = vec![0u64; args.len()];
            let mut ptrs = vec![std::ptr::null_mut(); args.len()];
            fill(args, &mut vals, &mut ptrs);
            f(&mut ptrs)
        }
    }

    impl Launcher for CudaLauncher {
        type Mem = CudaMem;

        fn name(&self) -> &'static str {
            "cuda"
        }

        fn tensor_cores_missing(&self) -> Option<String> {
            let sm: u32 = self.arch.trim_start_matches("sm_").parse().unwrap_or(0);
            (sm < 80).then(|| {
                format!(
                    "{} is {}; TF32 and bf16 mma.sync need sm_80 or newer",
                    self.device_name, self.arch
                )
            })
        }

        fn alloc(&self, bytes: usize) -> Result<CudaMem> {
            self.not_capturing("allocating")?;
            if bytes == 0 {
                return Ok(CudaMem {
                    ptr: 0,
                    bytes: 0,
                    _slice: None,
                });
            }
            // SAFETY: the contents are unspecified, as the trait says.
            let slice = unsafe { self.stream.alloc::<u8>(bytes) }.map_err(|e| {
                let msg = format!(
                    "allocating {bytes} bytes on {} failed: {}",
                    self.device_name,
                    driver_msg(&e)
                );
                // Out of memory is its own error: a caller may retry with a smaller batch.
                if e.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY {
                    KernelError::OutOfMemory { bytes, msg }
                } else {
                    KernelError::Memory(msg)
                }
            })?;
            let (ptr, _) = slice.device_ptr(&self.stream);
            Ok(CudaMem {
                ptr,
                bytes,
                _slice: Some(slice),
            })
        }

        fn write(&self, mem: &mut CudaMem, offset: usize, src: &[u8]) -> Result<()> {
            self.not_capturing("copying from the host")?;
            Self::range_check("writing", offset, src.len(), mem.bytes)?;
            if src.is_empty() {
                return Ok(());
            }
            self.bind()?;
            // SAFETY: the range is inside the allocation (checked). `src` is pageable host
            // memory, which the driver stages before the call returns, so it may be dropped
            // afterwards.
            unsafe { result::memcpy_htod_async(mem.ptr + offset as u64, src, self.stream.cu_stream()) }.map_err(|e| {
                KernelError::Memory(format!(
                    "copying {} bytes to the GPU failed: {}",
                    src.len(),
                    driver_msg(&e)
                ))
            })
        }

        fn read(&self, mem: &CudaMem, offset: usize, dst: &mut [u8]) -> Result<()> {
            self.not_capturing("copying to the host")?;
            Self::range_check("reading", offset, dst.len(), mem.bytes)?;
            self.bind()?;
            if !dst.is_empty() {
                // SAFETY: the range is inside the allocation (checked); `dst` is borrowed until
                // the synchronisation below.
                unsafe { result::memcpy_dtoh_async(dst, mem.ptr + offset as u64, self.stream.cu_stream()) }.map_err(
                    |e| {
                        KernelError::Memory(format!(
                            "copying {} bytes from the GPU failed: {}",
                            dst.len(),
                            driver_msg(&e)
                        ))
                    },
                )?;
            }
            self.stream.synchronize().map_err(|e| {
                KernelError::Memory(format!(
                    "reading from the GPU failed: {} (an earlier kernel may have faulted; set {SYNC_ENV}=1 to find it)",
                    driver_msg(&e)
                ))
            })
        }

        fn copy(
            &self,
            src: &CudaMem,
            src_offset: usize,
            dst: &mut CudaMem,
            dst_offset: usize,
            bytes: usize,
        ) -> Result<()> {
            Self::range_check("copying from", src_offset, bytes, src.bytes)?;
            Self::range_check("copying to", dst_offset, bytes, dst.bytes)?;
            if bytes == 0 {
                return Ok(());
            }
            self.bind()?;
            // SAFETY: both ranges are inside their allocations (checked); distinct allocations.
            unsafe {
                result::memcpy_dtod_async(
                    dst.ptr + dst_offset as u64,
                    src.ptr + src_offset as u64,
                    bytes,
                    self.stream.cu_stream(),
                )
            }
            .map_err(|e| KernelError::Memory(format!("copying {bytes} bytes on the GPU failed: {}", driver_msg(&e))))
        }

        fn ptr(&self, mem: &CudaMem) -> u64 {
            mem.ptr
        }

        fn launch(&self, kernel: &str, grid: Dims, block: Dims, args: &[Arg]) -> Result<()> {
            let k = self.kernel(kernel)?;
            let bad = |msg: String| KernelError::Launch {
                kernel: kernel.into(),
                msg,
            };
            if let Some(params) = &k.params {
                if params.len() != args.len() {
                    return Err(bad(format!(
                        "takes {} arguments, {} were given",
                        params.len(),
                        args.len()
                    )));
                }
                for (i, (p, a)) in params.iter().zip(args).enumerate() {
                    if p.is_some_and(|p| p != arg_size(a)) {
                        return Err(bad(format!(
                            "argument {i} is {a:?} ({} bytes) but the parameter is {} bytes",
                            arg_size(a),
                            p.unwrap_or(0)
                        )));
                    }
                }
            }
            self.bind()?;
            let launched = with_params(args, |params| {
                // SAFETY: `params` holds one valid pointer per kernel parameter, each to a value
                // of the parameter's size (checked above against the source's signature); the
                // values live until cuLaunchKernel has copied them.
                unsafe {
                    result::launch_kernel(
                        k.func.cu_function(),
                        (grid.x, grid.y, grid.z),
                        (block.x, block.y, block.z),
                        0,
                        self.stream.cu_stream(),
                        params,
                    )
                }
            });
            launched.map_err(|e| {
                bad(format!(
                    "launch on {grid:?} blocks of {block:?} failed: {}",
                    driver_msg(&e)
                ))
            })?;
            // Synchronising would end a capture; the graph's launches are checked on replay.
            if self.sync_launches && !self.capturing.load(Ordering::Relaxed) {
                self.stream
                    .synchronize()
                    .map_err(|e| bad(format!("the kernel failed: {}", driver_msg(&e))))?;
            }
            Ok(())
        }

        fn synchronize(&self) -> Result<()> {
            self.not_capturing("synchronising")?;
            self.stream.synchronize().map_err(|e| KernelError::Launch {
                kernel: "(pending work)".into(),
                msg: format!(
                    "synchronize failed: {} (set {SYNC_ENV}=1 to find the kernel)",
                    driver_msg(&e)
                ),
            })
        }

        /// Records everything `work` issues on this launcher's stream into a CUDA graph,
        /// without running it; [`Replay::replay`] then replays it with one driver call.
        /// Call it through [`KernelBackend::capture`](mep_kernels::KernelBackend::capture),
        /// which serves allocations from its pool (a device allocation cannot be captured)
        /// and keeps the graph's memory alive.
        ///
        /// Rules (the driver enforces most of them, and `capture` returns its error):
        /// - only kernel launches and device-to-device copies may be issued inside `work`:
        ///   no reads or writes of host memory (`download`, `upload`, `dot`, `norm`, and ops
        ///   that send small host arguments such as targets or plans), no synchronisation and
        ///   no device allocation;
        /// - the graph replays the same device addresses and scalar arguments, so every buffer
        ///   it touches must outlive it and keep its size;
        /// - capture from the thread that issues the work (thread-local capture mode), and use
        ///   the launcher from no other thread meanwhile: all work on its stream is recorded.
        ///
        /// An error from `work` is returned (the partial graph is discarded) and the stream is
        /// left usable.
        fn capture(&self, work: &mut dyn FnMut() -> std::result::Result<(), String>) -> Result<Box<dyn Replay>> {
            let fail = |msg: String| KernelError::Launch {
                kernel: "(graph capture)".into(),
                msg,
            };
            self.preload_all()?;
            self.stream
                .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
                .map_err(|e| fail(format!("beginning the capture failed: {}", driver_msg(&e))))?;
            // Ends the capture even if `work` panics, so the stream is not left capturing.
            struct EndOnDrop<'a>(&'a CudaLauncher, bool);
            impl Drop for EndOnDrop<'_> {
                fn drop(&mut self) {
                    if self.1 {
                        self.0.capturing.store(false, Ordering::Relaxed);
                        let _ = self.0.stream.end_capture(sys::CUgraphInstantiate_flags(0));
                    }
                }
            }
            let mut guard = EndOnDrop(self, true);
            self.capturing.store(true, Ordering::Relaxed);
            let outcome = work();
            self.capturing.store(false, Ordering::Relaxed);
            guard.1 = false;
            let graph = self.stream.end_capture(sys::CUgraphInstantiate_flags(0));
            outcome.map_err(|e| fail(format!("the captured work failed: {e}")))?;
            let graph = graph.map_err(|e| {
                fail(format!(
                    "the capture failed: {} (only launches and device-to-device copies may be captured)",
                    driver_msg(&e)
                ))
            })?;
            Ok(Box::new(Graph {
                graph,
                _modules: lock(&self.modules).values().cloned().collect(),
            }))
        }
    }
}

#[cfg(not(feature = "cuda"))]
mod stub {
    use mep_kernels::launcher::{Arg, Dims, Launcher, Replay};
    use mep_kernels::Result;
    use std::convert::Infallible;

    /// A device allocation (never created: this build has no CUDA support).
    pub struct CudaMem {
        never: Infallible,
    }

    impl CudaMem {
        /// Size in bytes.
        pub fn bytes(&self) -> usize {
            match self.never {}
        }
    }

    /// The launcher of one NVIDIA GPU; this build was made without the `cuda` feature, so
    /// [`CudaLauncher::new`] always fails, saying so.
    pub struct CudaLauncher {
        never: Infallible,
    }

    /// A captured sequence of launches (never created in this build).
    pub struct Graph {
        never: Infallible,
    }

    impl Replay for Graph {
        fn replay(&self) -> Result<()> {
            match self.never {}
        }
        fn is_empty(&self) -> bool {
            match self.never {}
        }
    }

    impl CudaLauncher {
        /// Always [`KernelError::Unavailable`](mep_kernels::KernelError::Unavailable): built
        /// without the `cuda` feature.
        pub fn new(_ordinal: usize) -> Result<CudaLauncher> {
            Err(crate::not_built())
        }
        /// The GPU's architecture.
        pub fn arch(&self) -> &str {
            match self.never {}
        }
        /// The GPU's name.
        pub fn device_name(&self) -> &str {
            match self.never {}
        }
        /// The driver's CUDA version.
        pub fn driver_version(&self) -> i32 {
            match self.never {}
        }
        /// The device ordinal.
        pub fn ordinal(&self) -> usize {
            match self.never {}
        }
        /// Compiles and loads every kernel family.
        pub fn preload_all(&self) -> Result<()> {
            match self.never {}
        }
    }

    impl Launcher for CudaLauncher {
        type Mem = CudaMem;
        fn name(&self) -> &'static str {
            "cuda"
        }
        fn alloc(&self, _: usize) -> Result<CudaMem> {
            match self.never {}
        }
        fn write(&self, _: &mut CudaMem, _: usize, _: &[u8]) -> Result<()> {
            match self.never {}
        }
        fn read(&self, _: &CudaMem, _: usize, _: &mut [u8]) -> Result<()> {
            match self.never {}
        }
        fn copy(&self, _: &CudaMem, _: usize, _: &mut CudaMem, _: usize, _: usize) -> Result<()> {
            match self.never {}
        }
        fn ptr(&self, _: &CudaMem) -> u64 {
            match self.never {}
        }
        fn launch(&self, _: &str, _: Dims, _: Dims, _: &[Arg]) -> Result<()> {
            match self.never {}
        }
        fn synchronize(&self) -> Result<()> {
            match self.never {}
        }
    }
}
