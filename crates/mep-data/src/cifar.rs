//! CIFAR-10 from the official binary distribution, `cifar-10-binary.tar.gz`.
//!
//! The archive holds `cifar-10-batches-bin/data_batch_{1..5}.bin`, `test_batch.bin` and
//! `batches.meta.txt`. Each batch is 10000 records of one label byte and 3072 pixel bytes
//! (the 1024 red values, then green, then blue, each row-major 32×32). The train split is
//! the five data batches in order, so sample `i` is torchvision's `CIFAR10(train=True)[i]`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use crate::{DataError, Dataset, Result, Samples, Split};

/// The MD5 of the official `cifar-10-binary.tar.gz`.
pub const CIFAR10_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";
/// Where the archive is published.
pub const CIFAR10_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
/// Records in each batch of the official release.
pub const CIFAR10_RECORDS_PER_BATCH: usize = 10_000;
/// The folder inside the archive.
pub const CIFAR10_DIR: &str = "cifar-10-batches-bin";
/// The train batches, in the order that numbers the train split.
pub const CIFAR10_TRAIN_BATCHES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// The test batch.
pub const CIFAR10_TEST_BATCH: &str = "test_batch.bin";
/// The class names, one per line.
pub const CIFAR10_META: &str = "batches.meta.txt";

const SIDE: usize = 32;
const PLANE: usize = SIDE * SIDE;
const RECORD: usize = 1 + 3 * PLANE;
const NUM_CLASSES: usize = 10;
/// The largest archive member read: ten official batches' worth (a batch is 30 730 000 bytes).
const MAX_MEMBER_BYTES: u64 = 10 * (CIFAR10_RECORDS_PER_BATCH * RECORD) as u64;

/// Loads CIFAR-10 from the official `cifar-10-binary.tar.gz`, checking its MD5 first when
/// `verify_md5` is set (a mismatch is a [`DataError::Format`] naming both digests).
/// Every batch must hold exactly 10000 records.
pub fn load_cifar10_archive(path: impl AsRef<Path>, verify_md5: bool) -> Result<Dataset> {
    load_cifar10_archive_with(path, verify_md5, Some(CIFAR10_RECORDS_PER_BATCH))
}

/// Loads CIFAR-10 from an extracted `cifar-10-batches-bin/` folder (or its parent).
/// Every batch must hold exactly 10000 records.
pub fn load_cifar10_dir(dir: impl AsRef<Path>) -> Result<Dataset> {
    load_cifar10_dir_with(dir, Some(CIFAR10_RECORDS_PER_BATCH))
}

/// [`load_cifar10_archive`] with the record count per batch to insist on: `None` accepts
/// any whole number of records (small archives in tests, subsets made with the same format).
pub fn load_cifar10_archive_with(
    path: impl AsRef<Path>,
    verify_md5: bool,
    records_per_batch: Option<usize>,
) -> Result<Dataset> {
    let path = path.as_ref();
    if verify_md5 {
        let found = file_md5(path)?;
        if found != CIFAR10_MD5 {
            return Err(DataError::Format {
                path: path.to_path_buf(),
                msg: format!(
                    "MD5 is {found}, expected {CIFAR10_MD5}: this is not the official cifar-10-binary.tar.gz; \
                     if it is that download, it is incomplete or corrupt: delete it and fetch it again from \
                     {CIFAR10_URL}"
                ),
            });
        }
    }
    let file = File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    load_cifar10_archive_from(BufReader::new(file), path, records_per_batch)
}

/// Loads CIFAR-10 from the bytes of a `cifar-10-binary.tar.gz` read from `reader` (no MD5
/// check); `path` names the archive in errors and is the parent of its members' paths.
/// As [`load_cifar10_archive_with`] otherwise: every error is a [`DataError`], never a panic.
pub fn load_cifar10_archive_from(reader: impl Read, path: &Path, records_per_batch: Option<usize>) -> Result<Dataset> {
    let members = read_archive_members(reader, path)?;
    let member_path = |name: &str| path.join(CIFAR10_DIR).join(name);
    let mut members = members;
    let take = |name: &str| {
        members.remove(name).ok_or_else(|| DataError::Format {
            path: path.to_path_buf(),
            msg: format!("archive has no member {CIFAR10_DIR}/{name}; is this cifar-10-binary.tar.gz?"),
        })
    };
    assemble(take, member_path, records_per_batch)
}

/// [`load_cifar10_dir`] with the record count per batch to insist on (see
/// [`load_cifar10_archive_with`]).
pub fn load_cifar10_dir_with(dir: impl AsRef<Path>, records_per_batch: Option<usize>) -> Result<Dataset> {
    let given = dir.as_ref();
    // Accept the folder the archive extracts into as well as the batches folder itself.
    let nested = given.join(CIFAR10_DIR);
    let dir = if nested.is_dir() { nested } else { given.to_path_buf() };
    if !dir.is_dir() {
        return Err(DataError::Layout {
            path: given.to_path_buf(),
            msg: format!("not a folder; expected the extracted {CIFAR10_DIR}/ of cifar-10-binary.tar.gz"),
        });
    }
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read(&p).map_err(|source| DataError::Io { path: p, source })
    };
    assemble(read, |name| dir.join(name), records_per_batch)
}

/// Builds the dataset from the members, however they were read.
fn assemble(
    mut read: impl FnMut(&str) -> Result<Vec<u8>>,
    member_path: impl Fn(&str) -> PathBuf,
    records_per_batch: Option<usize>,
) -> Result<Dataset> {
    let meta = read(CIFAR10_META)?;
    let classes = parse_classes(&meta, &member_path(CIFAR10_META))?;

    let mut train = SplitBuilder::default();
    for name in CIFAR10_TRAIN_BATCHES {
        let bytes = read(name)?;
        train.push_batch(&bytes, &member_path(name), records_per_batch)?;
    }
    let mut test = SplitBuilder::default();
    let bytes = read(CIFAR10_TEST_BATCH)?;
    test.push_batch(&bytes, &member_path(CIFAR10_TEST_BATCH), records_per_batch)?;
    let (train, test) = (train.finish(), test.finish());
    Ok(Dataset {
        name: "cifar10".to_string(),
        classes,
        train: Some(train),
        test,
    })
}

/// A split being filled batch by batch.
#[derive(Default)]
struct SplitBuilder {
    labels: Vec<usize>,
    data: Vec<u8>,
}

impl SplitBuilder {
    fn finish(self) -> Split {
        Split {
            samples: Samples::InMemory {
                height: SIDE,
                width: SIDE,
                data: self.data,
            },
            labels: self.labels,
        }
    }

    /// Appends a batch's records, converting the planar CHW pixels to HWC.
    fn push_batch(&mut self, bytes: &[u8], path: &Path, records_per_batch: Option<usize>) -> Result<()> {
        let bad_size = |why: String| DataError::Format {
            path: path.to_path_buf(),
            msg: format!(
                "{} bytes: {why}; the file is truncated or not a CIFAR-10 binary batch",
                bytes.len()
            ),
        };
        if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
            return Err(bad_size(format!("not a whole number of {RECORD}-byte records")));
        }
        let n = bytes.len() / RECORD;
        if let Some(expected) = records_per_batch {
            if n != expected {
                return Err(bad_size(format!("{n} records, expected {expected}")));
            }
        }
        self.data.reserve(n * 3 * PLANE);
        self.labels.reserve(n);
        for (r, record) in bytes.chunks_exact(RECORD).enumerate() {
            let label = record[0] as usize;
            if label >= NUM_CLASSES {
                return Err(DataError::Format {
                    path: path.to_path_buf(),
                    msg: format!("record {r} has label {label}, but CIFAR-10 has {NUM_CLASSES} classes"),
                });
            }
            self.labels.push(label);
            let (red, rest) = record[1..].split_at(PLANE);
            let (green, blue) = rest.split_at(PLANE);
            for p in 0..PLANE {
                self.data.extend_from_slice(&[red[p], green[p], blue[p]]);
            }
        }
        Ok(())
    }
}

/// The class names: the non-blank lines of `batches.meta.txt`.
fn parse_classes(bytes: &[u8], path: &Path) -> Result<Vec<String>> {
    let text = std::str::from_utf8(bytes).map_err(|_| DataError::Format {
        path: path.to_path_buf(),
        msg: "class list is not UTF-8 text".to_string(),
    })?;
    let classes: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if classes.len() != NUM_CLASSES {
        return Err(DataError::Format {
            path: path.to_path_buf(),
            msg: format!("{} class names, expected {NUM_CLASSES}", classes.len()),
        });
    }
    Ok(classes)
}

/// Reads the archive's CIFAR members into memory, keyed by file name. Other members are
/// skipped without being buffered.
fn read_archive_members(reader: impl Read, path: &Path) -> Result<HashMap<String, Vec<u8>>> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    let wanted: Vec<&str> = CIFAR10_TRAIN_BATCHES
        .iter()
        .copied()
        .chain([CIFAR10_TEST_BATCH, CIFAR10_META])
        .collect();
    let mut members = HashMap::new();
    // gzip and tar failures surface as io errors; say which layer so a truncated download is recognisable.
    let corrupt = |e: std::io::Error| DataError::Format {
        path: path.to_path_buf(),
        msg: format!("cannot read the gzip'd tar archive ({e}); the download may be truncated"),
    };
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let entry_path = entry.path().map_err(corrupt)?.into_owned();
        let mut parts = entry_path
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        let (Some(dir), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if dir != CIFAR10_DIR || !wanted.contains(&name.as_str()) {
            continue;
        }
        // The size is the header's claim: a few MB of gzip'd zeros can back a claim of
        // gigabytes, so refuse it before reading rather than fill memory.
        let size = entry.size();
        if size > MAX_MEMBER_BYTES {
            return Err(DataError::Format {
                path: path.to_path_buf(),
                msg: format!(
                    "member {CIFAR10_DIR}/{name} is {size} bytes, more than any CIFAR-10 file \
                     ({MAX_MEMBER_BYTES} at most); is this cifar-10-binary.tar.gz?"
                ),
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        entry.read_to_end(&mut bytes).map_err(corrupt)?;
        members.insert(name, bytes);
    }
    Ok(members)
}

/// The lower-case hex MD5 of a file, read in chunks so a large archive is not held twice.
pub fn file_md5(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
