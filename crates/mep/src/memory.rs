//! Will a configuration fit in memory? Each command estimates, from its settings alone,
//! the bytes it will hold at its peak and refuses, before it creates anything, a
//! configuration that cannot fit: an allocation failure aborts the process (Rust cannot
//! catch it), after folders were made and with a message that names no setting.
//!
//! The estimates are deliberately rough (within a small factor) and err on the large side
//! for activations; they exist to catch a `--size 100000` or a `--batch-size` of a billion,
//! not to plan memory to the last gigabyte.
//!
//! ```
//! use mep::memory::{ensure_fits_within, GIB};
//! // 2 GiB needed on a machine with 1 GiB available: refused, naming what to lower.
//! let e = ensure_fits_within(2.0 * GIB, Some(1 << 30), "--batch-size 128 at --size 512", "--batch-size or --size")
//!     .unwrap_err()
//!     .to_string();
//! assert!(e.contains("needs about 2.0 GiB") && e.contains("lower --batch-size or --size"), "{e}");
//! ```

use crate::{MepError, Result};
use mep_resnet::{Arch, BlockKind, Cut};

/// The environment variable that, when set, replaces the machine's available memory (bytes,
/// or with a binary suffix: `512M`, `2G`, `1.5T`). Tests set it so that they do not depend
/// on the machine; a user may set it to keep a command within a share of the machine.
pub const LIMIT_ENV: &str = "MEP_MEMORY_LIMIT";

/// One gibibyte, in bytes (as f64, the type of the estimates).
pub const GIB: f64 = (1u64 << 30) as f64;

/// Bytes per stored value: every tensor is f32.
const F32: f64 = 4.0;

/// Batches a data loader with `threads` workers may hold at once: one per worker being made,
/// `PREFETCH` made ahead, and the one being used.
pub fn loader_batches(threads: usize) -> f64 {
    (threads + mep_data::loader::PREFETCH + 1) as f64
}

/// [`loader_batches`] of a loader with the default worker count (what every command but
/// `mep train --loader-threads` starts).
fn default_loader_batches() -> f64 {
    loader_batches(mep_data::loader::default_threads())
}

/// The memory this process may use: [`LIMIT_ENV`] when set, else `MemAvailable` of
/// `/proc/meminfo`; `None` where neither is known (then nothing is refused).
pub fn available() -> Result<Option<u64>> {
    if let Ok(v) = std::env::var(LIMIT_ENV) {
        return parse_bytes(&v).map(Some).ok_or_else(|| {
            MepError::option_unset(
                format!("{LIMIT_ENV}={v}"),
                "expected bytes, e.g. 8G, 512M or 1073741824",
            )
        });
    }
    Ok(std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| mem_available_kib(&m))
        .map(|kib| kib.saturating_mul(1024)))
}

/// `MemAvailable` of a `/proc/meminfo` text, in KiB.
fn mem_available_kib(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// `1073741824`, `512M`, `2G`, `1.5T` (binary units; an optional trailing `B` or `iB`).
fn parse_bytes(s: &str) -> Option<u64> {
    let t = s.trim();
    let t = t.strip_suffix("iB").or_else(|| t.strip_suffix('B')).unwrap_or(t);
    let (num, scale) = match t.chars().last()? {
        'K' | 'k' => (&t[..t.len() - 1], 1u64 << 10),
        'M' | 'm' => (&t[..t.len() - 1], 1 << 20),
        'G' | 'g' => (&t[..t.len() - 1], 1 << 30),
        'T' | 't' => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some((v * scale as f64) as u64)
}

/// `4.1 TiB`, `22 GiB`, `512 MiB`: bytes in binary units, two or three significant digits.
pub fn bytes_text(bytes: f64) -> String {
    const UNITS: [&str; 7] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes.max(0.0);
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if v >= 1024.0 {
        // Beyond exbibytes (a width or size near usize::MAX): say it plainly.
        return format!("{bytes:.1e} bytes");
    }
    if u == 0 || v >= 10.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Refuses a configuration that needs about `needed` bytes when this machine has less
/// available (see [`available`]). `what` names the settings that decide the need
/// (`--batch-size 128 at --size 100000`), `lower` what to lower (`--batch-size or --size`);
/// both go into the [`MepError::Memory`] the user sees.
pub fn ensure_fits(needed: f64, what: &str, lower: &str) -> Result<()> {
    ensure_fits_within(needed, available()?, what, lower)
}

/// As [`ensure_fits`], against `available` bytes (`None`: unknown, nothing is refused).
pub fn ensure_fits_within(needed: f64, available: Option<u64>, what: &str, lower: &str) -> Result<()> {
    match available {
        // A NaN estimate (it cannot happen with finite settings) is refused, not passed.
        Some(avail) if needed.is_nan() || needed > avail as f64 => Err(MepError::Memory {
            what: what.to_string(),
            needed: bytes_text(needed),
            available: bytes_text(avail as f64),
            lower: lower.to_string(),
        }),
        _ => Ok(()),
    }
}

/// What a network holds per image and in its weights, from a walk over its topology (the
/// same as its crate's, in f64 so that any width or size gives a number, not an overflow).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Footprint {
    /// Trainable and running values (convolutions, batch norms, classifier).
    pub params: f64,
    /// Values the training forward keeps for the backward, per image (each convolution's
    /// output, its batch norm's and its activation's, shortcuts and pooling).
    pub tape_per_image: f64,
    /// The largest activation of one image.
    pub largest_per_image: f64,
    /// The input of one image (3 · size²).
    pub input_per_image: f64,
}

/// The footprint of `arch` at stem width `width` on `size`² inputs with `classes` classes.
pub fn resnet_footprint(arch: Arch, width: usize, size: usize, classes: usize) -> Footprint {
    let (w, classes) = (width as f64, classes as f64);
    let mut side = size as f64;
    // A convolution with kernel k, padding k/2 and stride s (odd k, as all of them are).
    let strided = |side: f64, s: f64| ((side - 1.0) / s).floor() + 1.0;
    let mut f = Footprint {
        params: 0.0,
        tape_per_image: 3.0 * side * side,
        largest_per_image: 3.0 * side * side,
        input_per_image: 3.0 * side * side,
    };
    let unit = |f: &mut Footprint, c_in: f64, c_out: f64, k: f64, side: f64| {
        // Weights, then γ, β, running mean and running variance.
        f.params += c_in * c_out * k * k + 4.0 * c_out;
        let out = c_out * side * side;
        f.tape_per_image += 3.0 * out;
        f.largest_per_image = f.largest_per_image.max(out);
    };
    if arch.is_cifar() {
        unit(&mut f, 3.0, w, 3.0, side);
    } else {
        side = strided(side, 2.0);
        unit(&mut f, 3.0, w, 7.0, side);
        side = strided(side, 2.0);
        f.tape_per_image += w * side * side;
    }
    let exp = arch.block().expansion() as f64;
    let mut in_ch = w;
    for (s, &blocks) in arch.layers().iter().enumerate() {
        let planes = w * 2f64.powi(s as i32);
        let out = planes * exp;
        for j in 0..blocks {
            let stride = if s > 0 && j == 0 { 2.0 } else { 1.0 };
            let after = strided(side, stride);
            match arch.block() {
                BlockKind::Basic => {
                    unit(&mut f, in_ch, planes, 3.0, after);
                    unit(&mut f, planes, planes, 3.0, after);
                }
                BlockKind::Bottleneck => {
                    unit(&mut f, in_ch, planes, 1.0, side);
                    unit(&mut f, planes, planes, 3.0, after);
                    unit(&mut f, planes, out, 1.0, after);
                }
            }
            if stride != 1.0 || in_ch != out {
                if arch.is_cifar() {
                    f.tape_per_image += out * after * after;
                } else {
                    unit(&mut f, in_ch, out, 1.0, after);
                }
            }
            in_ch = out;
            side = after;
        }
    }
    f.params += in_ch * classes + classes;
    f.tape_per_image += in_ch + classes;
    f
}

/// The footprint of a decoder (`mep_decoder`'s layout): groups of `blocks_per_group`
/// 3×3 convolutions with batch norm, a 2× upsampling before every group but the first,
/// and a 3×3 convolution to the three colour channels. `seed` is the `[C, H, W]` the first
/// group receives ([`mep_decoder::DecoderConfig::seed_shape`]).
pub fn decoder_footprint(seed: [usize; 3], filters: &[usize], blocks_per_group: usize, out_size: usize) -> Footprint {
    let [c, h, _] = seed;
    let (mut c_in, mut side) = (c as f64, h as f64);
    let input = c_in * side * side;
    let mut f = Footprint {
        params: 0.0,
        tape_per_image: input,
        largest_per_image: input,
        input_per_image: input,
    };
    for (g, &filters) in filters.iter().enumerate() {
        if g > 0 {
            side *= 2.0;
            f.tape_per_image += c_in * side * side;
        }
        let c_out = filters as f64;
        for j in 0..blocks_per_group.max(1) {
            let cin = if j == 0 { c_in } else { c_out };
            // Transposed-convolution weights and bias, then γ, β and the running statistics.
            f.params += 9.0 * cin * c_out + 5.0 * c_out;
            f.tape_per_image += 3.0 * c_out * side * side;
            f.largest_per_image = f.largest_per_image.max(c_out * side * side);
        }
        c_in = c_out;
    }
    let out = out_size as f64;
    f.params += 9.0 * c_in * 3.0 + 3.0;
    f.tape_per_image += 2.0 * 3.0 * out * out;
    f
}

/// Values of one point at `cut` of `arch` on `size`² inputs, whose activation there has
/// `channels` channels (`FoldedResNet::channels`): the dimension D of the path search's space.
pub fn cut_numel(arch: Arch, size: usize, cut: Cut, channels: usize) -> f64 {
    let strided = |side: f64| ((side - 1.0) / 2.0).floor() + 1.0;
    let mut side = size as f64;
    let c = channels as f64;
    match cut {
        Cut::Input => return 3.0 * side * side,
        Cut::Pool => return c,
        _ => {}
    }
    if !arch.is_cifar() {
        // The stem's stride-2 convolution and its stride-2 max-pool.
        side = strided(strided(side));
    }
    if let Cut::Layer(i) = cut {
        for _ in 1..i {
            side = strided(side);
        }
    }
    c * side * side
}

/// Copies of a whole path (P × D values) the search keeps: the pivots and their previous
/// positions, energy gradients, tangents, spring and NEB forces, the optimiser's two
/// moments, the best path so far and the path file's buffer.
pub const PATH_BUFFERS: f64 = 10.0;

/// Bytes of one (pair, space) search of `mep connect`: `pivots` points of dimension `d`
/// (its `--max-pivots` when insertion may grow it), energy and gradient on `batch` points
/// at a time through the network of footprint `f`, and the dense checks in batches.
pub fn search_bytes(f: &Footprint, pivots: usize, d: f64, batch: usize) -> f64 {
    let b = batch as f64;
    F32 * (PATH_BUFFERS * pivots as f64 * d
        + b * (f.tape_per_image + 3.0 * f.largest_per_image)
        + 2.0 * f.params
        + default_loader_batches() * b * f.input_per_image)
}

impl Footprint {
    /// Bytes of training on batches of `batch`: the tape, the backward's gradients (a few
    /// of the largest activation at a time), the weights with their gradients and
    /// `optimizer_buffers` state buffers each, and the loader's batches on the host.
    pub fn training_bytes(&self, batch: usize, optimizer_buffers: usize) -> f64 {
        let b = batch as f64;
        F32 * (b * (self.tape_per_image + 3.0 * self.largest_per_image)
            + self.params * (2.0 + optimizer_buffers as f64)
            + default_loader_batches() * b * self.input_per_image)
    }

    /// Bytes of an inference forward on batches of `batch` (no tape: a few activations at a
    /// time) with the loader's batches on the host.
    pub fn inference_bytes(&self, batch: usize) -> f64 {
        let b = batch as f64;
        F32 * (b * 3.0 * self.largest_per_image + self.params + default_loader_batches() * b * self.input_per_image)
    }

    /// Bytes of the host's share of training when the network runs on a GPU: the loader's
    /// batches and a copy of the weights and optimiser state for each checkpoint.
    pub fn host_bytes(&self, batch: usize, optimizer_buffers: usize) -> f64 {
        F32 * (default_loader_batches() * batch as f64 * self.input_per_image
            + self.params * (1.0 + optimizer_buffers as f64))
    }
}

/// Asks glibc's allocator to keep freed memory instead of returning every large block to the
/// system. The f64 certifier allocates and frees activation-sized buffers (megabytes) at every
/// layer of every interval; with glibc's defaults each becomes an `mmap`/`munmap` pair and
/// its pages fault in again, which measured 257 of 446 s as system time on one input-space
/// path (BENCHMARKS.md, "Bounds vs ExactLine"). Elsewhere (musl, macOS, Windows) nothing is
/// changed. Call once, at start-up, before threads allocate.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // glibc's mallopt parameters (malloc.h): M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD.
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_TOP_PAD: i32 = -2;
        const M_MMAP_THRESHOLD: i32 = -3;
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        // SAFETY: mallopt only sets allocator parameters; glibc documents these three and
        // accepts any non-negative value (the mmap threshold is capped at 32 MiB on 64-bit).
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, i32::MAX);
            mallopt(M_TOP_PAD, 256 << 20);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_counts_the_parameters_the_engine_allocates() {
        // The engine's trainable parameters plus the two running statistics of each batch
        // norm channel (γ has one value per channel, so it counts the channels).
        let b = mep_tensor::CpuBackend::new();
        for (arch, width) in [(Arch::ResNet20, 16), (Arch::ResNet18, 8), (Arch::ResNet50, 4)] {
            let mut m = mep_resnet::ResNet::init(&b, arch, width, 10, 0).unwrap();
            let bn_channels: usize = m
                .named_params_mut()
                .into_iter()
                .filter(|(k, _)| k.contains("bn") || k.contains("downsample.1"))
                .filter(|(k, _)| k.ends_with(".weight"))
                .map(|(_, t)| t.numel())
                .sum();
            let f = resnet_footprint(arch, width, 32, 10);
            assert_eq!(
                f.params,
                (m.num_params() + 2 * bn_channels) as f64,
                "{arch} at width {width}"
            );
        }
    }

    #[test]
    fn the_decoder_walk_counts_the_parameters_the_decoder_allocates() {
        let b = mep_tensor::CpuBackend::new();
        for (cut, in_shape) in [
            (mep_resnet::Cut::Pool, vec![64]),
            (mep_resnet::Cut::Layer(2), vec![32, 16, 16]),
        ] {
            let source = mep_decoder::Source {
                arch: Arch::ResNet20,
                cut,
                input_size: 32,
                in_shape,
            };
            let config = mep_decoder::DecoderConfig::paper(&source).unwrap().scaled(0.125);
            let f = decoder_footprint(
                config.seed_shape().unwrap(),
                &config.filters,
                config.blocks_per_group,
                config.out_size,
            );
            let running: usize = config.filters.iter().map(|f| 2 * f * config.blocks_per_group).sum();
            let mut d = mep_decoder::Decoder::init(&b, config, 0).unwrap();
            assert_eq!(f.params, (d.num_params() + running) as f64, "{cut}");
        }
    }

    #[test]
    fn extreme_settings_give_a_number_not_an_overflow() {
        let f = resnet_footprint(Arch::ResNet50, usize::MAX, usize::MAX, usize::MAX);
        let bytes = f.training_bytes(usize::MAX, 2);
        assert!(bytes.is_finite() && bytes > 1e30, "{bytes}");
        assert!(ensure_fits_within(bytes, Some(u64::MAX), "x", "y").is_err());
    }

    #[test]
    fn limits_parse_with_binary_suffixes() {
        assert_eq!(parse_bytes("1073741824"), Some(1 << 30));
        assert_eq!(parse_bytes("2G"), Some(2 << 30));
        assert_eq!(parse_bytes("512MiB"), Some(512 << 20));
        assert_eq!(parse_bytes("1.5T"), Some(3 << 39));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("-1G"), None);
        assert_eq!(
            mem_available_kib("MemTotal: 100 kB\nMemAvailable:   23068672 kB\n"),
            Some(23_068_672)
        );
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes_text(4.1 * 1024.0 * GIB), "4.1 TiB");
        assert_eq!(bytes_text(22.0 * GIB), "22 GiB");
        assert_eq!(bytes_text(512.0), "512 bytes");
    }
}
