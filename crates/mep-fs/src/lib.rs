//! Atomic file writes: the one way every crate of mep replaces a file.
//!
//! Checkpoints, study files (manifest, results rewrites, tables, reports), figures and the
//! kernel cache are all written through [`write_atomic`]: the bytes go to a temporary file
//! beside the target, are synced, and the temporary is renamed over the target. A reader
//! (or a crash) therefore sees the old file or the new one, never half of one.
//!
//! The temporary's name holds the process id and a per-process counter
//! (`.NAME.PID.N.tmp`), so two processes, or two threads, writing the same target never
//! share a temporary; whichever rename lands last wins, whole.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("table1.md");
//! mep_fs::write_atomic(&path, b"| space | linear |\n").unwrap();
//! assert_eq!(std::fs::read(&path).unwrap(), b"| space | linear |\n");
//! // Only the target is left behind.
//! assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
//! ```

#![forbid(unsafe_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A failed atomic write: the file that could not be written (the temporary, or the target
/// when the rename failed) and the I/O error. The target is unchanged and no temporary is
/// left behind.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct WriteError {
    /// The file the failing operation was on.
    pub path: PathBuf,
    /// What the operating system said.
    #[source]
    pub source: std::io::Error,
}

/// The temporary beside `path` for this process's `n`-th write.
fn temp_path(path: &Path, n: u64) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// Writes `bytes` to `path` atomically: to a temporary beside it (unique per process and
/// call), synced, then renamed over `path`; then, best effort, syncs the folder so the rename
/// itself survives a crash. An existing file is replaced. The parent folder must exist.
///
/// Errors: [`WriteError`] naming the temporary (creating, writing, syncing) or the target
/// (renaming); the temporary is removed first.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    if path.file_name().is_none() {
        return Err(WriteError {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"),
        });
    }
    let tmp = temp_path(path, COUNTER.fetch_add(1, Ordering::Relaxed));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    if let Err(source) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(WriteError { path: tmp, source });
    }
    if let Err(source) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(WriteError {
            path: path.to_path_buf(),
            source,
        });
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_an_existing_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        std::fs::write(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_folder_names_the_temporary_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("a.json");
        let e = write_atomic(&path, b"x").unwrap_err();
        assert_eq!(e.path.parent(), path.parent());
        assert!(e.path.to_string_lossy().ends_with(".tmp"), "{}", e.path.display());
        assert!(!dir.path().join("missing").exists());
    }

    #[test]
    fn temporaries_differ_per_call_and_name_the_process() {
        let p = Path::new("/x/results.jsonl");
        let (a, b) = (temp_path(p, 0), temp_path(p, 1));
        assert_ne!(a, b);
        let pid = std::process::id().to_string();
        assert!(a.to_string_lossy().contains(&pid));
        assert_eq!(a.parent(), p.parent());
    }

    #[test]
    fn threads_writing_one_target_leave_one_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.bin");
        std::thread::scope(|s| {
            for i in 0..8u8 {
                let path = &path;
                s.spawn(move || write_atomic(path, &[i; 4096]).unwrap());
            }
        });
        let got = std::fs::read(&path).unwrap();
        assert_eq!(got.len(), 4096);
        assert!(got.iter().all(|&b| b == got[0]));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
