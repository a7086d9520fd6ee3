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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
