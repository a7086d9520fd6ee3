//! Errors that must say what is actually wrong (issue 18, item 8): a file given to `--data`
//! that is not a dataset, and pairs files with invisible characters.

use mep::connect::pairs::{escape_invisible, read_pairs_file};
use std::path::PathBuf;
use std::process::Command;

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mep-messages-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// What every `--data` refusal lists.
fn lists_what_data_takes(e: &str) {
    for what in [
        "`synthetic`",
        "`cifar10`",
        "cifar-10-binary.tar.gz",
        "cifar-10-batches-bin/",
        "root/<class>/<image>",
    ] {
        assert!(e.contains(what), "{what} missing from: {e}");
    }
}

#[test]
fn an_image_given_to_data_is_not_a_dataset_rather_than_a_corrupt_download() {
    let dir = tmpdir("png");
    let png = dir.join("x.png");
    image::RgbImage::from_pixel(4, 4, image::Rgb([9, 9, 9]))
        .save(&png)
        .unwrap();
    // A JPEG under a misleading name: the content decides.
    let jpeg = dir.join("photo.dat");
    image::RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3]))
        .save_with_format(&jpeg, image::ImageFormat::Jpeg)
        .unwrap();
    let csv = dir.join("pairs.csv");
    std::fs::write(&csv, "0,1\n").unwrap();

    for (file, what) in [
        (&png, "a PNG image, not a dataset"),
        (&jpeg, "a JPEG image, not a dataset"),
        (
            &csv,
            "not a dataset (the only file --data reads is a gzip'd CIFAR-10 archive)",
        ),
    ] {
        let spec = file.to_str().unwrap();
        let e = mep::data::open_dataset(spec).unwrap_err().to_string();
        assert!(e.starts_with(&format!("--data {spec}: {what}; ")), "{e}");
        assert!(!e.contains("fetch it again") && !e.contains("MD5"), "{e}");
        lists_what_data_takes(&e);
    }
    let missing = dir.join("nothing-here");
    let e = mep::data::open_dataset(missing.to_str().unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no such file or folder"), "{e}");
    lists_what_data_takes(&e);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn the_mep_command_says_an_image_is_not_a_dataset() {
    let dir = tmpdir("cli");
    let png = dir.join("x.png");
    image::RgbImage::from_pixel(4, 4, image::Rgb([9, 9, 9]))
        .save(&png)
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mep"))
        .args(["train", "--arch", "resnet20", "--epochs", "1", "--data"])
        .arg(&png)
        .arg("--out")
        .arg(dir.join("run"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("x.png: a PNG image, not a dataset"), "{stderr}");
    assert!(!stderr.contains("fetch it again"), "{stderr}");
    std::fs::remove_dir_all(dir).ok();
}

fn labels() -> (Vec<usize>, Vec<String>) {
    (
        (0..12).map(|k| k % 3).collect(),
        ["a", "b", "c"].map(String::from).to_vec(),
    )
}

#[test]
fn a_pairs_file_with_a_byte_order_mark_parses() {
    let dir = tmpdir("bom");
    let file = dir.join("pairs.csv");
    // As a spreadsheet saves "CSV UTF-8": a BOM, then CRLF lines.
    std::fs::write(&file, "\u{feff}0,3\r\n4,1\r\n").unwrap();
    let (labels, classes) = labels();
    let pairs = read_pairs_file(&file, &labels, &classes).unwrap();
    let got: Vec<(usize, usize, usize)> = pairs.iter().map(|p| (p.i, p.j, p.class)).collect();
    assert_eq!(got, [(0, 3, 0), (4, 1, 1)]);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_line_quoted_in_an_error_shows_invisible_characters_escaped() {
    let dir = tmpdir("invisible");
    let (labels, classes) = labels();
    for (text, line, shown) in [
        // A zero-width space pasted from a web page.
        ("0,3\n1\u{200b},4\n", 2, r"`1\u{200b},4`"),
        // A BOM that is not at the start of the file (two files concatenated).
        ("0,3\n\u{feff}1,4\n", 2, r"`\u{feff}1,4`"),
        // A tab and a bell inside the line.
        ("0\t;3\n", 1, r"`0\t;3`"),
        ("0,\u{7}3\n", 1, r"`0,\u{7}3`"),
    ] {
        let file = dir.join("pairs.csv");
        std::fs::write(&file, text).unwrap();
        let e = read_pairs_file(&file, &labels, &classes).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:{line}: ", file.display())), "{e}");
        assert!(e.contains(shown), "{shown} not in: {e}");
        assert!(!e.contains(['\u{200b}', '\u{feff}', '\t', '\u{7}']), "{e:?}");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn escaping_keeps_visible_text_as_it_is() {
    assert_eq!(escape_invisible("3;4 # é, ü, 猫"), "3;4 # é, ü, 猫");
    assert_eq!(escape_invisible("a\u{00ad}b\u{202e}c\r"), r"a\u{ad}b\u{202e}c\r");
}

#[test]
fn a_pairs_file_that_is_not_utf8_names_the_line() {
    let dir = tmpdir("latin1");
    let file = dir.join("pairs.csv");
    // "0,3" then a Latin-1 comment: the bad byte is on line 2.
    std::fs::write(&file, b"0,3\n1,4 # caf\xe9\n").unwrap();
    let (labels, classes) = labels();
    let e = read_pairs_file(&file, &labels, &classes).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}:2: not UTF-8 text", file.display())), "{e}");
    std::fs::remove_dir_all(dir).ok();
}
