//! The Backend trait: every operation a ResNet, a decoder or the NEB needs, on
//! backend-owned buffers of f32, as one trait per op family.
//!
//! Buffers are flat; the geometry arguments say how to read them (NCHW for images,
//! row-major `[rows, cols]` for matrices, PyTorch's weight layouts). Outputs are
//! overwritten unless the method says it accumulates. Lengths are checked and a wrong
//! one is a [`TensorError::Len`](crate::TensorError::Len), never a panic.
//!
//! Each family ([`Memory`], [`Elementwise`], [`Reduce`], [`Conv`], [`BatchNorm`], [`Pool`],
//! [`Linear`], [`Softmax`], [`Optim`], [`Neb`]) is one trait in one module. Its public methods
//! (`conv2d`, `batch_norm_train`, ...) are provided: they check every argument, once for all
//! backends, and then call the backend's required `run_*` method (`run_conv2d`, ...), which
//! may assume that lengths, geometry and hyper-parameters are valid. A `run_*` method takes a
//! [`Checked`] token that only this crate can make, so callers cannot skip the checks.
//! [`Backend`] is the sum of the families; code generic over a backend bounds on it.

/// Declares the checked operations of a family trait, each once.
///
/// Every operation is two methods: a provided one that callers use (`conv2d`), which checks
/// its arguments, and a required one that backends implement (`run_conv2d`), which may
/// assume them checked and takes a [`Checked`] token as proof. Both have the same parameter
/// list, so written out by hand each list would stand twice; here it is written once:
///
/// ```text
/// pub trait Elementwise: Memory {
///     checked_ops! {
///         /// `y += alpha x`.
///         fn axpy(&self, alpha: f32, x: &Self::Buf, y: &mut Self::Buf) -> Result<()> => run_axpy {
///             check_len("axpy", "y", self.len(x), self.len(y))?;
///         }
///         // ... the family's other ops
///     }
/// }
/// ```
///
/// gives, for each declaration,
/// - the provided method `axpy`, with the doc and attributes given; its body is the check
///   block, then `self.run_axpy(Checked::new(), alpha, x, y)`;
/// - the required method `fn run_axpy(&self, _: Checked, alpha: f32, x: &Self::Buf, y: &mut
///   Self::Buf) -> Result<()>;`, with a short doc pointing at `axpy` and
///   `#[allow(clippy::too_many_arguments)]` (it takes one argument more than `axpy`).
///
/// So each op's checks are written once for all backends, a backend implements only the
/// `run_*` methods, and no caller reaches one without the checks. The receiver is written
/// `&self` as usual; the macro takes the `self` from there, because macro hygiene would keep
/// the check block from seeing a `self` the macro made up.
macro_rules! checked_ops {
    ($(
        $(#[$attr:meta])*
        fn $name:ident(&$self:ident $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty => $run:ident {
            $($check:tt)*
        }
    )*) => {$(
        $(#[$attr])*
        fn $name(&$self $(, $arg: $ty)*) -> $ret {
            $($check)*
            $self.$run($crate::backend::Checked::new() $(, $arg)*)
        }

        #[doc = concat!(
            "[`", stringify!($name), "`](Self::", stringify!($name),
            ") on arguments it has already checked; backends implement this."
        )]
        #[allow(clippy::too_many_arguments)]
        fn $run(&$self, _: $crate::backend::Checked $(, $arg: $ty)*) -> $ret;
    )*};
}

pub mod batch_norm;
pub mod conv;
pub mod elementwise;
pub mod linear;
pub mod memory;
pub mod neb;
pub mod optim;
pub mod pool;
pub mod reduce;
pub mod softmax;

pub use batch_norm::BatchNorm;
pub use conv::Conv;
pub use elementwise::{Act, Elementwise};
pub use linear::Linear;
pub use memory::{Memory, RecordError, Recorded};
pub use neb::{Lerp, Neb, NebForceParams};
pub use optim::{AdamParams, Optim, SgdParams};
pub use pool::Pool;
pub use reduce::Reduce;
pub use softmax::Softmax;

/// Proof that a family trait's provided method has checked the arguments of the `run_*`
/// method it is passed to. Only mep-tensor makes one, so a `run_*` method is reachable only
/// through its checking method.
#[derive(Clone, Copy, Debug)]
pub struct Checked(());

impl Checked {
    /// The token, after the checks.
    pub(crate) const fn new() -> Self {
        Checked(())
    }
}

/// A compute backend: owns buffers and runs every operation on them.
///
/// The sum of the op families; implemented for every type that implements all of them.
/// The CPU backend is the reference; any other backend must agree with it.
///
/// ```
/// use mep_tensor::prelude::*;
/// use mep_tensor::CpuBackend;
/// let cpu = CpuBackend::new();
/// let x = cpu.upload(&[1.0, -2.0, 3.0]).unwrap();
/// let mut y = cpu.alloc(3).unwrap();
/// cpu.activation(mep_tensor::Act::Relu, &x, &mut y).unwrap();
/// assert_eq!(cpu.download(&y).unwrap(), vec![1.0, 0.0, 3.0]);
/// ```
pub trait Backend: Memory + Elementwise + Reduce + Conv + BatchNorm + Pool + Linear + Softmax + Optim + Neb {}

impl<T> Backend for T where T: Memory + Elementwise + Reduce + Conv + BatchNorm + Pool + Linear + Softmax + Optim + Neb {}
