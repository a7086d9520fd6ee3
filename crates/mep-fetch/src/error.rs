//! The one error type of the crate.

use std::path::PathBuf;

use crate::Checksum;

/// Everything that can go wrong. Errors from a failed download carry a `hint` that ends the
/// message with how to place the file by hand; elsewhere `hint` is empty.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The server could not be reached: offline, DNS failure, connection refused, timeout, TLS.
    #[error("cannot reach {url}: {reason}{hint}")]
    Network {
        /// The URL asked for.
        url: String,
        /// What the HTTP client said.
        reason: String,
        /// How to place the file by hand.
        hint: String,
    },
    /// The server answered with a status other than 200/206 (or 416 on a resume).
    #[error("{url} answered HTTP {status}{hint}")]
    Status {
        /// The URL asked for.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// How to place the file by hand.
        hint: String,
    },
    /// The connection broke during the body; what arrived is kept in `part` for the next fetch.
    #[error(
        "download of {url} broke off after {received} bytes ({reason}); {part} is kept and the next fetch resumes \
         from it{hint}"
    )]
    Interrupted {
        /// The URL asked for.
        url: String,
        /// The partial file.
        part: PathBuf,
        /// Bytes in `part` now.
        received: u64,
        /// What the HTTP client said.
        reason: String,
        /// How to place the file by hand.
        hint: String,
    },
    /// The file's digest is not the expected one.
    #[error("checksum mismatch for {file}: expected {expected}, found {found}{hint}")]
    ChecksumMismatch {
        /// The file that was hashed.
        file: PathBuf,
        /// The pinned (or recorded) digest.
        expected: Checksum,
        /// The digest of the file.
        found: Checksum,
        /// How to place the file by hand, when it came from a download.
        hint: String,
    },
    /// The file (or the server's announced length) has the wrong size.
    #[error("size mismatch for {file}: expected {expected} bytes, found {found}{hint}")]
    SizeMismatch {
        /// The file checked (the `.part` file for a download).
        file: PathBuf,
        /// The size in the manifest.
        expected: u64,
        /// The size found.
        found: u64,
        /// How to place the file by hand.
        hint: String,
    },
    /// Reading or writing a local file failed.
    #[error("I/O error on {path}: {source}{hint}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
        /// How to place the file by hand, when it came from a download.
        hint: String,
    },
    /// [`crate::Manifest::get`] was asked for a name the manifest lacks.
    #[error("no entry named {name:?} in the manifest; known entries: {known}")]
    UnknownEntry {
        /// The name asked for.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// The manifest is not valid JSON or has an invalid entry.
    #[error("invalid manifest {origin}: {reason}")]
    Manifest {
        /// Where the manifest came from (a path, or "builtin").
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// A checksum string is not `sha256:<64 hex>` or `md5:<32 hex>`.
    #[error("invalid checksum {spec:?}: expected \"sha256:<64 hex digits>\" or \"md5:<32 hex digits>\"")]
    BadChecksum {
        /// The string given.
        spec: String,
    },
}
