//! Which pairs of same-class test images a study joins: seeded random draws, the same for
//! every space and every shard, or the pairs a user lists in a file.

use crate::study::Endpoints;
use crate::{MepError, Result};
use mep_data::Rng;
use std::collections::{HashMap, HashSet};
use std::path::Path;

pub use crate::study::Pair;

/// The pairs chosen, and how many candidates were passed over on the way.
#[derive(Clone, Debug, PartialEq)]
pub struct Selection {
    /// The pairs, numbered from 0.
    pub pairs: Vec<Pair>,
    /// Candidate pairs skipped because the model misclassified an endpoint.
    pub skipped: usize,
}

/// Classifies images by dataset index: whether the model predicts each one's label.
pub type Classify<'a> = dyn FnMut(&[usize]) -> Result<Vec<bool>> + 'a;

/// The classes `--class` names, by name or by number, in the order given; every class
/// when `names` is empty.
pub fn parse_classes(names: &[String], classes: &[String]) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let c = parse_class("--class", name, classes)?;
        if out.contains(&c) {
            return Err(MepError::option("--class", name, "named twice"));
        }
        out.push(c);
    }
    Ok(out)
}

/// One class given to `option` by name or number; an error naming the option, the value
/// and the dataset's classes otherwise.
pub fn parse_class(option: &str, name: &str, classes: &[String]) -> Result<usize> {
    let t = name.trim();
    classes
        .iter()
        .position(|c| c == t)
        .or_else(|| t.parse::<usize>().ok().filter(|&c| c < classes.len()))
        .ok_or_else(|| {
            MepError::option(
                option,
                name,
                format!(
                    "no such class; the dataset's classes are {} (or their numbers 0 to {})",
                    classes.join(", "),
                    classes.len().saturating_sub(1)
                ),
            )
        })
}

/// The test images of each of `k` classes, by dataset index, in order.
fn members_of(labels: &[usize], k: usize) -> Vec<Vec<usize>> {
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (i, &l) in labels.iter().enumerate() {
        if let Some(m) = members.get_mut(l) {
            m.push(i);
        }
    }
    members
}

/// `"{preposition} the classes a, b"` naming the `allowed` classes, or nothing when every
/// class is allowed: what a message about a draw adds.
fn among_classes(preposition: &str, allowed: &[usize], classes: &[String]) -> String {
    if allowed.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = allowed.iter().map(|&c| classes[c].as_str()).collect();
    format!("{preposition} the classes {}", names.join(", "))
}

/// The number of unordered pairs of `m` things.
fn pairs_of(m: usize) -> u64 {
    let m = m as u64;
    m * m.saturating_sub(1) / 2
}

/// Pair number `q` of the `m(m−1)/2` unordered pairs `(a, b)`, `a < b`, ordered by `b`
/// then `a`: `q = b(b−1)/2 + a`.
fn unrank_pair(q: u64) -> (usize, usize) {
    let mut b = ((1.0 + (1.0 + 8.0 * q as f64).sqrt()) / 2.0).floor() as u64;
    // Mend the float estimate: b is the largest with b(b−1)/2 ≤ q.
    while b * b.saturating_sub(1) / 2 > q {
        b -= 1;
    }
    while (b + 1) * b / 2 <= q {
        b += 1;
    }
    let a = q - b * (b - 1) / 2;
    (a as usize, b as usize)
}

/// A uniformly random permutation of `0..n`, drawn lazily (Fisher–Yates on a sparse
/// array): each draw is O(1) and the memory grows with the draws, not with `n`.
struct LazyPermutation {
    n: u64,
    k: u64,
    moved: HashMap<u64, u64>,
    rng: Rng,
}

impl LazyPermutation {
    fn new(n: u64, rng: Rng) -> Self {
        Self {
            n,
            k: 0,
            moved: HashMap::new(),
            rng,
        }
    }

    fn next(&mut self) -> Option<u64> {
        if self.k == self.n {
            return None;
        }
        let r = self.k + self.rng.below(self.n - self.k);
        let at_r = *self.moved.get(&r).unwrap_or(&r);
        let at_k = *self.moved.get(&self.k).unwrap_or(&self.k);
        self.moved.insert(r, at_k);
        self.moved.remove(&self.k);
        self.k += 1;
        Some(at_r)
    }
}

/// Draws `count` distinct same-class pairs of the split with `labels`, uniformly among
/// all same-class pairs of the `allowed` classes (every class when empty), in an order
/// fixed by `seed` alone. With `classify`, a candidate with a misclassified endpoint is
/// skipped (and counted); images are classified lazily, `batch` at a time, only as
/// candidates need them.
pub fn draw_pairs(
    labels: &[usize],
    classes: &[String],
    allowed: &[usize],
    count: usize,
    seed: u64,
    mut classify: Option<&mut Classify<'_>>,
    batch: usize,
) -> Result<Selection> {
    let k = classes.len();
    let members = members_of(labels, k);
    let eligible: Vec<usize> = if allowed.is_empty() {
        (0..k).filter(|&c| members[c].len() >= 2).collect()
    } else {
        for &c in allowed {
            if members[c].len() < 2 {
                return Err(MepError::option(
                    "--class",
                    &classes[c],
                    format!(
                        "the test split has {} image(s) of class `{}`; a pair needs two",
                        members[c].len(),
                        classes[c]
                    ),
                ));
            }
        }
        allowed.to_vec()
    };
    // Prefix sums of the pair counts: pair number q belongs to the class whose range holds it.
    let mut ends = Vec::with_capacity(eligible.len());
    let mut total = 0u64;
    for &c in &eligible {
        total += pairs_of(members[c].len());
        ends.push(total);
    }
    if count as u64 > total {
        return Err(MepError::option(
            "--pairs",
            count,
            format!(
                "the test split has only {total} distinct same-class pairs{}",
                among_classes(" in", allowed, classes)
            ),
        ));
    }
    let candidate = |q: u64| -> (usize, usize, usize) {
        let slot = ends.partition_point(|&e| e <= q);
        let start = if slot == 0 { 0 } else { ends[slot - 1] };
        let (a, b) = unrank_pair(q - start);
        let m = &members[eligible[slot]];
        (eligible[slot], m[a], m[b])
    };
    let mut perm = LazyPermutation::new(total, Rng::from_parts(&[seed, 0x7061_6972_7300_0001]));
    let make = |pair: usize, (class, i, j): (usize, usize, usize)| Pair {
        pair,
        i,
        j,
        class,
        class_name: classes[class].clone(),
        endpoints: Endpoints::Natural,
        true_class: None,
        predicted: None,
    };
    let mut pairs = Vec::with_capacity(count);
    let Some(classify) = classify.as_mut() else {
        while pairs.len() < count {
            let q = perm.next().expect("count ≤ total was checked");
            pairs.push(make(pairs.len(), candidate(q)));
        }
        return Ok(Selection { pairs, skipped: 0 });
    };
    let mut known: HashMap<usize, bool> = HashMap::new();
    let mut skipped = 0;
    let batch = batch.max(1);
    while pairs.len() < count {
        // Draw candidates until their unclassified images fill a batch, or until there
        // are enough of them to finish if all turn out correct. Acceptance follows the
        // draw order, so how the draws are batched never changes the pairs.
        let mut pending = Vec::new();
        let mut unknown: Vec<usize> = Vec::new();
        let mut seen: HashSet<usize> = HashSet::new();
        while unknown.len() < batch && pending.len() < count - pairs.len() {
            let Some(q) = perm.next() else { break };
            let c = candidate(q);
            for x in [c.1, c.2] {
                if !known.contains_key(&x) && seen.insert(x) {
                    unknown.push(x);
                }
            }
            pending.push(c);
        }
        if pending.is_empty() {
            return Err(MepError::unusable(
                format!("only {} of the {total} same-class pairs", pairs.len()),
                format!(
                    "have both images classified correctly by the model ({skipped} skipped); ask for fewer \
                     --pairs or pass --endpoints all (--allow-misclassified)"
                ),
            ));
        }
        for chunk in unknown.chunks(batch) {
            let ok = classify(chunk)?;
            known.extend(chunk.iter().copied().zip(ok));
        }
        for c in pending {
            if pairs.len() == count {
                break;
            }
            if known[&c.1] && known[&c.2] {
                pairs.push(make(pairs.len(), c));
            } else {
                skipped += 1;
            }
        }
    }
    Ok(Selection { pairs, skipped })
}

/// Predicts images by dataset index: the model's class for each (`None` when its logits
/// are not finite: in no class).
pub type Predict<'a> = dyn FnMut(&[usize]) -> Result<Vec<Option<usize>>> + 'a;

/// The predictions known so far, each image predicted once, `batch` at a time.
struct Predictions<'p, 'a> {
    known: HashMap<usize, Option<usize>>,
    predict: &'p mut Predict<'a>,
    batch: usize,
}

impl Predictions<'_, '_> {
    /// Predicts those of `images` not yet known.
    fn fill(&mut self, images: &[usize]) -> Result<()> {
        let unknown: Vec<usize> = images.iter().copied().filter(|x| !self.known.contains_key(x)).collect();
        for chunk in unknown.chunks(self.batch) {
            let got = (self.predict)(chunk)?;
            if got.len() != chunk.len() {
                return Err(MepError::unusable(
                    format!("a prediction of {} images", chunk.len()),
                    format!("gave {} classes", got.len()),
                ));
            }
            self.known.extend(chunk.iter().copied().zip(got));
        }
        Ok(())
    }
}

/// The correctly classified images of one class, in the seeded order of that class, each
/// handed out once.
struct Partners {
    class: usize,
    members: Vec<usize>,
    order: LazyPermutation,
    ready: std::collections::VecDeque<usize>,
}

impl Partners {
    fn new(class: usize, members: Vec<usize>, seed: u64) -> Self {
        let order = LazyPermutation::new(
            members.len() as u64,
            Rng::from_parts(&[seed, 0x7061_7274_6e72_0001, class as u64]),
        );
        Partners {
            class,
            members,
            order,
            ready: Default::default(),
        }
    }

    /// The next `n` images of the class's order (fewer at its end), to be predicted and
    /// then [`Partners::accept`]ed.
    fn draw(&mut self, n: usize) -> Vec<usize> {
        std::iter::from_fn(|| self.order.next())
            .take(n)
            .map(|q| self.members[q as usize])
            .collect()
    }

    /// Keeps those of `drawn` (predicted, in the order drawn) that the model classifies
    /// correctly.
    fn accept(&mut self, drawn: Vec<usize>, known: &Predictions<'_, '_>) {
        self.ready
            .extend(drawn.into_iter().filter(|x| known.known[x] == Some(self.class)));
    }

    /// The next correctly classified image of the class, predicting the next `batch` of its
    /// order as needed; `None` once there is none left.
    fn peek(&mut self, known: &mut Predictions<'_, '_>) -> Result<Option<usize>> {
        while self.ready.is_empty() {
            let drawn = self.draw(known.batch);
            if drawn.is_empty() {
                return Ok(None);
            }
            known.fill(&drawn)?;
            self.accept(drawn, known);
        }
        Ok(self.ready.front().copied())
    }
}

/// `--endpoints misclassified`: draws `count` misclassified test images m (label c, the
/// model predicts c′ ≠ c), uniformly in an order fixed by `seed` among the images whose
/// label is one of `allowed` (every class when empty), and makes two pairs of each, with m
/// as `i`:
///
/// - (m, a correctly classified image of c′) in class c′: [`Endpoints::MisclassifiedPredicted`],
///   `true_class` c;
/// - (m, a correctly classified image of c) in class c: [`Endpoints::MisclassifiedTrue`],
///   `predicted` c′.
///
/// Partners come from a seeded order of each class, each used once. Images are predicted
/// lazily, `batch` at a time, only as the draw needs them; what is accepted follows the
/// draw order alone, so the batch never changes the pairs. A misclassified image with no
/// finite prediction, or with no correctly classified image of c or c′ left to pair it
/// with, is passed over and counted in `skipped`. Fewer usable misclassified images than
/// `count` is an error saying how many were found among how many examined.
pub fn draw_misclassified(
    labels: &[usize],
    classes: &[String],
    allowed: &[usize],
    count: usize,
    seed: u64,
    predict: &mut Predict<'_>,
    batch: usize,
) -> Result<Selection> {
    let k = classes.len();
    let members = members_of(labels, k);
    let candidates: Vec<usize> = (0..labels.len())
        .filter(|&i| labels[i] < k && (allowed.is_empty() || allowed.contains(&labels[i])))
        .collect();
    let among = among_classes(" of", allowed, classes);
    if count > candidates.len() {
        return Err(MepError::option(
            "--pairs",
            count,
            format!(
                "asks for that many misclassified images, but the test split has only {} images{among}",
                candidates.len()
            ),
        ));
    }
    let mut known = Predictions {
        known: HashMap::new(),
        predict,
        batch: batch.max(1),
    };
    let mut order = LazyPermutation::new(candidates.len() as u64, Rng::from_parts(&[seed, 0x6d69_7363_6c73_0001]));
    let mut partners: HashMap<usize, Partners> = HashMap::new();
    let mut pairs = Vec::with_capacity(2 * count);
    let (mut examined, mut misclassified, mut skipped) = (0usize, 0usize, 0usize);
    while pairs.len() < 2 * count {
        let drawn: Vec<usize> = std::iter::from_fn(|| order.next())
            .take(known.batch)
            .map(|q| candidates[q as usize])
            .collect();
        if drawn.is_empty() {
            let what = if misclassified == 0 {
                format!(
                    "the model misclassifies none of the {examined} test images{among}; \
                     --endpoints misclassified has nothing to study"
                )
            } else {
                format!(
                    "the model misclassifies {misclassified} of the {examined} test images{among}, \
                     {} of them usable ({skipped} with no class predicted or no correctly classified \
                     image of their true or predicted class to pair with); ask for fewer --pairs",
                    pairs.len() / 2
                )
            };
            return Err(MepError::unusable(
                format!("{count} misclassified images (--pairs {count})"),
                what,
            ));
        }
        known.fill(&drawn)?;
        // Predict the partners these images will want together, in as few calls as the
        // batch allows; which partner each image gets is settled below, in draw order, so
        // this changes only how many images are predicted, never the pairs.
        let mut want: std::collections::BTreeMap<usize, usize> = Default::default();
        let wrong = drawn.iter().filter_map(|&m| {
            let p = known.known[&m].filter(|&p| p != labels[m] && p < k)?;
            Some((p, labels[m]))
        });
        for (predicted, label) in wrong.take(count - pairs.len() / 2) {
            *want.entry(predicted).or_default() += 1;
            *want.entry(label).or_default() += 1;
        }
        loop {
            let mut fetched: Vec<(usize, Vec<usize>)> = Vec::new();
            for (&class, &n) in &want {
                let q = partners
                    .entry(class)
                    .or_insert_with(|| Partners::new(class, members[class].clone(), seed));
                let more = q.draw(n.saturating_sub(q.ready.len()));
                if !more.is_empty() {
                    fetched.push((class, more));
                }
            }
            if fetched.is_empty() {
                break;
            }
            known.fill(&fetched.iter().flat_map(|(_, v)| v.iter().copied()).collect::<Vec<_>>())?;
            for (class, more) in fetched {
                if let Some(q) = partners.get_mut(&class) {
                    q.accept(more, &known);
                }
            }
        }
        for m in drawn {
            if pairs.len() == 2 * count {
                break;
            }
            examined += 1;
            let c = labels[m];
            let p = known.known[&m];
            if p == Some(c) {
                continue;
            }
            misclassified += 1;
            let Some(p) = p.filter(|&p| p < k) else {
                skipped += 1;
                continue;
            };
            let mut peek = |class: usize, known: &mut Predictions<'_, '_>| {
                partners
                    .entry(class)
                    .or_insert_with(|| Partners::new(class, members[class].clone(), seed))
                    .peek(known)
            };
            let (Some(in_predicted), Some(in_true)) = (peek(p, &mut known)?, peek(c, &mut known)?) else {
                skipped += 1;
                continue;
            };
            for class in [p, c] {
                partners.get_mut(&class).and_then(|q| q.ready.pop_front());
            }
            let pair = |pair: usize, j: usize, class: usize, endpoints, true_class, predicted| Pair {
                pair,
                i: m,
                j,
                class,
                class_name: classes[class].clone(),
                endpoints,
                true_class,
                predicted,
            };
            pairs.push(pair(
                pairs.len(),
                in_predicted,
                p,
                Endpoints::MisclassifiedPredicted,
                Some(c),
                None,
            ));
            pairs.push(pair(
                pairs.len(),
                in_true,
                c,
                Endpoints::MisclassifiedTrue,
                None,
                Some(p),
            ));
        }
    }
    Ok(Selection { pairs, skipped })
}

/// Reads a `--pairs-file`: one pair of test-split indices `i,j` per line, optionally
/// followed by `,natural` or `,adversarial` (what the endpoints are: `i` an adversarial
/// image of `mep attack`, `j` a natural one; natural when left out); blank lines and `#`
/// comments are ignored. Each line must name two different images of one class,
/// in range, and no pair may repeat.
pub fn read_pairs_file(path: &Path, labels: &[usize], classes: &[String]) -> Result<Vec<Pair>> {
    let bytes = std::fs::read(path).map_err(|source| MepError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_pairs_file(&bytes, path, labels, classes)
}

/// [`read_pairs_file`] on the file's bytes; `path` names it in errors. A leading UTF-8
/// byte-order mark (spreadsheets write one into CSV files) is skipped; a line quoted in an
/// error shows control and invisible characters escaped (`\u{200b}`), so the message
/// shows what is actually there.
pub fn parse_pairs_file(bytes: &[u8], path: &Path, labels: &[usize], classes: &[String]) -> Result<Vec<Pair>> {
    let text = std::str::from_utf8(bytes).map_err(|e| MepError::PairsFile {
        path: path.to_path_buf(),
        line: 1 + bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count(),
        msg: "not UTF-8 text; a pairs file holds lines `i,j` of dataset indices".to_string(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let n = labels.len();
    let mut pairs: Vec<Pair> = Vec::new();
    let mut lines_of: HashMap<(usize, usize), usize> = HashMap::new();
    for (no, raw) in text.lines().enumerate() {
        let line = no + 1;
        let err = |msg: String| MepError::PairsFile {
            path: path.to_path_buf(),
            line,
            msg,
        };
        let body = raw.split('#').next().unwrap_or("").trim();
        if body.is_empty() {
            continue;
        }
        let mut fields: Vec<&str> = body.split(',').map(str::trim).collect();
        // An optional third field says what the endpoints are (`mep attack` writes it).
        let endpoints = match fields.len() {
            3 => match fields.pop().unwrap_or_default() {
                "natural" => Endpoints::Natural,
                "adversarial" => Endpoints::Adversarial,
                kind => {
                    return Err(err(format!(
                        "`{}` is not a kind of pair; the third field, when given, is `natural` or `adversarial`",
                        escape_invisible(kind)
                    )))
                }
            },
            _ => Endpoints::Natural,
        };
        let parsed: Option<Vec<usize>> = fields.iter().map(|f| f.parse().ok()).collect();
        let (i, j) = match parsed.as_deref() {
            Some(&[i, j]) => (i, j),
            _ => {
                return Err(err(format!(
                    "`{}` is not a pair of dataset indices `i,j` (two non-negative integers, then \
                     optionally `natural` or `adversarial`)",
                    escape_invisible(body)
                )))
            }
        };
        for x in [i, j] {
            if x >= n {
                return Err(err(format!(
                    "index {x} is out of range: the test split has {n} images (0 to {})",
                    n.saturating_sub(1)
                )));
            }
        }
        if i == j {
            return Err(err(format!("pairs image {i} with itself")));
        }
        let (ci, cj) = (labels[i], labels[j]);
        if ci != cj {
            let name = |c: usize| classes.get(c).map_or_else(|| c.to_string(), |s| s.clone());
            return Err(err(format!(
                "images {i} and {j} are of different classes ({} and {})",
                name(ci),
                name(cj)
            )));
        }
        if let Some(first) = lines_of.insert((i.min(j), i.max(j)), line) {
            return Err(err(format!("the pair {i},{j} repeats line {first}")));
        }
        pairs.push(Pair {
            pair: pairs.len(),
            i,
            j,
            class: ci,
            class_name: classes.get(ci).cloned().unwrap_or_else(|| ci.to_string()),
            endpoints,
            true_class: None,
            predicted: None,
        });
    }
    if pairs.is_empty() {
        return Err(MepError::Missing {
            path: path.to_path_buf(),
            what: "no pairs in the file".into(),
            hint: None,
        });
    }
    Ok(pairs)
}

/// `text` with control characters and invisible format characters (byte-order mark,
/// zero-width spaces and joiners, direction marks, soft hyphen) written as Rust escapes
/// (`\t`, `\u{feff}`), so an error quoting a line shows every character in it.
pub fn escape_invisible(text: &str) -> String {
    let invisible = |c: char| {
        c.is_control()
            || matches!(
                c,
                '\u{00ad}'
                    | '\u{034f}'
                    | '\u{061c}'
                    | '\u{115f}'
                    | '\u{1160}'
                    | '\u{180e}'
                    | '\u{200b}'..='\u{200f}'
                    | '\u{2028}'..='\u{202e}'
                    | '\u{2060}'..='\u{206f}'
                    | '\u{3164}'
                    | '\u{fe00}'..='\u{fe0f}'
                    | '\u{feff}'
                    | '\u{ffa0}'
                    | '\u{fff9}'..='\u{fffb}'
            )
    };
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if invisible(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Keeps the pairs whose endpoints the model classifies correctly (classifying each image
/// once, `batch` at a time) and renumbers them; returns them and how many were skipped.
pub fn keep_correct(pairs: Vec<Pair>, classify: &mut Classify<'_>, batch: usize) -> Result<Selection> {
    let mut images: Vec<usize> = pairs.iter().flat_map(|p| [p.i, p.j]).collect();
    images.sort_unstable();
    images.dedup();
    let mut known = HashMap::new();
    for chunk in images.chunks(batch.max(1)) {
        known.extend(chunk.iter().copied().zip(classify(chunk)?));
    }
    let before = pairs.len();
    let kept: Vec<Pair> = pairs
        .into_iter()
        .filter(|p| known[&p.i] && known[&p.j])
        .enumerate()
        .map(|(k, p)| Pair { pair: k, ..p })
        .collect();
    Ok(Selection {
        skipped: before - kept.len(),
        pairs: kept,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Pair>> {
        let labels = [0, 0, 1, 1, 0];
        let classes: Vec<String> = ["a", "b"].map(String::from).to_vec();
        parse_pairs_file(text.as_bytes(), Path::new("p.csv"), &labels, &classes)
    }

    #[test]
    fn a_pairs_file_may_say_what_each_pair_is() {
        let pairs = parse("0,1\n2,3,adversarial # from mep attack\n 4 , 0 , natural \n").unwrap();
        let kinds: Vec<Endpoints> = pairs.iter().map(|p| p.endpoints).collect();
        assert_eq!(kinds, [Endpoints::Natural, Endpoints::Adversarial, Endpoints::Natural]);
        assert_eq!((pairs[1].i, pairs[1].j, pairs[1].class), (2, 3, 1));
        assert_eq!((pairs[2].i, pairs[2].j, pairs[2].pair), (4, 0, 2));
    }

    #[test]
    fn a_bad_kind_of_pair_is_refused_with_its_line() {
        for (text, want) in [
            ("0,1\n2,3,Adversarial\n", "p.csv:2: `Adversarial` is not a kind of pair"),
            ("0,1,misclassified\n", "p.csv:1: `misclassified` is not a kind of pair"),
            ("0,1,\n", "p.csv:1: `` is not a kind of pair"),
            ("0,1,adversarial,x\n", "p.csv:1: `0,1,adversarial,x` is not a pair"),
            ("adversarial,0,1\n", "p.csv:1: `1` is not a kind of pair"),
            ("0,adversarial\n", "p.csv:1: `0,adversarial` is not a pair"),
            ("0,1,natural\n1,0,adversarial\n", "p.csv:2: the pair 1,0 repeats line 1"),
            (
                "0,2,adversarial\n",
                "p.csv:1: images 0 and 2 are of different classes (a and b)",
            ),
            ("0,9,adversarial\n", "p.csv:1: index 9 is out of range"),
            ("# only a comment\n", "no pairs in the file"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn unranking_visits_every_pair_once() {
        for m in [2usize, 3, 7, 50] {
            let mut seen = HashSet::new();
            for q in 0..pairs_of(m) {
                let (a, b) = unrank_pair(q);
                assert!(a < b && b < m, "q {q} gave ({a}, {b}) for m {m}");
                assert!(seen.insert((a, b)));
            }
            assert_eq!(seen.len() as u64, pairs_of(m));
        }
        // Far from zero the float estimate must still be mended exactly.
        let q = 4_999_999_950_000_000u64;
        let (a, b) = unrank_pair(q);
        assert_eq!((b as u64) * (b as u64 - 1) / 2 + a as u64, q);
    }

    #[test]
    fn the_lazy_permutation_is_a_permutation() {
        let mut p = LazyPermutation::new(100, Rng::new(5));
        let mut v: Vec<u64> = std::iter::from_fn(|| p.next()).collect();
        assert_eq!(v.len(), 100);
        assert_ne!(v, (0..100).collect::<Vec<_>>());
        v.sort_unstable();
        assert_eq!(v, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn every_pair_of_a_small_split_is_drawn_and_then_the_draw_refuses() {
        let labels = [0, 1, 0, 1, 0, 1, 2];
        let classes: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        // Classes a and b have 3 images each: 3 + 3 pairs; c has one image, no pair.
        let s = draw_pairs(&labels, &classes, &[], 6, 1, None, 4).unwrap();
        let mut got: Vec<(usize, usize)> = s.pairs.iter().map(|p| (p.i, p.j)).collect();
        got.sort_unstable();
        assert_eq!(got, vec![(0, 2), (0, 4), (1, 3), (1, 5), (2, 4), (3, 5)]);
        let e = draw_pairs(&labels, &classes, &[], 7, 1, None, 4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("only 6 distinct"), "{e}");
    }

    #[test]
    fn skipping_misclassified_images_does_not_depend_on_the_batch() {
        let labels: Vec<usize> = (0..40).map(|i| i % 2).collect();
        let classes: Vec<String> = ["a", "b"].map(String::from).to_vec();
        let wrong = |i: usize| i % 7 == 3;
        let run = |batch| {
            let mut calls = 0;
            let mut f = |xs: &[usize]| {
                calls += 1;
                assert!(xs.len() <= batch);
                Ok(xs.iter().map(|&x| !wrong(x)).collect())
            };
            let s = draw_pairs(&labels, &classes, &[], 12, 9, Some(&mut f), batch).unwrap();
            (s, calls)
        };
        let (a, calls_a) = run(1);
        let (b, calls_b) = run(64);
        assert_eq!(a, b);
        assert!(calls_b < calls_a);
        assert!(a.skipped > 0);
        assert!(a.pairs.iter().all(|p| !wrong(p.i) && !wrong(p.j)));
    }
}
