//! Axes for the line and strip plots: linear or logarithmic scales, "nice" ticks, the
//! frame, grid, tick labels and axis titles.

use super::draw::{palette, Align, Canvas};

/// A map from data values to [0, 1] along one axis.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scale {
    pub lo: f64,
    pub hi: f64,
    /// Logarithmic (base 10); `lo` must then be positive.
    pub log: bool,
}

impl Scale {
    /// The position of `v` in [0, 1] (outside for values out of range).
    pub fn frac(&self, v: f64) -> f64 {
        let (a, b, v) = if self.log {
            (self.lo.log10(), self.hi.log10(), v.max(f64::MIN_POSITIVE).log10())
        } else {
            (self.lo, self.hi, v)
        };
        if b > a {
            (v - a) / (b - a)
        } else {
            0.5
        }
    }

    /// Ticks with labels: about `n` round values for a linear scale, the powers of ten (or
    /// of 10 with 2 and 5 between them when fewer than three decades) for a log scale.
    pub fn ticks(&self, n: usize) -> Vec<(f64, String)> {
        if self.log {
            let (a, b) = (self.lo.log10().floor() as i32, self.hi.log10().ceil() as i32);
            let mults: &[f64] = if b - a < 3 { &[1.0, 2.0, 5.0] } else { &[1.0] };
            let mut out = Vec::new();
            for e in a..=b {
                for m in mults {
                    let v = m * 10f64.powi(e);
                    if v >= self.lo * (1.0 - 1e-9) && v <= self.hi * (1.0 + 1e-9) {
                        out.push((v, log_label(v, e)));
                    }
                }
            }
            out
        } else {
            let (step, decimals) = nice_step(self.hi - self.lo, n);
            let mut v = (self.lo / step).ceil() * step;
            let mut out = Vec::new();
            while v <= self.hi + step * 1e-9 {
                let shown = if v.abs() < step * 1e-9 { 0.0 } else { v };
                out.push((shown, format!("{shown:.decimals$}")));
                v += step;
            }
            out
        }
    }
}

fn log_label(v: f64, e: i32) -> String {
    if (-3..=4).contains(&e) {
        let decimals = (-e).max(0) as usize;
        format!("{v:.decimals$}")
    } else {
        format!("{v:.0e}")
    }
}

/// A round step (1, 2 or 5 times a power of ten) giving about `n` intervals over `span`,
/// and the decimals its multiples need.
pub fn nice_step(span: f64, n: usize) -> (f64, usize) {
    let span = if span.is_finite() && span > 0.0 { span } else { 1.0 };
    let raw = span / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let m = if norm < 1.5 {
        1.0
    } else if norm < 3.0 {
        2.0
    } else if norm < 7.0 {
        5.0
    } else {
        10.0
    };
    let step = m * mag;
    (step, (-step.log10().floor()).max(0.0) as usize)
}

/// A plot area on a canvas with its two scales.
#[derive(Clone, Copy, Debug)]
pub struct Axes {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
    pub x: Scale,
    pub y: Scale,
}

impl Axes {
    /// The pixel column of data value `x`.
    pub fn px(&self, x: f64) -> f64 {
        self.left + self.x.frac(x) * self.width
    }

    /// The pixel row of data value `y`.
    pub fn py(&self, y: f64) -> f64 {
        self.top + self.height - self.y.frac(y) * self.height
    }

    /// Grid lines at the y ticks, the frame, the tick labels and the axis titles. `xticks`
    /// may be empty (category axes label themselves).
    pub fn draw(&self, c: &mut Canvas, xticks: &[(f64, String)], yticks: &[(f64, String)], xlabel: &str, ylabel: &str) {
        let (l, t, r, b) = (self.left, self.top, self.left + self.width, self.top + self.height);
        for (v, _) in yticks {
            let y = self.py(*v).round() + 0.5;
            c.line(l, y, r, y, 1.0, palette::GRID);
        }
        c.stroke_rect(
            l.round() as i64 - 1,
            t.round() as i64 - 1,
            self.width.round() as i64 + 2,
            self.height.round() as i64 + 2,
            1,
            palette::MUTED,
        );
        let size = 12.0;
        let lh = c.line_height(size);
        let mut widest = 0.0f64;
        for (v, label) in yticks {
            let y = self.py(*v);
            c.line(l - 5.0, y, l - 1.0, y, 1.0, palette::MUTED);
            widest = widest.max(c.text(l - 8.0, y - lh / 2.0, size, palette::TEXT, label, Align::Right));
        }
        for (v, label) in xticks {
            let x = self.px(*v);
            c.line(x, b + 1.0, x, b + 5.0, 1.0, palette::MUTED);
            c.text(x, b + 7.0, size, palette::TEXT, label, Align::Center);
        }
        if !xlabel.is_empty() {
            c.text((l + r) / 2.0, b + 10.0 + lh, 13.0, palette::TEXT, xlabel, Align::Center);
        }
        if !ylabel.is_empty() {
            let lh13 = c.line_height(13.0);
            let len = c.text_width(13.0, ylabel);
            c.text_vertical(
                l - 14.0 - widest - lh13 / 2.0,
                (t + b) / 2.0 - len / 2.0,
                13.0,
                palette::TEXT,
                ylabel,
                true,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps_are_one_two_five() {
        assert_eq!(nice_step(1.0, 5), (0.2, 1));
        assert_eq!(nice_step(10.0, 5), (2.0, 0));
        assert_eq!(nice_step(7.3, 4), (2.0, 0));
        assert_eq!(nice_step(0.03, 3), (0.01, 2));
    }

    #[test]
    fn linear_ticks_cover_the_range() {
        let s = Scale {
            lo: 0.0,
            hi: 1.0,
            log: false,
        };
        let t: Vec<String> = s.ticks(5).into_iter().map(|t| t.1).collect();
        assert_eq!(t, ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
    }

    #[test]
    fn log_ticks_are_powers_of_ten() {
        let s = Scale {
            lo: 1e-4,
            hi: 20.0,
            log: true,
        };
        let t: Vec<String> = s.ticks(5).into_iter().map(|t| t.1).collect();
        assert_eq!(t, ["1e-4", "0.001", "0.01", "0.1", "1", "10"]);
        assert!((s.frac(1e-4)).abs() < 1e-12 && (s.frac(20.0) - 1.0).abs() < 1e-12);
    }
}
