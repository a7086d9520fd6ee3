//! The host side of each kernel family: argument checks (the CPU backend's, so errors read
//! the same), the version, the grid and the arguments.

pub(crate) mod bn;
pub(crate) mod conv;
pub(crate) mod linear;
pub(crate) mod neb;
pub(crate) mod optim;
pub(crate) mod pointwise;
pub(crate) mod pool;
pub(crate) mod softmax;
