//! `--device cpu|cuda|auto`: which backend a command computes on.
//!
//! The commands are generic over the Backend; [`on_device!`](crate::on_device) expands a body
//! once per backend and runs the one the device names. `mep certify` stays on the CPU by
//! design: its arithmetic is f64 and exact.

use crate::{MepError, Result};
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
