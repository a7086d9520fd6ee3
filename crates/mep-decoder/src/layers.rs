//! The transposed convolution, a layer mep-nn does not have: explicit forward and backward
//! over the Backend's `conv_transpose2d` ops, PyTorch's `ConvTranspose2d` semantics.

use crate::error::{DecoderError, Result};
use mep_nn::init::{uniform_fan_in, Rng};
use mep_nn::{Grads, Param};
use mep_tensor::{Backend, ConvT2dGeom, Tensor};

/// A 2-D transposed convolution (PyTorch's `ConvTranspose2d`, no groups or dilation) with
/// a bias: weight `[c_in, c_out, k, k]`, output side `(in − 1)·stride − 2·pad + k`.
pub struct ConvTranspose2d<B: Backend> {
    /// `[c_in, c_out, k, k]` (PyTorch's layout for transposed convolutions).
    pub weight: Param<B>,
    /// `[c_out]`.
    pub bias: Param<B>,
    pub c_in: usize,
    pub c_out: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl<B: Backend> ConvTranspose2d<B> {
    /// A transposed convolution from host weights `[c_in, c_out, k, k]` and bias `[c_out]`.
    #[allow(clippy::too_many_arguments)]
    pub fn from_host(
        backend: &B,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
        weight: Vec<f32>,
        bias: Vec<f32>,
    ) -> Result<Self> {
        Ok(ConvTranspose2d {
            weight: Param::new(Tensor::from_vec(backend, [c_in, c_out, k, k], weight)?),
            bias: Param::new(Tensor::from_vec(backend, [c_out], bias)?),
            c_in,
            c_out,
            k,
            stride,
            pad,
        })
    }

    /// PyTorch's default initialisation (`kaiming_uniform_(a=√5)` and the bias rule), which
    /// both come to uniform in ±1/√fan_in; a transposed convolution's fan-in as PyTorch
    /// computes it is `c_out · k · k` (dimension 1 of the weight).
    pub fn init(
        backend: &B,
        rng: &mut Rng,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<Self> {
        let fan_in = c_out * k * k;
        let w = uniform_fan_in(rng, c_in * c_out * k * k, fan_in);
        let b = uniform_fan_in(rng, c_out, fan_in);
        Self::from_host(backend, c_in, c_out, k, stride, pad, w, b)
    }

    /// The geometry of this layer applied to `x`.
    pub fn geom(&self, x: &Tensor<B>) -> Result<ConvT2dGeom> {
        let (n, h, w) = match x.shape.dims() {
            &[n, c, h, w] if c == self.c_in => (n, h, w),
            _ => {
                return Err(DecoderError::Input {
                    what: "ConvTranspose2d input",
                    expected: format!("[N, {}, H, W]", self.c_in),
                    found: x.shape.to_string(),
                })
            }
        };
        let g = ConvT2dGeom {
            n,
            c_in: self.c_in,
            h,
            w,
            c_out: self.c_out,
            kh: self.k,
            kw: self.k,
            stride: self.stride,
            pad: self.pad,
            output_padding: 0,
        };
        g.validate("ConvTranspose2d")?;
        Ok(g)
    }

    /// `conv_transpose2d(x, w) + bias`.
    pub fn forward(&self, backend: &B, x: &Tensor<B>) -> Result<Tensor<B>> {
        let g = self.geom(x)?;
        let mut y = Tensor::alloc(backend, g.output().shape())?;
        backend.conv_transpose2d(
            &g,
            &x.buf,
            &self.weight.value.buf,
            Some(&self.bias.value.buf),
            &mut y.buf,
        )?;
        Ok(y)
    }

    /// Backward: the weight and bias gradients into `Param::grad` when `grads.weights`, the
    /// input gradient when `grads.input`.
    pub fn backward(&mut self, backend: &B, x: &Tensor<B>, dy: &Tensor<B>, grads: Grads) -> Result<Option<Tensor<B>>> {
        let g = self.geom(x)?;
        if grads.weights {
            let mut dw = backend.alloc(g.weight_len())?;
            let mut db = backend.alloc(self.c_out)?;
            backend.conv_transpose2d_bwd_weight(&g, &x.buf, &dy.buf, &mut dw, Some(&mut db))?;
            self.weight.grad_mut(backend)?.buf = dw;
            self.bias.grad_mut(backend)?.buf = db;
        }
        if grads.input {
            let mut dx = Tensor::alloc(backend, x.shape.clone())?;
            backend.conv_transpose2d_bwd_input(&g, &dy.buf, &self.weight.value.buf, &mut dx.buf)?;
            Ok(Some(dx))
        } else {
            Ok(None)
        }
    }

    /// Multiply-adds of one forward pass on an input of `h × w` pixels, per image.
    pub fn macs(&self, h: usize, w: usize) -> usize {
        self.c_in * self.c_out * self.k * self.k * h * w
    }

    /// The parameters, in PyTorch's order (weight, bias).
    pub fn params_mut(&mut self) -> Vec<&mut Param<B>> {
        vec![&mut self.weight, &mut self.bias]
    }
}
