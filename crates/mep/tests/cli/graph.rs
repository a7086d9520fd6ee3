//! `mep graph` end to end on the demo's shipped ResNet-20 and the synthetic set: the files
//! (JSON, GraphML, summary, figure), agreement with `mep connect` on the same pairs,
//! resumption after a stop, shards, and refusals of bad input.

use mep::connect::{connect, read_results, ConnectArgs, RESULTS};
use mep::graph::{graph, ClassGraph, Edge, EdgeKind, GraphArgs, GraphManifest, Strategy, EDGES, GRAPHS, SUMMARY};
use mep::MepError;
use std::path::{Path, PathBuf};

use crate::common;

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../weights/demo/resnet20-synthetic.safetensors")
}

fn tmpdir(tag: &str) -> PathBuf {
    common::tmpdir("graph", tag)
}

/// A graph of `images` images of class 0 in `input` and `pool` with a short NEB.
fn args(out: &Path, images: usize, strategy: Strategy) -> GraphArgs {
    let mut s = ConnectArgs::new("resnet20", shipped(), "synthetic", out);
    s.spaces = vec!["input".into(), "pool".into()];
    s.classes = vec!["0".into()];
    common::short_search(&mut s, 4, 4, 8, 5);
    GraphArgs {
        images,
        strategy,
        ..GraphArgs::new(s)
    }
}

fn read_graph(out: &Path, space: &str) -> ClassGraph {
    let dir = out.join(GRAPHS);
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(&format!("_{space}.json")))
        .unwrap_or_else(|| panic!("no graph of {space} in {}", dir.display()));
    serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
}

fn edges(out: &Path) -> Vec<Edge> {
    mep::connect::read_jsonl(&out.join(EDGES), false).unwrap().0
}

#[test]
fn all_pairs_graph_writes_every_file_and_counts_agree() {
    let out = tmpdir("all");
    let r = graph(&args(&out, 6, Strategy::Auto)).unwrap();
    assert!(r.complete);
    assert_eq!(r.graphs.len(), 2);
    for (g, space) in r.graphs.iter().zip(["input", "pool"]) {
        assert_eq!(g.strategy, Strategy::All, "auto is all for 6 nodes");
        assert_eq!((g.nodes, g.lines), (6, 15), "{space}: every pair examined");
        assert_eq!(g.linear + g.nonlinear + g.none + g.unsearched + g.error, 15);
        assert!(g.searches <= 6, "the budget is the node count");
        assert!(
            g.unsearched == 0 || g.searches == 6,
            "all searches failed lines until the budget is spent"
        );
        let cg = read_graph(&out, space);
        assert_eq!(cg.nodes.len(), 6);
        assert_eq!(cg.edges.len(), 15);
        assert_eq!(cg.components.len(), g.components);
        assert_eq!(
            cg.mst.len() + g.components,
            6,
            "a spanning forest has n − components edges"
        );
        let ml = std::fs::read_to_string(out.join(GRAPHS).join(format!("{}.graphml", cg.stem()))).unwrap();
        assert_eq!(ml.matches("<node ").count(), 6);
        assert_eq!(ml.matches("<edge ").count(), 15);
        assert!(out.join(GRAPHS).join(format!("{}.png", cg.stem())).is_file());
        for e in &cg.edges {
            if e.edge.kind == EdgeKind::Nonlinear {
                let f = e.edge.path_file.as_ref().expect("a searched edge has its path file");
                assert!(out.join(f).is_file(), "{f}");
            }
        }
    }
    let csv = std::fs::read_to_string(out.join(SUMMARY)).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    // `mep report` on a graph folder: the table and the figures.
    let files = mep::report::report(&out).unwrap();
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    assert!(md.contains("## Class graphs"), "{md}");
    assert!(md.contains("graphs/000-circle_input.png"), "{md}");
    assert!(files.html.is_file());
    let m = GraphManifest::read(&out).unwrap().unwrap();
    assert_eq!(m.classes[0].nodes.len(), 6);
    assert_eq!(m.classes[0].predicted, vec![0; 6], "only correctly classified nodes");
}

#[test]
fn a_line_of_the_graph_gets_the_verdict_connect_gives_that_pair() {
    let out = tmpdir("agree");
    graph(&args(&out, 6, Strategy::All)).unwrap();
    let es: Vec<Edge> = edges(&out).into_iter().filter(|e| e.line_max_loss.is_some()).collect();
    let mut lines = String::new();
    let mut seen = std::collections::HashSet::new();
    for e in &es {
        if seen.insert((e.i, e.j)) {
            lines.push_str(&format!("{},{}\n", e.i, e.j));
        }
    }
    let study = tmpdir("agree-connect");
    let pairs = study.join("pairs.csv");
    std::fs::write(&pairs, lines).unwrap();
    let mut c = ConnectArgs::new("resnet20", shipped(), "synthetic", study.join("s"));
    c.spaces = vec!["input".into(), "pool".into()];
    c.pairs_file = Some(pairs);
    common::short_search(&mut c, 4, 4, 8, 5);
    c.max_steps = 0;
    connect(&c).unwrap();
    let (results, _) = read_results(&study.join("s").join(RESULTS), false).unwrap();
    assert_eq!(results.len(), 2 * seen.len());
    for r in results {
        let first = es
            .iter()
            .find(|e| (e.i, e.j) == (r.i, r.j) && e.space == r.space)
            .expect("every pair is an edge");
        let linear = r.category == mep::connect::Category::Linear;
        assert_eq!(
            first.kind == EdgeKind::Linear,
            linear,
            "edge {}-{} in {}: graph {:?}, connect {:?}",
            r.i,
            r.j,
            r.space,
            first.kind,
            r.category
        );
        assert_eq!(
            first.line_max_loss, r.line_max_loss,
            "the same dense points, the same losses"
        );
    }
}

#[test]
fn a_stopped_graph_resumes_to_the_same_edges() {
    let whole = tmpdir("whole");
    graph(&args(&whole, 12, Strategy::Disconnected)).unwrap();
    let part = tmpdir("part");
    let mut a = args(&part, 12, Strategy::Disconnected);
    a.search.stop_after = Some(5);
    let r = graph(&a).unwrap();
    assert!(!r.complete);
    // A batch of lines is examined whole: the run stops after the batch that reaches 5.
    assert!(r.computed >= 5);
    let first = r.computed;
    a.search.stop_after = None;
    let r = graph(&a).unwrap();
    assert!(r.complete);
    assert_eq!(r.resumed, first);
    let key = |e: &Edge| {
        (
            e.space.clone(),
            e.a,
            e.b,
            e.kind,
            e.line_max_loss.map(f64::to_bits),
            e.steps,
        )
    };
    let (x, y): (Vec<_>, Vec<_>) = (
        edges(&whole).iter().map(key).collect(),
        edges(&part).iter().map(key).collect(),
    );
    assert_eq!(x, y);
    // Disconnected looks at far fewer than the 66 pairs of 12 nodes.
    let g = read_graph(&whole, "pool");
    assert!(g.edges.len() < 66, "{} edges", g.edges.len());
    assert!(g.components.len() == 1 || g.edges.iter().any(|e| e.edge.kind == EdgeKind::None));
}

#[test]
fn shards_take_disjoint_units() {
    let (a, b) = (tmpdir("shard0"), tmpdir("shard1"));
    let mut x = args(&a, 4, Strategy::All);
    x.search.shard = Some("0/2".parse().unwrap());
    let mut y = args(&b, 4, Strategy::All);
    y.search.shard = Some("1/2".parse().unwrap());
    let (rx, ry) = (graph(&x).unwrap(), graph(&y).unwrap());
    let spaces = |r: &mep::graph::GraphReport| r.graphs.iter().map(|g| g.space.clone()).collect::<Vec<_>>();
    assert_eq!(spaces(&rx), vec!["input"]);
    assert_eq!(spaces(&ry), vec!["pool"]);
    // Merged, the folder is the unsharded run's: rerunning it examines nothing new.
    let all = tmpdir("merged");
    let rows = mep::graph::merge(&mep::connect::MergeArgs {
        out: all.clone(),
        shards: vec![a.clone(), b.clone()],
    })
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(edges(&all).len(), edges(&a).len() + edges(&b).len());
    let mut z = args(&all, 4, Strategy::All);
    z.search.shard = None;
    let r = graph(&z).unwrap();
    assert_eq!((r.computed, r.resumed, r.complete), (0, edges(&all).len(), true));
    // A shard missing is refused.
    let e = mep::graph::merge(&mep::connect::MergeArgs {
        out: tmpdir("merged-half"),
        shards: vec![a],
    })
    .unwrap_err();
    assert!(e.to_string().contains("shard 1/2 is missing"), "{e}");
}

#[test]
fn bad_input_is_refused_with_its_name() {
    let out = tmpdir("bad");
    let e = graph(&args(&out, 1, Strategy::All)).unwrap_err();
    assert!(e.to_string().contains("--images"), "{e}");
    let e = "sideways".parse::<Strategy>().unwrap_err();
    assert!(e.contains("sideways"), "{e}");
    // Another setting into the same folder is refused, naming it.
    graph(&args(&out, 3, Strategy::All)).unwrap();
    let e = graph(&args(&out, 4, Strategy::All)).unwrap_err();
    assert!(matches!(e, MepError::ConfigMismatch { .. }), "{e}");
    assert!(e.to_string().contains("images"), "{e}");
    // A folder of `mep connect` is not a graph folder.
    let study = tmpdir("bad-study");
    std::fs::write(study.join("manifest.json"), "{}").unwrap();
    let e = graph(&args(&study, 3, Strategy::All)).unwrap_err();
    assert!(e.to_string().contains("mep connect"), "{e}");
    // Nor is a graph folder a study folder.
    let e = connect(&args(&out, 3, Strategy::All).search).unwrap_err();
    assert!(e.to_string().contains("mep graph"), "{e}");
}

#[test]
fn a_graph_of_an_attack_folder_names_its_adversarial_nodes() {
    let adv = tmpdir("attack");
    let mut a = mep::attack::AttackArgs::new("resnet20", shipped(), "synthetic", &adv);
    a.images = 12;
    a.steps = 5;
    a.quiet = true;
    mep::attack::attack(&a).unwrap();
    let out = tmpdir("attack-graph");
    let mut g = args(&out, 20, Strategy::All);
    g.search.data = adv.display().to_string();
    g.search.spaces = vec!["pool".into()];
    // Class 0 is the folder of the circles: natural ones and images pushed into it.
    graph(&g).unwrap();
    let cg = read_graph(&out, "pool");
    let files: Vec<&str> = cg
        .nodes
        .iter()
        .map(|n| n.file.as_deref().expect("a folder dataset names its files"))
        .collect();
    assert!(files.iter().any(|f| f.starts_with("nat_")), "{files:?}");
    let ml = std::fs::read_to_string(out.join(GRAPHS).join(format!("{}.graphml", cg.stem()))).unwrap();
    assert_eq!(ml.matches("<data key=\"file\">").count(), cg.nodes.len());
    // Every image of the class's folder is a node (fewer than 20), the adversarial ones too.
    let folder = std::fs::read_dir(&adv)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir() && p.file_name().unwrap().to_string_lossy().starts_with("0_"))
        .expect("the circles' folder");
    let in_folder = std::fs::read_dir(&folder).unwrap().count();
    let adversarial = std::fs::read_dir(&folder)
        .unwrap()
        .filter(|e| mep::graph::is_adversarial(&e.as_ref().unwrap().file_name().to_string_lossy()))
        .count();
    assert_eq!(cg.nodes.len(), in_folder);
    assert_eq!(
        files.iter().filter(|f| mep::graph::is_adversarial(f)).count(),
        adversarial
    );
}
