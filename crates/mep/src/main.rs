//! The `mep` command.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mep",
    version,
    about = "Path connectivity of inputs through a classifier (Gu & Borovykh 2023)"
)]
struct Cli {
    /// Worker threads for the CPU backend (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a checkpoint on inputs; write logits, every cut's activation and, with
    /// --target, the loss and its input gradient.
    Forward {
        /// resnet18, resnet34, resnet50, resnet101, resnet152, resnet20, resnet32, resnet44, resnet56, resnet110
        #[arg(long)]
        arch: String,
        /// Checkpoint (safetensors with torchvision key names).
        #[arg(long)]
        weights: PathBuf,
        /// safetensors file with tensor `input` [N, 3, H, W], already normalised.
        #[arg(long)]
        input: PathBuf,
        /// Target class: adds `loss` (mean cross-entropy) and `input_grad`.
        #[arg(long)]
        target: Option<usize>,
        /// Output safetensors file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Train or fine-tune a ResNet; a checkpoint after every epoch, --resume to continue.
    Train {
        #[arg(long)]
        arch: String,
        /// Start from this checkpoint (e.g. ImageNet weights; the classifier is replaced
        /// when the class count differs). Default: torchvision's initialisation.
        #[arg(long)]
        init: Option<PathBuf>,
        /// `synthetic`, `cifar10`, a CIFAR-10 archive or folder, or an image folder.
        #[arg(long, default_value = "synthetic")]
        data: String,
        /// Resize images to SIZE×SIZE (the paper: 224 for CIFAR-10).
        #[arg(long)]
        size: Option<usize>,
        #[arg(long, default_value_t = 10)]
        epochs: usize,
        #[arg(long, default_value_t = 128)]
        batch_size: usize,
        #[arg(long, value_enum, default_value_t = Opt::Adam)]
        optimizer: Opt,
        /// Initial learning rate, decayed to 0 by a cosine schedule.
        #[arg(long, default_value_t = 1e-3)]
        lr: f32,
        /// SGD momentum.
        #[arg(long, default_value_t = 0.9)]
        momentum: f32,
        #[arg(long, default_value_t = 0.0)]
        weight_decay: f32,
        /// Turn off random crop (padding 4) and horizontal flip.
        #[arg(long)]
        no_augment: bool,
        /// Stem width when training from scratch (default: the architecture's).
        #[arg(long)]
        width: Option<usize>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Folder for checkpoint.safetensors, model.safetensors and report.json.
        #[arg(long, default_value = "runs/train")]
        out: PathBuf,
        /// Continue from OUT/checkpoint.safetensors.
        #[arg(long)]
        resume: bool,
        /// Stop after N epochs in this run (the schedule still spans --epochs); continue
        /// later with --resume. For time-limited jobs.
        #[arg(long)]
        stop_after: Option<usize>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Accuracy and per-class accuracy of a checkpoint on a dataset.
    Eval {
        #[arg(long)]
        arch: String,
        #[arg(long)]
        weights: PathBuf,
        #[arg(long, default_value = "synthetic")]
        data: String,
        #[arg(long, default_value = "test")]
        split: String,
        /// Input size (default: the one `mep train` recorded, else the images' own).
        #[arg(long)]
        size: Option<usize>,
        #[arg(long, default_value_t = 128)]
        batch_size: usize,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Opt {
    Adam,
    Sgd,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(t) = cli.threads {
        if let Err(e) = rayon::ThreadPoolBuilder::new().num_threads(t).build_global() {
            eprintln!("error: --threads {t}: {e}");
            return ExitCode::from(2);
        }
    }
    let result = match cli.command {
        Command::Forward {
            arch,
            weights,
            input,
            target,
            out,
        } => mep::forward::forward(&mep::forward::ForwardArgs {
            arch,
            weights,
            input,
            target,
            out: out.clone(),
        })
        .map(|r| {
            print!("{r}");
            println!("wrote {}", out.display());
        }),
        Command::Train {
            arch,
            init,
            data,
            size,
            epochs,
            batch_size,
            optimizer,
            lr,
            momentum,
            weight_decay,
            no_augment,
            width,
            seed,
            out,
            resume,
            stop_after,
            quiet,
        } => mep::train::train(&mep::train::TrainArgs {
            arch,
            init,
            data,
            size,
            epochs,
            batch_size,
            optimizer: match optimizer {
                Opt::Adam => mep::train::OptimizerKind::Adam,
                Opt::Sgd => mep::train::OptimizerKind::Sgd,
            },
            lr,
            momentum,
            weight_decay,
            augment: !no_augment,
            width,
            seed,
            out,
            resume,
            stop_after,
            quiet,
        })
        .map(|r| print!("{r}")),
        Command::Eval {
            arch,
            weights,
            data,
            split,
            size,
            batch_size,
        } => mep::eval::eval(&mep::eval::EvalArgs {
            arch,
            weights,
            data,
            split,
            size,
            batch_size,
        })
        .map(|r| print!("{r}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
