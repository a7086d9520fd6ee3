//! `mep decoder train` end to end on the synthetic set: the held-out reconstruction error
//! falls, the checkpoint loads back for the network and cut it was made for and no other,
//! and `decode` maps points to images in [0, 1]. Bad arguments are refused by name.

use mep::data::{eval_transform, transform_metadata};
use mep::decoder::{decode, load_decoder, point_shape, train_decoder_on, DecoderTrainArgs, DECODE_CHUNK};
use mep_data::{synthetic, SyntheticConfig};
use mep_resnet::{Arch, Cut, FoldedResNet, ResNet};
use mep_tensor::{CpuBackend, Tensor};
use std::path::{Path, PathBuf};

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mep-decoder-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn small_data() -> mep_data::Dataset {
    synthetic(&SyntheticConfig {
        seed: 4,
        train_per_class: 24,
        test_per_class: 6,
    })
}

/// A randomly initialised ResNet-20 of width 8, saved as `mep train` saves a model (with
/// its input size and normalisation in the metadata).
fn classifier(dir: &Path) -> PathBuf {
    let b = CpuBackend::new();
    let model = ResNet::init(&b, Arch::ResNet20, 8, 10, 2).unwrap();
    let path = dir.join("classifier.safetensors");
    let classes: Vec<String> = small_data().classes;
    model
        .save_with(&b, &path, &[], &transform_metadata(&eval_transform(32), &classes))
        .unwrap();
    path
}

fn args(dir: &Path, weights: PathBuf, cut: &str, epochs: usize) -> DecoderTrainArgs {
    DecoderTrainArgs {
        device: Default::default(),
        precision: Default::default(),
        arch: "resnet20".into(),
        weights,
        data: "synthetic:4".into(),
        cut: cut.into(),
        size: None,
        epochs: Some(epochs),
        batch_size: Some(16),
        lr: None,
        filters_scale: 1.0 / 8.0,
        seed: 3,
        train_images: None,
        out: dir.join(format!("decoder-{cut}.safetensors")),
        quiet: true,
    }
}

fn trains_and_decodes(cut: Cut, epochs: usize) {
    let dir = tmpdir(&cut.to_string());
    let weights = classifier(&dir);
    let a = args(&dir, weights.clone(), &cut.to_string(), epochs);
    let report = train_decoder_on(&a, small_data()).unwrap();
    eprintln!("{report}");
    assert_eq!(report.epochs.len(), epochs);
    assert_eq!((report.input_size, report.out_size), (32, 32));
    let (first, last) = (&report.epochs[0], &report.epochs[epochs - 1]);
    assert!(
        last.train_mse < first.train_mse,
        "{} -> {}",
        first.train_mse,
        last.train_mse
    );
    assert!(
        last.test_mse < report.mean_image_mse,
        "test MSE {} not below the mean image's {}",
        last.test_mse,
        report.mean_image_mse
    );
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains("\"test_mse\""), "{json}");

    // The checkpoint loads for this network and cut, and decodes points to images.
    let b = CpuBackend::new();
    let net = FoldedResNet::load(&b, Arch::ResNet20, &weights).unwrap();
    let dec = load_decoder(&b, &a.out, &net, cut, 32).unwrap();
    let shape = point_shape(&b, &net, cut, 32).unwrap();
    assert_eq!(shape, report.in_shape);
    let n = DECODE_CHUNK + 3;
    let per: usize = shape.iter().product();
    let mut dims = vec![n];
    dims.extend(&shape);
    let z = Tensor::from_vec(
        &b,
        dims.as_slice(),
        (0..n * per).map(|i| (i % 11) as f32 * 0.05).collect(),
    )
    .unwrap();
    let images = decode(&b, &dec, &z).unwrap();
    assert_eq!(images.shape.dims(), &[n, 3, 32, 32]);
    let pixels = images.to_vec(&b).unwrap();
    assert!(pixels.iter().all(|p| (0.0..=1.0).contains(p)));
    // Chunked decoding agrees with one pass (up to rounding: the convolutions may group
    // the images of a batch differently).
    let whole = dec.decode(&b, &z).unwrap().to_vec(&b).unwrap();
    let worst = pixels
        .iter()
        .zip(&whole)
        .map(|(a, w)| (a - w).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "chunked and whole decoding differ by {worst}");

    // Not for another cut.
    let other = if cut == Cut::Pool { Cut::Layer(1) } else { Cut::Pool };
    let e = load_decoder(&b, &a.out, &net, other, 32)
        .err()
        .expect("another cut")
        .to_string();
    eprintln!("{e}");
    assert!(e.contains("cut") && e.contains(&format!("`{other}`")), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_pool_decoder_trains_and_decodes() {
    trains_and_decodes(Cut::Pool, 3);
}

#[test]
fn a_layer1_decoder_trains_and_decodes() {
    trains_and_decodes(Cut::Layer(1), 2);
}

#[test]
fn train_images_takes_a_prefix_of_the_train_split() {
    let dir = tmpdir("prefix");
    let weights = classifier(&dir);
    let a = DecoderTrainArgs {
        device: Default::default(),
        precision: Default::default(),
        train_images: Some(40),
        ..args(&dir, weights, "layer1", 1)
    };
    let report = train_decoder_on(&a, small_data()).unwrap();
    // 240 train images in the set; 40 asked for; batch 16 drops the last partial batch.
    assert_eq!(report.train_images, 40);
    assert_eq!(report.test_images, 60);
    // The report is written beside the checkpoint once training ends.
    let json = std::fs::read_to_string(a.out.with_extension("json")).unwrap();
    assert!(json.contains("\"train_images\": 40"), "{json}");
    let e = train_decoder_on(
        &DecoderTrainArgs {
            device: Default::default(),
            precision: Default::default(),
            train_images: Some(0),
            ..a
        },
        small_data(),
    )
    .expect_err("zero images")
    .to_string();
    assert!(e.contains("--train-images"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_arguments_are_refused_by_name() {
    let dir = tmpdir("bad");
    let weights = classifier(&dir);
    let run = |a: DecoderTrainArgs| {
        let e = train_decoder_on(&a, small_data()).expect_err("refused").to_string();
        eprintln!("{e}");
        e
    };

    let e = run(args(&dir, weights.clone(), "layer4", 1));
    assert!(e.contains("layer4") && e.contains("resnet20"), "{e}");
    let e = run(args(&dir, weights.clone(), "layer7", 1));
    assert!(e.contains("layer7"), "{e}");
    let e = run(DecoderTrainArgs {
        device: Default::default(),
        precision: Default::default(),
        filters_scale: 0.0,
        ..args(&dir, weights.clone(), "pool", 1)
    });
    assert!(e.contains("--filters-scale"), "{e}");
    let e = run(DecoderTrainArgs {
        device: Default::default(),
        precision: Default::default(),
        batch_size: Some(1),
        ..args(&dir, weights.clone(), "pool", 1)
    });
    assert!(e.contains("--batch-size"), "{e}");
    // A checkpoint of another architecture.
    let e = run(DecoderTrainArgs {
        device: Default::default(),
        precision: Default::default(),
        arch: "resnet56".into(),
        ..args(&dir, weights.clone(), "pool", 1)
    });
    assert!(e.contains("classifier.safetensors"), "{e}");
    // A decoder given as the classifier.
    let b = CpuBackend::new();
    let net = FoldedResNet::load(&b, Arch::ResNet20, &weights).unwrap();
    let src = mep_decoder::Source {
        arch: Arch::ResNet20,
        cut: Cut::Pool,
        input_size: 32,
        in_shape: point_shape(&b, &net, Cut::Pool, 32).unwrap(),
    };
    let dec_path = dir.join("dec.safetensors");
    let config = mep_decoder::DecoderConfig::paper(&src).unwrap().scaled(1.0 / 64.0);
    mep_decoder::Decoder::init(&b, config, 0)
        .unwrap()
        .save(&b, &dec_path, &Default::default())
        .unwrap();
    let e = run(args(&dir, dec_path.clone(), "pool", 1));
    assert!(e.contains("dec.safetensors") && e.contains("decoder checkpoint"), "{e}");
    // A classifier given as the decoder.
    let e = load_decoder(&b, &weights, &net, Cut::Pool, 32)
        .err()
        .expect("not a decoder")
        .to_string();
    assert!(e.contains("not a decoder"), "{e}");
    // The decoder for another input size.
    let e = load_decoder(&b, &dec_path, &net, Cut::Pool, 64)
        .err()
        .expect("size")
        .to_string();
    assert!(e.contains("input size"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
