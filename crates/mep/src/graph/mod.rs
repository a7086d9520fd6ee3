//! `mep graph`: the connectivity of a whole class, the future work of Gu & Borovykh (2023,
//! §5). For a set of test images of a class and each chosen space, images are joined
//! until the class is one connected component or the search budget is spent: straight
//! lines first, batched across pairs, then the nudged elastic band only on the pairs the
//! spanning structure still needs ([`Strategy`], after PyTorch-AutoNEB).
//!
//! The folder: `graph_manifest.json` (settings and the nodes of each class),
//! `edges.jsonl` (one [`Edge`] per examined line or search, appended and synced; a rerun
//! resumes from it), `paths/` (the NEB's paths), and per class and space
//! `graphs/CLASS_SPACE.json` and `.graphml` (nodes, edges with kind, barrier and length,
//! components, the minimum spanning tree of barriers), rewritten as edges come, and
//! `graph_summary.csv`. `--shard i/n` takes every n-th (class, space).

mod lines;
mod merge;
mod output;
pub mod plan;

pub use merge::merge;
pub use output::{read_graphs, report_section, ClassGraph, GraphEdge, GraphNode, GRAPHS, SUMMARY};
pub use plan::{Strategy, AUTO_ALL_NODES};

use crate::connect::{ConnectArgs, Model, Search};
use crate::study::{self, differences, Endpoints, Pair, Settings, Shard};
use crate::{MepError, Result};
use mep_data::{Dataset, Rng};
use mep_resnet::Cut;
use mep_tensor::Backend;
use plan::{Plan, Want};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The graph folder's settings file.
pub use crate::study::GRAPH_MANIFEST;
/// The graph folder's record of every examined edge.
pub const EDGES: &str = "edges.jsonl";

/// What `mep graph` reads.
#[derive(Clone, Debug)]
pub struct GraphArgs {
    /// The model, data, spaces, `--class`, seed, batch, NEB settings, folder, shard, device
    /// and `--stop-after`, as `mep connect` takes them (its pair options are not used).
    pub search: ConnectArgs,
    /// Nodes per class: the first this many images of a seeded shuffle of the class's test
    /// images that the model classifies correctly.
    pub images: usize,
    /// Keep misclassified images as nodes (each is then checked in its label's class).
    pub include_misclassified: bool,
    /// Which pairs to examine.
    pub strategy: Strategy,
    /// NEB runs per class and space (default: the number of nodes).
    pub max_searches: Option<usize>,
    /// Lines tried between two components before their shortest failed link is searched.
    pub lines_per_link: usize,
}

impl GraphArgs {
    /// The command's defaults: 20 images per class, `auto`, 3 lines per link.
    pub fn new(search: ConnectArgs) -> Self {
        GraphArgs {
            search,
            images: 20,
            include_misclassified: false,
            strategy: Strategy::Auto,
            max_searches: None,
            lines_per_link: 3,
        }
    }

    fn validate(&self) -> Result<()> {
        self.search.validate()?;
        if self.images < 2 {
            return Err(MepError::option(
                "--images",
                self.images,
                "a graph needs at least 2 nodes",
            ));
        }
        if self.lines_per_link == 0 {
            return Err(MepError::option("--lines-per-link", 0, "must be at least 1"));
        }
        if self.search.pairs.is_some() || self.search.pairs_file.is_some() {
            return Err(MepError::option_unset(
                "--pairs",
                "mep graph chooses its own pairs; set the nodes with --images and --class",
            ));
        }
        Ok(())
    }
}

/// The settings of a graph folder besides the model's and the NEB's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphSettings {
    pub images: usize,
    pub include_misclassified: bool,
    pub strategy: Strategy,
    pub max_searches: Option<usize>,
    pub lines_per_link: usize,
}

/// The nodes of one class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassNodes {
    pub class: usize,
    pub class_name: String,
    /// Dataset indices (test split), node k is `nodes[k]`.
    pub nodes: Vec<usize>,
    /// The model's class for each node (the label unless misclassified nodes are kept).
    pub predicted: Vec<usize>,
    /// Images of the class examined to find them, and how many were skipped as misclassified.
    pub examined: usize,
    pub skipped: usize,
    /// Each node's file name, for datasets read from files (`adv_…` marks an image of
    /// `mep attack`).
    #[serde(default)]
    pub files: Vec<Option<String>>,
}

/// `graph_manifest.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphManifest {
    pub tool: String,
    /// The model, data, spaces and NEB settings (`pairs` unused).
    pub settings: Settings,
    pub graph: GraphSettings,
    /// The checkpoint and `--data` as given (informative).
    pub weights: PathBuf,
    pub data: String,
    pub shard: Option<Shard>,
    pub classes: Vec<ClassNodes>,
}

impl GraphManifest {
    /// The manifest of `dir`, if it has one.
    pub fn read(dir: &Path) -> Result<Option<GraphManifest>> {
        let path = dir.join(GRAPH_MANIFEST);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(MepError::Io { path, source }),
        };
        serde_json::from_str(&text).map(Some).map_err(|e| MepError::Results {
            path,
            msg: format!("not a graph manifest: {e}"),
        })
    }

    pub(crate) fn write(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| MepError::Results {
            path: dir.join(GRAPH_MANIFEST),
            msg: e.to_string(),
        })?;
        study::write_atomic(&dir.join(GRAPH_MANIFEST), (text + "\n").as_bytes())
    }

    /// The (class, space) units in order: unit k is class `k / spaces`, space `k % spaces`.
    pub fn units(&self) -> impl Iterator<Item = (usize, &ClassNodes, &str)> {
        let spaces = &self.settings.spaces;
        self.classes
            .iter()
            .flat_map(move |c| spaces.iter().map(move |s| (c, s.as_str())))
            .enumerate()
            .map(|(k, (c, s))| (k, c, s))
    }
}

/// How an edge is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EdgeKind {
    /// The straight line keeps the class.
    Linear,
    /// The line leaves it; the NEB found a path that does not.
    Nonlinear,
    /// Neither the line nor the NEB's path keeps it.
    None,
    /// The line leaves the class and the NEB was not run (the graph did not need it).
    Unsearched,
    /// The search met a non-finite energy.
    Error,
}

impl fmt::Display for EdgeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EdgeKind::Linear => "linear",
            EdgeKind::Nonlinear => "nonlinear",
            EdgeKind::None => "none",
            EdgeKind::Unsearched => "unsearched",
            EdgeKind::Error => "error",
        })
    }
}

/// One examined edge: a line of `edges.jsonl`. A later record of the same edge (its NEB
/// after its line) supersedes the earlier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    pub class: usize,
    pub space: String,
    /// Node indices in the class's node list, `a < b`.
    pub a: usize,
    pub b: usize,
    /// Their dataset indices.
    pub i: usize,
    pub j: usize,
    pub kind: EdgeKind,
    /// ‖z_b − z_a‖ in the space.
    pub distance: f64,
    /// Largest loss and smallest class probability along the densely sampled line.
    pub line_max_loss: Option<f64>,
    pub line_min_prob: Option<f64>,
    /// Largest loss along the NEB's final path (searched edges).
    pub path_max_loss: Option<f64>,
    /// The barrier: the lowest largest loss of a known path between the two (the line's
    /// or the NEB's).
    pub barrier: Option<f64>,
    /// Path length over ‖z_b − z_a‖ (1 for a line).
    pub length_ratio: Option<f64>,
    /// NEB steps (0 for a line).
    pub steps: usize,
    /// The NEB's path file, relative to the folder.
    pub path_file: Option<String>,
    pub seconds: f64,
    pub message: Option<String>,
}

/// What a run of `mep graph` did, per (class, space).
#[derive(Clone, Debug, Serialize)]
pub struct GraphReport {
    pub out: PathBuf,
    pub graphs: Vec<ClassGraphSummary>,
    /// Edges examined by this run and found in the folder.
    pub computed: usize,
    pub resumed: usize,
    pub complete: bool,
    pub seconds: f64,
}

/// One row of `graph_summary.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassGraphSummary {
    pub class: usize,
    pub class_name: String,
    pub space: String,
    pub strategy: Strategy,
    pub nodes: usize,
    pub lines: usize,
    pub searches: usize,
    pub linear: usize,
    pub nonlinear: usize,
    pub none: usize,
    pub unsearched: usize,
    pub error: usize,
    pub components: usize,
    /// The largest barrier on the minimum spanning tree of barriers (`None` without edges).
    pub mst_max_barrier: Option<f64>,
    /// Seconds spent on the edges of this graph.
    pub seconds: f64,
}

impl fmt::Display for GraphReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} edges examined, {} resumed, in {:.1} s",
            self.computed, self.resumed, self.seconds
        )?;
        writeln!(
            f,
            "{:<12} {:<8} {:>5} {:>6} {:>8} {:>7} {:>9} {:>5} {:>10} {:>10} {:>11}",
            "class",
            "space",
            "nodes",
            "lines",
            "searches",
            "linear",
            "nonlinear",
            "none",
            "unsearched",
            "components",
            "mst barrier"
        )?;
        for g in &self.graphs {
            writeln!(
                f,
                "{:<12} {:<8} {:>5} {:>6} {:>8} {:>7} {:>9} {:>5} {:>10} {:>10} {:>11}",
                g.class_name,
                g.space,
                g.nodes,
                g.lines,
                g.searches,
                g.linear,
                g.nonlinear,
                g.none,
                g.unsearched,
                g.components,
                g.mst_max_barrier.map_or("-".into(), |b| format!("{b:.3}"))
            )?;
        }
        if !self.complete {
            writeln!(f, "stopped early: rerun the same command to continue")?;
        }
        writeln!(f, "wrote {}", self.out.display())
    }
}

/// Runs `mep graph` on the backend `args.search.device` names.
pub fn graph(args: &GraphArgs) -> Result<GraphReport> {
    args.validate()?;
    let data = crate::data::open_dataset(&args.search.data)?;
    crate::on_device!(args.search.device, |b| graph_with(b, args, &data))
}

/// As [`graph`], on backend `b` and a dataset in hand.
pub fn graph_with<B: Backend>(b: &B, args: &GraphArgs, data: &Dataset) -> Result<GraphReport> {
    let started = Instant::now();
    args.validate()?;
    let s = &args.search;
    // As in `mep connect`: fp32 everywhere but the NEB's gradient steps.
    crate::device::check_precision(b, s.precision)?;
    let mut model = Model::load(b, s, data)?;
    model.settings.pairs = None;
    model.settings.allow_misclassified = args.include_misclassified;
    model.settings.endpoints = if args.include_misclassified {
        study::EndpointSelection::All
    } else {
        study::EndpointSelection::Correct
    };
    let out = &s.out;
    let _lock = crate::lock::FolderLock::acquire(out, "mep graph")?;
    if out.join(study::MANIFEST).exists() {
        return Err(MepError::unusable(
            out.display().to_string(),
            "holds a study of `mep connect` (manifest.json); give `mep graph` a folder of its own",
        ));
    }
    let manifest = open_graph(b, args, data, &model)?;
    study::paths_dir(out)?;
    std::fs::create_dir_all(out.join(GRAPHS)).map_err(|source| MepError::Io {
        path: out.join(GRAPHS),
        source,
    })?;
    let (mut file, mut edges) = study::JsonlFile::open::<Edge>(&out.join(EDGES))?;
    check_edges(out, &manifest, &edges)?;
    let resumed = edges.len();
    let mut computed = 0usize;
    let mut stopped = false;
    let mut summaries = Vec::new();
    let search = Search {
        b,
        net: &model.net,
        arch: model.arch,
        args: s,
        out,
    };
    for (k, nodes, space) in manifest.units() {
        if s.shard.is_some_and(|sh| !sh.contains(k)) {
            continue;
        }
        let cut: Cut = model.cuts[model
            .spaces
            .iter()
            .position(|x| x == space)
            .expect("the manifest's spaces are the model's")];
        let mut unit = Unit::open(b, args, data, &model, nodes, space, cut, &edges)?;
        while !stopped {
            let want = unit.plan.next();
            if matches!(want, Want::Done) {
                break;
            }
            if s.stop_after.is_some_and(|n| computed >= n) {
                stopped = true;
                break;
            }
            let new = unit.examine(&search, want, &model, data)?;
            for e in new {
                file.append(&e)?;
                edges.push(e);
                computed += 1;
            }
        }
        let graph = output::ClassGraph::build(nodes, space, &unit.plan, &edges);
        output::write_graph(out, &graph)?;
        figure(out, &graph, &unit.plan, data)?;
        summaries.push(graph.summary());
        if stopped {
            break;
        }
    }
    output::write_summary(out, &summaries)?;
    Ok(GraphReport {
        out: out.clone(),
        graphs: summaries,
        computed,
        resumed,
        complete: !stopped,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The manifest of the folder: the one there when its settings are these, else a new one
/// with the nodes drawn.
fn open_graph<B: Backend>(b: &B, args: &GraphArgs, data: &Dataset, model: &Model<B>) -> Result<GraphManifest> {
    let s = &args.search;
    let graph = GraphSettings {
        images: args.images,
        include_misclassified: args.include_misclassified,
        strategy: args.strategy,
        max_searches: args.max_searches,
        lines_per_link: args.lines_per_link,
    };
    if let Some(m) = GraphManifest::read(&s.out)? {
        let mut diff = differences(&m.settings, &model.settings);
        diff.extend(differences(&m.graph, &graph));
        if m.shard != s.shard {
            let show = |s: Option<Shard>| s.map_or("none".to_string(), |s| s.to_string());
            diff.push(format!("shard: {} → {}", show(m.shard), show(s.shard)));
        }
        if !diff.is_empty() {
            return Err(MepError::ConfigMismatch {
                manifest: s.out.join(GRAPH_MANIFEST),
                differences: diff,
            });
        }
        return Ok(m);
    }
    if s.out.join(EDGES).exists() {
        return Err(MepError::Results {
            path: s.out.join(EDGES),
            msg: format!("edges without a {GRAPH_MANIFEST}: not a folder of `mep graph`"),
        });
    }
    let classes: Vec<usize> = if model.class_filter.is_empty() {
        (0..data.classes.len()).collect()
    } else {
        model.class_filter.clone()
    };
    let mut list = Vec::new();
    for c in classes {
        list.push(draw_nodes(b, args, data, model, c)?);
    }
    let m = GraphManifest {
        tool: format!("mep {}", env!("CARGO_PKG_VERSION")),
        settings: model.settings.clone(),
        graph,
        weights: s.weights.clone(),
        data: s.data.clone(),
        shard: s.shard,
        classes: list,
    };
    m.write(&s.out)?;
    Ok(m)
}

/// The nodes of class `c`: a seeded shuffle of its test images, classified in batches,
/// the first `images` the model classifies correctly (or any, with misclassified kept).
fn draw_nodes<B: Backend>(b: &B, args: &GraphArgs, data: &Dataset, model: &Model<B>, c: usize) -> Result<ClassNodes> {
    let split = &data.test;
    let mut members: Vec<usize> = (0..split.len()).filter(|&i| split.labels[i] == c).collect();
    Rng::from_parts(&[args.search.seed, c as u64, 0x6772_6170_685f_6e64]).shuffle(&mut members);
    let mut nodes = Vec::new();
    let mut predicted = Vec::new();
    let mut examined = 0;
    let batch = args.search.batch.max(1);
    for chunk in members.chunks(batch) {
        if nodes.len() >= args.images {
            break;
        }
        let x = crate::connect::load_images(b, split, &model.transform, chunk)?;
        let logits = model.net.head(b, &x, Cut::Input)?.to_vec(b)?;
        let classes = crate::eval::class_rows(&logits, model.net.num_classes);
        for (&i, p) in chunk.iter().zip(classes) {
            if nodes.len() >= args.images {
                break;
            }
            examined += 1;
            if p == Some(c) || (args.include_misclassified && p.is_some()) {
                nodes.push(i);
                predicted.push(p.unwrap_or(c));
            }
        }
    }
    let name = data.classes.get(c).cloned().unwrap_or_else(|| c.to_string());
    if nodes.len() < 2 {
        return Err(MepError::unusable(
            format!("class {name}"),
            format!(
                "only {} of its {} test images are classified correctly; a graph needs 2 (pass --include-misclassified to keep the others)",
                nodes.len(),
                members.len()
            ),
        ));
    }
    let files = nodes
        .iter()
        .map(|&i| {
            split
                .path(i)
                .and_then(|p| p.file_name())
                .map(|f| f.to_string_lossy().into_owned())
        })
        .collect();
    Ok(ClassNodes {
        files,
        class: c,
        class_name: name,
        skipped: examined - nodes.len(),
        examined,
        nodes,
        predicted,
    })
}

/// Refuses edges that do not belong to the manifest's graphs.
fn check_edges(out: &Path, m: &GraphManifest, edges: &[Edge]) -> Result<()> {
    for e in edges {
        let fits = m
            .classes
            .iter()
            .find(|c| c.class == e.class)
            .is_some_and(|c| e.a < e.b && c.nodes.get(e.a) == Some(&e.i) && c.nodes.get(e.b) == Some(&e.j))
            && m.settings.spaces.contains(&e.space);
        if !fits {
            return Err(MepError::Results {
                path: out.join(EDGES),
                msg: format!(
                    "the edge {}–{} (images {}, {}) of class {} in {} does not belong to this graph",
                    e.a, e.b, e.i, e.j, e.class, e.space
                ),
            });
        }
    }
    Ok(())
}

/// One class graph in one space under way: the nodes' encodings and the plan.
struct Unit<'a> {
    nodes: &'a ClassNodes,
    space: &'a str,
    cut: Cut,
    point_shape: Vec<usize>,
    latents: Vec<f32>,
    plan: Plan,
}

impl<'a> Unit<'a> {
    /// Encodes the nodes in `cut` and replays the edges already examined.
    #[allow(clippy::too_many_arguments)]
    fn open<B: Backend>(
        b: &B,
        args: &GraphArgs,
        data: &Dataset,
        model: &Model<B>,
        nodes: &'a ClassNodes,
        space: &'a str,
        cut: Cut,
        edges: &[Edge],
    ) -> Result<Self> {
        let mut latents = Vec::new();
        let mut point_shape = Vec::new();
        for chunk in nodes.nodes.chunks(args.search.batch.max(1)) {
            let x = crate::connect::load_images(b, &data.test, &model.transform, chunk)?;
            let z = model.net.encode(b, &x, cut)?;
            point_shape = z.shape.dims()[1..].to_vec();
            latents.extend(z.to_vec(b)?);
        }
        let dim: usize = point_shape.iter().product();
        let n = nodes.nodes.len();
        let dist = |a: usize, c: usize| -> f64 {
            let (za, zc) = (&latents[a * dim..(a + 1) * dim], &latents[c * dim..(c + 1) * dim]);
            za.iter()
                .zip(zc)
                .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        let mut plan = Plan::new(
            n,
            args.strategy,
            dist,
            args.max_searches.unwrap_or(n),
            args.lines_per_link,
        );
        for e in edges.iter().filter(|e| e.class == nodes.class && e.space == space) {
            replay(&mut plan, e);
        }
        Ok(Unit {
            nodes,
            space,
            cut,
            point_shape,
            latents,
            plan,
        })
    }

    /// Examines what the plan asks for; the new edge records.
    fn examine<B: Backend>(
        &mut self,
        search: &Search<'_, B>,
        want: Want,
        model: &Model<B>,
        data: &Dataset,
    ) -> Result<Vec<Edge>> {
        let b = search.b;
        let class = self.nodes.class;
        match want {
            Want::Done => Ok(Vec::new()),
            Want::Lines(pairs) => {
                let started = Instant::now();
                let profiles = lines::check_lines(
                    b,
                    &model.net,
                    self.cut,
                    class,
                    &self.point_shape,
                    &self.latents,
                    &pairs,
                    search.args,
                )?;
                let each = started.elapsed().as_secs_f64() / pairs.len().max(1) as f64;
                let mut out = Vec::with_capacity(pairs.len());
                for (&(a, c), p) in pairs.iter().zip(profiles) {
                    let e = Edge {
                        class,
                        space: self.space.to_string(),
                        a,
                        b: c,
                        i: self.nodes.nodes[a],
                        j: self.nodes.nodes[c],
                        kind: if p.in_class {
                            EdgeKind::Linear
                        } else {
                            EdgeKind::Unsearched
                        },
                        distance: self.plan.distance(a, c),
                        line_max_loss: p.max_loss,
                        line_min_prob: p.min_prob,
                        path_max_loss: None,
                        barrier: p.max_loss,
                        length_ratio: p.in_class.then_some(1.0),
                        steps: 0,
                        path_file: None,
                        seconds: each,
                        message: p.message,
                    };
                    replay(&mut self.plan, &e);
                    out.push(e);
                }
                Ok(out)
            }
            Want::Search((a, c)) => {
                let (i, j) = (self.nodes.nodes[a], self.nodes.nodes[c]);
                let pair = Pair {
                    pair: (class << 40) | (a << 20) | c,
                    i,
                    j,
                    class,
                    class_name: self.nodes.class_name.clone(),
                    endpoints: Endpoints::Natural,
                    true_class: None,
                    predicted: None,
                };
                let x = crate::connect::load_images(b, &data.test, &model.transform, &[i, j])?;
                let file = format!("{}/c{class:03}_{i:06}_{j:06}_{}.safetensors", study::PATHS, self.space);
                let r = search.run_to(&pair, self.cut, &x, &file, &mut |_, _| {})?;
                let before = self.plan.known(a, c);
                let kind = match r.category {
                    study::Category::Linear | study::Category::Nonlinear => EdgeKind::Nonlinear,
                    study::Category::NoPath => EdgeKind::None,
                    study::Category::Error => EdgeKind::Error,
                };
                let path_max = r.path_max_loss.filter(|v| v.is_finite());
                let line = before.line.map(|l| l.1);
                let barrier = match (line, path_max) {
                    (Some(l), Some(p)) => Some(l.min(p)),
                    (l, p) => l.or(p),
                };
                let e = Edge {
                    class,
                    space: self.space.to_string(),
                    a,
                    b: c,
                    i,
                    j,
                    kind,
                    distance: self.plan.distance(a, c),
                    line_max_loss: line.or(r.line_max_loss),
                    line_min_prob: r.line_min_prob,
                    path_max_loss: r.path_max_loss,
                    barrier,
                    length_ratio: r.length_ratio,
                    steps: r.steps,
                    path_file: r.path_file,
                    seconds: r.seconds,
                    message: r.message,
                };
                replay(&mut self.plan, &e);
                Ok(vec![e])
            }
        }
    }
}

/// Tells the plan what an edge record says.
fn replay(plan: &mut Plan, e: &Edge) {
    let line_loss = e.line_max_loss.unwrap_or(f64::INFINITY);
    match e.kind {
        EdgeKind::Linear => plan.record_line(e.a, e.b, true, line_loss),
        EdgeKind::Unsearched => plan.record_line(e.a, e.b, false, line_loss),
        EdgeKind::Nonlinear | EdgeKind::None | EdgeKind::Error => {
            if plan.known(e.a, e.b).line.is_none() {
                plan.record_line(e.a, e.b, false, line_loss);
            }
            plan.record_search(
                e.a,
                e.b,
                e.kind == EdgeKind::Nonlinear,
                e.path_max_loss.filter(|v| v.is_finite()).unwrap_or(f64::INFINITY),
            );
        }
    }
}

/// Draws `graphs/STEM.png`: the nodes' images placed by MDS of their distances in the space.
fn figure(out: &Path, g: &ClassGraph, plan: &Plan, data: &Dataset) -> Result<()> {
    let n = g.nodes.len();
    let side = match n {
        0..=30 => 48,
        31..=100 => 32,
        _ => 20,
    };
    let mut thumbs = Vec::with_capacity(n);
    for node in &g.nodes {
        let img = data.test.image(node.index)?;
        let rgb = image::RgbImage::from_raw(img.width as u32, img.height as u32, img.data).ok_or_else(|| {
            MepError::unusable(
                format!("test image {}", node.index),
                "its pixel buffer does not match its size",
            )
        })?;
        thumbs.push(image::imageops::resize(
            &rgb,
            side,
            side,
            image::imageops::FilterType::Triangle,
        ));
    }
    let layout = crate::figures::mds_layout(n, |a, b| plan.distance(a, b));
    use crate::figures::{EdgeStyle, GraphPicture};
    let style = |k: EdgeKind| match k {
        EdgeKind::Linear => Some(EdgeStyle::Linear),
        EdgeKind::Nonlinear => Some(EdgeStyle::Nonlinear),
        EdgeKind::None => Some(EdgeStyle::None),
        EdgeKind::Error => Some(EdgeStyle::Error),
        // Lines that leave the class and were never searched say little: left out.
        EdgeKind::Unsearched => None,
    };
    let edges: Vec<(usize, usize, EdgeStyle, bool)> = g
        .edges
        .iter()
        .filter_map(|e| style(e.edge.kind).map(|s| (e.edge.a, e.edge.b, s, e.in_mst)))
        .collect();
    let count = |k: EdgeKind| g.edges.iter().filter(|e| e.edge.kind == k).count();
    let legend = [
        (EdgeStyle::Linear, format!("linear ({})", count(EdgeKind::Linear))),
        (
            EdgeStyle::Nonlinear,
            format!("nonlinear ({})", count(EdgeKind::Nonlinear)),
        ),
        (EdgeStyle::None, format!("none ({})", count(EdgeKind::None))),
    ];
    let name: String = g.class_name.chars().take(24).collect();
    let title = format!(
        "class {name} in {}: {n} images, {} component{}",
        g.space,
        g.components.len(),
        if g.components.len() == 1 { "" } else { "s" }
    );
    let note = format!(
        "{} lines not searched; thick: spanning tree of barriers",
        count(EdgeKind::Unsearched)
    );
    let marked: Vec<bool> = g
        .nodes
        .iter()
        .map(|n| n.file.as_deref().is_some_and(is_adversarial))
        .collect();
    let note = if marked.iter().any(|&m| m) {
        format!("{note}; red frame: adversarial image")
    } else {
        note
    };
    let pic = GraphPicture {
        title: &title,
        legend: &legend,
        note: &note,
        edges: &edges,
        marked: &marked,
    };
    crate::figures::graph_figure(
        &pic,
        &layout,
        &thumbs,
        &out.join(GRAPHS).join(format!("{}.png", g.stem())),
    )
}

/// Whether a node's file is an adversarial image written by `mep attack`.
pub fn is_adversarial(file: &str) -> bool {
    file.starts_with("adv_")
}
