//! The emulated kernels' tests, one module per subject, in one test binary: every binary linked
//! the emulation of every kernel family again, and ten of them were a large part of this
//! crate's test build. The tests share a process: each makes its own launcher and memory.

mod common;

mod conformance;
mod elementwise;
mod memory;
mod mma;
mod neb;
mod network;
mod optim;
mod pool;
mod precision;
mod softmax;
