//! `mep connect --endpoints`: the seeded draw of misclassified images and their two pairs,
//! the check that exempts a misclassified endpoint from its true class, the setting in the
//! manifest (and manifests from before it), and the command line.
//!
//! The model is a narrow ResNet-20 trained for two short epochs on four synthetic classes:
//! about a third of the test images right, the rest wrong in every direction, and one class
//! with no image right (so some misclassified images have no partner and are passed over).

use mep::connect::{connect_with, pairs, read_results, ConnectArgs, EndpointSelection, Endpoints, Manifest, RESULTS};
use mep::train::train_on;
use mep_data::{synthetic, Dataset, SyntheticConfig};
use mep_resnet::{Arch, Cut, FoldedResNet};
use mep_tensor::{CpuBackend, Tensor};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::common;

fn tmpdir(tag: &str) -> PathBuf {
    common::tmpdir("endpoints", tag)
}

/// Four synthetic classes, 12 test images each (relabelled 0..3).
fn four_classes() -> Dataset {
    let all = synthetic(&SyntheticConfig {
        seed: 8,
        train_per_class: 150,
        test_per_class: 12,
    });
    common::subset(all, &["circle", "stripes", "checkerboard", "ring"])
}

/// A width-4 ResNet-20 trained for two short epochs on [`four_classes`] (31 % test
/// accuracy; deterministic; made once per test binary).
fn half_trained() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        let args = mep::train::TrainArgs {
            width: Some(4),
            lr: 6e-3,
            ..common::train_args("synthetic-4", tmpdir("model"), 2)
        };
        train_on(&args, four_classes()).unwrap().model
    })
}

/// The model's logits at every test image of [`four_classes`], one row an image.
fn test_logits() -> Vec<Vec<f32>> {
    let data = four_classes();
    let b = CpuBackend::new();
    let net = FoldedResNet::load(&b, Arch::ResNet20, half_trained()).unwrap();
    let t = mep_data::Transform::imagenet(Some(32));
    let n = data.test.len();
    let mut x = vec![0.0; n * 3072];
    for i in 0..n {
        let img = data.test.image(i).unwrap();
        t.apply(&img, &mut mep_data::Rng::new(0), &mut x[i * 3072..(i + 1) * 3072])
            .unwrap();
    }
    let logits = net
        .head(&b, &Tensor::from_vec(&b, [n, 3, 32, 32], x).unwrap(), Cut::Input)
        .unwrap()
        .to_vec(&b)
        .unwrap();
    logits.chunks(4).map(<[f32]>::to_vec).collect()
}

/// The model's class for every test image of [`four_classes`].
fn predictions() -> Vec<Option<usize>> {
    mep::eval::class_rows(&test_logits().concat(), 4)
}

/// The softmax probability of `class` in a row of logits.
fn prob(logits: &[f32], class: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    (logits[class] as f64 - max).exp() / sum
}

/// A study of [`half_trained`] with `--endpoints misclassified`: 3 misclassified images,
/// the spaces `input` and `pool`, and a path of 2 pivots and 1 sub-point (its dense points
/// are its two endpoints).
fn misclassified_study(out: &Path) -> ConnectArgs {
    let mut a = ConnectArgs::new("resnet20", half_trained(), "synthetic-4", out);
    a.endpoints = EndpointSelection::Misclassified;
    a.pairs = Some(3);
    a.spaces = vec!["input".into(), "pool".into()];
    common::short_search(&mut a, 2, 1, 3, 5);
    a
}

fn run(a: &ConnectArgs) -> mep::Result<mep::connect::ConnectReport> {
    connect_with(&CpuBackend::new(), a, &four_classes())
}

/// Test labels `i % 3` of three classes; the fake model is wrong on every image with
/// `i % 5 == 1` (predicting the next class) and gives no class at `i % 35 == 6`.
fn fake_split() -> (Vec<usize>, Vec<String>, impl Fn(usize) -> Option<usize>) {
    let labels: Vec<usize> = (0..90).map(|i| i % 3).collect();
    let classes = ["a", "b", "c"].map(String::from).to_vec();
    let l = labels.clone();
    let predict = move |i: usize| match i {
        _ if i % 35 == 6 => None,
        _ if i % 5 == 1 => Some((l[i] + 1) % 3),
        _ => Some(l[i]),
    };
    (labels, classes, predict)
}

#[test]
fn the_misclassified_draw_is_seeded_lazy_and_does_not_depend_on_the_batch() {
    let (labels, classes, truth) = fake_split();
    let draw = |batch: usize, allowed: &[usize], count: usize, seed: u64| {
        let mut asked: Vec<Vec<usize>> = Vec::new();
        let mut f = |xs: &[usize]| {
            assert!(xs.len() <= batch, "{} images in a batch of {batch}", xs.len());
            asked.push(xs.to_vec());
            Ok(xs.iter().map(|&x| truth(x)).collect())
        };
        let s = pairs::draw_misclassified(&labels, &classes, allowed, count, seed, &mut f, batch);
        (s, asked)
    };
    let (a, calls_1) = draw(1, &[], 6, 3);
    let (b, calls_16) = draw(16, &[], 6, 3);
    let asked_1 = calls_1.concat();
    let asked_16 = calls_16.concat();
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b, "the batch changes nothing drawn");
    let mut once = asked_1.clone();
    once.sort_unstable();
    once.dedup();
    assert_eq!(once.len(), asked_1.len(), "each image is predicted once");
    assert!(
        asked_1.len() < labels.len() / 2,
        "lazy: {} of {} images predicted for 6 misclassified ones",
        asked_1.len(),
        labels.len()
    );
    // Batched, the partners of a batch of images are predicted together: a few calls.
    assert!(asked_16.len() >= asked_1.len());
    assert!(
        calls_16.len() * 4 < calls_1.len(),
        "{} calls in batches of 16, {} one by one",
        calls_16.len(),
        calls_1.len()
    );
    assert_ne!(a, draw(1, &[], 6, 4).0.unwrap(), "another seed, other pairs");

    // Each misclassified image m gives two pairs, m first: checked in the class the model
    // predicts for it, with a correctly classified image of that class, then in its label,
    // with a correctly classified image of the label.
    assert_eq!(a.pairs.len(), 12);
    let mut ms = Vec::new();
    let mut partners = Vec::new();
    for (k, two) in a.pairs.chunks(2).enumerate() {
        let (p, t) = (&two[0], &two[1]);
        assert_eq!((p.pair, t.pair), (2 * k, 2 * k + 1));
        let m = p.i;
        assert_eq!(t.i, m);
        let (c, c2) = (labels[m], truth(m).expect("a class predicted"));
        assert_ne!(c, c2, "{m} is misclassified");
        assert_eq!(
            (p.endpoints, p.class, p.true_class, p.predicted),
            (Endpoints::MisclassifiedPredicted, c2, Some(c), None)
        );
        assert_eq!(
            (t.endpoints, t.class, t.true_class, t.predicted),
            (Endpoints::MisclassifiedTrue, c, None, Some(c2))
        );
        assert_eq!(
            (p.class_name.as_str(), t.class_name.as_str()),
            (classes[c2].as_str(), classes[c].as_str())
        );
        for x in two {
            assert_eq!(
                (labels[x.j], truth(x.j)),
                (x.class, Some(x.class)),
                "partner {} of pair {}",
                x.j,
                x.pair
            );
        }
        ms.push(m);
        partners.extend([p.j, t.j]);
    }
    for v in [&mut ms, &mut partners] {
        let n = v.len();
        v.sort_unstable();
        v.dedup();
        assert_eq!(v.len(), n, "each image is drawn once");
    }
    // Images with no class predicted are passed over and counted.
    let (all, _) = draw(16, &[], 15, 3);
    let all = all.unwrap();
    assert!(all.skipped > 0, "the images with no class are passed over");
    assert!(all.pairs.iter().all(|p| truth(p.i).is_some()));

    // --class restricts the true class of m.
    let (only_b, _) = draw(8, &[1], 4, 3);
    let only_b = only_b.unwrap();
    assert!(only_b.pairs.iter().all(|p| labels[p.i] == 1));
    assert!(
        only_b.pairs.iter().any(|p| p.class == 2),
        "checked in the predicted class too"
    );
}

#[test]
fn a_few_misclassified_images_of_a_large_split_need_a_few_batches() {
    // CIFAR-10's test split at 95 % accuracy: 25 misclassified images want about 500
    // candidates and 50 partners, not 10 000 images.
    let labels: Vec<usize> = (0..10_000).map(|i| i % 10).collect();
    let classes: Vec<String> = (0..10).map(|c| c.to_string()).collect();
    let wrong = |i: usize| (i.wrapping_mul(2_654_435_761) >> 7).is_multiple_of(20);
    let mut asked = 0;
    let mut f = |xs: &[usize]| {
        asked += xs.len();
        Ok(xs
            .iter()
            .map(|&x| Some(if wrong(x) { (labels[x] + 1) % 10 } else { labels[x] }))
            .collect())
    };
    let s = pairs::draw_misclassified(&labels, &classes, &[], 25, 0, &mut f, 64).unwrap();
    assert_eq!(s.pairs.len(), 50);
    eprintln!("{asked} images predicted");
    assert!(asked < 1_200, "{asked} images predicted");
}

#[test]
fn too_few_or_no_misclassified_images_are_refused_with_the_counts() {
    let (labels, classes, truth) = fake_split();
    let mut f = |xs: &[usize]| Ok(xs.iter().map(|&x| truth(x)).collect());
    // 18 images are wrong (i % 5 == 1), 3 of them with no class (i % 35 == 6).
    let e = pairs::draw_misclassified(&labels, &classes, &[], 16, 0, &mut f, 10)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("misclassifies 18 of the 90 test images")
            && e.contains("15 of them usable")
            && e.contains("fewer --pairs"),
        "{e}"
    );
    let mut right = |xs: &[usize]| Ok(xs.iter().map(|&x| Some(labels[x])).collect());
    let e = pairs::draw_misclassified(&labels, &classes, &[2], 1, 0, &mut right, 7)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("misclassifies none of the 30 test images of the classes c"),
        "{e}"
    );
    let e = pairs::draw_misclassified(&labels, &classes, &[0], 31, 0, &mut right, 7)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--pairs") && e.contains("only 30 images of the classes a"),
        "{e}"
    );
}

#[test]
fn a_misclassified_study_records_its_pairs_and_exempts_the_misclassified_endpoint() {
    let out = tmpdir("study");
    let a = misclassified_study(&out);
    let report = run(&a).unwrap();
    eprintln!("{report}");
    assert!(report.complete);
    assert_eq!((report.pairs, report.computed), (6, 12), "--pairs 3 gives 6 pairs");
    assert!(report.to_string().contains("misclassified images passed over"));
    let labels = four_classes().test.labels;
    let predicted = predictions();
    let logits = test_logits();
    let m = Manifest::read(&out).unwrap().unwrap();
    assert_eq!(m.settings.endpoints, EndpointSelection::Misclassified);
    assert!(!m.settings.allow_misclassified);
    assert_eq!(m.settings.pairs, Some(3));
    assert_eq!(m.skipped, report.skipped);
    for p in &m.pair_list {
        let (c, c2) = (labels[p.i], predicted[p.i].unwrap());
        assert_ne!(c, c2, "pair {}: image {} is misclassified", p.pair, p.i);
        assert_eq!((labels[p.j], predicted[p.j]), (p.class, Some(p.class)));
        match p.endpoints {
            Endpoints::MisclassifiedPredicted => assert_eq!((p.class, p.true_class, p.predicted), (c2, Some(c), None)),
            Endpoints::MisclassifiedTrue => assert_eq!((p.class, p.true_class, p.predicted), (c, None, Some(c2))),
            e => panic!("pair {} has endpoints {e}", p.pair),
        }
    }
    // The class with no image right gives no partner, so its images are passed over.
    assert!(m.pair_list.iter().all(|p| p.class != 2));

    let (results, _) = read_results(&out.join(RESULTS), false).unwrap();
    assert_eq!(results.len(), 12);
    for r in &results {
        let p = &m.pair_list[r.pair];
        assert_eq!(
            (r.i, r.j, r.class, r.endpoints, r.true_class, r.predicted),
            (p.i, p.j, p.class, p.endpoints, p.true_class, p.predicted)
        );
        // The dense line is the two endpoints. Checked in its predicted class, m is in the
        // class; checked in its true class, it is exempt. Without the exemption every
        // misclassified-true line would leave the class at t = 0 and, with no interior
        // pivot to move, be `none`.
        assert_eq!(r.category, mep::connect::Category::Linear, "{r:?}");
        // The recorded figures are those of the points checked: for misclassified-true the
        // partner alone, not m (whose probability of the class is lower than the predicted
        // class's), for misclassified-predicted both endpoints.
        let (li, lj) = (&logits[r.i], &logits[r.j]);
        let want = match r.endpoints {
            Endpoints::MisclassifiedTrue => prob(lj, r.class),
            _ => prob(li, r.class).min(prob(lj, r.class)),
        };
        let got = r.line_min_prob.unwrap();
        assert!((got - want).abs() < 1e-3, "line_min_prob {got}, want {want}: {r:?}");
        assert_eq!(r.path_min_prob, r.line_min_prob);
        if r.endpoints == Endpoints::MisclassifiedTrue {
            assert!(prob(li, r.class) < prob(li, r.predicted.unwrap()));
        }
    }

    // A second run resumes; another selection in the same folder is refused by name.
    let again = run(&a).unwrap();
    assert_eq!((again.resumed, again.computed), (12, 0));
    for (endpoints, allow) in [
        (EndpointSelection::Correct, false),
        (EndpointSelection::All, false),
        (EndpointSelection::Correct, true),
    ] {
        let mut b = a.clone();
        b.endpoints = endpoints;
        b.allow_misclassified = allow;
        let e = run(&b).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, mep::MepError::ConfigMismatch { .. }) && msg.contains("endpoints: \"misclassified\" → \""),
            "{msg}"
        );
    }
}

/// `dir/manifest.json` with `edit` made to its settings, written back.
fn edit_settings(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let path = dir.join(mep::connect::MANIFEST);
    let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(m["settings"].as_object_mut().unwrap());
    std::fs::write(&path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
}

#[test]
fn manifests_from_before_endpoints_read_as_the_flag_meant_and_resume() {
    let out = tmpdir("old");
    let mut a = ConnectArgs::new("resnet20", half_trained(), "synthetic-4", &out);
    a.allow_misclassified = true;
    a.pairs = Some(2);
    a.spaces = vec!["pool".into()];
    common::short_search(&mut a, 2, 1, 2, 1);
    run(&a).unwrap();
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join(mep::connect::MANIFEST)).unwrap()).unwrap();
    assert_eq!(written["settings"]["endpoints"], "all");
    assert_eq!(written["settings"]["allow_misclassified"], true);

    // Written before --endpoints: no such field.
    edit_settings(&out, |s| {
        s.remove("endpoints");
    });
    assert_eq!(
        Manifest::read(&out).unwrap().unwrap().settings.endpoints,
        EndpointSelection::All
    );
    let again = run(&a).unwrap();
    assert_eq!((again.resumed, again.computed), (2, 0), "the old study resumes");
    let mut b = a.clone();
    b.allow_misclassified = false;
    b.endpoints = EndpointSelection::All;
    assert_eq!(run(&b).unwrap().resumed, 2, "--endpoints all is the same study");

    edit_settings(&out, |s| {
        s.remove("endpoints");
        s.insert("allow_misclassified".into(), false.into());
    });
    assert_eq!(
        Manifest::read(&out).unwrap().unwrap().settings.endpoints,
        EndpointSelection::Correct
    );

    edit_settings(&out, |s| {
        s.insert("allow_misclassified".into(), true.into());
        s.insert("endpoints".into(), "misclassified".into());
    });
    let e = Manifest::read(&out).unwrap_err().to_string();
    assert!(
        e.contains("allow_misclassified") && e.contains("`misclassified`"),
        "{e}"
    );
}

/// `mep connect` with `extra`, expected to fail before it reads the (absent) weights;
/// returns its standard error.
fn refused(extra: &[&str]) -> String {
    let out = tmpdir("cli");
    let weights = out.join("absent.safetensors");
    let mut args = vec![
        "connect",
        "--arch",
        "resnet20",
        "--weights",
        weights.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_mep"))
        .args(&args)
        .output()
        .unwrap();
    assert!(!st.status.success(), "{args:?} ran");
    String::from_utf8_lossy(&st.stderr).into_owned()
}

#[test]
fn the_command_line_refuses_contradictory_endpoint_options() {
    for extra in [
        &["--endpoints", "misclassified", "--allow-misclassified"][..],
        &["--endpoints", "correct", "--allow-misclassified"][..],
    ] {
        let e = refused(extra);
        assert!(
            e.contains("--allow-misclassified") && e.contains("--endpoints all"),
            "{extra:?}: {e}"
        );
    }
    let e = refused(&["--endpoints", "misclassified", "--pairs-file", "pairs.csv"]);
    assert!(e.contains("--endpoints") && e.contains("--pairs-file"), "{e}");
    let e = refused(&["--endpoints", "wrong"]);
    assert!(
        e.contains("correct") && e.contains("misclassified") && e.contains("all"),
        "{e}"
    );
    // Spelled out, the default and `all` with its old name pass the checks and reach the
    // weights, which are absent.
    for extra in [
        &["--endpoints", "correct"][..],
        &["--endpoints", "all", "--allow-misclassified"][..],
    ] {
        let e = refused(extra);
        assert!(e.contains("absent.safetensors"), "{extra:?}: {e}");
    }
}
