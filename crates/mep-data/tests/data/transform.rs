//! Transform: normalisation, PyTorch-compatible bilinear resize, crop and flip.

use mep_data::{Augment, DataError, Image, Rng, Transform, IMAGENET_MEAN, IMAGENET_STD};

fn image(h: usize, w: usize, f: impl Fn(usize, usize, usize) -> u8) -> Image {
    let mut data = Vec::with_capacity(h * w * 3);
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                data.push(f(y, x, c));
            }
        }
    }
    Image {
        width: w,
        height: h,
        data,
    }
}

fn run(t: &Transform, img: &Image, seed: u64) -> Vec<f32> {
    let mut out = vec![0f32; t.output_len(img)];
    t.apply(img, &mut Rng::new(seed), &mut out).unwrap();
    out
}

fn plain() -> Transform {
    Transform::new(None, [0.0; 3], [1.0; 3])
}

#[test]
fn normalisation_scales_to_unit_range_then_standardises_per_channel() {
    let img = image(1, 2, |_, x, c| [[0, 128, 255], [51, 102, 204]][x][c]);
    let out = run(&Transform::imagenet(None), &img, 0);
    // CHW: channel c holds pixel 0 then pixel 1.
    for c in 0..3 {
        for x in 0..2 {
            let v = [[0.0, 128.0, 255.0], [51.0, 102.0, 204.0]][x][c] / 255.0;
            let want = (v - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
            assert!(
                (out[c * 2 + x] - want).abs() < 1e-5,
                "c{c} x{x}: {} vs {want}",
                out[c * 2 + x]
            );
        }
    }
    assert_eq!(Transform::imagenet(None).output_len(&img), 6);
}

#[test]
fn resize_of_a_constant_image_is_constant() {
    let img = image(32, 32, |_, _, c| [10, 100, 250][c]);
    let t = Transform {
        size: Some(224),
        ..plain()
    };
    let out = run(&t, &img, 0);
    assert_eq!(out.len(), 3 * 224 * 224);
    for c in 0..3 {
        let want = [10.0, 100.0, 250.0][c] / 255.0;
        assert!(out[c * 224 * 224..(c + 1) * 224 * 224]
            .iter()
            .all(|v| (v - want).abs() < 1e-6));
    }
}

#[test]
fn resize_2x2_to_4x4_matches_pytorch_align_corners_false() {
    // F.interpolate(torch.arange(4.).view(1, 1, 2, 2), size=4, mode="bilinear",
    // align_corners=False) is 2·r_i + c_j with r = c = [0, 0.25, 0.75, 1].
    let img = image(2, 2, |y, x, _| (80 * y + 40 * x) as u8);
    let t = Transform {
        size: Some(4),
        ..plain()
    };
    let out = run(&t, &img, 0);
    let taps = [0.0, 0.25, 0.75, 1.0];
    for c in 0..3 {
        for y in 0..4 {
            for x in 0..4 {
                let want = (80.0 * taps[y] + 40.0 * taps[x]) / 255.0;
                let got = out[c * 16 + y * 4 + x];
                assert!((got - want).abs() < 1e-6, "({y},{x}) {got} vs {want}");
            }
        }
    }
}

#[test]
fn resize_3_to_2_downsamples_without_antialiasing() {
    // Shrinking 3 -> 2: scale 1.5, sources at 0.25 and 1.75, as PyTorch with antialias=False.
    let img = image(1, 3, |_, x, _| [0, 100, 200][x]);
    let t = Transform {
        size: Some(2),
        ..plain()
    };
    let out = run(&t, &img, 0);
    let want = [25.0 / 255.0, 175.0 / 255.0];
    for (got, want) in out[..4].iter().zip([want[0], want[1], want[0], want[1]]) {
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
}

#[test]
fn crop_and_flip_without_padding_keep_the_pixel_multiset() {
    let img = image(5, 7, |y, x, c| (y * 31 + x * 7 + c * 3) as u8);
    let t = Transform {
        augment: Some(Augment {
            crop_padding: 0,
            hflip: true,
        }),
        ..plain()
    };
    let mut sorted_in = run(&plain(), &img, 0);
    sorted_in.sort_by(f32::total_cmp);
    let mut saw_flip = false;
    for seed in 0..8 {
        let out = run(&t, &img, seed);
        saw_flip |= out != run(&plain(), &img, 0);
        let mut sorted = out.clone();
        sorted.sort_by(f32::total_cmp);
        assert_eq!(sorted, sorted_in);
    }
    assert!(saw_flip, "8 seeds never flipped");
}

#[test]
fn flipping_twice_restores_the_image() {
    let img = image(4, 6, |y, x, c| (y * 50 + x * 9 + c) as u8);
    let t = Transform {
        augment: Some(Augment {
            crop_padding: 0,
            hflip: true,
        }),
        ..plain()
    };
    // Find a seed that flips, then flip the flipped image back.
    let original = run(&plain(), &img, 0);
    let seed = (0..64)
        .find(|&s| run(&t, &img, s) != original)
        .expect("some seed flips");
    let flipped = run(&t, &img, seed);
    let flipped_img = image(4, 6, |y, x, c| (flipped[c * 24 + y * 6 + x] * 255.0).round() as u8);
    assert_eq!(run(&t, &flipped_img, seed), original);
}

#[test]
fn padded_crop_shifts_content_and_fills_with_zeros() {
    let img = image(8, 8, |_, _, _| 255);
    let t = Transform {
        augment: Some(Augment {
            crop_padding: 4,
            hflip: false,
        }),
        ..plain()
    };
    let mut saw_shift = false;
    for seed in 0..16 {
        let out = run(&t, &img, seed);
        let zeros = out.iter().filter(|&&v| v == 0.0).count();
        let ones = out.iter().filter(|&&v| v == 1.0).count();
        assert_eq!(zeros + ones, out.len());
        // The window overlaps the image by at least (8 − 4)² pixels.
        assert!(ones >= 3 * 16, "seed {seed}: {ones}");
        saw_shift |= zeros > 0;
    }
    assert!(saw_shift);
}

#[test]
fn augmentation_is_deterministic_given_the_seed() {
    let img = image(16, 16, |y, x, c| (y * 16 + x + c * 7) as u8);
    let t = Transform {
        size: Some(24),
        ..plain()
    }
    .with_augment(Augment {
        crop_padding: 4,
        hflip: true,
    });
    assert_eq!(run(&t, &img, 42), run(&t, &img, 42));
    assert!((0..8).any(|s| run(&t, &img, s) != run(&t, &img, 42)));
}

#[test]
fn bad_settings_and_buffers_are_errors_not_panics() {
    let img = image(2, 2, |_, _, _| 0);
    let mut out = vec![0f32; 5];
    let err = plain().apply(&img, &mut Rng::new(0), &mut out).unwrap_err();
    assert!(matches!(err, DataError::Invalid(_)));
    let zero_std = Transform::new(None, [0.0; 3], [1.0, 0.0, 1.0]);
    assert!(zero_std.validate().is_err());
    assert!(Transform {
        size: Some(0),
        ..plain()
    }
    .validate()
    .is_err());
    let short = Image {
        width: 2,
        height: 2,
        data: vec![0; 5],
    };
    let mut out = vec![0f32; 12];
    assert!(plain().apply(&short, &mut Rng::new(0), &mut out).is_err());
}

#[test]
fn rng_below_stays_in_range_and_covers_it() {
    let mut rng = Rng::new(7);
    let mut seen = [false; 9];
    for _ in 0..1000 {
        let v = rng.below(9) as usize;
        seen[v] = true;
    }
    assert!(seen.iter().all(|&s| s));
}
