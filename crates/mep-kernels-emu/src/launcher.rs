//! [`EmuLauncher`]: the [`Launcher`] of the CPU emulation, so that
//! `KernelBackend<EmuLauncher>` runs the CUDA backend's host code and kernels on the CPU.

use mep_kernels::{Arg, Dims, KernelBackend, KernelError, Kernels, Launcher, Replay};
use std::cell::UnsafeCell;
use std::collections::HashMap;
use std::ffi::{c_void, CStr};
use std::os::raw::{c_char, c_int, c_uint};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

#[repr(C)]
struct Entry {
    name: *const c_char,
    launch: Option<PackedFn>,
}

type PackedFn = unsafe extern "C" fn(c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, *mut *mut c_void) -> c_int;

/// A family's `emu_table_<family>`: its kernels, `n` of them.
type TableFn = unsafe extern "C" fn(n: *mut c_int) -> *const Entry;

// `table_ffi` and `FAMILY_TABLES`: one `emu_table_<family>` per kernels/<family>.cu, generated
// with the C++ tables by build.rs.
include!(concat!(env!("OUT_DIR"), "/tables.rs"));

/// One allocation of emulated device memory: 16-byte aligned host memory that kernels write
/// through raw pointers (hence the cells).
pub struct EmuMem {
    words: Box<[UnsafeCell<u128>]>,
    bytes: usize,
}

// SAFETY: the memory is only touched by launches and copies, which the launcher serialises
// (one stream), as a GPU's memory is.
unsafe impl Send for EmuMem {}
// SAFETY: as above.
unsafe impl Sync for EmuMem {}

impl EmuMem {
    fn base(&self) -> *mut u8 {
        UnsafeCell::raw_get(self.words.as_ptr()) as *mut u8
    }
    fn check(&self, offset: usize, len: usize, what: &str) -> mep_kernels::Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.bytes => Ok(()),
            _ => Err(KernelError::Memory(format!(
                "{what} of {len} bytes at offset {offset} in an allocation of {} bytes",
                self.bytes
            ))),
        }
    }
}

/// Runs kernels/*.cu on the CPU (see the crate docs); memory is host memory.
///
/// ```
/// use mep_kernels_emu::EmuLauncher;
/// use mep_tensor::prelude::*;
/// let b = EmuLauncher::backend();
/// let x = b.upload(&[1.0, -1.0]).unwrap();
/// assert_eq!(b.norm(&x).unwrap(), 2f64.sqrt());
/// ```
pub struct EmuLauncher {
    kernels: HashMap<String, PackedFn>,
    // Set while `capture` records: launches and copies go to `recorded` instead of running.
    capturing: AtomicBool,
    recorded: Mutex<Vec<Op>>,
}

/// One recorded operation of a capture, with the addresses and arguments it had.
enum Op {
    Launch {
        kernel: String,
        f: PackedFn,
        grid: Dims,
        block: Dims,
        args: Vec<Arg>,
    },
    Copy {
        src: u64,
        dst: u64,
        bytes: usize,
    },
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A list of whole operations stays consistent even if a holder panicked.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A capture of the emulation: the launches and copies, replayed in order on the CPU.
///
/// Like a CUDA graph it holds raw addresses: every buffer it touches must outlive it
/// ([`KernelBackend::capture`] keeps the ones it allocated alive; inputs are the caller's).
pub struct EmuGraph {
    ops: Vec<Op>,
}

impl Replay for EmuGraph {
    fn replay(&self) -> mep_kernels::Result<()> {
        for op in self.ops.iter() {
            match op {
                Op::Launch {
                    kernel,
                    f,
                    grid,
                    block,
                    args,
                } => run(kernel, *f, *grid, *block, args)?,
                // SAFETY: both ranges were checked against live allocations when recorded, and
                // the graph's owner keeps them alive (see the type's docs); a copy's source and
                // destination were distinct allocations.
                Op::Copy { src, dst, bytes } => unsafe {
                    std::ptr::copy_nonoverlapping(*src as *const u8, *dst as *mut u8, *bytes)
                },
            }
        }
        Ok(())
    }
    fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Runs one kernel now.
fn run(kernel: &str, f: PackedFn, grid: Dims, block: Dims, args: &[Arg]) -> mep_kernels::Result<()> {
    let mut values: Vec<[u8; 8]> = args.iter().map(Arg::bytes).collect();
    let mut params: Vec<*mut c_void> = values.iter_mut().map(|v| v.as_mut_ptr() as *mut c_void).collect();
    // SAFETY: the kernel reads each parameter as its C type from the 8-byte slot (4-byte
    // types from the first 4 bytes, little-endian as every supported host); pointers in
    // `args` come from `ptr` of live allocations, as KernelBackend guarantees.
    let code = unsafe { f(grid.x, grid.y, grid.z, block.x, block.y, block.z, params.as_mut_ptr()) };
    status(kernel, grid, block, code)
}

impl EmuLauncher {
    /// The launcher, with every kernel of every family.
    pub fn new() -> EmuLauncher {
        let mut kernels = HashMap::new();
        for &(_, table) in FAMILY_TABLES {
            let mut n: c_int = 0;
            // SAFETY: the table functions return a static array of n entries (plus a sentinel).
            let entries = unsafe { std::slice::from_raw_parts(table(&mut n), n.max(0) as usize) };
            for e in entries {
                // SAFETY: names are string literals of the C++ side.
                let name = unsafe { CStr::from_ptr(e.name) }.to_string_lossy().into_owned();
                if let Some(f) = e.launch {
                    kernels.insert(name, f);
                }
            }
        }
        EmuLauncher {
            kernels,
            capturing: AtomicBool::new(false),
            recorded: Mutex::new(Vec::new()),
        }
    }
    /// An error if a capture is recording: `what` (a host copy, an allocation) could not be
    /// captured on a GPU either, so the emulation refuses it too.
    fn not_capturing(&self, what: &str) -> mep_kernels::Result<()> {
        if self.capturing.load(Ordering::Relaxed) {
            return Err(KernelError::Memory(format!(
                "{what} is not allowed while capturing a graph (only launches and device-to-device copies are)"
            )));
        }
        Ok(())
    }
    /// `KernelBackend` on the emulation with the fast kernels.
    pub fn backend() -> KernelBackend<EmuLauncher> {
        KernelBackend::new(EmuLauncher::new())
    }
    /// `KernelBackend` on the emulation with the given kernel versions.
    pub fn backend_with(kernels: Kernels) -> KernelBackend<EmuLauncher> {
        KernelBackend::with_kernels(EmuLauncher::new(), kernels)
    }
    /// The names of all kernels the emulation has, sorted.
    pub fn kernel_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.kernels.keys().cloned().collect();
        v.sort();
        v
    }
}

impl Default for EmuLauncher {
    fn default() -> Self {
        EmuLauncher::new()
    }
}

/// What cuda_emu.h's `EmuStatus` `code` means; `None` for `EMU_OK`.
fn refusal(code: c_int) -> Option<&'static str> {
    match code {
        0 => None,
        1 => Some("the grid is empty or too large"),
        2 => Some("the block is empty or has more than 1024 threads"),
        3 => Some("there is no memory for the stacks of the block's threads"),
        4 => Some("every thread still running waits at a barrier or shuffle the others never reach (a barrier under divergent control flow)"),
        _ => Some("unknown status"),
    }
}

fn status(kernel: &str, grid: Dims, block: Dims, code: c_int) -> mep_kernels::Result<()> {
    let Some(reason) = refusal(code) else {
        return Ok(());
    };
    Err(KernelError::Launch {
        kernel: kernel.to_string(),
        msg: format!("launch with grid {grid:?}, block {block:?} refused: {reason}"),
    })
}

impl Launcher for EmuLauncher {
    type Mem = EmuMem;

    fn name(&self) -> &'static str {
        "emu"
    }
    fn alloc(&self, bytes: usize) -> mep_kernels::Result<EmuMem> {
        self.not_capturing("allocating")?;
        // A failed allocation is the emulated device's out-of-memory, as a GPU reports it,
        // not an abort of the process.
        let n = bytes.div_ceil(16);
        let mut words = Vec::new();
        words.try_reserve_exact(n).map_err(|e| KernelError::OutOfMemory {
            bytes,
            msg: format!("the emulation could not allocate {bytes} bytes ({e})"),
        })?;
        words.extend((0..n).map(|_| UnsafeCell::new(0u128)));
        Ok(EmuMem {
            words: words.into_boxed_slice(),
            bytes,
        })
    }
    fn write(&self, mem: &mut EmuMem, offset: usize, src: &[u8]) -> mep_kernels::Result<()> {
        self.not_capturing("copying from the host")?;
        mem.check(offset, src.len(), "write")?;
        // SAFETY: the range was checked; `mem` is borrowed mutably.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), mem.base().add(offset), src.len()) };
        Ok(())
    }
    fn read(&self, mem: &EmuMem, offset: usize, dst: &mut [u8]) -> mep_kernels::Result<()> {
        self.not_capturing("copying to the host")?;
        mem.check(offset, dst.len(), "read")?;
        // SAFETY: the range was checked; no launch runs concurrently (launches are synchronous).
        unsafe { std::ptr::copy_nonoverlapping(mem.base().add(offset), dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }
    fn copy(
        &self,
        src: &EmuMem,
        src_offset: usize,
        dst: &mut EmuMem,
        dst_offset: usize,
        bytes: usize,
    ) -> mep_kernels::Result<()> {
        src.check(src_offset, bytes, "copy source")?;
        dst.check(dst_offset, bytes, "copy destination")?;
        if self.capturing.load(Ordering::Relaxed) {
            lock(&self.recorded).push(Op::Copy {
                // SAFETY: both ranges were checked above.
                src: unsafe { src.base().add(src_offset) } as u64,
                dst: unsafe { dst.base().add(dst_offset) } as u64,
                bytes,
            });
            return Ok(());
        }
        // SAFETY: both ranges were checked; `dst` is borrowed mutably, so it is not `src`.
        unsafe { std::ptr::copy_nonoverlapping(src.base().add(src_offset), dst.base().add(dst_offset), bytes) };
        Ok(())
    }
    fn ptr(&self, mem: &EmuMem) -> u64 {
        mem.base() as u64
    }
    fn launch(&self, kernel: &str, grid: Dims, block: Dims, args: &[Arg]) -> mep_kernels::Result<()> {
        let f = self
            .kernels
            .get(kernel)
            .ok_or_else(|| KernelError::UnknownKernel(kernel.to_string()))?;
        if self.capturing.load(Ordering::Relaxed) {
            lock(&self.recorded).push(Op::Launch {
                kernel: kernel.to_string(),
                f: *f,
                grid,
                block,
                args: args.to_vec(),
            });
            return Ok(());
        }
        run(kernel, *f, grid, block, args)
    }
    fn synchronize(&self) -> mep_kernels::Result<()> {
        self.not_capturing("synchronising")
    }
    fn capture(
        &self,
        work: &mut dyn FnMut() -> std::result::Result<(), String>,
    ) -> mep_kernels::Result<Box<dyn Replay>> {
        if self.capturing.swap(true, Ordering::Relaxed) {
            return Err(KernelError::Launch {
                kernel: "(graph capture)".into(),
                msg: "a capture is already recording on this launcher".into(),
            });
        }
        lock(&self.recorded).clear();
        // Stops recording even if `work` panics.
        struct Stop<'a>(&'a EmuLauncher);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.capturing.store(false, Ordering::Relaxed);
            }
        }
        let stop = Stop(self);
        let outcome = work();
        drop(stop);
        let ops = std::mem::take(&mut *lock(&self.recorded));
        outcome.map_err(|e| KernelError::Launch {
            kernel: "(graph capture)".into(),
            msg: format!("the captured work failed: {e}"),
        })?;
        Ok(Box::new(EmuGraph { ops }))
    }
}
