//! mep-data's tests, one module per subject, in one test binary (six binaries linked the
//! same crate six times). The tests share a process: each works in its own scratch folder.

mod cifar;
mod folder;
mod loader;
mod split;
mod synthetic;
mod transform;
