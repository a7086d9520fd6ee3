//! The one error enum of mep-certify.

use mep_resnet::ResNetError;
use mep_tensor::TensorError;

/// Everything that can go wrong certifying a segment or a path.
#[derive(Debug, thiserror::Error)]
pub enum CertifyError {
    /// A point, a pivot tensor or a shape does not fit the network at the cut.
    #[error("{what} has shape {found}, expected {expected}")]
    Shape {
        what: String,
        expected: String,
        found: String,
    },
    /// A point holds NaN or an infinity.
    #[error("{what} holds a non-finite value {value} at index {index}")]
    NonFinite { what: String, index: usize, value: f32 },
    /// The target class is not one of the network's classes.
    #[error("target class {target} is out of range: the network has {classes} classes")]
    Target { target: usize, classes: usize },
    /// An option is out of its range.
    #[error("option `{name}` = {value}: {msg}")]
    Options {
        name: &'static str,
        value: String,
        msg: &'static str,
    },
    /// The network (its cut points, its layers) refused.
    #[error(transparent)]
    Network(#[from] ResNetError),
    /// Reading a layer's weights from its backend failed.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// The device that runs the bounds' kernels failed.
    #[error("the bounds on the device: {what}: {source}")]
    Device {
        what: String,
        #[source]
        source: crate::device::DeviceError,
    },
}

/// Result alias of mep-certify.
pub type Result<T> = std::result::Result<T, CertifyError>;
