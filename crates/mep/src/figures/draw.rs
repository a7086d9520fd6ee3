//! A small raster canvas on an `image::RgbImage`: rectangles, anti-aliased lines and
//! discs, and text in the embedded DejaVu Sans (`assets/DejaVuSans.ttf`, rendered by
//! `ab_glyph`), so that figures look the same on machines without system fonts. PNG files
//! are encoded by the `image` crate and written atomically.

use crate::{MepError, Result};
use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};
use image::{ImageEncoder, RgbImage};
use std::path::Path;

/// DejaVu Sans 2.37 (Bitstream Vera licence: `assets/LICENSE-DejaVu`).
static FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// An RGB colour.
pub type Rgb = [u8; 3];

/// The palette of every figure (matplotlib's "tab10" where it has the colour).
pub mod palette {
    use super::Rgb;
    pub const WHITE: Rgb = [255, 255, 255];
    pub const BLACK: Rgb = [0, 0, 0];
    pub const TEXT: Rgb = [30, 30, 30];
    pub const MUTED: Rgb = [110, 110, 110];
    pub const GRID: Rgb = [225, 225, 225];
    pub const FRAME: Rgb = [170, 170, 170];
    pub const PLACEHOLDER: Rgb = [236, 236, 236];
    /// The target class: its bar, the frame of a cell that leaves it, the points where a
    /// path leaves it.
    pub const TARGET: Rgb = [214, 39, 40];
    /// The other classes' bars.
    pub const BAR: Rgb = [125, 150, 185];
    /// The straight line.
    pub const LINE: Rgb = [31, 119, 180];
    /// The found path.
    pub const PATH: Rgb = [255, 127, 14];
    pub const LINEAR: Rgb = [44, 160, 44];
    pub const NONLINEAR: Rgb = [255, 127, 14];
    pub const NONE: Rgb = [214, 39, 40];
    pub const ERROR: Rgb = [127, 127, 127];
}

/// The embedded font.
pub fn font() -> Result<FontRef<'static>> {
    FontRef::try_from_slice(FONT_BYTES).map_err(|e| {
        MepError::unusable(
            "the font embedded from crates/mep/assets/DejaVuSans.ttf",
            format!("does not parse: {e}"),
        )
    })
}

/// Horizontal anchoring of text at its x.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Center,
    Right,
}

/// A coverage mask of rendered text, row-major, `w × h`.
struct Mask {
    w: usize,
    h: usize,
    a: Vec<f32>,
}

impl Mask {
    /// The mask turned 90° counter-clockwise: text that reads from bottom to top.
    fn rotated_ccw(&self) -> Mask {
        let (w, h) = (self.h, self.w);
        let mut a = vec![0.0; w * h];
        for y in 0..self.h {
            for x in 0..self.w {
                // (x, y) → (y, W - 1 - x)
                a[(self.w - 1 - x) * w + y] = self.a[y * self.w + x];
            }
        }
        Mask { w, h, a }
    }
}

/// An RGB image to draw on, with the embedded font. Coordinates are pixels from the
/// top-left corner; anything outside the image is clipped.
pub struct Canvas<'f> {
    img: RgbImage,
    font: &'f FontRef<'static>,
}

impl<'f> Canvas<'f> {
    /// A white `w × h` canvas.
    pub fn new(w: u32, h: u32, font: &'f FontRef<'static>) -> Self {
        Canvas {
            img: RgbImage::from_pixel(w.max(1), h.max(1), image::Rgb(palette::WHITE)),
            font,
        }
    }

    pub fn into_image(self) -> RgbImage {
        self.img
    }

    /// Mixes `c` into pixel (x, y) with weight `a` in [0, 1].
    pub fn blend(&mut self, x: i64, y: i64, c: Rgb, a: f32) {
        if x < 0 || y < 0 || x >= self.img.width() as i64 || y >= self.img.height() as i64 || a <= 0.0 {
            return;
        }
        let a = a.min(1.0);
        let p = self.img.get_pixel_mut(x as u32, y as u32);
        for (v, c) in p.0.iter_mut().zip(c) {
            *v = (*v as f32 * (1.0 - a) + c as f32 * a).round() as u8;
        }
    }

    /// Fills the rectangle with top-left (x, y) and size w × h.
    pub fn fill_rect(&mut self, x: i64, y: i64, w: i64, h: i64, c: Rgb) {
        let (x0, y0) = (x.max(0), y.max(0));
        let x1 = (x + w).min(self.img.width() as i64);
        let y1 = (y + h).min(self.img.height() as i64);
        for yy in y0..y1 {
            for xx in x0..x1 {
                self.img.put_pixel(xx as u32, yy as u32, image::Rgb(c));
            }
        }
    }

    /// The outline of a rectangle, `t` pixels thick, drawn inside (x, y, w, h).
    pub fn stroke_rect(&mut self, x: i64, y: i64, w: i64, h: i64, t: i64, c: Rgb) {
        self.fill_rect(x, y, w, t, c);
        self.fill_rect(x, y + h - t, w, t, c);
        self.fill_rect(x, y, t, h, c);
        self.fill_rect(x + w - t, y, t, h, c);
    }

    /// An anti-aliased segment of `width` pixels with round caps.
    pub fn line(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, width: f64, c: Rgb) {
        let r = width / 2.0;
        let (dx, dy) = (x1 - x0, y1 - y0);
        let len2 = dx * dx + dy * dy;
        let xa = (x0.min(x1) - r - 1.0).floor() as i64;
        let xb = (x0.max(x1) + r + 1.0).ceil() as i64;
        let ya = (y0.min(y1) - r - 1.0).floor() as i64;
        let yb = (y0.max(y1) + r + 1.0).ceil() as i64;
        for y in ya.max(0)..=yb.min(self.img.height() as i64) {
            for x in xa.max(0)..=xb.min(self.img.width() as i64) {
                let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
                let s = if len2 > 0.0 {
                    (((px - x0) * dx + (py - y0) * dy) / len2).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let d = ((px - x0 - s * dx).powi(2) + (py - y0 - s * dy).powi(2)).sqrt();
                self.blend(x, y, c, (r + 0.5 - d).clamp(0.0, 1.0) as f32);
            }
        }
    }

    /// Segments through `points`.
    pub fn polyline(&mut self, points: &[(f64, f64)], width: f64, c: Rgb) {
        for w in points.windows(2) {
            self.line(w[0].0, w[0].1, w[1].0, w[1].1, width, c);
        }
    }

    /// An anti-aliased filled disc.
    pub fn disc(&mut self, cx: f64, cy: f64, r: f64, c: Rgb) {
        self.line(cx, cy, cx, cy, 2.0 * r, c);
    }

    /// The width in pixels of `s` at `size` px.
    pub fn text_width(&self, size: f32, s: &str) -> f64 {
        let scaled = self.font.as_scaled(PxScale::from(size));
        let mut caret = 0.0f32;
        let mut prev = None;
        for ch in s.chars() {
            let id = scaled.glyph_id(ch);
            if let Some(p) = prev {
                caret += scaled.kern(p, id);
            }
            caret += scaled.h_advance(id);
            prev = Some(id);
        }
        caret as f64
    }

    /// The height of a line of text at `size` px (ascent − descent).
    pub fn line_height(&self, size: f32) -> f64 {
        let scaled = self.font.as_scaled(PxScale::from(size));
        (scaled.ascent() - scaled.descent()).ceil() as f64
    }

    fn raster(&self, size: f32, s: &str) -> Mask {
        let scale = PxScale::from(size);
        let scaled = self.font.as_scaled(scale);
        let w = self.text_width(size, s).ceil().max(1.0) as usize;
        let h = self.line_height(size).max(1.0) as usize;
        let mut a = vec![0.0f32; w * h];
        let mut caret = 0.0f32;
        let mut prev = None;
        for ch in s.chars() {
            let id = scaled.glyph_id(ch);
            if let Some(p) = prev {
                caret += scaled.kern(p, id);
            }
            let glyph = id.with_scale_and_position(scale, point(caret, scaled.ascent()));
            caret += scaled.h_advance(id);
            prev = Some(id);
            if let Some(og) = self.font.outline_glyph(glyph) {
                let bb = og.px_bounds();
                og.draw(|gx, gy, cov| {
                    let x = bb.min.x as i64 + gx as i64;
                    let y = bb.min.y as i64 + gy as i64;
                    if x >= 0 && y >= 0 && (x as usize) < w && (y as usize) < h {
                        let v = &mut a[y as usize * w + x as usize];
                        *v = v.max(cov);
                    }
                });
            }
        }
        Mask { w, h, a }
    }

    fn stamp(&mut self, m: &Mask, x: i64, y: i64, c: Rgb) {
        for yy in 0..m.h {
            for xx in 0..m.w {
                self.blend(x + xx as i64, y + yy as i64, c, m.a[yy * m.w + xx]);
            }
        }
    }

    /// Draws `s` at `size` px with its top at `y`, anchored at `x` by `align`; returns its width.
    pub fn text(&mut self, x: f64, y: f64, size: f32, c: Rgb, s: &str, align: Align) -> f64 {
        let m = self.raster(size, s);
        let left = match align {
            Align::Left => x,
            Align::Center => x - m.w as f64 / 2.0,
            Align::Right => x - m.w as f64,
        };
        self.stamp(&m, left.round() as i64, y.round() as i64, c);
        m.w as f64
    }

    /// Draws `s` turned 90° counter-clockwise (read from bottom to top), centred on `x`, with
    /// its last letter at `y` (`end_at_top`) or its first letter at `y` (otherwise, the text
    /// then ending above `y`). Returns the length of the text in pixels.
    pub fn text_vertical(&mut self, x: f64, y: f64, size: f32, c: Rgb, s: &str, end_at_top: bool) -> f64 {
        let m = self.raster(size, s).rotated_ccw();
        let top = if end_at_top { y } else { y - m.h as f64 };
        self.stamp(&m, (x - m.w as f64 / 2.0).round() as i64, top.round() as i64, c);
        m.h as f64
    }

    /// Copies `img` with its top-left corner at (x, y).
    pub fn blit(&mut self, img: &RgbImage, x: i64, y: i64) {
        for (px, py, p) in img.enumerate_pixels() {
            let (xx, yy) = (x + px as i64, y + py as i64);
            if xx >= 0 && yy >= 0 && xx < self.img.width() as i64 && yy < self.img.height() as i64 {
                self.img.put_pixel(xx as u32, yy as u32, *p);
            }
        }
    }
}

/// `s` cut to at most `max` characters, an ellipsis marking the cut.
pub fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// `img` enlarged by the integer `factor` with nearest-neighbour sampling (pixels stay sharp).
pub fn upscale(img: &RgbImage, factor: u32) -> RgbImage {
    let f = factor.max(1);
    if f == 1 {
        return img.clone();
    }
    image::imageops::resize(
        img,
        img.width() * f,
        img.height() * f,
        image::imageops::FilterType::Nearest,
    )
}

/// An `[3, h, w]` planar image with values in [0, 1] (clamped) as 8-bit RGB.
pub fn planar_to_rgb(data: &[f32], h: usize, w: usize) -> RgbImage {
    let plane = h * w;
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let i = y as usize * w + x as usize;
        let v = |c: usize| {
            let v = data.get(c * plane + i).copied().unwrap_or(0.0);
            let v = if v.is_finite() { v.clamp(0.0, 1.0) } else { 0.0 };
            (v * 255.0).round() as u8
        };
        image::Rgb([v(0), v(1), v(2)])
    })
}

/// Encodes `img` as PNG and writes it to `out` atomically ([`crate::study::write_atomic`]), creating
/// the parent folder.
pub fn save_png(img: &RgbImage, out: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bytes)
        .write_image(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgb8)
        .map_err(|e| MepError::Results {
            path: out.to_path_buf(),
            msg: format!("encoding the PNG failed: {e}"),
        })?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| MepError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    crate::study::write_atomic(out, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_font_renders_text() {
        let f = font().unwrap();
        let mut c = Canvas::new(200, 40, &f);
        let w = c.text(10.0, 5.0, 16.0, palette::BLACK, "straight line", Align::Left);
        // DejaVu Sans at 16 px: "straight line" is about 100 px wide.
        assert!((80.0..130.0).contains(&w), "{w}");
        let img = c.into_image();
        let dark = img.pixels().filter(|p| p.0[0] < 128).count();
        assert!(dark > 100, "only {dark} dark pixels");
        // Nothing drawn left of the anchor.
        assert!((0..40).all(|y| (0..9).all(|x| img.get_pixel(x, y).0 == palette::WHITE)));
    }

    #[test]
    fn vertical_text_is_taller_than_wide() {
        let f = font().unwrap();
        let mut c = Canvas::new(40, 200, &f);
        let len = c.text_vertical(20.0, 10.0, 12.0, palette::BLACK, "checkerboard", true);
        let img = c.into_image();
        let ys: Vec<u32> = img
            .enumerate_pixels()
            .filter(|p| p.2 .0[0] < 128)
            .map(|p| p.1)
            .collect();
        let xs: Vec<u32> = img
            .enumerate_pixels()
            .filter(|p| p.2 .0[0] < 128)
            .map(|p| p.0)
            .collect();
        let span = |v: &[u32]| v.iter().max().unwrap() - v.iter().min().unwrap();
        assert!(span(&ys) > 3 * span(&xs), "{} vs {}", span(&ys), span(&xs));
        assert!(*ys.iter().min().unwrap() >= 10 && (*ys.iter().max().unwrap() as f64) <= 10.0 + len);
    }

    #[test]
    fn upscaling_is_nearest() {
        let img = RgbImage::from_fn(2, 1, |x, _| image::Rgb([x as u8 * 200, 0, 0]));
        let up = upscale(&img, 3);
        assert_eq!(up.dimensions(), (6, 3));
        assert_eq!(up.get_pixel(2, 2).0, [0, 0, 0]);
        assert_eq!(up.get_pixel(3, 0).0, [200, 0, 0]);
    }

    #[test]
    fn shorten_marks_the_cut() {
        assert_eq!(shorten("circle", 8), "circle");
        assert_eq!(shorten("checkerboard", 8), "checker…");
    }
}
