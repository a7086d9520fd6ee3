//! [`EmuLauncher`]: the [`Launcher`] of the CPU emulation, so that
//! `KernelBackend<EmuLauncher>` runs the CUDA backend's host code and kernels on the CPU.

use mep_kernels::{Arg, Dims, KernelBackend, KernelError, Kernels, Launcher};
use std::cell::UnsafeCell;
use std::collections::HashMap;
use std::ffi::{c_void, CStr};
use std::os::raw::{c_char, c_int, c_uint};

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
        EmuLauncher { kernels }
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
        3 => Some("the operating system could not start the block's threads"),
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
        mem.check(offset, src.len(), "write")?;
        // SAFETY: the range was checked; `mem` is borrowed mutably.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), mem.base().add(offset), src.len()) };
        Ok(())
    }
    fn read(&self, mem: &EmuMem, offset: usize, dst: &mut [u8]) -> mep_kernels::Result<()> {
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
        let mut values: Vec<[u8; 8]> = args.iter().map(Arg::bytes).collect();
        let mut params: Vec<*mut c_void> = values.iter_mut().map(|v| v.as_mut_ptr() as *mut c_void).collect();
        // SAFETY: the kernel reads each parameter as its C type from the 8-byte slot (4-byte
        // types from the first 4 bytes, little-endian as every supported host); pointers in
        // `args` come from `ptr` of live allocations, as KernelBackend guarantees.
        let code = unsafe { f(grid.x, grid.y, grid.z, block.x, block.y, block.z, params.as_mut_ptr()) };
        status(kernel, grid, block, code)
    }
    fn synchronize(&self) -> mep_kernels::Result<()> {
        Ok(())
    }
}
