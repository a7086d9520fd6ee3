//! `mep forward` end to end, on the ResNet-20 golden fixture made by PyTorch.

use mep_resnet::{save, Checkpoint};
use mep_tensor::Shape;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;
use common::forward_args;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../mep-resnet/tests/fixtures")
        .join(name)
}

fn tmpdir(tag: &str) -> PathBuf {
    common::tmpdir("cli", tag)
}

/// The golden input and logits (the golden file also holds an int64 target, which
/// `Checkpoint` rejects, so read it with safetensors directly).
fn golden_f32(key: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(fixture("resnet20.golden.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let v = st.tensor(key).unwrap();
    let data = v
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (v.shape().to_vec(), data)
}

fn mep(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mep")).args(args).output().unwrap()
}

fn write_input(dir: &Path) -> PathBuf {
    let (shape, data) = golden_f32("input");
    let p = dir.join("input.safetensors");
    save(&p, &[("input", &Shape::new(shape), &data)], None).unwrap();
    p
}

#[test]
fn forward_writes_logits_cuts_loss_and_gradient_matching_pytorch() {
    let dir = tmpdir("ok");
    let input = write_input(&dir);
    let out = dir.join("out.safetensors");
    let w = fixture("resnet20.safetensors");
    let o = mep(&forward_args("resnet20", &w, &input, &["--target", "2"], &out));
    assert!(o.status.success(), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    let ck = Checkpoint::load(&out).unwrap();
    let keys: Vec<_> = ck.keys().collect();
    for k in [
        "logits",
        "stem",
        "layer1",
        "layer2",
        "layer3",
        "pool",
        "loss",
        "input_grad",
    ] {
        assert!(keys.contains(&k), "missing {k} in {keys:?}");
    }
    let (_, torch_logits) = golden_f32("logits");
    let ours = &ck.get("logits").unwrap().data;
    let err = ours
        .iter()
        .zip(&torch_logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(err < 1e-4, "logits differ from PyTorch by {err}");
    assert_eq!(ck.get("input_grad").unwrap().shape.dims(), &[2, 3, 32, 32]);
    // The loss is the mean cross-entropy against class 2, from the logits PyTorch gave.
    let n = torch_logits.len() / 7;
    let expected: f64 = torch_logits
        .chunks(7)
        .map(|row| {
            let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
            lse - row[2] as f64
        })
        .sum::<f64>()
        / n as f64;
    let loss = ck.get("loss").unwrap().data[0] as f64;
    assert!(
        (loss - expected).abs() < 1e-4 * expected.abs().max(1.0),
        "loss {loss} vs {expected}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn forward_reports_bad_input_clearly() {
    let dir = tmpdir("bad");
    let input = write_input(&dir);
    let w = fixture("resnet20.safetensors");
    let out = dir.join("out.safetensors");
    let run = |args: &[&str]| {
        let o = mep(args);
        assert!(!o.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        err
    };
    let e = run(&forward_args("resnet21", &w, &input, &[], &out));
    assert!(e.contains("unknown architecture `resnet21`"), "{e}");
    let e = run(&forward_args("resnet20", &w, &w, &[], &out));
    assert!(e.contains("no tensor `input`"), "{e}");
    let e = run(&forward_args("resnet20", &w, &input, &["--target", "9"], &out));
    assert!(e.contains("--target 9"), "{e}");
    let e = run(&forward_args("resnet50", &w, &input, &[], &out));
    assert!(e.contains("conv1.weight"), "{e}");
    // Issue 18: an input of N = 0 images was reported as not matching [N, 3, H, W].
    let empty = dir.join("empty.safetensors");
    save(&empty, &[("input", &Shape::new([0, 3, 32, 32]), &[])], None).unwrap();
    let e = run(&forward_args("resnet20", &w, &empty, &[], &out));
    assert!(e.contains("holds 0 images; need at least one"), "{e}");
    assert!(e.contains("empty.safetensors"), "{e}");
    assert!(!out.exists(), "no output is written on failure");
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 18: a NaN pixel gave finite logits; PyTorch gives NaN logits for that image (and only
/// that one), and so does `mep forward` now. A NaN weight is refused at load, naming it.
#[test]
fn a_nan_pixel_gives_nan_logits_and_a_nan_weight_is_refused() {
    let dir = tmpdir("nan");
    let (shape, mut data) = golden_f32("input");
    assert!(shape[0] >= 2, "the golden input holds {shape:?}");
    let per_image = data.len() / shape[0];
    data[per_image / 2] = f32::NAN; // image 0
    let input = dir.join("nan-input.safetensors");
    save(&input, &[("input", &Shape::new(shape.clone()), &data)], None).unwrap();
    let out = dir.join("out.safetensors");
    let w = fixture("resnet20.safetensors");
    let o = mep(&forward_args("resnet20", &w, &input, &[], &out));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = Checkpoint::load(&out).unwrap();
    let logits = &got.get("logits").unwrap().data;
    let c = logits.len() / shape[0];
    assert!(logits[..c].iter().all(|v| v.is_nan()), "image 0: {:?}", &logits[..c]);
    assert!(logits[c..].iter().all(|v| v.is_finite()), "{:?}", &logits[c..]);

    let bad = dir.join("nan-weights.safetensors");
    common::save_with_nan(&w, "layer1.0.conv1.weight", 17, &bad);
    let out2 = dir.join("out2.safetensors");
    let o = mep(&forward_args("resnet20", &bad, &input, &[], &out2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        e.contains("nan-weights.safetensors") && e.contains("`layer1.0.conv1.weight` holds NaN at index 17"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
