//! The cache directory and the resumable, verified download.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::{Algorithm, Checksum, Entry, FetchError};

/// Options for [`fetch`].
#[derive(Clone, Debug, Default)]
pub struct FetchOptions {
    /// No progress bar and no chatter on stderr (the trust-on-first-use note is still printed,
    /// because it asks the user to act).
    pub quiet: bool,
}

/// Where downloads go: `$MEP_CACHE` if set, else `$XDG_CACHE_HOME/mep`, else `$HOME/.cache/mep`
/// (and, with none of those set, `mep-cache` in the temporary directory).
pub fn cache_dir() -> PathBuf {
    let var = |name| std::env::var_os(name).filter(|v: &OsString| !v.is_empty());
    if let Some(dir) = var("MEP_CACHE") {
        return PathBuf::from(dir);
    }
    // The XDG spec says a relative value is invalid and must be ignored.
    if let Some(dir) = var("XDG_CACHE_HOME").map(PathBuf::from).filter(|p| p.is_absolute()) {
        return dir.join("mep");
    }
    if let Some(home) = var("HOME") {
        return PathBuf::from(home).join(".cache").join("mep");
    }
    std::env::temp_dir().join("mep-cache")
}

/// Makes sure `entry` is in `cache_dir` and intact, downloading it if needed; returns its path.
///
/// * A file already under the final name that verifies is returned without touching the network.
/// * Otherwise the file is downloaded into `<file>.part`, resuming a partial one with a `Range`
///   request, verified (size, then checksum) and only then renamed to its final name, so the final
///   name never holds a corrupt file. A `.part` that fails verification is deleted.
/// * An entry without a checksum is trusted on first use: its sha256 is recorded in
///   `<file>.sha256` (the `sha256sum` format) and printed, and later fetches verify against the
///   record. A mismatch with the record is an error, not a re-download: the record is the only
///   anchor, so a changed file needs a human to decide (delete both to trust afresh).
/// * A pinned entry whose final file fails verification is downloaded again over it.
pub fn fetch(entry: &Entry, cache_dir: &Path, opts: &FetchOptions) -> Result<PathBuf, FetchError> {
    entry.validate().map_err(|reason| FetchError::Manifest {
        origin: format!("entry {:?}", entry.name),
        reason,
    })?;
    let dest = cache_dir.join(&entry.file);
    let part = cache_dir.join(format!("{}.part", entry.file));
    let record = cache_dir.join(format!("{}.sha256", entry.file));

    let recorded = if entry.checksum.is_none() {
        read_record(&record)?
    } else {
        None
    };
    let expected = entry.checksum.clone().or_else(|| recorded.clone());
    let hint = manual_hint(entry, &dest, expected.as_ref());

    if dest.is_file() {
        match check(&dest, entry.size, expected.as_ref(), &hint) {
            Ok(found) => {
                if expected.is_none() {
                    // Placed by hand before any download: trust it as we would a download.
                    write_record(&record, &entry.file, &found)?;
                    tofu_note(entry, &found, &record);
                }
                return Ok(dest);
            }
            Err(e @ FetchError::ChecksumMismatch { .. }) if entry.checksum.is_none() => {
                return Err(with_hint(
                    e,
                    format!(
                        "; it no longer matches the digest recorded on first use in {}: if the change is expected, \
                         delete both files to trust a fresh download",
                        record.display()
                    ),
                ));
            }
            Err(e @ FetchError::Io { .. }) => return Err(e),
            Err(e) => {
                if !opts.quiet {
                    eprintln!("{e}\ndownloading it again");
                }
            }
        }
    }

    fs::create_dir_all(cache_dir).map_err(|source| io_err(cache_dir, source, &hint))?;
    download(entry, &part, opts, &hint)?;
    let found = match check(&part, entry.size, expected.as_ref(), &hint) {
        Ok(found) => found,
        Err(e) => {
            // A complete but wrong file cannot be fixed by resuming, so do not keep it.
            let _ = fs::remove_file(&part);
            return Err(e);
        }
    };
    if expected.is_none() {
        write_record(&record, &entry.file, &found)?;
        tofu_note(entry, &found, &record);
    }
    fs::rename(&part, &dest).map_err(|source| io_err(&dest, source, &hint))?;
    Ok(dest)
}

/// Checks size then digest of `path`; with no expected digest, computes the sha256 to record.
fn check(path: &Path, size: Option<u64>, expected: Option<&Checksum>, hint: &str) -> Result<Checksum, FetchError> {
    if let Some(size) = size {
        let found = fs::metadata(path).map_err(|source| io_err(path, source, hint))?.len();
        if found != size {
            return Err(FetchError::SizeMismatch {
                file: path.to_path_buf(),
                expected: size,
                found,
                hint: hint.into(),
            });
        }
    }
    match expected {
        None => Checksum::of_file(path, Algorithm::Sha256).map_err(|e| with_hint(e, hint.into())),
        Some(c) => crate::verify(path, c)
            .map(|()| c.clone())
            .map_err(|e| with_hint(e, hint.into())),
    }
}

/// Brings `part` to the complete body of `entry.url` (unverified), resuming what is there.
fn download(entry: &Entry, part: &Path, opts: &FetchOptions, hint: &str) -> Result<(), FetchError> {
    let url = entry.url.as_str();
    let agent = agent_for(url);
    let mut offset = match fs::metadata(part) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(source) => return Err(io_err(part, source, hint)),
    };
    if let Some(size) = entry.size {
        if offset == size && offset > 0 {
            // Complete already (a previous run died between download and rename): just verify.
            return Ok(());
        }
        if offset > size {
            offset = 0;
        }
    }

    // Two rounds at most: the second only after a 206 that did not start where we asked.
    for _ in 0..2 {
        let mut request = agent.get(url);
        if offset > 0 {
            request = request.header("Range", format!("bytes={offset}-"));
        }
        let response = request.call().map_err(|e| network_error(url, e, hint))?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let length = header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
        let (append, total) = match status {
            200 => (false, length),
            206 if offset > 0 => match header("content-range").as_deref().and_then(parse_content_range) {
                Some((start, total)) if start == offset => (true, total.or(length.map(|l| offset + l))),
                _ => {
                    // Cannot splice a range that starts elsewhere: start over from zero.
                    offset = 0;
                    continue;
                }
            },
            // Nothing past the end: the part already holds the whole file.
            416 if offset > 0 => return Ok(()),
            _ => {
                return Err(FetchError::Status {
                    url: url.into(),
                    status,
                    hint: hint.into(),
                })
            }
        };
        if let (Some(expected), Some(found)) = (entry.size, total) {
            if expected != found {
                // Fail before fetching a body we already know is wrong (an error page, a new file).
                return Err(FetchError::SizeMismatch {
                    file: part.to_path_buf(),
                    expected,
                    found,
                    hint: hint.into(),
                });
            }
        }
        if !append {
            offset = 0;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(part)
            .map_err(|source| io_err(part, source, hint))?;
        if !opts.quiet {
            if append {
                eprintln!("resuming {} from byte {offset}", entry.name);
            } else {
                eprintln!("downloading {} from {url}", entry.name);
            }
        }
        let bar = progress_bar(total, offset, &entry.name, opts.quiet);
        let mut body = response.into_body().into_reader();
        let result = copy(&mut body, &mut file, part, &bar, offset, url, hint);
        match &result {
            Ok(()) => bar.finish(),
            Err(_) => bar.abandon(),
        }
        return result;
    }
    Err(FetchError::Network {
        url: url.into(),
        reason: "the server answered a range request with a range that does not start where asked".into(),
        hint: hint.into(),
    })
}

/// Streams the body into the part file; read errors are a broken transfer, write errors are local.
fn copy(
    body: &mut impl Read,
    file: &mut File,
    part: &Path,
    bar: &ProgressBar,
    mut received: u64,
    url: &str,
    hint: &str,
) -> Result<(), FetchError> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(FetchError::Interrupted {
                    url: url.into(),
                    part: part.to_path_buf(),
                    received,
                    reason: e.to_string(),
                    hint: hint.into(),
                });
            }
        };
        file.write_all(&buf[..n]).map_err(|source| io_err(part, source, hint))?;
        received += n as u64;
        bar.inc(n as u64);
    }
    // Sync before the caller renames, so a crash cannot leave a short file under the final name.
    file.sync_all().map_err(|source| io_err(part, source, hint))
}

/// `bytes START-END/TOTAL` → (START, TOTAL if not `*`).
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

fn agent_for(url: &str) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        // We want the status (206, 416, 404 …) to decide, not an error.
        .http_status_as_error(false)
        .user_agent(concat!("mep-fetch/", env!("CARGO_PKG_VERSION")))
        .timeout_connect(Some(Duration::from_secs(30)))
        // A stalled transfer should fail (and be resumable) rather than hang forever.
        .timeout_per_read(Some(Duration::from_secs(120)));
    if is_loopback(url) {
        // A proxy from the environment cannot reach our loopback (the tests' server).
        config = config.proxy(None);
    }
    config.build().into()
}

fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(h) = host.strip_prefix('[') {
        h.split(']').next().unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn network_error(url: &str, e: ureq::Error, hint: &str) -> FetchError {
    let reason = match &e {
        ureq::Error::HostNotFound => "DNS lookup failed (are you offline?)".to_string(),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        // std reports resolver failures as a plain I/O error; recognise them by their message.
        ureq::Error::Io(io) if io.to_string().contains("lookup address") => {
            format!("DNS lookup failed (are you offline?): {io}")
        }
        ureq::Error::ConnectionFailed => "connection failed (are you offline?)".to_string(),
        other => other.to_string(),
    };
    FetchError::Network {
        url: url.into(),
        reason,
        hint: hint.into(),
    }
}

fn progress_bar(total: Option<u64>, position: u64, name: &str, quiet: bool) -> ProgressBar {
    let target = if quiet || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(total, target);
    let template = if total.is_some() {
        "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    } else {
        "{msg} {spinner} {bytes} {bytes_per_sec}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(name.to_string());
    bar.set_position(position);
    bar
}

/// "; download URL yourself and put it at PATH (checksum …)": the way out of every failed download.
fn manual_hint(entry: &Entry, dest: &Path, expected: Option<&Checksum>) -> String {
    let checksum = match expected {
        Some(c) => format!("checksum {c}"),
        None => "checksum not pinned; its sha256 is recorded on first use".to_string(),
    };
    format!(
        "; download {} yourself and put it at {} ({checksum})",
        entry.url,
        dest.display()
    )
}

fn with_hint(e: FetchError, new: String) -> FetchError {
    match e {
        FetchError::ChecksumMismatch {
            file, expected, found, ..
        } => FetchError::ChecksumMismatch {
            file,
            expected,
            found,
            hint: new,
        },
        FetchError::SizeMismatch {
            file, expected, found, ..
        } => FetchError::SizeMismatch {
            file,
            expected,
            found,
            hint: new,
        },
        FetchError::Io { path, source, .. } => FetchError::Io {
            path,
            source,
            hint: new,
        },
        other => other,
    }
}

fn io_err(path: &Path, source: std::io::Error, hint: &str) -> FetchError {
    FetchError::Io {
        path: path.to_path_buf(),
        source,
        hint: hint.into(),
    }
}

/// The record is `<hex>  <file>` (as `sha256sum` writes), so `sha256sum -c` can check it too.
fn read_record(record: &Path) -> Result<Option<Checksum>, FetchError> {
    let text = match fs::read_to_string(record) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io_err(record, source, "")),
    };
    let hex = text.split_whitespace().next().unwrap_or("");
    format!("sha256:{hex}")
        .parse()
        .map(Some)
        .map_err(|_| FetchError::Manifest {
            origin: record.display().to_string(),
            reason: "not a sha256 record (expected `<64 hex digits>  <file>`); delete it to record afresh".into(),
        })
}

fn write_record(record: &Path, file: &str, found: &Checksum) -> Result<(), FetchError> {
    fs::write(record, format!("{}  {file}\n", found.hex())).map_err(|source| io_err(record, source, ""))
}

fn tofu_note(entry: &Entry, found: &Checksum, record: &Path) {
    eprintln!(
        "note: {} has no pinned checksum; trusting it on first use as {found} (recorded in {}). \
         Pin it in weights/manifest.json: \"checksum\": \"{found}\"",
        entry.name,
        record.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(parse_content_range("bytes 10-99/100"), Some((10, Some(100))));
        assert_eq!(parse_content_range("bytes 10-99/*"), Some((10, None)));
        assert_eq!(parse_content_range("bytes */100"), None);
        assert_eq!(parse_content_range("garbage"), None);
    }

    #[test]
    fn loopback() {
        assert!(is_loopback("http://127.0.0.1:8080/x"));
        assert!(is_loopback("http://localhost/x"));
        assert!(is_loopback("http://[::1]:80/x"));
        assert!(!is_loopback("https://huggingface.co/timm"));
        assert!(!is_loopback("http://127.0.0.1.evil.example/"));
    }
}
