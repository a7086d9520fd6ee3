//! The file mechanics of a study folder: atomic rewrites, and JSON-lines files (one record
//! per line, appended and synced) read back after a crash. `results.jsonl` and
//! `certificates.jsonl` are both such files; what their records are lives beside them.

use crate::{MepError, Result};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `name` with every character but ASCII letters, digits and `-` replaced by `_`: a class
/// name as part of a file or folder name (graph files, attack folders).
pub fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .collect()
}

/// Writes `bytes` to `path` atomically ([`mep_fs::write_atomic`]): a reader sees the old file
/// or the new one, never a half-written one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    mep_fs::write_atomic(path, bytes).map_err(|e| MepError::Io {
        path: e.path,
        source: e.source,
    })
}

/// The records of type `T`, one JSON object per line, in the file `path` (none if it does
/// not exist). With `torn_ok`, a bad last line is left out and the length of the good
/// prefix returned, so the caller can cut the file there; without it, a bad last line is
/// an error like any other.
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

/// A JSON-lines file of a study folder (`results.jsonl`, `certificates.jsonl`), open for
/// appending.
pub struct JsonlFile {
    path: PathBuf,
    file: std::fs::File,
}

impl JsonlFile {
    /// Reads the records already in the JSON-lines file `path` and opens it for appending.
    /// A last line cut short by a crash (no newline, or not valid JSON) is dropped from the
    /// file so that its record is computed again; a bad line before the last is an error.
    pub fn open<T: serde::de::DeserializeOwned>(path: &Path) -> Result<(JsonlFile, Vec<T>)> {
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
        Ok((JsonlFile { path, file }, results))
    }

    /// Replaces the records of the JSON-lines file `path` with `records` (atomically, as
    /// [`write_atomic`]) and opens it for appending: for dropping results whose path file
    /// is gone (and their certificates), so that a resumed study computes them again.
    pub fn rewrite<T: Serialize>(path: &Path, records: &[T]) -> Result<JsonlFile> {
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
        Ok(JsonlFile {
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
