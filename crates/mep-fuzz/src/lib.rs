//! Fuzz targets for every reader of untrusted bytes in mep, in one place so that the
//! `cargo fuzz` project (`fuzz/`, nightly, libFuzzer) and the seeded smoke run in
//! `cargo test` (stable, CI) exercise the same code.
//!
//! Each target is a plain `fn(&[u8])` that feeds the bytes to a reader the way the `mep`
//! command does (a file's whole content), then uses what it returned the way a caller
//! would. A target must never panic, abort, hang or allocate in proportion to a number the
//! input merely claims: a reader refuses such input with an error. A panic in a target is
//! a bug in the reader. A few targets also check a property of the result (a torn-line
//! cut lies inside the input) and panic when it fails, so the fuzzer reports it.
//!
//! [`mutate`] is the deterministic mutator of the smoke run, and [`TARGETS`] lists the
//! targets by the names the `fuzz/` project and the seed folders `fuzz/seeds/<name>/` use.
//!
//! ```
//! // Garbage is refused with an error, never a panic.
//! mep_fuzz::checkpoint(b"\xff\xff\xff\xff\xff\xff\xff\x0fnot a header");
//! mep_fuzz::pairs_file("\u{feff}1,2\n".as_bytes());
//! ```

pub mod mutate;

use mep::certify::parse_certificates;
use mep::connect::{count_categories, parse_jsonl, Manifest, PairResult};
use mep_data::{Rng, Transform};
use mep_resnet::{Arch, Checkpoint, ResNet};
use mep_tensor::CpuBackend;
use std::io::Write;
use std::path::Path;

/// A fuzz target: takes any bytes, must return normally.
pub type Target = fn(&[u8]);

/// Every target, by the name of its `fuzz_target` binary and its seed folder.
pub const TARGETS: [(&str, Target); 8] = [
    ("checkpoint", checkpoint),
    ("cifar_tar", cifar_tar),
    ("cifar_archive", cifar_archive),
    ("image", image),
    ("pairs_file", pairs_file),
    ("results", results),
    ("certificates", certificates),
    ("manifest", manifest),
];

/// A safetensors checkpoint: parsed by [`Checkpoint::from_bytes`] (as `Checkpoint::load`
/// parses a file), then, when it parses, loaded as a ResNet-20, a ResNet-18 and a ResNet-50
/// on the CPU (shape checks, the stem width and class count read from the tensors), and its
/// metadata read as the input transform `mep eval` would use.
pub fn checkpoint(data: &[u8]) {
    let Ok(ck) = Checkpoint::from_bytes("fuzz.safetensors", data) else {
        return;
    };
    let _ = mep::data::transform_from_metadata(ck.metadata());
    let backend = CpuBackend::new();
    for arch in [Arch::ResNet20, Arch::ResNet18, Arch::ResNet50] {
        let _ = ResNet::from_checkpoint(&backend, arch, ck.clone());
    }
}

/// A CIFAR-10 archive given as its uncompressed tar: the target gzips it and reads it with
/// [`mep_data::cifar::load_cifar10_archive_from`] (any whole number of records per batch),
/// then decodes the first images of each split. Mutating the tar rather than the gzip
/// stream reaches the member and record parsing.
pub fn cifar_tar(data: &[u8]) {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    if gz.write_all(data).is_err() {
        return;
    }
    let Ok(gz) = gz.finish() else { return };
    cifar_archive(&gz);
}

/// A `cifar-10-binary.tar.gz` as it is on disk (gzip, then tar, then the batches), read
/// with [`mep_data::cifar::load_cifar10_archive_from`].
pub fn cifar_archive(data: &[u8]) {
    let Ok(ds) = mep_data::cifar::load_cifar10_archive_from(data, Path::new("fuzz.tar.gz"), None) else {
        return;
    };
    for split in ds.train.iter().chain([&ds.test]) {
        for i in 0..split.len().min(2) {
            let _ = split.image(i);
            let _ = split.label(i);
        }
        let _ = split.head(3);
    }
}

/// An image file (PNG or JPEG, sniffed from the content): its header size read as
/// `check_uniform_size` reads it, decoded to RGB8 as `Split::image` decodes it, and the
/// decoded image put through the evaluation transform (resize to 8×8, normalise).
pub fn image(data: &[u8]) {
    let path = Path::new("fuzz.png");
    let _ = mep_data::folder::header_size_bytes(data, path);
    let Ok(img) = mep_data::decode_image_bytes(data, path) else {
        return;
    };
    let t = Transform::imagenet(Some(8));
    let mut out = vec![0f32; t.output_len(&img)];
    let _ = t.apply(&img, &mut Rng::new(0), &mut out);
}

/// The labels of the small test split the `pairs_file` target checks pairs against:
/// 40 images of 3 classes, image `k` of class `k % 3`.
pub fn pairs_labels() -> (Vec<usize>, Vec<String>) {
    let labels = (0..40).map(|k| k % 3).collect();
    let classes = ["cat", "dog", "ship"].map(String::from).to_vec();
    (labels, classes)
}

/// A `--pairs-file`, read with [`mep::connect::pairs::parse_pairs_file`] against the split
/// of [`pairs_labels`]. Accepted pairs must be in range, of one class and distinct.
pub fn pairs_file(data: &[u8]) {
    let (labels, classes) = pairs_labels();
    let Ok(pairs) = mep::connect::pairs::parse_pairs_file(data, Path::new("fuzz.csv"), &labels, &classes) else {
        return;
    };
    for (k, p) in pairs.iter().enumerate() {
        assert_eq!(p.pair, k, "pairs are numbered in order");
        assert!(p.i < labels.len() && p.j < labels.len() && p.i != p.j);
        assert_eq!(labels[p.i], labels[p.j]);
    }
}

/// A `results.jsonl`, read with and without leave for a torn last line, as `mep connect`
/// (resuming) and `mep report` read it; the results are then counted as Table 1 counts them.
pub fn results(data: &[u8]) {
    for torn_ok in [true, false] {
        let Ok((results, cut)) = parse_jsonl::<PairResult>(data, Path::new("results.jsonl"), torn_ok) else {
            continue;
        };
        if let Some(cut) = cut {
            assert!(
                cut as usize <= data.len(),
                "the torn-line cut {cut} lies inside the file"
            );
        }
        let mut spaces: Vec<String> = results.iter().map(|r| r.space.clone()).collect();
        spaces.sort();
        spaces.dedup();
        let _ = count_categories(&spaces, &results);
    }
}

/// A `certificates.jsonl`, read as `mep certify` and `mep report` read it, then counted per
/// space.
pub fn certificates(data: &[u8]) {
    let Ok(certs) = parse_certificates(data, Path::new("certificates.jsonl")) else {
        return;
    };
    let mut spaces: Vec<String> = certs.iter().map(|c| c.space.clone()).collect();
    spaces.sort();
    spaces.dedup();
    let _ = mep::certify::count(&spaces, &certs);
}

/// A study's `manifest.json`, read with [`Manifest::parse`]; a manifest that parses is
/// compared with itself (as a resumed study compares settings) and written back.
pub fn manifest(data: &[u8]) {
    let Ok(m) = Manifest::parse(data, Path::new("manifest.json")) else {
        return;
    };
    assert!(
        m.settings.differences(&m.settings).is_empty(),
        "settings equal themselves"
    );
    if let Some(shard) = m.shard {
        for p in &m.pair_list {
            let _ = shard.contains(p.pair);
        }
    }
}
