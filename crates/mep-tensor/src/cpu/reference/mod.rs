//! Naive, obviously-correct versions of the CPU kernels, in f64: the readable
//! specification, what the fast kernels are tested against, and the forward used for
//! finite-difference checks of every backward.

pub mod conv;
pub mod neb;
pub mod ops;
