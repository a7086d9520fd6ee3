//! `mep merge`: joins the folders of a sharded study into one, after checking that they
//! are shards of one study and that together they hold every (pair, space) exactly once.

use crate::lock::FolderLock;
use crate::study::{
    count, paths_dir, read_results, write_atomic, write_tables, Manifest, PairResult, SpaceCounts, MANIFEST, RESULTS,
};
use crate::{MepError, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// What `mep merge` reads.
#[derive(Clone, Debug)]
pub struct MergeArgs {
    /// The folder of the merged study.
    pub out: PathBuf,
    /// The shard folders (each written by `mep connect --shard i/n`).
    pub shards: Vec<PathBuf>,
}

/// What a merge produced.
#[derive(Clone, Debug, Serialize)]
pub struct MergeReport {
    /// The merged folder.
    pub out: PathBuf,
    /// Shard folders joined.
    pub shards: usize,
    /// Pairs of the study.
    pub pairs: usize,
    /// Results written (pairs × spaces).
    pub results: usize,
    /// Table 1 of the merged study.
    pub counts: Vec<SpaceCounts>,
}

impl fmt::Display for MergeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "merged {} shards: {} pairs, {} results",
            self.shards, self.pairs, self.results
        )?;
        for c in &self.counts {
            writeln!(
                f,
                "  {:<8} linear {:>5}  nonlinear {:>5}  none {:>5}{}",
                c.space,
                c.linear,
                c.nonlinear,
                c.none,
                if c.error > 0 {
                    format!("  error {:>5}", c.error)
                } else {
                    String::new()
                }
            )?;
        }
        writeln!(f, "wrote {}", self.out.display())
    }
}

/// At most `n` items, then how many more.
fn listing(items: &[String], n: usize) -> String {
    let mut s = items.iter().take(n).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > n {
        s.push_str(&format!(" and {} more", items.len() - n));
    }
    s
}

/// Makes `dst` the same file as `src`: a hard link where the file system allows, else a copy.
pub(crate) fn link_or_copy(src: &Path, dst: &Path) -> Result<()> {
    let _ = std::fs::remove_file(dst);
    if std::fs::hard_link(src, dst).is_ok() {
        return Ok(());
    }
    std::fs::copy(src, dst).map(|_| ()).map_err(|source| MepError::Io {
        path: src.to_path_buf(),
        source,
    })
}

/// Merges shard folders into `args.out`: the manifests must agree apart from the shard,
/// and the results must cover every pair of the study in every space exactly once. Writes
/// one `manifest.json`, `results.jsonl` (ordered by pair, then space), the tables, and
/// links (or copies) the path files into `out/paths`.
pub fn merge(args: &MergeArgs) -> Result<MergeReport> {
    if args.shards.is_empty() {
        return Err(MepError::Merge("name at least one shard folder".into()));
    }
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let out_c = canon(&args.out);
    if args.shards.iter().any(|s| canon(s) == out_c) {
        return Err(MepError::Merge(format!(
            "--out {} is one of the shard folders; merge into a new folder",
            args.out.display()
        )));
    }
    // The shards are locked too: a shard that a `mep connect` is still writing would be
    // merged half done.
    let mut locks = vec![FolderLock::acquire(&args.out, "mep merge")?];
    let mut locked = vec![out_c];
    for dir in &args.shards {
        let c = canon(dir);
        if dir.is_dir() && !locked.contains(&c) {
            locks.push(FolderLock::acquire(dir, "mep merge (reading this shard)")?);
            locked.push(c);
        }
    }
    let mut manifests = Vec::new();
    for dir in &args.shards {
        let m = Manifest::read(dir)?.ok_or_else(|| {
            MepError::Merge(format!(
                "{}: no {MANIFEST}; not a folder written by `mep connect`",
                dir.display()
            ))
        })?;
        manifests.push(m);
    }
    let first = &manifests[0];
    for (dir, m) in args.shards.iter().zip(&manifests).skip(1) {
        let diffs = first.settings.differences(&m.settings);
        if !diffs.is_empty() {
            return Err(MepError::Merge(format!(
                "{} and {} are not shards of one study; these settings differ: {}",
                args.shards[0].display(),
                dir.display(),
                diffs.join("; ")
            )));
        }
        if m.pair_list != first.pair_list || m.skipped != first.skipped {
            return Err(MepError::Merge(format!(
                "{} and {} have the same settings but different pair lists (was the dataset changed?)",
                args.shards[0].display(),
                dir.display()
            )));
        }
    }
    let spaces = first.settings.spaces.clone();
    let space_rank = |s: &str| spaces.iter().position(|x| x == s);

    let mut found: BTreeMap<(usize, usize), (usize, PairResult)> = BTreeMap::new();
    let mut duplicates = Vec::new();
    for (k, dir) in args.shards.iter().enumerate() {
        let (results, _) = read_results(&dir.join(RESULTS), true)?;
        for r in results {
            let belongs = first.pair_list.get(r.pair).is_some_and(|p| p.i == r.i && p.j == r.j);
            let Some(rank) = space_rank(&r.space).filter(|_| belongs) else {
                return Err(MepError::Merge(format!(
                    "{}: the result of pair {} ({},{}) in space {} does not belong to the study",
                    dir.join(RESULTS).display(),
                    r.pair,
                    r.i,
                    r.j,
                    r.space
                )));
            };
            if let Some((other, _)) = found.get(&(r.pair, rank)) {
                duplicates.push(format!(
                    "pair {} in {} (in {} and {})",
                    r.pair,
                    r.space,
                    args.shards[*other].display(),
                    dir.display()
                ));
                continue;
            }
            found.insert((r.pair, rank), (k, r));
        }
    }
    if !duplicates.is_empty() {
        return Err(MepError::Merge(format!(
            "{} result(s) appear in more than one shard: {}",
            duplicates.len(),
            listing(&duplicates, 20)
        )));
    }
    let mut missing = Vec::new();
    for p in &first.pair_list {
        let absent: Vec<&str> = spaces
            .iter()
            .enumerate()
            .filter(|(rank, _)| !found.contains_key(&(p.pair, *rank)))
            .map(|(_, s)| s.as_str())
            .collect();
        if !absent.is_empty() {
            missing.push(format!("pair {} ({})", p.pair, absent.join(", ")));
        }
    }
    if !missing.is_empty() {
        return Err(MepError::Merge(format!(
            "{} pair(s) lack results: {}; run (or finish) the shards that hold them",
            missing.len(),
            listing(&missing, 20)
        )));
    }

    std::fs::create_dir_all(&args.out).map_err(|source| MepError::Io {
        path: args.out.clone(),
        source,
    })?;
    if let Some(existing) = Manifest::read(&args.out)? {
        let differences = existing.settings.differences(&first.settings);
        if !differences.is_empty() {
            return Err(MepError::ConfigMismatch {
                manifest: args.out.join(MANIFEST),
                differences,
            });
        }
    }
    paths_dir(&args.out)?;
    let mut lines = String::new();
    let mut merged = Vec::with_capacity(found.len());
    for (k, r) in found.into_values() {
        if let Some(file) = &r.path_file {
            link_or_copy(&args.shards[k].join(file), &args.out.join(file))?;
        }
        let line = serde_json::to_string(&r).map_err(|e| MepError::Merge(e.to_string()))?;
        lines.push_str(&line);
        lines.push('\n');
        merged.push(r);
    }
    write_atomic(&args.out.join(RESULTS), lines.as_bytes())?;
    let manifest = Manifest {
        shard: None,
        merged_from: args.shards.clone(),
        ..first.clone()
    };
    manifest.write(&args.out)?;
    write_tables(&args.out, &spaces, &merged, manifest.pair_list.len())?;
    Ok(MergeReport {
        out: args.out.clone(),
        shards: args.shards.len(),
        pairs: manifest.pair_list.len(),
        results: merged.len(),
        counts: count(&spaces, &merged),
    })
}
