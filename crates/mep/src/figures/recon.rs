//! Decoder reconstructions: test images beside `decode(encode(x, cut))` for each cut with a
//! decoder, and the reconstruction error of each.

use super::draw::{font, palette, planar_to_rgb, save_png, shorten, Align, Canvas};
use super::{FigureContext, DECODERS, MIN_IMAGE_PX};
use crate::{MepError, Result};
use mep_data::Transform;
use mep_resnet::Cut;
use mep_tensor::Backend;
use std::path::Path;

/// What [`reconstructions`] drew.
#[derive(Clone, Debug, PartialEq)]
pub struct Reconstructions {
    pub width: u32,
    pub height: u32,
    /// The rows after the test images: one per cut.
    pub cuts: Vec<Cut>,
    /// The test images, one per column.
    pub indices: Vec<usize>,
    /// Per cut, per image: the mean squared error of the decoded image against the test
    /// image at the decoder's output size in [0, 1] (what the decoder was trained to lower).
    pub mse: Vec<Vec<f64>>,
}

/// `n` test images, one per class in class order (then the next image of each class),
/// for a reconstruction figure.
pub fn default_indices<B: Backend>(ctx: &FigureContext<B>, n: usize) -> Result<Vec<usize>> {
    let labels = &ctx.test_split()?.labels;
    let classes = ctx.manifest.settings.classes.len().max(1);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        if let Some(v) = by_class.get_mut(l) {
            v.push(i);
        }
    }
    let mut out = Vec::new();
    for round in 0.. {
        let before = out.len();
        for v in &by_class {
            if out.len() < n {
                if let Some(&i) = v.get(round) {
                    out.push(i);
                }
            }
        }
        if out.len() >= n || out.len() == before {
            break;
        }
    }
    Ok(out)
}

/// Draws test images `indices` (columns) above their reconstructions
/// `decode(encode(x, cut))` by the decoder of each of `cuts` (rows; empty: every decoder
/// of `ctx`) to `out`, each with its mean squared error. Errors: no index, an index out of
/// range, no decoder for a cut (or none at all).
pub fn reconstructions<B: Backend>(
    ctx: &FigureContext<B>,
    cuts: &[Cut],
    indices: &[usize],
    out: &Path,
) -> Result<Reconstructions> {
    if indices.is_empty() {
        return Err(MepError::unusable(
            "a reconstruction figure",
            "needs at least one test image",
        ));
    }
    let cuts: Vec<Cut> = if cuts.is_empty() {
        ctx.decoders.keys().copied().collect()
    } else {
        cuts.to_vec()
    };
    if cuts.is_empty() {
        return Err(MepError::Missing {
            path: ctx.dir.join(DECODERS),
            what: "no decoder in this study".into(),
            hint: Some(format!(
                "train one with `mep decoder train --cut pool --out {}/{DECODERS}/pool.safetensors`",
                ctx.dir.display()
            )),
        });
    }
    for cut in &cuts {
        if !ctx.decoders.contains_key(cut) {
            return Err(MepError::Missing {
                path: ctx.dir.join(DECODERS).join(format!("{cut}.safetensors")),
                what: format!("no decoder for `{cut}`"),
                hint: None,
            });
        }
    }
    let b = &ctx.backend;
    let s = &ctx.manifest.settings;
    let x = ctx.test_inputs(indices)?;
    let side = ctx.input_size()?;
    let originals: Vec<_> = x
        .to_vec(b)?
        .chunks(3 * side * side)
        .map(|p| {
            let plane = side * side;
            let raw: Vec<f32> = p
                .iter()
                .enumerate()
                .map(|(i, v)| v * s.std[i / plane] + s.mean[i / plane])
                .collect();
            planar_to_rgb(&raw, side, side)
        })
        .collect();
    let mut decoded = Vec::new();
    let mut mse = Vec::new();
    for cut in &cuts {
        let dec = &ctx.decoders[cut];
        let z = ctx.net.encode(b, &x, *cut)?;
        let y = crate::decoder::decode(b, dec, &z)?.to_vec(b)?;
        let out_size = dec.config.out_size;
        let target = ctx
            .test_images(indices, &Transform::new(Some(out_size), [0.0; 3], [1.0; 3]))?
            .to_vec(b)?;
        let per = 3 * out_size * out_size;
        mse.push(
            y.chunks(per)
                .zip(target.chunks(per))
                .map(|(a, t)| {
                    a.iter()
                        .zip(t)
                        .map(|(a, t)| (*a as f64 - *t as f64).powi(2))
                        .sum::<f64>()
                        / per as f64
                })
                .collect::<Vec<f64>>(),
        );
        decoded.push(
            y.chunks(per)
                .map(|p| planar_to_rgb(p, out_size, out_size))
                .collect::<Vec<_>>(),
        );
    }

    let f = font()?;
    let largest = std::iter::once(side)
        .chain(cuts.iter().map(|c| ctx.decoders[c].config.out_size))
        .max()
        .unwrap_or(side);
    let cell = (MIN_IMAGE_PX.div_ceil(largest).max(1) * largest) as u32;
    let label_w = 130u32;
    let gap = 10u32;
    let margin = 14u32;
    let head_h = 34u32;
    let row_h = cell + 26;
    let n = indices.len() as u32;
    let width = (2 * margin + label_w + n * cell + (n - 1) * gap).max(520);
    let top = margin + 50;
    let height = top + head_h + (1 + cuts.len() as u32) * row_h + margin;
    let mut c = Canvas::new(width, height, &f);
    c.text(
        margin as f64,
        margin as f64,
        17.0,
        palette::TEXT,
        "Decoder reconstructions: decode(encode(x, cut))",
        Align::Left,
    );
    c.text(
        margin as f64,
        (margin + 24) as f64,
        13.0,
        palette::MUTED,
        "top: test images as the network sees them (normalisation undone); below: decoded from each cut, with the MSE",
        Align::Left,
    );
    let split = ctx.test_split()?;
    let col_x = |k: u32| margin + label_w + k * (cell + gap);
    for (k, &i) in indices.iter().enumerate() {
        let cx = col_x(k as u32) as f64 + cell as f64 / 2.0;
        let class = split
            .labels
            .get(i)
            .and_then(|&l| s.classes.get(l))
            .map_or("?".to_string(), |n| shorten(n, 14));
        c.text(cx, top as f64, 12.0, palette::TEXT, &format!("#{i}"), Align::Center);
        c.text(cx, (top + 16) as f64, 11.0, palette::MUTED, &class, Align::Center);
    }
    let rows = std::iter::once(("test image".to_string(), &originals, None)).chain(
        cuts.iter()
            .zip(&decoded)
            .zip(&mse)
            .map(|((cut, imgs), m)| (format!("from `{cut}`"), imgs, Some(m))),
    );
    for (r, (label, imgs, m)) in rows.enumerate() {
        let y = top + head_h + r as u32 * row_h;
        c.text(
            margin as f64,
            (y + cell / 2 - 8) as f64,
            13.0,
            palette::TEXT,
            &label,
            Align::Left,
        );
        for (k, img) in imgs.iter().enumerate() {
            let x = col_x(k as u32);
            let big = image::imageops::resize(img, cell, cell, image::imageops::FilterType::Nearest);
            c.blit(&big, x as i64, y as i64);
            c.stroke_rect(
                x as i64 - 1,
                y as i64 - 1,
                cell as i64 + 2,
                cell as i64 + 2,
                1,
                palette::FRAME,
            );
            if let Some(m) = m {
                c.text(
                    x as f64 + cell as f64 / 2.0,
                    (y + cell + 4) as f64,
                    11.0,
                    palette::MUTED,
                    &format!("MSE {:.4}", m[k]),
                    Align::Center,
                );
            }
        }
    }
    save_png(&c.into_image(), out)?;
    Ok(Reconstructions {
        width,
        height,
        cuts,
        indices: indices.to_vec(),
        mse,
    })
}
