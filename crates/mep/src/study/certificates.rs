//! `certificates.jsonl`: the exact verdicts of `mep certify` on a study's saved paths, one
//! [`CertificateRecord`] per (pair, space), with the crash rules of `results.jsonl`.

use super::store::{parse_jsonl, read_jsonl, JsonlFile};
use super::{Category, CERTIFICATES};
use crate::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

/// The exact verdict on one saved path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Exact {
    /// Every point of the path is classified as the class.
    #[serde(rename = "certified")]
    Certified,
    /// Some stretch of the path leaves the class (the intervals are recorded).
    #[serde(rename = "refuted")]
    Refuted,
    /// Neither shown: the piece budget ran out, or a margin is within tolerance of zero.
    #[serde(rename = "undecided")]
    Undecided,
}

impl fmt::Display for Exact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Exact::Certified => "certified",
            Exact::Refuted => "refuted",
            Exact::Undecided => "undecided",
        })
    }
}

/// A line of `certificates.jsonl`: the certificate of one (pair, space)'s saved path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CertificateRecord {
    pub pair: usize,
    pub space: String,
    pub i: usize,
    pub j: usize,
    pub class: usize,
    /// What the sampled check said (`linear`, `nonlinear`, `none`).
    pub category: Category,
    pub exact: Exact,
    /// Pieces on which the logits are affine that ExactLine computed, over all segments of the
    /// path (the whole of each segment with `exact`, the intervals the bounds left with `auto`).
    pub pieces: usize,
    /// The smallest margin `logit_class − max_other` along the part of the path that was
    /// partitioned, and where, as the path's parameter u ∈ [0, 1] (segment k, position t:
    /// u = (k + t)/(P − 1)); none when the piece budget ran out before the first piece.
    pub min_margin: Option<f64>,
    pub min_margin_u: Option<f64>,
    /// For a refuted path: the intervals of u on which the class is left.
    pub refuted: Vec<(f64, f64)>,
    /// For an undecided path: why.
    pub reason: Option<String>,
    /// The settings the certificate was made with.
    pub max_pieces: usize,
    pub tol: f64,
    /// Wall-clock seconds of the path. `mep certify` sends up to 8 paths of a space through
    /// the bounds together, so with `bounds` or `auto` this is their time over their number.
    pub seconds: f64,
    /// How it was made: `auto`, `bounds` or `exact` (a file written before the bounds existed
    /// holds exact certificates).
    #[serde(default = "exact_method")]
    pub method: String,
    /// Intervals of the path's parameter whose bounds were computed (0 with `exact`).
    #[serde(default)]
    pub intervals: usize,
    /// For a refutation: a point u of the path where the f64 margin is below the tolerance,
    /// and that margin (the network misclassifies the point).
    #[serde(default)]
    pub counterexample_u: Option<f64>,
    #[serde(default)]
    pub counterexample_margin: Option<f64>,
    /// The smallest margin the bounds proved on the stretches they certified.
    #[serde(default)]
    pub margin_bound: Option<f64>,
    /// The bounds' settings (0 with `exact`).
    #[serde(default)]
    pub max_intervals: usize,
    #[serde(default)]
    pub min_width: f64,
}

fn exact_method() -> String {
    "exact".into()
}

/// Reads the certificates already in `dir/certificates.jsonl` and opens it for appending (a
/// last line cut short by a crash is dropped, as [`JsonlFile::open`] says).
pub fn open_certificates(dir: &Path) -> Result<(JsonlFile, Vec<CertificateRecord>)> {
    JsonlFile::open(&dir.join(CERTIFICATES))
}

/// The certificates in `dir` (none if there is no file yet).
pub fn read_certificates(dir: &Path) -> Result<Vec<CertificateRecord>> {
    Ok(read_jsonl(&dir.join(CERTIFICATES), false)?.0)
}

/// Drops the certificates of the (pair, space) results in `gone` from `dir` (their paths
/// are being computed again); returns how many were dropped.
pub fn forget_certificates(dir: &Path, gone: &BTreeSet<(usize, String)>) -> Result<usize> {
    let path = dir.join(CERTIFICATES);
    let (certs, _) = read_jsonl::<CertificateRecord>(&path, true)?;
    let keep: Vec<&CertificateRecord> = certs
        .iter()
        .filter(|c| !gone.contains(&(c.pair, c.space.clone())))
        .collect();
    let dropped = certs.len() - keep.len();
    if dropped > 0 {
        JsonlFile::rewrite(&path, &keep)?;
    }
    Ok(dropped)
}

/// The certificates in the bytes of a `certificates.jsonl`; `path` names it in errors.
pub fn parse_certificates(bytes: &[u8], path: &Path) -> Result<Vec<CertificateRecord>> {
    Ok(parse_jsonl(bytes, path, false)?.0)
}

/// Per space: (certified, refuted, undecided).
pub fn count(spaces: &[String], certs: &[CertificateRecord]) -> Vec<(String, usize, usize, usize)> {
    spaces
        .iter()
        .map(|s| {
            let n = |e: Exact| certs.iter().filter(|c| &c.space == s && c.exact == e).count();
            (s.clone(), n(Exact::Certified), n(Exact::Refuted), n(Exact::Undecided))
        })
        .collect()
}
