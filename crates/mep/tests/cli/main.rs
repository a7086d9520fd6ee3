//! The `mep` crate's integration tests, one module per subject. They are one test binary
//! rather than one per file: every binary links the whole engine and the CLI, and seventeen
//! of them were about a sixth of CI's test build.
//!
//! The tests of one binary run on threads of one process: none may change the process's
//! environment or working folder, and each works in its own scratch folder
//! (`common::tmpdir`).

mod common;

mod attack;
mod connect;
mod decoder;
mod determinism;
mod device_step;
mod endpoints;
mod figures;
mod forward_cli;
mod graph;
mod limits;
mod messages;
mod module_graph;
mod reliability;
mod report_stats;
mod shipped_weights;
mod train;
