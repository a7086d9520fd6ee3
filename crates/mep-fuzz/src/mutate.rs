//! A small deterministic mutator for the smoke run: the same seed gives the same inputs on
//! every machine, so a failure in CI reproduces anywhere.
//!
//! Besides byte-level edits (bit flips, interesting bytes, truncation, insertion, deletion,
//! duplication, splicing two seeds), it makes the edits that reach deep into the formats
//! mep reads: the 8-byte little-endian length that starts a safetensors file, 4- and 8-byte
//! integers anywhere, decimal numbers in text (JSON fields, pair indices, tar's octal sizes)
//! replaced by boundary values, and JSON punctuation swapped.

use mep_rng::SplitMix64;

/// The workspace's SplitMix64 with the draws the mutator needs: the same everywhere.
#[derive(Clone, Debug)]
pub struct SplitMix(SplitMix64);

impl SplitMix {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix(SplitMix64::new(seed))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: usize) -> usize {
        self.0.below(n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const INTERESTING_BYTES: [u8; 16] = [
    0, 1, 0x7f, 0x80, 0xff, b'\n', b'\r', b'"', b',', b'#', b'{', b'}', b'0', b'9', b'-', 0xef,
];

/// Integers at the edges of what a length or offset field can hold.
fn interesting_u64(len: usize) -> [u64; 14] {
    let len = len as u64;
    [
        0,
        1,
        7,
        8,
        len.saturating_sub(8),
        len.saturating_sub(7),
        len,
        len + 1,
        u32::MAX as u64,
        1 << 31,
        1 << 60,
        i64::MAX as u64,
        u64::MAX,
        u64::MAX - 7,
    ]
}

/// Decimal texts at the edges of what a parser must refuse or accept.
const INTERESTING_NUMBERS: [&str; 16] = [
    "0",
    "1",
    "-1",
    "2",
    "40",
    "255",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999",
    "1e400",
    "-0",
    "1.5",
    "77777777777",
    "",
];

const JSON_PUNCTUATION: [u8; 9] = [b'{', b'}', b'[', b']', b':', b',', b'"', b' ', b'\\'];

/// One random edit of `data`; `pool` (the seed corpus) supplies material for splicing.
pub fn mutate_once(data: &mut Vec<u8>, rng: &mut SplitMix, pool: &[Vec<u8>]) {
    match rng.below(12) {
        0 if !data.is_empty() => {
            let k = rng.below(data.len());
            data[k] ^= 1 << rng.below(8);
        }
        1 if !data.is_empty() => {
            let k = rng.below(data.len());
            data[k] = *rng.pick(&INTERESTING_BYTES);
        }
        2 => {
            let k = rng.below(data.len() + 1);
            data.truncate(k);
        }
        3 => {
            let k = rng.below(data.len() + 1);
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            data.splice(k..k, bytes);
        }
        4 if !data.is_empty() => {
            let a = rng.below(data.len());
            let b = (a + 1 + rng.below(64)).min(data.len());
            data.drain(a..b);
        }
        5 if !data.is_empty() => {
            let a = rng.below(data.len());
            let b = (a + 1 + rng.below(64)).min(data.len());
            let copy = data[a..b].to_vec();
            let k = rng.below(data.len() + 1);
            data.splice(k..k, copy);
        }
        6 => {
            // The safetensors header length: the first 8 bytes, little-endian.
            let v = *rng.pick(&interesting_u64(data.len()));
            write_le(data, 0, &v.to_le_bytes());
        }
        7 if data.len() >= 8 => {
            // A 4- or 8-byte integer anywhere (tensor data, gzip and tar fields).
            let v = *rng.pick(&interesting_u64(data.len()));
            let width = if rng.below(2) == 0 { 4 } else { 8 };
            let k = rng.below(data.len() - width + 1);
            write_le(data, k, &v.to_le_bytes()[..width]);
        }
        8 => replace_number(data, rng),
        9 if !data.is_empty() => {
            // Swap a JSON punctuation mark for another.
            let marks: Vec<usize> = (0..data.len())
                .filter(|&k| JSON_PUNCTUATION.contains(&data[k]))
                .collect();
            if !marks.is_empty() {
                let k = *rng.pick(&marks);
                data[k] = *rng.pick(&JSON_PUNCTUATION);
            }
        }
        10 if !pool.is_empty() => {
            // Splice: a prefix of this input, then a suffix of a seed.
            let other = rng.pick(pool);
            let a = rng.below(data.len() + 1);
            let b = rng.below(other.len() + 1);
            data.truncate(a);
            data.extend_from_slice(&other[b..]);
        }
        11 if !data.is_empty() => {
            // Repeat a line (duplicate records, repeated pairs).
            let starts: Vec<usize> = std::iter::once(0)
                .chain((0..data.len()).filter(|&k| data[k] == b'\n').map(|k| k + 1))
                .filter(|&k| k < data.len())
                .collect();
            let a = *rng.pick(&starts);
            let b = data[a..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(data.len(), |p| a + p + 1);
            let line = data[a..b].to_vec();
            data.splice(b..b, line);
        }
        _ => {
            if let Some(k) = (!data.is_empty()).then(|| rng.below(data.len())) {
                data[k] = rng.next_u64() as u8;
            }
        }
    }
}

/// `data` with one to four random edits.
pub fn mutate(seed: &[u8], rng: &mut SplitMix, pool: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        mutate_once(&mut data, rng, pool);
    }
    data
}

/// Overwrites `data[at..]` with `bytes`, growing `data` if it is too short.
fn write_le(data: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    if data.len() < at + bytes.len() {
        data.resize(at + bytes.len(), 0);
    }
    data[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Replaces a random run of ASCII digits (a JSON number, a pair index, a tar size field)
/// with a boundary value.
fn replace_number(data: &mut Vec<u8>, rng: &mut SplitMix) {
    let mut runs = Vec::new();
    let mut k = 0;
    while k < data.len() {
        if data[k].is_ascii_digit() {
            let start = k;
            while k < data.len() && data[k].is_ascii_digit() {
                k += 1;
            }
            runs.push((start, k));
        } else {
            k += 1;
        }
    }
    if runs.is_empty() {
        return;
    }
    let (a, b) = *rng.pick(&runs);
    let text = rng.pick(&INTERESTING_NUMBERS).as_bytes().to_vec();
    data.splice(a..b, text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_mutants() {
        let pool = vec![b"{\"a\": [1, 2]}\n".to_vec(), b"0,1\n2,3\n".to_vec()];
        let run = |seed| {
            let mut rng = SplitMix::new(seed);
            (0..200)
                .map(|k| mutate(&pool[k % 2], &mut rng, &pool))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        // Mutants differ from their seeds most of the time (an edit can undo another).
        let changed = run(7).iter().enumerate().filter(|(k, m)| **m != pool[k % 2]).count();
        assert!(changed > 150, "{changed} of 200 mutants changed");
    }

    #[test]
    fn number_edits_reach_boundary_values() {
        let mut rng = SplitMix::new(1);
        let seen: std::collections::BTreeSet<Vec<u8>> = (0..400)
            .map(|_| {
                let mut d = b"x 12 y".to_vec();
                replace_number(&mut d, &mut rng);
                d
            })
            .collect();
        assert!(seen.contains(b"x 18446744073709551616 y".as_slice()));
        assert!(seen.contains(b"x  y".as_slice()));
    }
}
