//! Loader: epoch order, batching, prefetching, shutdown and error delivery.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mep_data::{Augment, Loader, Samples, Split, Transform};

/// `n` 4×4 images; image `i` is filled with the value `i % 256` and has label `i % 3`.
fn split(n: usize) -> Split {
    let data = (0..n).flat_map(|i| std::iter::repeat_n((i % 256) as u8, 48)).collect();
    Split {
        samples: Samples::InMemory {
            height: 4,
            width: 4,
            data,
        },
        labels: (0..n).map(|i| i % 3).collect(),
    }
}

fn plain() -> Transform {
    Transform::new(None, [0.0; 3], [1.0; 3])
}

fn indices(loader: &Loader, epoch: u64) -> Vec<usize> {
    loader.epoch(epoch).flat_map(|b| b.unwrap().indices).collect()
}

#[test]
fn every_index_appears_once_per_epoch() {
    let loader = Loader::new(split(103), plain(), 10, true, 5, false).unwrap();
    assert_eq!(loader.num_batches(), 11);
    let mut seen = indices(&loader, 0);
    assert_eq!(seen.len(), 103);
    seen.sort();
    assert_eq!(seen, (0..103).collect::<Vec<_>>());
}

#[test]
fn batches_carry_matching_pixels_labels_and_shape() {
    let loader = Loader::new(split(10), plain(), 4, true, 1, false).unwrap();
    let batches: Vec<_> = loader.epoch(0).map(Result::unwrap).collect();
    assert_eq!(
        batches.iter().map(|b| b.shape).collect::<Vec<_>>(),
        [[4, 3, 4, 4], [4, 3, 4, 4], [2, 3, 4, 4]]
    );
    for b in &batches {
        assert_eq!(b.x.len(), b.shape.iter().product::<usize>());
        for (k, &i) in b.indices.iter().enumerate() {
            assert_eq!(b.labels[k], i % 3);
            assert!(b.x[k * 48..(k + 1) * 48].iter().all(|&v| v == i as f32 / 255.0));
        }
    }
}

#[test]
fn unshuffled_order_is_index_order() {
    let loader = Loader::new(split(7), plain(), 3, false, 9, false).unwrap();
    assert_eq!(indices(&loader, 0), (0..7).collect::<Vec<_>>());
    assert_eq!(indices(&loader, 3), (0..7).collect::<Vec<_>>());
}

#[test]
fn same_seed_gives_same_order_and_epochs_differ() {
    let a = Loader::new(split(50), plain(), 8, true, 11, false).unwrap();
    let b = Loader::new(split(50), plain(), 8, true, 11, false).unwrap();
    assert_eq!(indices(&a, 0), indices(&b, 0));
    assert_eq!(indices(&a, 2), a.order(2));
    assert_ne!(indices(&a, 0), indices(&a, 1));
    let c = Loader::new(split(50), plain(), 8, true, 12, false).unwrap();
    assert_ne!(indices(&a, 0), indices(&c, 0));
}

#[test]
fn drop_last_skips_the_short_batch() {
    let loader = Loader::new(split(10), plain(), 4, true, 0, true).unwrap();
    assert_eq!(loader.num_batches(), 2);
    let sizes: Vec<usize> = loader.epoch(0).map(|b| b.unwrap().indices.len()).collect();
    assert_eq!(sizes, [4, 4]);
}

#[test]
fn augmented_batches_are_reproducible() {
    let t = Transform {
        size: Some(6),
        ..plain()
    }
    .with_augment(Augment {
        crop_padding: 2,
        hflip: true,
    });
    let loader = Loader::new(split(20), t, 5, true, 3, false).unwrap();
    let a: Vec<_> = loader.epoch(1).map(Result::unwrap).collect();
    let b: Vec<_> = loader.epoch(1).map(Result::unwrap).collect();
    assert_eq!(a, b);
    assert_eq!(a[0].shape, [5, 3, 6, 6]);
}

#[test]
fn dropping_mid_epoch_returns_promptly() {
    // 2000 images at 64x64 -> 224x224: far more work than the test waits for.
    let n = 2000;
    let data = vec![7u8; n * 64 * 64 * 3];
    let big = Split {
        samples: Samples::InMemory {
            height: 64,
            width: 64,
            data,
        },
        labels: vec![0; n],
    };
    let loader = Loader::new(Arc::new(big), Transform::imagenet(Some(224)), 16, true, 0, false).unwrap();
    for threads in [1, 4] {
        let mut epoch = loader.clone().with_threads(threads).unwrap().epoch(0);
        epoch.next().unwrap().unwrap();
        let start = Instant::now();
        drop(epoch);
        let took = start.elapsed();
        assert!(took < Duration::from_secs(2), "{threads} workers: drop took {took:?}");
    }
}

#[test]
fn loader_prefetches_while_the_consumer_works() {
    let loader = Loader::new(split(40), plain(), 10, false, 0, false).unwrap();
    let mut epoch = loader.epoch(0);
    epoch.next().unwrap().unwrap();
    // While the consumer is busy the next batch is made; taking it is then immediate.
    std::thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    epoch.next().unwrap().unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(50),
        "waited {:?}",
        start.elapsed()
    );
}

/// A 3×3 PNG `good.png` and a file `broken.png` that is not one, in `dir`.
fn good_and_broken_png(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let good = dir.join("good.png");
    image::RgbImage::from_pixel(3, 3, image::Rgb([1, 2, 3]))
        .save(&good)
        .unwrap();
    let bad = dir.join("broken.png");
    std::fs::write(&bad, b"not a png").unwrap();
    (good, bad)
}

#[test]
fn unreadable_image_is_an_error_item_naming_the_file_and_later_batches_still_come() {
    let tmp = tempfile::tempdir().unwrap();
    let (good, bad) = good_and_broken_png(tmp.path());
    let missing = tmp.path().join("missing.png");
    let paths: Vec<PathBuf> = vec![good.clone(), bad, good.clone(), missing, good];
    let split = Split {
        samples: Samples::Files(paths),
        labels: vec![0; 5],
    };
    let loader = Loader::new(split, plain(), 1, false, 0, false).unwrap();
    let items: Vec<_> = loader.epoch(0).collect();
    assert_eq!(items.len(), 5);
    assert!(items[0].is_ok() && items[2].is_ok() && items[4].is_ok());
    let e1 = items[1].as_ref().unwrap_err().to_string();
    assert!(e1.contains("broken.png"), "{e1}");
    let e3 = items[3].as_ref().unwrap_err().to_string();
    assert!(e3.contains("missing.png"), "{e3}");
}

#[test]
fn mixed_sizes_without_resize_are_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a.png");
    let b = tmp.path().join("b.png");
    image::RgbImage::new(3, 3).save(&a).unwrap();
    image::RgbImage::new(4, 3).save(&b).unwrap();
    let split = Split {
        samples: Samples::Files(vec![a.clone(), b]),
        labels: vec![0, 0],
    };
    let loader = Loader::new(split.clone(), plain(), 2, false, 0, false).unwrap();
    let err = loader.epoch(0).next().unwrap().unwrap_err().to_string();
    assert!(err.contains("b.png") && err.contains("--size"), "{err}");
    // With a resize they batch together.
    let loader = Loader::new(
        split,
        Transform {
            size: Some(5),
            ..plain()
        },
        2,
        false,
        0,
        false,
    )
    .unwrap();
    assert_eq!(loader.epoch(0).next().unwrap().unwrap().shape, [2, 3, 5, 5]);
}

/// A 10×12 image set with varied pixels, so that crops, flips and the resize all show.
fn varied(n: usize) -> Split {
    let data = (0..n * 10 * 12 * 3).map(|k| (k * 37 % 251) as u8).collect();
    Split {
        samples: Samples::InMemory {
            height: 10,
            width: 12,
            data,
        },
        labels: (0..n).map(|i| i % 4).collect(),
    }
}

#[test]
fn batches_are_bit_identical_for_any_number_of_workers() {
    let t = Transform::imagenet(Some(16)).with_augment(Augment {
        crop_padding: 4,
        hflip: true,
    });
    let loader = Loader::new(Arc::new(varied(90)), t, 8, true, 42, false).unwrap();
    let batches = |threads: usize, epoch: u64| -> Vec<_> {
        let l = loader.clone().with_threads(threads).unwrap();
        assert_eq!(l.threads(), threads);
        l.epoch(epoch).map(Result::unwrap).collect()
    };
    for epoch in [0, 3] {
        let one = batches(1, epoch);
        assert_eq!(one.len(), 12);
        for threads in [2, 4, 16] {
            let many = batches(threads, epoch);
            assert_eq!(one.len(), many.len());
            for (a, b) in one.iter().zip(&many) {
                assert_eq!((&a.indices, &a.labels, a.shape), (&b.indices, &b.labels, b.shape));
                let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&a.x), bits(&b.x), "threads {threads}, epoch {epoch}");
            }
        }
    }
}

#[test]
fn errors_name_the_file_and_come_in_place_with_many_workers() {
    let tmp = tempfile::tempdir().unwrap();
    let (good, bad) = good_and_broken_png(tmp.path());
    let mut paths: Vec<PathBuf> = vec![good.clone(); 12];
    paths[7] = bad;
    let split = Split {
        samples: Samples::Files(paths),
        labels: vec![0; 12],
    };
    let loader = Loader::new(split, plain(), 2, false, 0, false)
        .unwrap()
        .with_threads(4)
        .unwrap();
    let items: Vec<_> = loader.epoch(0).collect();
    assert_eq!(items.len(), 6);
    for (b, item) in items.iter().enumerate() {
        match item {
            Err(e) => {
                assert_eq!(b, 3, "only batch 3 holds the broken file");
                assert!(e.to_string().contains("broken.png"), "{e}");
            }
            Ok(batch) => assert_eq!(batch.indices, [2 * b, 2 * b + 1]),
        }
    }
    assert!(items[3].is_err());
}

#[test]
fn zero_workers_are_rejected() {
    let e = Loader::new(split(3), plain(), 1, false, 0, false)
        .unwrap()
        .with_threads(0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least 1 worker"), "{e}");
    assert!(mep_data::loader::default_threads() >= 1);
}

#[test]
fn zero_batch_size_is_rejected() {
    assert!(Loader::new(split(3), plain(), 0, false, 0, false).is_err());
}
