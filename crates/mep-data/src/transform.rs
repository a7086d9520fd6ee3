//! From an 8-bit image to the normalised CHW floats a network takes, with optional
//! training augmentation, as torchvision's transforms do it.

use crate::{DataError, Image, Result};
use mep_rng::SplitMix64;

/// The ImageNet channel means torchvision's pretrained models expect.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// The ImageNet channel standard deviations torchvision's pretrained models expect.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Training augmentation: torchvision's `RandomCrop(size, padding=crop_padding)` followed by
/// `RandomHorizontalFlip(p=0.5)` when `hflip` is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Augment {
    /// Zero padding added on each side before a window of the original size is cut out at
    /// a random position; 0 disables the crop.
    pub crop_padding: usize,
    /// Mirror left–right with probability 1/2.
    pub hflip: bool,
}

/// Image → `[3, S, S]` floats: augmentation (if any), then resize, then
/// `((pixel / 255) − mean) / std` per channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Transform {
    /// Resize to `size × size` by bilinear interpolation; `None` keeps the image's size.
    ///
    /// The interpolation is PyTorch's `F.interpolate(x, size=(size, size), mode="bilinear",
    /// align_corners=False, antialias=False)` on the float image, which is how the paper
    /// upsamples 32×32 CIFAR images to the 224×224 an ImageNet ResNet takes. It is *not*
    /// torchvision's `Resize`, which antialiases when shrinking.
    pub size: Option<usize>,
    /// Channel means subtracted after scaling to [0, 1].
    pub mean: [f32; 3],
    /// Channel standard deviations divided by after subtracting the mean.
    pub std: [f32; 3],
    /// Training augmentation, applied before the resize; `None` for evaluation.
    pub augment: Option<Augment>,
}

impl Transform {
    /// An evaluation transform: optional resize and the given normalisation, no augmentation.
    pub fn new(size: Option<usize>, mean: [f32; 3], std: [f32; 3]) -> Self {
        Self {
            size,
            mean,
            std,
            augment: None,
        }
    }

    /// An evaluation transform with ImageNet normalisation.
    pub fn imagenet(size: Option<usize>) -> Self {
        Self::new(size, IMAGENET_MEAN, IMAGENET_STD)
    }

    /// The same transform with training augmentation.
    pub fn with_augment(mut self, augment: Augment) -> Self {
        self.augment = Some(augment);
        self
    }

    /// The output's `(height, width)` for an image of `img`'s size.
    pub fn output_hw(&self, img: &Image) -> (usize, usize) {
        match self.size {
            Some(s) => (s, s),
            // Crop keeps the size: it cuts a window as large as the original.
            None => (img.height, img.width),
        }
    }

    /// The number of floats [`Transform::apply`] writes for `img`: `3 · H · W`.
    pub fn output_len(&self, img: &Image) -> usize {
        let (h, w) = self.output_hw(img);
        3 * h * w
    }

    /// Checks the settings: a positive size and positive, finite standard deviations.
    pub fn validate(&self) -> Result<()> {
        if self.size == Some(0) {
            return Err(DataError::Invalid("transform size must be positive".to_string()));
        }
        if self.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) || self.mean.iter().any(|m| !m.is_finite()) {
            return Err(DataError::Invalid(format!(
                "normalisation needs finite means and positive standard deviations, got mean {:?} std {:?}",
                self.mean, self.std
            )));
        }
        Ok(())
    }

    /// Writes the transformed `img` into `out` as CHW floats; `out` must hold
    /// [`Transform::output_len`] values. `rng` drives the augmentation only, so an
    /// evaluation transform never draws from it.
    pub fn apply(&self, img: &Image, rng: &mut Rng, out: &mut [f32]) -> Result<()> {
        self.validate()?;
        let (h, w) = (img.height, img.width);
        if h == 0 || w == 0 || img.data.len() != h * w * 3 {
            return Err(DataError::Invalid(format!(
                "image of {h}x{w} has {} bytes, expected {}",
                img.data.len(),
                h * w * 3
            )));
        }
        let (oh, ow) = self.output_hw(img);
        if out.len() != 3 * oh * ow {
            return Err(DataError::Invalid(format!(
                "output buffer holds {} floats, the transformed image needs {}",
                out.len(),
                3 * oh * ow
            )));
        }

        let augmented;
        let img = match self.augment {
            Some(aug) => {
                augmented = augment(img, aug, rng);
                &augmented
            }
            None => img,
        };

        // Normalisation is affine per channel and bilinear weights sum to one, so it commutes
        // with the resize (up to float rounding); normalising first needs one pass fewer.
        let plane_in = h * w;
        let mut planes = vec![0f32; 3 * plane_in];
        for c in 0..3 {
            let (mean, std) = (self.mean[c], self.std[c]);
            for p in 0..plane_in {
                // The operations of ToTensor then Normalize, in their order, for the same rounding.
                planes[c * plane_in + p] = (img.data[p * 3 + c] as f32 / 255.0 - mean) / std;
            }
        }
        if (oh, ow) == (h, w) {
            out.copy_from_slice(&planes);
        } else {
            // v2 does the same arithmetic in fewer operations when rows are shared, i.e.
            // unless the image shrinks to less than half its height.
            let resize = if h <= 2 * oh {
                resize_bilinear_v2
            } else {
                resize_bilinear
            };
            for c in 0..3 {
                resize(
                    &planes[c * plane_in..(c + 1) * plane_in],
                    h,
                    w,
                    &mut out[c * oh * ow..(c + 1) * oh * ow],
                    oh,
                    ow,
                );
            }
        }
        Ok(())
    }
}

/// Random crop with zero padding, then random horizontal flip, on the 8-bit image.
fn augment(img: &Image, aug: Augment, rng: &mut Rng) -> Image {
    let (h, w, p) = (img.height, img.width, aug.crop_padding);
    // torchvision draws the window's top then left corner in the padded image, each
    // uniform over 0..=2p; an offset of p is the original image.
    let (top, left) = if p > 0 {
        (
            rng.below(2 * p as u64 + 1) as usize,
            rng.below(2 * p as u64 + 1) as usize,
        )
    } else {
        (p, p)
    };
    let flip = aug.hflip && rng.below(2) == 1;
    let mut data = vec![0u8; h * w * 3];
    for y in 0..h {
        // Row y of the window is row y + top − p of the original; outside it is padding.
        let Some(sy) = (y + top).checked_sub(p).filter(|&sy| sy < h) else {
            continue;
        };
        for x in 0..w {
            let wx = if flip { w - 1 - x } else { x };
            let Some(sx) = (wx + left).checked_sub(p).filter(|&sx| sx < w) else {
                continue;
            };
            let (dst, src) = ((y * w + x) * 3, (sy * w + sx) * 3);
            data[dst..dst + 3].copy_from_slice(&img.data[src..src + 3]);
        }
    }
    Image {
        width: w,
        height: h,
        data,
    }
}

/// PyTorch's `upsample_bilinear2d` with `align_corners=False` on one plane: output pixel
/// `d` samples the input at `(d + 0.5) · in/out − 0.5`, clamped below at 0, mixing the two
/// neighbouring pixels (the upper one clamped to the last row/column).
fn resize_bilinear(src: &[f32], ih: usize, iw: usize, dst: &mut [f32], oh: usize, ow: usize) {
    let rows = linear_taps(ih, oh);
    let cols = linear_taps(iw, ow);
    for (oy, &(y0, y1, wy0, wy1)) in rows.iter().enumerate() {
        let (r0, r1) = (&src[y0 * iw..(y0 + 1) * iw], &src[y1 * iw..(y1 + 1) * iw]);
        for (ox, &(x0, x1, wx0, wx1)) in cols.iter().enumerate() {
            dst[oy * ow + ox] = wy0 * (wx0 * r0[x0] + wx1 * r0[x1]) + wy1 * (wx0 * r1[x0] + wx1 * r1[x1]);
        }
    }
}

/// [`resize_bilinear`] (v1) computed separably, bit for bit the same: each input row is
/// interpolated along x once (`wx0·r[x0] + wx1·r[x1]`, v1's inner sums), and each output row
/// mixes two of those rows (`wy0·h0 + wy1·h1`). v1 recomputes the x sums for every output row
/// that reads an input row; upsampling 32 → 224 reads each row 7 times, so v2 does about a
/// third of v1's arithmetic.
fn resize_bilinear_v2(src: &[f32], ih: usize, iw: usize, dst: &mut [f32], oh: usize, ow: usize) {
    let rows = linear_taps(ih, oh);
    let cols = linear_taps(iw, ow);
    let mut along_x = vec![0f32; ih * ow];
    for (r, h) in src.chunks_exact(iw).zip(along_x.chunks_exact_mut(ow)) {
        for (v, &(x0, x1, wx0, wx1)) in h.iter_mut().zip(&cols) {
            *v = wx0 * r[x0] + wx1 * r[x1];
        }
    }
    for (out, &(y0, y1, wy0, wy1)) in dst.chunks_exact_mut(ow).zip(&rows) {
        let (h0, h1) = (&along_x[y0 * ow..(y0 + 1) * ow], &along_x[y1 * ow..(y1 + 1) * ow]);
        for ((v, &a), &b) in out.iter_mut().zip(h0).zip(h1) {
            *v = wy0 * a + wy1 * b;
        }
    }
}

/// For each output index: the two input indices and their weights.
fn linear_taps(input: usize, output: usize) -> Vec<(usize, usize, f32, f32)> {
    // PyTorch computes the scale in the float type of the tensor, as in/out.
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|d| {
            let s = ((d as f32 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (s as usize).min(input - 1);
            let i1 = if i0 + 1 < input { i0 + 1 } else { i0 };
            let l1 = s - i0 as f32;
            (i0, i1, 1.0 - l1, l1)
        })
        .collect()
}

/// A small, fast, seedable generator (SplitMix64) for augmentation and shuffling. Not
/// PyTorch's generator: a seed gives the same order every run here, not the same order as
/// a PyTorch script.
#[derive(Clone, Debug)]
pub struct Rng(SplitMix64);

impl Rng {
    /// A generator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self(SplitMix64::new(seed))
    }

    /// A generator for one of many independent streams: mixing the parts keeps streams for
    /// neighbouring `(seed, epoch, index)` triples unrelated.
    pub fn from_parts(parts: &[u64]) -> Self {
        // Each part is xored into the state and the state replaced by the next draw.
        let state = parts.iter().fold(0x6d65_702d_6461_7461, |s, &p| mep_rng::hash(s ^ p));
        Rng::new(state)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A uniform integer in `0..n` (`n > 0`), without modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.below_unbiased(n)
    }

    /// Shuffles `v` in place (Fisher–Yates, from the last element down): the one seeded
    /// permutation of the loader's epochs, the attack's images and a graph's nodes.
    ///
    /// ```
    /// let mut v = [0, 1, 2, 3, 4];
    /// mep_data::Rng::new(7).shuffle(&mut v);
    /// let mut sorted = v;
    /// sorted.sort();
    /// assert_eq!(sorted, [0, 1, 2, 3, 4]);
    /// ```
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// v2 is v1 computed separably: the same bits for upsampling, downsampling, one-pixel
    /// images and unequal axes.
    #[test]
    fn resize_v2_is_bit_identical_to_v1() {
        let sizes = [
            (32, 32, 224, 224),
            (1, 1, 5, 3),
            (7, 3, 2, 9),
            (64, 48, 20, 30),
            (32, 32, 32, 32),
            (5, 9, 11, 4),
        ];
        for (ih, iw, oh, ow) in sizes {
            let src: Vec<f32> = (0..ih * iw)
                .map(|k| ((k * 7919 % 1013) as f32 - 500.0) / 97.0)
                .collect();
            let (mut v1, mut v2) = (vec![0f32; oh * ow], vec![1f32; oh * ow]);
            resize_bilinear(&src, ih, iw, &mut v1, oh, ow);
            resize_bilinear_v2(&src, ih, iw, &mut v2, oh, ow);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&v1), bits(&v2), "{ih}x{iw} -> {oh}x{ow}");
        }
    }
}
