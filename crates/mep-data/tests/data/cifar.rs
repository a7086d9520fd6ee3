//! CIFAR-10 reading, on small archives built in the test in the official format.

use std::io::Write;
use std::path::Path;

use mep_data::cifar::{file_md5, load_cifar10_archive_with, load_cifar10_dir_with};
use mep_data::{load_cifar10_archive, load_cifar10_dir, DataError, Samples, CIFAR10_MD5};

const CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];
const PER_BATCH: usize = 3;
const BATCHES: [&str; 6] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
    "test_batch.bin",
];

/// Record `r` of batch `b`: label `(3b + r) % 10`; every red value is `b`, every green value
/// `r`, blue the column index; plus a few marked pixels at known places.
fn record(b: usize, r: usize) -> Vec<u8> {
    let mut rec = vec![((3 * b + r) % 10) as u8];
    let mut planes = vec![0u8; 3072];
    for p in 0..1024 {
        planes[p] = b as u8;
        planes[1024 + p] = r as u8;
        planes[2048 + p] = (p % 32) as u8;
    }
    // Red at row 1, column 2; green at row 5, column 7; blue at row 31, column 30.
    planes[32 + 2] = 200;
    planes[1024 + 5 * 32 + 7] = 100;
    planes[2048 + 31 * 32 + 30] = 250;
    rec.extend(planes);
    rec
}

fn members(per_batch: usize) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = BATCHES
        .iter()
        .enumerate()
        .map(|(b, name)| (name.to_string(), (0..per_batch).flat_map(|r| record(b, r)).collect()))
        .collect();
    out.push((
        "batches.meta.txt".to_string(),
        format!("{}\n\n", CLASSES.join("\n")).into_bytes(),
    ));
    out
}

fn write_archive(path: &Path, members: &[(String, Vec<u8>)]) {
    let file = std::fs::File::create(path).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, bytes) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, format!("cifar-10-batches-bin/{name}"), bytes.as_slice())
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap().flush().unwrap();
}

fn archive(dir: &Path, members: &[(String, Vec<u8>)]) -> std::path::PathBuf {
    let path = dir.join("cifar-10-binary.tar.gz");
    write_archive(&path, members);
    path
}

#[test]
fn archive_train_split_is_the_five_batches_in_order_and_labels_match() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = load_cifar10_archive_with(archive(tmp.path(), &members(PER_BATCH)), false, None).unwrap();
    let train = ds.train.as_ref().unwrap();
    assert_eq!(train.len(), 5 * PER_BATCH);
    assert_eq!(ds.test.len(), PER_BATCH);
    let expected: Vec<usize> = (0..5 * PER_BATCH).map(|i| i % 10).collect();
    assert_eq!(train.labels, expected);
    assert_eq!(ds.test.labels, vec![5, 6, 7]);
    // Index 7 is data_batch_3 (b = 2), record 1: its red plane is 2 and its green plane 1.
    let img = train.image(7).unwrap();
    assert_eq!((img.height, img.width), (32, 32));
    assert_eq!(img.data[img.offset(10, 10, 0)], 2);
    assert_eq!(img.data[img.offset(10, 10, 1)], 1);
    assert_eq!(ds.name, "cifar10");
}

#[test]
fn archive_pixels_are_converted_from_planar_to_hwc() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = load_cifar10_archive_with(archive(tmp.path(), &members(PER_BATCH)), false, None).unwrap();
    let img = ds.test.image(2).unwrap();
    assert_eq!(img.data.len(), 32 * 32 * 3);
    assert_eq!(img.data[img.offset(1, 2, 0)], 200);
    assert_eq!(img.data[img.offset(5, 7, 1)], 100);
    assert_eq!(img.data[img.offset(31, 30, 2)], 250);
    // Unmarked pixels: red = batch (5 for the test batch), green = record, blue = column.
    assert_eq!(&img.data[img.offset(4, 9, 0)..img.offset(4, 9, 0) + 3], &[5, 2, 9]);
    let Samples::InMemory { height, width, data } = &ds.test.samples else {
        panic!("CIFAR is in memory")
    };
    assert_eq!((*height, *width, data.len()), (32, 32, PER_BATCH * 3072));
}

#[test]
fn archive_class_names_come_from_the_meta_file() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = load_cifar10_archive_with(archive(tmp.path(), &members(1)), false, None).unwrap();
    assert_eq!(ds.classes, CLASSES);
    assert_eq!(ds.num_classes(), 10);
}

#[test]
fn md5_mismatch_names_the_file_both_digests_and_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let path = archive(tmp.path(), &members(1));
    let found = file_md5(&path).unwrap();
    let err = load_cifar10_archive(&path, true).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DataError::Format { .. }), "{msg}");
    assert!(
        msg.contains("cifar-10-binary.tar.gz") && msg.contains(CIFAR10_MD5) && msg.contains(&found),
        "{msg}"
    );
    assert!(msg.contains("fetch it again"), "{msg}");
}

#[test]
fn file_md5_matches_known_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("abc");
    std::fs::write(&path, b"abc").unwrap();
    assert_eq!(file_md5(&path).unwrap(), "900150983cd24fb0d6963f7d28e17f72");
}

#[test]
fn truncated_batch_is_a_format_error_naming_file_and_size() {
    let tmp = tempfile::tempdir().unwrap();
    let mut m = members(2);
    m[2].1.truncate(3073 + 100);
    let err = load_cifar10_archive_with(archive(tmp.path(), &m), false, None).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DataError::Format { .. }), "{msg}");
    assert!(msg.contains("data_batch_3.bin") && msg.contains("3173 bytes"), "{msg}");
}

#[test]
fn strict_loading_wants_10000_records_per_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let err = load_cifar10_archive(archive(tmp.path(), &members(2)), false).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("data_batch_1.bin") && msg.contains("2 records, expected 10000"),
        "{msg}"
    );
}

#[test]
fn missing_member_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let m: Vec<_> = members(1).into_iter().filter(|(n, _)| n != "test_batch.bin").collect();
    let msg = load_cifar10_archive_with(archive(tmp.path(), &m), false, None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("cifar-10-batches-bin/test_batch.bin"), "{msg}");
}

#[test]
fn label_out_of_range_is_a_format_error() {
    let tmp = tempfile::tempdir().unwrap();
    let mut m = members(1);
    m[0].1[0] = 10;
    let msg = load_cifar10_archive_with(archive(tmp.path(), &m), false, None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("data_batch_1.bin") && msg.contains("label 10"), "{msg}");
}

#[test]
fn not_an_archive_is_a_format_error() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("cifar-10-binary.tar.gz");
    std::fs::write(&path, b"<html>not found</html>").unwrap();
    let err = load_cifar10_archive_with(&path, false, None).unwrap_err();
    assert!(matches!(err, DataError::Format { .. }), "{err}");
}

#[test]
fn extracted_folder_loads_like_the_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let m = members(PER_BATCH);
    let from_archive = load_cifar10_archive_with(archive(tmp.path(), &m), false, None).unwrap();
    let dir = tmp.path().join("cifar-10-batches-bin");
    std::fs::create_dir(&dir).unwrap();
    for (name, bytes) in &m {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    // Both the batches folder and its parent are accepted.
    for d in [dir.as_path(), tmp.path()] {
        let ds = load_cifar10_dir_with(d, None).unwrap();
        assert_eq!(ds.classes, from_archive.classes);
        assert_eq!(
            ds.train.as_ref().unwrap().labels,
            from_archive.train.as_ref().unwrap().labels
        );
        assert_eq!(ds.test.image(1).unwrap(), from_archive.test.image(1).unwrap());
    }
    let msg = load_cifar10_dir(&dir).unwrap_err().to_string();
    assert!(msg.contains("expected 10000"), "{msg}");
    std::fs::remove_file(dir.join("data_batch_4.bin")).unwrap();
    let msg = load_cifar10_dir_with(&dir, None).unwrap_err().to_string();
    assert!(msg.contains("data_batch_4.bin"), "{msg}");
}

/// A tar header can claim gigabytes that a few MB of gzip'd zeros then deliver: the claim
/// is refused before anything is read or allocated (found by fuzzing the archive reader).
#[test]
fn a_member_claiming_more_than_any_cifar_file_is_refused_before_reading() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("cifar-10-binary.tar.gz");
    let gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut header = tar::Header::new_gnu();
    header.set_size(1 << 33);
    header.set_mode(0o644);
    header.set_cksum();
    // Only one record follows the header: the claim, not the data, must be what is refused.
    tar.append_data(
        &mut header,
        "cifar-10-batches-bin/data_batch_1.bin",
        record(0, 0).as_slice(),
    )
    .unwrap();
    tar.into_inner().unwrap().finish().unwrap().flush().unwrap();
    let err = load_cifar10_archive_with(&path, false, None).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DataError::Format { .. }), "{msg}");
    assert!(
        msg.contains("cifar-10-batches-bin/data_batch_1.bin is 8589934592 bytes, more than any CIFAR-10 file"),
        "{msg}"
    );
}
