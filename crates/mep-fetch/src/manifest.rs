//! The manifest of downloadable files (`weights/manifest.json`).

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Checksum, FetchError};

/// The manifest compiled into the crate, so the `fetch` step works from any directory.
const BUILTIN: &str = include_str!("../../../weights/manifest.json");

/// One downloadable file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The name users ask for (`resnet50.tv_in1k`).
    pub name: String,
    /// Where to download it from (`http` or `https`).
    pub url: String,
    /// The file name in the cache directory: a plain name, no directories.
    pub file: String,
    /// The size in bytes, when known; checked before the (slower) checksum.
    #[serde(default)]
    pub size: Option<u64>,
    /// The pinned digest; `None` means trust on first use (see [`crate::fetch`]).
    #[serde(default)]
    pub checksum: Option<Checksum>,
}

impl Entry {
    /// Rejects entries that would write outside the cache directory or cannot be downloaded.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("an entry has an empty name".into());
        }
        let f = self.file.as_str();
        // The file name is joined onto the cache directory, so anything but a plain name could
        // escape it or collide with our own `.part` / `.sha256` side files.
        if f.is_empty()
            || f == "."
            || f == ".."
            || f.contains(['/', '\\', '\0'])
            || f.ends_with(".part")
            || f.ends_with(".sha256")
        {
            return Err(format!(
                "entry {:?}: file {:?} is not a plain file name",
                self.name, self.file
            ));
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(format!("entry {:?}: url {:?} is not http(s)", self.name, self.url));
        }
        Ok(())
    }
}

/// The list of known downloads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    entries: Vec<Entry>,
}

impl Manifest {
    /// The manifest from the repository's `weights/manifest.json`, as compiled in.
    pub fn builtin() -> Manifest {
        // A test parses the same text, so this can only fail if that test does.
        Manifest::parse(BUILTIN, "builtin weights/manifest.json")
            .unwrap_or_else(|e| panic!("the compiled-in manifest is invalid: {e}"))
    }

    /// Reads and validates a manifest file.
    pub fn load(path: &Path) -> Result<Manifest, FetchError> {
        let text = std::fs::read_to_string(path).map_err(|source| FetchError::Io {
            path: path.to_path_buf(),
            source,
            hint: String::new(),
        })?;
        Manifest::parse(&text, &path.display().to_string())
    }

    /// Parses and validates manifest JSON; `origin` names it in errors (a path, "builtin").
    pub fn parse(json: &str, origin: &str) -> Result<Manifest, FetchError> {
        let bad = |reason: String| FetchError::Manifest {
            origin: origin.to_string(),
            reason,
        };
        let manifest: Manifest = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
        let mut names = HashSet::new();
        let mut files = HashSet::new();
        for e in &manifest.entries {
            e.validate().map_err(bad)?;
            if !names.insert(e.name.as_str()) {
                return Err(bad(format!("entry name {:?} appears twice", e.name)));
            }
            if !files.insert(e.file.as_str()) {
                return Err(bad(format!("file {:?} appears twice", e.file)));
            }
        }
        Ok(manifest)
    }

    /// All entries, in manifest order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry called `name`; the error lists the known names.
    pub fn get(&self, name: &str) -> Result<&Entry, FetchError> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| FetchError::UnknownEntry {
                name: name.to_string(),
                known: self
                    .entries
                    .iter()
                    .map(|e| e.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}
