//! The files of a class graph: `graphs/CLASS_SPACE.json` (what pandas and scripts read),
//! `graphs/CLASS_SPACE.graphml` (what networkx, Gephi and yEd read) and
//! `graph_summary.csv` (one row per class and space).

use super::plan::{spanning_forest, Plan};
use super::{ClassGraphSummary, ClassNodes, Edge, EdgeKind};
use crate::study::write_atomic;
use crate::{MepError, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The folder of the per-graph files.
pub const GRAPHS: &str = "graphs";
/// The table of every graph in the folder.
pub const SUMMARY: &str = "graph_summary.csv";

/// A node of a class graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphNode {
    /// The node's index in the class's node list.
    pub node: usize,
    /// Its dataset index (test split).
    pub index: usize,
    /// The model's class for it.
    pub predicted: usize,
    /// Its connected component (numbered by smallest node).
    pub component: usize,
    /// Its file name, for datasets read from files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// An edge of a class graph: the last record of each examined pair.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphEdge {
    #[serde(flatten)]
    pub edge: Edge,
    /// Whether the edge is on the minimum spanning tree of barriers.
    pub in_mst: bool,
}

/// One class in one space: what `graphs/CLASS_SPACE.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassGraph {
    pub class: usize,
    pub class_name: String,
    pub space: String,
    pub strategy: super::Strategy,
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
    /// The components of the graph of linear and nonlinear edges, node lists.
    pub components: Vec<Vec<usize>>,
    /// The minimum spanning tree (forest) of barriers over the examined edges: `(a, b,
    /// barrier)`; its largest barrier is the lowest loss at which the whole class is one
    /// component.
    pub mst: Vec<(usize, usize, f64)>,
}

impl ClassGraph {
    /// The graph of `nodes` in `space` from the edge records (later records of a pair
    /// supersede earlier ones) and the plan's components.
    pub(crate) fn build(nodes: &ClassNodes, space: &str, plan: &Plan, edges: &[Edge]) -> Self {
        let mut last: BTreeMap<(usize, usize), &Edge> = BTreeMap::new();
        for e in edges.iter().filter(|e| e.class == nodes.class && e.space == space) {
            last.insert((e.a, e.b), e);
        }
        let weighted: Vec<(usize, usize, f64)> = last
            .iter()
            .filter_map(|(&(a, b), e)| e.barrier.map(|w| (a, b, w)))
            .collect();
        let mst = spanning_forest(nodes.nodes.len(), &weighted);
        let components = plan.components().groups();
        let mut component_of = vec![0; nodes.nodes.len()];
        for (k, g) in components.iter().enumerate() {
            for &a in g {
                component_of[a] = k;
            }
        }
        ClassGraph {
            class: nodes.class,
            class_name: nodes.class_name.clone(),
            space: space.to_string(),
            strategy: plan.strategy(),
            nodes: nodes
                .nodes
                .iter()
                .zip(&nodes.predicted)
                .enumerate()
                .map(|(k, (&index, &predicted))| GraphNode {
                    node: k,
                    index,
                    predicted,
                    component: component_of[k],
                    file: nodes.files.get(k).cloned().flatten(),
                })
                .collect(),
            edges: last
                .values()
                .map(|&e| GraphEdge {
                    edge: e.clone(),
                    in_mst: mst.iter().any(|t| (t.0, t.1) == (e.a, e.b)),
                })
                .collect(),
            components,
            mst,
        }
    }

    /// The file stem: `CLASS_SPACE`, the class name made safe for file names.
    pub fn stem(&self) -> String {
        format!(
            "{:03}-{}_{}",
            self.class,
            crate::study::file_safe(&self.class_name),
            self.space
        )
    }

    /// Its row of `graph_summary.csv`.
    pub fn summary(&self) -> ClassGraphSummary {
        let count = |k: EdgeKind| self.edges.iter().filter(|e| e.edge.kind == k).count();
        ClassGraphSummary {
            class: self.class,
            class_name: self.class_name.clone(),
            space: self.space.clone(),
            strategy: self.strategy,
            nodes: self.nodes.len(),
            lines: self.edges.len(),
            searches: self
                .edges
                .iter()
                .filter(|e| matches!(e.edge.kind, EdgeKind::Nonlinear | EdgeKind::None | EdgeKind::Error))
                .count(),
            linear: count(EdgeKind::Linear),
            nonlinear: count(EdgeKind::Nonlinear),
            none: count(EdgeKind::None),
            unsearched: count(EdgeKind::Unsearched),
            error: count(EdgeKind::Error),
            components: self.components.len(),
            mst_max_barrier: self.mst.iter().map(|e| e.2).reduce(f64::max),
            seconds: self.edges.iter().map(|e| e.edge.seconds).sum(),
        }
    }

    /// GraphML: nodes with their dataset index, prediction and component; edges with
    /// kind, barrier, distance, length ratio and whether they are on the spanning tree.
    pub fn graphml(&self) -> String {
        let mut s = String::new();
        s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        s.push_str("<graphml xmlns=\"http://graphml.graphdrawing.org/xmlns\">\n");
        for (id, on, ty) in [
            ("index", "node", "int"),
            ("predicted", "node", "int"),
            ("component", "node", "int"),
            ("file", "node", "string"),
            ("kind", "edge", "string"),
            ("barrier", "edge", "double"),
            ("distance", "edge", "double"),
            ("length_ratio", "edge", "double"),
            ("line_max_loss", "edge", "double"),
            ("steps", "edge", "int"),
            ("in_mst", "edge", "boolean"),
        ] {
            let _ = writeln!(
                s,
                "  <key id=\"{id}\" for=\"{on}\" attr.name=\"{id}\" attr.type=\"{ty}\"/>"
            );
        }
        let _ = writeln!(
            s,
            "  <graph id=\"{}\" edgedefault=\"undirected\">",
            xml_escape(&format!("{} {}", self.class_name, self.space))
        );
        for n in &self.nodes {
            let file = n.file.as_deref().map_or(String::new(), |f| {
                format!("<data key=\"file\">{}</data>", xml_escape(f))
            });
            let _ = writeln!(
                s,
                "    <node id=\"n{}\"><data key=\"index\">{}</data><data key=\"predicted\">{}</data><data key=\"component\">{}</data>{file}</node>",
                n.node, n.index, n.predicted, n.component
            );
        }
        for (k, e) in self.edges.iter().enumerate() {
            let x = &e.edge;
            let _ = write!(
                s,
                "    <edge id=\"e{k}\" source=\"n{}\" target=\"n{}\"><data key=\"kind\">{}</data>",
                x.a, x.b, x.kind
            );
            // A missing or non-finite number is left out: GraphML has no NaN.
            let mut num = |key: &str, v: Option<f64>| {
                if let Some(v) = v.filter(|v| v.is_finite()) {
                    let _ = write!(s, "<data key=\"{key}\">{v}</data>");
                }
            };
            num("barrier", x.barrier);
            num("distance", Some(x.distance));
            num("length_ratio", x.length_ratio);
            num("line_max_loss", x.line_max_loss);
            let _ = writeln!(
                s,
                "<data key=\"steps\">{}</data><data key=\"in_mst\">{}</data></edge>",
                x.steps, e.in_mst
            );
        }
        s.push_str("  </graph>\n</graphml>\n");
        s
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn io(path: PathBuf) -> impl FnOnce(serde_json::Error) -> MepError {
    move |e| MepError::Results {
        path,
        msg: e.to_string(),
    }
}

/// Writes `graphs/STEM.json` and `graphs/STEM.graphml` (atomically).
pub(crate) fn write_graph(out: &Path, g: &ClassGraph) -> Result<()> {
    let dir = out.join(GRAPHS);
    let json = dir.join(format!("{}.json", g.stem()));
    let text = serde_json::to_string_pretty(g).map_err(io(json.clone()))?;
    write_atomic(&json, (text + "\n").as_bytes())?;
    write_atomic(&dir.join(format!("{}.graphml", g.stem())), g.graphml().as_bytes())
}

/// Writes `graph_summary.csv` with one row per graph.
pub(crate) fn write_summary(out: &Path, rows: &[ClassGraphSummary]) -> Result<()> {
    let mut s = String::from(
        "class,class_name,space,strategy,nodes,lines,searches,linear,nonlinear,none,unsearched,error,components,mst_max_barrier,seconds\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.3}",
            r.class,
            csv_field(&r.class_name),
            r.space,
            r.strategy,
            r.nodes,
            r.lines,
            r.searches,
            r.linear,
            r.nonlinear,
            r.none,
            r.unsearched,
            r.error,
            r.components,
            r.mst_max_barrier.map_or(String::new(), |b| b.to_string()),
            r.seconds
        );
    }
    write_atomic(&out.join(SUMMARY), s.as_bytes())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The graphs of the folder `dir` (each `graphs/*.json`), in file-name order.
pub fn read_graphs(dir: &Path) -> Result<Vec<ClassGraph>> {
    let g = dir.join(GRAPHS);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&g) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(MepError::Io { path: g, source }),
    };
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).map_err(|source| MepError::Io {
                path: f.clone(),
                source,
            })?;
            serde_json::from_str(&text).map_err(io(f))
        })
        .collect()
}

/// The report's section on the class graphs of the folder `dir` (whose path relative to
/// the report is `rel`): one row per class and space and each graph's figure; `None`
/// when `dir` holds no graph.
pub fn report_section(dir: &Path, rel: &str) -> Result<Option<String>> {
    let graphs = read_graphs(dir)?;
    if graphs.is_empty() {
        return Ok(None);
    }
    let mut s = String::from("## Class graphs (`mep graph`)\n\n");
    s.push_str(
        "Each class's images joined in each space: straight lines first, the NEB only where the \
         class would otherwise fall apart. *Components* counts the connected components of the \
         linear and nonlinear edges; *MST barrier* is the largest barrier (largest loss along \
         the best known path) on the minimum spanning tree of barriers, the lowest loss at \
         which the whole class is one component. *Unsearched* lines leave the class and were \
         not needed.\n\n",
    );
    s.push_str("| class | space | strategy | nodes | edges | linear | nonlinear | none | unsearched | components | MST barrier |\n");
    s.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for g in &graphs {
        let r = g.summary();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.class_name,
            r.space,
            r.strategy,
            r.nodes,
            r.lines,
            r.linear,
            r.nonlinear,
            r.none,
            r.unsearched,
            r.components,
            r.mst_max_barrier.map_or("–".into(), |b| format!("{b:.3}"))
        );
    }
    s.push('\n');
    for g in &graphs {
        let png = format!("{GRAPHS}/{}.png", g.stem());
        if dir.join(&png).is_file() {
            let _ = writeln!(
                s,
                "![class {} in {}]({}/{png})\n",
                g.class_name,
                g.space,
                rel.trim_end_matches('/')
            );
        }
    }
    let _ = writeln!(
        s,
        "Files: `{rel}/graphs/*.json` and `*.graphml` (networkx: `nx.read_graphml(...)`), `{rel}/{SUMMARY}`, `{rel}/edges.jsonl`.\n"
    );
    Ok(Some(s))
}
