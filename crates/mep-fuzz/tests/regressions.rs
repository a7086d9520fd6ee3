//! The inputs fuzzing found that once panicked, each checked for the clear error that
//! replaced the panic. The files live in `fuzz/regressions/<target>/`, where the smoke run
//! (and `cargo fuzz run <target> fuzz/regressions/<target>`) also replays them.

use mep::connect::Manifest;
use mep_resnet::{Arch, Checkpoint, ResNet};
use std::path::{Path, PathBuf};

fn regression(target: &str, name: &str) -> (PathBuf, Vec<u8>) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions")
        .join(target)
        .join(name);
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (p, bytes)
}

/// `"shard": {"index": 0, "count": 0}` parsed, and `Shard::contains` then divided by zero.
#[test]
fn a_manifest_with_zero_shards_is_refused() {
    let (p, bytes) = regression("manifest", "shard_count_zero.json");
    let e = Manifest::parse(&bytes, &p).unwrap_err().to_string();
    assert!(e.contains("manifest") && e.contains("shard 0/0"), "{e}");
    // The seed it came from, with a valid shard, still parses.
    let seed =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/manifest/manifest.json")).unwrap();
    let m = Manifest::parse(&seed, Path::new("manifest.json")).unwrap();
    assert_eq!(m.shard.map(|s| (s.index, s.count)), Some((0, 2)));
    let index_past_count = String::from_utf8(seed).unwrap().replace("\"index\": 0", "\"index\": 2");
    let e = Manifest::parse(index_past_count.as_bytes(), Path::new("m.json"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("shard 2/2"), "{e}");
}

/// An empty `conv1.weight` of shape [2^62, 0, 3, 3] parsed (it holds no values) and set the
/// stem width to 2^62: building ResNet-50 then overflowed computing its layer widths.
#[test]
fn a_checkpoint_declaring_an_absurd_stem_width_is_refused() {
    let (p, bytes) = regression("checkpoint", "empty_stem_of_width_2e62.safetensors");
    let backend = mep_tensor::CpuBackend::new();
    for arch in [Arch::ResNet50, Arch::ResNet18, Arch::ResNet20] {
        let ck = Checkpoint::from_bytes(&p, &bytes).unwrap();
        let Err(e) = ResNet::from_checkpoint(&backend, arch, ck) else {
            panic!("{} accepted a stem of width 2^62", arch.name());
        };
        let e = e.to_string();
        assert!(
            e.contains("conv1.weight")
                && e.contains("[4611686018427387904, 0, 3, 3]")
                && e.contains("width of 1 to 1048576"),
            "{e}"
        );
    }
}
