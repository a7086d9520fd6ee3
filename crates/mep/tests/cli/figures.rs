//! The report's figures, drawn from a tiny study of `mep connect`: a ResNet-20 (standard
//! width 16, random weights) whose classifier bias favours class 0 by 8 logits, so that the
//! network predicts class 0 almost everywhere. Pair 0 (two `circle`s, class 0) is then
//! joined by the straight line in every space (`linear`), and pair 1 (two `ring`s,
//! class 1) leaves its class everywhere (`none` after 3 NEB steps): the figures show both
//! layouts, unmarked and marked cells. A random `pool` decoder sits in `decoders/`;
//! `layer1` has none (placeholders).

use mep::connect::{connect, Category, ConnectArgs, PairResult};
use mep::data::{eval_transform, transform_metadata};
use mep::figures::{
    default_indices, loss_plot, max_loss_distribution, pair_figure, palette, reconstructions, render_study,
    FigureContext, FigureKind, FigureOptions, PairFigure, DECODERS,
};
use mep_decoder::{Decoder, DecoderConfig, Source};
use mep_resnet::{Arch, Cut, FoldedResNet, ResNet};
use mep_tensor::{CpuBackend, Tensor};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mep-figures-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The synthetic set's class names (`mep_data::synthetic`'s order).
fn classes() -> Vec<String> {
    mep_data::synthetic(&mep_data::SyntheticConfig {
        seed: 0,
        train_per_class: 0,
        test_per_class: 1,
    })
    .classes
}

/// A random ResNet-20 of width 16 with the bias of class 0 raised by 8, saved as `mep train`
/// saves a model (32×32 inputs, ImageNet normalisation in its metadata).
fn biased_model(dir: &Path) -> PathBuf {
    let b = CpuBackend::new();
    let mut model = ResNet::init(&b, Arch::ResNet20, 16, 10, 5).unwrap();
    let bias = model.fc.bias.as_mut().expect("the classifier has a bias");
    let mut v = bias.value.to_vec(&b).unwrap();
    v[0] += 8.0;
    bias.value = Tensor::from_vec(&b, [10], v).unwrap();
    let path = dir.join("model.safetensors");
    model
        .save_with(&b, &path, &[], &transform_metadata(&eval_transform(32), &classes()))
        .unwrap();
    path
}

/// A random `pool` decoder of the paper's shape at 1/32 of its widths.
fn random_decoder(net: &FoldedResNet<CpuBackend>, cut: Cut, path: &Path) {
    let b = CpuBackend::new();
    let src = Source {
        arch: Arch::ResNet20,
        cut,
        input_size: 32,
        in_shape: mep::decoder::point_shape(&b, net, cut, 32).unwrap(),
    };
    let config = DecoderConfig::paper(&src).unwrap().scaled(1.0 / 32.0);
    Decoder::init(&b, config, 1)
        .unwrap()
        .save(&b, path, &Default::default())
        .unwrap();
}

/// The study folder (made once per test binary, never changed by the tests: those that
/// break things copy it first).
fn study() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tmpdir("study");
        let weights = biased_model(&dir);
        // Synthetic test image i has class i % 10: (0, 10) are circles, (1, 11) rings.
        let pairs = dir.join("pairs.csv");
        std::fs::write(&pairs, "0,10\n1,11\n").unwrap();
        let mut a = ConnectArgs::new("resnet20", &weights, "synthetic", dir.join("study"));
        a.pairs_file = Some(pairs);
        a.allow_misclassified = true;
        a.pivots = 4;
        a.sub_points = 4;
        a.max_steps = 3;
        a.quiet = true;
        let t = Instant::now();
        let report = connect(&a).unwrap();
        eprintln!("connect: {:.2} s\n{report}", t.elapsed().as_secs_f64());
        let b = CpuBackend::new();
        let net = FoldedResNet::load(&b, Arch::ResNet20, &weights).unwrap();
        std::fs::create_dir_all(a.out.join(DECODERS)).unwrap();
        random_decoder(&net, Cut::Pool, &a.out.join(DECODERS).join("pool.safetensors"));
        a.out
    })
}

fn results(ctx: &FigureContext<CpuBackend>) -> Vec<PairResult> {
    let r = ctx.results().unwrap();
    assert_eq!(r.len(), 6, "2 pairs × 3 spaces");
    r
}

fn find<'a>(rs: &'a [PairResult], pair: usize, space: &str) -> &'a PairResult {
    rs.iter().find(|r| r.pair == pair && r.space == space).unwrap()
}

fn png(path: &Path) -> image::RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

fn copy_study(tag: &str) -> PathBuf {
    let to = tmpdir(tag);
    let from = study();
    let copy = |a: &Path, b: &Path| {
        for e in std::fs::read_dir(a).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                std::fs::copy(e.path(), b.join(e.file_name())).unwrap();
            }
        }
    };
    copy(from, &to);
    for sub in ["paths", DECODERS] {
        std::fs::create_dir_all(to.join(sub)).unwrap();
        copy(&from.join(sub), &to.join(sub));
    }
    to
}

/// Checks what a pair figure says it drew against its pixels.
fn check_pair_figure(fig: &PairFigure, img: &image::RgbImage, target: usize, k: usize) {
    assert_eq!(img.dimensions(), (fig.width, fig.height));
    for row in &fig.rows {
        assert_eq!(row.cells.len(), k);
        for cell in &row.cells {
            assert!(cell.image.w >= 96 && cell.image.h >= 96, "{:?}", cell.image);
            assert!((cell.probs.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            assert_eq!(cell.left_class, cell.predicted != target);
            // The target's bar is red: every pixel of it.
            let b = cell.target_bar;
            assert!(b.h >= 1 && b.w >= 2, "{b:?}");
            for y in b.y..b.y + b.h {
                for x in b.x..b.x + b.w {
                    assert_eq!(img.get_pixel(x, y).0, palette::TARGET, "target bar pixel ({x}, {y})");
                }
            }
            // The bar of another class, just right of the chart's left edge when the target
            // is not class 0, is not red.
            let other = if target == 0 {
                cell.chart.x + cell.chart.w - 3
            } else {
                cell.chart.x + 3
            };
            assert_ne!(img.get_pixel(other, cell.chart.y + cell.chart.h - 1).0, palette::TARGET);
            // A cell that leaves the class has a red frame (3 px outside the image); the
            // others a grey one.
            let frame = img.get_pixel(cell.image.x - 3, cell.image.y + cell.image.h / 2).0;
            assert_eq!(frame == palette::TARGET, cell.left_class, "frame {frame:?}");
        }
    }
}

#[test]
fn pair_figures_show_both_paths_with_the_target_in_red() {
    let ctx = FigureContext::open(study()).unwrap();
    let rs = results(&ctx);
    let out = tmpdir("pair");

    // Pair 0 is linear: one row, no cell leaves the class.
    let linear = find(&rs, 0, "input");
    assert_eq!(linear.category, Category::Linear);
    let t = Instant::now();
    let fig = pair_figure(&ctx, linear, 8, &out.join("p0.png")).unwrap();
    eprintln!("pair figure (input, linear): {:.3} s", t.elapsed().as_secs_f64());
    assert_eq!(fig.rows.len(), 1);
    assert!(fig.rows[0].label.starts_with("straight line = found path"));
    assert!(fig.images);
    assert!(fig.rows[0].cells.iter().all(|c| !c.left_class));
    let img = png(&out.join("p0.png"));
    check_pair_figure(&fig, &img, 0, 8);
    // The first cell shows test image 0 itself (normalisation undone), enlarged 3×.
    let data = ctx.dataset().unwrap();
    let raw = data.test.image(0).unwrap();
    let cell = fig.rows[0].cells[0].image;
    assert_eq!((cell.w, cell.h), (96, 96));
    for (x, y) in [(0usize, 0usize), (13, 7), (31, 31)] {
        let got = img.get_pixel(cell.x + 3 * x as u32 + 1, cell.y + 3 * y as u32 + 1).0;
        for ch in 0..3 {
            let want = raw.data[raw.offset(y, x, ch)] as i32;
            assert!(
                (got[ch] as i32 - want).abs() <= 1,
                "pixel ({x}, {y}): {got:?} vs {want}"
            );
        }
    }

    // Pair 1 leaves its class: two rows, every cell marked "→ circle".
    let none = find(&rs, 1, "input");
    assert_eq!(none.category, Category::NoPath);
    let t = Instant::now();
    let fig = pair_figure(&ctx, none, 6, &out.join("p1.png")).unwrap();
    eprintln!("pair figure (input, none): {:.3} s", t.elapsed().as_secs_f64());
    assert_eq!(fig.rows.len(), 2);
    assert_eq!(fig.rows[0].label, "straight line");
    assert!(fig.rows[1].label.starts_with("found path (none"));
    assert!(fig
        .rows
        .iter()
        .flat_map(|r| &r.cells)
        .all(|c| c.left_class && c.predicted == 0));
    // The columns run from one endpoint to the other.
    for row in &fig.rows {
        assert_eq!((row.cells[0].t, row.cells[5].t), (0.0, 1.0));
    }
    check_pair_figure(&fig, &png(&out.join("p1.png")), 1, 6);

    // A latent cut with a decoder shows decoded images; one without shows placeholders.
    let fig = pair_figure(&ctx, find(&rs, 1, "pool"), 4, &out.join("pool.png")).unwrap();
    assert!(fig.images);
    check_pair_figure(&fig, &png(&out.join("pool.png")), 1, 4);
    let fig = pair_figure(&ctx, find(&rs, 1, "layer1"), 4, &out.join("layer1.png")).unwrap();
    assert!(!fig.images);
    let img = png(&out.join("layer1.png"));
    check_pair_figure(&fig, &img, 1, 4);
    let c = fig.rows[0].cells[0].image;
    assert_eq!(img.get_pixel(c.x + 2, c.y + 2).0, palette::PLACEHOLDER);

    let e = pair_figure(&ctx, linear, 1, &out.join("k1.png"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least 2"), "{e}");
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn loss_plots_recompute_the_studys_maximum_losses() {
    let ctx = FigureContext::open(study()).unwrap();
    let rs = results(&ctx);
    let out = tmpdir("loss");
    for r in &rs {
        let file = out.join(format!("{}_{}.png", r.pair, r.space));
        let t = Instant::now();
        let plot = loss_plot(&ctx, r, None, &file).unwrap();
        eprintln!(
            "loss plot ({}, {}): {:.3} s",
            r.space,
            r.category,
            t.elapsed().as_secs_f64()
        );
        assert_eq!(png(&file).dimensions(), (plot.width, plot.height));
        // The study's N = 4 pivots and S = 4: (4 − 1)·4 + 1 = 13 dense points on the line.
        assert_eq!(plot.line.t.len(), 13);
        assert_eq!(plot.line.pivots, 4);
        // The same dense line as `mep connect` checked: the same largest loss.
        let want = r.line_max_loss.unwrap();
        let got = plot.line.max_loss();
        assert!(
            (got - want).abs() <= 1e-4 * want.abs().max(1.0),
            "{}: {got} vs {want}",
            r.space
        );
        match r.category {
            Category::Linear => {
                assert!(plot.path.is_none());
                assert_eq!(plot.line.leaving(r.class), 0);
            }
            _ => {
                let p = plot.path.as_ref().expect("a found path");
                assert_eq!(p.pivots, r.pivots);
                assert_eq!(p.t.len(), (r.pivots - 1) * 4 + 1);
                let want = r.path_max_loss.unwrap();
                assert!((p.max_loss() - want).abs() <= 1e-4 * want.abs().max(1.0));
                assert!(plot.line.leaving(r.class) > 0);
            }
        }
    }
    // A finer S samples more points.
    let plot = loss_plot(&ctx, find(&rs, 1, "pool"), Some(10), &out.join("fine.png")).unwrap();
    assert_eq!(plot.line.t.len(), 31);
    // The leaving points are drawn red on the plot.
    let img = png(&out.join("fine.png"));
    assert!(img.pixels().filter(|p| p.0 == palette::TARGET).count() > 20);
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn the_distribution_and_the_reconstructions_render() {
    let ctx = FigureContext::open(study()).unwrap();
    let rs = results(&ctx);
    let out = tmpdir("dist");
    let spaces = ctx.manifest.settings.spaces.clone();
    let t = Instant::now();
    let sums = max_loss_distribution(&spaces, &rs, &out.join("dist.png")).unwrap();
    eprintln!("max loss distribution: {:.3} s", t.elapsed().as_secs_f64());
    let img = png(&out.join("dist.png"));
    assert!(img.width() >= 3 * 140 && img.height() == 500);
    assert_eq!(sums.len(), 3);
    for s in &sums {
        assert_eq!((s.n, s.missing), (2, 0));
        let [lo, q1, med, q3, hi] = s.five.unwrap();
        let v: Vec<f64> = rs
            .iter()
            .filter(|r| r.space == s.space)
            .map(|r| r.line_max_loss.unwrap())
            .collect();
        assert_eq!(lo, v[0].min(v[1]));
        assert_eq!(hi, v[0].max(v[1]));
        assert!((med - (v[0] + v[1]) / 2.0).abs() < 1e-12 && q1 <= med && med <= q3);
    }
    // Dots of both categories are drawn.
    for color in [palette::LINEAR, palette::NONE] {
        assert!(img.pixels().filter(|p| p.0 == color).count() > 20, "{color:?}");
    }
    let e = max_loss_distribution(&[], &rs, &out.join("x.png"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least one space"), "{e}");
    let e = max_loss_distribution(&["layer2".into()], &rs, &out.join("x.png"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nothing to plot"), "{e}");

    let idx = default_indices(&ctx, 4).unwrap();
    assert_eq!(idx, [0, 1, 2, 3], "the first image of each of the first four classes");
    let t = Instant::now();
    let rec = reconstructions(&ctx, &[], &idx, &out.join("rec.png")).unwrap();
    eprintln!("reconstructions: {:.3} s", t.elapsed().as_secs_f64());
    assert_eq!(png(&out.join("rec.png")).dimensions(), (rec.width, rec.height));
    assert_eq!(rec.cuts, [Cut::Pool]);
    assert_eq!(rec.mse.len(), 1);
    assert!(rec.mse[0].iter().all(|m| m.is_finite() && (0.0..=1.0).contains(m)));
    let e = reconstructions(&ctx, &[Cut::Layer(1)], &idx, &out.join("x.png"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no decoder for `layer1`") && e.contains("layer1.safetensors"),
        "{e}"
    );
    let e = reconstructions(&ctx, &[], &[999_999], &out.join("x.png"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("999999") && e.contains("out of range"), "{e}");
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn render_study_draws_every_figure() {
    let dir = copy_study("render");
    let ctx = FigureContext::open(&dir).unwrap();
    let t = Instant::now();
    let figs = render_study(&ctx, &FigureOptions::default()).unwrap();
    eprintln!(
        "render_study: {} figures in {:.2} s",
        figs.len(),
        t.elapsed().as_secs_f64()
    );
    for f in &figs {
        eprintln!("  {:?} {:?} {:?}: {:.3} s", f.kind, f.pair, f.space, f.seconds);
        assert!(f.path.is_file() && f.path.starts_with(dir.join("figures")));
        assert_eq!(dir.join(&f.relative), f.path);
        png(&f.path);
    }
    let count = |k| figs.iter().filter(|f| f.kind == k).count();
    assert_eq!(count(FigureKind::Pair), 6);
    assert_eq!(count(FigureKind::Loss), 6);
    assert_eq!(count(FigureKind::MaxLossDistribution), 1);
    assert_eq!(count(FigureKind::Reconstructions), 1);
    assert_eq!(count(FigureKind::Depth), 1);
    // Natural endpoints only: no figure per kind of endpoints.
    assert_eq!(count(FigureKind::Misclassified) + count(FigureKind::Adversarial), 0);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_studies_are_refused_by_name() {
    let dir = copy_study("bad");
    let ctx = FigureContext::open(&dir).unwrap();
    let rs = results(&ctx);
    let out = dir.join("out.png");

    // A result without a path file (an `error` result).
    let mut r = find(&rs, 1, "input").clone();
    r.path_file = None;
    r.category = Category::Error;
    r.message = Some("non-finite energy".into());
    let e = pair_figure(&ctx, &r, 8, &out).unwrap_err().to_string();
    assert!(e.contains("no path file") && e.contains("non-finite energy"), "{e}");
    let e = loss_plot(&ctx, &r, None, &out).unwrap_err().to_string();
    assert!(e.contains("no path file"), "{e}");

    // A missing path file.
    let r = find(&rs, 1, "layer1");
    let file = dir.join(r.path_file.as_ref().unwrap());
    std::fs::remove_file(&file).unwrap();
    let e = pair_figure(&ctx, r, 8, &out).unwrap_err().to_string();
    assert!(
        e.contains("missing") && e.contains("pair000001_layer1.safetensors"),
        "{e}"
    );

    // A path file whose points are not the space's shape: the input path put in layer1's place.
    std::fs::copy(dir.join(find(&rs, 1, "input").path_file.as_ref().unwrap()), &file).unwrap();
    let e = loss_plot(&ctx, r, None, &out).unwrap_err().to_string();
    assert!(
        e.contains("shape") && e.contains("16, 32, 32") && e.contains("layer1"),
        "{e}"
    );

    // A path file without the tensor.
    mep_resnet::save(
        &file,
        &[("other", &mep_tensor::Shape::new(vec![2]), &[0.0f32, 1.0])],
        None,
    )
    .unwrap();
    let e = pair_figure(&ctx, r, 8, &out).unwrap_err().to_string();
    assert!(e.contains("no tensor `pivots`"), "{e}");
    assert!(!out.exists(), "nothing written on error");

    // A decoder made for another cut.
    let b = CpuBackend::new();
    random_decoder(&ctx.net, Cut::Pool, &dir.join(DECODERS).join("layer1.safetensors"));
    let e = FigureContext::open(&dir).err().expect("refused").to_string();
    assert!(e.contains("cut") && e.contains("layer1"), "{e}");
    std::fs::remove_file(dir.join(DECODERS).join("layer1.safetensors")).unwrap();

    // Another checkpoint than the study's.
    let other = dir.join("model.safetensors");
    ResNet::init(&b, Arch::ResNet20, 16, 10, 99)
        .unwrap()
        .save(&b, &other)
        .unwrap();
    let mut m = ctx.manifest.clone();
    m.weights = other;
    m.write(&dir).unwrap();
    let e = FigureContext::open(&dir).err().expect("refused").to_string();
    assert!(e.contains("SHA-256") && e.contains("model.safetensors"), "{e}");

    // Not a study folder.
    let e = FigureContext::open(&dir.join("paths"))
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("no manifest.json"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_report_shows_the_table_and_figures_and_refuses_a_folder_without_paths() {
    let dir = copy_study("report");
    let files = mep::report::report(&dir).unwrap();
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    let html = std::fs::read_to_string(&files.html).unwrap();
    // Table 1 beside the paper's (Gu & Borovykh 2023, Table 1: input 19/6/0).
    assert!(md.contains("Table 1: ours beside the paper's"), "{md}");
    assert!(md.contains("(19)") && md.contains("(6)"), "{md}");
    // Shares with Wilson intervals, the figure by depth, medians with bootstrap intervals.
    assert!(md.contains("Wilson 95 %") && md.contains("figures/depth.png"), "{md}");
    assert!(md.contains("## Medians per space and category"), "{md}");
    // Every figure the Markdown links exists, and the HTML embeds the same ones.
    let links: Vec<&str> = md
        .split("](")
        .skip(1)
        .filter_map(|s| s.split(')').next())
        .filter(|l| l.ends_with(".png"))
        .collect();
    assert!(links.iter().any(|l| l.contains("pair")), "{md}");
    for l in &links {
        assert!(dir.join(l).is_file(), "{l} is linked but missing");
        assert!(html.contains(&format!("src=\"{l}\"")), "{l} not in the HTML");
    }

    // Results without any saved path: a clear error, and nothing overwritten.
    let results = std::fs::read_to_string(dir.join("results.jsonl")).unwrap();
    let stripped: String = results
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["path_file"] = serde_json::Value::Null;
            v.to_string() + "\n"
        })
        .collect();
    std::fs::write(dir.join("results.jsonl"), stripped).unwrap();
    let before = std::fs::read_to_string(&files.markdown).unwrap();
    let e = mep::report::report(&dir).unwrap_err().to_string();
    assert!(e.contains("has a saved path"), "{e}");
    assert_eq!(std::fs::read_to_string(&files.markdown).unwrap(), before);
    std::fs::remove_dir_all(&dir).ok();
}

/// `mep certify --estimate` counts the work of every saved path, per space, and writes
/// nothing: at `pool` the head is affine (nothing changes sign), in the input space of a
/// trained-looking network something does.
#[test]
fn certify_estimate_counts_every_saved_path_and_writes_nothing() {
    let dir = copy_study("estimate");
    let before: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let report = mep::certify::estimate(&dir, 17).unwrap();
    let ctx = FigureContext::open(&dir).unwrap();
    let saved: Vec<PairResult> = results(&ctx).into_iter().filter(|r| r.path_file.is_some()).collect();
    assert_eq!(
        report.spaces.iter().map(|s| s.paths).sum::<usize>(),
        saved.len(),
        "{report}"
    );
    for s in &report.spaces {
        assert_eq!(s.paths, saved.iter().filter(|r| r.space == s.space).count(), "{report}");
        assert!(s.largest <= s.multiply_adds, "{report}");
        if s.space == "pool" {
            assert_eq!((s.changing_sign, s.multiply_adds), (0, 0), "{report}");
        }
    }
    let input = report.spaces.iter().find(|s| s.space == "input").expect("an input row");
    assert!(input.changing_sign > 0 && input.multiply_adds > 0, "{report}");
    assert!(report.to_string().contains("changing sign"), "{report}");
    let after: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after, "--estimate writes nothing");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn certify_checks_every_saved_path_resumes_and_fills_the_tables() {
    use mep::certify::{certify, read_certificates, CertifyArgs, Exact};
    let dir = copy_study("certify");
    let args = CertifyArgs {
        max_pieces: 300,
        quiet: true,
        ..CertifyArgs::new(&dir)
    };
    let report = certify(&args).unwrap();
    let ctx = FigureContext::open(&dir).unwrap();
    let saved: Vec<PairResult> = results(&ctx).into_iter().filter(|r| r.path_file.is_some()).collect();
    assert_eq!(report.computed, saved.len());
    let certs = read_certificates(&dir).unwrap();
    assert_eq!(certs.len(), saved.len());
    for c in &certs {
        let r = saved.iter().find(|r| r.pair == c.pair && r.space == c.space).unwrap();
        assert_eq!((c.i, c.j, c.class, c.category), (r.i, r.j, r.class, r.category));
        // At `pool` the head is affine (the classifier alone): one piece per segment, and
        // a path the sampled check found all in the class is certified.
        if c.space == "pool" {
            assert_eq!(c.pieces, r.pivots - 1, "{c:?}");
            if r.category != mep::connect::Category::NoPath {
                assert_eq!(c.exact, Exact::Certified, "{c:?}");
            }
        }
        // A sampled point outside the class cannot be certified away.
        if r.category == mep::connect::Category::NoPath {
            assert_ne!(c.exact, Exact::Certified, "{c:?}");
        }
    }
    let md = std::fs::read_to_string(dir.join("table1.md")).unwrap();
    assert!(
        md.contains("Exact certification") && md.contains("| certified |"),
        "{md}"
    );
    let csv = std::fs::read_to_string(dir.join("table1.csv")).unwrap();
    assert!(csv.lines().any(|l| l.starts_with("certified,")), "{csv}");

    // A rerun resumes: nothing is certified twice.
    let again = certify(&args).unwrap();
    assert_eq!((again.computed, again.resumed), (0, saved.len()));
    assert_eq!(read_certificates(&dir).unwrap().len(), saved.len());
    // Other settings for the same folder are refused by name.
    let e = certify(&CertifyArgs {
        max_pieces: 7,
        ..args.clone()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("--max-pieces") && e.contains("certificates.jsonl"), "{e}");
    let e = certify(&CertifyArgs {
        method: mep_certify::Method::Auto,
        ..args.clone()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("--method exact") && e.contains("--method auto"), "{e}");
    std::fs::remove_dir_all(&dir).ok();

    // The bounds (with ExactLine on what they leave) give the same verdicts where ExactLine
    // decided, and record how they got there.
    let dir = copy_study("certify-auto");
    // Budgets that keep the test short: what they leave is undecided, and only decided
    // verdicts are compared.
    let auto = CertifyArgs {
        method: mep_certify::Method::Auto,
        max_intervals: 8,
        max_pieces: 300,
        quiet: true,
        ..CertifyArgs::new(&dir)
    };
    certify(&auto).unwrap();
    let by_bounds = read_certificates(&dir).unwrap();
    assert_eq!(by_bounds.len(), certs.len());
    for c in &by_bounds {
        assert_eq!(c.method, "auto");
        // Only a path refuted at a pivot is decided before any interval is bounded.
        assert!(c.intervals >= 1 || c.exact == Exact::Refuted, "{c:?}");
        let e = certs.iter().find(|e| e.pair == c.pair && e.space == c.space).unwrap();
        if e.exact != Exact::Undecided && c.exact != Exact::Undecided {
            assert_eq!(c.exact, e.exact, "{c:?} vs {e:?}");
        }
        if c.exact == Exact::Refuted {
            assert!(
                c.counterexample_u.is_some() && c.counterexample_margin.unwrap() < 0.0,
                "{c:?}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
