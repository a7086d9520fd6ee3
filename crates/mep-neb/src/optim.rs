//! Optimisers acting on all pivots as one state: the whole `[P, D]` buffer moves at once.
//! Endpoint rows have zero force, so their moments and velocities stay zero and they never
//! move.

use crate::error::{NebError, Result};
use mep_tensor::{AdamParams, Backend, SgdParams};

/// Which optimiser moves the pivots, and its hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PathOptimizerConfig {
    /// SGD with momentum on the gradient `-force` (`torch.optim.SGD` semantics).
    Sgd { lr: f64, momentum: f64 },
    /// Adam on the gradient `-force` (`torch.optim.Adam` semantics).
    Adam { lr: f64, beta1: f64, beta2: f64, eps: f64 },
    /// FIRE (Bitzek et al. 2006), as `ase.optimize.FIRE` steps it.
    Fire(FireParams),
}

impl PathOptimizerConfig {
    /// Adam with the learning rate `lr` and PyTorch's defaults otherwise.
    pub fn adam(lr: f64) -> Self {
        PathOptimizerConfig::Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    /// Checks every hyper-parameter's range.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, v: f64, what: &str| NebError::Config {
            field,
            msg: format!("is {v}; it must be {what}"),
        };
        let positive = |field, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(bad(field, v, "positive"))
            }
        };
        let unit = |field, v: f64| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(bad(field, v, "in [0, 1)"))
            }
        };
        match *self {
            PathOptimizerConfig::Sgd { lr, momentum } => {
                positive("optimizer.lr", lr)?;
                unit("optimizer.momentum", momentum)
            }
            PathOptimizerConfig::Adam { lr, beta1, beta2, eps } => {
                positive("optimizer.lr", lr)?;
                unit("optimizer.beta1", beta1)?;
                unit("optimizer.beta2", beta2)?;
                positive("optimizer.eps", eps)
            }
            PathOptimizerConfig::Fire(f) => f.validate(),
        }
    }
}

/// FIRE's parameters; the default is ASE's (`ase.optimize.FIRE`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FireParams {
    /// Initial time step.
    pub dt: f64,
    /// Largest displacement of one step (norm over the whole path).
    pub maxstep: f64,
    /// Largest time step.
    pub dtmax: f64,
    /// Positive-power steps before the time step may grow.
    pub nmin: usize,
    /// Time step growth factor.
    pub finc: f64,
    /// Time step decrease factor after an uphill move.
    pub fdec: f64,
    /// Initial (and reset) mixing parameter.
    pub astart: f64,
    /// Decay of the mixing parameter.
    pub fa: f64,
}

impl Default for FireParams {
    fn default() -> Self {
        FireParams {
            dt: 0.1,
            maxstep: 0.2,
            dtmax: 1.0,
            nmin: 5,
            finc: 1.1,
            fdec: 0.5,
            astart: 0.1,
            fa: 0.99,
        }
    }
}

impl FireParams {
    /// Checks every parameter's range.
    pub fn validate(&self) -> Result<()> {
        let check = |field: &'static str, v: f64, ok: bool, what: &str| {
            if ok && v.is_finite() {
                Ok(())
            } else {
                Err(NebError::Config {
                    field,
                    msg: format!("is {v}; it must be {what}"),
                })
            }
        };
        check("fire.dt", self.dt, self.dt > 0.0, "positive")?;
        check("fire.maxstep", self.maxstep, self.maxstep > 0.0, "positive")?;
        check("fire.dtmax", self.dtmax, self.dtmax > 0.0, "positive")?;
        check("fire.finc", self.finc, self.finc >= 1.0, "at least 1")?;
        check("fire.fdec", self.fdec, self.fdec > 0.0 && self.fdec <= 1.0, "in (0, 1]")?;
        check(
            "fire.astart",
            self.astart,
            (0.0..=1.0).contains(&self.astart),
            "in [0, 1]",
        )?;
        check("fire.fa", self.fa, self.fa > 0.0 && self.fa <= 1.0, "in (0, 1]")
    }
}

/// FIRE's state on a buffer of `len` values: velocity, time step, mixing, positive-step count.
pub struct Fire<B: Backend> {
    params: FireParams,
    v: B::Buf,
    dt: f64,
    a: f64,
    n_positive: usize,
    started: bool,
}

impl<B: Backend> Fire<B> {
    /// A fresh FIRE state (zero velocity) for a buffer of `len` values.
    pub fn new(b: &B, params: FireParams, len: usize) -> Result<Self> {
        params.validate()?;
        Ok(Fire {
            params,
            v: b.zeros(len)?,
            dt: params.dt,
            a: params.astart,
            n_positive: 0,
            started: false,
        })
    }

    /// The current time step.
    pub fn dt(&self) -> f64 {
        self.dt
    }

    /// The current mixing parameter.
    pub fn a(&self) -> f64 {
        self.a
    }

    /// The velocity buffer.
    pub fn velocity(&self) -> &B::Buf {
        &self.v
    }

    /// One FIRE step of the positions `x` under the force `f`, `ase/optimize/fire.py`'s
    /// semantics: from the second step on, with `P = F·v`: if `P > 0`,
    /// `v = (1−a)v + a|v|F/|F|` and, once more than `nmin` positive steps went by,
    /// `dt = min(dt·finc, dtmax)`, `a ·= fa`; otherwise `v = 0`, `a = astart`, `dt ·= fdec`.
    /// Then `v += dt·F`, `dr = dt·v` scaled down to norm `maxstep` if longer, `x += dr`.
    /// Returns `|dr|`.
    pub fn step(&mut self, b: &B, x: &mut B::Buf, f: &B::Buf) -> Result<f64> {
        let p = self.params;
        if self.started {
            let power = b.dot(f, &self.v)?;
            if power > 0.0 {
                let (fnorm, vnorm) = (b.norm(f)?, b.norm(&self.v)?);
                b.scale((1.0 - self.a) as f32, &mut self.v)?;
                b.axpy((self.a * vnorm / fnorm) as f32, f, &mut self.v)?;
                if self.n_positive > p.nmin {
                    self.dt = (self.dt * p.finc).min(p.dtmax);
                    self.a *= p.fa;
                }
                self.n_positive += 1;
            } else {
                b.fill(&mut self.v, 0.0)?;
                self.a = p.astart;
                self.dt *= p.fdec;
                self.n_positive = 0;
            }
        }
        self.started = true;
        b.axpy(self.dt as f32, f, &mut self.v)?;
        let dr = self.dt * b.norm(&self.v)?;
        let c = if dr > p.maxstep { p.maxstep / dr } else { 1.0 };
        b.axpy((self.dt * c) as f32, &self.v, x)?;
        Ok(dr.min(p.maxstep))
    }
}

/// The state of the configured optimiser over one `[P, D]` buffer.
pub enum PathOptimizer<B: Backend> {
    /// SGD: the momentum buffer and the next step number.
    Sgd {
        lr: f64,
        momentum: f64,
        buf: B::Buf,
        step: u32,
    },
    /// Adam: the moments and the next step number.
    Adam {
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        m: B::Buf,
        v: B::Buf,
        step: u32,
    },
    /// FIRE.
    Fire(Fire<B>),
}

impl<B: Backend> PathOptimizer<B> {
    /// A fresh state of `config` for a buffer of `len` values.
    pub fn new(b: &B, config: &PathOptimizerConfig, len: usize) -> Result<Self> {
        config.validate()?;
        Ok(match *config {
            PathOptimizerConfig::Sgd { lr, momentum } => PathOptimizer::Sgd {
                lr,
                momentum,
                buf: b.zeros(len)?,
                step: 1,
            },
            PathOptimizerConfig::Adam { lr, beta1, beta2, eps } => PathOptimizer::Adam {
                lr,
                beta1,
                beta2,
                eps,
                m: b.zeros(len)?,
                v: b.zeros(len)?,
                step: 1,
            },
            PathOptimizerConfig::Fire(p) => PathOptimizer::Fire(Fire::new(b, p, len)?),
        })
    }

    /// Adam's parameters at its next step, whose [`AdamParams::bias_terms`] a device step
    /// reads from a buffer ([`PathOptimizer::update_indirect`]); None for SGD and FIRE, whose
    /// steps depend on host state (SGD's first step, FIRE's power) and so cannot be captured.
    pub fn adam_params(&self) -> Option<AdamParams> {
        match *self {
            PathOptimizer::Adam {
                lr,
                beta1,
                beta2,
                eps,
                step,
                ..
            } => Some(AdamParams {
                lr: lr as f32,
                beta1: beta1 as f32,
                beta2: beta2 as f32,
                eps: eps as f32,
                weight_decay: 0.0,
                decoupled: false,
                step,
            }),
            _ => None,
        }
    }

    /// Adam's update of [`step`](Self::step) with the bias terms read from `bias` on the
    /// device, so that the same launches serve every step; the caller writes the terms of
    /// [`adam_params`](Self::adam_params) there first and calls [`advance`](Self::advance)
    /// after. `force` is negated in place. Refused for SGD and FIRE.
    pub fn update_indirect(&mut self, b: &B, x: &mut B::Buf, force: &mut B::Buf, bias: &B::Buf) -> Result<()> {
        let h = self.adam_params();
        match (self, h) {
            (PathOptimizer::Adam { m, v, .. }, Some(h)) => {
                b.scale(-1.0, force)?;
                b.adam_step_indirect(&h, bias, x, force, m, v)?;
                Ok(())
            }
            _ => Err(NebError::Config {
                field: "optimizer",
                msg: "a step on the device alone needs Adam (SGD's first step and FIRE decide on the host)".into(),
            }),
        }
    }

    /// Counts a step taken by [`update_indirect`](Self::update_indirect).
    pub fn advance(&mut self) {
        if let PathOptimizer::Adam { step, .. } = self {
            *step = step.saturating_add(1);
        }
    }

    /// One update of `x` along the force `force`. SGD and Adam take the gradient `-force`, so
    /// `force` is negated in place (its contents are unspecified afterwards).
    pub fn step(&mut self, b: &B, x: &mut B::Buf, force: &mut B::Buf) -> Result<()> {
        match self {
            PathOptimizer::Sgd {
                lr,
                momentum,
                buf,
                step,
            } => {
                b.scale(-1.0, force)?;
                let h = SgdParams {
                    lr: *lr as f32,
                    momentum: *momentum as f32,
                    weight_decay: 0.0,
                    nesterov: false,
                    step: *step,
                };
                b.sgd_step(&h, x, force, buf)?;
                *step = step.saturating_add(1);
            }
            PathOptimizer::Adam {
                lr,
                beta1,
                beta2,
                eps,
                m,
                v,
                step,
            } => {
                b.scale(-1.0, force)?;
                let h = AdamParams {
                    lr: *lr as f32,
                    beta1: *beta1 as f32,
                    beta2: *beta2 as f32,
                    eps: *eps as f32,
                    weight_decay: 0.0,
                    decoupled: false,
                    step: *step,
                };
                b.adam_step(&h, x, force, m, v)?;
                *step = step.saturating_add(1);
            }
            PathOptimizer::Fire(fire) => {
                fire.step(b, x, force)?;
            }
        }
        Ok(())
    }
}
