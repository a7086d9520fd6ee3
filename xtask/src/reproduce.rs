//! `cargo xtask reproduce`: the whole study, end to end, as one command.
//!
//! Each step is a `mep` command whose output is cached in the run directory, so a rerun
//! resumes where the last one stopped: training continues from its checkpoint (and is
//! skipped once finished), `mep connect` skips the results it already has, and downloads
//! stay in the mep-fetch cache.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// One way of running the study.
pub struct Preset {
    pub name: &'static str,
    pub about: &'static str,
    pub arch: &'static str,
    /// `--data` of the mep commands.
    pub data: &'static str,
    /// Entries of weights/manifest.json that must be downloaded first.
    pub fetch: &'static [&'static str],
    /// The manifest entry of the initial weights, if fine-tuning.
    pub init: Option<&'static str>,
    /// Arguments of `mep train` besides arch, data, init and out.
    pub train: &'static [&'static str],
    pub spaces: &'static str,
    pub pairs: usize,
    /// Arguments of `mep connect` besides the ones above.
    pub connect: &'static [&'static str],
    /// Decoders to train for the report's figures: the cut, and arguments of
    /// `mep decoder train` besides arch, weights, data, cut and out.
    pub decoders: &'static [(&'static str, &'static [&'static str])],
    /// `mep certify --max-pieces`: the affine pieces per segment before a path is undecided.
    pub certify_max_pieces: usize,
    /// Arguments of `mep graph` besides arch, weights, data and out: a small class graph
    /// in DIR/graph that the report shows (none: no graph step).
    pub graph: Option<&'static [&'static str]>,
    /// The model is shipped in the repository ([`crate::shipped`]) and trained only with
    /// `--retrain` or when the files are missing.
    pub shipped: bool,
}

/// CPU-sized decoders (1/8 of the paper's filters) on part of the training split: enough
/// for `layer1` images that resemble the inputs in under a minute.
const QUICK_DECODERS: &[(&str, &[&str])] = &[
    (
        "layer1",
        &["--filters-scale", "0.125", "--epochs", "2", "--train-images", "3000"],
    ),
    (
        "pool",
        &[
            "--filters-scale",
            "0.125",
            "--epochs",
            "2",
            "--batch-size",
            "32",
            "--train-images",
            "3000",
        ],
    ),
];

/// The presets, the default first.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "demo",
        about: "offline, CPU, minutes: ResNet-20 trained here on the synthetic shapes set",
        arch: "resnet20",
        data: "synthetic",
        fetch: &[],
        init: None,
        train: &[
            "--epochs",
            "8",
            "--optimizer",
            "sgd",
            "--lr",
            "0.05",
            "--weight-decay",
            "5e-4",
        ],
        spaces: "input,layer1,pool",
        pairs: 25,
        connect: &[],
        decoders: QUICK_DECODERS,
        // Input-space segments of a ResNet-20 have 10^4-10^5 pieces: a small budget keeps the
        // demo in minutes (those paths come out undecided; `pool` is certified at once).
        certify_max_pieces: 500,
        // Twenty circles in three spaces: seconds on 2 cores.
        graph: Some(&["--class", "0", "--images", "20", "--space", "input,layer1,pool"]),
        shipped: true,
    },
    Preset {
        name: "cifar",
        about: "CIFAR-10 at 32x32, ResNet-20 trained from scratch; CPU-friendly (about an hour on 2 cores)",
        arch: "resnet20",
        data: "cifar10",
        fetch: &["cifar-10-binary"],
        init: None,
        train: &[
            "--epochs",
            "30",
            "--optimizer",
            "sgd",
            "--lr",
            "0.1",
            "--weight-decay",
            "5e-4",
        ],
        spaces: "input,layer1,pool",
        pairs: 25,
        connect: &[],
        decoders: &[
            ("layer1", &["--filters-scale", "0.125", "--epochs", "2"]),
            ("pool", &["--filters-scale", "0.125", "--epochs", "2", "--batch-size", "32"]),
        ],
        certify_max_pieces: 2000,
        graph: Some(&["--class", "0", "--images", "20", "--space", "input,layer1,pool"]),
        shipped: false,
    },
    Preset {
        name: "paper",
        about: "the paper's set-up: torchvision's ImageNet ResNet-50 fine-tuned on CIFAR-10 at 224x224 with Adam; for a GPU",
        arch: "resnet50",
        data: "cifar10",
        fetch: &["resnet50.tv_in1k", "cifar-10-binary"],
        init: Some("resnet50.tv_in1k"),
        train: &[
            "--size",
            "224",
            "--epochs",
            "3",
            "--optimizer",
            "adam",
            "--lr",
            "1e-4",
            "--batch-size",
            "32",
        ],
        spaces: "input,layer1,pool",
        pairs: 25,
        connect: &["--batch", "32"],
        // The paper's decoders (Tables 2-4), at full width.
        decoders: &[("layer1", &[]), ("pool", &[])],
        certify_max_pieces: 100_000,
        graph: None,
        shipped: false,
    },
];

/// The options of `cargo xtask reproduce`.
pub struct Options {
    pub preset: &'static Preset,
    pub out: PathBuf,
    pub threads: Option<usize>,
    pub pairs: Option<usize>,
    pub quiet: bool,
    /// `mep --device`: cpu (default), cuda or auto.
    pub device: String,
    /// Train the model even where the preset ships one.
    pub retrain: bool,
}

pub const USAGE: &str =
    "cargo xtask reproduce [--preset demo|cifar|paper] [--out DIR] [--pairs N] [--threads N] [--device cpu|cuda|auto] [--retrain] [--quiet]";

impl Options {
    /// Parses the arguments after `reproduce`.
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut preset = &PRESETS[0];
        let mut out = None;
        let mut threads = None;
        let mut pairs = None;
        let mut quiet = false;
        let mut retrain = false;
        let mut device = "cpu".to_string();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |flag: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value; usage: {USAGE}"))
            };
            match a.as_str() {
                "--preset" => {
                    let v = value("--preset")?;
                    preset = PRESETS.iter().find(|p| p.name == v).ok_or_else(|| {
                        let names: Vec<_> = PRESETS.iter().map(|p| p.name).collect();
                        format!("unknown preset `{v}`; presets are {}", names.join(", "))
                    })?;
                }
                "--out" => out = Some(PathBuf::from(value("--out")?)),
                "--threads" => threads = Some(parse_count("--threads", &value("--threads")?)?),
                "--pairs" => pairs = Some(parse_count("--pairs", &value("--pairs")?)?),
                "--quiet" => quiet = true,
                "--retrain" => retrain = true,
                "--device" => {
                    device = value("--device")?;
                    if !["cpu", "cuda", "auto"].contains(&device.as_str()) {
                        return Err(format!("--device {device}: expected cpu, cuda or auto"));
                    }
                }
                "-h" | "--help" => return Err(help()),
                other => return Err(format!("unknown argument `{other}`; usage: {USAGE}")),
            }
        }
        let out = out.unwrap_or_else(|| PathBuf::from("runs/reproduce").join(preset.name));
        Ok(Options {
            preset,
            out,
            threads,
            pairs,
            quiet,
            device,
            retrain,
        })
    }
}

fn parse_count(flag: &str, v: &str) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{flag} {v}: expected a positive integer")),
    }
}

fn help() -> String {
    let mut s = format!("usage: {USAGE}\npresets:\n");
    for p in PRESETS {
        s.push_str(&format!("  {:<6} {}\n", p.name, p.about));
    }
    s
}

/// The `mep` binary that `cargo build --release -p mep` produces.
pub fn mep_binary(root: &Path) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_absolute() { t } else { root.join(t) })
        .unwrap_or_else(|| root.join("target"));
    target
        .join("release")
        .join(format!("mep{}", std::env::consts::EXE_SUFFIX))
}

/// True when `mep train` already finished all `epochs` in `dir` (its report.json lists them).
fn training_finished(dir: &Path, epochs: usize) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("report.json")) else {
        return false;
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return false;
    };
    v.get("epochs").and_then(|e| e.as_array()).map(|e| e.len()) == Some(epochs)
        && dir.join("model.safetensors").exists()
}

fn flag_value<'a>(args: &'a [&str], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| *a == flag)
        .and_then(|i| args.get(i + 1))
        .copied()
}

/// `mep train` with the preset's recipe, without `--init`, `--out` and the run's options:
/// what the shipped demo weights record as their recipe.
pub fn train_command(p: &Preset) -> Vec<String> {
    ["train", "--arch", p.arch, "--data", p.data]
        .iter()
        .chain(p.train)
        .map(|s| s.to_string())
        .collect()
}

/// One step of the run, as recorded in `reproduce.json`.
#[derive(serde::Serialize)]
struct Step {
    name: String,
    command: String,
    seconds: f64,
    cached: bool,
}

/// Runs the preset; returns the run directory.
pub fn reproduce(
    root: &Path,
    opts: &Options,
    run: impl Fn(&mut Command) -> Result<(), String>,
) -> Result<PathBuf, String> {
    let p = opts.preset;
    let started = Instant::now();
    let out = crate::out_dir(root, &opts.out)?;
    eprintln!("xtask: preset `{}`: {}", p.name, p.about);
    eprintln!("xtask: run directory {}", out.display());
    let mut steps = Vec::new();

    let t = Instant::now();
    run(Command::new("cargo").args(["build", "--release", "-p", "mep"]))?;
    steps.push(Step {
        name: "build".into(),
        command: "cargo build --release -p mep".into(),
        seconds: t.elapsed().as_secs_f64(),
        cached: false,
    });
    let mep = mep_binary(root);
    let mep_cmd = |args: &[String]| {
        let mut c = Command::new(&mep);
        if let Some(t) = opts.threads {
            c.arg("--threads").arg(t.to_string());
        }
        c.arg("--device").arg(&opts.device);
        c.args(args);
        c
    };

    for name in p.fetch {
        let t = Instant::now();
        let manifest = mep_fetch::Manifest::builtin();
        let entry = manifest.get(name).map_err(|e| e.to_string())?;
        let path = mep_fetch::fetch(entry, &mep_fetch::cache_dir(), &mep_fetch::FetchOptions::default())
            .map_err(|e| format!("{e}\n(the `{}` preset needs downloads; `demo` runs offline)", p.name))?;
        steps.push(Step {
            name: format!("fetch {name}"),
            command: format!("cargo xtask fetch {name}"),
            seconds: t.elapsed().as_secs_f64(),
            cached: false,
        });
        eprintln!("xtask: {name}: {}", path.display());
    }

    // Train (or fine-tune) the classifier.
    let model_dir = out.join("model");
    let epochs: usize = flag_value(p.train, "--epochs")
        .and_then(|e| e.parse().ok())
        .unwrap_or(10);
    let mut train = train_command(p);
    if let Some(init) = p.init {
        let manifest = mep_fetch::Manifest::builtin();
        let entry = manifest.get(init).map_err(|e| e.to_string())?;
        train.push("--init".into());
        train.push(mep_fetch::cache_dir().join(&entry.file).display().to_string());
    }
    train.extend(["--out".to_string(), model_dir.display().to_string(), "--resume".into()]);
    if opts.quiet {
        train.push("--quiet".into());
    }
    let t = Instant::now();
    if opts.retrain && model_dir.join(crate::shipped::MARKER).exists() {
        // Decoders and results made with the shipped model would not match a retrained one.
        let others = std::fs::read_dir(&out)
            .map_err(|e| format!("{}: {e}", out.display()))?
            .filter_map(|e| e.ok())
            .any(|e| e.file_name() != "model");
        if others {
            return Err(format!(
                "--retrain: {} holds a study of the shipped model; pass a new --out",
                out.display()
            ));
        }
        crate::shipped::uninstall(&model_dir)?;
    }
    let mut cached = training_finished(&model_dir, epochs);
    if !cached && p.shipped && !opts.retrain {
        cached = crate::shipped::install(root, &model_dir)?.is_some();
    }
    // Also on a rerun, whose model an earlier run installed.
    let installed = if cached {
        crate::shipped::installed(&model_dir)?
    } else {
        None
    };
    let shipped = installed.map(|r| {
        format!(
            "shipped {}.safetensors, made by `mep {}` at {}",
            crate::shipped::STEM,
            r.recipe.join(" "),
            r.commit
        )
    });
    if let Some(s) = &shipped {
        eprintln!("xtask: using the {s}; --retrain trains it here");
    } else if cached {
        eprintln!(
            "xtask: {} is trained already ({epochs} epochs); skipping",
            model_dir.display()
        );
    } else {
        run(&mut mep_cmd(&train))?;
    }
    steps.push(Step {
        name: "train".into(),
        command: shipped.unwrap_or_else(|| format!("mep {}", train.join(" "))),
        seconds: t.elapsed().as_secs_f64(),
        cached,
    });

    // Decoders for the figures of latent paths, in DIR/decoders/CUT.safetensors where the
    // report looks for them; CUT.json appears when one has finished training.
    for (cut, extra) in p.decoders {
        let path = out.join("decoders").join(format!("{cut}.safetensors"));
        let mut args: Vec<String> = ["decoder", "train", "--arch", p.arch, "--weights"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend([
            model_dir.join("model.safetensors").display().to_string(),
            "--data".into(),
            p.data.into(),
            "--cut".into(),
            cut.to_string(),
            "--out".into(),
            path.display().to_string(),
        ]);
        args.extend(extra.iter().map(|s| s.to_string()));
        if opts.quiet {
            args.push("--quiet".into());
        }
        let t = Instant::now();
        let cached = path.with_extension("json").exists();
        if cached {
            eprintln!("xtask: the {cut} decoder is trained already; skipping");
        } else {
            run(&mut mep_cmd(&args))?;
        }
        steps.push(Step {
            name: format!("decoder {cut}"),
            command: format!("mep {}", args.join(" ")),
            seconds: t.elapsed().as_secs_f64(),
            cached,
        });
    }

    // The path search, in the run directory itself.
    let weights = model_dir.join("model.safetensors");
    let pairs = opts.pairs.unwrap_or(p.pairs).to_string();
    // `mep COMMAND --arch A --weights W --data D REST…`: connect's and graph's command lines.
    let on_model = |command: &str, rest: &[&str]| -> Vec<String> {
        let weights = weights.display().to_string();
        let head = [command, "--arch", p.arch, "--weights", &weights, "--data", p.data];
        head.iter().chain(rest).map(|s| s.to_string()).collect()
    };
    let mut connect = on_model(
        "connect",
        &[
            "--space",
            p.spaces,
            "--pairs",
            &pairs,
            "--out",
            &out.display().to_string(),
        ],
    );
    connect.extend(p.connect.iter().map(|s| s.to_string()));
    if opts.quiet {
        connect.push("--quiet".into());
    }
    let t = Instant::now();
    run(&mut mep_cmd(&connect))?;
    steps.push(Step {
        name: "connect".into(),
        command: format!("mep {}", connect.join(" ")),
        seconds: t.elapsed().as_secs_f64(),
        cached: false,
    });

    // Exact certification of the saved paths (resumes like connect).
    let certify = vec![
        "certify".to_string(),
        out.display().to_string(),
        "--max-pieces".into(),
        p.certify_max_pieces.to_string(),
        "--quiet".into(),
    ];
    let t = Instant::now();
    run(&mut mep_cmd(&certify))?;
    steps.push(Step {
        name: "certify".into(),
        command: format!("mep {}", certify.join(" ")),
        seconds: t.elapsed().as_secs_f64(),
        cached: false,
    });

    // A class graph in DIR/graph (resumes like connect); the report shows it.
    if let Some(extra) = p.graph {
        let mut graph = on_model("graph", &["--out", &out.join("graph").display().to_string()]);
        graph.extend(extra.iter().map(|s| s.to_string()));
        if opts.quiet {
            graph.push("--quiet".into());
        }
        let t = Instant::now();
        run(&mut mep_cmd(&graph))?;
        steps.push(Step {
            name: "graph".into(),
            command: format!("mep {}", graph.join(" ")),
            seconds: t.elapsed().as_secs_f64(),
            cached: false,
        });
    }

    // The report reads reproduce.json for the preset and the timings, so write it first
    // and again with the report's own time.
    let write_record = |steps: &[Step]| -> Result<(), String> {
        let record = serde_json::json!({
            "preset": p.name,
            "about": p.about,
            "steps": steps,
            "seconds": started.elapsed().as_secs_f64(),
        });
        let path = out.join("reproduce.json");
        std::fs::write(&path, serde_json::to_string_pretty(&record).unwrap_or_default())
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    write_record(&steps)?;
    let t = Instant::now();
    let report = vec!["report".to_string(), out.display().to_string()];
    steps.push(Step {
        name: "report".into(),
        command: format!("mep {}", report.join(" ")),
        seconds: 0.0,
        cached: false,
    });
    write_record(&steps)?;
    run(&mut mep_cmd(&report))?;
    if let Some(last) = steps.last_mut() {
        last.seconds = t.elapsed().as_secs_f64();
    }
    write_record(&steps)?;
    eprintln!("xtask: report: {}", out.join("report.html").display());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::words as args;

    #[test]
    fn the_default_is_the_offline_demo() {
        let o = Options::parse(&[]).unwrap();
        assert_eq!(o.preset.name, "demo");
        assert!(
            o.preset.fetch.is_empty() && o.preset.init.is_none(),
            "demo must not download"
        );
        assert_eq!(o.out, PathBuf::from("runs/reproduce/demo"));
    }

    #[test]
    fn presets_and_options_parse() {
        let o = Options::parse(&args(&[
            "--preset",
            "paper",
            "--pairs",
            "5",
            "--threads",
            "2",
            "--device",
            "auto",
            "--quiet",
            "--retrain",
        ]))
        .unwrap();
        assert_eq!(
            (o.preset.name, o.pairs, o.threads, o.quiet, o.device.as_str(), o.retrain),
            ("paper", Some(5), Some(2), true, "auto", true)
        );
        assert!(!Options::parse(&[]).unwrap().retrain);
        assert!(Options::parse(&args(&["--device", "tpu"])).is_err());
        // The paper's set-up: ResNet-50 from ImageNet weights, input, layer1 and pool.
        assert_eq!(o.preset.arch, "resnet50");
        assert_eq!(o.preset.init, Some("resnet50.tv_in1k"));
        assert_eq!(o.preset.spaces, "input,layer1,pool");
        for p in PRESETS {
            let epochs = flag_value(p.train, "--epochs").and_then(|e| e.parse::<usize>().ok());
            assert!(epochs.is_some_and(|e| e > 0), "{}: --epochs must be given", p.name);
        }
    }

    #[test]
    fn bad_arguments_are_named() {
        let e = Options::parse(&args(&["--preset", "imagenet"])).err().unwrap();
        assert!(e.contains("imagenet") && e.contains("demo, cifar, paper"), "{e}");
        let e = Options::parse(&args(&["--pairs", "0"])).err().unwrap();
        assert!(e.contains("--pairs 0"), "{e}");
        let e = Options::parse(&args(&["--out"])).err().unwrap();
        assert!(e.contains("--out needs a value"), "{e}");
        let e = Options::parse(&args(&["--fast"])).err().unwrap();
        assert!(e.contains("--fast"), "{e}");
    }

    #[test]
    fn finished_training_is_recognised_by_its_report() {
        let dir = std::env::temp_dir().join(format!("xtask-trained-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(!training_finished(&dir, 2));
        std::fs::write(dir.join("report.json"), r#"{"epochs": [{}, {}]}"#).unwrap();
        assert!(!training_finished(&dir, 2), "no model file yet");
        std::fs::write(dir.join("model.safetensors"), b"x").unwrap();
        assert!(training_finished(&dir, 2));
        assert!(!training_finished(&dir, 3), "more epochs asked for");
        std::fs::remove_dir_all(&dir).ok();
    }
}
