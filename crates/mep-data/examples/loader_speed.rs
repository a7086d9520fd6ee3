//! How fast the loader makes training batches on this host: images/s of read (or PNG decode),
//! augmentation (random crop with padding 4, flip), normalisation and the bilinear resize
//! 32×32 → 224×224, in batches of 32, for each worker count given.
//!
//! `cargo run --release -p mep-data --example loader_speed -- [threads,...] [images] [size]`
//! (defaults: `1,2`, 1024 images, 224). The in-memory rows are the synthetic demo set (as
//! CIFAR-10 is held); the PNG rows decode the same images from files in a temporary folder,
//! as an image folder is read.
//!
//! Run it with the allocator settings `mep` makes at start-up (`mep::memory::keep_freed_memory`),
//! or it measures page faults: without them glibc gives each worker's 19 MB batches back to
//! the kernel and faults them in again (on 2 cores, 2 workers took 20× the minor faults and
//! half the speed of 1):
//!
//! ```text
//! MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647 MALLOC_TOP_PAD_=268435456 \
//!     cargo run --release -p mep-data --example loader_speed -- 1,2 4096
//! ```

use mep_data::{synthetic, Augment, Loader, Samples, Split, SyntheticConfig, Transform};
use std::sync::Arc;
use std::time::Instant;

const BATCH: usize = 32;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let threads: Vec<usize> = args
        .first()
        .map_or("1,2", String::as_str)
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let images: usize = args.get(1).map_or(Ok(1024), |s| s.parse())?;
    let size: usize = args.get(2).map_or(Ok(224), |s| s.parse())?;

    let ds = synthetic(&SyntheticConfig {
        seed: 0,
        train_per_class: images.div_ceil(10),
        test_per_class: 0,
    });
    let memory = ds.train.ok_or("the synthetic set has a train split")?.head(images);
    let tmp = tempfile::tempdir()?;
    let files = to_png_files(&memory, tmp.path())?;
    let transform = Transform::imagenet(Some(size)).with_augment(Augment {
        crop_padding: 4,
        hflip: true,
    });
    println!(
        "{images} images 32x32 -> {size}x{size}, batches of {BATCH}, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    // CPU time too: on a shared machine the wall clock measures the neighbours as well.
    println!(
        "{:<10} {:>8} {:>10} {:>12} {:>10} {:>14}",
        "source", "threads", "seconds", "images/s", "cpu-s", "images/cpu-s"
    );
    for (name, split) in [("in-memory", Arc::new(memory)), ("png", Arc::new(files))] {
        for &t in &threads {
            let loader = Loader::new(Arc::clone(&split), transform.clone(), BATCH, true, 0, true)?.with_threads(t)?;
            // One short epoch first, so page faults and the allocator's first growth are not timed.
            loader.epoch(1).take(2).try_for_each(|b| b.map(drop))?;
            let (start, cpu0) = (Instant::now(), cpu_seconds());
            let mut n = 0;
            for batch in loader.epoch(0) {
                n += batch?.labels.len();
            }
            let s = start.elapsed().as_secs_f64();
            let (rate, n) = (n as f64 / s, n as f64);
            match (cpu0, cpu_seconds()) {
                (Some(a), Some(b)) => println!(
                    "{name:<10} {t:>8} {s:>10.3} {rate:>12.0} {:>10.2} {:>14.0}",
                    b - a,
                    n / (b - a)
                ),
                _ => println!("{name:<10} {t:>8} {s:>10.3} {rate:>12.0} {:>10} {:>14}", "-", "-"),
            }
        }
    }
    Ok(())
}

/// User plus system CPU seconds of this process so far, from `/proc/self/stat` (Linux; its
/// clock ticks are 1/100 s on every common kernel); `None` elsewhere.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// Writes each image of `split` as a PNG in `dir`: the same images, read as an image folder is.
fn to_png_files(split: &Split, dir: &std::path::Path) -> Result<Split, Box<dyn std::error::Error>> {
    let mut paths = Vec::with_capacity(split.len());
    for i in 0..split.len() {
        let img = split.image(i)?;
        let path = dir.join(format!("{i:05}.png"));
        image::RgbImage::from_raw(img.width as u32, img.height as u32, img.data)
            .ok_or("image buffer of the wrong size")?
            .save(&path)?;
        paths.push(path);
    }
    Ok(Split {
        samples: Samples::Files(paths),
        labels: split.labels.clone(),
    })
}
