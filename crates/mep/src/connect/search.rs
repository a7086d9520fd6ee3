//! One pair in one space: the straight line first, the NEB where the line leaves the
//! class, the path saved, the figures recorded.
//!
//! Which dense points must be in the class: every one, except for a pair whose endpoint
//! `i` is a misclassified image checked in its true class ([`Endpoints::MisclassifiedTrue`]).
//! That endpoint is, by definition, outside the class, so no path could keep every point
//! in it; its one dense point (t = 0) is exempt, from the check of the line, from the
//! check that stops the NEB and from the check of the final path, and from the loss and
//! probability figures recorded (it would only repeat its own loss there). `linear` then
//! means that the line from the misclassified image is in the class from the first dense
//! point after it (t = 1/((N−1)·S)) to the end: it enters the class at once, as far as the
//! samples see (the prediction, continuous in t, changes somewhere before that point, so
//! a proof over the whole segment, t = 0 included, cannot hold). Both endpoints of the
//! other kinds are in the class, so every point is checked.

use super::energy::{HeadAux, HeadEnergy};
use super::{ConnectArgs, SearchOptimizer};
use crate::study::{path_file_name, Category, Endpoints, Pair, PairResult};
use crate::{MepError, Result};
use mep_data::Rng;
use mep_neb::{
    Dense, FireParams, Insertion, Neb, NebConfig, NebError, Path as NebPath, PathOptimizerConfig, Spring, Stepping,
};
use mep_resnet::{Arch, Cut, FoldedResNet};
use mep_tensor::{Backend, Shape, Tensor};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// What the search of one (pair, space) needs besides the pair.
pub(crate) struct Search<'a, B: Backend> {
    pub b: &'a B,
    pub net: &'a FoldedResNet<B>,
    pub arch: Arch,
    pub args: &'a ConnectArgs,
    /// The study folder (path files go to its `paths/`).
    pub out: &'a Path,
}

/// The NEB settings of a pair whose endpoints are `distance` apart in R^dim: the
/// learning rate is `step · ‖z2 − z1‖ / √D`, so every coordinate of a pivot moves about
/// `step` of the endpoint distance over all coordinates (FIRE: its largest step over the
/// path is `step · ‖z2 − z1‖ · √(interior pivots)`).
pub(crate) fn neb_config(args: &ConnectArgs, distance: f64, dim: usize, seed: u64) -> NebConfig {
    let lr = args.step * distance / (dim as f64).sqrt();
    let optimizer = match args.optimizer {
        SearchOptimizer::Adam => PathOptimizerConfig::adam(lr),
        SearchOptimizer::Sgd => PathOptimizerConfig::Sgd {
            lr,
            momentum: args.momentum,
        },
        SearchOptimizer::Fire => PathOptimizerConfig::Fire(FireParams {
            maxstep: args.step * distance * ((args.pivots.max(3) - 2) as f64).sqrt(),
            ..FireParams::default()
        }),
    };
    NebConfig {
        spring: args.spring.map_or(Spring::Redistribute, Spring::Constant),
        optimizer,
        climbing_after: args.climbing_after,
        max_steps: args.max_steps,
        fmax: args.fmax,
        sub_points: args.sub_points,
        check_every: args.check_every,
        insertion: args.insert_threshold.map(|threshold| Insertion {
            threshold,
            max_pivots: args.most_pivots(),
            every: args.check_every,
        }),
        seed,
        stepping: if args.cuda_graph {
            Stepping::Graph
        } else {
            Stepping::Device
        },
    }
}

/// Says once per process why `--cuda-graph` steps ran unrecorded (the paths are the same;
/// only the speed differs, so it is a note, not an error).
fn graph_note_once(note: &str) {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        eprintln!("mep connect: --cuda-graph: {note}");
    }
}

/// How many leading dense points of a path of `pair` are exempt from the class: 1 (the
/// point t = 0, endpoint `i`) for [`Endpoints::MisclassifiedTrue`], whose `i` the model
/// puts outside the class by definition; 0 for every other kind.
pub(crate) fn exempt_points(pair: &Pair) -> usize {
    usize::from(pair.endpoints == Endpoints::MisclassifiedTrue)
}

/// Whether the network puts every dense point but the first `exempt` in class `target`
/// (finite logits, argmax `target`).
fn all_target(d: &Dense<HeadAux>, target: usize, exempt: usize) -> bool {
    d.aux.iter().skip(exempt).all(|a| a.in_class(target))
}

/// The largest loss and the smallest target probability along a dense path, the first
/// `exempt` points left out; the index of the first non-finite energy (any point), if any.
fn profile(d: &Dense<HeadAux>, exempt: usize) -> (f64, f64, Option<usize>) {
    let bad = d.energies.iter().position(|e| !e.is_finite());
    let max = d
        .energies
        .iter()
        .skip(exempt)
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    let min_p = d
        .aux
        .iter()
        .skip(exempt)
        .map(|a| a.target_prob)
        .fold(f64::INFINITY, f64::min);
    (max, min_p, bad)
}

impl<B: Backend> Search<'_, B> {
    /// Studies `pair` in the space of `cut`; `x` holds its two normalised images
    /// `[2, 3, H, W]`. `on_step(step, max_loss)` follows the NEB. A NaN or infinite energy
    /// makes the result an `error` with the message; any other failure is returned.
    pub fn run(&self, pair: &Pair, cut: Cut, x: &Tensor<B>, on_step: &mut dyn FnMut(usize, f64)) -> Result<PairResult> {
        self.run_to(pair, cut, x, &path_file_name(pair.pair, &cut.to_string()), on_step)
    }

    /// As [`Search::run`], saving the path as `file` (relative to the folder): for `mep
    /// graph`, whose edges are named by their images.
    pub fn run_to(
        &self,
        pair: &Pair,
        cut: Cut,
        x: &Tensor<B>,
        file: &str,
        on_step: &mut dyn FnMut(usize, f64),
    ) -> Result<PairResult> {
        let started = Instant::now();
        let b = self.b;
        let space = cut.to_string();
        let z = self.net.encode(b, x, cut)?;
        let point_shape = z.shape.dims()[1..].to_vec();
        let dim: usize = point_shape.iter().product();
        let zh = z.to_vec(b)?;
        let (z1, z2) = zh.split_at(dim);
        let distance = z1
            .iter()
            .zip(z2)
            .map(|(a, c)| (*a as f64 - *c as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        let mut energy = HeadEnergy::new(self.net, cut, pair.class, &point_shape)?
            .with_max_batch(self.args.batch)
            .with_search_precision(self.args.precision);
        // Every (pair, space) has its own stream, so shards and resumption never change it.
        let seed = Rng::from_parts(&[self.args.seed, pair.pair as u64, self.arch.position(cut)? as u64]).next_u64();
        let mut config = neb_config(self.args, distance, dim, seed);
        if distance == 0.0 {
            // Identical endpoints: the line is one point and there is nothing to relax.
            config.max_steps = 0;
            config.optimizer = PathOptimizerConfig::adam(1.0);
        }
        let line = NebPath::straight(b, &b.upload(z1)?, &b.upload(z2)?, dim, self.args.pivots)?;
        let mut neb = Neb::new(b, config, line)?;

        let mut result = PairResult {
            pair: pair.pair,
            i: pair.i,
            j: pair.j,
            class: pair.class,
            class_name: pair.class_name.clone(),
            endpoints: pair.endpoints,
            true_class: pair.true_class,
            predicted: pair.predicted,
            space: space.clone(),
            category: Category::Error,
            distance: Some(distance),
            line_max_loss: None,
            line_min_prob: None,
            path_max_loss: None,
            path_min_prob: None,
            steps: 0,
            pivots: 0,
            length_ratio: None,
            seconds: 0.0,
            path_file: None,
            message: None,
            precision: self.args.precision,
        };
        // The predicate sees the straight line first (before any step): its profile is the
        // line's. A non-finite energy stops the search.
        let mut line_profile: Option<(f64, f64)> = None;
        let mut non_finite: Option<String> = None;
        let mut dense_checks = 0usize;
        let target = pair.class;
        let exempt = exempt_points(pair);
        let outcome = neb.run(
            b,
            &mut energy,
            |d: &Dense<HeadAux>| {
                let (max, min_p, bad) = profile(d, exempt);
                if line_profile.is_none() {
                    line_profile = Some((max, min_p));
                }
                if let Some(k) = bad {
                    non_finite = Some(format!(
                        "non-finite energy {} at dense point {k} (t = {:.4}) after {dense_checks} checks",
                        d.energies[k],
                        d.t.get(k).copied().unwrap_or(f64::NAN)
                    ));
                    return true;
                }
                dense_checks += 1;
                all_target(d, target, exempt)
            },
            |s| on_step(s.step, s.energies.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
        );
        if let Some(note) = neb.graph_note() {
            graph_note_once(note);
        }
        let finish = |mut r: PairResult| {
            r.seconds = started.elapsed().as_secs_f64();
            Ok(r)
        };
        let outcome = match outcome {
            Ok(o) => o,
            Err(e @ NebError::NonFinite { .. }) => {
                result.line_max_loss = line_profile.map(|p| p.0);
                result.line_min_prob = line_profile.map(|p| p.1);
                result.steps = neb.steps();
                result.pivots = neb.path().pivots();
                result.message = Some(e.to_string());
                return finish(result);
            }
            Err(e) => return Err(e.into()),
        };
        let (line_max, line_min_p) = match line_profile {
            Some(p) => p,
            // The NEB promises to check the line before the first step; should it not have,
            // evaluate the line here.
            None => {
                let again = Neb::new(
                    b,
                    neb_config(self.args, distance, dim, seed),
                    NebPath::straight(b, &b.upload(z1)?, &b.upload(z2)?, dim, self.args.pivots)?,
                )?;
                let d = again.dense(b, &mut energy)?;
                let (m, p, _) = profile(&d, exempt);
                (m, p)
            }
        };
        result.line_max_loss = Some(line_max);
        result.line_min_prob = Some(line_min_p);
        result.steps = outcome.steps;
        if let Some(msg) = non_finite {
            result.pivots = neb.path().pivots();
            result.message = Some(msg);
            return finish(result);
        }
        let (path_max, path_min_p, _) = profile(&outcome.dense, exempt);
        result.path_max_loss = Some(path_max);
        result.path_min_prob = Some(path_min_p);
        let joined = all_target(&outcome.dense, target, exempt);
        let (category, pivots_data, pivots) = if joined && outcome.steps == 0 {
            // The straight line: saved as its two endpoints.
            (Category::Linear, zh.clone(), 2)
        } else {
            let p = neb.path();
            let cat = if joined { Category::Nonlinear } else { Category::NoPath };
            (cat, p.to_vec(b)?, p.pivots())
        };
        result.category = category;
        result.pivots = pivots;
        result.length_ratio = Some(if distance > 0.0 {
            if category == Category::Linear {
                1.0
            } else {
                neb.path().length(b)? / distance
            }
        } else {
            1.0
        });
        let file = file.to_string();
        let mut shape = vec![pivots];
        shape.extend_from_slice(&point_shape);
        let meta = BTreeMap::from([
            ("arch".to_string(), self.arch.name().to_string()),
            ("space".to_string(), space.clone()),
            ("pair".to_string(), pair.pair.to_string()),
            ("i".to_string(), pair.i.to_string()),
            ("j".to_string(), pair.j.to_string()),
            ("target".to_string(), pair.class.to_string()),
            ("class_name".to_string(), pair.class_name.clone()),
            ("category".to_string(), category.to_string()),
        ]);
        mep_resnet::save(
            self.out.join(&file),
            &[("pivots", &Shape::new(shape), &pivots_data)],
            Some(&meta),
        )
        .map_err(MepError::from)?;
        result.path_file = Some(file);
        finish(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dense path of three points predicted `classes`, target probabilities `probs`.
    fn dense(classes: [usize; 3], probs: [f64; 3]) -> Dense<HeadAux> {
        Dense {
            pivots: 2,
            sub_points: 2,
            t: vec![0.0, 0.5, 1.0],
            energies: probs.iter().map(|p| -p.ln()).collect(),
            aux: classes
                .iter()
                .zip(probs)
                .map(|(&predicted, target_prob)| HeadAux {
                    predicted,
                    finite: true,
                    target_prob,
                })
                .collect(),
        }
    }

    fn pair(endpoints: Endpoints) -> Pair {
        Pair {
            pair: 0,
            i: 0,
            j: 1,
            class: 1,
            class_name: "b".into(),
            endpoints,
            true_class: None,
            predicted: None,
        }
    }

    #[test]
    fn only_the_misclassified_endpoint_checked_in_its_true_class_is_exempt() {
        let exempt: Vec<usize> = [
            Endpoints::Natural,
            Endpoints::MisclassifiedPredicted,
            Endpoints::MisclassifiedTrue,
            Endpoints::Adversarial,
        ]
        .map(|e| exempt_points(&pair(e)))
        .to_vec();
        assert_eq!(exempt, [0, 0, 1, 0]);
        // m (t = 0) is predicted 0; the rest of the line is in class 1.
        let enters = dense([0, 1, 1], [0.2, 0.6, 0.9]);
        assert!(!all_target(&enters, 1, 0));
        assert!(all_target(&enters, 1, 1));
        let (max, min_p, bad) = profile(&enters, 1);
        assert_eq!((min_p, bad), (0.6, None));
        assert!((max - -(0.6f64).ln()).abs() < 1e-12);
        assert_eq!(profile(&enters, 0).1, 0.2);
        // Only t = 0 is exempt: a line that enters the class late is not in it.
        assert!(!all_target(&dense([0, 0, 1], [0.2, 0.3, 0.9]), 1, 1));
    }
}
