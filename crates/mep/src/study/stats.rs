//! Statistics people can cite, for the tables and the report: the Wilson score interval of
//! a share, the median with a percentile-bootstrap interval, and the ROC AUC of a score
//! (Mann–Whitney). Every interval is at 95 %; the bootstrap is seeded with mep-rng's
//! SplitMix64, so the same values give the same interval on every machine and thread count.
//!
//! ```
//! use mep::study::stats::{median_ci, roc_auc, wilson};
//! // 19 of the paper's 25 input-space pairs are linear: 76 %, 95 % CI 57–89 %.
//! let (lo, hi) = wilson(19, 25);
//! assert!((lo - 0.5657).abs() < 1e-4 && (hi - 0.8850).abs() < 1e-4);
//! let (m, lo, hi) = median_ci(&[3.0, 1.0, 2.0, 5.0, 4.0], 0).unwrap();
//! assert!(m == 3.0 && lo <= m && m <= hi);
//! assert_eq!(roc_auc(&[2.0, 3.0], &[1.0, 2.0]), Some(0.875));
//! ```

/// The standard normal quantile of 0.975: a two-sided 95 % interval.
pub const Z95: f64 = 1.959964;

/// Bootstrap resamples behind [`median_ci`].
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// The seed the tables and the report give [`median_ci`] (any fixed seed would do: what
/// matters is that a file is the same on every rerun). Every cell uses it, so cells of the
/// same size resample the same ranks: each interval is valid on its own, but the intervals
/// of two cells are not independent draws.
pub const BOOTSTRAP_SEED: u64 = 0x6d65_7020_3136; // "mep 16"

/// The 95 % Wilson score interval of the share `k / n` (Wilson 1927; Newcombe 1998,
/// method 3): `(p + z²/2n ± z √(p(1−p)/n + z²/4n²)) / (1 + z²/n)` with z = [`Z95`]. Unlike
/// the normal approximation it stays in [0, 1] and is not empty at k = 0 or k = n.
/// Without any observation (`n = 0`) it is the whole of [0, 1]; `k` above `n` is taken as `n`.
///
/// ```
/// let (lo, hi) = mep::study::stats::wilson(0, 10);
/// assert_eq!(lo, 0.0);
/// assert!((hi - 0.2775).abs() < 1e-4);
/// assert_eq!(mep::study::stats::wilson(0, 0), (0.0, 1.0));
/// ```
pub fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let k = k.min(n);
    let (nf, z2) = (n as f64, Z95 * Z95);
    let p = k as f64 / nf;
    let d = 1.0 + z2 / nf;
    let centre = (p + z2 / (2.0 * nf)) / d;
    let half = Z95 * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt() / d;
    // At k = 0 and k = n the bound is 0 or 1 exactly; rounding would leave 1e-17 off it.
    let lo = if k == 0 { 0.0 } else { (centre - half).max(0.0) };
    let hi = if k == n { 1.0 } else { (centre + half).min(1.0) };
    (lo, hi)
}

/// The difference of two shares `k1/n1 − k2/n2` with its 95 % interval by Newcombe's
/// hybrid score method (Newcombe 1998, method 10), built from the two Wilson intervals:
/// `(d, lo, hi)`; `None` when either share has no observation.
///
/// ```
/// // 19/25 against 14/25: +20 points, 95 % interval about −6 to +43.
/// let (d, lo, hi) = mep::study::stats::newcombe_difference(19, 25, 14, 25).unwrap();
/// assert!((d - 0.2).abs() < 1e-12 && lo < 0.0 && hi > 0.4);
/// ```
pub fn newcombe_difference(k1: usize, n1: usize, k2: usize, n2: usize) -> Option<(f64, f64, f64)> {
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let (p1, p2) = (k1.min(n1) as f64 / n1 as f64, k2.min(n2) as f64 / n2 as f64);
    let ((l1, u1), (l2, u2)) = (wilson(k1, n1), wilson(k2, n2));
    let d = p1 - p2;
    let lo = d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt();
    let hi = d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt();
    Some((d, lo.max(-1.0), hi.min(1.0)))
}

/// The q-quantile of sorted `v` (non-empty), interpolating linearly between order
/// statistics (numpy's default, Hyndman & Fan 1996 type 7).
fn quantile(v: &[f64], q: f64) -> f64 {
    let h = (v.len() - 1) as f64 * q;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

/// The median of the finite values (`None` without any).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(quantile(&v, 0.5))
}

/// The median of the finite values with a 95 % percentile-bootstrap interval: `(median,
/// lo, hi)`, `None` without any finite value.
///
/// Method (Efron & Tibshirani 1993, ch. 13): [`BOOTSTRAP_RESAMPLES`] resamples of the n
/// values, each drawing n indices uniformly with replacement from SplitMix64 seeded with
/// `seed` (unbiased draws, one stream, in order: no dependence on threads); the interval is
/// the 2.5 % and 97.5 % quantiles (type 7) of the resamples' medians. One value gives the
/// interval [v, v]. With few values the interval is coarse (it can only fall on values of
/// the sample or midpoints of two), and its coverage below about ten values is below 95 %.
///
/// ```
/// let v = [0.5, 0.7, 0.9, 1.2, 2.0, 2.5, 3.1];
/// let a = mep::study::stats::median_ci(&v, 7).unwrap();
/// assert_eq!(a, mep::study::stats::median_ci(&v, 7).unwrap()); // seeded: reproducible
/// assert_eq!(a.0, 1.2);
/// assert!(a.1 >= 0.5 && a.2 <= 3.1 && a.1 <= 1.2 && 1.2 <= a.2);
/// ```
pub fn median_ci(values: &[f64], seed: u64) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = quantile(&v, 0.5);
    let n = v.len();
    let mut rng = mep_rng::SplitMix64::new(seed);
    // A resample is how often it draws each sorted value; its median is found by walking
    // those counts, in O(n) per resample instead of a sort (the tables are rewritten after
    // every result of a study, so this runs often).
    let mut counts = vec![0u32; n];
    let mut medians = Vec::with_capacity(BOOTSTRAP_RESAMPLES);
    // 0-based ranks of the two middle values (equal for odd n), as type 7 takes them.
    let (a, b) = ((n - 1) / 2, n / 2);
    for _ in 0..BOOTSTRAP_RESAMPLES {
        counts.iter_mut().for_each(|c| *c = 0);
        for _ in 0..n {
            counts[rng.below_unbiased(n as u64) as usize] += 1;
        }
        let (mut seen, mut lo, mut hi) = (0usize, None, None);
        for (i, &c) in counts.iter().enumerate() {
            seen += c as usize;
            if lo.is_none() && seen > a {
                lo = Some(v[i]);
            }
            if seen > b {
                hi = Some(v[i]);
                break;
            }
        }
        let (lo, hi) = (lo.unwrap_or(v[n - 1]), hi.unwrap_or(v[n - 1]));
        medians.push(lo + 0.5 * (hi - lo));
    }
    medians.sort_by(f64::total_cmp);
    Some((m, quantile(&medians, 0.025), quantile(&medians, 0.975)))
}

/// The area under the ROC curve of a score that should be higher for `positives` than for
/// `negatives`: the Mann–Whitney probability that a random positive scores above a random
/// negative, ties counting 1/2 (Hanley & McNeil 1982). 1 separates perfectly, 0.5 is
/// chance, below 0.5 the score points the other way. Non-finite scores are left out;
/// `None` when either side has no finite score.
///
/// ```
/// use mep::study::stats::roc_auc;
/// assert_eq!(roc_auc(&[3.0, 4.0], &[1.0, 2.0]), Some(1.0));
/// assert_eq!(roc_auc(&[1.0], &[1.0]), Some(0.5));
/// assert_eq!(roc_auc(&[], &[1.0]), None);
/// ```
pub fn roc_auc(positives: &[f64], negatives: &[f64]) -> Option<f64> {
    let pos: Vec<f64> = positives.iter().copied().filter(|x| x.is_finite()).collect();
    let mut neg: Vec<f64> = negatives.iter().copied().filter(|x| x.is_finite()).collect();
    if pos.is_empty() || neg.is_empty() {
        return None;
    }
    neg.sort_by(f64::total_cmp);
    // For each positive: negatives below it (partition_point), and tied with it. `<` (not
    // total_cmp) so that −0 and +0 tie.
    let mut wins = 0.0f64;
    for p in &pos {
        let below = neg.partition_point(|x| x < p);
        let not_above = neg.partition_point(|x| x <= p);
        wins += below as f64 + 0.5 * (not_above - below) as f64;
    }
    Some(wins / (pos.len() as f64 * neg.len() as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn wilson_matches_the_formula_computed_in_python() {
        // Python 3, math only: p = k/n, d = 1 + z²/n, centre = (p + z²/2n)/d,
        // half = z·sqrt(p(1−p)/n + z²/4n²)/d, z = 1.959964.
        let cases = [
            (19, 25, 0.5657031648291211, 0.8850368637354755),
            (14, 25, 0.37067331734646203, 0.7333436123222912),
            (6, 25, 0.11496313626452448, 0.4342968351708788),
            (1, 2, 0.09453120463920084, 0.9054687953607992),
            (0, 10, 0.0, 0.2775328030260577),
            (10, 10, 0.7224671969739421, 1.0),
        ];
        for (k, n, lo, hi) in cases {
            let (a, b) = wilson(k, n);
            assert!(close(a, lo) && close(b, hi), "{k}/{n}: {a} {b}");
        }
        assert_eq!(wilson(0, 0), (0.0, 1.0));
        assert_eq!(wilson(12, 10), wilson(10, 10));
    }

    #[test]
    fn median_ci_is_seeded_and_brackets_the_median() {
        let v: Vec<f64> = (0..41).map(|i| i as f64).collect();
        let (m, lo, hi) = median_ci(&v, 1).unwrap();
        assert_eq!(m, 20.0);
        // The median of 41 uniform values: order statistics 14..27 cover 95 % (binomial);
        // the bootstrap interval lands near them.
        assert!((12.0..=17.0).contains(&lo) && (23.0..=28.0).contains(&hi), "{lo} {hi}");
        // Pinned: the draw is part of the method, so a change to it shows here.
        assert_eq!(median_ci(&v, 1), Some((20.0, 14.0, 26.0)));
        assert_eq!(median_ci(&[f64::NAN, 4.0], 0), Some((4.0, 4.0, 4.0)));
        assert_eq!(median_ci(&[f64::NAN], 0), None);
        assert_eq!(median(&[1.0, 2.0, 3.0, 10.0]), Some(2.5));
    }

    #[test]
    fn newcombe_matches_the_papers_example() {
        // Newcombe (1998), Table II, example (a): 56/70 − 48/80, method 10: 0.0524 to 0.3339.
        let (d, lo, hi) = newcombe_difference(56, 70, 48, 80).unwrap();
        assert!(close(d, 0.2) && (lo - 0.0524).abs() < 5e-5 && (hi - 0.3339).abs() < 5e-5);
        // The same formula in Python (math only).
        assert!(close(lo, 0.05243147121804573) && close(hi, 0.33387265501600794));
        assert_eq!(newcombe_difference(1, 0, 1, 2), None);
    }

    #[test]
    fn auc_counts_pairs_and_ties() {
        // Positives 2, 3 against negatives 1, 2: pairs (2>1), (2=2: 1/2), (3>1), (3>2) → 3.5/4.
        assert_eq!(roc_auc(&[2.0, 3.0], &[1.0, 2.0]), Some(0.875));
        assert_eq!(roc_auc(&[1.0, 2.0], &[3.0, 4.0]), Some(0.0));
        assert_eq!(roc_auc(&[5.0, 5.0, 5.0], &[5.0]), Some(0.5));
        // The brute-force count on a larger case.
        let pos = [0.3, 1.2, 0.8, 0.8, 2.0, f64::NAN];
        let neg = [0.1, 0.8, 0.5, 1.2, 0.05];
        let mut w = 0.0;
        for p in pos.iter().filter(|x| x.is_finite()) {
            for q in &neg {
                w += if p > q {
                    1.0
                } else if p == q {
                    0.5
                } else {
                    0.0
                };
            }
        }
        assert!(close(roc_auc(&pos, &neg).unwrap(), w / 25.0));
        assert_eq!(roc_auc(&[1.0], &[]), None);
        assert_eq!(roc_auc(&[0.0], &[-0.0]), Some(0.5));
    }
}
