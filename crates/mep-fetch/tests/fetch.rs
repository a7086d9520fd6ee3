//! `fetch` against a tiny HTTP/1.1 server on 127.0.0.1 that serves byte ranges and misbehaves on
//! request.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;

use mep_fetch::{fetch, verify, Algorithm, Checksum, Entry, FetchError, FetchOptions};

#[derive(Clone, Copy)]
enum Mode {
    /// Honour `Range`.
    Normal,
    /// On the first request, announce the full length, send this many bytes and close.
    CutFirstAfter(usize),
    /// Always answer 200 with the whole body.
    IgnoreRange,
    /// Answer this status with an empty body.
    Status(u16),
}

struct Server {
    url: String,
    /// The `Range` header of every request, in order (`None` when absent).
    requests: Arc<Mutex<Vec<Option<String>>>>,
}

impl Server {
    fn start(body: Vec<u8>, mode: Mode) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/file.bin", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        // The thread outlives the test: it blocks in accept and dies with the process.
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let n = {
                    let mut seen = seen.lock().unwrap();
                    let range = read_request(&stream);
                    seen.push(range.clone());
                    (seen.len(), range)
                };
                respond(stream, &body, mode, n.0, n.1);
            }
        });
        Server { url, requests }
    }

    fn ranges(&self) -> Vec<Option<String>> {
        self.requests.lock().unwrap().clone()
    }
}

/// Reads the request head; returns the value of its `Range` header.
fn read_request(stream: &TcpStream) -> Option<String> {
    let mut reader = BufReader::new(stream);
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            return range;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            }
        }
    }
}

fn respond(mut stream: TcpStream, body: &[u8], mode: Mode, nth: usize, range: Option<String>) {
    let len = body.len();
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse::<usize>().ok());
    let _ = match (mode, start) {
        (Mode::Status(code), _) => write!(stream, "HTTP/1.1 {code} Nope\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        (Mode::CutFirstAfter(cut), _) if nth == 1 => {
            let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
            stream.write_all(&body[..cut])
        }
        (Mode::Normal | Mode::CutFirstAfter(_), Some(s)) if s >= len => write!(
            stream,
            "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
        (Mode::Normal | Mode::CutFirstAfter(_), Some(s)) => {
            let _ = write!(
                stream,
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{}/{len}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                len - 1,
                len - s
            );
            stream.write_all(&body[s..])
        }
        _ => {
            let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
            stream.write_all(body)
        }
    };
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Both);
}

fn body() -> Vec<u8> {
    (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn sha256_of(bytes: &[u8], dir: &Path) -> Checksum {
    let p = dir.join("reference");
    std::fs::write(&p, bytes).unwrap();
    let c = Checksum::of_file(&p, Algorithm::Sha256).unwrap();
    std::fs::remove_file(p).unwrap();
    c
}

fn entry(url: &str, size: Option<u64>, checksum: Option<Checksum>) -> Entry {
    Entry {
        name: "test-file".into(),
        url: url.into(),
        file: "test.bin".into(),
        size,
        checksum,
    }
}

const QUIET: FetchOptions = FetchOptions { quiet: true };

#[test]
fn good_file_then_cache_hit() {
    let data = body();
    let server = Server::start(data.clone(), Mode::Normal);
    let cache = tempfile::tempdir().unwrap();
    let md5: Checksum = {
        let p = cache.path().join("ref");
        std::fs::write(&p, &data).unwrap();
        let c = Checksum::of_file(&p, Algorithm::Md5).unwrap();
        std::fs::remove_file(p).unwrap();
        c
    };
    let e = entry(&server.url, Some(data.len() as u64), Some(md5));
    let path = fetch(&e, cache.path(), &QUIET).unwrap();
    assert_eq!(path, cache.path().join("test.bin"));
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert!(!cache.path().join("test.bin.part").exists());
    assert!(
        !cache.path().join("test.bin.sha256").exists(),
        "pinned entries need no record"
    );
    assert_eq!(server.ranges(), vec![None]);

    assert_eq!(fetch(&e, cache.path(), &QUIET).unwrap(), path);
    assert_eq!(
        server.requests.lock().unwrap().len(),
        1,
        "the second fetch must not touch the server"
    );
}

#[test]
fn wrong_checksum_leaves_nothing() {
    let data = body();
    let server = Server::start(data.clone(), Mode::Normal);
    let cache = tempfile::tempdir().unwrap();
    let wrong = sha256_of(b"something else", cache.path());
    let e = entry(&server.url, None, Some(wrong.clone()));
    let err = fetch(&e, cache.path(), &QUIET).unwrap_err();
    match &err {
        FetchError::ChecksumMismatch { expected, found, .. } => {
            assert_eq!(expected, &wrong);
            assert_eq!(found, &sha256_of(&data, cache.path()));
        }
        other => panic!("expected a checksum mismatch, got {other}"),
    }
    assert!(err.to_string().contains("yourself and put it at"), "{err}");
    assert!(!cache.path().join("test.bin").exists());
    assert!(!cache.path().join("test.bin.part").exists());
}

#[test]
fn wrong_size_announced_fails_before_the_body() {
    let data = body();
    let server = Server::start(data.clone(), Mode::Normal);
    let cache = tempfile::tempdir().unwrap();
    let e = entry(&server.url, Some(data.len() as u64 + 1), None);
    let err = fetch(&e, cache.path(), &QUIET).unwrap_err();
    assert!(matches!(err, FetchError::SizeMismatch { found: 100_000, .. }), "{err}");
    assert!(!cache.path().join("test.bin").exists());
}

#[test]
fn cut_connection_then_resume() {
    let data = body();
    let cut = 40_000;
    let server = Server::start(data.clone(), Mode::CutFirstAfter(cut));
    let cache = tempfile::tempdir().unwrap();
    let e = entry(
        &server.url,
        Some(data.len() as u64),
        Some(sha256_of(&data, cache.path())),
    );

    let err = fetch(&e, cache.path(), &QUIET).unwrap_err();
    assert!(
        matches!(err, FetchError::Interrupted { received, .. } if received == cut as u64),
        "{err}"
    );
    assert!(err.to_string().contains("yourself and put it at"), "{err}");
    assert!(!cache.path().join("test.bin").exists());
    assert_eq!(std::fs::read(cache.path().join("test.bin.part")).unwrap(), &data[..cut]);

    let path = fetch(&e, cache.path(), &QUIET).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), data);
    assert_eq!(server.ranges(), vec![None, Some(format!("bytes={cut}-"))]);
    assert!(!cache.path().join("test.bin.part").exists());
}

#[test]
fn server_ignoring_range_restarts_from_zero() {
    let data = body();
    let server = Server::start(data.clone(), Mode::IgnoreRange);
    let cache = tempfile::tempdir().unwrap();
    // A stale part whose bytes are wrong: appending to it would corrupt the file.
    std::fs::write(cache.path().join("test.bin.part"), vec![0xAAu8; 1234]).unwrap();
    let e = entry(
        &server.url,
        Some(data.len() as u64),
        Some(sha256_of(&data, cache.path())),
    );
    let path = fetch(&e, cache.path(), &QUIET).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), data);
    assert_eq!(server.ranges(), vec![Some("bytes=1234-".to_string())]);
}

#[test]
fn complete_part_answered_416_is_verified() {
    let data = body();
    let server = Server::start(data.clone(), Mode::Normal);
    let cache = tempfile::tempdir().unwrap();
    std::fs::write(cache.path().join("test.bin.part"), &data).unwrap();
    // No size in the entry, so only the server can tell us the part is complete.
    let e = entry(&server.url, None, Some(sha256_of(&data, cache.path())));
    let path = fetch(&e, cache.path(), &QUIET).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), data);
    assert_eq!(server.ranges(), vec![Some(format!("bytes={}-", data.len()))]);
}

#[test]
fn not_found_names_status_and_url() {
    let server = Server::start(Vec::new(), Mode::Status(404));
    let cache = tempfile::tempdir().unwrap();
    let e = entry(&server.url, None, Some(sha256_of(b"x", cache.path())));
    let err = fetch(&e, cache.path(), &QUIET).unwrap_err();
    assert!(matches!(err, FetchError::Status { status: 404, .. }), "{err}");
    let msg = err.to_string();
    let dest = cache.path().join("test.bin");
    assert!(msg.contains("404") && msg.contains(&server.url), "{msg}");
    assert!(
        msg.ends_with(&format!(
            "download {} yourself and put it at {} (checksum {})",
            server.url,
            dest.display(),
            e.checksum.as_ref().unwrap()
        )),
        "{msg}"
    );
    assert!(!dest.exists());
}

#[test]
fn connection_refused() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cache = tempfile::tempdir().unwrap();
    let e = entry(&format!("http://127.0.0.1:{port}/file.bin"), None, None);
    let err = fetch(&e, cache.path(), &QUIET).unwrap_err();
    assert!(matches!(err, FetchError::Network { .. }), "{err}");
    assert!(err.to_string().contains("yourself and put it at"), "{err}");
    assert!(!cache.path().join("test.bin").exists());
}

#[test]
fn unpinned_entry_is_trusted_on_first_use() {
    let data = body();
    let server = Server::start(data.clone(), Mode::Normal);
    let cache = tempfile::tempdir().unwrap();
    let e = entry(&server.url, None, None);
    let path = fetch(&e, cache.path(), &QUIET).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), data);

    let sha = sha256_of(&data, cache.path());
    let record = std::fs::read_to_string(cache.path().join("test.bin.sha256")).unwrap();
    assert_eq!(record, format!("{}  test.bin\n", sha.hex()));
    verify(&path, &sha).unwrap();

    // Verified against the record, offline.
    fetch(&e, cache.path(), &QUIET).unwrap();
    assert_eq!(server.requests.lock().unwrap().len(), 1);

    let mut tampered = data.clone();
    tampered[500] ^= 1;
    std::fs::write(&path, &tampered).unwrap();
    let err = fetch(&e, cache.path(), &QUIET).unwrap_err();
    match &err {
        FetchError::ChecksumMismatch { expected, file, .. } => {
            assert_eq!(expected, &sha);
            assert_eq!(file, &path);
        }
        other => panic!("expected a checksum mismatch, got {other}"),
    }
    assert_eq!(
        server.requests.lock().unwrap().len(),
        1,
        "a TOFU mismatch must not re-download"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        tampered,
        "the user's file is left for them to judge"
    );
}

#[test]
fn hand_placed_file_is_used() {
    let data = body();
    let cache = tempfile::tempdir().unwrap();
    std::fs::write(cache.path().join("test.bin"), &data).unwrap();
    // Port 9 (discard) on loopback: nothing listens, and nothing should be asked anyway.
    let e = entry(
        "http://127.0.0.1:9/never",
        Some(data.len() as u64),
        Some(sha256_of(&data, cache.path())),
    );
    assert_eq!(fetch(&e, cache.path(), &QUIET).unwrap(), cache.path().join("test.bin"));
}

#[test]
fn pinned_corrupt_file_is_downloaded_again() {
    let data = body();
    let server = Server::start(data.clone(), Mode::Normal);
    let cache = tempfile::tempdir().unwrap();
    std::fs::write(cache.path().join("test.bin"), b"corrupt").unwrap();
    let e = entry(
        &server.url,
        Some(data.len() as u64),
        Some(sha256_of(&data, cache.path())),
    );
    let path = fetch(&e, cache.path(), &QUIET).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), data);
    assert_eq!(server.ranges(), vec![None]);
}

#[test]
fn entry_with_a_path_for_file_is_refused() {
    let cache = tempfile::tempdir().unwrap();
    let mut e = entry("http://127.0.0.1:9/x", None, None);
    e.file = "../escape".into();
    assert!(matches!(
        fetch(&e, cache.path(), &QUIET),
        Err(FetchError::Manifest { .. })
    ));
}
