//! Any [`Launcher`] as the device of mep-certify's bounds (`kernels/bounds.cu`).

use crate::launcher::{Arg, Dims, Launcher};
use mep_certify::{BoundsDevice, DeviceArg, DeviceError};

/// A launcher running the bounds' zonotopes: `Certifier::on_device(CertifyOn(launcher))`.
///
/// ```
/// use mep_certify::BoundsDevice;
/// use mep_kernels::CertifyOn;
/// # use mep_kernels::{Arg, Dims, Launcher, KernelError};
/// # struct Nothing;
/// # impl Launcher for Nothing {
/// #     type Mem = Vec<u8>;
/// #     fn name(&self) -> &'static str { "nothing" }
/// #     fn alloc(&self, b: usize) -> Result<Vec<u8>, KernelError> { Ok(vec![0; b]) }
/// #     fn write(&self, m: &mut Vec<u8>, o: usize, s: &[u8]) -> Result<(), KernelError> { m[o..o + s.len()].copy_from_slice(s); Ok(()) }
/// #     fn read(&self, m: &Vec<u8>, o: usize, d: &mut [u8]) -> Result<(), KernelError> { let n = d.len(); d.copy_from_slice(&m[o..o + n]); Ok(()) }
/// #     fn copy(&self, s: &Vec<u8>, so: usize, d: &mut Vec<u8>, dof: usize, n: usize) -> Result<(), KernelError> { d[dof..dof + n].copy_from_slice(&s[so..so + n]); Ok(()) }
/// #     fn ptr(&self, m: &Vec<u8>) -> u64 { m.as_ptr() as u64 }
/// #     fn launch(&self, _: &str, _: Dims, _: Dims, _: &[Arg]) -> Result<(), KernelError> { Ok(()) }
/// #     fn synchronize(&self) -> Result<(), KernelError> { Ok(()) }
/// # }
/// let dev = CertifyOn(Nothing);
/// assert_eq!(dev.name(), "nothing");
/// ```
pub struct CertifyOn<L: Launcher>(pub L);

fn boxed(e: crate::KernelError) -> DeviceError {
    Box::new(e)
}

impl<L: Launcher> BoundsDevice for CertifyOn<L> {
    type Mem = L::Mem;

    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn alloc(&self, bytes: usize) -> Result<L::Mem, DeviceError> {
        self.0.alloc(bytes).map_err(boxed)
    }

    fn write(&self, mem: &mut L::Mem, offset: usize, src: &[u8]) -> Result<(), DeviceError> {
        self.0.write(mem, offset, src).map_err(boxed)
    }

    fn read(&self, mem: &L::Mem, offset: usize, dst: &mut [u8]) -> Result<(), DeviceError> {
        self.0.read(mem, offset, dst).map_err(boxed)
    }

    fn copy(
        &self,
        src: &L::Mem,
        src_offset: usize,
        dst: &mut L::Mem,
        dst_offset: usize,
        bytes: usize,
    ) -> Result<(), DeviceError> {
        self.0.copy(src, src_offset, dst, dst_offset, bytes).map_err(boxed)
    }

    fn ptr(&self, mem: &L::Mem) -> u64 {
        self.0.ptr(mem)
    }

    fn launch(&self, kernel: &str, blocks: u32, threads: u32, args: &[DeviceArg]) -> Result<(), DeviceError> {
        let args: Vec<Arg> = args
            .iter()
            .map(|a| match *a {
                DeviceArg::Ptr(p) => Arg::Ptr(p),
                DeviceArg::I32(v) => Arg::I32(v),
                DeviceArg::I64(v) => Arg::I64(v),
                DeviceArg::F64(v) => Arg::F64(v),
            })
            .collect();
        self.0
            .launch(kernel, Dims::x(blocks), Dims::x(threads), &args)
            .map_err(boxed)
    }
}
