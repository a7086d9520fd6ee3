//! One writer per output folder.
//!
//! Every command that writes a folder (`connect --out`, `merge --out` and its shards,
//! `certify`, `report`, `train --out`) or a file (`decoder train --out`, `forward --out`)
//! holds a [`FolderLock`] for the whole run. Two `mep connect` processes on one `--out`
//! would otherwise both append to `results.jsonl` and rename each other's path files.
//!
//! The lock is an advisory `flock` on a file `.mep-lock` in the folder (for a file
//! output: `.NAME.mep-lock` beside it). The kernel drops a `flock` when its process
//! dies, however it dies, so a lock left by a killed run is never stale: the next run
//! takes it over and overwrites the holder's line. The file itself is left in place on
//! exit; deleting it would let a third process lock a new file while a second still
//! holds the old one.
//!
//! Where the file system has no `flock` (some network file systems), the holder's line
//! is the lock: a second writer is refused while the pid it names is alive.
//!
//! ```
//! use mep::lock::FolderLock;
//! let dir = std::env::temp_dir().join(format!("mep-lock-doctest-{}", std::process::id()));
//! let held = FolderLock::acquire(&dir, "mep connect").unwrap();
//! // A second writer is refused at once, with the holder's pid and command.
//! let err = FolderLock::acquire(&dir, "mep report").unwrap_err().to_string();
//! assert!(err.contains(&std::process::id().to_string()) && err.contains("mep connect"));
//! drop(held);
//! FolderLock::acquire(&dir, "mep report").unwrap();
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```

use crate::{MepError, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside a locked folder.
pub const LOCK_FILE: &str = ".mep-lock";

/// An exclusive hold on an output folder (or file) for as long as it lives.
#[derive(Debug)]
pub struct FolderLock {
    file: File,
    path: PathBuf,
    /// Whether `flock` is unavailable here and the pid line is the lock.
    pid_only: bool,
}

impl FolderLock {
    /// Creates `dir` if needed and locks it for `command` (a short description such as
    /// `mep connect`, shown to a second writer). Refused at once, naming the holder's
    /// pid and command, while another process holds it.
    pub fn acquire(dir: &Path, command: &str) -> Result<FolderLock> {
        std::fs::create_dir_all(dir).map_err(|source| MepError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Self::at(dir.join(LOCK_FILE), dir, command)
    }

    /// Locks the output file `file` (whose folder may hold other outputs, as
    /// `decoders/` does) through `.NAME.mep-lock` beside it; creates the folder.
    pub fn acquire_file(file: &Path, command: &str) -> Result<FolderLock> {
        let name = file
            .file_name()
            .ok_or_else(|| MepError::unusable(file.display().to_string(), "not a file name"))?;
        let parent = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(|source| MepError::Io {
            path: parent.clone(),
            source,
        })?;
        let lock = parent.join(format!(".{}.mep-lock", name.to_string_lossy()));
        Self::at(lock, file, command)
    }

    fn at(path: PathBuf, what: &Path, command: &str) -> Result<FolderLock> {
        let io = |source| MepError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let pid_only = match file.try_lock() {
            Ok(()) => false,
            Err(TryLockError::WouldBlock) => {
                return Err(MepError::Locked {
                    what: what.to_path_buf(),
                    holder: holder_line(&mut file),
                    lock: path,
                })
            }
            // No flock on this file system: fall back on the holder's pid.
            Err(TryLockError::Error(_)) => {
                let holder = holder_line(&mut file);
                if holder_pid(&holder).is_some_and(|p| p != std::process::id() && alive(p)) {
                    return Err(MepError::Locked {
                        what: what.to_path_buf(),
                        holder,
                        lock: path,
                    });
                }
                true
            }
        };
        let line = format!(
            "pid {}: {} (command line: {})\n",
            std::process::id(),
            one_line(command),
            one_line(&this_command())
        );
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(line.as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)?;
        Ok(FolderLock { file, path, pid_only })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        // The holder's line goes first, so that no one reads a finished run as the holder;
        // closing the file then drops the flock.
        let _ = self.file.set_len(0);
        if self.pid_only {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What the lock file says of its holder, for the refusal message.
fn holder_line(file: &mut File) -> String {
    let mut s = String::new();
    let _ = file.seek(SeekFrom::Start(0));
    let _ = file.take(4096).read_to_string(&mut s);
    let s = s.trim();
    if s.is_empty() {
        "another process (it has not written its pid yet)".to_string()
    } else {
        s.to_string()
    }
}

fn holder_pid(line: &str) -> Option<u32> {
    line.strip_prefix("pid ")?.split(':').next()?.trim().parse().ok()
}

/// Whether process `pid` exists (Linux: /proc; elsewhere assume it does, which refuses
/// rather than risks two writers).
fn alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// The command line of this process, for the lock file (`mep connect --out runs/x ...`).
pub fn this_command() -> String {
    let mut args = std::env::args();
    let exe = args
        .next()
        .and_then(|a| Path::new(&a).file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "mep".into());
    std::iter::once(exe).chain(args).collect::<Vec<_>>().join(" ")
}
