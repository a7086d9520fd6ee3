//! `mep connect` and `mep merge` end to end on small models: pair selection, resumption,
//! sharding, bad input, the saved paths and the tables.
//!
//! Two models: a narrow ResNet-20 trained for a few seconds on three synthetic classes
//! (so that some endpoints are misclassified and some lines leave the class), and a
//! randomly initialised one for the command-line runs on the ten-class synthetic set.

use mep::connect::{
    connect_with, merge, pairs, read_results, ConnectArgs, Manifest, MergeArgs, PairResult, Shard, MANIFEST, RESULTS,
};
use mep::train::{train_on, TrainArgs};
use mep::MepError;
use mep_data::{synthetic, Dataset, Samples, Split, SyntheticConfig, Transform};
use mep_resnet::{Arch, Checkpoint, Cut, FoldedResNet};
use mep_tensor::{CpuBackend, Tensor};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::common;

fn tmpdir(tag: &str) -> PathBuf {
    common::tmpdir("connect", tag)
}

/// The synthetic set restricted to three classes, relabelled 0, 1, 2.
fn three_classes() -> Dataset {
    let d = synthetic(&SyntheticConfig {
        seed: 3,
        train_per_class: 200,
        test_per_class: 20,
    });
    Dataset {
        name: "synthetic-3".into(),
        ..common::subset(d, &["circle", "stripes", "checkerboard"])
    }
}

/// A width-4 ResNet-20 trained for three epochs on [`three_classes`] (about 63 % test
/// accuracy; deterministic; made once per test binary).
fn trained() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        let args = TrainArgs {
            lr: 6e-3,
            width: Some(4),
            ..common::train_args("synthetic-3", tmpdir("model"), 3)
        };
        train_on(&args, three_classes()).unwrap().model
    })
}

/// A randomly initialised width-4 ResNet-20 for the ten synthetic classes.
fn random_init() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| common::random_resnet20(tmpdir("random").join("model.safetensors")))
}

/// `mep connect --arch resnet20 --weights <random_init> --data synthetic <extra…>`.
fn connect_cli(extra: &[&str]) -> Vec<String> {
    let head = [
        "connect",
        "--arch",
        "resnet20",
        "--weights",
        random_init().to_str().unwrap(),
        "--data",
        "synthetic",
    ];
    head.iter().chain(extra).map(|s| s.to_string()).collect()
}

/// A small, fast study of the trained model.
fn small(out: &Path) -> ConnectArgs {
    let mut a = ConnectArgs::new("resnet20", trained(), "synthetic-3", out);
    a.pairs = Some(6);
    common::short_search(&mut a, 4, 4, 6, 11);
    a
}

fn run(a: &ConnectArgs) -> mep::Result<mep::connect::ConnectReport> {
    connect_with(&CpuBackend::new(), a, &three_classes())
}

/// The [`small`] study in `out` with `edit` made, run to the end; returns its arguments.
fn studied(out: &Path, edit: impl FnOnce(&mut ConnectArgs)) -> ConnectArgs {
    let mut a = small(out);
    edit(&mut a);
    run(&a).unwrap();
    a
}

/// The results of a folder, wall times zeroed and ordered by (pair, space).
fn results(dir: &Path) -> Vec<PairResult> {
    let (mut r, torn) = read_results(&dir.join(RESULTS), false).unwrap();
    assert!(torn.is_none());
    for x in &mut r {
        x.seconds = 0.0;
    }
    r.sort_by(|a, b| (a.pair, &a.space).cmp(&(b.pair, &b.space)));
    r
}

fn manifest(dir: &Path) -> Manifest {
    Manifest::read(dir).unwrap().expect("a manifest")
}

/// The normalised test images `idx` of `data` as `[n, 3, 32, 32]`: the transform a
/// checkpoint from `mep train` records (32×32, ImageNet mean and std).
fn images(b: &CpuBackend, data: &Dataset, idx: &[usize]) -> Tensor<CpuBackend> {
    let t = Transform::imagenet(Some(32));
    let mut x = vec![0.0; idx.len() * 3 * 32 * 32];
    for (k, &i) in idx.iter().enumerate() {
        let img = data.test.image(i).unwrap();
        t.apply(&img, &mut mep_data::Rng::new(0), &mut x[k * 3072..(k + 1) * 3072])
            .unwrap();
    }
    Tensor::from_vec(b, [idx.len(), 3, 32, 32], x).unwrap()
}

/// The logits of the ResNet-20 `weights` at every test image of `data`, in order.
fn test_logits(weights: &Path, data: &Dataset) -> Vec<f32> {
    let b = CpuBackend::new();
    let net = FoldedResNet::load(&b, Arch::ResNet20, weights).unwrap();
    let all: Vec<usize> = (0..data.test.len()).collect();
    net.head(&b, &images(&b, data, &all), Cut::Input)
        .unwrap()
        .to_vec(&b)
        .unwrap()
}

#[test]
fn a_study_selects_deterministic_pairs_and_its_tables_add_up() {
    let (a_dir, b_dir) = (tmpdir("det-a"), tmpdir("det-b"));
    let report = run(&small(&a_dir)).unwrap();
    eprintln!("{report}");
    assert!(report.complete);
    assert_eq!((report.pairs, report.computed, report.resumed), (6, 18, 0));
    run(&small(&b_dir)).unwrap();
    let (ma, mb) = (manifest(&a_dir), manifest(&b_dir));
    assert_eq!(ma.pair_list, mb.pair_list, "the same seed draws the same pairs");
    assert_eq!(results(&a_dir), results(&b_dir), "and finds the same results");

    // Every pair is studied in every space, with the endpoints the manifest lists.
    let r = results(&a_dir);
    assert_eq!(r.len(), 6 * 3);
    for p in &ma.pair_list {
        let mine: Vec<&PairResult> = r.iter().filter(|x| x.pair == p.pair).collect();
        assert_eq!(mine.len(), 3);
        assert!(mine.iter().all(|x| (x.i, x.j, x.class) == (p.i, p.j, p.class)));
        assert_ne!(p.i, p.j);
    }

    // The selection is the candidate sequence of the seed with misclassified pairs left
    // out: the draw without the check gives the candidates, our own classification of
    // every test image says which to keep, and the skipped count is what was passed over.
    let data = three_classes();
    let all: Vec<usize> = (0..data.test.len()).collect();
    let logits = test_logits(trained(), &data);
    let correct: Vec<bool> = mep::eval::argmax_rows(&logits, 3)
        .iter()
        .zip(&data.test.labels)
        .map(|(p, l)| p == l)
        .collect();
    let wrong = correct.iter().filter(|c| !**c).count();
    assert!(
        wrong > 0 && wrong < all.len(),
        "{wrong} misclassified: the check must matter"
    );
    let candidates = pairs::draw_pairs(&data.test.labels, &data.classes, &[], 300, 11, None, 64).unwrap();
    let mut kept = Vec::new();
    let mut passed_over = 0;
    for c in &candidates.pairs {
        if kept.len() == 6 {
            break;
        }
        if correct[c.i] && correct[c.j] {
            kept.push((c.i, c.j));
        } else {
            passed_over += 1;
        }
    }
    let got: Vec<(usize, usize)> = ma.pair_list.iter().map(|p| (p.i, p.j)).collect();
    assert_eq!(got, kept);
    assert_eq!(ma.skipped, passed_over);
    assert_eq!(report.skipped, passed_over);

    // Table 1 counts every result of a space once.
    let csv = std::fs::read_to_string(a_dir.join("table1.csv")).unwrap();
    let mut lines = csv.lines();
    // The counts first; the shares and their Wilson intervals come after them.
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("category,input,layer1,pool,input_share,input_lo,input_hi"),
        "{header}"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let body: Vec<&Vec<&str>> = rows.iter().filter(|r| r[0] != "total").collect();
    assert_eq!(
        body.iter().map(|r| r[0]).collect::<Vec<_>>()[..3],
        ["linear", "nonlinear", "none"]
    );
    for col in 1..=3 {
        let sum: usize = body.iter().map(|r| r[col].parse::<usize>().unwrap()).sum();
        assert_eq!(sum, 6, "column {col} of {csv}");
    }
    let md = std::fs::read_to_string(a_dir.join("table1.md")).unwrap();
    assert!(md.contains("| linear |") && md.contains("mean ± std"), "{md}");
    let in_input = |c: mep::connect::Category| r.iter().filter(|x| x.space == "input" && x.category == c).count();
    let linear_input = in_input(mep::connect::Category::Linear);
    assert!(md.contains(&format!("| linear | {linear_input} (")), "{md}");
    for d in [a_dir, b_dir] {
        std::fs::remove_dir_all(d).ok();
    }
}

#[test]
fn saved_paths_reload_with_their_endpoints_and_metadata() {
    use mep::connect::Category;
    // The case is built, not hoped for: a scan of candidate pairs in the input space finds
    // one whose straight line stays in the class (linear) and one whose line leaves it, by
    // the study's own line check; the study of those two then has both kinds of path file.
    let dir = tmpdir("paths");
    let scan_dir = dir.join("scan");
    studied(&scan_dir, |scan| {
        scan.spaces = vec!["input".into()];
        scan.pairs = Some(24);
    });
    let scanned = results(&scan_dir);
    let first = |want: &dyn Fn(Category) -> bool| scanned.iter().find(|r| want(r.category)).map(|r| (r.i, r.j));
    let categories: Vec<Category> = scanned.iter().map(|r| r.category).collect();
    let linear = first(&|c| c == Category::Linear).unwrap_or_else(|| panic!("no linear pair in {categories:?}"));
    let leaves = first(&|c| matches!(c, Category::Nonlinear | Category::NoPath))
        .unwrap_or_else(|| panic!("no line leaves the class in {categories:?}"));
    let pairs_file = dir.join("pairs.csv");
    std::fs::write(
        &pairs_file,
        format!("{},{}\n{},{}\n", linear.0, linear.1, leaves.0, leaves.1),
    )
    .unwrap();

    let out = dir.join("study");
    studied(&out, |a| {
        a.spaces = vec!["input".into(), "layer2".into(), "pool".into()];
        a.pairs = None;
        a.pairs_file = Some(pairs_file);
    });
    let m = manifest(&out);
    let got: Vec<(usize, usize)> = m.pair_list.iter().map(|p| (p.i, p.j)).collect();
    assert_eq!(got, [linear, leaves]);
    let data = three_classes();
    let b = CpuBackend::new();
    let net = FoldedResNet::load(&b, Arch::ResNet20, trained()).unwrap();
    let all = results(&out);
    assert_eq!(all.len(), 2 * 3);
    for r in &all {
        let p = &m.pair_list[r.pair];
        let file = out.join(r.path_file.as_ref().expect("a path file"));
        let ck = Checkpoint::load(&file).unwrap();
        let meta = ck.metadata();
        for (k, v) in [
            ("arch", "resnet20".to_string()),
            ("space", r.space.clone()),
            ("i", p.i.to_string()),
            ("j", p.j.to_string()),
            ("target", p.class.to_string()),
            ("category", r.category.to_string()),
        ] {
            assert_eq!(meta.get(k), Some(&v), "{k} in {}", file.display());
        }
        let pivots = ck.get("pivots").unwrap();
        let cut: Cut = r.space.parse().unwrap();
        let z = net.encode(&b, &images(&b, &data, &[p.i, p.j]), cut).unwrap();
        let mut expected = vec![r.pivots];
        expected.extend_from_slice(&z.shape.dims()[1..]);
        assert_eq!(pivots.shape.dims(), &expected[..]);
        let d = z.numel() / 2;
        let zh = z.to_vec(&b).unwrap();
        let last = pivots.data.len() - d;
        // The study encodes both images in one batch, as here: the endpoints are equal.
        assert_eq!(&pivots.data[..d], &zh[..d], "first pivot = encode(x_i) in {}", r.space);
        assert_eq!(
            &pivots.data[last..],
            &zh[d..],
            "last pivot = encode(x_j) in {}",
            r.space
        );
        if r.category == Category::Linear {
            // A linear path file holds the line's two endpoints.
            assert_eq!((r.pivots, r.steps), (2, 0));
        } else {
            // Any other holds the NEB's whole chain.
            assert_eq!(r.pivots, 4, "{:?} in {}", r.category, r.space);
        }
    }
    // The line check sees the same line as the scan did: the first pair is linear in the
    // input space, the second is not, so both kinds of path file were checked above.
    let input: Vec<Category> = all.iter().filter(|r| r.space == "input").map(|r| r.category).collect();
    assert_eq!(input[0], Category::Linear);
    assert!(matches!(input[1], Category::Nonlinear | Category::NoPath), "{input:?}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn shards_partition_the_pairs_and_merge_into_the_unsharded_study() {
    let root = tmpdir("shards");
    let a = studied(&root.join("all"), |a| {
        a.pairs = Some(5);
        a.spaces = vec!["input".into(), "pool".into()];
    });
    let mut shard_dirs = Vec::new();
    for i in 0..3 {
        let mut s = a.clone();
        s.out = root.join(format!("shard{i}"));
        s.shard = Some(Shard { index: i, count: 3 });
        run(&s).unwrap();
        let r = results(&s.out);
        // Shard i holds the pairs k with k % 3 == i, in both spaces.
        let mut pairs: Vec<usize> = r.iter().map(|x| x.pair).collect();
        pairs.dedup();
        assert_eq!(pairs, (0..5).filter(|k| k % 3 == i).collect::<Vec<_>>());
        assert_eq!(manifest(&s.out).pair_list, manifest(&a.out).pair_list);
        shard_dirs.push(s.out);
    }
    let merged = root.join("merged");
    let rep = merge(&MergeArgs {
        out: merged.clone(),
        shards: shard_dirs.clone(),
    })
    .unwrap();
    assert_eq!((rep.pairs, rep.results), (5, 10));
    assert_eq!(results(&merged), results(&a.out));
    let table = |d: &Path| std::fs::read_to_string(d.join("table1.csv")).unwrap();
    assert_eq!(table(&merged), table(&a.out));
    for r in results(&merged) {
        assert!(merged.join(r.path_file.unwrap()).is_file());
    }

    // A missing shard, a shard given twice, and a shard of another study are refused.
    let e = merge(&MergeArgs {
        out: root.join("m2"),
        shards: shard_dirs[..2].to_vec(),
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("lack results") && e.contains("pair 2 (input, pool)"), "{e}");
    let e = merge(&MergeArgs {
        out: root.join("m3"),
        shards: vec![
            shard_dirs[0].clone(),
            shard_dirs[1].clone(),
            shard_dirs[2].clone(),
            shard_dirs[0].clone(),
        ],
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("more than one shard") && e.contains("pair 0 in input"),
        "{e}"
    );
    let mut other = a.clone();
    other.out = root.join("other");
    other.max_steps = 3;
    other.shard = Some(Shard { index: 0, count: 3 });
    run(&other).unwrap();
    let e = merge(&MergeArgs {
        out: root.join("m4"),
        shards: vec![other.out.clone(), shard_dirs[1].clone(), shard_dirs[2].clone()],
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("max_steps: 3 → 6"), "{e}");
    std::fs::remove_dir_all(root).ok();
}

#[test]
fn an_interrupted_study_resumes_without_losing_or_repeating_a_result() {
    let root = tmpdir("resume");
    let straight = root.join("straight");
    studied(&straight, |a| a.pairs = Some(4));

    let dir = root.join("interrupted");
    let mut first = small(&dir);
    first.pairs = Some(4);
    first.stop_after = Some(5);
    let r1 = run(&first).unwrap();
    assert!(!r1.complete);
    assert_eq!(r1.computed, 5);
    assert_eq!(results(&dir).len(), 5);
    // Killed while writing the next line: a torn line without its newline.
    let full = std::fs::read_to_string(straight.join(RESULTS)).unwrap();
    let sixth = full.lines().nth(5).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join(RESULTS))
        .unwrap();
    std::io::Write::write_all(&mut f, &sixth.as_bytes()[..sixth.len() / 2]).unwrap();
    drop(f);
    let torn = read_results(&dir.join(RESULTS), false);
    assert!(torn.is_err(), "the torn line is really there");

    let mut again = first.clone();
    again.stop_after = None;
    let r2 = run(&again).unwrap();
    assert!(r2.complete);
    assert_eq!((r2.resumed, r2.computed), (5, 7));
    assert_eq!(results(&dir), results(&straight));
    // A third run finds nothing left to do.
    let r3 = run(&again).unwrap();
    assert_eq!((r3.resumed, r3.computed), (12, 0));
    assert_eq!(results(&dir).len(), 12);
    std::fs::remove_dir_all(root).ok();
}

#[test]
fn the_command_killed_mid_study_resumes_to_the_uninterrupted_results() {
    let root = tmpdir("kill");
    let args = |out: &Path| -> Vec<String> {
        connect_cli(&[
            "--space",
            "input,layer1",
            "--pairs",
            "6",
            "--pivots",
            "6",
            "--sub-points",
            "4",
            "--max-steps",
            "25",
            "--allow-misclassified",
            "--seed",
            "5",
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let mep = env!("CARGO_BIN_EXE_mep");
    let whole = root.join("whole");
    let st = Command::new(mep).args(args(&whole)).output().unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let out = String::from_utf8_lossy(&st.stdout);
    assert!(out.contains("6 pairs") && out.contains("linear"), "{out}");

    let dir = root.join("killed");
    let mut child = Command::new(mep).args(args(&dir)).spawn().unwrap();
    let lines = |d: &Path| std::fs::read_to_string(d.join(RESULTS)).map_or(0, |s| s.matches('\n').count());
    while lines(&dir) < 2 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the study ended before it could be killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = lines(&dir);
    assert!(before < 12, "killed after {before} of 12 results");

    let st = Command::new(mep).args(args(&dir)).output().unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let out = String::from_utf8_lossy(&st.stdout);
    assert!(
        out.contains(&format!("{} results computed, {before} resumed", 12 - before)),
        "{out}"
    );
    assert_eq!(results(&dir), results(&whole));
    assert_eq!(
        std::fs::read_to_string(dir.join("table1.csv")).unwrap(),
        std::fs::read_to_string(whole.join("table1.csv")).unwrap()
    );

    // merge from the command line, and its refusal of an incomplete set of shards.
    let st = Command::new(mep)
        .args([
            "merge",
            "--out",
            root.join("m").to_str().unwrap(),
            whole.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    assert_eq!(results(&root.join("m")), results(&whole));
    std::fs::remove_dir_all(root).ok();
}

#[test]
fn another_configuration_for_an_existing_folder_is_refused() {
    let dir = tmpdir("mismatch");
    let a = studied(&dir, |a| {
        a.pairs = Some(1);
        a.spaces = vec!["pool".into()];
    });
    let mut b = a.clone();
    b.pivots = 5;
    b.optimizer = mep::connect::SearchOptimizer::Sgd;
    let e = run(&b).unwrap_err();
    assert!(matches!(e, MepError::ConfigMismatch { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("pivots: 4 → 5") && msg.contains("optimizer: \"adam\" → \"sgd\""),
        "{msg}"
    );
    assert!(msg.contains(&dir.join(MANIFEST).display().to_string()), "{msg}");
    let mut c = a.clone();
    c.shard = Some(Shard { index: 0, count: 2 });
    let msg = run(&c).unwrap_err().to_string();
    assert!(msg.contains("shard: none → 0/2"), "{msg}");
    // Batch size and the progress bar change nothing, so they may differ.
    let mut d = a.clone();
    d.batch = 7;
    d.quiet = false;
    assert_eq!(run(&d).unwrap().resumed, 1);
    std::fs::remove_dir_all(dir).ok();
}

fn err(a: &ConnectArgs, data: &Dataset) -> String {
    connect_with(&CpuBackend::new(), a, data).unwrap_err().to_string()
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tmpdir("bad");
    let data = three_classes();
    let base = small(&dir.join("study"));
    let with = |f: &dyn Fn(&mut ConnectArgs)| {
        let mut a = base.clone();
        f(&mut a);
        err(&a, &data)
    };

    let e = with(&|a| a.spaces = vec!["input".into(), "fc7".into()]);
    assert!(
        e.contains("--space fc7") && e.contains("input, stem, layer1, layer2, layer3, pool"),
        "{e}"
    );
    let e = with(&|a| a.spaces = vec!["layer4".into()]);
    assert!(
        e.contains("resnet20 has no such cut") && e.contains("layer3, pool"),
        "{e}"
    );
    // 3 classes of 20 test images: 3 · 190 distinct pairs.
    let e = with(&|a| a.pairs = Some(571));
    assert!(e.contains("only 570 distinct same-class pairs"), "{e}");
    let e = with(&|a| {
        a.pairs = Some(191);
        a.classes = vec!["stripes".into()];
    });
    assert!(e.contains("only 190 distinct") && e.contains("stripes"), "{e}");
    let e = with(&|a| a.classes = vec!["hexagon".into()]);
    assert!(
        e.contains("--class hexagon") && e.contains("circle, stripes, checkerboard"),
        "{e}"
    );
    let e = with(&|a| a.pivots = 1);
    assert!(e.contains("--pivots 1"), "{e}");

    // A class with a single test image cannot give a pair.
    let mut lonely = data.clone();
    let first = data.test.labels.iter().position(|&l| l == 2).unwrap();
    let keep: Vec<usize> = (0..lonely.test.len())
        .filter(|&i| lonely.test.labels[i] != 2 || i == first)
        .collect();
    let Samples::InMemory {
        height,
        width,
        data: bytes,
    } = &data.test.samples
    else {
        unreachable!()
    };
    let px = height * width * 3;
    lonely.test = Split {
        samples: Samples::InMemory {
            height: *height,
            width: *width,
            data: keep
                .iter()
                .flat_map(|&i| bytes[i * px..(i + 1) * px].to_vec())
                .collect(),
        },
        labels: keep.iter().map(|&i| data.test.labels[i]).collect(),
    };
    let mut a = base.clone();
    a.classes = vec!["2".into()];
    let e = err(&a, &lonely);
    assert!(
        e.contains("1 image(s) of class `checkerboard`") && e.contains("needs two"),
        "{e}"
    );

    // Pairs files: each bad line names the file and the line.
    let labels = &data.test.labels;
    let same = (1..labels.len()).find(|&j| labels[j] == labels[0]).unwrap();
    let other = (1..labels.len()).find(|&j| labels[j] != labels[0]).unwrap();
    let cases = [
        (
            format!("# chosen pairs\n0,{same}\n\n3;4\n"),
            4,
            "not a pair of dataset indices".to_string(),
        ),
        (
            format!("0,{same}\n0,60\n"),
            2,
            "index 60 is out of range: the test split has 60 images".to_string(),
        ),
        (
            format!("0,{other}\n"),
            1,
            format!(
                "images 0 and {other} are of different classes ({} and {})",
                data.classes[labels[0]], data.classes[labels[other]]
            ),
        ),
        ("5,5\n".to_string(), 1, "pairs image 5 with itself".to_string()),
        (format!("0,{same}\n{same},0 # again\n"), 2, "repeats line 1".to_string()),
    ];
    for (k, (text, line, what)) in cases.iter().enumerate() {
        let file = dir.join(format!("pairs{k}.csv"));
        std::fs::write(&file, text).unwrap();
        let mut a = base.clone();
        a.pairs = None;
        a.pairs_file = Some(file.clone());
        let e = err(&a, &data);
        assert!(
            e.starts_with(&format!("{}:{line}: ", file.display())) && e.contains(what.as_str()),
            "{e}"
        );
    }
    let mut a = base.clone();
    a.pairs_file = Some(dir.join("pairs0.csv"));
    assert!(err(&a, &data).contains("--pairs or --pairs-file"));

    // --shard i/n
    for (s, what) in [
        ("2/2", "below the count"),
        ("0/0", "must be positive"),
        ("1", "expected i/n"),
    ] {
        let e = s.parse::<Shard>().unwrap_err().to_string();
        assert!(e.contains(what), "{s}: {e}");
    }
    assert_eq!("1/4".parse::<Shard>().unwrap(), Shard { index: 1, count: 4 });
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_pairs_file_is_studied_as_given() {
    let dir = tmpdir("pairsfile");
    let data = three_classes();
    let labels = &data.test.labels;
    let chosen: Vec<(usize, usize)> = (0..3)
        .map(|c| {
            let of: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
            (of[1], of[4])
        })
        .collect();
    let file = dir.join("pairs.csv");
    let text: String = chosen.iter().map(|(i, j)| format!("{i},{j}  # class\n")).collect();
    std::fs::write(&file, format!("# i,j\n{text}")).unwrap();
    let mut a = small(&dir.join("study"));
    a.pairs = None;
    a.pairs_file = Some(file);
    a.allow_misclassified = true;
    a.spaces = vec!["pool".into()];
    let rep = run(&a).unwrap();
    assert_eq!((rep.pairs, rep.skipped), (3, 0));
    let got: Vec<(usize, usize, usize)> = manifest(&a.out).pair_list.iter().map(|p| (p.i, p.j, p.class)).collect();
    assert_eq!(
        got,
        chosen
            .iter()
            .enumerate()
            .map(|(c, &(i, j))| (i, j, c))
            .collect::<Vec<_>>()
    );
    std::fs::remove_dir_all(dir).ok();
}

/// The random model with classifier row `class` and its bias set to `value` (finite, so the
/// checkpoint loads): the row's logit overflows to `value`'s infinity at every point whose
/// pooled features (≥ 0 after ReLU) are not all zero.
fn overflowing_head(dir: &Path, class: usize, value: f32) -> PathBuf {
    let mut ck = Checkpoint::load(random_init()).unwrap();
    for (suffix, per_row) in [("weight", None), ("bias", Some(1))] {
        let key = ck
            .keys()
            .find(|k| k.ends_with(suffix) && (k.starts_with("linear.") || k.starts_with("fc.")))
            .unwrap()
            .to_string();
        let mut t = ck.get(&key).unwrap().clone();
        let row = per_row.unwrap_or_else(|| t.shape.dims()[1]);
        t.data[class * row..(class + 1) * row].fill(value);
        ck.insert(key, t);
    }
    let weights = dir.join(format!("overflow-{class}.safetensors"));
    common::save_checkpoint(&ck, &weights);
    weights
}

#[test]
fn a_non_finite_energy_is_an_error_result_and_the_study_goes_on() {
    let dir = tmpdir("nan");
    // Class 0's logit overflows to +∞ at every point, so every loss is NaN.
    let weights = overflowing_head(&dir, 0, f32::MAX);
    let mut a = ConnectArgs::new("resnet20", &weights, "synthetic", dir.join("study"));
    a.pairs = Some(2);
    a.spaces = vec!["pool".into(), "layer3".into()];
    a.allow_misclassified = true;
    a.quiet = true;
    let data = synthetic(&SyntheticConfig {
        seed: 0,
        train_per_class: 0,
        test_per_class: 5,
    });
    let rep = connect_with(&CpuBackend::new(), &a, &data).unwrap();
    assert!(rep.complete);
    assert_eq!(rep.counts.iter().map(|c| c.error).collect::<Vec<_>>(), vec![2, 2]);
    for r in results(&a.out) {
        assert_eq!(r.category, mep::connect::Category::Error);
        let msg = r.message.unwrap();
        assert!(msg.contains("non-finite"), "{msg}");
        assert!(r.path_file.is_none());
    }
    let csv = std::fs::read_to_string(a.out.join("table1.csv")).unwrap();
    assert!(csv.lines().any(|l| l.starts_with("error,2,2,")), "{csv}");
    std::fs::remove_dir_all(dir).ok();
}

/// Issue 18: a point whose logits are not finite is in no class. Class 9's logit is −∞ at every
/// point while the others stay finite, so the losses are finite and the argmax is unchanged;
/// before, pairs of the class the model predicts everywhere were `linear`. Now their
/// endpoints count as misclassified, and when studied anyway no line or path joins them.
#[test]
fn points_with_non_finite_logits_are_in_no_class_so_no_pair_is_linear() {
    let dir = tmpdir("neg-inf-head");
    let weights = overflowing_head(&dir, 9, -f32::MAX);
    let data = synthetic(&SyntheticConfig {
        seed: 0,
        train_per_class: 0,
        test_per_class: 5,
    });
    let b = CpuBackend::new();
    let idx: Vec<usize> = (0..data.test.len()).collect();
    let logits = test_logits(&weights, &data);
    assert!(logits
        .chunks(10)
        .all(|r| r[9] == f32::NEG_INFINITY && r[..9].iter().all(|v| v.is_finite())));
    // The class of the images the model gets right (a random model predicts one class).
    let preds = mep::eval::argmax_rows(&logits, 10);
    let right: Vec<usize> = idx
        .iter()
        .copied()
        .filter(|&i| preds[i] == data.test.labels[i])
        .collect();
    assert!(right.len() >= 2, "the random model gets {} images right", right.len());
    let class = data.classes[data.test.labels[right[0]]].clone();

    let mut a = ConnectArgs::new("resnet20", &weights, "synthetic", dir.join("study"));
    a.pairs = Some(2);
    a.classes = vec![class.clone()];
    a.spaces = vec!["input".into(), "pool".into()];
    a.pivots = 4;
    a.sub_points = 4;
    a.max_steps = 4;
    a.quiet = true;
    let e = connect_with(&b, &a, &data)
        .expect_err("every endpoint is misclassified")
        .to_string();
    assert!(
        e.contains("only 0 of the") && e.contains("--allow-misclassified"),
        "{e}"
    );

    a.allow_misclassified = true;
    let rep = connect_with(&b, &a, &data).unwrap();
    assert!(rep.complete);
    let rs = results(&a.out);
    assert_eq!(rs.len(), 4);
    for r in rs {
        assert!(
            !matches!(
                r.category,
                mep::connect::Category::Linear | mep::connect::Category::Nonlinear
            ),
            "pair {} of class {class} in {}: {:?}",
            r.pair,
            r.space,
            r.category
        );
    }
    std::fs::remove_dir_all(dir).ok();
}

/// `--device cuda` without a usable GPU stops with the reason (no driver, no GPU, or a build
/// without CUDA) before any result is written; `--device` with a typo is a usage error. On a
/// machine with a GPU the first half has nothing to check.
#[test]
fn device_cuda_without_a_gpu_is_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let mep = env!("CARGO_BIN_EXE_mep");
    let out = root.path().join("study");
    let args = |device: &str| {
        connect_cli(&[
            "--pairs",
            "1",
            "--allow-misclassified",
            "--out",
            out.to_str().unwrap(),
            "--quiet",
            "--device",
            device,
        ])
    };
    if mep_cuda::cuda_backend(0).is_err() {
        let st = Command::new(mep).args(args("cuda")).output().unwrap();
        let err = String::from_utf8_lossy(&st.stderr);
        assert!(!st.status.success(), "{err}");
        assert!(err.contains("--device cuda:"), "{err}");
        assert!(
            ["driver", "GPU", "CUDA support"].iter().any(|w| err.contains(w)),
            "the message should say why: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(!out.join(RESULTS).exists(), "no result may be written");
    }
    let st = Command::new(mep).args(args("tpu")).output().unwrap();
    let err = String::from_utf8_lossy(&st.stderr);
    assert!(
        !st.status.success() && err.contains("--device tpu: expected cpu, cuda or auto"),
        "{err}"
    );
}

/// A one-pair study small enough for the emulation: one pair at 16×16 in `input` and
/// `layer1` (the model was trained at 32×32, so the straight line leaves the class and the NEB
/// runs), 2 steps.
fn tiny_emu_study(dir: &Path) -> ConnectArgs {
    let mut a = small(dir);
    a.pairs = Some(1);
    a.max_steps = 2;
    a.size = Some(16);
    a.allow_misclassified = true;
    a.spaces = vec!["input".into(), "layer1".into()];
    a
}

/// An emulated study's results against the CPU's: the same pairs, categories and steps, the
/// line's and the path's largest losses to 1e-3.
fn assert_matches_cpu(got: &[PairResult], want: &[PairResult]) {
    assert_eq!(got.len(), want.len());
    let close = |g: Option<f64>, w: Option<f64>| match (g, w) {
        (Some(g), Some(w)) => (g - w).abs() <= 1e-3 * (1.0 + w.abs()),
        (g, w) => g.is_none() && w.is_none(),
    };
    for (g, w) in got.iter().zip(want) {
        assert_eq!((g.pair, g.i, g.j, &g.space), (w.pair, w.i, w.j, &w.space));
        assert_eq!(
            (g.category, g.steps),
            (w.category, w.steps),
            "pair {} in {}",
            g.pair,
            g.space
        );
        assert!(close(g.line_max_loss, w.line_max_loss), "{g:?}\n{w:?}");
        assert!(close(g.path_max_loss, w.path_max_loss), "{g:?}\n{w:?}");
    }
}

/// The study on the CUDA backend's code, run on the CPU emulation of its kernels
/// (`KernelBackend<EmuLauncher>`: the host code and kernels a GPU runs), gives the CPU
/// backend's pairs, categories and losses: the NEB's forces, interpolation and distances, the
/// network's forward and input gradient, all through the kernels.
#[test]
fn study_on_the_emulated_cuda_backend_matches_the_cpu() {
    let root = tmpdir("emu");
    let mut a = tiny_emu_study(&root.join("emu"));
    let emu = mep_kernels_emu::EmuLauncher::backend();
    connect_with(&emu, &a, &three_classes()).unwrap();
    let got = results(&a.out);
    // `--cuda-graph`: the second step of each search is recorded and replayed; the same
    // results to the bit (the seconds aside).
    let mut g = a.clone();
    g.out = root.join("emu-graph");
    g.cuda_graph = true;
    connect_with(&emu, &g, &three_classes()).unwrap();
    let bits = |r: &PairResult| {
        let f = |v: Option<f64>| v.map(f64::to_bits);
        (
            r.pair,
            r.space.clone(),
            r.category,
            r.steps,
            f(r.line_max_loss),
            f(r.path_max_loss),
            f(r.path_min_prob),
        )
    };
    let graphed = results(&g.out);
    assert_eq!(
        graphed.iter().map(bits).collect::<Vec<_>>(),
        got.iter().map(bits).collect::<Vec<_>>()
    );
    a.out = root.join("cpu");
    run(&a).unwrap();
    let want = results(&a.out);
    assert_matches_cpu(&got, &want);
    // The searched paths were compared, not only straight lines.
    assert!(want.iter().all(|r| r.steps > 0), "{want:?}");
}

/// Issue 14: the NEB's gradient steps in TF32 or bf16 find the categories that fp32 search
/// finds on the small study; the checks that decide them run in fp32 (each line's largest
/// loss is fp32's to the bit), and the precision is in the manifest and in every result.
///
/// With the small study's 6 steps, pair 3 in `input` is joined at the 6th step in TF32 and
/// just missed in fp32 (`none` means "not within the budget", and another rounding of the
/// gradients moves the path another way); 40 steps leave no result at the budget's edge.
#[test]
fn reduced_precision_search_gives_the_categories_of_fp32_search() {
    use mep::Precision;
    let root = tmpdir("precision");
    let base = studied(&root.join("fp32"), |a| a.max_steps = 40);
    let want = results(&base.out);
    assert!(want.iter().any(|r| r.steps > 0), "the NEB must run: {want:?}");
    for p in [Precision::Tf32, Precision::Bf16] {
        let a = studied(&root.join(p.as_str()), |a| {
            a.max_steps = 40;
            a.precision = p;
        });
        assert_eq!(manifest(&a.out).settings.precision, p);
        let got = results(&a.out);
        assert_eq!(got.len(), want.len());
        let mut moved = 0;
        for (g, w) in got.iter().zip(&want) {
            assert_eq!((g.pair, &g.space, g.category), (w.pair, &w.space, w.category), "{p}");
            assert_eq!(g.precision, p);
            assert_eq!(
                g.line_max_loss.map(f64::to_bits),
                w.line_max_loss.map(f64::to_bits),
                "{p}: the straight line is checked in fp32"
            );
            moved += usize::from(g.steps > 0 && (g.path_max_loss, g.length_ratio) != (w.path_max_loss, w.length_ratio));
        }
        assert!(
            moved > 0,
            "{p}: no searched path differs from fp32's; did the steps run in {p}?"
        );
    }
    // Resumed in another precision: refused, naming both.
    let mut c = base.clone();
    c.precision = Precision::Tf32;
    let msg = run(&c).unwrap_err().to_string();
    assert!(msg.contains("precision: \"fp32\" → \"tf32\""), "{msg}");
    // A manifest written before --precision reads as fp32 and resumes.
    let path = base.out.join(MANIFEST);
    let text = std::fs::read_to_string(&path).unwrap();
    let old = text.replace(",\n    \"precision\": \"fp32\"", "");
    assert_ne!(old, text, "the manifest records the precision");
    std::fs::write(&path, old).unwrap();
    assert_eq!(manifest(&base.out).settings.precision, Precision::Fp32);
    assert_eq!(run(&base).unwrap().resumed, want.len());
    std::fs::remove_dir_all(root).ok();
}

/// The energy of the search evaluates gradients (what moves pivots) at its search precision
/// and energies alone (the dense checks) in fp32, whatever precision the backend was left
/// at, and gives the backend back at the precision it had.
#[test]
fn head_energy_checks_in_fp32_and_steps_in_the_search_precision() {
    use mep::connect::HeadEnergy;
    use mep::Precision;
    use mep_neb::Energy;
    use mep_tensor::prelude::*;
    let b = CpuBackend::new();
    let data = three_classes();
    let net = FoldedResNet::load(&b, Arch::ResNet20, trained()).unwrap();
    let z = net
        .encode(&b, &images(&b, &data, &[0, 1, 2, 3]), Cut::Layer(1))
        .unwrap();
    let shape = z.shape.dims()[1..].to_vec();
    let energy = |p: Precision| {
        HeadEnergy::new(&net, Cut::Layer(1), 0, &shape)
            .unwrap()
            .with_search_precision(p)
    };
    let bits = |e: Vec<f64>| e.into_iter().map(f64::to_bits).collect::<Vec<_>>();
    let mut grads = b.zeros(z.shape.numel()).unwrap();
    let mut eval = |p: Precision, with_grads: bool| {
        let g = with_grads.then_some(&mut grads);
        bits(energy(p).evaluate(&b, &z.buf, 4, g).unwrap().energies)
    };
    let checked = eval(Precision::Fp32, false);
    assert_eq!(eval(Precision::Tf32, false), checked, "a check is fp32");
    b.set_precision(Precision::Bf16).unwrap();
    assert_eq!(
        eval(Precision::Fp32, false),
        checked,
        "a check is fp32 on a bf16 backend too"
    );
    assert_eq!(
        b.precision(),
        Precision::Bf16,
        "and the backend's precision is given back"
    );
    b.set_precision(Precision::Fp32).unwrap();
    let stepped = eval(Precision::Fp32, true);
    assert_eq!(stepped, checked);
    let tf32 = eval(Precision::Tf32, true);
    assert_eq!(b.precision(), Precision::Fp32);
    assert_ne!(tf32, stepped, "a gradient evaluation runs in the search precision");
    b.set_precision(Precision::Tf32).unwrap();
    let direct = net.head_loss_grad(&b, &z, Cut::Layer(1), &[0; 4], 1.0).unwrap();
    let direct: Vec<f64> = direct.losses.into_iter().map(f64::from).collect();
    assert_eq!(tf32, bits(direct), "the network's own loss in TF32");
}

/// `--precision` names a precision on every command; an unknown one is refused by name.
#[test]
fn an_unknown_precision_is_refused_by_name() {
    let mep = env!("CARGO_BIN_EXE_mep");
    for cmd in [
        &[
            "forward",
            "--arch",
            "resnet20",
            "--weights",
            "w",
            "--input",
            "i",
            "--out",
            "o",
        ][..],
        &["eval", "--arch", "resnet20", "--weights", "w"],
        &["train", "--arch", "resnet20"],
        &["decoder", "train", "--arch", "resnet20", "--weights", "w", "--out", "o"],
        &["connect", "--arch", "resnet20", "--weights", "w", "--out", "o"],
        &["graph", "--arch", "resnet20", "--weights", "w", "--out", "o"],
    ] {
        let st = Command::new(mep)
            .args(cmd)
            .args(["--precision", "fp16"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&st.stderr);
        assert!(!st.status.success(), "{cmd:?}: {err}");
        assert!(
            err.contains("unknown precision `fp16`; expected fp32, tf32 or bf16"),
            "{cmd:?}: {err}"
        );
    }
}

/// A TF32 search on the CUDA backend's tensor-core kernels (in the emulation) and on the CPU
/// backend's rounding of the same operands: the same categories and steps, the lines (checked
/// in fp32) the same losses. (A backend that refuses a precision is `mep::device`'s unit test.)
#[test]
fn a_tf32_study_on_the_emulated_tensor_cores_matches_the_cpu_in_tf32() {
    let root = tmpdir("tf32-emu");
    let mut a = tiny_emu_study(&root.join("emu"));
    a.precision = mep::Precision::Tf32;
    let emu = mep_kernels_emu::EmuLauncher::backend();
    connect_with(&emu, &a, &three_classes()).unwrap();
    let got = results(&a.out);
    a.out = root.join("cpu");
    run(&a).unwrap();
    let want = results(&a.out);
    assert_matches_cpu(&got, &want);
    assert!(got.iter().chain(&want).all(|r| r.precision == mep::Precision::Tf32));
    assert!(want.iter().all(|r| r.steps > 0), "the NEB must run: {want:?}");
    std::fs::remove_dir_all(root).ok();
}
