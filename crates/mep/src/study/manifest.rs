//! `manifest.json`: every setting that changes a study's results, the pair list, and
//! which shard of it a folder holds.

use super::store::write_atomic;
use super::MANIFEST;
use crate::{MepError, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// One pair of a study: two test images of one class.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pair {
    /// Position in the study's pair list (what `--shard` partitions).
    pub pair: usize,
    /// Dataset index (in the test split) of the first endpoint.
    pub i: usize,
    /// Dataset index of the second endpoint.
    pub j: usize,
    /// The class both images have: the target of the path search.
    pub class: usize,
    /// That class's name.
    pub class_name: String,
    /// What the endpoints are; the paper's pairs (two correctly classified images) are
    /// [`Endpoints::Natural`], which files leave out.
    #[serde(default, skip_serializing_if = "Endpoints::is_natural")]
    pub endpoints: Endpoints,
    /// The dataset label of `i` when it is not `class`: a misclassified endpoint checked in
    /// the class the model predicts for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub true_class: Option<usize>,
    /// The model's class for `i` when it is not `class`: a misclassified endpoint checked in
    /// its true class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted: Option<usize>,
}

/// What the two endpoints of a pair are, and so what `class` (the class the path must
/// keep) means. In every kind `j` is an image the model puts in `class`; the kinds differ
/// in `i`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Endpoints {
    /// Two test images of `class` (the paper's pairs; with `--endpoints all` either may be
    /// misclassified).
    #[default]
    Natural,
    /// `i` is misclassified (label `true_class`), checked in the class the model predicts
    /// for it, `class`.
    MisclassifiedPredicted,
    /// `i` is misclassified (the model predicts `predicted`), checked in its label, `class`.
    MisclassifiedTrue,
    /// `i` is an adversarial image (of `mep attack`) that the model puts in `class`.
    Adversarial,
}

impl Endpoints {
    /// Whether these are the paper's pairs (what files leave out).
    pub fn is_natural(&self) -> bool {
        *self == Endpoints::Natural
    }

    /// The name in files and tables.
    pub fn name(&self) -> &'static str {
        match self {
            Endpoints::Natural => "natural",
            Endpoints::MisclassifiedPredicted => "misclassified-predicted",
            Endpoints::MisclassifiedTrue => "misclassified-true",
            Endpoints::Adversarial => "adversarial",
        }
    }
}

/// `mep connect --endpoints`: which pairs a study draws.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointSelection {
    /// Pairs of two test images of one class that the model classifies correctly (the
    /// paper's; the default).
    #[default]
    Correct,
    /// For each of `--pairs` misclassified test images m (label c, predicted c′), two pairs:
    /// m with a correctly classified image of c′, checked in c′
    /// ([`Endpoints::MisclassifiedPredicted`]), and m with a correctly classified image of c,
    /// checked in c ([`Endpoints::MisclassifiedTrue`]).
    Misclassified,
    /// Pairs of two test images of one class, whatever the model predicts for them (what
    /// `--allow-misclassified` has always meant).
    All,
}

impl EndpointSelection {
    /// The name on the command line and in manifests.
    pub fn name(&self) -> &'static str {
        match self {
            EndpointSelection::Correct => "correct",
            EndpointSelection::Misclassified => "misclassified",
            EndpointSelection::All => "all",
        }
    }
}

impl fmt::Display for EndpointSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `--shard i/n`: the pairs `k` with `k % n == i`.
///
/// Read from a manifest, `count` must be positive and `index` below it, as `--shard`
/// insists (a manifest with `count: 0` would otherwise divide by zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ShardFields")]
pub struct Shard {
    /// i, in `0..count`.
    pub index: usize,
    /// n, the number of shards.
    pub count: usize,
}

/// A [`Shard`] as stored, before its fields are checked.
#[derive(Deserialize)]
struct ShardFields {
    index: usize,
    count: usize,
}

impl TryFrom<ShardFields> for Shard {
    type Error = String;
    fn try_from(f: ShardFields) -> std::result::Result<Self, String> {
        if f.index >= f.count {
            return Err(format!(
                "shard {}/{}: the index must be below the count, and the count positive",
                f.index, f.count
            ));
        }
        Ok(Shard {
            index: f.index,
            count: f.count,
        })
    }
}

impl Shard {
    /// Whether pair number `k` belongs to this shard.
    pub fn contains(&self, k: usize) -> bool {
        k % self.count == self.index
    }
}

impl FromStr for Shard {
    type Err = MepError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| MepError::option("--shard", s, why);
        let (i, n) = s.split_once('/').ok_or_else(|| bad("expected i/n, e.g. 0/4"))?;
        let (index, count): (usize, usize) = match (i.trim().parse(), n.trim().parse()) {
            (Ok(i), Ok(n)) => (i, n),
            _ => return Err(bad("expected two non-negative integers i/n, e.g. 0/4")),
        };
        if count == 0 {
            return Err(bad("the shard count n must be positive"));
        }
        if index >= count {
            return Err(bad(&format!(
                "the shard index must be below the count (0 to {})",
                count - 1
            )));
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Every setting that changes a study's results. A rerun into the same folder must have
/// equal settings, and so must the shards `mep merge` joins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The architecture's name.
    pub arch: String,
    /// SHA-256 of the checkpoint file (its path may differ between machines).
    pub weights_sha256: String,
    /// The dataset's name.
    pub dataset: String,
    /// Its class names.
    pub classes: Vec<String>,
    /// Images in its test split.
    pub test_images: usize,
    /// The input transform: the side images are resized to (`None`: their own),
    pub input_size: Option<usize>,
    /// the channel means subtracted
    pub mean: [f32; 3],
    /// and the standard deviations divided by.
    pub std: [f32; 3],
    /// The spaces studied, in order.
    pub spaces: Vec<String>,
    /// Pairs asked for (`None`: every pair of the pairs file).
    pub pairs: Option<usize>,
    /// SHA-256 of the `--pairs-file`, when pairs come from one.
    pub pairs_file_sha256: Option<String>,
    /// Classes `--class` restricted the draw to (empty: all).
    pub class_filter: Vec<usize>,
    /// Whether pairs with a misclassified endpoint are kept: `endpoints` is `all` (kept
    /// beside it so manifests read the same by tools before `--endpoints`).
    pub allow_misclassified: bool,
    /// Which pairs are drawn (`--endpoints`). Manifests written before it have none and
    /// read as `all` when `allow_misclassified`, else `correct` ([`Manifest::parse`]).
    #[serde(default)]
    pub endpoints: EndpointSelection,
    /// The seed of the pair draw and the searches.
    pub seed: u64,
    /// N, pivots of a path (endpoints included).
    pub pivots: usize,
    /// S, dense sub-points per segment.
    pub sub_points: usize,
    /// `adam`, `sgd` or `fire`.
    pub optimizer: String,
    /// The learning rate relative to the endpoint distance.
    pub step: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Spring constant; `None` is k = ∞ (redistribution).
    pub spring: Option<f64>,
    /// When the climbing image switches on, as a fraction of `max_steps`.
    pub climbing_after: Option<f64>,
    /// The force at which a search counts as converged.
    pub fmax: Option<f64>,
    /// Steps between checks of the dense path.
    pub check_every: usize,
    /// AutoNEB insertion threshold.
    pub insert_threshold: Option<f64>,
    /// The most pivots insertion may grow a path to.
    pub max_pivots: Option<usize>,
    /// The step budget per pair and space.
    pub max_steps: usize,
    /// The arithmetic of the NEB's gradient steps (`--precision`); the checks that decide
    /// each category are fp32 whatever it is. Manifests written before it read as fp32.
    #[serde(default, with = "crate::precision_name")]
    pub precision: crate::Precision,
}

impl Settings {
    /// `name: recorded → now` for every setting that differs.
    pub fn differences(&self, now: &Settings) -> Vec<String> {
        differences(self, now)
    }
}

/// `name: recorded → now` for every field of two records of settings that differs (as
/// their JSON shows them): what `mep connect`, `mep merge` and `mep train --resume` list
/// when they refuse a folder written with other settings.
pub fn differences<T: Serialize>(recorded: &T, now: &T) -> Vec<String> {
    let (a, b) = (serde_json::to_value(recorded), serde_json::to_value(now));
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) = (a, b) else {
        return vec!["(settings not comparable)".into()];
    };
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: {v} → {}", b.get(k).unwrap_or(&serde_json::Value::Null)))
        .collect()
}

/// `manifest.json`: the settings, the pair list and what is only informative.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// `mep <version>`.
    pub tool: String,
    pub settings: Settings,
    /// The checkpoint's path as given (informative; the SHA-256 identifies it).
    pub weights: PathBuf,
    /// `--data` as given (informative).
    pub data: String,
    /// Which slice of the pairs this folder studies; `None` for all of them.
    pub shard: Option<Shard>,
    /// Most points per network call (changes speed, not results).
    pub batch: usize,
    /// Every pair of the study, whatever the shard.
    pub pair_list: Vec<Pair>,
    /// Candidate pairs skipped because an endpoint was misclassified; with `endpoints`
    /// `misclassified`, misclassified images passed over (no class predicted, or no correctly
    /// classified image of their true or predicted class left to pair with).
    pub skipped: usize,
    /// The shard folders `mep merge` joined into this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<PathBuf>,
}

impl Manifest {
    /// Reads `dir/manifest.json`, if there is one.
    pub fn read(dir: &Path) -> Result<Option<Manifest>> {
        let path = dir.join(MANIFEST);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(MepError::Io { path, source }),
        };
        Self::parse(text.as_bytes(), &path).map(Some)
    }

    /// Parses the bytes of a `manifest.json`; `path` names it in errors.
    /// A manifest from before `--endpoints` records only `allow_misclassified`, and reads
    /// as the selection that flag meant; one whose two fields disagree is refused.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Manifest> {
        let bad = |msg: String| MepError::Results {
            path: path.to_path_buf(),
            msg,
        };
        let mut m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not a manifest of `mep connect`: {e}")))?;
        let s = &mut m.settings;
        // The one disagreement an old manifest makes (no `endpoints`, read as the default).
        if s.allow_misclassified && s.endpoints == EndpointSelection::Correct {
            s.endpoints = EndpointSelection::All;
        }
        if s.allow_misclassified != (s.endpoints == EndpointSelection::All) {
            return Err(bad(format!(
                "settings.allow_misclassified is {} but settings.endpoints is `{}`; \
                 allow_misclassified is true exactly when endpoints is `all`",
                s.allow_misclassified, s.endpoints
            )));
        }
        Ok(m)
    }

    /// Writes `dir/manifest.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| MepError::Results {
            path: dir.join(MANIFEST),
            msg: e.to_string(),
        })?;
        write_atomic(&dir.join(MANIFEST), (text + "\n").as_bytes())
    }
}
