//! `mep forward`: run a checkpoint on a batch of inputs and write the logits, the
//! activation at every cut point and, with a target class, the loss and its input
//! gradient. This is how a user checks our engine against their own PyTorch model.

use crate::device::Device;
use crate::eval::argmax_rows;
use crate::{MepError, Result};
use mep_resnet::{save, Arch, Checkpoint, Cut, FoldedResNet, ResNet};
use mep_tensor::{Backend, Shape, Tensor};
use std::fmt;
use std::path::PathBuf;

/// What `mep forward` reads and writes.
#[derive(Clone, Debug)]
pub struct ForwardArgs {
    /// Architecture name (`resnet50`, `resnet20`, ...).
    pub arch: String,
    /// The checkpoint (safetensors, torchvision key names).
    pub weights: PathBuf,
    /// A safetensors file holding the tensor `input`: `[N, 3, H, W]`, already normalised.
    pub input: PathBuf,
    /// A class index: adds the mean cross-entropy `loss` and `input_grad`.
    pub target: Option<usize>,
    /// Where the outputs go (safetensors).
    pub out: PathBuf,
    /// Where it computes.
    pub device: Device,
    /// The arithmetic of convolutions and linear layers (`--precision`; fp32 by default). A
    /// backend without kernels for it refuses it before any work.
    pub precision: crate::Precision,
}

/// What a forward run produced, for printing.
#[derive(Clone, Debug)]
pub struct ForwardReport {
    pub arch: Arch,
    pub input_shape: Shape,
    pub outputs: Vec<(String, Shape)>,
    pub predictions: Vec<usize>,
    pub loss: Option<f32>,
}

impl fmt::Display for ForwardReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} on input {}", self.arch, self.input_shape)?;
        for (k, s) in &self.outputs {
            writeln!(f, "  {k:<10} {s}")?;
        }
        writeln!(f, "  predicted classes: {:?}", self.predictions)?;
        if let Some(l) = self.loss {
            writeln!(f, "  mean cross-entropy: {l:.6}")?;
        }
        Ok(())
    }
}

/// Runs `mep forward` on the backend `args.device` names.
pub fn forward(args: &ForwardArgs) -> Result<ForwardReport> {
    crate::on_device!(args.device, |b| forward_with(b, args))
}

/// Runs `mep forward` on backend `b`.
pub fn forward_with<B: Backend>(b: &B, args: &ForwardArgs) -> Result<ForwardReport> {
    crate::device::use_precision(b, args.precision)?;
    let arch: Arch = args.arch.parse()?;
    let model = ResNet::load(b, arch, &args.weights)?;
    let width = model.width;
    let net = FoldedResNet::fold(b, &model)?;
    drop(model);
    let inputs = Checkpoint::load(&args.input)?;
    let x = inputs.get("input").ok_or_else(|| MepError::Missing {
        path: args.input.clone(),
        what: format!(
            "no tensor `input` (found: {})",
            inputs.keys().collect::<Vec<_>>().join(", ")
        ),
        hint: None,
    })?;
    // Before the shape check of the network, whose "[N, 3, H, W]" would not say what is wrong.
    if x.shape.dims().first() == Some(&0) {
        return Err(MepError::unusable(
            args.input.display().to_string(),
            format!("tensor `input` (shape {}) holds 0 images; need at least one", x.shape),
        ));
    }
    // Every cut's activation comes back to the host and into the output file, beside the
    // network's own working memory (and the input gradient's tape with --target).
    if let &[n, _, h, w] = x.shape.dims() {
        let f = crate::memory::resnet_footprint(arch, width, h.max(w), net.num_classes);
        let work = if args.target.is_some() {
            f.training_bytes(n, 0)
        } else {
            f.inference_bytes(n)
        };
        let device_work = if b.name() == "cpu" { work } else { 0.0 };
        crate::memory::ensure_fits(
            device_work + 2.0 * 4.0 * n as f64 * f.tape_per_image / 3.0,
            &format!("{} (width {width}) on an input of shape {}", arch.name(), x.shape),
            "the number of inputs in --input, or their size",
        )?;
    }
    // Refused before the passes, not after them, while another writes the same file.
    let _lock = crate::lock::FolderLock::acquire_file(&args.out, "mep forward")?;
    let x = Tensor::from_slice(b, x.shape.clone(), &x.data)?;
    drop(inputs);
    let input_shape = x.shape.clone();

    let (logits, acts) = net.forward_all(b, &x)?;
    let n = input_shape.dims()[0];
    let c = net.num_classes;
    let host_logits = logits.to_vec(b)?;
    let predictions = argmax_rows(&host_logits, c);

    let mut out: Vec<(String, Shape, Vec<f32>)> = vec![("logits".into(), logits.shape.clone(), host_logits)];
    for (cut, t) in acts {
        out.push((cut.to_string(), t.shape.clone(), t.to_vec(b)?));
    }
    let mut loss = None;
    if let Some(target) = args.target {
        if target >= c {
            return Err(MepError::option(
                "--target",
                target,
                format!("outside the model's {c} classes (0..{c})"),
            ));
        }
        let targets = vec![target; n];
        let hg = net.head_loss_grad(b, &x, Cut::Input, &targets, 1.0 / n as f32)?;
        let mean = hg.losses.iter().map(|&l| l as f64).sum::<f64>() / n as f64;
        loss = Some(mean as f32);
        out.push(("loss".into(), Shape::new([1]), vec![mean as f32]));
        out.push(("input_grad".into(), hg.grad.shape.clone(), b.download(&hg.grad.buf)?));
    }
    let views: Vec<_> = out.iter().map(|(k, s, d)| (k.as_str(), s, d.as_slice())).collect();
    save(&args.out, &views, None)?;
    Ok(ForwardReport {
        arch,
        input_shape,
        outputs: out.iter().map(|(k, s, _)| (k.clone(), s.clone())).collect(),
        predictions,
        loss,
    })
}
