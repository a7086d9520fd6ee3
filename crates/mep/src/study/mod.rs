//! The study folder, in one place. A study of `mep connect` lives in one folder:
//!
//! - `manifest.json` ([`Manifest`]): every setting that changes results and the pair list;
//! - `results.jsonl` ([`PairResult`]): one line per pair and space, appended and synced;
//! - `paths/` ([`path_file_name`]): each final path as safetensors;
//! - `certificates.jsonl` ([`CertificateRecord`]): the exact verdicts of `mep certify`;
//! - `table1.md`, `table1.csv`, `table1_stats.csv`, `table1_endpoints.csv`
//!   ([`write_tables`]): rewritten after each result or certificate, with the intervals of
//!   [`stats`].
//!
//! `connect` and `merge` write a study through this module, `certify` reads and extends it,
//! the figures and the report read it ([`Study::open`]). It depends on nothing above it
//! (only on `data` and the error type): the commands depend on it, never the reverse.
//!
//! ```no_run
//! use mep::study::{read_certificates, Study};
//! let study = Study::open("runs/study".as_ref())?;
//! for r in study.results()? {
//!     println!("pair {} in {}: {}", r.pair, r.space, r.category);
//! }
//! println!("{} certificates", read_certificates(&study.dir)?.len());
//! # Ok::<(), mep::MepError>(())
//! ```

mod certificates;
mod loader;
mod manifest;
mod results;
pub mod stats;
mod store;
mod tables;

pub use certificates::{
    count as count_certificates, forget_certificates, open_certificates, parse_certificates, read_certificates,
    CertificateRecord, Exact,
};
pub use loader::{point_shape, PathPivots, Study};
pub use manifest::{differences, EndpointSelection, Endpoints, Manifest, Pair, Settings, Shard};
pub use results::{open_results, path_file_name, paths_dir, read_results, rewrite_results, Category, PairResult};
pub use store::{file_safe, parse_jsonl, read_jsonl, write_atomic, JsonlFile};
pub(crate) use tables::totals;
pub use tables::{
    certified_markdown, count, counts_markdown, endpoints_csv, endpoints_note, markdown, median_cell, median_of,
    medians_markdown, of_endpoints, other_endpoints, share_cell, stats_csv, table1_csv, write_tables, SpaceCounts,
    MEDIAN_FIGURES,
};

use crate::{MepError, Result};
use std::path::Path;

/// The manifest's file name in a study folder.
pub const MANIFEST: &str = "manifest.json";
/// The results' file name in a study folder.
pub const RESULTS: &str = "results.jsonl";
/// The folder of path files in a study folder.
pub const PATHS: &str = "paths";
/// The settings file of a folder of `mep graph` (here so that `mep connect`, below the
/// graph module, can refuse such a folder).
pub const GRAPH_MANIFEST: &str = "graph_manifest.json";
/// The certificates' file name in a study folder.
pub const CERTIFICATES: &str = "certificates.jsonl";

/// Refuses, for `command`, a folder that is not a study folder of `mep connect`.
pub fn check_folder(dir: &Path, command: &str) -> Result<()> {
    if !dir.is_dir() {
        return Err(MepError::Missing {
            path: dir.to_path_buf(),
            what: "no such folder".into(),
            hint: Some(format!("`{command}` needs the folder of a study (`mep connect --out`)")),
        });
    }
    if !dir.join(MANIFEST).is_file() {
        return Err(MepError::Missing {
            path: dir.to_path_buf(),
            what: format!("not a study folder (no {MANIFEST})"),
            hint: Some(format!("`{command}` needs the folder that `mep connect --out` wrote")),
        });
    }
    Ok(())
}
