//! Checksums as the manifest writes them (`"sha256:<hex>"`, `"md5:<hex>"`) and file hashing.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::FetchError;

/// A hash algorithm a [`Checksum`] can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// SHA-256: what we pin and what trust-on-first-use records.
    Sha256,
    /// MD5: only because some datasets publish nothing better (CIFAR-10).
    Md5,
}

impl Algorithm {
    /// The prefix used in the manifest (`sha256`, `md5`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Md5 => "md5",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Md5 => 32,
        }
    }
}

/// An expected digest: algorithm plus lower-case hex. Only constructed by parsing or hashing,
/// so the hex always has the right length.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Checksum {
    algorithm: Algorithm,
    hex: String,
}

impl Checksum {
    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The digest as lower-case hex.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Hashes the file at `path` with `algorithm`, streaming (the files are hundreds of MB).
    pub fn of_file(path: &Path, algorithm: Algorithm) -> Result<Checksum, FetchError> {
        let io_err = |source| FetchError::Io {
            path: path.to_path_buf(),
            source,
            hint: String::new(),
        };
        let mut file = File::open(path).map_err(io_err)?;
        let hex = match algorithm {
            Algorithm::Sha256 => digest_reader::<Sha256>(&mut file),
            Algorithm::Md5 => digest_reader::<Md5>(&mut file),
        }
        .map_err(io_err)?;
        Ok(Checksum { algorithm, hex })
    }
}

fn digest_reader<D: Digest>(reader: &mut impl Read) -> std::io::Result<String> {
    let mut hasher = D::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(to_hex(&hasher.finalize()))
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

impl FromStr for Checksum {
    type Err = FetchError;

    fn from_str(spec: &str) -> Result<Self, FetchError> {
        let bad = || FetchError::BadChecksum { spec: spec.to_string() };
        let (prefix, hex) = spec.split_once(':').ok_or_else(bad)?;
        let algorithm = match prefix.trim().to_ascii_lowercase().as_str() {
            "sha256" => Algorithm::Sha256,
            "md5" => Algorithm::Md5,
            _ => return Err(bad()),
        };
        let hex = hex.trim().to_ascii_lowercase();
        if hex.len() != algorithm.hex_len() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        Ok(Checksum { algorithm, hex })
    }
}

impl TryFrom<String> for Checksum {
    type Error = FetchError;

    fn try_from(s: String) -> Result<Self, FetchError> {
        s.parse()
    }
}

impl From<Checksum> for String {
    fn from(c: Checksum) -> String {
        c.to_string()
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

/// Checks that the file at `path` has the digest `expected`; works on any file, e.g. one the user
/// downloaded by hand. A mismatch is [`FetchError::ChecksumMismatch`] carrying both digests.
pub fn verify(path: &Path, expected: &Checksum) -> Result<(), FetchError> {
    let found = Checksum::of_file(path, expected.algorithm)?;
    if &found == expected {
        Ok(())
    } else {
        Err(FetchError::ChecksumMismatch {
            file: path.to_path_buf(),
            expected: expected.clone(),
            found,
            hint: String::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        let c: Checksum = "MD5:C32A1D4AB5D03F1284B67883E8D87530".parse().unwrap();
        assert_eq!(c.algorithm(), Algorithm::Md5);
        assert_eq!(c.to_string(), "md5:c32a1d4ab5d03f1284b67883e8d87530");
        for bad in [
            "",
            "md5",
            "md5:abc",
            "crc32:00000000",
            "sha256:zz",
            &format!("sha256:{}", "0".repeat(63)),
        ] {
            assert!(
                matches!(bad.parse::<Checksum>(), Err(FetchError::BadChecksum { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn hex_of_known_digests() {
        assert_eq!(to_hex(&Md5::digest(b"hello")), "5d41402abc4b2a76b9719d911017c592");
        assert_eq!(
            to_hex(&Sha256::digest(b"hello")),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }
}
