//! What a study leaves in its folder: `manifest.json` (the configuration and the pair
//! list), `results.jsonl` (one line per pair and space, appended and synced), and the
//! helpers that write files atomically and read them back after a crash.

use super::pairs::Pair;
use super::{PairResult, Shard};
use crate::{MepError, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The manifest's file name in a study folder.
pub const MANIFEST: &str = "manifest.json";
/// The results' file name in a study folder.
pub const RESULTS: &str = "results.jsonl";
/// The folder of path files in a study folder.
pub const PATHS: &str = "paths";

/// Every setting that changes a study's results. A rerun into the same folder must have
/// equal settings, and so must the shards `mep merge` joins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The architecture's name.
    pub arch: String,
    /// SHA-256 of the checkpoint file (its path may differ between machines).
    pub weights_sha256: String,
    /// The dataset's name.
    pub dataset: String,
    /// Its class names.
    pub classes: Vec<String>,
    /// Images in its test split.
    pub test_images: usize,
    /// The input transform: the side images are resized to (`None`: their own),
    pub input_size: Option<usize>,
    /// the channel means subtracted
    pub mean: [f32; 3],
    /// and the standard deviations divided by.
    pub std: [f32; 3],
    /// The spaces studied, in order.
    pub spaces: Vec<String>,
    /// Pairs asked for (`None`: every pair of the pairs file).
    pub pairs: Option<usize>,
    /// SHA-256 of the `--pairs-file`, when pairs come from one.
    pub pairs_file_sha256: Option<String>,
    /// Classes `--class` restricted the draw to (empty: all).
    pub class_filter: Vec<usize>,
    /// Whether pairs with a misclassified endpoint are kept.
    pub allow_misclassified: bool,
    /// The seed of the pair draw and the searches.
    pub seed: u64,
    /// N, pivots of a path (endpoints included).
    pub pivots: usize,
    /// S, dense sub-points per segment.
    pub sub_points: usize,
    /// `adam`, `sgd` or `fire`.
    pub optimizer: String,
    /// The learning rate relative to the endpoint distance.
    pub step: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Spring constant; `None` is k = ∞ (redistribution).
    pub spring: Option<f64>,
    /// When the climbing image switches on, as a fraction of `max_steps`.
    pub climbing_after: Option<f64>,
    /// The force at which a search counts as converged.
    pub fmax: Option<f64>,
    /// Steps between checks of the dense path.
    pub check_every: usize,
    /// AutoNEB insertion threshold.
    pub insert_threshold: Option<f64>,
    /// The most pivots insertion may grow a path to.
    pub max_pivots: Option<usize>,
    /// The step budget per pair and space.
    pub max_steps: usize,
}

impl Settings {
    /// `name: recorded → now` for every setting that differs.
    pub fn differences(&self, now: &Settings) -> Vec<String> {
        differences(self, now)
    }
}

/// `name: recorded → now` for every field of two records of settings that differs (as
/// their JSON shows them): what `mep connect`, `mep merge` and `mep train --resume` list
/// when they refuse a folder written with other settings.
pub fn differences<T: Serialize>(recorded: &T, now: &T) -> Vec<String> {
    let (a, b) = (serde_json::to_value(recorded), serde_json::to_value(now));
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) = (a, b) else {
        return vec!["(settings not comparable)".into()];
    };
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: {v} → {}", b.get(k).unwrap_or(&serde_json::Value::Null)))
        .collect()
}

/// `manifest.json`: the settings, the pair list and what is only informative.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// `mep <version>`.
    pub tool: String,
    pub settings: Settings,
    /// The checkpoint's path as given (informative; the SHA-256 identifies it).
    pub weights: PathBuf,
    /// `--data` as given (informative).
    pub data: String,
    /// Which slice of the pairs this folder studies; `None` for all of them.
    pub shard: Option<Shard>,
    /// Most points per network call (changes speed, not results).
    pub batch: usize,
    /// Every pair of the study, whatever the shard.
    pub pair_list: Vec<Pair>,
    /// Candidate pairs skipped because an endpoint was misclassified.
    pub skipped: usize,
    /// The shard folders `mep merge` joined into this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<PathBuf>,
}

impl Manifest {
    /// Reads `dir/manifest.json`, if there is one.
    pub fn read(dir: &Path) -> Result<Option<Manifest>> {
        let path = dir.join(MANIFEST);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(MepError::Io { path, source }),
        };
        Self::parse(text.as_bytes(), &path).map(Some)
    }

    /// Parses the bytes of a `manifest.json`; `path` names it in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Manifest> {
        serde_json::from_slice(bytes).map_err(|e| MepError::Results {
            path: path.to_path_buf(),
            msg: format!("not a manifest of `mep connect`: {e}"),
        })
    }

    /// Writes `dir/manifest.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| MepError::Results {
            path: dir.join(MANIFEST),
            msg: e.to_string(),
        })?;
        write_atomic(&dir.join(MANIFEST), (text + "\n").as_bytes())
    }
}

/// Writes `bytes` to `path` through `path.tmp`, synced, then renamed over `path`: a reader
/// sees the old file or the new one, never a half-written one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| MepError::Io { path: p, source }
    };
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    write().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// `results.jsonl` of a study folder, open for appending.
pub struct ResultsFile {
    path: PathBuf,
    file: std::fs::File,
}

impl ResultsFile {
    /// Reads the results already in `dir/results.jsonl` and opens it for appending. A
    /// last line cut short by a crash (no newline, or not valid JSON) is dropped from the
    /// file so that its result is computed again; a bad line before the last is an error.
    pub fn open(dir: &Path) -> Result<(ResultsFile, Vec<PairResult>)> {
        Self::open_path(&dir.join(RESULTS))
    }

    /// As [`ResultsFile::open`], for any JSON-lines file of records `T` (the certificates
    /// of `mep certify` share the format and its crash rules).
    pub fn open_path<T: serde::de::DeserializeOwned>(path: &Path) -> Result<(ResultsFile, Vec<T>)> {
        let path = path.to_path_buf();
        let (results, good_len) = read_jsonl::<T>(&path, true)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| MepError::Io {
                path: path.clone(),
                source,
            })?;
        if let Some(len) = good_len {
            file.set_len(len)
                .and_then(|_| file.sync_all())
                .map_err(|source| MepError::Io {
                    path: path.clone(),
                    source,
                })?;
        }
        Ok((ResultsFile { path, file }, results))
    }

    /// Replaces the records of the JSON-lines file `path` with `records` (atomically, as
    /// [`write_atomic`]) and opens it for appending: for dropping results whose path file
    /// is gone, so that a resumed study computes them again.
    pub fn rewrite<T: Serialize>(path: &Path, records: &[T]) -> Result<ResultsFile> {
        let mut text = String::new();
        for r in records {
            text.push_str(&serde_json::to_string(r).map_err(|e| MepError::Results {
                path: path.to_path_buf(),
                msg: e.to_string(),
            })?);
            text.push('\n');
        }
        write_atomic(path, text.as_bytes())?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|source| MepError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(ResultsFile {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one result (or record) as a line and syncs it to disk.
    pub fn append<T: Serialize>(&mut self, r: &T) -> Result<()> {
        let mut line = serde_json::to_string(r).map_err(|e| MepError::Results {
            path: self.path.clone(),
            msg: e.to_string(),
        })?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.sync_data())
            .map_err(|source| MepError::Io {
                path: self.path.clone(),
                source,
            })
    }
}

/// The results in a results file (none if it does not exist). With `torn_ok`, a bad last
/// line is left out and the length of the good prefix returned, so the caller can cut
/// the file there; without it, a bad last line is an error like any other.
pub fn read_results(path: &Path, torn_ok: bool) -> Result<(Vec<PairResult>, Option<u64>)> {
    read_jsonl(path, torn_ok)
}

/// [`read_results`] for records of any type `T`, one JSON object per line.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path, torn_ok: bool) -> Result<(Vec<T>, Option<u64>)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), None)),
        Err(source) => {
            return Err(MepError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    parse_jsonl(&bytes, path, torn_ok)
}

/// [`read_jsonl`] on the file's bytes; `path` names it in errors.
pub fn parse_jsonl<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    path: &Path,
    torn_ok: bool,
) -> Result<(Vec<T>, Option<u64>)> {
    let mut results = Vec::new();
    let mut start = 0usize;
    let mut line_no = 0usize;
    while start < bytes.len() {
        line_no += 1;
        let end = bytes[start..].iter().position(|&c| c == b'\n').map(|p| start + p);
        let body = &bytes[start..end.unwrap_or(bytes.len())];
        let parsed = serde_json::from_slice::<T>(body);
        let is_last = end.is_none_or(|e| e + 1 == bytes.len());
        match (parsed, end) {
            (Ok(r), Some(e)) => {
                results.push(r);
                start = e + 1;
            }
            (parsed, _) if is_last && torn_ok => {
                // Killed while writing: the result is computed again.
                let _ = parsed;
                return Ok((results, Some(start as u64)));
            }
            (Ok(_), None) => {
                return Err(MepError::Results {
                    path: path.to_path_buf(),
                    msg: format!("line {line_no} is cut short (no newline)"),
                })
            }
            (Err(e), _) => {
                return Err(MepError::Results {
                    path: path.to_path_buf(),
                    msg: format!("line {line_no} is not a valid record: {e}"),
                })
            }
        }
    }
    Ok((results, None))
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
