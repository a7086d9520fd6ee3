//! Rows stored over the window of the plane outside which they are zero.
//!
//! A zonotope's noise symbol is born at one neuron (the ReLU it relaxes) and spreads by one
//! pixel per 3×3 convolution, so for many layers after its birth it is zero on most of each
//! plane. A [`Row`] keeps only the rectangle of pixels (all channels) that can be non-zero;
//! convolving, scaling and summing inside it gives the same numbers as the dense row, since
//! the values left out are zeros that would only have been added. On the input space of the
//! demo's ResNet-20 the symbols' windows cover about a third of the planes they pass
//! through (BENCHMARKS.md, "Symbols on their windows").

use std::borrow::Cow;

/// Pixels `y0..y1 × x0..x1` of a plane; empty when either range is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub y0: usize,
    pub y1: usize,
    pub x0: usize,
    pub x1: usize,
}

impl Window {
    pub const EMPTY: Window = Window {
        y0: 0,
        y1: 0,
        x0: 0,
        x1: 0,
    };

    pub fn full(h: usize, w: usize) -> Window {
        Window {
            y0: 0,
            y1: h,
            x0: 0,
            x1: w,
        }
    }

    pub fn pixel(y: usize, x: usize) -> Window {
        Window {
            y0: y,
            y1: y + 1,
            x0: x,
            x1: x + 1,
        }
    }

    pub fn height(&self) -> usize {
        self.y1 - self.y0
    }

    pub fn width(&self) -> usize {
        self.x1 - self.x0
    }

    pub fn area(&self) -> usize {
        self.height() * self.width()
    }

    pub fn is_empty(&self) -> bool {
        self.y0 >= self.y1 || self.x0 >= self.x1
    }

    /// Whether every pixel of `o` lies in `self` (always, for an empty `o`).
    pub fn contains(&self, o: &Window) -> bool {
        o.is_empty() || (self.y0 <= o.y0 && o.y1 <= self.y1 && self.x0 <= o.x0 && o.x1 <= self.x1)
    }

    /// The smallest window holding both.
    pub fn union(&self, o: &Window) -> Window {
        if o.is_empty() {
            return *self;
        }
        if self.is_empty() {
            return *o;
        }
        Window {
            y0: self.y0.min(o.y0),
            y1: self.y1.max(o.y1),
            x0: self.x0.min(o.x0),
            x1: self.x1.max(o.x1),
        }
    }

    /// The outputs `0..out` of a sliding window (size `k`, stride `s`, padding `p`) that read
    /// an input in `lo..hi`: output `o` reads inputs `o·s − p .. o·s − p + k`.
    fn reach(lo: usize, hi: usize, k: usize, s: usize, p: usize, out: usize) -> (usize, usize) {
        let first = (lo + p).saturating_sub(k - 1).div_ceil(s);
        let last = ((hi - 1 + p) / s + 1).min(out);
        (first.min(last), last)
    }

    /// The output pixels of a `k×k` window op (stride `s`, padding `p`, output plane
    /// `oh×ow`) that read a pixel of this window: where the op's output of a row zero
    /// outside this window can be non-zero.
    pub fn slide(&self, k: usize, s: usize, p: usize, oh: usize, ow: usize) -> Window {
        if self.is_empty() {
            return Window::EMPTY;
        }
        let (y0, y1) = Window::reach(self.y0, self.y1, k, s, p, oh);
        let (x0, x1) = Window::reach(self.x0, self.x1, k, s, p, ow);
        let w = Window { y0, y1, x0, x1 };
        if w.is_empty() {
            Window::EMPTY
        } else {
            w
        }
    }

    /// `(dense index, window index, length)` of every run of pixels along x, channel by
    /// channel, for a tensor `[c, h, w]`.
    pub fn runs(&self, [c, h, w]: [usize; 3]) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        let (wh, ww) = (self.height(), self.width());
        let rows = if self.is_empty() { 0 } else { c * wh };
        (0..rows).map(move |q| {
            let (ch, dy) = (q / wh, q % wh);
            ((ch * h + self.y0 + dy) * w + self.x0, q * ww, ww)
        })
    }
}

/// One row of a zonotope: its values over `win` for every channel, `[c, win.height(),
/// win.width()]`, zero elsewhere.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub win: Window,
    pub data: Vec<f64>,
}

impl Row {
    /// A dense row of a tensor `[c, h, w]`.
    pub fn full([_, h, w]: [usize; 3], data: Vec<f64>) -> Row {
        Row {
            win: Window::full(h, w),
            data,
        }
    }

    pub fn zero() -> Row {
        Row {
            win: Window::EMPTY,
            data: Vec::new(),
        }
    }

    /// The row as a dense `[c, h, w]` slice (borrowed when the window is the whole plane).
    pub fn dense(&self, dims: [usize; 3]) -> Cow<'_, [f64]> {
        let [_, h, w] = dims;
        if self.win == Window::full(h, w) {
            return Cow::Borrowed(&self.data);
        }
        let mut out = vec![0.0; dims.iter().product()];
        for (k, j, len) in self.win.runs(dims) {
            out[k..k + len].copy_from_slice(&self.data[j..j + len]);
        }
        Cow::Owned(out)
    }

    /// The value at dense index `k` of a tensor `[c, h, w]`.
    pub fn get(&self, [_, h, w]: [usize; 3], k: usize) -> f64 {
        let (ch, y, x) = (k / (h * w), k / w % h, k % w);
        if self.win.contains(&Window::pixel(y, x)) {
            self.data[(ch * self.win.height() + y - self.win.y0) * self.win.width() + x - self.win.x0]
        } else {
            0.0
        }
    }

    /// The row over a window holding its own (zero in the added pixels).
    pub fn widened(&self, dims: [usize; 3], win: Window) -> Row {
        debug_assert!(win.contains(&self.win));
        let mut out = Row {
            win,
            data: vec![0.0; dims[0] * win.area()],
        };
        out.add(dims, self);
        out
    }

    /// `self += o`, widening the window when `o`'s does not fit in it.
    pub fn add(&mut self, dims: [usize; 3], o: &Row) {
        if !self.win.contains(&o.win) {
            *self = self.widened(dims, self.win.union(&o.win));
        }
        let [c, _, _] = dims;
        let (sw, ow) = (self.win, o.win);
        for ch in 0..if ow.is_empty() { 0 } else { c } {
            for dy in 0..ow.height() {
                let src = &o.data[(ch * ow.height() + dy) * ow.width()..][..ow.width()];
                let at = (ch * sw.height() + ow.y0 + dy - sw.y0) * sw.width() + ow.x0 - sw.x0;
                self.data[at..at + ow.width()]
                    .iter_mut()
                    .zip(src)
                    .for_each(|(a, b)| *a += b);
            }
        }
    }

    /// Multiplies every value by its neuron's factor in `scale` (a dense tensor `dims`; a
    /// factor 0 writes 0, whatever the value), then, with `trim`, shrinks the window to the
    /// pixels left with a non-zero value in some channel (no copy when it already fits). One
    /// pass over the row: the ReLU's scaling was a quarter of the bounds' time when it
    /// matched each neuron's kind (kept, zeroed, scaled) and trimmed in a pass of its own.
    pub fn scale(&mut self, [c, h, w]: [usize; 3], scale: &[f64], trim: bool) {
        if self.win.is_empty() {
            return;
        }
        let (wh, ww) = (self.win.height(), self.win.width());
        let area = wh * ww;
        let mut live = vec![false; if trim { area } else { 0 }];
        for (ch, plane) in self.data.chunks_mut(area).take(c).enumerate() {
            for (dy, run) in plane.chunks_mut(ww).enumerate() {
                let k = (ch * h + self.win.y0 + dy) * w + self.win.x0;
                for (v, &f) in run.iter_mut().zip(&scale[k..k + ww]) {
                    *v = if f == 0.0 { 0.0 } else { *v * f };
                }
            }
            if trim {
                mark_live(&mut live, plane);
            }
        }
        if trim {
            self.trim_to(c, &live);
        }
    }

    /// Shrinks the window to the bounding box of its `live` pixels (window-major).
    fn trim_to(&mut self, c: usize, live: &[bool]) {
        let (wh, ww) = (self.win.height(), self.win.width());
        let (mut y0, mut y1, mut x0, mut x1) = (wh, 0, ww, 0);
        for (dy, run) in live.chunks(ww.max(1)).enumerate() {
            if let Some(first) = run.iter().position(|&v| v) {
                let last = run.iter().rposition(|&v| v).unwrap_or(first);
                y0 = y0.min(dy);
                y1 = y1.max(dy + 1);
                x0 = x0.min(first);
                x1 = x1.max(last + 1);
            }
        }
        if y0 >= y1 {
            *self = Row::zero();
            return;
        }
        if (y0, y1, x0, x1) == (0, wh, 0, ww) {
            return;
        }
        let win = Window {
            y0: self.win.y0 + y0,
            y1: self.win.y0 + y1,
            x0: self.win.x0 + x0,
            x1: self.win.x0 + x1,
        };
        let mut data = Vec::with_capacity(c * win.area());
        for ch in 0..c {
            for dy in y0..y1 {
                data.extend_from_slice(&self.data[(ch * wh + dy) * ww + x0..][..x1 - x0]);
            }
        }
        *self = Row { win, data };
    }
}

/// `live[p] |= plane[p] ≠ 0` (one channel of a row over its window).
fn mark_live(live: &mut [bool], plane: &[f64]) {
    live.iter_mut().zip(plane).for_each(|(l, &v)| *l |= v != 0.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The windows `slide` finds hold every output a dense loop finds non-zero.
    #[test]
    fn slide_holds_every_output_that_reads_the_window() {
        for (k, s, p, h) in [
            (3, 1, 1, 9),
            (3, 2, 1, 9),
            (1, 1, 0, 7),
            (1, 2, 0, 8),
            (3, 2, 1, 8),
            (7, 2, 3, 12),
        ] {
            let out = (h + 2 * p - k) / s + 1;
            for lo in 0..h {
                for hi in lo + 1..=h {
                    let win = Window {
                        y0: lo,
                        y1: hi,
                        x0: 0,
                        x1: 1,
                    };
                    let got = win.slide(k, s, p, out, out);
                    for o in 0..out {
                        let reads = (0..k).any(|t| (o * s + t).checked_sub(p).is_some_and(|i| lo <= i && i < hi));
                        let inside = got.y0 <= o && o < got.y1;
                        assert_eq!(reads, inside, "k{k} s{s} p{p} h{h} [{lo},{hi}) output {o}");
                    }
                }
            }
        }
    }

    #[test]
    fn add_widens_and_trim_shrinks_back() {
        let dims = [2, 4, 5];
        let mut a = Row {
            win: Window::pixel(1, 1),
            data: vec![1.0, 2.0],
        };
        let b = Row {
            win: Window::pixel(3, 4),
            data: vec![0.0, 5.0],
        };
        a.add(dims, &b);
        let d = a.dense(dims);
        assert_eq!(d[5 + 1], 1.0);
        assert_eq!(d[20 + 5 + 1], 2.0);
        assert_eq!(d[20 + 15 + 4], 5.0);
        assert_eq!(d.iter().filter(|v| **v != 0.0).count(), 3);
        assert_eq!(a.get(dims, 20 + 15 + 4), 5.0);
        a.data.iter_mut().for_each(|v| {
            if *v != 5.0 {
                *v = 0.0
            }
        });
        a.scale(dims, &[1.0; 40], true);
        assert_eq!(a.win, Window::pixel(3, 4));
        assert_eq!(a.data, vec![0.0, 5.0]);
    }
}
