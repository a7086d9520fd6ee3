//! The shared types: reading samples out of a split, and choosing a split by name.

use mep_data::{DataError, Dataset, Samples, Split};

fn two_by_one(n: usize) -> Split {
    let data = (0..n * 6).map(|b| b as u8).collect();
    Split {
        samples: Samples::InMemory {
            height: 1,
            width: 2,
            data,
        },
        labels: (0..n).collect(),
    }
}

#[test]
fn in_memory_image_is_copied_out_with_its_label() {
    let s = two_by_one(3);
    assert_eq!((s.len(), s.is_empty()), (3, false));
    let im = s.image(1).unwrap();
    assert_eq!((im.height, im.width), (1, 2));
    assert_eq!(im.data, [6, 7, 8, 9, 10, 11]);
    assert_eq!(s.label(2).unwrap(), 2);
    assert!(s.path(0).is_none());
}

#[test]
fn out_of_range_and_short_data_are_errors() {
    let mut s = two_by_one(3);
    assert!(matches!(s.image(3), Err(DataError::Invalid(_))));
    assert!(s.label(3).is_err());
    // More labels than pixel data: an error, not a panic.
    s.labels.push(0);
    assert!(matches!(s.image(3), Err(DataError::Invalid(_))));
}

#[test]
fn files_decode_to_rgb_and_errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let grey = tmp.path().join("grey.png");
    image::GrayImage::from_pixel(2, 1, image::Luma([77]))
        .save(&grey)
        .unwrap();
    let missing = tmp.path().join("gone.png");
    let s = Split {
        samples: Samples::Files(vec![grey.clone(), missing]),
        labels: vec![0, 1],
    };
    let im = s.image(0).unwrap();
    assert_eq!(im.data, [77; 6]);
    assert_eq!(s.path(0), Some(grey.as_path()));
    let err = s.image(1).unwrap_err();
    assert!(
        matches!(err, DataError::Io { .. }) && err.to_string().contains("gone.png"),
        "{err}"
    );
}

#[test]
fn split_by_name_and_missing_train_split() {
    let mut ds = Dataset {
        name: "toy".into(),
        classes: vec!["a".into(), "b".into()],
        train: None,
        test: two_by_one(2),
    };
    assert_eq!(ds.num_classes(), 2);
    assert_eq!(ds.split("test").unwrap().len(), 2);
    let msg = ds.split("train").unwrap_err().to_string();
    assert!(msg.contains("toy") && msg.contains("no train split"), "{msg}");
    assert!(ds.split("val").unwrap_err().to_string().contains("\"val\""));
    ds.train = Some(two_by_one(5));
    assert_eq!(ds.split("train").unwrap().len(), 5);
}
