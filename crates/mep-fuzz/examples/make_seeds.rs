//! Writes the seed corpora of the fuzz targets: small valid files of every format, made
//! with mep's own writers where it has them.
//!
//! `cargo run -p mep-fuzz --example make_seeds -- fuzz/seeds` (the folder holds one
//! subfolder per target; files are overwritten). The committed seeds were made this way;
//! rerun it when a format changes.

use mep::certify::{CertificateRecord, Exact};
use mep::connect::{Category, EndpointSelection, Endpoints, Manifest, Pair, PairResult, Settings, Shard};
use mep_resnet::{Arch, ResNet};
use mep_tensor::{CpuBackend, Shape};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/seeds".into()));
    checkpoints(&out.join("checkpoint"))?;
    let tar = cifar_tar()?;
    write(&out.join("cifar_tar"), "tiny_cifar.tar", &tar)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar)?;
    write(&out.join("cifar_archive"), "tiny_cifar.tar.gz", &gz.finish()?)?;
    images(&out.join("image"))?;
    pairs(&out.join("pairs_file"))?;
    study(&out)?;
    Ok(())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), Error> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(name), bytes)?;
    Ok(())
}

/// A 2×3 tensor with metadata (the doc example), a width-1 ResNet-20 as `mep train` saves
/// one (with the input transform in its metadata), and F16 / BF16 tensors.
fn checkpoints(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir)?;
    let shape = Shape::new([2, 3]);
    let meta = BTreeMap::from([("arch".to_string(), "tiny".to_string())]);
    mep_resnet::save(
        dir.join("tiny.safetensors"),
        &[("fc.weight", &shape, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])],
        Some(&meta),
    )?;

    let b = CpuBackend::new();
    let net = ResNet::init(&b, Arch::ResNet20, 1, 3, 7)?;
    let t = mep::data::eval_transform(8);
    let classes = ["cat", "dog", "ship"].map(String::from);
    net.save_with(
        &b,
        dir.join("resnet20_w1.safetensors"),
        &[],
        &mep::data::transform_metadata(&t, &classes),
    )?;

    // Hand-made: mep's writer only writes F32, and checkpoints from PyTorch may be half.
    let header = br#"{"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"module.g":{"dtype":"BF16","shape":[1,1],"data_offsets":[4,6]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0x00, 0x3c, 0x00, 0xc0, 0x80, 0x3f]);
    write(dir, "half.safetensors", &bytes)
}

/// A CIFAR-10 archive's tar with two records in every batch.
fn cifar_tar() -> Result<Vec<u8>, Error> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |name: &str, bytes: &[u8]| -> Result<(), Error> {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        builder.append_data(&mut h, format!("cifar-10-batches-bin/{name}"), bytes)?;
        Ok(())
    };
    let classes = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";
    add("batches.meta.txt", classes.as_bytes())?;
    let names = mep_data::cifar::CIFAR10_TRAIN_BATCHES
        .iter()
        .copied()
        .chain([mep_data::cifar::CIFAR10_TEST_BATCH]);
    for (k, name) in names.enumerate() {
        let mut batch = Vec::new();
        for r in 0..2u8 {
            batch.push((k as u8 + r) % 10);
            batch.extend((0..3072u32).map(|p| (p as u8).wrapping_mul(r + 1)));
        }
        add(name, &batch)?;
    }
    Ok(builder.into_inner()?)
}

/// PNGs (RGB, grey with alpha, 16-bit, palette-free) and baseline JPEGs.
fn images(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir)?;
    let rgb = image::RgbImage::from_fn(5, 3, |x, y| image::Rgb([(x * 40) as u8, (y * 80) as u8, 7]));
    rgb.save(dir.join("rgb_5x3.png"))?;
    let la = image::GrayAlphaImage::from_fn(2, 2, |x, y| image::LumaA([(x + y) as u8 * 60, 200]));
    la.save(dir.join("grey_alpha_2x2.png"))?;
    let deep = image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(3, 2, |x, _| image::Rgb([x as u16 * 9000, 1, 65535]));
    deep.save(dir.join("rgb16_3x2.png"))?;
    let photo = image::RgbImage::from_fn(16, 8, |x, y| image::Rgb([(x * 16) as u8, (y * 32) as u8, 128]));
    photo.save(dir.join("rgb_16x8.jpg"))?;
    let grey = image::GrayImage::from_fn(8, 8, |x, y| image::Luma([(x * y * 4) as u8]));
    grey.save(dir.join("grey_8x8.jpg"))?;
    Ok(())
}

/// Pairs files against `mep_fuzz::pairs_labels` (image k is of class k % 3).
fn pairs(dir: &Path) -> Result<(), Error> {
    write(dir, "plain.csv", b"0,3\n1,4\n2,5\n")?;
    write(dir, "comments.csv", b"# i,j\n0,3 # cats\n\n  7 , 10\n36,39\n")?;
    write(dir, "bom_crlf.csv", "\u{feff}0,6\r\n4,1\r\n".as_bytes())?;
    Ok(())
}

/// A manifest, results and certificates of a two-pair study.
fn study(out: &Path) -> Result<(), Error> {
    let classes: Vec<String> = ["cat", "dog", "ship"].map(String::from).to_vec();
    let pair_list = vec![
        Pair {
            pair: 0,
            i: 0,
            j: 3,
            class: 0,
            class_name: "cat".into(),
            endpoints: Endpoints::Natural,
            true_class: None,
            predicted: None,
        },
        Pair {
            pair: 1,
            i: 1,
            j: 4,
            class: 1,
            class_name: "dog".into(),
            endpoints: Endpoints::MisclassifiedPredicted,
            true_class: Some(2),
            predicted: None,
        },
    ];
    let settings = Settings {
        arch: "resnet20".into(),
        weights_sha256: "ab".repeat(32),
        dataset: "synthetic".into(),
        classes: classes.clone(),
        test_images: 40,
        input_size: Some(32),
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        spaces: vec!["input".into(), "layer1".into()],
        pairs: Some(2),
        pairs_file_sha256: None,
        class_filter: vec![0, 1],
        allow_misclassified: false,
        endpoints: EndpointSelection::Correct,
        seed: 0,
        pivots: 8,
        sub_points: 4,
        optimizer: "adam".into(),
        step: 0.01,
        momentum: 0.9,
        spring: None,
        climbing_after: Some(0.5),
        fmax: Some(1e-3),
        check_every: 10,
        insert_threshold: Some(0.2),
        max_pivots: Some(32),
        max_steps: 100,
        precision: Default::default(),
    };
    let manifest = Manifest {
        tool: "mep 0.1.0".into(),
        settings,
        weights: "runs/r20/model.safetensors".into(),
        data: "synthetic".into(),
        shard: Some(Shard { index: 0, count: 2 }),
        batch: 64,
        pair_list,
        skipped: 1,
        merged_from: vec!["a".into(), "b".into()],
    };
    write(
        &out.join("manifest"),
        "manifest.json",
        (serde_json::to_string_pretty(&manifest)? + "\n").as_bytes(),
    )?;

    let result = |pair, space: &str, category| PairResult {
        pair,
        i: pair,
        j: pair + 3,
        class: pair,
        class_name: classes[pair].clone(),
        endpoints: Endpoints::Natural,
        true_class: None,
        predicted: None,
        space: space.into(),
        category,
        distance: Some(12.5),
        line_max_loss: Some(0.7),
        line_min_prob: Some(0.49),
        path_max_loss: Some(0.3),
        path_min_prob: Some(0.74),
        steps: 40,
        pivots: 8,
        length_ratio: Some(1.25),
        seconds: 0.5,
        path_file: Some(format!("paths/pair{pair:06}_{space}.safetensors")),
        message: (category == Category::Error).then(|| "NaN energy".to_string()),
        precision: Default::default(),
    };
    let results = [
        result(0, "input", Category::Linear),
        result(0, "layer1", Category::Nonlinear),
        result(1, "input", Category::NoPath),
        result(1, "layer1", Category::Error),
    ];
    let mut lines = String::new();
    for r in &results {
        lines += &(serde_json::to_string(r)? + "\n");
    }
    write(&out.join("results"), "results.jsonl", lines.as_bytes())?;
    // Killed while writing the last line.
    write(
        &out.join("results"),
        "torn.jsonl",
        &lines.as_bytes()[..lines.len() - 40],
    )?;

    let cert = |r: &PairResult, exact| CertificateRecord {
        pair: r.pair,
        space: r.space.clone(),
        i: r.i,
        j: r.j,
        class: r.class,
        category: r.category,
        exact,
        pieces: 321,
        min_margin: Some(0.25),
        min_margin_u: Some(0.5),
        refuted: if exact == Exact::Refuted {
            vec![(0.25, 0.5)]
        } else {
            Vec::new()
        },
        reason: (exact == Exact::Undecided).then(|| "the piece budget ran out".to_string()),
        max_pieces: 100_000,
        method: "exact".into(),
        intervals: 0,
        counterexample_u: None,
        counterexample_margin: None,
        margin_bound: None,
        max_intervals: 0,
        min_width: 0.0,
        tol: 1e-9,
        seconds: 0.125,
    };
    let mut lines = String::new();
    for (r, e) in results.iter().zip([Exact::Certified, Exact::Refuted, Exact::Undecided]) {
        lines += &(serde_json::to_string(&cert(r, e))? + "\n");
    }
    write(&out.join("certificates"), "certificates.jsonl", lines.as_bytes())
}
