#![doc = include_str!("../README.md")]

mod certify;
mod conv;
pub mod error;
mod exact;
mod net;

pub use certify::{
    certify_path, certify_segment, piece_count, ActivationPattern, Certifier, PathCertificate, SegmentCertificate,
    Verdict,
};
pub use error::{CertifyError, Result};
pub use exact::{CertifyOptions, Partition};

/// The f64 convolution the exact analysis runs (im2col + gemm), exposed for benches.
pub mod kernels {
    pub use crate::conv::conv2d;
}
