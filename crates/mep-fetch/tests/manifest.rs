//! The manifest format and the compiled-in manifest.

use std::path::Path;

use mep_fetch::{Algorithm, FetchError, Manifest};

#[test]
fn builtin_has_both_entries() {
    let m = Manifest::builtin();
    assert_eq!(m.entries().len(), 2);

    let r = m.get("resnet50.tv_in1k").unwrap();
    assert_eq!(
        r.url,
        "https://huggingface.co/timm/resnet50.tv_in1k/resolve/main/model.safetensors"
    );
    assert_eq!(r.file, "resnet50.tv_in1k.safetensors");
    assert_eq!((r.size, r.checksum.as_ref()), (None, None));

    let c = m.get("cifar-10-binary").unwrap();
    assert_eq!(c.url, "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz");
    assert_eq!(c.file, "cifar-10-binary.tar.gz");
    assert_eq!(c.size, Some(170_052_171));
    let sum = c.checksum.as_ref().unwrap();
    assert_eq!(sum.algorithm(), Algorithm::Md5);
    assert_eq!(sum.hex(), "c32a1d4ab5d03f1284b67883e8d87530");
}

#[test]
fn builtin_matches_the_repository_file() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../weights/manifest.json");
    assert_eq!(Manifest::load(&path).unwrap(), Manifest::builtin());
}

#[test]
fn unknown_name_lists_known_ones() {
    let err = Manifest::builtin().get("resnet51").unwrap_err();
    assert!(matches!(err, FetchError::UnknownEntry { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("resnet51") && msg.contains("resnet50.tv_in1k") && msg.contains("cifar-10-binary"),
        "{msg}"
    );
}

#[test]
fn parse_accepts_and_rejects() {
    let ok = r#"{"entries": [{"name": "a", "url": "http://x/a", "file": "a.bin", "size": 3,
                  "checksum": "SHA256:2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824"}]}"#;
    let m = Manifest::parse(ok, "test").unwrap();
    assert_eq!(
        m.get("a").unwrap().checksum.as_ref().unwrap().to_string(),
        "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );

    let bad = [
        "not json",
        r#"{"entries": [{"name": "a", "url": "http://x/a", "file": "a", "checksum": "sha256:abc"}]}"#,
        r#"{"entries": [{"name": "a", "url": "http://x/a", "file": "../a", "checksum": null}]}"#,
        r#"{"entries": [{"name": "a", "url": "ftp://x/a", "file": "a", "checksum": null}]}"#,
        r#"{"entries": [{"name": "a", "url": "http://x/a", "file": "a", "sha": null}]}"#,
        r#"{"entries": [{"name": "a", "url": "http://x/a", "file": "a"}, {"name": "a", "url": "http://x/b", "file": "b"}]}"#,
    ];
    for text in bad {
        let err = Manifest::parse(text, "test").unwrap_err();
        assert!(matches!(err, FetchError::Manifest { .. }), "{text}: {err}");
    }
}

#[test]
fn load_missing_file_names_it() {
    let err = Manifest::load(Path::new("/nonexistent/manifest.json")).unwrap_err();
    assert!(matches!(err, FetchError::Io { .. }) && err.to_string().contains("/nonexistent/manifest.json"));
}
