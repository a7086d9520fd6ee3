//! Bad checkpoints and bad inputs give errors that name what was wrong, never a panic.

use mep_resnet::{Arch, Checkpoint, Cut, FoldedResNet, ResNet, ResNetError, TensorData};
use mep_tensor::{CpuBackend, Shape, Tensor};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn resnet20_checkpoint() -> Checkpoint {
    Checkpoint::load(fixture("resnet20.safetensors")).unwrap()
}

fn load(ck: Checkpoint) -> Result<ResNet<CpuBackend>, ResNetError> {
    ResNet::from_checkpoint(&CpuBackend::new(), Arch::ResNet20, ck)
}

fn rebuild(ck: &Checkpoint, skip: &str) -> Checkpoint {
    let mut out = Checkpoint::new(ck.path());
    for k in ck.keys() {
        if k != skip {
            out.insert(k, ck.get(k).unwrap().clone());
        }
    }
    out
}

#[test]
fn missing_key_is_named() {
    let ck = rebuild(&resnet20_checkpoint(), "layer2.1.bn1.running_var");
    match load(ck) {
        Err(ResNetError::MissingKey { key, arch, .. }) => {
            assert_eq!(key, "layer2.1.bn1.running_var");
            assert_eq!(arch, "resnet20");
        }
        other => panic!("expected MissingKey, got {:?}", other.err()),
    }
}

#[test]
fn unexpected_key_is_named() {
    let mut ck = resnet20_checkpoint();
    ck.insert(
        "layer4.0.conv1.weight",
        TensorData {
            shape: Shape::new([1]),
            data: vec![0.0],
        },
    );
    let err = load(ck).err().expect("must fail");
    assert!(
        matches!(&err, ResNetError::UnexpectedKey { key, .. } if key == "layer4.0.conv1.weight"),
        "{err}"
    );
}

#[test]
fn wrong_shape_names_key_expected_and_found() {
    let mut ck = resnet20_checkpoint();
    ck.insert(
        "layer1.0.conv2.weight",
        TensorData {
            shape: Shape::new([16, 16, 1, 1]),
            data: vec![0.0; 256],
        },
    );
    match load(ck) {
        Err(ResNetError::Shape {
            key, expected, found, ..
        }) => {
            assert_eq!(key, "layer1.0.conv2.weight");
            assert!(expected.contains("[16, 16, 3, 3]"), "{expected}");
            assert_eq!(found, "[16, 16, 1, 1]");
        }
        other => panic!("expected Shape, got {:?}", other.err()),
    }
}

#[test]
fn wrong_architecture_for_checkpoint_is_an_error() {
    // A ResNet-20 checkpoint read as ResNet-32 lacks the extra blocks.
    let err = ResNet::from_checkpoint(&CpuBackend::new(), Arch::ResNet32, resnet20_checkpoint())
        .err()
        .expect("must fail");
    assert!(matches!(err, ResNetError::MissingKey { .. }), "{err}");
    // And as a torchvision ResNet-18 the stem has the wrong kernel.
    let err = ResNet::from_checkpoint(&CpuBackend::new(), Arch::ResNet18, resnet20_checkpoint())
        .err()
        .expect("must fail");
    assert!(
        matches!(err, ResNetError::Shape { ref key, .. } if key == "conv1.weight"),
        "{err}"
    );
}

#[test]
fn truncated_and_corrupt_files_are_errors() {
    let bytes = std::fs::read(fixture("resnet20.safetensors")).unwrap();
    let dir = std::env::temp_dir().join(format!("mep-model-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for cut in [0, 7, 100, bytes.len() / 2, bytes.len() - 1] {
        let p = dir.join(format!("cut{cut}.safetensors"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let err = FoldedResNet::load(&CpuBackend::new(), Arch::ResNet20, &p)
            .err()
            .expect("must fail");
        assert!(matches!(err, ResNetError::Corrupt { .. }), "cut at {cut}: {err}");
        assert!(
            err.to_string().contains(&*p.to_string_lossy()),
            "message names the file: {err}"
        );
    }
    let err = FoldedResNet::load(&CpuBackend::new(), Arch::ResNet20, dir.join("absent.safetensors"))
        .err()
        .expect("must fail");
    assert!(matches!(err, ResNetError::Io { .. }), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn module_prefix_and_half_precision_load() {
    let ck = resnet20_checkpoint();
    let dir = std::env::temp_dir().join(format!("mep-model-f16-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Write the checkpoint as DataParallel would (module. prefix) in f16.
    let mut buffers = Vec::new();
    for k in ck.keys() {
        let t = ck.get(k).unwrap();
        let bytes: Vec<u8> = t
            .data
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        buffers.push((format!("module.{k}"), t.shape.dims().to_vec(), bytes));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = buffers
        .iter()
        .map(|(k, s, b)| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F16, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let p = dir.join("f16.safetensors");
    safetensors::serialize_to_file(views, None, &p).unwrap();
    let b = CpuBackend::new();
    let net16 = FoldedResNet::load(&b, Arch::ResNet20, &p).unwrap();
    let net32 = FoldedResNet::load(&b, Arch::ResNet20, fixture("resnet20.safetensors")).unwrap();
    let x = Tensor::from_vec(
        &b,
        [1, 3, 32, 32],
        (0..3072).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect(),
    )
    .unwrap();
    let a = net16.head(&b, &x, Cut::Input).unwrap().to_vec(&b).unwrap();
    let c = net32.head(&b, &x, Cut::Input).unwrap().to_vec(&b).unwrap();
    let err: f32 = a.iter().zip(&c).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max);
    assert!(err < 0.05, "f16 weights change logits by {err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn inputs_of_the_wrong_shape_are_errors() {
    let b = CpuBackend::new();
    let net = FoldedResNet::load(&b, Arch::ResNet20, fixture("resnet20.safetensors")).unwrap();
    let x = Tensor::zeros(&b, [2, 1, 32, 32]).unwrap();
    let err = net.encode(&b, &x, Cut::Layer(1)).err().expect("one channel must fail");
    assert!(matches!(err, ResNetError::Input { .. }), "{err}");
    assert!(err.to_string().contains("[2, 1, 32, 32]"), "{err}");
    let z = Tensor::zeros(&b, [2, 17, 32, 32]).unwrap();
    let err = net.head(&b, &z, Cut::Layer(1)).err().expect("wrong channels must fail");
    assert!(err.to_string().contains("layer1"), "{err}");
    let err = net.head(&b, &z, Cut::Layer(4)).err().expect("resnet20 has no layer4");
    assert!(matches!(err, ResNetError::Config(_)), "{err}");
    let x = Tensor::zeros(&b, [1, 3, 32, 32]).unwrap();
    let err = net
        .head_loss_grad(&b, &x, Cut::Input, &[7], 1.0)
        .err()
        .expect("class 7 of 7");
    assert!(err.to_string().contains("target 7"), "{err}");
}

#[test]
fn save_then_load_round_trips_and_pytorch_keys_are_kept() {
    let b = CpuBackend::new();
    let model = ResNet::load(&b, Arch::ResNet20, fixture("resnet20.safetensors")).unwrap();
    let dir = std::env::temp_dir().join(format!("mep-model-save-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("saved.safetensors");
    model.save(&b, &p).unwrap();
    let original = Checkpoint::load(fixture("resnet20.safetensors")).unwrap();
    let saved = Checkpoint::load(&p).unwrap();
    assert_eq!(original.keys().collect::<Vec<_>>(), saved.keys().collect::<Vec<_>>());
    for k in original.keys() {
        assert_eq!(original.get(k), saved.get(k), "{k}");
    }
    assert_eq!(saved.metadata().get("arch").map(String::as_str), Some("resnet20"));
    // Every batch norm gets PyTorch's int64 step counter, so strict loading accepts the file.
    let bytes = std::fs::read(&p).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let counters = st
        .names()
        .into_iter()
        .filter(|k| k.ends_with("num_batches_tracked"))
        .count();
    let bns = original.keys().filter(|k| k.ends_with("running_mean")).count();
    assert_eq!(counters, bns);
    assert_eq!(
        st.tensor("bn1.num_batches_tracked").unwrap().dtype(),
        safetensors::Dtype::I64
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `ck` with `key`'s values at `at` replaced.
fn poisoned(mut ck: Checkpoint, key: &str, at: &[(usize, f32)]) -> Checkpoint {
    let mut t = ck.get(key).unwrap().clone();
    for &(i, v) in at {
        t.data[i] = v;
    }
    ck.insert(key, t);
    ck
}

/// Issue 18: one NaN conv weight gave finite logits; it is refused at load, naming the
/// tensor, the file, the first bad value's index and how many there are.
#[test]
fn a_non_finite_weight_is_refused_at_load_with_its_name() {
    let ck = poisoned(
        resnet20_checkpoint(),
        "layer1.0.conv1.weight",
        &[(17, f32::NAN), (40, f32::INFINITY), (41, f32::NEG_INFINITY)],
    );
    let err = load(ck).err().expect("a NaN weight must be refused");
    match &err {
        ResNetError::NonFinite {
            key,
            value,
            index,
            count,
            len,
            ..
        } => {
            assert_eq!(key, "layer1.0.conv1.weight");
            assert!(value.is_nan());
            assert_eq!((*index, *count, *len), (17, 3, 16 * 16 * 9));
        }
        other => panic!("expected NonFinite, got {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("resnet20.safetensors"), "{msg}");
    assert!(
        msg.contains("`layer1.0.conv1.weight` holds NaN at index 17 (3 non-finite values of 2304)"),
        "{msg}"
    );
    // Every tensor is checked: the classifier's bias, a batch norm's running mean.
    for key in ["linear.bias", "layer3.2.bn2.running_mean", "bn1.weight"] {
        let err = load(poisoned(resnet20_checkpoint(), key, &[(0, f32::INFINITY)]))
            .err()
            .expect("an infinite value must be refused");
        assert!(
            matches!(&err, ResNetError::NonFinite { key: k, value, .. } if k == key && *value == f32::INFINITY),
            "{err}"
        );
    }
}

/// Issue 18: a negative BN running variance (√ of it is NaN in PyTorch) is refused at load.
#[test]
fn a_negative_running_variance_is_refused_at_load() {
    let ck = poisoned(
        resnet20_checkpoint(),
        "layer2.0.bn1.running_var",
        &[(3, -0.5), (9, -1e-30)],
    );
    let err = load(ck).err().expect("a negative variance must be refused");
    assert!(
        matches!(
            &err,
            ResNetError::NegativeVariance { key, index: 3, count: 2, .. } if key == "layer2.0.bn1.running_var"
        ),
        "{err}"
    );
    assert!(err.to_string().contains("negative variance -0.5 at index 3"), "{err}");
    // A variance of exactly 0 is a valid (if degenerate) statistic, and negative weights are fine.
    let ck = poisoned(resnet20_checkpoint(), "layer2.0.bn1.running_var", &[(3, 0.0)]);
    let ck = poisoned(ck, "layer2.0.bn1.bias", &[(3, -0.5)]);
    load(ck).unwrap();
}

/// The refusal holds through the file loaders `mep` uses (`ResNet::load`, `FoldedResNet::load`).
#[test]
fn file_loaders_refuse_a_nan_checkpoint() {
    let dir = std::env::temp_dir().join(format!("mep-model-nan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("nan.safetensors");
    let ck = poisoned(resnet20_checkpoint(), "layer3.0.conv2.weight", &[(5, f32::NAN)]);
    let keys: Vec<String> = ck.keys().map(String::from).collect();
    let owned: Vec<(String, TensorData)> = keys.iter().map(|k| (k.clone(), ck.get(k).unwrap().clone())).collect();
    let views: Vec<(&str, &Shape, &[f32])> = owned
        .iter()
        .map(|(k, t)| (k.as_str(), &t.shape, t.data.as_slice()))
        .collect();
    mep_resnet::save(&file, &views, None).unwrap();
    let b = CpuBackend::new();
    let err = ResNet::load(&b, Arch::ResNet20, &file).err().expect("must fail");
    assert!(err.to_string().contains(&file.display().to_string()), "{err}");
    assert!(
        matches!(&err, ResNetError::NonFinite { key, index: 5, .. } if key == "layer3.0.conv2.weight"),
        "{err}"
    );
    let err = FoldedResNet::load(&b, Arch::ResNet20, &file).err().expect("must fail");
    assert!(matches!(&err, ResNetError::NonFinite { .. }), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
