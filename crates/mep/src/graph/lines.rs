//! Straight lines of many pairs checked together: the dense points of every line go
//! through the head of the network in shared batches, so a graph's hundreds of lines cost
//! a few large calls instead of one small call each.

use crate::connect::{ConnectArgs, HeadEnergy};
use crate::Result;
use mep_neb::Energy;
use mep_resnet::{Cut, FoldedResNet};
use mep_tensor::{Backend, Lerp};

/// What the dense points of one line show.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LineProfile {
    /// Every dense point has finite logits whose argmax is the class.
    pub in_class: bool,
    /// The largest loss along the line (`None` when a loss is not finite).
    pub max_loss: Option<f64>,
    /// The smallest class probability along it.
    pub min_prob: Option<f64>,
    /// Names the first non-finite loss, if any.
    pub message: Option<String>,
}

/// The most floats of pivots held at once for a batch of lines (256 MiB).
const PIVOT_FLOATS: usize = 64 << 20;

/// Checks the lines `z_a → z_b` of `pairs` (node indices into `latents`, rows of the
/// point shape) in class `class`, at the points `mep connect` checks: N = `args.pivots`
/// evenly spaced pivots (as `mep_neb::Path::straight` places them) and S =
/// `args.sub_points` points per segment (as `Neb::dense` does), so a line's verdict here
/// is the one `connect` gives the same pair.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_lines<B: Backend>(
    b: &B,
    net: &FoldedResNet<B>,
    cut: Cut,
    class: usize,
    point_shape: &[usize],
    latents: &[f32],
    pairs: &[(usize, usize)],
    args: &ConnectArgs,
) -> Result<Vec<LineProfile>> {
    let d: usize = point_shape.iter().product();
    let (p, s) = (args.pivots, args.sub_points);
    let total = (p - 1) * s + 1;
    let mut energy = HeadEnergy::new(net, cut, class, point_shape)?.with_max_batch(args.batch);
    let mb = energy.max_batch();
    let per_chunk = (PIVOT_FLOATS / (p * d).max(1)).clamp(1, pairs.len().max(1));
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(per_chunk) {
        let e = chunk.len();
        let mut ends = Vec::with_capacity(2 * e * d);
        for &(a, c) in chunk {
            ends.extend_from_slice(&latents[a * d..(a + 1) * d]);
            ends.extend_from_slice(&latents[c * d..(c + 1) * d]);
        }
        let ends = b.upload(&ends)?;
        let last = (p - 1) as f64;
        let pivot_plan: Vec<Lerp> = (0..e)
            .flat_map(|k| {
                (0..p).map(move |q| Lerp {
                    a: 2 * k,
                    b: 2 * k + 1,
                    t: if q + 1 == p { 1.0 } else { (q as f64 / last) as f32 },
                })
            })
            .collect();
        let mut pivots = b.alloc(e * p * d)?;
        b.lerp_rows(d, &ends, &pivot_plan, &mut pivots)?;
        let dense_plan: Vec<Lerp> = (0..e)
            .flat_map(|k| {
                (0..total).map(move |q| {
                    let seg = (q / s).min(p - 2);
                    let j = q - seg * s;
                    Lerp {
                        a: k * p + seg,
                        b: k * p + seg + 1,
                        t: if j == s { 1.0 } else { (j as f64 / s as f64) as f32 },
                    }
                })
            })
            .collect();
        let mut energies = Vec::with_capacity(dense_plan.len());
        let mut inside = Vec::with_capacity(dense_plan.len());
        let mut probs = Vec::with_capacity(dense_plan.len());
        let mut points = b.alloc(mb.min(dense_plan.len()) * d)?;
        for rows in dense_plan.chunks(mb) {
            let n = rows.len();
            if b.len(&points) != n * d {
                points = b.alloc(n * d)?;
            }
            b.lerp_rows(d, &pivots, rows, &mut points)?;
            let ev = energy.evaluate(b, &points, n, None)?;
            energies.extend(ev.energies);
            for a in ev.aux {
                inside.push(a.in_class(class));
                probs.push(a.target_prob);
            }
        }
        for k in 0..e {
            let r = k * total..(k + 1) * total;
            let es = &energies[r.clone()];
            let bad = es.iter().position(|v| !v.is_finite());
            out.push(LineProfile {
                in_class: bad.is_none() && inside[r.clone()].iter().all(|&x| x),
                max_loss: bad
                    .is_none()
                    .then(|| es.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
                min_prob: Some(probs[r].iter().copied().fold(f64::INFINITY, f64::min)).filter(|v| v.is_finite()),
                message: bad.map(|q| {
                    format!(
                        "non-finite loss {} at dense point {q} (t = {:.4}) of the line",
                        es[q],
                        q as f64 / (total - 1) as f64
                    )
                }),
            });
        }
    }
    Ok(out)
}
