//! Shapes and the geometries of the operations that need more than a shape.

use crate::error::{Result, TensorError};
use std::fmt;

/// The dimensions of a dense row-major tensor (NCHW for images).
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(pub Vec<usize>);

impl Shape {
    /// A shape from its dimensions.
    pub fn new(dims: impl Into<Vec<usize>>) -> Self {
        Shape(dims.into())
    }
    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        &self.0
    }
    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.len()
    }
    /// Number of elements (1 for a scalar).
    pub fn numel(&self) -> usize {
        self.0.iter().product()
    }
    /// The shape as (N, C, H, W); an error naming `op` unless it has rank 4.
    pub fn nchw(&self, op: &'static str) -> Result<Nchw> {
        match self.0[..] {
            [n, c, h, w] => Ok(Nchw { n, c, h, w }),
            _ => Err(TensorError::Shape {
                op,
                arg: "x",
                expected: "[N, C, H, W]".into(),
                found: self.to_string(),
            }),
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<&[usize]> for Shape {
    fn from(d: &[usize]) -> Self {
        Shape(d.to_vec())
    }
}

impl<const K: usize> From<[usize; K]> for Shape {
    fn from(d: [usize; K]) -> Self {
        Shape(d.to_vec())
    }
}

/// A batch of images in NCHW layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Nchw {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Nchw {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.n * self.c * self.h * self.w
    }
    /// Pixels per channel plane.
    pub fn hw(&self) -> usize {
        self.h * self.w
    }
    /// As a [`Shape`].
    pub fn shape(&self) -> Shape {
        Shape(vec![self.n, self.c, self.h, self.w])
    }
    /// The output of the CIFAR ResNets' option-A shortcut on this input:
    /// `[n, c + 2 pad, ceil(h/2), ceil(w/2)]` when subsampling, else `[n, c + 2 pad, h, w]`.
    pub fn shortcut_pad(&self, subsample: bool, pad: usize) -> Nchw {
        let stride = if subsample { 2 } else { 1 };
        Nchw {
            n: self.n,
            c: self.c + 2 * pad,
            h: self.h.div_ceil(stride),
            w: self.w.div_ceil(stride),
        }
    }
}

/// `[n, c, h, w]` as an [`Nchw`].
fn nchw(n: usize, c: usize, h: usize, w: usize) -> Nchw {
    Nchw { n, c, h, w }
}

/// Convolution geometry: input `[n, c_in, h, w]`, weight `[c_out, c_in, kh, kw]`
/// (PyTorch's layout), output `[n, c_out, out_h, out_w]`; no groups, no dilation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dGeom {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Conv2dGeom {
    /// A square `k`×`k` convolution to `c_out` channels applied to `input`, checked with
    /// [`Conv2dGeom::validate`] under the name `op`.
    pub fn square(op: &'static str, input: Nchw, c_out: usize, k: usize, stride: usize, pad: usize) -> Result<Self> {
        let g = Conv2dGeom {
            n: input.n,
            c_in: input.c,
            h: input.h,
            w: input.w,
            c_out,
            kh: k,
            kw: k,
            stride,
            pad,
        };
        g.validate(op)?;
        Ok(g)
    }

    /// Output height, `(h + 2 pad - kh) / stride + 1`.
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.pad - self.kh) / self.stride + 1
    }
    /// Output width.
    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.pad - self.kw) / self.stride + 1
    }
    /// The input as NCHW.
    pub fn input(&self) -> Nchw {
        nchw(self.n, self.c_in, self.h, self.w)
    }
    /// The output as NCHW.
    pub fn output(&self) -> Nchw {
        nchw(self.n, self.c_out, self.out_h(), self.out_w())
    }
    /// Elements of the weight.
    pub fn weight_len(&self) -> usize {
        self.c_out * self.c_in * self.kh * self.kw
    }
    /// Multiply-adds of one forward pass.
    pub fn macs(&self) -> usize {
        self.output().numel() * self.c_in * self.kh * self.kw
    }
    /// Rejects geometries that have no output (zero stride, kernel larger than padded input).
    pub fn validate(&self, op: &'static str) -> Result<()> {
        if self.stride == 0 || self.kh == 0 || self.kw == 0 {
            return Err(TensorError::Invalid {
                op,
                msg: format!(
                    "stride {} and kernel {}x{} must be positive",
                    self.stride, self.kh, self.kw
                ),
            });
        }
        if self.h + 2 * self.pad < self.kh || self.w + 2 * self.pad < self.kw {
            return Err(TensorError::Invalid {
                op,
                msg: format!(
                    "kernel {}x{} is larger than the padded input {}x{}",
                    self.kh,
                    self.kw,
                    self.h + 2 * self.pad,
                    self.w + 2 * self.pad
                ),
            });
        }
        Ok(())
    }
}

/// Transposed-convolution geometry (PyTorch's `ConvTranspose2d`): input `[n, c_in, h, w]`,
/// weight `[c_in, c_out, kh, kw]`, output `[n, c_out, out_h, out_w]` with
/// `out = (in - 1) stride - 2 pad + k + output_padding`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvT2dGeom {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
    pub output_padding: usize,
}

impl ConvT2dGeom {
    /// Output height.
    pub fn out_h(&self) -> usize {
        (self.h - 1) * self.stride + self.kh + self.output_padding - 2 * self.pad
    }
    /// Output width.
    pub fn out_w(&self) -> usize {
        (self.w - 1) * self.stride + self.kw + self.output_padding - 2 * self.pad
    }
    /// Elements of the weight.
    pub fn weight_len(&self) -> usize {
        self.c_in * self.c_out * self.kh * self.kw
    }
    /// The input as NCHW.
    pub fn input(&self) -> Nchw {
        nchw(self.n, self.c_in, self.h, self.w)
    }
    /// The output as NCHW.
    pub fn output(&self) -> Nchw {
        nchw(self.n, self.c_out, self.out_h(), self.out_w())
    }
    /// The convolution whose input gradient this transposed convolution is: its input is our
    /// output and its output is our input.
    pub fn as_conv(&self) -> Conv2dGeom {
        Conv2dGeom {
            n: self.n,
            c_in: self.c_out,
            h: self.out_h(),
            w: self.out_w(),
            c_out: self.c_in,
            kh: self.kh,
            kw: self.kw,
            stride: self.stride,
            pad: self.pad,
        }
    }
    /// Rejects geometries with no output or an output padding PyTorch would refuse.
    pub fn validate(&self, op: &'static str) -> Result<()> {
        if self.stride == 0 || self.kh == 0 || self.kw == 0 || self.h == 0 || self.w == 0 {
            return Err(TensorError::Invalid {
                op,
                msg: "stride, kernel and input size must be positive".into(),
            });
        }
        if self.output_padding >= self.stride {
            return Err(TensorError::Invalid {
                op,
                msg: format!(
                    "output_padding {} must be smaller than stride {}",
                    self.output_padding, self.stride
                ),
            });
        }
        if (self.h - 1) * self.stride + self.kh + self.output_padding <= 2 * self.pad
            || (self.w - 1) * self.stride + self.kw + self.output_padding <= 2 * self.pad
        {
            return Err(TensorError::Invalid {
                op,
                msg: format!("padding {} leaves no output", self.pad),
            });
        }
        Ok(())
    }
}

/// Max-pool geometry over NCHW input (square kernel).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pool2dGeom {
    pub input: Nchw,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Pool2dGeom {
    /// Output height.
    pub fn out_h(&self) -> usize {
        (self.input.h + 2 * self.pad - self.k) / self.stride + 1
    }
    /// Output width.
    pub fn out_w(&self) -> usize {
        (self.input.w + 2 * self.pad - self.k) / self.stride + 1
    }
    /// The output as NCHW.
    pub fn output(&self) -> Nchw {
        Nchw {
            n: self.input.n,
            c: self.input.c,
            h: self.out_h(),
            w: self.out_w(),
        }
    }
    /// Rejects windows that are empty or larger than the padded input, and padding
    /// of more than half the kernel (PyTorch's rule, so every window sees the input).
    pub fn validate(&self, op: &'static str) -> Result<()> {
        if self.k == 0
            || self.stride == 0
            || 2 * self.pad > self.k
            || self.input.h + 2 * self.pad < self.k
            || self.input.w + 2 * self.pad < self.k
        {
            return Err(TensorError::Invalid {
                op,
                msg: format!(
                    "pool k={} stride={} pad={} does not fit input {}x{}",
                    self.k, self.stride, self.pad, self.input.h, self.input.w
                ),
            });
        }
        Ok(())
    }
}
