//! `mep certify DIR`: proofs about the paths a study saved.
//!
//! `mep connect` calls a path connected when (N−1)·S+1 sampled points are all classified
//! as the class; a sample is not the path. For the ResNets here (convolutions, folded batch
//! norm, ReLU, max-pool, average pool, linear, residual adds: all piecewise linear) the
//! question has an exact answer. `--method exact` (the default) cuts each straight segment
//! of a path into the pieces on which the logits are affine (ExactLine, Sotoudeh & Thakur
//! 2019) and checks the margin at every piece end; `--method bounds` bounds the class margin
//! on whole intervals of each segment (a zonotope in the path parameter, then CROWN) and
//! splits where the bound is not enough; `auto` runs the bounds and hands the few short
//! intervals they leave to ExactLine. Each certificate goes, as one JSON line, into `DIR/certificates.jsonl` beside
//! the results; the tables gain a `certified` row.

use crate::device::Device;
use crate::study::{self, JsonlFile, PairResult, Study};
use crate::{MepError, Result};
use indicatif::{ProgressBar, ProgressStyle};
use mep_certify::{Certifier, CertifyOptions, Method, PathCertificate, PathInput, Verdict};
use mep_tensor::CpuBackend;
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

// The certificates' records and files belong to the study folder; re-exported where users
// of `mep certify` have found them.
pub use crate::study::{
    count_certificates as count, parse_certificates, read_certificates, CertificateRecord, Exact, CERTIFICATES,
};

/// What `mep certify` reads.
#[derive(Clone, Debug)]
pub struct CertifyArgs {
    /// The study folder of `mep connect`.
    pub dir: PathBuf,
    /// The most pieces per segment before the segment is undecided.
    pub max_pieces: usize,
    /// Relative tolerance of the margin (see `mep_certify::CertifyOptions`).
    pub tol: f64,
    /// Bounds with bisection, ExactLine, or both (`auto`).
    pub method: Method,
    /// The most intervals the bounds examine per path.
    pub max_intervals: usize,
    /// Intervals of the segment parameter narrower than this are not bisected further.
    pub min_width: f64,
    pub quiet: bool,
    /// Where the bounds' zonotopes run (`--device`): on the CPU, or on GPU 0 through the
    /// kernel backend (the certificates are the same; ExactLine and CROWN stay on the CPU).
    pub device: Device,
}

impl CertifyArgs {
    /// The defaults of `mep certify DIR`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let d = CertifyOptions::default();
        CertifyArgs {
            dir: dir.into(),
            max_pieces: 100_000,
            tol: d.tol,
            method: d.method,
            max_intervals: d.max_intervals,
            min_width: d.min_width,
            quiet: false,
            device: Device::Cpu,
        }
    }

    /// Refuses settings that cannot certify anything, in the command's option names,
    /// before any work.
    pub fn validate(&self) -> Result<()> {
        if self.max_pieces == 0 {
            return Err(MepError::option(
                "--max-pieces",
                0,
                "a segment needs at least 1 piece to be certified",
            ));
        }
        // A margin within tol · max |logit| of zero is undecided: from 1 up, every one is.
        if !(0.0..1.0).contains(&self.tol) {
            return Err(MepError::option(
                "--tol",
                format!("{:e}", self.tol),
                "must be in [0, 1) (a relative tolerance such as 1e-9)",
            ));
        }
        if self.max_intervals == 0 {
            return Err(MepError::option(
                "--max-intervals",
                0,
                "the bounds need at least 1 interval per path",
            ));
        }
        if !(self.min_width > 0.0 && self.min_width <= 1.0) {
            return Err(MepError::option(
                "--min-width",
                format!("{:e}", self.min_width),
                "must be in (0, 1] (a width of the segment parameter t, such as 2.44e-4)",
            ));
        }
        Ok(())
    }

    fn options(&self) -> CertifyOptions {
        CertifyOptions {
            max_pieces: self.max_pieces,
            tol: self.tol,
            method: self.method,
            max_intervals: self.max_intervals,
            min_width: self.min_width,
            ..CertifyOptions::default()
        }
    }

    /// The settings a certificate records, for comparing with those of an earlier run.
    fn settings(&self) -> (String, usize, f64, usize, f64) {
        let o = self.options();
        let (mi, mw) = if o.method == Method::Exact {
            (0, 0.0)
        } else {
            (o.max_intervals, o.min_width)
        };
        (o.method.name().into(), o.max_pieces, o.tol, mi, mw)
    }
}

/// What a run of `mep certify` did.
#[derive(Clone, Debug, Serialize)]
pub struct CertifyReport {
    pub dir: PathBuf,
    /// Certificates made by this run, and found from an earlier one.
    pub computed: usize,
    pub resumed: usize,
    /// Per space: (certified, refuted, undecided), over every certificate in the folder.
    pub counts: Vec<(String, usize, usize, usize)>,
    pub seconds: f64,
}

impl fmt::Display for CertifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} saved paths certified in {:.1} s ({} from an earlier run)",
            self.computed, self.seconds, self.resumed
        )?;
        writeln!(
            f,
            "{:<10} {:>9} {:>9} {:>9}",
            "space", "certified", "refuted", "undecided"
        )?;
        for (s, c, r, u) in &self.counts {
            writeln!(f, "{s:<10} {c:>9} {r:>9} {u:>9}")?;
        }
        writeln!(f, "wrote {}", self.dir.join(CERTIFICATES).display())
    }
}

/// Whether `mep certify` proves anything of `r`: it has a saved path, and is not a
/// [`Endpoints::MisclassifiedTrue`](crate::study::Endpoints) pair, whose first endpoint is
/// outside the class by definition (the search exempts it): a certificate proves whole
/// segments, t = 0 included, so it could only refute them there.
fn certifiable(r: &PairResult) -> bool {
    r.path_file.is_some() && r.endpoints != study::Endpoints::MisclassifiedTrue
}

/// Multiply-adds per second per thread that `mep certify --estimate` turns its counts into
/// time with: what the bounds' symbol kernel does on one core of BENCHMARKS.md's host
/// ("The symbol budget swept"). Another machine's rate differs; the counts do not.
pub const RATE_PER_THREAD: f64 = 27e9;

/// What `mep certify DIR --estimate` counts: per space, the work its paths' certificates
/// need ([`mep_certify::Certifier::work`]).
#[derive(Clone, Debug)]
pub struct WorkReport {
    pub samples: usize,
    pub threads: usize,
    pub spaces: Vec<SpaceWork>,
}

/// One space's row of a [`WorkReport`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpaceWork {
    pub space: String,
    pub paths: usize,
    pub changing_sign: u64,
    pub multiply_adds: u128,
    /// The multiply-adds of the space's costliest path.
    pub largest: u128,
}

/// Counts, without certifying or writing anything, the work the certificates of every
/// path saved in `dir` need, at `samples` points per segment: the neurons that change sign
/// and the multiply-adds that carry their symbols through the rest of the network (each
/// costs `--method bounds` a symbol and `exact` about a piece).
pub fn estimate(dir: &Path, samples: usize) -> Result<WorkReport> {
    study::check_folder(dir, "mep certify")?;
    let study = Study::open(dir)?;
    let certifier = Certifier::new(&study.backend, &study.net)?;
    let results = study.results()?;
    let mut spaces: Vec<SpaceWork> = study
        .manifest
        .settings
        .spaces
        .iter()
        .map(|s| SpaceWork {
            space: s.clone(),
            ..SpaceWork::default()
        })
        .collect();
    for r in results.iter().filter(|r| certifiable(r)) {
        let Some(row) = spaces.iter_mut().find(|s| s.space == r.space) else {
            continue;
        };
        let p = study.read_path(r)?;
        let w = certifier.work(p.cut, &p.point_shape, &p.data, p.pivots, samples)?;
        row.paths += 1;
        row.changing_sign += w.changing_sign;
        row.multiply_adds += w.multiply_adds;
        row.largest = row.largest.max(w.multiply_adds);
    }
    spaces.retain(|s| s.paths > 0);
    Ok(WorkReport {
        samples,
        threads: rayon::current_num_threads(),
        spaces,
    })
}

fn duration(seconds: f64) -> String {
    match seconds {
        s if s < 120.0 => format!("{s:.0} s"),
        s if s < 7200.0 => format!("{:.0} min", s / 60.0),
        s => format!("{:.1} h", s / 3600.0),
    }
}

impl fmt::Display for WorkReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = RATE_PER_THREAD * self.threads as f64;
        writeln!(
            f,
            "work the certificates need ({} points per segment; time at {:.1e} multiply-adds/s \
             on {} threads, BENCHMARKS.md's host)",
            self.samples, rate, self.threads
        )?;
        writeln!(
            f,
            "{:<10} {:>6} {:>14} {:>14} {:>14} {:>10}",
            "space", "paths", "changing sign", "multiply-adds", "largest path", "time"
        )?;
        for s in &self.spaces {
            writeln!(
                f,
                "{:<10} {:>6} {:>14} {:>14.3e} {:>14.3e} {:>10}",
                s.space,
                s.paths,
                s.changing_sign,
                s.multiply_adds as f64,
                s.largest as f64,
                duration(s.multiply_adds as f64 / rate)
            )?;
        }
        if self.spaces.is_empty() {
            writeln!(f, "(no saved paths)")?;
        }
        Ok(())
    }
}

/// The record of `cert` for `result`.
pub fn record(result: &PairResult, cert: &PathCertificate, opts: &CertifyOptions) -> CertificateRecord {
    let (exact, refuted, reason) = match &cert.verdict {
        Verdict::Certified => (Exact::Certified, Vec::new(), None),
        Verdict::Refuted { intervals } => (Exact::Refuted, intervals.clone(), None),
        Verdict::Undecided { reason } => (Exact::Undecided, Vec::new(), Some(reason.clone())),
    };
    let bounds = opts.method != Method::Exact;
    CertificateRecord {
        pair: result.pair,
        space: result.space.clone(),
        i: result.i,
        j: result.j,
        class: result.class,
        category: result.category,
        exact,
        pieces: cert.pieces,
        min_margin: Some(cert.min_margin).filter(|m| m.is_finite()),
        min_margin_u: Some(cert.min_margin_u).filter(|u| u.is_finite()),
        refuted,
        reason,
        max_pieces: opts.max_pieces,
        tol: opts.tol,
        seconds: cert.seconds,
        method: opts.method.name().into(),
        intervals: cert.intervals,
        counterexample_u: cert.counterexample.map(|c| c.0),
        counterexample_margin: cert.counterexample.map(|c| c.1),
        margin_bound: cert
            .segments
            .iter()
            .map(|s| s.margin_bound)
            .try_fold(f64::INFINITY, |m, b| b.map(|b| m.min(b)))
            .filter(|m| m.is_finite()),
        max_intervals: if bounds { opts.max_intervals } else { 0 },
        min_width: if bounds { opts.min_width } else { 0.0 },
    }
}

/// Paths certified together: the bounds send their intervals through the network in one
/// batch (more would hold more activations in memory at once).
const PATHS_AT_ONCE: usize = 8;

/// `certifier` with its zonotopes on the GPU when `args.device` asks for it and the method
/// uses the bounds. `cuda` without a usable GPU is an error naming why; `auto` then stays on
/// the CPU, saying so.
fn on_device(certifier: Certifier, args: &CertifyArgs) -> Result<Certifier> {
    if args.device == Device::Cpu || args.method == Method::Exact {
        return Ok(certifier);
    }
    match mep_cuda::CudaLauncher::new(0) {
        Ok(l) => Ok(certifier.on_device(mep_cuda::CertifyOn(l))?),
        Err(e) if args.device == Device::Auto => {
            eprintln!("--device auto: the bounds compute on the CPU ({e})");
            Ok(certifier)
        }
        Err(e) => Err(MepError::option("--device", "cuda", e.to_string())),
    }
}

/// A study folder open for certification: its network converted to f64 once, its
/// certificates file open for appending, and which (pair, space) are done. `mep certify`
/// uses one for the whole folder, `mep connect --certify` one for the whole study.
pub struct Certification {
    study: Study<CpuBackend>,
    certifier: Certifier,
    file: JsonlFile,
    opts: CertifyOptions,
    done: BTreeSet<(usize, String)>,
    /// Certificates found from an earlier run when the folder was opened.
    pub resumed: usize,
}

impl Certification {
    /// Opens the study in `args.dir`. A certificate there made with other settings is an
    /// error (remove the file to certify afresh).
    pub fn open(args: &CertifyArgs) -> Result<Self> {
        let opts = args.options();
        let study = Study::open(&args.dir)?;
        let certifier = on_device(Certifier::new(&study.backend, &study.net)?, args)?;
        let (file, done) = study::open_certificates(&args.dir)?;
        let settings = args.settings();
        let of = |c: &CertificateRecord| (c.method.clone(), c.max_pieces, c.tol, c.max_intervals, c.min_width);
        if let Some(c) = done.iter().find(|c| of(c) != settings) {
            let show = |s: &(String, usize, f64, usize, f64)| {
                format!(
                    "--method {} --max-pieces {} --tol {} --max-intervals {} --min-width {}",
                    s.0, s.1, s.2, s.3, s.4
                )
            };
            return Err(MepError::Conflict {
                path: args.dir.join(CERTIFICATES),
                reason: format!(
                    "pair {} in {} was certified with {}, not {}; use the same settings, or remove the \
                 file to certify afresh",
                    c.pair,
                    c.space,
                    show(&of(c)),
                    show(&settings)
                ),
            });
        }
        Ok(Certification {
            resumed: done.len(),
            done: done.iter().map(|c| (c.pair, c.space.clone())).collect(),
            study,
            certifier,
            file,
            opts,
        })
    }

    /// The results among `results` that [`certifiable`] and have no certificate yet.
    pub fn pending<'r>(&self, results: &'r [PairResult]) -> Vec<&'r PairResult> {
        results
            .iter()
            .filter(|r| certifiable(r) && !self.done.contains(&(r.pair, r.space.clone())))
            .collect()
    }

    /// Certifies every result of [`Certification::pending`] in order; returns how many.
    pub fn certify_pending(&mut self, results: &[PairResult]) -> Result<usize> {
        let pending = self.pending(results);
        for chunk in batches(&pending) {
            self.certify_many(&chunk)?;
        }
        Ok(pending.len())
    }

    /// Certifies the saved path of `r` and appends the certificate (synced) to the file.
    pub fn certify(&mut self, r: &PairResult) -> Result<CertificateRecord> {
        Ok(self.certify_many(&[r])?.pop().expect("one certificate per result"))
    }

    /// Certifies the saved paths of `rs` (all in one space) together and appends each
    /// certificate (synced) to the file, in order.
    pub fn certify_many(&mut self, rs: &[&PairResult]) -> Result<Vec<CertificateRecord>> {
        let paths = rs.iter().map(|r| self.study.read_path(r)).collect::<Result<Vec<_>>>()?;
        let Some(first) = paths.first() else {
            return Ok(Vec::new());
        };
        if let Some((r, p)) = rs
            .iter()
            .zip(&paths)
            .find(|(_, p)| p.cut != first.cut || p.point_shape != first.point_shape)
        {
            return Err(MepError::unusable(
                format!("the saved path of pair {} in {}", r.pair, r.space),
                format!(
                    "its points are {:?} at `{}`, but other paths of that space are {:?} at `{}`",
                    p.point_shape, p.cut, first.point_shape, first.cut
                ),
            ));
        }
        let inputs: Vec<PathInput<'_, f32>> = rs
            .iter()
            .zip(&paths)
            .map(|(r, p)| PathInput {
                pivots: &p.data,
                rows: p.pivots,
                target: r.class,
            })
            .collect();
        let certs = self
            .certifier
            .paths(first.cut, &first.point_shape, &inputs, &self.opts)?;
        let mut out = Vec::with_capacity(rs.len());
        for (r, cert) in rs.iter().zip(&certs) {
            let rec = record(r, cert, &self.opts);
            self.file.append(&rec)?;
            self.done.insert((r.pair, r.space.clone()));
            out.push(rec);
        }
        Ok(out)
    }
}

/// `pending` in runs of at most [`PATHS_AT_ONCE`] results of one space: spaces in the order
/// they first appear, results in order within each. results.jsonl interleaves the spaces (a
/// pair's spaces follow one another), so runs of consecutive results would hold one path each.
fn batches<'r>(pending: &[&'r PairResult]) -> Vec<Vec<&'r PairResult>> {
    let mut spaces: Vec<&str> = Vec::new();
    for r in pending {
        if !spaces.contains(&r.space.as_str()) {
            spaces.push(&r.space);
        }
    }
    spaces
        .iter()
        .flat_map(|s| {
            let mine: Vec<&'r PairResult> = pending.iter().copied().filter(|r| r.space == *s).collect();
            mine.chunks(PATHS_AT_ONCE).map(<[_]>::to_vec).collect::<Vec<_>>()
        })
        .collect()
}

/// Certifies every saved path of the study in `args.dir` that has no certificate yet
/// (made with the same settings), appending each to `certificates.jsonl` as it is found,
/// then rewrites the tables with the certified counts. Rerunning resumes; a certificate
/// made with other settings is an error (remove the file to start over).
pub fn certify(args: &CertifyArgs) -> Result<CertifyReport> {
    let started = Instant::now();
    args.validate()?;
    study::check_folder(&args.dir, "mep certify")?;
    let _lock = crate::lock::FolderLock::acquire(&args.dir, "mep certify")?;
    let mut run = Certification::open(args)?;
    let results = run.study.results()?;
    let todo = run.pending(&results);
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(todo.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("certify [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut computed = 0;
    for chunk in batches(&todo) {
        bar.set_message(format!(
            "pairs {}..{} in {}",
            chunk[0].pair,
            chunk[chunk.len() - 1].pair,
            chunk[0].space
        ));
        run.certify_many(&chunk)?;
        computed += chunk.len();
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let certs = read_certificates(&args.dir)?;
    let m = &run.study.manifest;
    study::write_tables(&args.dir, &m.settings.spaces, &results, m.pair_list.len())?;
    Ok(CertifyReport {
        dir: args.dir.clone(),
        computed,
        resumed: run.resumed,
        counts: count(&m.settings.spaces, &certs),
        seconds: started.elapsed().as_secs_f64(),
    })
}
