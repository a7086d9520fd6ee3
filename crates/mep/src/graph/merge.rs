//! `mep merge` for graph folders: the shards of one `mep graph --shard i/n` run joined
//! into one folder. Each (class, space) lives in exactly one shard, so its edges, paths and
//! graph files are taken whole; nothing is recomputed.

use super::output::{read_graphs, write_summary, GRAPHS};
use super::{Edge, GraphManifest, EDGES, GRAPH_MANIFEST};
use crate::connect::{link_or_copy, MergeArgs};
use crate::lock::FolderLock;
use crate::study::{differences, paths_dir, JsonlFile};
use crate::{MepError, Result};
use std::path::Path;

/// Joins the graph shards `args.shards` into `args.out`; returns the merged folder's
/// graphs' summary rows.
pub fn merge(args: &MergeArgs) -> Result<Vec<super::ClassGraphSummary>> {
    let mut manifests = Vec::new();
    for dir in &args.shards {
        let m = GraphManifest::read(dir)?.ok_or_else(|| MepError::Missing {
            path: dir.join(GRAPH_MANIFEST),
            what: "no graph manifest: not a folder of `mep graph`".into(),
            hint: None,
        })?;
        manifests.push(m);
    }
    let first = &manifests[0];
    let count = first.shard.map_or(1, |s| s.count);
    let mut seen = vec![false; count];
    for (dir, m) in args.shards.iter().zip(&manifests) {
        let mut diff = differences(&first.settings, &m.settings);
        diff.extend(differences(&first.graph, &m.graph));
        if m.classes != first.classes {
            diff.push("the nodes differ".into());
        }
        if !diff.is_empty() {
            return Err(MepError::ConfigMismatch {
                manifest: dir.join(GRAPH_MANIFEST),
                differences: diff,
            });
        }
        let s = m.shard.map_or((0, 1), |s| (s.index, s.count));
        if s.1 != count || seen[s.0] {
            return Err(MepError::unusable(
                dir.display().to_string(),
                format!(
                    "shard {}/{} repeats a shard or does not fit the others' count {count}",
                    s.0, s.1
                ),
            ));
        }
        seen[s.0] = true;
    }
    if let Some(missing) = seen.iter().position(|s| !s) {
        return Err(MepError::unusable(
            "the shards",
            format!("shard {missing}/{count} is missing"),
        ));
    }
    let out = &args.out;
    let _lock = FolderLock::acquire(out, "mep merge")?;
    if out.join(GRAPH_MANIFEST).exists() || out.join(EDGES).exists() {
        return Err(MepError::unusable(
            out.display().to_string(),
            "already holds a graph; merge into an empty folder",
        ));
    }
    paths_dir(out)?;
    let graphs = out.join(GRAPHS);
    std::fs::create_dir_all(&graphs).map_err(|source| MepError::Io {
        path: graphs.clone(),
        source,
    })?;
    let mut edges: Vec<Edge> = Vec::new();
    for dir in &args.shards {
        let (_, mine) = JsonlFile::open::<Edge>(&dir.join(EDGES))?;
        for e in &mine {
            if let Some(f) = &e.path_file {
                link_or_copy(&dir.join(f), &out.join(f))?;
            }
        }
        edges.extend(mine);
        copy_folder(&dir.join(GRAPHS), &graphs)?;
    }
    JsonlFile::rewrite(&out.join(EDGES), &edges)?;
    let merged = GraphManifest {
        shard: None,
        ..first.clone()
    };
    merged.write(out)?;
    let rows: Vec<_> = read_graphs(out)?.iter().map(|g| g.summary()).collect();
    write_summary(out, &rows)?;
    Ok(rows)
}

fn copy_folder(from: &Path, to: &Path) -> Result<()> {
    let rd = match std::fs::read_dir(from) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(MepError::Io {
                path: from.to_path_buf(),
                source,
            })
        }
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_file() {
            link_or_copy(&p, &to.join(e.file_name()))?;
        }
    }
    Ok(())
}
