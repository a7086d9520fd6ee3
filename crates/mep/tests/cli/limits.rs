//! Every numeric option of `mep train`, `mep eval`, `mep decoder train` and `mep forward`
//! at its extremes (0, 1, usize::MAX, negative, NaN, ±inf, huge): each is refused with exit
//! code 1 or 2 and a message naming the option, never a panic or an allocation abort, and
//! before any output folder is created. Configurations that cannot fit in memory are
//! refused by their estimate; `MEP_MEMORY_LIMIT` stands in for the machine's memory so
//! that no test depends on it.

use mep::data::{eval_transform, transform_metadata};
use mep_resnet::{save, Arch, ResNet};
use mep_tensor::{CpuBackend, Shape};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common;

const MAX: &str = "18446744073709551615";

fn tmpdir(tag: &str) -> PathBuf {
    common::tmpdir("limits", tag)
}

fn mep(args: &[&str], memory: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mep"))
        .args(args)
        .env("MEP_MEMORY_LIMIT", memory)
        .output()
        .unwrap()
}

/// A randomly initialised 10-class ResNet-20 of width 8, saved as `mep train` saves one.
fn classifier(dir: &Path) -> PathBuf {
    let b = CpuBackend::new();
    let model = ResNet::init(&b, Arch::ResNet20, 8, 10, 2).unwrap();
    let path = dir.join("classifier.safetensors");
    let classes: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    model
        .save_with(&b, &path, &[], &transform_metadata(&eval_transform(32), &classes))
        .unwrap();
    path
}

/// `mep train --arch <arch> --quiet --out <out>`.
fn train_cli<'a>(arch: &'a str, out: &'a Path) -> [&'a str; 6] {
    ["train", "--arch", arch, "--quiet", "--out", out.to_str().unwrap()]
}

/// Runs `base` + `extra` and checks the refusal: exit code 1 or 2, `names` in the message,
/// no panic, no name from the code.
fn refused(base: &[&str], extra: &[&str], names: &str, memory: &str) -> String {
    let args: Vec<&str> = base.iter().chain(extra).copied().collect();
    let o = mep(&args, memory);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    let code = o.status.code();
    assert!(
        matches!(code, Some(1) | Some(2)),
        "{extra:?}: exit {code:?} (1 or 2 expected); stderr: {err}"
    );
    assert!(!err.contains("panicked"), "{extra:?} panicked: {err}");
    for internal in ["add_assign", "chunk_size", "capacity overflow", "memory allocation"] {
        assert!(!err.contains(internal), "{extra:?}: `{internal}` in {err}");
    }
    assert!(
        err.contains(names),
        "{extra:?}: the message does not name {names}: {err}"
    );
    err
}

/// [`refused`] for every `value` of every `(option, values)` case, as `base option value`
/// with 8 GiB, the message naming the option; then `after` with the extra arguments.
fn refuses_each(base: &[&str], cases: &[(&str, &[&str])], after: impl Fn(&[&str])) {
    for (option, values) in cases {
        for value in *values {
            let extra = [*option, *value];
            refused(base, &extra, option, "8G");
            after(&extra);
        }
    }
}

/// Numbers are checked before the dataset is read: with a dataset that is missing, the
/// refusal of `option value` is the error, not the dataset.
fn refused_before_reading_the_data(base: &[&str], option: &str, value: &str) {
    let e = refused(base, &["--data", "/nonexistent/mep-data", option, value], option, "8G");
    assert!(!e.contains("nonexistent"), "{e}");
}

#[test]
fn train_refuses_every_extreme_numeric_option_by_name_before_creating_its_folder() {
    let dir = tmpdir("train");
    let out = dir.join("run");
    let base = train_cli("resnet20", &out);
    let not_created = |extra: &[&str]| assert!(!out.exists(), "{extra:?} created {}", out.display());
    let cases: &[(&str, &[&str])] = &[
        ("--epochs", &["0", "-1", MAX]),
        ("--batch-size", &["0", "1", MAX]),
        ("--lr", &["0", "-0.1", "NaN", "inf", "-inf", "1e39"]),
        ("--momentum", &["-0.1", "1", "2", "NaN", "inf"]),
        ("--weight-decay", &["-1", "NaN", "inf"]),
        ("--size", &["0", "1", "7", "100000", MAX]),
        // The last: an even width the shortcuts take, too wide for any machine.
        ("--width", &["0", "1", "3", MAX, "4611686018427387904"]),
        ("--stop-after", &["0"]),
        ("--seed", &["-1"]),
    ];
    refuses_each(&base, cases, not_created);
    // Two flags that cannot go together, the second named.
    let extra = ["--resume", "--overwrite"];
    refused(&base, &extra, "--overwrite", "8G");
    not_created(&extra);
    refused_before_reading_the_data(&base, "--lr", "-0.1");
    // The ImageNet ResNets take any width from 1; a huge one is refused by its memory.
    let base18 = train_cli("resnet18", &out);
    let e = refused(&base18, &["--width", MAX], "--width", "8G");
    assert!(e.contains("needs about") && e.contains("8.0 GiB available"), "{e}");
    refused(&base18, &["--width", "0"], "--width", "8G");
    assert!(!out.exists());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_configuration_beyond_the_memory_is_refused_saying_how_much_and_what_to_lower() {
    let dir = tmpdir("memory");
    let out = dir.join("run");
    let base = train_cli("resnet20", &out);
    // The case: --size 100000 aborted on allocation after the folder was made.
    let e = refused(&base, &["--size", "100000"], "--size", "22G");
    assert!(
        e.contains("--batch-size 128 at --size 100000 needs about") && e.contains("PiB"),
        "{e}"
    );
    assert!(
        e.contains("22 GiB available") && e.contains("lower --batch-size or --size"),
        "{e}"
    );
    // The same default configuration fits 8 GiB and not 1 MiB: the limit decides.
    let e = refused(&base, &[], "--batch-size", "1M");
    assert!(e.contains("1.0 MiB available"), "{e}");
    assert!(!out.exists());
    let e = refused(&base, &[], "MEP_MEMORY_LIMIT", "lots");
    assert!(e.contains("expected bytes"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn eval_refuses_every_extreme_numeric_option_by_name() {
    let dir = tmpdir("eval");
    let w = classifier(&dir);
    let base = ["eval", "--arch", "resnet20", "--weights", w.to_str().unwrap()];
    let cases: &[(&str, &[&str])] = &[("--batch-size", &["0", "-1"]), ("--size", &["0", "7", "100000", MAX])];
    refuses_each(&base, cases, |_| {});
    // usize::MAX as a batch is the whole split at once: it fits, so it runs.
    let o = mep(
        &[&base[..], &["--data", "synthetic:1", "--batch-size", MAX]].concat(),
        "8G",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // And a batch beyond the memory is refused by the estimate.
    refused(&base, &["--batch-size", MAX], "--batch-size", "1M");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn decoder_train_refuses_every_extreme_numeric_option_by_name_before_writing() {
    let dir = tmpdir("decoder");
    let w = classifier(&dir);
    let out = dir.join("dec").join("decoder.safetensors");
    let base = [
        "decoder",
        "train",
        "--arch",
        "resnet20",
        "--weights",
        w.to_str().unwrap(),
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ];
    let cases: &[(&str, &[&str])] = &[
        ("--epochs", &["0", MAX]),
        ("--batch-size", &["0", "1", MAX]),
        ("--lr", &["0", "-1", "NaN", "inf", "-inf"]),
        ("--filters-scale", &["0", "-1", "NaN", "inf", "1e30"]),
        ("--train-images", &["0"]),
        ("--size", &["0", "7", "100000", MAX]),
    ];
    refuses_each(&base, cases, |extra| {
        assert!(
            !out.parent().unwrap().exists(),
            "{extra:?} created the decoder's folder"
        )
    });
    refused_before_reading_the_data(&base, "--filters-scale", "0");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn forward_refuses_an_extreme_target_and_an_input_beyond_the_memory() {
    let dir = tmpdir("forward");
    let w = classifier(&dir);
    let input = dir.join("input.safetensors");
    let x = vec![0.5f32; 2 * 3 * 32 * 32];
    save(&input, &[("input", &Shape::new([2, 3, 32, 32]), &x)], None).unwrap();
    let out = dir.join("out.safetensors");
    let base = common::forward_args("resnet20", &w, &input, &[], &out);
    refused(&base, &["--target", MAX], "--target", "8G");
    refused(&base, &["--target", "-1"], "--target", "8G");
    let e = refused(&base, &[], "--input", "1K");
    assert!(e.contains("[2, 3, 32, 32]") && e.contains("needs about"), "{e}");
    assert!(!out.exists());
    // The same input fits 8 GiB.
    let o = mep(&base, "8G");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_dir_all(&dir).ok();
}
