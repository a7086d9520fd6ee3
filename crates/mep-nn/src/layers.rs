//! Conv2d, BatchNorm2d and Linear with explicit forward and backward.

use crate::error::{NnError, Result};
use crate::param::{Grads, Param};
use mep_tensor::{Act, Backend, Conv2dGeom, Nchw, Tensor};

fn nchw<B: Backend>(layer: &'static str, x: &Tensor<B>, c: usize) -> Result<Nchw> {
    match x.shape.dims() {
        &[n, xc, h, w] if xc == c => Ok(Nchw { n, c, h, w }),
        _ => Err(NnError::Shape {
            layer,
            expected: format!("[N, {c}, H, W]"),
            found: x.shape.to_string(),
        }),
    }
}

fn weight_and_bias<'a, B: Backend>(w: &'a mut Param<B>, b: &'a mut Option<Param<B>>) -> Vec<&'a mut Param<B>> {
    let mut v = vec![w];
    v.extend(b.as_mut());
    v
}

/// A 2-D convolution (PyTorch's `Conv2d`, no groups or dilation), optionally with bias.
pub struct Conv2d<B: Backend> {
    /// `[c_out, c_in, k, k]`.
    pub weight: Param<B>,
    /// `[c_out]`, when the layer has a bias.
    pub bias: Option<Param<B>>,
    pub c_in: usize,
    pub c_out: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl<B: Backend> Conv2d<B> {
    /// A convolution from host weights `[c_out, c_in, k, k]`.
    #[allow(clippy::too_many_arguments)]
    pub fn from_host(
        backend: &B,
        c_out: usize,
        c_in: usize,
        k: usize,
        stride: usize,
        pad: usize,
        weight: Vec<f32>,
        bias: Option<Vec<f32>>,
    ) -> Result<Self> {
        let weight = Param::new(Tensor::from_vec(backend, [c_out, c_in, k, k], weight)?);
        let bias = match bias {
            Some(b) => Some(Param::new(Tensor::from_vec(backend, [c_out], b)?)),
            None => None,
        };
        Ok(Conv2d {
            weight,
            bias,
            c_in,
            c_out,
            k,
            stride,
            pad,
        })
    }

    /// The geometry of this convolution applied to `x`.
    pub fn geom(&self, x: &Tensor<B>) -> Result<Conv2dGeom> {
        let s = nchw("Conv2d", x, self.c_in)?;
        Ok(Conv2dGeom::square(
            "Conv2d",
            s,
            self.c_out,
            self.k,
            self.stride,
            self.pad,
        )?)
    }

    /// `act(conv(x) + bias + residual)`.
    pub fn forward(&self, backend: &B, x: &Tensor<B>, residual: Option<&Tensor<B>>, act: Act) -> Result<Tensor<B>> {
        let g = self.geom(x)?;
        let mut y = Tensor::alloc(backend, g.output().shape())?;
        backend.conv2d(
            &g,
            &x.buf,
            &self.weight.value.buf,
            self.bias.as_ref().map(|b| &b.value.buf),
            residual.map(|r| &r.buf),
            act,
            &mut y.buf,
        )?;
        Ok(y)
    }

    /// Backward of the convolution alone (the caller has already passed `dy` back through
    /// any activation): the input gradient when `grads.input`, and the weight and bias
    /// gradients into `Param::grad` when `grads.weights`.
    pub fn backward(&mut self, backend: &B, x: &Tensor<B>, dy: &Tensor<B>, grads: Grads) -> Result<Option<Tensor<B>>> {
        let g = self.geom(x)?;
        if grads.weights {
            let dw = self.weight.grad_mut(backend)?;
            let db = match self.bias.as_mut() {
                Some(b) => Some(&mut b.grad_mut(backend)?.buf),
                None => None,
            };
            backend.conv2d_bwd_weight(&g, &x.buf, &dy.buf, &mut dw.buf, db)?;
        }
        if grads.input {
            let mut dx = Tensor::alloc(backend, x.shape.clone())?;
            backend.conv2d_bwd_input(&g, &dy.buf, &self.weight.value.buf, &mut dx.buf)?;
            Ok(Some(dx))
        } else {
            Ok(None)
        }
    }

    /// The parameters, in PyTorch's order (weight, bias).
    pub fn params_mut(&mut self) -> Vec<&mut Param<B>> {
        weight_and_bias(&mut self.weight, &mut self.bias)
    }
}

/// What training-mode batch norm saves for its backward: the batch mean and
/// `1/sqrt(var + eps)` per channel.
pub struct BnCache<B: Backend> {
    pub mean: B::Buf,
    pub invstd: B::Buf,
}

/// Batch normalisation over NCHW channels (PyTorch's `BatchNorm2d`).
pub struct BatchNorm2d<B: Backend> {
    /// γ, `[c]`.
    pub weight: Param<B>,
    /// β, `[c]`.
    pub bias: Param<B>,
    pub running_mean: Tensor<B>,
    pub running_var: Tensor<B>,
    pub eps: f32,
    pub momentum: f32,
    pub c: usize,
}

impl<B: Backend> BatchNorm2d<B> {
    /// A batch norm from host vectors (γ, β, running mean, running variance), eps 1e-5 and
    /// momentum 0.1 as PyTorch's defaults.
    pub fn from_host(
        backend: &B,
        weight: Vec<f32>,
        bias: Vec<f32>,
        running_mean: Vec<f32>,
        running_var: Vec<f32>,
    ) -> Result<Self> {
        let c = weight.len();
        Ok(BatchNorm2d {
            weight: Param::new(Tensor::from_vec(backend, [c], weight)?),
            bias: Param::new(Tensor::from_vec(backend, [c], bias)?),
            running_mean: Tensor::from_vec(backend, [c], running_mean)?,
            running_var: Tensor::from_vec(backend, [c], running_var)?,
            eps: 1e-5,
            momentum: 0.1,
            c,
        })
    }

    /// A freshly initialised batch norm (γ = 1, β = 0, mean 0, variance 1).
    pub fn new(backend: &B, c: usize) -> Result<Self> {
        Self::from_host(backend, vec![1.0; c], vec![0.0; c], vec![0.0; c], vec![1.0; c])
    }

    /// Inference mode with the running statistics, then `act`.
    pub fn forward_eval(&self, backend: &B, x: &Tensor<B>, act: Act) -> Result<Tensor<B>> {
        let s = nchw("BatchNorm2d", x, self.c)?;
        let mut y = Tensor::alloc(backend, x.shape.clone())?;
        backend.batch_norm_infer(
            &s,
            &x.buf,
            &self.weight.value.buf,
            &self.bias.value.buf,
            &self.running_mean.buf,
            &self.running_var.buf,
            self.eps,
            act,
            &mut y.buf,
        )?;
        Ok(y)
    }

    /// Training mode: batch statistics, running statistics updated, then `act` (whose
    /// backward needs only this output).
    pub fn forward_train(&mut self, backend: &B, x: &Tensor<B>, act: Act) -> Result<(Tensor<B>, BnCache<B>)> {
        let s = nchw("BatchNorm2d", x, self.c)?;
        let mut y = Tensor::alloc(backend, x.shape.clone())?;
        let mut mean = backend.alloc(self.c)?;
        let mut invstd = backend.alloc(self.c)?;
        backend.batch_norm_train(
            &s,
            &x.buf,
            &self.weight.value.buf,
            &self.bias.value.buf,
            &mut self.running_mean.buf,
            &mut self.running_var.buf,
            self.momentum,
            self.eps,
            act,
            &mut y.buf,
            &mut mean,
            &mut invstd,
        )?;
        Ok((y, BnCache { mean, invstd }))
    }

    /// Backward of training mode. The input gradient is always computed (the batch
    /// statistics couple every input); γ and β gradients are kept when `grads.weights`.
    pub fn backward_train(
        &mut self,
        backend: &B,
        x: &Tensor<B>,
        dy: &Tensor<B>,
        cache: &BnCache<B>,
        grads: Grads,
    ) -> Result<Tensor<B>> {
        let s = nchw("BatchNorm2d", x, self.c)?;
        let mut dx = Tensor::alloc(backend, x.shape.clone())?;
        let mut dgamma = backend.alloc(self.c)?;
        let mut dbeta = backend.alloc(self.c)?;
        backend.batch_norm_train_bwd(
            &s,
            &x.buf,
            &dy.buf,
            &self.weight.value.buf,
            &cache.mean,
            &cache.invstd,
            &mut dx.buf,
            &mut dgamma,
            &mut dbeta,
        )?;
        if grads.weights {
            self.weight.grad_mut(backend)?.buf = dgamma;
            self.bias.grad_mut(backend)?.buf = dbeta;
        }
        Ok(dx)
    }

    /// Backward of inference mode (an affine map per channel).
    pub fn backward_eval(&mut self, backend: &B, x: &Tensor<B>, dy: &Tensor<B>, grads: Grads) -> Result<Tensor<B>> {
        let s = nchw("BatchNorm2d", x, self.c)?;
        let mut dx = Tensor::alloc(backend, x.shape.clone())?;
        let (mut dgamma, mut dbeta) = if grads.weights {
            (Some(backend.alloc(self.c)?), Some(backend.alloc(self.c)?))
        } else {
            (None, None)
        };
        backend.batch_norm_infer_bwd(
            &s,
            &x.buf,
            &dy.buf,
            &self.weight.value.buf,
            &self.running_mean.buf,
            &self.running_var.buf,
            self.eps,
            &mut dx.buf,
            dgamma.as_mut(),
            dbeta.as_mut(),
        )?;
        if let (Some(dg), Some(db)) = (dgamma, dbeta) {
            self.weight.grad_mut(backend)?.buf = dg;
            self.bias.grad_mut(backend)?.buf = db;
        }
        Ok(dx)
    }

    /// The per-channel affine map `y = a x + b` that inference mode applies, in f64:
    /// `a = γ / sqrt(var + eps)`, `b = β − a · mean`. Folding it into the preceding
    /// convolution is exact up to rounding.
    pub fn affine(&self, backend: &B) -> Result<(Vec<f64>, Vec<f64>)> {
        let g = self.weight.value.to_vec(backend)?;
        let b = self.bias.value.to_vec(backend)?;
        let m = self.running_mean.to_vec(backend)?;
        let v = self.running_var.to_vec(backend)?;
        let a: Vec<f64> = (0..self.c)
            .map(|i| g[i] as f64 / (v[i] as f64 + self.eps as f64).sqrt())
            .collect();
        let shift = (0..self.c).map(|i| b[i] as f64 - a[i] * m[i] as f64).collect();
        Ok((a, shift))
    }

    /// The parameters, in PyTorch's order (weight, bias).
    pub fn params_mut(&mut self) -> Vec<&mut Param<B>> {
        vec![&mut self.weight, &mut self.bias]
    }
}

/// A fully connected layer (PyTorch's `Linear`): `y = x wᵀ + b`, `w: [out, in]`.
pub struct Linear<B: Backend> {
    pub weight: Param<B>,
    pub bias: Option<Param<B>>,
    pub in_features: usize,
    pub out_features: usize,
}

impl<B: Backend> Linear<B> {
    /// A linear layer from host weights `[out, in]` and optional bias `[out]`.
    pub fn from_host(
        backend: &B,
        out_features: usize,
        in_features: usize,
        weight: Vec<f32>,
        bias: Option<Vec<f32>>,
    ) -> Result<Self> {
        let weight = Param::new(Tensor::from_vec(backend, [out_features, in_features], weight)?);
        let bias = match bias {
            Some(b) => Some(Param::new(Tensor::from_vec(backend, [out_features], b)?)),
            None => None,
        };
        Ok(Linear {
            weight,
            bias,
            in_features,
            out_features,
        })
    }

    fn rows(&self, x: &Tensor<B>) -> Result<usize> {
        match x.shape.dims() {
            &[n, k] if k == self.in_features => Ok(n),
            _ => Err(NnError::Shape {
                layer: "Linear",
                expected: format!("[N, {}]", self.in_features),
                found: x.shape.to_string(),
            }),
        }
    }

    /// `x wᵀ + b` for `x: [n, in]`.
    pub fn forward(&self, backend: &B, x: &Tensor<B>) -> Result<Tensor<B>> {
        let n = self.rows(x)?;
        let mut y = Tensor::alloc(backend, [n, self.out_features])?;
        backend.linear(
            n,
            self.in_features,
            self.out_features,
            &x.buf,
            &self.weight.value.buf,
            self.bias.as_ref().map(|b| &b.value.buf),
            &mut y.buf,
        )?;
        Ok(y)
    }

    /// Input gradient when `grads.input`; weight and bias gradients when `grads.weights`.
    pub fn backward(&mut self, backend: &B, x: &Tensor<B>, dy: &Tensor<B>, grads: Grads) -> Result<Option<Tensor<B>>> {
        let n = self.rows(x)?;
        let (k, m) = (self.in_features, self.out_features);
        if grads.weights {
            let mut dw = backend.alloc(m * k)?;
            let mut db = match self.bias {
                Some(_) => Some(backend.alloc(m)?),
                None => None,
            };
            backend.linear_bwd_weight(n, k, m, &x.buf, &dy.buf, &mut dw, db.as_mut())?;
            self.weight.grad_mut(backend)?.buf = dw;
            if let (Some(b), Some(db)) = (self.bias.as_mut(), db) {
                b.grad_mut(backend)?.buf = db;
            }
        }
        if grads.input {
            let mut dx = Tensor::alloc(backend, [n, k])?;
            backend.linear_bwd_input(n, k, m, &dy.buf, &self.weight.value.buf, &mut dx.buf)?;
            Ok(Some(dx))
        } else {
            Ok(None)
        }
    }

    /// The parameters, in PyTorch's order (weight, bias).
    pub fn params_mut(&mut self) -> Vec<&mut Param<B>> {
        weight_and_bias(&mut self.weight, &mut self.bias)
    }
}
