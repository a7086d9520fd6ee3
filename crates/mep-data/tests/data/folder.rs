//! Image folders: torchvision's class order and sample numbering, splits, errors.

use std::path::{Path, PathBuf};

use mep_data::{check_uniform_size, load_image_folder, DataError, Samples, Split};

/// Writes a `w`×`h` PNG (or JPEG, by extension) whose pixels are all `v`.
fn img(path: &Path, w: u32, h: u32, v: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let rgb = image::RgbImage::from_pixel(w, h, image::Rgb([v, v, v]));
    let ext = path.extension().unwrap().to_string_lossy().to_ascii_lowercase();
    let format = if ext == "png" {
        image::ImageFormat::Png
    } else {
        image::ImageFormat::Jpeg
    };
    rgb.save_with_format(path, format).unwrap();
}

/// Paths of the split relative to `root`, with `/` separators.
fn rel(split: &Split, root: &Path) -> Vec<String> {
    let Samples::Files(paths) = &split.samples else {
        panic!("folders are read from files")
    };
    paths
        .iter()
        .map(|p: &PathBuf| p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/"))
        .collect()
}

#[test]
fn classes_are_sorted_and_samples_follow_torchvision_walk_order() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    img(&r.join("dog/b.png"), 2, 2, 1);
    img(&r.join("dog/A.PNG"), 2, 2, 2);
    img(&r.join("dog/sub/z.jpg"), 2, 2, 3);
    // sorted(os.walk()) sorts by full path string: "sub" < "sub b" < "sub/deeper" (' ' < '/').
    img(&r.join("dog/sub b/y.JPEG"), 2, 2, 4);
    img(&r.join("dog/sub/deeper/x.png"), 2, 2, 5);
    img(&r.join("cat/c.png"), 2, 2, 6);
    std::fs::write(r.join("cat/notes.txt"), "not an image").unwrap();
    std::fs::write(r.join("README"), "stray file at the root").unwrap();
    let ds = load_image_folder(r).unwrap();
    assert_eq!(ds.classes, ["cat", "dog"]);
    assert!(ds.train.is_none());
    assert_eq!(
        rel(&ds.test, r),
        [
            "cat/c.png",
            "dog/A.PNG",
            "dog/b.png",
            "dog/sub/z.jpg",
            "dog/sub b/y.JPEG",
            "dog/sub/deeper/x.png"
        ]
    );
    assert_eq!(ds.test.labels, [0, 1, 1, 1, 1, 1]);
    // Each file decodes to the image written there (JPEG is lossy: allow a little).
    let values = [6u8, 2, 1, 3, 4, 5];
    for (i, v) in values.iter().enumerate() {
        let im = ds.test.image(i).unwrap();
        assert_eq!((im.height, im.width), (2, 2));
        assert!(
            im.data.iter().all(|&p| p.abs_diff(*v) <= 2),
            "sample {i}: {:?}",
            im.data
        );
    }
}

#[test]
fn train_and_test_folders_are_the_splits() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    for split in ["train", "test"] {
        img(&r.join(split).join("b/1.png"), 3, 3, 0);
        img(&r.join(split).join("a/1.png"), 3, 3, 0);
    }
    img(&r.join("train/a/2.png"), 3, 3, 0);
    let ds = load_image_folder(r).unwrap();
    assert_eq!(ds.classes, ["a", "b"]);
    assert_eq!(
        rel(ds.train.as_ref().unwrap(), r),
        ["train/a/1.png", "train/a/2.png", "train/b/1.png"]
    );
    assert_eq!(ds.split("train").unwrap().labels, [0, 0, 1]);
    assert_eq!(ds.split("test").unwrap().labels, [0, 1]);
}

#[test]
fn train_and_test_with_different_classes_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    img(&r.join("train/a/1.png"), 3, 3, 0);
    img(&r.join("test/b/1.png"), 3, 3, 0);
    let err = load_image_folder(r).unwrap_err();
    assert!(matches!(err, DataError::Layout { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("only in train: [\"a\"]") && msg.contains("only in test: [\"b\"]"),
        "{msg}"
    );
}

#[test]
fn train_and_test_beside_other_folders_are_classes() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    for class in ["train", "test", "zebra"] {
        img(&r.join(class).join("1.png"), 3, 3, 0);
    }
    let ds = load_image_folder(r).unwrap();
    assert_eq!(ds.classes, ["test", "train", "zebra"]);
    assert!(ds.train.is_none());
}

#[test]
fn missing_root_empty_root_and_empty_class_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    let err = load_image_folder(r.join("nope")).unwrap_err();
    assert!(
        matches!(err, DataError::Io { .. }) && err.to_string().contains("nope"),
        "{err}"
    );

    std::fs::write(r.join("x.png"), b"").unwrap();
    let err = load_image_folder(r).unwrap_err();
    assert!(err.to_string().contains("no class folders"), "{err}");

    img(&r.join("full/1.png"), 2, 2, 0);
    std::fs::create_dir_all(r.join("empty/nested")).unwrap();
    std::fs::write(r.join("empty/nested/readme.txt"), "").unwrap();
    let err = load_image_folder(r).unwrap_err();
    assert!(
        matches!(err, DataError::Layout { .. }) && err.to_string().contains("empty"),
        "{err}"
    );
}

#[test]
fn image_kinds_torchvision_counts_but_mep_cannot_read_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    img(&r.join("a/1.png"), 2, 2, 0);
    std::fs::write(r.join("a/2.BMP"), b"BM").unwrap();
    let err = load_image_folder(r).unwrap_err().to_string();
    assert!(err.contains("2.BMP") && err.contains("torchvision"), "{err}");
}

#[test]
fn undecodable_file_surfaces_when_read_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    img(&r.join("a/1.png"), 2, 2, 0);
    std::fs::write(r.join("a/2.png"), b"garbage").unwrap();
    let ds = load_image_folder(r).unwrap();
    assert!(ds.test.image(0).is_ok());
    let err = ds.test.image(1).unwrap_err();
    assert!(
        matches!(err, DataError::Format { .. }) && err.to_string().contains("2.png"),
        "{err}"
    );
}

#[test]
fn uniform_size_is_reported_and_the_first_odd_file_named() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    img(&r.join("a/1.png"), 5, 4, 0);
    img(&r.join("a/2.jpg"), 5, 4, 0);
    img(&r.join("b/1.png"), 5, 4, 0);
    let ds = load_image_folder(r).unwrap();
    assert_eq!(check_uniform_size(&ds.test).unwrap(), (4, 5));
    img(&r.join("b/2.png"), 4, 4, 0);
    img(&r.join("b/3.png"), 3, 3, 0);
    let ds = load_image_folder(r).unwrap();
    let err = check_uniform_size(&ds.test).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DataError::MixedSizes { .. }), "{msg}");
    assert!(
        msg.contains("b/2.png") && msg.contains("4x4") && msg.contains("4x5"),
        "{msg}"
    );
}
