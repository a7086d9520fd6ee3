//! Issue 18's findings on study folders: one writer per folder (locks), resumption that
//! notices what is missing, `--certify` on resumed results, refusals before any work, and
//! `--threads` bounds. Each test reproduces a finding that the code before its fix got wrong.
//!
//! The model is a randomly initialised width-4 ResNet-20 on the ten-class synthetic set,
//! studied with `--allow-misclassified` in `pool` (the head there is affine, so every line
//! and certificate is immediate): what is tested is the folder's bookkeeping, not the
//! model.

use mep::connect::{connect_with, read_results, ConnectArgs, PairResult, RESULTS};
use mep::lock::{FolderLock, LOCK_FILE};
use mep::MepError;
use mep_data::{synthetic, Dataset, SyntheticConfig};
use mep_tensor::CpuBackend;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::common;

fn tmpdir(tag: &str) -> PathBuf {
    common::tmpdir("reliability", tag)
}

fn model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| common::random_resnet20(tmpdir("model").join("model.safetensors")))
}

fn data() -> Dataset {
    synthetic(&SyntheticConfig {
        seed: 5,
        train_per_class: 0,
        test_per_class: 6,
    })
}

fn study(out: &Path) -> ConnectArgs {
    let mut a = ConnectArgs::new("resnet20", model(), "synthetic", out);
    a.spaces = vec!["pool".into()];
    a.pairs = Some(3);
    a.allow_misclassified = true;
    a.pivots = 3;
    a.sub_points = 2;
    a.max_steps = 2;
    a.quiet = true;
    a
}

fn run(a: &ConnectArgs) -> mep::Result<mep::connect::ConnectReport> {
    connect_with(&CpuBackend::new(), a, &data())
}

fn results(dir: &Path) -> Vec<PairResult> {
    let mut r = read_results(&dir.join(RESULTS), false).unwrap().0;
    for x in &mut r {
        x.seconds = 0.0;
    }
    r.sort_by(|a, b| (a.pair, &a.space).cmp(&(b.pair, &b.space)));
    r
}

fn mep(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mep")).args(args).output().unwrap()
}

/// `mep connect` of the test model into `out` with `extra` options, under a memory limit
/// of 16 GiB (so that estimates do not depend on the machine).
fn connect_cli(out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mep"))
        .env("MEP_MEMORY_LIMIT", "16G")
        .args(["connect", "--arch", "resnet20", "--weights", model().to_str().unwrap()])
        .args(extra)
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a refusal: a non-zero exit, no panic, and a message holding each of `words`.
fn refused(o: &Output, words: &[&str]) {
    let e = stderr(o);
    assert!(!o.status.success(), "expected a refusal, got success; stderr: {e}");
    assert!(!e.contains("panicked"), "a panic: {e}");
    for w in words {
        assert!(e.contains(w), "expected {w:?} in: {e}");
    }
}

#[test]
fn a_second_writer_of_a_study_folder_is_refused_at_once_naming_the_first() {
    let dir = tmpdir("second-writer");
    let out = dir.join("study");
    let held = FolderLock::acquire(&out, "mep connect (the first)").unwrap();
    let me = std::process::id().to_string();
    // In this process (the library) ...
    match run(&study(&out)) {
        Err(MepError::Locked { holder, .. }) => {
            assert!(holder.contains(&me) && holder.contains("the first"), "{holder}")
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(!out.join(RESULTS).exists(), "the refused run wrote nothing");
    // ... and from other processes, for every command that writes the folder.
    let weights = model().to_str().unwrap();
    let o = out.to_str().unwrap();
    for args in [
        vec![
            "connect",
            "--arch",
            "resnet20",
            "--weights",
            weights,
            "--space",
            "pool",
            "--pairs",
            "2",
            "--allow-misclassified",
            "--out",
            o,
            "--quiet",
        ],
        vec!["merge", "--out", o, dir.join("nope").to_str().unwrap()],
    ] {
        refused(&mep(&args), &["is in use by", &me, "the first"]);
    }
    drop(held);
    // The lock is free again: the study runs, and then certify and report are refused
    // while someone else holds the folder.
    run(&study(&out)).unwrap();
    let _held = FolderLock::acquire(&out, "mep connect (again)").unwrap();
    refused(&mep(&["certify", o, "--quiet"]), &["is in use by", &me]);
    refused(&mep(&["report", o]), &["is in use by", &me]);
    // A shard being written is not merged half done.
    let merged = dir.join("merged");
    refused(
        &mep(&["merge", "--out", merged.to_str().unwrap(), o]),
        &["is in use by", &me],
    );
    std::fs::remove_dir_all(dir).ok();
}

/// A process that held the lock and was killed leaves its line in the lock file; the
/// kernel dropped its flock, so the next run takes the folder over.
#[test]
fn a_lock_left_by_a_killed_process_is_taken_over() {
    let dir = tmpdir("stale");
    let out = dir.join("study");
    std::fs::create_dir_all(&out).unwrap();
    // The flock(1) tool of util-linux holds a real lock in another process.
    let lock_file = out.join(LOCK_FILE);
    std::fs::write(&lock_file, "pid 4194304: mep connect (killed long ago)\n").unwrap();
    // `-o`: the lock stays with flock(1) itself, not with its child `sleep`; killing
    // flock's process group ends both.
    use std::os::unix::process::CommandExt;
    match Command::new("flock")
        .arg("-o")
        .arg(&lock_file)
        .args(["sleep", "600"])
        .process_group(0)
        .spawn()
    {
        Ok(mut child) => {
            // Wait until the child holds it: our own try is refused then.
            let mut waited = 0;
            while FolderLock::acquire(&out, "probe").is_ok() {
                std::thread::sleep(std::time::Duration::from_millis(20));
                waited += 1;
                assert!(waited < 3000, "flock(1) never took the lock");
            }
            assert!(matches!(run(&study(&out)), Err(MepError::Locked { .. })));
            let group = format!("-{}", child.id());
            Command::new("kill").args(["-9", "--", &group]).status().unwrap();
            child.wait().unwrap();
        }
        Err(e) => eprintln!("note: no flock(1) here ({e}); only the left-over line is tested"),
    }
    // Dead holder: taken over, and the lock file now names this process.
    let report = run(&study(&out)).unwrap();
    assert!(report.complete);
    let held = FolderLock::acquire(&out, "mep report (checking)").unwrap();
    let line = std::fs::read_to_string(held.path()).unwrap();
    assert!(line.starts_with(&format!("pid {}:", std::process::id())), "{line}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn connect_certify_certifies_resumed_results_and_says_so() {
    let dir = tmpdir("certify-resumed");
    let a = study(&dir);
    let first = run(&a).unwrap();
    assert!(first.complete && first.certified.is_none());
    let mut again = a.clone();
    again.certify = Some(mep::certify::CertifyArgs::new(PathBuf::new()));
    let second = run(&again).unwrap();
    // Before the fix: nothing computed, so nothing certified and nothing said.
    assert_eq!(second.computed, 0);
    assert_eq!(second.certified, Some(3), "{second}");
    assert!(second.to_string().contains("3 saved paths certified"), "{second}");
    let certs = mep::certify::read_certificates(&dir).unwrap();
    assert_eq!(certs.len(), 3);
    // A third run has nothing left to certify.
    assert_eq!(run(&again).unwrap().certified, Some(0));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn max_pieces_zero_is_refused_before_the_study_folder_exists() {
    let dir = tmpdir("max-pieces");
    let out = dir.join("study");
    let mut a = study(&out);
    a.certify = Some(mep::certify::CertifyArgs {
        max_pieces: 0,
        ..mep::certify::CertifyArgs::new(PathBuf::new())
    });
    let e = run(&a).unwrap_err().to_string();
    assert!(e.contains("--max-pieces 0") && !e.contains("max_pieces"), "{e}");
    assert!(!out.exists(), "refused before creating anything");
    // mep certify says the same in its option's name.
    run(&study(&out)).unwrap();
    let o = mep(&["certify", out.to_str().unwrap(), "--max-pieces", "0"]);
    refused(&o, &["--max-pieces 0"]);
    assert!(!stderr(&o).contains("max_pieces"));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_deleted_path_file_is_computed_again_on_resume_and_named_by_report() {
    let dir = tmpdir("deleted-path");
    let a = study(&dir);
    run(&a).unwrap();
    let before = results(&dir);
    let victim = before[1].path_file.clone().expect("a path file");
    std::fs::remove_file(dir.join(&victim)).unwrap();

    // report names the missing file instead of writing a report without it.
    let o = mep(&["report", dir.to_str().unwrap()]);
    refused(&o, &[&victim, "missing"]);

    let r = run(&a).unwrap();
    assert_eq!((r.computed, r.resumed), (1, 2), "{r}");
    assert!(dir.join(&victim).is_file(), "the path file is back");
    assert_eq!(results(&dir), before, "the same results, one line each");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn certify_and_report_on_a_folder_that_is_not_a_study_say_so() {
    let dir = tmpdir("not-a-study");
    for args in [
        vec!["certify", dir.to_str().unwrap()],
        vec!["report", dir.to_str().unwrap()],
    ] {
        let o = mep(&args);
        refused(&o, &["mep connect --out"]);
        assert!(!stderr(&o).contains("figures"), "{}", stderr(&o));
    }
    let o = mep(&["certify", dir.join("nope").to_str().unwrap()]);
    refused(&o, &["no such folder"]);
    assert!(!dir.join("nope").exists(), "a refused certify creates nothing");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn threads_beyond_a_sane_bound_are_refused_not_left_to_hang() {
    let dir = tmpdir("threads");
    for t in ["2000", "0"] {
        let o = mep(&[
            "--threads",
            t,
            "connect",
            "--arch",
            "resnet20",
            "--weights",
            model().to_str().unwrap(),
            "--out",
            dir.join("study").to_str().unwrap(),
        ]);
        refused(&o, &[&format!("--threads {t}")]);
        assert_eq!(o.status.code(), Some(2));
    }
    assert!(!dir.join("study").exists());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn huge_pivot_and_sub_point_counts_are_refused_before_any_work() {
    let dir = tmpdir("huge");
    let out = dir.join("study");
    let max = u64::MAX.to_string();
    for (flag, value) in [
        ("--pivots", max.as_str()),
        ("--sub-points", max.as_str()),
        ("--pivots", "100000000"),
    ] {
        let o = connect_cli(&out, &["--space", "pool", flag, value]);
        refused(&o, &[flag]);
        assert!(!out.exists(), "{flag} {value}: refused before creating the folder");
    }
    std::fs::remove_dir_all(dir).ok();
}

/// `--pivots 1000000` and `--size 100000` aborted on allocation after the study folder
/// was made; now the estimate refuses them first, saying what to lower. The machine's
/// memory is set by MEP_MEMORY_LIMIT so the outcome does not depend on the machine.
#[test]
fn a_study_beyond_the_memory_is_refused_before_its_folder_exists() {
    let dir = tmpdir("memory");
    let out = dir.join("study");
    for (flag, value, space) in [("--pivots", "1000000", "input"), ("--size", "100000", "pool")] {
        let o = connect_cli(&out, &["--space", space, flag, value]);
        refused(&o, &[flag, "needs about", "16 GiB", "lower"]);
        assert!(!out.exists(), "{flag} {value}: refused before creating the folder");
    }
    // The default study of the same model fits easily.
    let o = connect_cli(
        &out,
        &["--space", "pool", "--pairs", "1", "--allow-misclassified", "--quiet"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::remove_dir_all(dir).ok();
}

/// `train --out`, `decoder train --out` and `forward --out` hold their output too.
#[test]
fn train_decoder_and_forward_refuse_an_output_in_use() {
    let dir = tmpdir("outputs-in-use");
    let me = std::process::id().to_string();
    let run_dir = dir.join("run");
    let _held = FolderLock::acquire(&run_dir, "mep train (the first)").unwrap();
    let o = mep(&[
        "train",
        "--arch",
        "resnet20",
        "--width",
        "4",
        "--epochs",
        "1",
        "--out",
        run_dir.to_str().unwrap(),
        "--quiet",
    ]);
    refused(&o, &["is in use by", &me, "the first"]);
    assert!(!run_dir.join("checkpoint.safetensors").exists());

    let dec = dir.join("decoders").join("pool.safetensors");
    let _held_dec = FolderLock::acquire_file(&dec, "mep decoder train (the first)").unwrap();
    let o = mep(&[
        "decoder",
        "train",
        "--arch",
        "resnet20",
        "--weights",
        model().to_str().unwrap(),
        "--cut",
        "pool",
        "--epochs",
        "1",
        "--train-images",
        "16",
        "--batch-size",
        "8",
        "--filters-scale",
        "0.125",
        "--out",
        dec.to_str().unwrap(),
        "--quiet",
    ]);
    refused(&o, &["is in use by", &me]);
    assert!(!dec.exists());

    let input = dir.join("input.safetensors");
    let shape = mep_tensor::Shape::new([1, 3, 32, 32]);
    mep_resnet::save(&input, &[("input", &shape, &vec![0.0f32; 3 * 32 * 32])], None).unwrap();
    let logits = dir.join("logits.safetensors");
    let _held_fwd = FolderLock::acquire_file(&logits, "mep forward (the first)").unwrap();
    let o = mep(&[
        "forward",
        "--arch",
        "resnet20",
        "--weights",
        model().to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--out",
        logits.to_str().unwrap(),
    ]);
    refused(&o, &["is in use by", &me]);
    assert!(!logits.exists());
    std::fs::remove_dir_all(dir).ok();
}

/// The extremes of connect's and certify's options are refused by the option's own name,
/// before the study folder exists (the issue's `max_pieces`-style names and misleading
/// "non-negative" for infinity included).
#[test]
fn extreme_connect_and_certify_options_are_refused_by_name() {
    let dir = tmpdir("extremes");
    let out = dir.join("study");
    let max = u64::MAX.to_string();
    for (extra, words) in [
        (
            vec!["--insert-threshold", "0.1", "--max-pivots", &max],
            vec!["--max-pivots"],
        ),
        (vec!["--fmax", "inf"], vec!["--fmax inf", "finite"]),
        (
            vec!["--insert-threshold", "inf"],
            vec!["--insert-threshold inf", "finite"],
        ),
        (vec!["--size", "0"], vec!["--size 0"]),
        (vec!["--momentum", "NaN"], vec!["--momentum NaN"]),
        (vec!["--batch", &max], vec!["--batch", "needs about"]),
        (vec!["--certify", "--max-pieces", "0"], vec!["--max-pieces 0"]),
    ] {
        let mut args = vec!["--space", "pool", "--quiet"];
        args.extend(extra.iter().copied());
        let o = connect_cli(&out, &args);
        refused(&o, &words);
        assert!(!out.exists(), "{extra:?}: refused before creating the folder");
    }
    run(&study(&out)).unwrap();
    for tol in ["1", "-1", "NaN", "inf"] {
        let o = mep(&["certify", out.to_str().unwrap(), &format!("--tol={tol}")]);
        refused(&o, &["--tol", "[0, 1)"]);
    }
    std::fs::remove_dir_all(dir).ok();
}
