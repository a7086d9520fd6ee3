//! `mep certify DIR`: exact verdicts on the paths a study saved.
//!
//! `mep connect` calls a path connected when (N−1)·S+1 sampled points are all classified
//! as the class; a sample is not the path. For the ResNets here (convolutions, folded batch
//! norm, ReLU, max-pool, average pool, linear, residual adds: all piecewise linear) the
//! question has an exact answer: `mep-certify` cuts each straight segment of a path into
//! the pieces on which the logits are affine (ExactLine, Sotoudeh & Thakur 2019) and
//! checks the class margin at every piece end. Each certificate goes, as one JSON line, into
//! `DIR/certificates.jsonl` beside the results; the tables gain a `certified` row.

use crate::study::{self, JsonlFile, PairResult, Study};
use crate::{MepError, Result};
use indicatif::{ProgressBar, ProgressStyle};
use mep_certify::{Certifier, CertifyOptions, PathCertificate, Verdict};
use mep_tensor::CpuBackend;
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
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
    pub quiet: bool,
}

impl CertifyArgs {
    /// The defaults of `mep certify DIR`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let d = CertifyOptions::default();
        CertifyArgs {
            dir: dir.into(),
            max_pieces: 100_000,
            tol: d.tol,
            quiet: false,
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
        Ok(())
    }

    fn options(&self) -> CertifyOptions {
        CertifyOptions {
            max_pieces: self.max_pieces,
            tol: self.tol,
            ..CertifyOptions::default()
        }
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
            "{} saved paths checked exactly in {:.1} s ({} from an earlier run)",
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

/// The record of `cert` for `result`.
pub fn record(result: &PairResult, cert: &PathCertificate, opts: &CertifyOptions) -> CertificateRecord {
    let (exact, refuted, reason) = match &cert.verdict {
        Verdict::Certified => (Exact::Certified, Vec::new(), None),
        Verdict::Refuted { intervals } => (Exact::Refuted, intervals.clone(), None),
        Verdict::Undecided { reason } => (Exact::Undecided, Vec::new(), Some(reason.clone())),
    };
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
        let certifier = Certifier::new(&study.backend, &study.net)?;
        let (file, done) = study::open_certificates(&args.dir)?;
        if let Some(c) = done
            .iter()
            .find(|c| c.max_pieces != opts.max_pieces || c.tol != opts.tol)
        {
            return Err(MepError::Conflict {
                path: args.dir.join(CERTIFICATES),
                reason: format!(
                    "pair {} in {} was certified with --max-pieces {} --tol {}, not {} and {}; use the same \
                 settings, or remove the file to certify afresh",
                    c.pair, c.space, c.max_pieces, c.tol, opts.max_pieces, opts.tol
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

    /// The results among `results` that have a saved path and no certificate yet.
    pub fn pending<'r>(&self, results: &'r [PairResult]) -> Vec<&'r PairResult> {
        results
            .iter()
            .filter(|r| r.path_file.is_some() && !self.done.contains(&(r.pair, r.space.clone())))
            .collect()
    }

    /// Certifies every result of [`Certification::pending`] in order; returns how many.
    pub fn certify_pending(&mut self, results: &[PairResult]) -> Result<usize> {
        let pending = self.pending(results);
        for r in &pending {
            self.certify(r)?;
        }
        Ok(pending.len())
    }

    /// Certifies the saved path of `r` and appends the certificate (synced) to the file.
    pub fn certify(&mut self, r: &PairResult) -> Result<CertificateRecord> {
        let path = self.study.read_path(r)?;
        let mut shape = vec![path.pivots];
        shape.extend_from_slice(&path.point_shape);
        let cert = self.certifier.path(path.cut, &shape, &path.data, r.class, &self.opts)?;
        let rec = record(r, &cert, &self.opts);
        self.file.append(&rec)?;
        self.done.insert((r.pair, r.space.clone()));
        Ok(rec)
    }
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
    for r in todo {
        bar.set_message(format!("pair {} in {}", r.pair, r.space));
        run.certify(r)?;
        computed += 1;
        bar.inc(1);
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
