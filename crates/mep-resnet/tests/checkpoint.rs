//! Tests of safetensors checkpoint loading and saving.

use mep_resnet::checkpoint::{save, Checkpoint, TensorData};
use mep_resnet::ResNetError;
use mep_tensor::Shape;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh, unique directory under the system temp dir; removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("mep-ckpt-test-{}-{tag}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Serializes raw tensors (name, dtype, shape, little-endian bytes) with the safetensors crate.
fn raw_file(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let views: Vec<(&str, TensorView<'_>)> = tensors
        .iter()
        .map(|(k, d, s, b)| (*k, TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::tensor::serialize(views, None).unwrap()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A valid file with a few tensors, used for the corruption tests.
fn valid_file() -> Vec<u8> {
    raw_file(&[
        ("conv1.weight", Dtype::F32, vec![2, 1, 3, 3], f32_bytes(&[0.5; 18])),
        ("bn1.running_mean", Dtype::F16, vec![2], vec![0x00, 0x3c, 0x00, 0xc0]),
        (
            "fc.bias",
            Dtype::BF16,
            vec![3],
            vec![0x80, 0x3f, 0x00, 0x40, 0x40, 0x40],
        ),
        (
            "bn1.num_batches_tracked",
            Dtype::I64,
            vec![],
            7i64.to_le_bytes().to_vec(),
        ),
    ])
}

/// Tiny deterministic xorshift generator (no rand dependency).
/// The workspace's generator, drawing indices as the fuzz loop needs them.
struct Rng(mep_rng::SplitMix64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn below(&mut self, n: usize) -> usize {
        self.0.below(n as u64) as usize
    }
}

#[test]
fn save_then_load_round_trips_tensors_and_metadata() {
    let dir = TempDir::new("roundtrip");
    let path = dir.file("model.safetensors");
    let w: Vec<f32> = (0..24).map(|i| i as f32 * 0.25 - 3.0).collect();
    let b = vec![1.5f32, -2.0, f32::MIN_POSITIVE];
    let scalar = vec![42.0f32];
    let (sw, sb, ss) = (
        Shape::new([2, 3, 2, 2]),
        Shape::new([3]),
        Shape::new(Vec::<usize>::new()),
    );
    let meta = BTreeMap::from([
        ("arch".to_string(), "resnet50".to_string()),
        ("note".to_string(), "hi".to_string()),
    ]);
    save(
        &path,
        &[
            ("layer1.0.conv1.weight", &sw, &w),
            ("fc.bias", &sb, &b),
            ("scale", &ss, &scalar),
        ],
        Some(&meta),
    )
    .unwrap();

    let mut ck = Checkpoint::load(&path).unwrap();
    assert_eq!(ck.path(), path.as_path());
    assert_eq!(ck.metadata(), &meta);
    assert_eq!(
        ck.keys().collect::<Vec<_>>(),
        ["fc.bias", "layer1.0.conv1.weight", "scale"]
    );
    assert!(ck.contains("fc.bias"));
    assert_eq!(ck.get("fc.bias").unwrap().data, b);
    let t = ck.take("layer1.0.conv1.weight", &[2, 3, 2, 2], "test").unwrap();
    assert_eq!(t, TensorData { shape: sw, data: w });
    let s = ck.take("scale", &[], "test").unwrap();
    assert_eq!(s.shape.dims(), &[] as &[usize]);
    assert_eq!(s.data, scalar);
    ck.take("fc.bias", &[3], "test").unwrap();
    assert!(ck.is_empty());
    ck.finish("test").unwrap();
}

#[test]
fn save_without_metadata_loads_empty_metadata() {
    let dir = TempDir::new("nometa");
    let path = dir.file("m.safetensors");
    save(&path, &[("x", &Shape::new([1]), &[1.0])], None).unwrap();
    let ck = Checkpoint::load(&path).unwrap();
    assert!(ck.metadata().is_empty());
    assert_eq!(ck.get("x").unwrap().data, [1.0]);
}

#[test]
fn f16_and_bf16_tensors_load_as_f32() {
    let dir = TempDir::new("half");
    let path = dir.file("half.safetensors");
    let vals = [1.0f32, -2.5, 0.0, 65504.0, 0.099975586];
    let h: Vec<u8> = vals
        .iter()
        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
        .collect();
    let bvals = [1.0f32, -2.5, 3.0e38, 0.1];
    let bf: Vec<u8> = bvals
        .iter()
        .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
        .collect();
    std::fs::write(
        &path,
        raw_file(&[("h", Dtype::F16, vec![5], h), ("b", Dtype::BF16, vec![2, 2], bf)]),
    )
    .unwrap();
    let ck = Checkpoint::load(&path).unwrap();
    let got_h = &ck.get("h").unwrap().data;
    let want_h: Vec<f32> = vals.iter().map(|v| half::f16::from_f32(*v).to_f32()).collect();
    assert_eq!(got_h, &want_h);
    assert_eq!(got_h[..4], [1.0, -2.5, 0.0, 65504.0]);
    let got_b = ck.get("b").unwrap();
    assert_eq!(got_b.shape.dims(), [2, 2]);
    let want_b: Vec<f32> = bvals.iter().map(|v| half::bf16::from_f32(*v).to_f32()).collect();
    assert_eq!(got_b.data, want_b);
    assert_eq!(got_b.data[..2], [1.0, -2.5]);
    assert!((got_b.data[3] - 0.1).abs() < 1e-3);
}

#[test]
fn f32_data_at_unaligned_offset_loads() {
    // Parse a slice that starts at an odd address, so the f32 data is not 4-byte aligned.
    let bytes = raw_file(&[("w", Dtype::F32, vec![3], f32_bytes(&[1.0, 2.0, 3.0]))]);
    let mut shifted = vec![0u8; bytes.len() + 1];
    shifted[1..].copy_from_slice(&bytes);
    let ck = Checkpoint::from_bytes("shifted", &shifted[1..]).unwrap();
    assert_eq!(ck.get("w").unwrap().data, [1.0, 2.0, 3.0]);
}

#[test]
fn data_parallel_module_prefix_is_stripped() {
    let bytes = raw_file(&[
        ("module.conv1.weight", Dtype::F32, vec![1], f32_bytes(&[1.0])),
        ("module.fc.bias", Dtype::F32, vec![2], f32_bytes(&[2.0, 3.0])),
    ]);
    let ck = Checkpoint::from_bytes("dp.safetensors", &bytes).unwrap();
    assert_eq!(ck.keys().collect::<Vec<_>>(), ["conv1.weight", "fc.bias"]);
    assert_eq!(ck.get("fc.bias").unwrap().data, [2.0, 3.0]);
}

#[test]
fn key_present_with_and_without_module_prefix_is_corrupt() {
    let bytes = raw_file(&[
        ("module.fc.bias", Dtype::F32, vec![1], f32_bytes(&[1.0])),
        ("fc.bias", Dtype::F32, vec![1], f32_bytes(&[2.0])),
    ]);
    let err = Checkpoint::from_bytes("dup", &bytes).unwrap_err();
    assert!(
        matches!(&err, ResNetError::Corrupt { msg, .. } if msg.contains("fc.bias")),
        "{err}"
    );
}

#[test]
fn num_batches_tracked_i64_is_ignored() {
    let ck = Checkpoint::from_bytes("v", &valid_file()).unwrap();
    assert!(!ck.keys().any(|k| k.contains("num_batches_tracked")));
    assert_eq!(ck.len(), 3);
    let bytes = raw_file(&[
        (
            "module.layer1.0.bn1.num_batches_tracked",
            Dtype::I64,
            vec![],
            5i64.to_le_bytes().to_vec(),
        ),
        ("layer1.0.bn1.weight", Dtype::F32, vec![1], f32_bytes(&[1.0])),
    ]);
    let mut ck = Checkpoint::from_bytes("v", &bytes).unwrap();
    ck.take("layer1.0.bn1.weight", &[1], "t").unwrap();
    ck.finish("t").unwrap();
}

#[test]
fn i32_and_f64_tensors_are_dtype_errors_naming_the_key() {
    for (dtype, bytes, name) in [
        (Dtype::I32, 7i32.to_le_bytes().to_vec(), "I32"),
        (Dtype::F64, 7f64.to_le_bytes().to_vec(), "F64"),
    ] {
        let file = raw_file(&[
            ("ok", Dtype::F32, vec![1], f32_bytes(&[1.0])),
            ("layer2.weird", dtype, vec![1], bytes),
        ]);
        let err = Checkpoint::from_bytes("d.safetensors", &file).unwrap_err();
        match &err {
            ResNetError::Dtype { key, dtype, path } => {
                assert_eq!(key, "layer2.weird");
                assert_eq!(dtype, name);
                assert_eq!(path, &PathBuf::from("d.safetensors"));
            }
            other => panic!("expected Dtype error, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("layer2.weird") && msg.contains(name), "{msg}");
    }
}

#[test]
fn take_missing_key_is_missing_key_error_naming_it() {
    let mut ck = Checkpoint::new("ck.safetensors");
    ck.insert(
        "fc.weight",
        TensorData {
            shape: Shape::new([1]),
            data: vec![0.0],
        },
    );
    let err = ck.take("fc.bias", &[10], "resnet18").unwrap_err();
    match &err {
        ResNetError::MissingKey { path, key, arch } => {
            assert_eq!(path, &PathBuf::from("ck.safetensors"));
            assert_eq!(key, "fc.bias");
            assert_eq!(arch, "resnet18");
        }
        other => panic!("expected MissingKey, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("ck.safetensors") && msg.contains("fc.bias") && msg.contains("resnet18"),
        "{msg}"
    );
}

#[test]
fn take_wrong_shape_is_shape_error_with_key_expected_and_found() {
    let mut ck = Checkpoint::new("ck.safetensors");
    ck.insert(
        "fc.weight",
        TensorData {
            shape: Shape::new([10, 512]),
            data: vec![0.0; 5120],
        },
    );
    let err = ck.take("fc.weight", &[1000, 2048], "resnet50").unwrap_err();
    match &err {
        ResNetError::Shape {
            key, expected, found, ..
        } => {
            assert_eq!(key, "fc.weight");
            assert!(expected.contains("[1000, 2048]"), "{expected}");
            assert_eq!(found, "[10, 512]");
        }
        other => panic!("expected Shape, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("ck.safetensors") && msg.contains("resnet50"), "{msg}");
    // The tensor stays, so the caller's error path is not confused by a vanished key.
    assert!(ck.contains("fc.weight"));
}

#[test]
fn finish_with_leftover_keys_is_unexpected_key_error() {
    let mut ck = Checkpoint::new("ck.safetensors");
    for k in ["b.extra", "a.extra", "fc.weight"] {
        ck.insert(
            k,
            TensorData {
                shape: Shape::new([1]),
                data: vec![0.0],
            },
        );
    }
    ck.take("fc.weight", &[1], "resnet18").unwrap();
    let err = ck.finish("resnet18").unwrap_err();
    match &err {
        ResNetError::UnexpectedKey { key, count, arch, .. } => {
            assert_eq!(key, "a.extra");
            assert_eq!(*count, 2);
            assert_eq!(arch, "resnet18");
        }
        other => panic!("expected UnexpectedKey, got {other:?}"),
    }
    Checkpoint::new("empty").finish("x").unwrap();
}

#[test]
fn truncated_file_is_corrupt_at_every_cut() {
    let bytes = valid_file();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let data_start = 8 + header_len;
    let mut cuts = vec![0, 1, 4, 7, 8, 9, 8 + header_len / 2, data_start - 1, data_start];
    cuts.extend([data_start + 1, data_start + 10, bytes.len() - 1]);
    // And every other cut too.
    cuts.extend(0..bytes.len());
    for cut in cuts {
        let err = Checkpoint::from_bytes("cut.safetensors", &bytes[..cut]).unwrap_err();
        assert!(matches!(err, ResNetError::Corrupt { .. }), "cut at {cut}: {err:?}");
    }
    // The file on disk behaves the same.
    let dir = TempDir::new("trunc");
    let path = dir.file("cut.safetensors");
    std::fs::write(&path, &bytes[..data_start + 3]).unwrap();
    let err = Checkpoint::load(&path).unwrap_err();
    assert!(
        matches!(&err, ResNetError::Corrupt { path: p, .. } if p == &path),
        "{err:?}"
    );
    assert!(err.to_string().contains("cut.safetensors"));
}

#[test]
fn garbage_header_json_is_corrupt() {
    for header in [
        &b"{not json at all"[..],
        b"[1, 2, 3]",
        b"{\"x\": 3}",
        b"\xff\xfe\xfd\xfc",
    ] {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        let err = Checkpoint::from_bytes("g.safetensors", &bytes).unwrap_err();
        assert!(matches!(err, ResNetError::Corrupt { .. }), "{err:?}");
    }
}

#[test]
fn huge_header_length_is_corrupt() {
    let mut bytes = u64::MAX.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    let err = Checkpoint::from_bytes("h", &bytes).unwrap_err();
    assert!(matches!(err, ResNetError::Corrupt { .. }), "{err:?}");
}

#[test]
fn offsets_out_of_range_are_corrupt() {
    // Offsets past the end, and offsets crafted so that the data size sums to near usize::MAX.
    let big = usize::MAX / 8;
    let mut huge = String::from("{");
    for i in 0..8 {
        let (s, e) = (i * big, (i + 1) * big);
        huge.push_str(&format!(
            "\"t{i}\":{{\"dtype\":\"U8\",\"shape\":[{big}],\"data_offsets\":[{s},{e}]}},"
        ));
    }
    huge.pop();
    huge.push('}');
    let headers = [
        r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#.to_string(),
        r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#.to_string(),
        r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#.to_string(),
        r#"{"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,4]}}"#.to_string(),
        huge,
    ];
    for header in headers {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&[0u8; 4]);
        let err = Checkpoint::from_bytes("o", &bytes).unwrap_err();
        assert!(matches!(err, ResNetError::Corrupt { .. }), "{header}: {err:?}");
    }
}

#[test]
fn nonexistent_file_is_io_error_naming_the_path() {
    let dir = TempDir::new("missing");
    let path = dir.file("does-not-exist.safetensors");
    let err = Checkpoint::load(&path).unwrap_err();
    match &err {
        ResNetError::Io { path: p, .. } => assert_eq!(p, &path),
        other => panic!("expected Io, got {other:?}"),
    }
    assert!(err.to_string().contains("does-not-exist.safetensors"));
}

#[test]
fn save_leaves_no_tmp_file_and_overwrites_existing_file() {
    let dir = TempDir::new("atomic");
    let path = dir.file("w.safetensors");
    std::fs::write(&path, b"old contents that are not safetensors").unwrap();
    save(&path, &[("a", &Shape::new([2]), &[1.0, 2.0])], None).unwrap();
    save(&path, &[("b", &Shape::new([1]), &[3.0])], None).unwrap();
    let ck = Checkpoint::load(&path).unwrap();
    assert_eq!(ck.keys().collect::<Vec<_>>(), ["b"]);
    assert_eq!(ck.get("b").unwrap().data, [3.0]);
    let names: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["w.safetensors"]);
}

#[test]
fn save_into_missing_directory_is_io_error_and_leaves_nothing() {
    let dir = TempDir::new("nodir");
    let path = dir.file("sub/w.safetensors");
    let err = save(&path, &[("a", &Shape::new([1]), &[1.0])], None).unwrap_err();
    assert!(matches!(err, ResNetError::Io { .. }), "{err:?}");
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 0);
}

#[test]
fn save_rejects_value_count_not_matching_shape_and_repeated_keys() {
    let dir = TempDir::new("badsave");
    let path = dir.file("w.safetensors");
    let err = save(&path, &[("a", &Shape::new([2, 2]), &[1.0])], None).unwrap_err();
    assert!(matches!(&err, ResNetError::Shape { key, .. } if key == "a"), "{err:?}");
    let s = Shape::new([1]);
    let err = save(&path, &[("a", &s, &[1.0]), ("a", &s, &[2.0])], None).unwrap_err();
    assert!(matches!(err, ResNetError::Config(_)), "{err:?}");
    assert!(!path.exists());
}

#[test]
fn random_flips_and_truncations_never_panic() {
    let valid = valid_file();
    let header_len = u64::from_le_bytes(valid[..8].try_into().unwrap()) as usize;
    let mut rng = Rng(mep_rng::SplitMix64::new(0x9E37_79B9_7F4A_7C15));
    let (mut ok, mut err) = (0, 0);
    for round in 0..3000 {
        let mut bytes = valid.clone();
        let flips = 1 + rng.below(4);
        for _ in 0..flips {
            // Bias half of the flips into the header and its length, where parsing happens.
            let i = if round % 2 == 0 {
                rng.below(8 + header_len)
            } else {
                rng.below(bytes.len())
            };
            bytes[i] = match rng.below(3) {
                0 => bytes[i] ^ (1 << rng.below(8)),
                1 => rng.next() as u8,
                _ => b"0123456789{}[],:\"".get(rng.below(17)).copied().unwrap(),
            };
        }
        if rng.below(4) == 0 {
            let cut = rng.below(bytes.len() + 1);
            bytes.truncate(cut);
        }
        match Checkpoint::from_bytes("fuzz", &bytes) {
            Ok(ck) => {
                for k in ck.keys() {
                    let t = ck.get(k).unwrap();
                    assert_eq!(t.data.len(), t.shape.numel());
                }
                ok += 1;
            }
            Err(_) => err += 1,
        }
    }
    assert!(ok > 0 && err > 0, "ok {ok}, err {err}");
}

#[test]
fn insert_replaces_and_get_contains_agree() {
    let mut ck = Checkpoint::new("in-memory");
    assert!(!ck.contains("x") && ck.get("x").is_none() && ck.is_empty());
    ck.insert(
        "x",
        TensorData {
            shape: Shape::new([1]),
            data: vec![1.0],
        },
    );
    ck.insert(
        "x",
        TensorData {
            shape: Shape::new([2]),
            data: vec![1.0, 2.0],
        },
    );
    assert_eq!(ck.len(), 1);
    assert_eq!(ck.get("x").unwrap().shape.dims(), [2]);
}

#[test]
fn saving_the_same_tensors_and_metadata_twice_gives_the_same_bytes() {
    // safetensors keeps metadata in a HashMap; the header is written sorted, so a study's
    // weights_sha256 does not change from one save to the next.
    let dir = TempDir::new("canonical");
    let meta: BTreeMap<String, String> = (0..20).map(|i| (format!("key{i}"), format!("value {i}"))).collect();
    let shape = Shape::new([3]);
    let (a, b) = (dir.file("a.safetensors"), dir.file("b.safetensors"));
    save(
        &a,
        &[("w", &shape, &[1.0, 2.0, 3.0]), ("b", &shape, &[4.0, 5.0, 6.0])],
        Some(&meta),
    )
    .unwrap();
    save(
        &b,
        &[("w", &shape, &[1.0, 2.0, 3.0]), ("b", &shape, &[4.0, 5.0, 6.0])],
        Some(&meta),
    )
    .unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let ck = Checkpoint::load(&a).unwrap();
    assert_eq!(ck.metadata(), &meta);
    assert_eq!(ck.get("b").unwrap().data, [4.0, 5.0, 6.0]);
}
