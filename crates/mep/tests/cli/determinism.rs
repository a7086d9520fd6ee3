//! A short training and a connect study of the model it made, certified as it goes, give
//! the same bits with one thread or two, and on an AVX2 CPU as on this one (under `qemu-x86_64 -cpu Haswell` when
//! it is installed; `.ci/run` installs it). What the README promises under "What you can
//! rely on: determinism".

use mep::connect::{connect_with, read_results, ConnectArgs, RESULTS};
use mep::train::{train_on, TrainArgs};
use mep_data::{synthetic, SyntheticConfig};
use mep_resnet::Checkpoint;
use mep_tensor::CpuBackend;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;

/// Set in the child process: the folder it works in.
const CHILD_ENV: &str = "MEP_DETERMINISM_CHILD_DIR";
const DIGEST: &str = "DIGEST ";

fn tmpdir(tag: &str) -> PathBuf {
    common::tmpdir("determinism", tag)
}

/// FNV-1a over the bits of `v`: a short stand-in for the values in a comparison.
fn fnv(v: &[f32]) -> u64 {
    v.iter()
        .flat_map(|x| x.to_bits().to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
        })
}

fn tensors(path: &Path) -> Vec<String> {
    let ck = Checkpoint::load(path).unwrap();
    let mut keys: Vec<&str> = ck.keys().collect();
    keys.sort_unstable();
    keys.iter()
        .map(|k| {
            format!(
                "{} {k} {:016x}",
                path.file_name().unwrap().to_string_lossy(),
                fnv(&ck.get(k).unwrap().data)
            )
        })
        .collect()
}

/// Trains a width-4 ResNet-20 for one epoch on a small synthetic set and runs a short study
/// of it in two spaces, in `dir`; returns what must be bit-identical: the trained tensors,
/// the epoch losses, every result (wall times aside) and every saved path.
fn study(dir: &Path) -> Vec<String> {
    let data = || {
        synthetic(&SyntheticConfig {
            seed: 5,
            train_per_class: 6,
            test_per_class: 3,
        })
    };
    let train = TrainArgs {
        batch_size: 16,
        lr: 5e-3,
        augment: true,
        width: Some(4),
        seed: 3,
        // One epoch: a second runs the same kernels again, and under qemu (where the AVX2
        // check runs this) each epoch costs about 30 s on 2 cores.
        ..common::train_args("synthetic", dir.join("train"), 1)
    };
    let report = train_on(&train, data()).unwrap();
    let mut digest = tensors(&report.model);
    for e in &report.epochs {
        digest.push(format!("epoch {} loss {:016x}", e.epoch, e.train_loss.to_bits()));
    }
    let out = dir.join("study");
    let mut a = ConnectArgs::new("resnet20", &report.model, "synthetic", &out);
    a.spaces = vec!["input".into(), "layer2".into()];
    a.pairs = Some(2);
    a.allow_misclassified = true;
    common::short_search(&mut a, 4, 3, 4, 9);
    // Certified as the study goes: ExactLine's f64 GEMMs take the same fixed-order path.
    a.certify = Some(mep::certify::CertifyArgs {
        max_pieces: 300,
        ..mep::certify::CertifyArgs::new(PathBuf::new())
    });
    connect_with(&CpuBackend::new(), &a, &data()).unwrap();
    let mut certs = mep::certify::read_certificates(&out).unwrap();
    assert!(!certs.is_empty());
    certs.sort_by(|x, y| (x.pair, &x.space).cmp(&(y.pair, &y.space)));
    for mut c in certs {
        c.seconds = 0.0;
        digest.push(serde_json::to_string(&c).unwrap());
    }
    let (mut results, torn) = read_results(&out.join(RESULTS), false).unwrap();
    assert!(torn.is_none());
    results.sort_by(|x, y| (x.pair, &x.space).cmp(&(y.pair, &y.space)));
    for mut r in results {
        r.seconds = 0.0;
        if let Some(f) = &r.path_file {
            digest.extend(tensors(&out.join(f)));
        }
        digest.push(serde_json::to_string(&r).unwrap());
    }
    digest
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn a_training_and_study_are_bit_identical_with_one_and_two_threads() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = tmpdir("threads");
    let one = in_pool(1, || study(&dir.join("one")));
    let two = in_pool(2, || study(&dir.join("two")));
    assert!(one.len() > 10, "{one:?}");
    assert_eq!(one.len(), two.len());
    for (a, b) in one.iter().zip(&two) {
        assert_eq!(a, b, "1 thread and 2 differ");
    }
    std::fs::remove_dir_all(dir).ok();
}

/// Whether the CPU has AVX-512F; the macro exists on x86 only, and elsewhere the child never runs.
fn has_avx512f() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// In the child (under qemu), prints the digest; in the parent, compares it with its own.
#[test]
fn a_training_and_study_are_bit_identical_on_an_avx2_cpu() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        println!("{DIGEST}avx512f {}", has_avx512f());
        for line in in_pool(2, || study(Path::new(&dir))) {
            println!("{DIGEST}{line}");
        }
        return;
    }
    if !cfg!(target_arch = "x86_64") {
        eprintln!("note: not an x86-64 machine; the AVX2 comparison does not apply");
        return;
    }
    let qemu = Command::new("qemu-x86_64").arg("-version").output();
    if !qemu.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "note: qemu-x86_64 is not installed (apt-get install qemu-user): \
             the AVX2 comparison is skipped"
        );
        return;
    }
    let dir = tmpdir("isa");
    let native = in_pool(2, || study(&dir.join("native")));
    let exe = std::env::current_exe().unwrap();
    // Haswell: AVX2 and FMA, no AVX-512, so gemm takes its AVX2 kernels.
    let out = Command::new("qemu-x86_64")
        .args(["-cpu", "Haswell"])
        .arg(&exe)
        .args([
            "--exact",
            "determinism::a_training_and_study_are_bit_identical_on_an_avx2_cpu",
            "--nocapture",
        ])
        .env(CHILD_ENV, dir.join("haswell"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the child under qemu failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout.lines().filter_map(|l| l.strip_prefix(DIGEST));
    assert_eq!(
        lines.next(),
        Some("avx512f false"),
        "the child must run without AVX-512"
    );
    let emulated: Vec<String> = lines.map(str::to_string).collect();
    assert_eq!(native.len(), emulated.len(), "{emulated:?}");
    for (a, b) in native.iter().zip(&emulated) {
        assert_eq!(a, b, "this CPU and an AVX2 one differ");
    }
    std::fs::remove_dir_all(dir).ok();
}
