//! Writes a contact sheet of the synthetic dataset as a binary PPM: one row per class, a few
//! training images each, upscaled so the shapes can be checked by eye.
//!
//! `cargo run -p mep-data --example synthetic_png -- [out.ppm] [per_class] [upscale] [seed]`

use mep_data::{synthetic, Samples, SyntheticConfig};
use std::io::Write;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = args.first().cloned().unwrap_or_else(|| "synthetic.ppm".into());
    let per_class: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(8);
    let up: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(4);
    let seed: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(0);

    let start = std::time::Instant::now();
    let ds = synthetic(&SyntheticConfig {
        seed,
        train_per_class: per_class,
        test_per_class: 0,
    });
    eprintln!(
        "generated {} images in {:?}",
        per_class * ds.classes.len(),
        start.elapsed()
    );
    let train = ds.train.expect("synthetic has a train split");
    let Samples::InMemory {
        height: h,
        width: w,
        data,
    } = &train.samples
    else {
        unreachable!("synthetic images are in memory")
    };

    // A 2-pixel gap between tiles so neighbouring images do not read as one.
    let gap = 2;
    let k = ds.classes.len();
    let (tw, th) = (w * up + gap, h * up + gap);
    let (sw, sh) = (per_class * tw + gap, k * th + gap);
    let mut sheet = vec![255u8; sw * sh * 3];
    for (i, &label) in train.labels.iter().enumerate() {
        let (row, col) = (label, i / k);
        let img = &data[i * h * w * 3..(i + 1) * h * w * 3];
        for y in 0..h * up {
            for x in 0..w * up {
                let src = ((y / up) * w + x / up) * 3;
                let dst = ((row * th + gap + y) * sw + col * tw + gap + x) * 3;
                sheet[dst..dst + 3].copy_from_slice(&img[src..src + 3]);
            }
        }
    }

    let mut f = std::io::BufWriter::new(std::fs::File::create(&out)?);
    write!(f, "P6\n{sw} {sh}\n255\n")?;
    f.write_all(&sheet)?;
    eprintln!("wrote {out}: rows are {}", ds.classes.join(", "));
    Ok(())
}
