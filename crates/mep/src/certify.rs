//! `mep certify DIR`: exact verdicts on the paths a study saved.
//!
//! `mep connect` calls a path connected when (N−1)·S+1 sampled points are all classified
//! as the class; a sample is not the path. For the ResNets here (convolutions, folded batch
//! norm, ReLU, max-pool, average pool, linear, residual adds: all piecewise linear) the
//! question has an exact answer: `mep-certify` cuts each straight segment of a path into
//! the pieces on which the logits are affine (ExactLine, Sotoudeh & Thakur 2019) and
//! checks the class margin at every piece end. Each certificate goes, as one JSON line, into
//! `DIR/certificates.jsonl` beside the results; the tables gain a `certified` row.

use crate::connect::store::{parse_jsonl, read_jsonl, ResultsFile};
use crate::connect::{tables, Category, PairResult};
use crate::figures::FigureContext;
use crate::{MepError, Result};
use indicatif::{ProgressBar, ProgressStyle};
use mep_certify::{Certifier, CertifyOptions, PathCertificate, Verdict};
use mep_tensor::CpuBackend;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The certificates' file name in a study folder.
pub const CERTIFICATES: &str = "certificates.jsonl";

/// The exact verdict on one saved path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Exact {
    /// Every point of the path is classified as the class.
    #[serde(rename = "certified")]
    Certified,
    /// Some stretch of the path leaves the class (the intervals are recorded).
    #[serde(rename = "refuted")]
    Refuted,
    /// Neither shown: the piece budget ran out, or a margin is within tolerance of zero.
    #[serde(rename = "undecided")]
    Undecided,
}

impl fmt::Display for Exact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Exact::Certified => "certified",
            Exact::Refuted => "refuted",
            Exact::Undecided => "undecided",
        })
    }
}

/// A line of `certificates.jsonl`: the certificate of one (pair, space)'s saved path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CertificateRecord {
    pub pair: usize,
    pub space: String,
    pub i: usize,
    pub j: usize,
    pub class: usize,
    /// What the sampled check said (`linear`, `nonlinear`, `none`).
    pub category: Category,
    pub exact: Exact,
    /// Pieces on which the logits are affine, over all segments of the path.
    pub pieces: usize,
    /// The smallest margin `logit_class − max_other` along the part of the path that was
    /// partitioned, and where, as the path's parameter u ∈ [0, 1] (segment k, position t:
    /// u = (k + t)/(P − 1)); none when the piece budget ran out before the first piece.
    pub min_margin: Option<f64>,
    pub min_margin_u: Option<f64>,
    /// For a refuted path: the intervals of u on which the class is left.
    pub refuted: Vec<(f64, f64)>,
    /// For an undecided path: why.
    pub reason: Option<String>,
    /// The settings the certificate was made with.
    pub max_pieces: usize,
    pub tol: f64,
    pub seconds: f64,
}

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
            return Err(MepError::Usage(
                "--max-pieces 0: a segment needs at least 1 piece to be certified".into(),
            ));
        }
        // A margin within tol · max |logit| of zero is undecided: from 1 up, every one is.
        if !(0.0..1.0).contains(&self.tol) {
            return Err(MepError::Usage(format!(
                "--tol {:e}: must be in [0, 1) (a relative tolerance such as 1e-9)",
                self.tol
            )));
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

/// The certificates in `dir` (none if there is no file yet).
pub fn read_certificates(dir: &Path) -> Result<Vec<CertificateRecord>> {
    Ok(read_jsonl(&dir.join(CERTIFICATES), false)?.0)
}

/// Drops the certificates of the (pair, space) results in `gone` from `dir` (their paths
/// are being computed again); returns how many were dropped.
pub(crate) fn forget(dir: &Path, gone: &BTreeSet<(usize, String)>) -> Result<usize> {
    let path = dir.join(CERTIFICATES);
    let (certs, _) = read_jsonl::<CertificateRecord>(&path, true)?;
    let keep: Vec<&CertificateRecord> = certs
        .iter()
        .filter(|c| !gone.contains(&(c.pair, c.space.clone())))
        .collect();
    let dropped = certs.len() - keep.len();
    if dropped > 0 {
        ResultsFile::rewrite(&path, &keep)?;
    }
    Ok(dropped)
}

/// The certificates in the bytes of a `certificates.jsonl`; `path` names it in errors.
pub fn parse_certificates(bytes: &[u8], path: &Path) -> Result<Vec<CertificateRecord>> {
    Ok(parse_jsonl(bytes, path, false)?.0)
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
    ctx: FigureContext<CpuBackend>,
    certifier: Certifier,
    file: ResultsFile,
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
        let ctx = FigureContext::open(&args.dir)?;
        let certifier = Certifier::new(&ctx.backend, &ctx.net)?;
        let (file, done) = ResultsFile::open_path::<CertificateRecord>(&args.dir.join(CERTIFICATES))?;
        if let Some(c) = done
            .iter()
            .find(|c| c.max_pieces != opts.max_pieces || c.tol != opts.tol)
        {
            return Err(MepError::Usage(format!(
                "{}: pair {} in {} was certified with --max-pieces {} --tol {}, not {} and {}; use the same \
                 settings, or remove the file to certify afresh",
                args.dir.join(CERTIFICATES).display(),
                c.pair,
                c.space,
                c.max_pieces,
                c.tol,
                opts.max_pieces,
                opts.tol
            )));
        }
        Ok(Certification {
            resumed: done.len(),
            done: done.iter().map(|c| (c.pair, c.space.clone())).collect(),
            ctx,
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
        let path = self.ctx.read_path(r)?;
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
    study_folder(&args.dir, "mep certify")?;
    let _lock = crate::lock::FolderLock::acquire(&args.dir, "mep certify")?;
    let mut run = Certification::open(args)?;
    let results = run.ctx.results()?;
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
    let m = &run.ctx.manifest;
    tables::write_tables(&args.dir, &m.settings.spaces, &results, m.pair_list.len())?;
    Ok(CertifyReport {
        dir: args.dir.clone(),
        computed,
        resumed: run.resumed,
        counts: count(&m.settings.spaces, &certs),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Refuses, for `command`, a folder that is not a study folder of `mep connect`.
pub(crate) fn study_folder(dir: &Path, command: &str) -> Result<()> {
    if !dir.is_dir() {
        return Err(MepError::Usage(format!(
            "{}: no such folder; `{command}` needs the folder of a study (`mep connect --out`)",
            dir.display()
        )));
    }
    if !dir.join(crate::connect::MANIFEST).is_file() {
        return Err(MepError::Usage(format!(
            "{}: not a study folder (no {}); `{command}` needs the folder that `mep connect --out` wrote",
            dir.display(),
            crate::connect::MANIFEST
        )));
    }
    Ok(())
}

/// Per space: (certified, refuted, undecided).
pub fn count(spaces: &[String], certs: &[CertificateRecord]) -> Vec<(String, usize, usize, usize)> {
    spaces
        .iter()
        .map(|s| {
            let n = |e: Exact| certs.iter().filter(|c| &c.space == s && c.exact == e).count();
            (s.clone(), n(Exact::Certified), n(Exact::Refuted), n(Exact::Undecided))
        })
        .collect()
}
