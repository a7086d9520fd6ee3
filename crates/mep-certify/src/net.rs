//! The folded network in f64, as a straight program of ops on a stack of point batches.
//!
//! A batch holds one activation for each of `n` points (NCHW, the batch axis being the
//! points). The program runs `relu(stem)`, the optional max-pool, every block as
//! `Save, Conv, Relu, …, Conv, AddShortcut, Relu`, then the average pool and the classifier;
//! a cut starts it at the first op of the segment after the cut.

use crate::conv;
use crate::error::{CertifyError, Result};
use crate::window::{Row, Window};
use mep_resnet::{Cut, FoldedConv, FoldedResNet, FoldedShortcut};
use mep_tensor::float::{max_nan, relu};
use mep_tensor::{Backend, Conv2dGeom, Nchw};
use rayon::prelude::*;

/// One activation of `n` points: `data[p·dim .. (p+1)·dim]` is point `p`, laid out `[c, h, w]`.
#[derive(Clone, Debug)]
pub(crate) struct Batch {
    pub n: usize,
    pub dims: [usize; 3],
    pub data: Vec<f64>,
}

impl Batch {
    pub fn dim(&self) -> usize {
        self.dims.iter().product()
    }
    pub fn row(&self, p: usize) -> &[f64] {
        let d = self.dim();
        &self.data[p * d..(p + 1) * d]
    }
}

/// A folded convolution in f64.
pub(crate) struct Conv64 {
    w: Vec<f64>,
    pub bias: Vec<f64>,
    /// `|w|`, made on first use by the bound propagation (the exact analysis never needs it).
    abs_w: std::sync::OnceLock<Vec<f64>>,
    /// The weights as the direct kernel of the bounds reads them ([`crate::direct::pack`]).
    direct_w: std::sync::OnceLock<Vec<f64>>,
    pub c_in: usize,
    c_out: usize,
    pub k: usize,
    stride: usize,
    pad: usize,
}

impl Conv64 {
    fn new<B: Backend>(b: &B, c: &FoldedConv<'_, B>) -> Result<Self> {
        let w: Vec<f64> = c.w.to_vec(b)?.into_iter().map(f64::from).collect();
        let bias: Vec<f64> = c.bias.to_vec(b)?.into_iter().map(f64::from).collect();
        if w.len() != c.c_out * c.c_in * c.k * c.k || bias.len() != c.c_out {
            return Err(CertifyError::Shape {
                what: "folded convolution".into(),
                expected: format!(
                    "weight [{}, {}, {k}, {k}] and bias [{}]",
                    c.c_out,
                    c.c_in,
                    c.c_out,
                    k = c.k
                ),
                found: format!("{} and {} elements", w.len(), bias.len()),
            });
        }
        Ok(Conv64 {
            w,
            bias,
            abs_w: std::sync::OnceLock::new(),
            direct_w: std::sync::OnceLock::new(),
            c_in: c.c_in,
            c_out: c.c_out,
            k: c.k,
            stride: c.stride,
            pad: c.pad,
        })
    }

    /// The weights `[c_out, c_in, k, k]`.
    pub fn weights(&self) -> &[f64] {
        &self.w
    }

    pub fn geom(&self, n: usize, dims: [usize; 3]) -> Result<Conv2dGeom> {
        let [c, h, w] = dims;
        if c != self.c_in {
            return Err(CertifyError::Shape {
                what: "convolution input".into(),
                expected: format!("[{}, H, W]", self.c_in),
                found: format!("{dims:?}"),
            });
        }
        Ok(Conv2dGeom::square(
            "certify conv",
            Nchw { n, c, h, w },
            self.c_out,
            self.k,
            self.stride,
            self.pad,
        )?)
    }

    fn out_dims(&self, dims: [usize; 3]) -> Result<[usize; 3]> {
        let g = self.geom(1, dims)?;
        Ok([g.c_out, g.out_h(), g.out_w()])
    }

    fn forward(&self, x: &Batch) -> Result<Batch> {
        self.forward_with(x, &self.w, &self.bias)
    }

    /// The convolution of `x` with weights `w` (this layer's geometry) and bias `bias`.
    fn forward_with(&self, x: &Batch, w: &[f64], bias: &[f64]) -> Result<Batch> {
        let g = self.geom(x.n, x.dims)?;
        let mut data = vec![0.0; g.output().numel()];
        conv::conv2d(&g, &x.data, w, bias, &mut data);
        Ok(Batch {
            n: x.n,
            dims: [g.c_out, g.out_h(), g.out_w()],
            data,
        })
    }

    /// `Wᵀ y` for a batch `y` of this layer's outputs whose inputs have shape `in_dims`.
    pub fn transpose(&self, y: &Batch, in_dims: [usize; 3]) -> Result<Batch> {
        let g = self.geom(y.n, in_dims)?;
        let mut data = vec![0.0; g.input().numel()];
        conv::conv2d_bwd_input(&g, &y.data, &self.w, &mut data);
        Ok(Batch {
            n: y.n,
            dims: in_dims,
            data,
        })
    }

    /// `W x` without the bias for windowed rows of shape `dims` (see [`crate::window`]), and
    /// the output shape.
    pub fn linear_rows(&self, x: &[&Row], dims: [usize; 3]) -> Result<(Vec<Row>, [usize; 3])> {
        let g = self.geom(1, dims)?;
        let wt = self.direct_w.get_or_init(|| crate::direct::pack(&g, &self.w));
        Ok((
            crate::direct::conv2d_rows_direct(&g, wt, x),
            [g.c_out, g.out_h(), g.out_w()],
        ))
    }

    /// [`Conv64::linear_rows`] for the rows of one interval, all zero where `zero` is set
    /// (version 3, [`crate::shared_zeros`]): the same rows, bit for bit.
    pub fn linear_rows_shared(&self, x: &[&Row], dims: [usize; 3], zero: &[bool]) -> Result<(Vec<Row>, [usize; 3])> {
        let g = self.geom(1, dims)?;
        let wt = self.direct_w.get_or_init(|| crate::direct::pack(&g, &self.w));
        Ok((
            crate::shared_zeros::conv2d_rows_shared(&g, wt, x, zero),
            [g.c_out, g.out_h(), g.out_w()],
        ))
    }

    /// `|W| x`, the magnitude a bound's radius and the rounding error grow by.
    pub fn abs_part(&self, x: &Batch) -> Result<Batch> {
        let abs = self.abs_w.get_or_init(|| self.w.iter().map(|v| v.abs()).collect());
        self.forward_with(x, abs, &vec![0.0; self.c_out])
    }
}

/// How a block's input reaches the sum.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Shortcut64 {
    Identity,
    /// Index of the projection in [`Net64::convs`].
    Projection(usize),
    PadA {
        pad: usize,
        subsample: bool,
    },
}

/// One op of the program.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op {
    /// top ← conv(top) + bias.
    Conv(usize),
    /// top ← max(top, 0).
    Relu,
    /// top ← 3×3 max-pool, stride 2, padding 1.
    MaxPool,
    /// Keeps a copy of top beneath it (a block's input, for its shortcut).
    Save,
    /// top ← top + shortcut(saved), the saved copy dropped.
    AddShortcut(Shortcut64),
    /// top ← mean over each channel's plane.
    AvgPool,
    /// top ← fc_w · top + fc_b.
    Linear,
}

/// The ImageNet stem's max-pool window.
pub(crate) const POOL_K: usize = 3;
pub(crate) const POOL_STRIDE: usize = 2;
pub(crate) const POOL_PAD: usize = 1;

/// Output size of the stem's max-pool along an axis of `n`.
pub(crate) fn pool_out(n: usize) -> usize {
    (n + 2 * POOL_PAD - POOL_K) / POOL_STRIDE + 1
}

/// The folded network in f64.
pub(crate) struct Net64 {
    pub convs: Vec<Conv64>,
    pub ops: Vec<Op>,
    /// The first op of each segment: the stem, each stage, the average pool, the classifier.
    seg_start: Vec<usize>,
    pub fc_w: Vec<f64>,
    pub fc_b: Vec<f64>,
    pub features: usize,
    pub classes: usize,
    arch: mep_resnet::Arch,
    /// Channels at each cut position (input, stem, stages…, pool).
    channels: Vec<usize>,
}

impl Net64 {
    pub fn new<B: Backend>(b: &B, net: &FoldedResNet<B>) -> Result<Self> {
        let layers = net.layers();
        let mut convs = vec![Conv64::new(b, &layers.stem)?];
        let mut ops = vec![Op::Conv(0), Op::Relu];
        if layers.maxpool {
            ops.push(Op::MaxPool);
        }
        let mut seg_start = vec![0];
        let mut channels = vec![3, layers.stem.c_out];
        for blocks in &layers.stages {
            seg_start.push(ops.len());
            for blk in blocks {
                ops.push(Op::Save);
                let last = blk.convs.len().saturating_sub(1);
                for (i, c) in blk.convs.iter().enumerate() {
                    convs.push(Conv64::new(b, c)?);
                    ops.push(Op::Conv(convs.len() - 1));
                    if i < last {
                        ops.push(Op::Relu);
                    }
                }
                let sc = match &blk.shortcut {
                    FoldedShortcut::Identity => Shortcut64::Identity,
                    FoldedShortcut::Projection(c) => {
                        convs.push(Conv64::new(b, c)?);
                        Shortcut64::Projection(convs.len() - 1)
                    }
                    &FoldedShortcut::PadA { pad, subsample } => Shortcut64::PadA { pad, subsample },
                };
                ops.push(Op::AddShortcut(sc));
                ops.push(Op::Relu);
            }
            channels.push(blocks.last().and_then(|b| b.convs.last()).map_or(0, |c| c.c_out));
        }
        channels.push(layers.features);
        seg_start.push(ops.len());
        ops.push(Op::AvgPool);
        seg_start.push(ops.len());
        ops.push(Op::Linear);
        let fc_w: Vec<f64> = layers.fc_w.to_vec(b)?.into_iter().map(f64::from).collect();
        let fc_b: Vec<f64> = layers.fc_b.to_vec(b)?.into_iter().map(f64::from).collect();
        if fc_w.len() != layers.num_classes * layers.features || fc_b.len() != layers.num_classes {
            return Err(CertifyError::Shape {
                what: "classifier".into(),
                expected: format!(
                    "[{}, {}] and [{}]",
                    layers.num_classes, layers.features, layers.num_classes
                ),
                found: format!("{} and {} elements", fc_w.len(), fc_b.len()),
            });
        }
        Ok(Net64 {
            convs,
            ops,
            seg_start,
            fc_w,
            fc_b,
            features: layers.features,
            classes: layers.num_classes,
            arch: net.arch,
            channels,
        })
    }

    /// The first op to run for a point at `cut` of per-point `shape`, and the shape as
    /// `[c, h, w]`; checks that the whole program accepts it.
    pub fn start(&self, cut: Cut, shape: &[usize]) -> Result<(usize, [usize; 3])> {
        let p = self.arch.position(cut)?;
        let c = self.channels[p];
        let dims = match (cut, shape) {
            (Cut::Pool, &[f]) if f == c => [f, 1, 1],
            (Cut::Pool, _) => return Err(bad_shape(cut, shape, format!("[{c}]"))),
            (_, &[sc, h, w]) if sc == c && h > 0 && w > 0 => [sc, h, w],
            _ => return Err(bad_shape(cut, shape, format!("[{c}, H, W]"))),
        };
        let op = self.seg_start[p];
        self.check(op, dims).map_err(|e| match e {
            CertifyError::Shape { expected, found, what } => CertifyError::Shape {
                what: format!("a point at cut `{cut}` of shape {shape:?}: {what}"),
                expected,
                found,
            },
            e => e,
        })?;
        Ok((op, dims))
    }

    /// Runs the shapes through the program from `op`: every op must accept its input.
    fn check(&self, op: usize, dims: [usize; 3]) -> Result<()> {
        let mut stack = vec![dims];
        for o in &self.ops[op..] {
            let top = *stack.last().expect("the program keeps a top");
            match *o {
                Op::Conv(i) => *stack.last_mut().expect("top") = self.convs[i].out_dims(top)?,
                Op::Relu => {}
                Op::MaxPool => {
                    let [c, h, w] = top;
                    *stack.last_mut().expect("top") = [c, pool_out(h), pool_out(w)];
                }
                Op::Save => stack.insert(stack.len() - 1, top),
                Op::AddShortcut(sc) => {
                    let branch = stack.pop().expect("branch");
                    let saved = stack.pop().ok_or_else(|| CertifyError::Shape {
                        what: "shortcut".into(),
                        expected: "a saved block input".into(),
                        found: "none".into(),
                    })?;
                    let s = self.shortcut_dims(sc, saved)?;
                    if s != branch {
                        return Err(CertifyError::Shape {
                            what: "residual sum".into(),
                            expected: format!("shortcut {s:?} equal to branch"),
                            found: format!("{branch:?}"),
                        });
                    }
                    stack.push(branch);
                }
                Op::AvgPool => *stack.last_mut().expect("top") = [top[0], 1, 1],
                Op::Linear => {
                    if top != [self.features, 1, 1] {
                        return Err(CertifyError::Shape {
                            what: "classifier input".into(),
                            expected: format!("[{}]", self.features),
                            found: format!("{top:?}"),
                        });
                    }
                    *stack.last_mut().expect("top") = [self.classes, 1, 1];
                }
            }
        }
        Ok(())
    }

    fn shortcut_dims(&self, sc: Shortcut64, x: [usize; 3]) -> Result<[usize; 3]> {
        Ok(match sc {
            Shortcut64::Identity => x,
            Shortcut64::Projection(i) => self.convs[i].out_dims(x)?,
            Shortcut64::PadA { pad, subsample } => {
                let [c, h, w] = x;
                if subsample {
                    [c + 2 * pad, h.div_ceil(2), w.div_ceil(2)]
                } else {
                    [c + 2 * pad, h, w]
                }
            }
        })
    }

    /// Applies op `op` to the stack (the ReLU and max-pool pointwise).
    pub fn apply(&self, op: usize, stack: &mut Vec<Batch>) -> Result<()> {
        let top = stack.pop().expect("the program keeps a top");
        let out = match self.ops[op] {
            Op::Conv(i) => self.convs[i].forward(&top)?,
            Op::Relu => {
                let mut t = top;
                t.data.par_iter_mut().for_each(|v| *v = relu(*v));
                t
            }
            Op::MaxPool => max_pool(&top),
            Op::Save => {
                stack.push(top.clone());
                top
            }
            Op::AddShortcut(sc) => {
                let saved = stack.pop().expect("a saved block input");
                let mut t = top;
                match sc {
                    Shortcut64::Identity => add_assign(&mut t.data, &saved.data),
                    Shortcut64::Projection(i) => add_assign(&mut t.data, &self.convs[i].forward(&saved)?.data),
                    Shortcut64::PadA { pad, subsample } => pad_a_add(&saved, pad, subsample, &mut t),
                }
                t
            }
            Op::AvgPool => {
                let [c, h, w] = top.dims;
                let hw = (h * w) as f64;
                let data = top.data.chunks(h * w).map(|p| p.iter().sum::<f64>() / hw).collect();
                Batch {
                    n: top.n,
                    dims: [c, 1, 1],
                    data,
                }
            }
            Op::Linear => {
                let (f, k) = (self.features, self.classes);
                let mut data = vec![0.0; top.n * k];
                data.par_chunks_mut(k).enumerate().for_each(|(p, y)| {
                    let x = &top.data[p * f..(p + 1) * f];
                    for (j, yj) in y.iter_mut().enumerate() {
                        let wj = &self.fc_w[j * f..(j + 1) * f];
                        *yj = self.fc_b[j] + wj.iter().zip(x).map(|(a, b)| a * b).sum::<f64>();
                    }
                });
                Batch {
                    n: top.n,
                    dims: [k, 1, 1],
                    data,
                }
            }
        };
        stack.push(out);
        Ok(())
    }

    /// For each ReLU from op `op0` on (input shape `dims`): its op index and the
    /// multiply-adds that carry one symbol row, born at the centre pixel of its output, to the
    /// logits, each convolution over the window of pixels the row can reach (all channels),
    /// as [`crate::window`] keeps it. The work model of [`crate::Certifier::work`].
    pub fn symbol_costs(&self, op0: usize, dims: [usize; 3]) -> Result<Vec<(usize, u64)>> {
        self.check(op0, dims)?;
        let relus = (op0..self.ops.len()).filter(|&o| matches!(self.ops[o], Op::Relu));
        Ok(relus.map(|r| (r, self.symbol_cost(op0, dims, r))).collect())
    }

    /// One ReLU's entry of [`Net64::symbol_costs`]: the program's shapes from `op0`, with the
    /// symbol's window empty until op `born` (the levels saved before it do not carry it).
    fn symbol_cost(&self, op0: usize, dims: [usize; 3], born: usize) -> u64 {
        let mut macs = 0u64;
        let mut conv = |i: usize, (d, win): ([usize; 3], Window)| {
            let c = &self.convs[i];
            let [co, oh, ow] = c.out_dims(d).expect("checked by `check`");
            let out = win.slide(c.k, c.stride, c.pad, oh, ow);
            macs += (out.area() * co * c.c_in * c.k * c.k) as u64;
            ([co, oh, ow], out)
        };
        let mut stack = vec![(dims, Window::EMPTY)];
        let mut tail = 0u64;
        for o in op0..self.ops.len() {
            let top = stack.pop().expect("the program keeps a top");
            let next = match self.ops[o] {
                Op::Conv(i) => conv(i, top),
                Op::Relu if o == born => (top.0, Window::pixel(top.0[1] / 2, top.0[2] / 2)),
                Op::Relu => top,
                Op::MaxPool => {
                    let [c, h, w] = top.0;
                    let (oh, ow) = (pool_out(h), pool_out(w));
                    ([c, oh, ow], top.1.slide(POOL_K, POOL_STRIDE, POOL_PAD, oh, ow))
                }
                Op::Save => {
                    stack.push(top);
                    top
                }
                Op::AddShortcut(sc) => {
                    let saved = stack.pop().expect("a saved block input");
                    let [_, oh, ow] = top.0;
                    let share = match sc {
                        Shortcut64::Identity => saved.1,
                        Shortcut64::Projection(i) => conv(i, saved).1,
                        Shortcut64::PadA { subsample, .. } => saved.1.slide(1, 1 + subsample as usize, 0, oh, ow),
                    };
                    (top.0, top.1.union(&share))
                }
                Op::AvgPool => {
                    let reached = !top.1.is_empty();
                    (
                        [top.0[0], 1, 1],
                        if reached { Window::pixel(0, 0) } else { Window::EMPTY },
                    )
                }
                Op::Linear => {
                    if !top.1.is_empty() {
                        tail = (self.features * self.classes) as u64;
                    }
                    ([self.classes, 1, 1], top.1)
                }
            };
            stack.push(next);
        }
        macs + tail
    }

    /// Runs the program from `op` to the logits, `chunk` points at a time; calls `observe`
    /// with each op's index and its input (the top of the stack) before the op runs.
    pub fn forward(
        &self,
        op: usize,
        x: Batch,
        chunk: usize,
        mut observe: impl FnMut(usize, usize, &Batch),
    ) -> Result<Vec<f64>> {
        let mut logits = Vec::with_capacity(x.n * self.classes);
        let d = x.dim();
        for p0 in (0..x.n).step_by(chunk.max(1)) {
            let n = chunk.min(x.n - p0);
            let mut stack = vec![Batch {
                n,
                dims: x.dims,
                data: x.data[p0 * d..(p0 + n) * d].to_vec(),
            }];
            for o in op..self.ops.len() {
                observe(o, p0, stack.last().expect("top"));
                self.apply(o, &mut stack)?;
            }
            logits.extend_from_slice(&stack.pop().expect("logits").data);
        }
        Ok(logits)
    }
}

fn bad_shape(cut: Cut, shape: &[usize], expected: String) -> CertifyError {
    CertifyError::Shape {
        what: format!("a point at cut `{cut}`"),
        expected,
        found: format!("{shape:?}"),
    }
}

pub(crate) fn add_assign(y: &mut [f64], x: &[f64]) {
    y.par_iter_mut().zip(x.par_iter()).for_each(|(a, b)| *a += b);
}

/// `y[p, pad + c, i, j] += x[p, c, s·i, s·j]` (s = 2 when subsampling): option A's shortcut.
pub(crate) fn pad_a_add(x: &Batch, pad: usize, subsample: bool, y: &mut Batch) {
    let [c, h, w] = x.dims;
    let [_, oh, ow] = y.dims;
    let s = if subsample { 2 } else { 1 };
    let (din, dout) = (x.dim(), y.dim());
    y.data.par_chunks_mut(dout).enumerate().for_each(|(p, yp)| {
        let xp = &x.data[p * din..(p + 1) * din];
        for ci in 0..c {
            for i in 0..oh {
                for j in 0..ow {
                    yp[((pad + ci) * oh + i) * ow + j] += xp[(ci * h + s * i) * w + s * j];
                }
            }
        }
    });
}

/// The in-bounds input positions (flat within the plane) of max-pool window `(oy, ox)`, in
/// PyTorch's scan order.
pub(crate) fn pool_window(h: usize, w: usize, oy: usize, ox: usize, out: &mut Vec<usize>) {
    out.clear();
    for ky in 0..POOL_K {
        for kx in 0..POOL_K {
            let iy = (oy * POOL_STRIDE + ky).wrapping_sub(POOL_PAD);
            let ix = (ox * POOL_STRIDE + kx).wrapping_sub(POOL_PAD);
            if iy < h && ix < w {
                out.push(iy * w + ix);
            }
        }
    }
}

fn max_pool(x: &Batch) -> Batch {
    let [c, h, w] = x.dims;
    let (oh, ow) = (pool_out(h), pool_out(w));
    let mut data = vec![0.0; x.n * c * oh * ow];
    data.par_chunks_mut(oh * ow).enumerate().for_each(|(pc, yp)| {
        let plane = &x.data[pc * h * w..(pc + 1) * h * w];
        let mut win = Vec::with_capacity(POOL_K * POOL_K);
        for oy in 0..oh {
            for ox in 0..ow {
                pool_window(h, w, oy, ox, &mut win);
                yp[oy * ow + ox] = win.iter().map(|&i| plane[i]).fold(f64::NEG_INFINITY, max_nan);
            }
        }
    });
    Batch {
        n: x.n,
        dims: [c, oh, ow],
        data,
    }
}
