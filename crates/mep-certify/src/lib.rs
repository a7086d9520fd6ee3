#![doc = include_str!("../README.md")]

mod bounds;
mod certify;
mod conv;
mod device;
mod direct;
pub mod error;
mod exact;
mod grad;
mod net;
mod search;
mod shared_zeros;
mod window;
mod zonotope;

pub use certify::{
    certify_path, certify_segment, piece_count, ActivationPattern, Certifier, PathCertificate, PathInput,
    SegmentCertificate, Verdict, Work,
};
pub use device::{BoundsDevice, DeviceArg, DeviceError};
pub use error::{CertifyError, Result};
pub use exact::{CertifyOptions, Method, Partition};
pub use grad::{head_loss_grad_f64, LossGrad64};

/// The f64 convolution the exact analysis runs (im2col + gemm), exposed for benches.
pub mod kernels {
    pub use crate::conv::conv2d;
}
