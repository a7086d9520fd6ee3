//! Loads a checkpoint (f32/f16/bf16, with or without `module.`) and writes it back as a
//! clean f32 state dict that PyTorch loads with `strict=True`.
//!
//! `cargo run --release -p mep-resnet --example resave -- ARCH IN.safetensors OUT.safetensors`

use mep_resnet::{Arch, ResNet};
use mep_tensor::CpuBackend;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [arch, input, output] = args.as_slice() else {
        return Err("usage: resave ARCH IN.safetensors OUT.safetensors".into());
    };
    let b = CpuBackend::new();
    let arch: Arch = arch.parse()?;
    let model = ResNet::load(&b, arch, input)?;
    model.save(&b, output)?;
    println!("wrote {output}");
    Ok(())
}
