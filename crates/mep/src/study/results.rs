//! `results.jsonl`: one [`PairResult`] per (pair, space), appended and synced as each is
//! found, and the `paths/` folder of the final paths they name.

use super::store::{read_jsonl, JsonlFile};
use super::{Endpoints, PATHS, RESULTS};
use crate::{MepError, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// How a pair is joined in a space: a row of Table 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Category {
    /// Every point of the densely sampled straight line is classified as the class.
    #[serde(rename = "linear")]
    Linear,
    /// The line leaves the class, but the NEB found a path that does not.
    #[serde(rename = "nonlinear")]
    Nonlinear,
    /// The line leaves the class and the NEB found no path within its budget.
    #[serde(rename = "none")]
    NoPath,
    /// The search met a NaN or infinite energy (the message is recorded).
    #[serde(rename = "error")]
    Error,
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Category::Linear => "linear",
            Category::Nonlinear => "nonlinear",
            Category::NoPath => "none",
            Category::Error => "error",
        })
    }
}

/// The result of one pair in one space: a line of `results.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairResult {
    /// The pair's number in the study.
    pub pair: usize,
    /// Dataset index (test split) of the first endpoint.
    pub i: usize,
    /// Dataset index of the second endpoint.
    pub j: usize,
    /// The class of both endpoints: the target.
    pub class: usize,
    /// That class's name.
    pub class_name: String,
    /// What the endpoints are (the pair's; left out of the file when natural).
    #[serde(default, skip_serializing_if = "Endpoints::is_natural")]
    pub endpoints: Endpoints,
    /// The pair's `true_class`: the label of `i` when it is not `class`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub true_class: Option<usize>,
    /// The pair's `predicted`: the model's class for `i` when it is not `class`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted: Option<usize>,
    /// The space: `input` or a cut.
    pub space: String,
    pub category: Category,
    /// ‖z2 − z1‖ in the space.
    pub distance: Option<f64>,
    /// Largest loss along the densely sampled line.
    pub line_max_loss: Option<f64>,
    /// Smallest target probability along the densely sampled line.
    pub line_min_prob: Option<f64>,
    /// Largest loss along the final path, densely sampled (the line itself for `linear`).
    pub path_max_loss: Option<f64>,
    /// Smallest target probability along the final path.
    pub path_min_prob: Option<f64>,
    /// NEB steps taken (0 for `linear`).
    pub steps: usize,
    /// Pivots of the final path, endpoints included (2 for `linear`).
    pub pivots: usize,
    /// Length of the final path over ‖z2 − z1‖ (1 for the line).
    pub length_ratio: Option<f64>,
    /// Wall time of this pair in this space, seconds.
    pub seconds: f64,
    /// The path file, relative to the study folder (none for `error`).
    pub path_file: Option<String>,
    /// What went wrong, for `error`.
    pub message: Option<String>,
    /// The arithmetic of the search's gradient steps (its checks are fp32); results written
    /// before it read as fp32.
    #[serde(default, with = "crate::precision_name")]
    pub precision: crate::Precision,
}

/// Reads the results already in `dir/results.jsonl` and opens it for appending (a last line
/// cut short by a crash is dropped, as [`JsonlFile::open`] says).
pub fn open_results(dir: &Path) -> Result<(JsonlFile, Vec<PairResult>)> {
    JsonlFile::open(&dir.join(RESULTS))
}

/// Replaces `dir/results.jsonl` with `results` (atomically) and opens it for appending.
pub fn rewrite_results(dir: &Path, results: &[PairResult]) -> Result<JsonlFile> {
    JsonlFile::rewrite(&dir.join(RESULTS), results)
}

/// The results in a results file (none if it does not exist). With `torn_ok`, a bad last
/// line is left out and the length of the good prefix returned, so the caller can cut
/// the file there; without it, a bad last line is an error like any other.
pub fn read_results(path: &Path, torn_ok: bool) -> Result<(Vec<PairResult>, Option<u64>)> {
    read_jsonl(path, torn_ok)
}

/// Creates `dir/paths` and returns its path.
pub fn paths_dir(dir: &Path) -> Result<PathBuf> {
    let p = dir.join(PATHS);
    std::fs::create_dir_all(&p).map_err(|source| MepError::Io {
        path: p.clone(),
        source,
    })?;
    Ok(p)
}

/// The path file of a pair in a space, relative to the study folder.
pub fn path_file_name(pair: usize, space: &str) -> String {
    format!("{PATHS}/pair{pair:06}_{space}.safetensors")
}
