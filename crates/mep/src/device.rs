//! `--device cpu|cuda|auto`: which backend a command computes on.
//!
//! The commands are generic over the Backend; [`on_device!`](crate::on_device) expands a body
//! once per backend and runs the one the device names. `mep certify` is f64: it runs only its
//! bounds' zonotopes on the device (`mep_certify::Certifier::on_device`), with the CPU's values.

use crate::{MepError, Result};
use mep_tensor::backend::Memory;
use mep_tensor::precision::Precision;
use std::fmt;
use std::str::FromStr;

/// Where a command computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Device {
    /// The CPU backend (the reference), on every core.
    #[default]
    Cpu,
    /// The CUDA backend on GPU 0; an error when there is none.
    Cuda,
    /// CUDA when a GPU can be used, else the CPU (saying why on stderr).
    Auto,
}

impl FromStr for Device {
    type Err = MepError;
    fn from_str(s: &str) -> Result<Device> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda),
            "auto" => Ok(Device::Auto),
            _ => Err(MepError::option("--device", s, "expected cpu, cuda or auto")),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
            Device::Auto => "auto",
        })
    }
}

/// A backend chosen for a [`Device`].
pub enum Chosen {
    /// The CPU backend.
    Cpu(mep_tensor::CpuBackend),
    /// The CUDA backend.
    Cuda(Box<mep_cuda::CudaBackend>),
}

/// The backend `device` names. `Cuda` fails with the reason when no GPU can be used (no
/// driver, no device, or a build without CUDA support); `Auto` then falls back to the CPU.
///
/// ```
/// use mep::device::{choose, Chosen, Device};
/// assert!(matches!(choose(Device::Cpu).unwrap(), Chosen::Cpu(_)));
/// ```
pub fn choose(device: Device) -> Result<Chosen> {
    match device {
        Device::Cpu => Ok(Chosen::Cpu(mep_tensor::CpuBackend::new())),
        Device::Cuda => mep_cuda::cuda_backend(0)
            .map(|b| Chosen::Cuda(Box::new(b)))
            .map_err(|e| MepError::option("--device", "cuda", e.to_string())),
        Device::Auto => match mep_cuda::cuda_backend(0) {
            Ok(b) => Ok(Chosen::Cuda(Box::new(b))),
            Err(e) => {
                eprintln!("--device auto: computing on the CPU ({e})");
                Ok(Chosen::Cpu(mep_tensor::CpuBackend::new()))
            }
        },
    }
}

/// Runs `$body` with `$b` bound to `&B` for the backend `$device` names (the body is
/// compiled once per backend, so it may call generic functions).
///
/// ```
/// use mep::device::Device;
/// use mep_tensor::prelude::*;
/// fn name() -> mep::Result<&'static str> {
///     mep::on_device!(Device::Cpu, |b| Ok(b.name()))
/// }
/// assert_eq!(name().unwrap(), "cpu");
/// ```
#[macro_export]
macro_rules! on_device {
    ($device:expr, |$b:ident| $body:expr) => {
        match $crate::device::choose($device)? {
            $crate::device::Chosen::Cpu(backend) => {
                let $b = &backend;
                $body
            }
            $crate::device::Chosen::Cuda(backend) => {
                let $b = &*backend;
                $body
            }
        }
    };
}

/// Switches `b` to `--precision p` for the whole command (forward, train, eval, decoder
/// train), before any work: a backend without kernels for `p` refuses it here, with its own
/// reason, rather than the command running fp32 in its place.
///
/// ```
/// use mep_tensor::{precision::Precision, prelude::*, CpuBackend};
/// let cpu = CpuBackend::new();
/// mep::device::use_precision(&cpu, Precision::Tf32).unwrap();
/// assert_eq!(cpu.precision(), Precision::Tf32);
/// ```
pub fn use_precision<B: Memory>(b: &B, p: Precision) -> Result<()> {
    b.set_precision(p)
        .map_err(|e| MepError::option("--precision", p, e.to_string()))
}

/// Checks that `b` can run precision `p` and leaves it in fp32: what `mep connect` and `mep
/// graph` do first, since they compute in fp32 everywhere but the NEB's gradient steps.
pub fn check_precision<B: Memory>(b: &B, p: Precision) -> Result<()> {
    use_precision(b, p)?;
    use_precision(b, Precision::Fp32)
}

/// Runs `f` with `b` at precision `p` and puts back the precision `b` had, also when `f`
/// fails; a no-op switch when `b` is at `p` already.
pub fn at_precision<B: Memory, R>(
    b: &B,
    p: Precision,
    f: impl FnOnce() -> R,
) -> std::result::Result<R, mep_tensor::TensorError> {
    let before = b.precision();
    if before == p {
        return Ok(f());
    }
    b.set_precision(p)?;
    let r = f();
    b.set_precision(before)?;
    Ok(r)
}

/// The fewest `--threads` ever refused: far more than 2 cores can use, and what rayon and
/// gemm still start in about a second (2000 threads on 2 cores made a forward pass of
/// three images run for minutes).
pub const MAX_THREADS_FLOOR: usize = 256;

/// Checks `--threads requested` on a machine of `cores` cores: refused at 0 (omit the
/// option for every core) and above `max(MAX_THREADS_FLOOR, 2·cores)`, naming the bound.
///
/// ```
/// use mep::device::check_threads;
/// assert_eq!(check_threads(8, 2).unwrap(), 8);
/// assert!(check_threads(2000, 2).unwrap_err().to_string().contains("at most 256"));
/// assert!(check_threads(0, 2).is_err());
/// ```
pub fn check_threads(requested: usize, cores: usize) -> Result<usize> {
    let most = MAX_THREADS_FLOOR.max(2 * cores);
    if requested == 0 {
        return Err(MepError::option(
            "--threads",
            0,
            "give at least 1, or omit --threads to use every core",
        ));
    }
    if requested > most {
        return Err(MepError::option(
            "--threads",
            requested,
            format!("at most {most} on this machine ({cores} cores); more threads than that only queue for the cores"),
        ));
    }
    Ok(requested)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mep_tensor::backend::Checked;

    /// A backend with only the default precision switch: fp32 kernels and nothing else.
    struct Fp32Only;

    impl Memory for Fp32Only {
        type Buf = Vec<f32>;
        fn name(&self) -> &'static str {
            "fp32-only"
        }
        fn alloc(&self, len: usize) -> mep_tensor::Result<Vec<f32>> {
            Ok(vec![0.0; len])
        }
        fn zeros(&self, len: usize) -> mep_tensor::Result<Vec<f32>> {
            Ok(vec![0.0; len])
        }
        fn upload(&self, data: &[f32]) -> mep_tensor::Result<Vec<f32>> {
            Ok(data.to_vec())
        }
        fn download(&self, buf: &Vec<f32>) -> mep_tensor::Result<Vec<f32>> {
            Ok(buf.clone())
        }
        fn len(&self, buf: &Vec<f32>) -> usize {
            buf.len()
        }
        fn fill(&self, buf: &mut Vec<f32>, value: f32) -> mep_tensor::Result<()> {
            buf.fill(value);
            Ok(())
        }
        fn run_copy(&self, _: Checked, src: &Vec<f32>, dst: &mut Vec<f32>) -> mep_tensor::Result<()> {
            dst.copy_from_slice(src);
            Ok(())
        }
    }

    #[test]
    fn a_backend_without_the_kernels_refuses_the_precision_by_name() {
        for p in [Precision::Tf32, Precision::Bf16] {
            for e in [use_precision(&Fp32Only, p), check_precision(&Fp32Only, p)] {
                let e = e.unwrap_err().to_string();
                assert!(
                    e.contains(&format!("--precision {p}")) && e.contains("backend fp32-only has no"),
                    "{e}"
                );
            }
        }
        check_precision(&Fp32Only, Precision::Fp32).unwrap();
        let r = at_precision(&Fp32Only, Precision::Tf32, || ());
        assert!(r.is_err(), "at_precision must not run the body in fp32 instead");
    }
}
