//! Bad inputs give clear errors naming what is wrong, never a panic: a decoder made for
//! another cut, network, input size or width; a file that is not a decoder; a feature
//! count the pool decoder cannot reshape; points of the wrong shape. Also: a saved decoder
//! loads back to the same function.

use mep_decoder::{Decoder, DecoderConfig, DecoderError, Source};
use mep_resnet::{save, Arch, Cut, ResNet};
use mep_tensor::{CpuBackend, Shape, Tensor};
use std::path::PathBuf;

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mep-decoder-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn pool_source() -> Source {
    Source {
        arch: Arch::ResNet20,
        cut: Cut::Pool,
        input_size: 32,
        in_shape: vec![64],
    }
}

/// A small pool decoder for ResNet-20 saved under `dir`.
fn saved_pool_decoder(b: &CpuBackend, dir: &std::path::Path) -> (PathBuf, Decoder<CpuBackend>) {
    let config = DecoderConfig::paper(&pool_source()).unwrap().scaled(1.0 / 64.0);
    let dec = Decoder::init(b, config, 3).unwrap();
    let path = dir.join("dec.safetensors");
    dec.save(b, &path, &Default::default()).unwrap();
    (path, dec)
}

#[test]
fn a_saved_decoder_loads_back_to_the_same_function() {
    let b = CpuBackend::new();
    let dir = tmpdir("roundtrip");
    let (path, dec) = saved_pool_decoder(&b, &dir);
    let back = Decoder::load_for(&b, &path, &pool_source()).unwrap();
    assert_eq!(back.config, dec.config);
    let z = Tensor::from_vec(&b, [2, 64], (0..128).map(|i| (i % 7) as f32 * 0.1).collect()).unwrap();
    let (y0, y1) = (dec.decode(&b, &z).unwrap(), back.decode(&b, &z).unwrap());
    assert_eq!(y0.shape.dims(), &[2, 3, 32, 32]);
    assert_eq!(y0.to_vec(&b).unwrap(), y1.to_vec(&b).unwrap());
    assert!(y0.to_vec(&b).unwrap().iter().all(|v| (0.0..=1.0).contains(v)));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_decoder_for_another_cut_model_size_or_width_is_refused_by_name() {
    let b = CpuBackend::new();
    let dir = tmpdir("mismatch");
    let (path, _) = saved_pool_decoder(&b, &dir);
    let cases = [
        (
            Source {
                cut: Cut::Layer(3),
                in_shape: vec![64, 8, 8],
                ..pool_source()
            },
            "cut",
            "`layer3`",
        ),
        (
            Source {
                arch: Arch::ResNet56,
                ..pool_source()
            },
            "arch",
            "`resnet56`",
        ),
        (
            Source {
                input_size: 64,
                ..pool_source()
            },
            "input size",
            "64×64",
        ),
        (
            Source {
                in_shape: vec![32],
                ..pool_source()
            },
            "feature shape",
            "[32]",
        ),
    ];
    for (want, field, asked) in cases {
        let e = Decoder::load_for(&b, &path, &want).err().expect("a mismatch");
        let msg = e.to_string();
        match e {
            DecoderError::Mismatch { what, .. } => assert_eq!(what, field, "{msg}"),
            other => panic!("expected a mismatch of {field}, got {other}"),
        }
        assert!(msg.contains("dec.safetensors") && msg.contains(asked), "{msg}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_that_is_not_a_decoder_is_refused() {
    let b = CpuBackend::new();
    let dir = tmpdir("not");
    // A classifier checkpoint.
    let resnet = dir.join("resnet20.safetensors");
    ResNet::init(&b, Arch::ResNet20, 4, 10, 0)
        .unwrap()
        .save(&b, &resnet)
        .unwrap();
    let e = Decoder::load(&b, &resnet).err().expect("not a decoder");
    assert!(matches!(e, DecoderError::NotADecoder { .. }), "{e}");
    assert!(
        e.to_string().contains("resnet20.safetensors") && e.to_string().contains("mep.decoder"),
        "{e}"
    );
    // Not safetensors at all.
    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"not a checkpoint").unwrap();
    let e = Decoder::load(&b, &junk).err().expect("corrupt");
    assert!(e.to_string().contains("junk.safetensors"), "{e}");
    // Absent.
    let e = Decoder::load(&b, dir.join("absent.safetensors")).err().expect("absent");
    assert!(e.to_string().contains("absent.safetensors"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_decoder_file_with_a_missing_tensor_or_inconsistent_metadata_names_it() {
    let b = CpuBackend::new();
    let dir = tmpdir("missing");
    let (_, dec) = saved_pool_decoder(&b, &dir);
    let sd = dec.state_dict(&b).unwrap();
    let meta = dec.config.to_metadata();
    let without: Vec<(&str, &Shape, &[f32])> = sd
        .iter()
        .filter(|(k, _, _)| k != "groups.2.1.bn.running_var")
        .map(|(k, s, d)| (k.as_str(), s, d.as_slice()))
        .collect();
    let path = dir.join("missing.safetensors");
    save(&path, &without, Some(&meta)).unwrap();
    let e = Decoder::load(&b, &path).err().expect("missing tensor");
    assert!(e.to_string().contains("groups.2.1.bn.running_var"), "{e}");

    // Metadata that contradicts itself: 4 groups cannot make 64×64 from 4×4.
    let mut bad = meta.clone();
    bad.insert("mep.decoder.out_size".into(), "64".into());
    let all: Vec<(&str, &Shape, &[f32])> = sd.iter().map(|(k, s, d)| (k.as_str(), s, d.as_slice())).collect();
    let path = dir.join("bad_meta.safetensors");
    save(&path, &all, Some(&bad)).unwrap();
    let e = Decoder::load(&b, &path).err().expect("bad metadata");
    assert!(matches!(e, DecoderError::NotADecoder { .. }), "{e}");
    assert!(e.to_string().contains("64×64"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_feature_count_not_divisible_by_16_is_refused() {
    let e = DecoderConfig::paper(&Source {
        in_shape: vec![100],
        ..pool_source()
    })
    .unwrap_err();
    assert!(matches!(e, DecoderError::Config(_)), "{e}");
    assert!(e.to_string().contains("F = 100") && e.to_string().contains("16"), "{e}");
    // A spatial shape at `pool`, and a vector at a spatial cut.
    assert!(DecoderConfig::paper(&Source {
        in_shape: vec![64, 1, 1],
        ..pool_source()
    })
    .is_err());
    assert!(DecoderConfig::paper(&Source {
        cut: Cut::Layer(1),
        ..pool_source()
    })
    .is_err());
}

#[test]
fn points_of_the_wrong_shape_are_refused() {
    let b = CpuBackend::new();
    let config = DecoderConfig::paper(&pool_source()).unwrap().scaled(1.0 / 64.0);
    let dec = Decoder::init(&b, config, 3).unwrap();
    for shape in [vec![2, 48], vec![2, 64, 1, 1], vec![0, 64]] {
        let n: usize = shape.iter().product();
        let z = Tensor::from_vec(&b, shape.as_slice(), vec![0.0; n]).unwrap();
        let e = dec.decode(&b, &z).err().expect("wrong shape");
        assert!(e.to_string().contains("[N, 64]"), "{e}");
    }
}
