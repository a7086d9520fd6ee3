//! The host side of each kernel family, one `impl <Family> for KernelBackend` per file
//! (kernels/<family>.cu): the version, the grid and the arguments. Argument checks are the
//! family traits' (mep-tensor), written once for every backend; only the kernels' own limits
//! (an extent that must fit an `int`, a grid dimension) are checked here.

pub(crate) mod batch_norm;
pub(crate) mod conv;
pub(crate) mod elementwise;
pub(crate) mod linear;
pub(crate) mod neb;
pub(crate) mod optim;
pub(crate) mod pool;
pub(crate) mod reduce;
pub(crate) mod softmax;
