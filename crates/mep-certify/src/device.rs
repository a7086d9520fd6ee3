//! The bounds' zonotope on the kernel backend (CUDA, or its CPU emulation): version 1.
//!
//! [`crate::zonotope`]'s forward pass, op by op, with each interval's rows as one dense
//! `[rows, c, h, w]` f64 buffer on the device and the kernels of `kernels/bounds.cu`. Each
//! kernel computes every value with the CPU's operations in the CPU's order (the
//! convolution's chain of FMAs in `(ky, kx, ci)` order, the symbol sums in row order), and
//! the per-neuron choices of a ReLU are made on the host by the CPU's own code from the
//! concrete bounds the device computed, so an interval's zonotope margin bound is the CPU's,
//! value for value (`tests/device.rs` holds them equal on every cut).
//!
//! What stays on the host, and why:
//! - CROWN, which runs only for intervals whose zonotope bound is finite but not positive:
//!   those go through [`crate::bounds::margin_bounds`] on the CPU, whose zonotope is the
//!   same, so the certificates are the CPU path's exactly.
//! - ResNet-50's max-pool (on the `input` and `stem` cuts), once per interval: the rows come
//!   back to the host for the CPU's own max-pool and go up again. A window whose winner is
//!   uncertain becomes a box radius `r`, which stays on the host (one value per neuron; its
//!   `|W| r` through each convolution is the CPU's `Conv64::abs_part`), as do the ReLU's
//!   per-neuron choices (from the concrete bounds the device computes) and the classifier's
//!   margins (from the pooled rows, `features` values each).
//!
//! Version 1 is dense: a symbol born at one neuron occupies a whole tensor, where the CPU
//! keeps it over the pixels it can reach ([`crate::window`]), and its convolution issues
//! all the dense multiply-adds (BENCHMARKS.md counts them against the windowed ones).

use crate::error::{CertifyError, Result};
use crate::net::{Batch, Net64, Op, Shortcut64};
use crate::window::Row;
use crate::zonotope::{self, Zono};

/// Threads per block of every bounds kernel.
const BLOCK: u32 = 256;

/// A launch argument of a bounds kernel.
#[derive(Clone, Copy, Debug)]
pub enum DeviceArg {
    /// A device address ([`BoundsDevice::ptr`]).
    Ptr(u64),
    I32(i32),
    I64(i64),
    F64(f64),
}

/// An error of the device, kept as its cause.
pub type DeviceError = Box<dyn std::error::Error + Send + Sync>;

/// What the bounds need of a device that runs `kernels/bounds.cu`: untyped memory and
/// launches by kernel name, one stream. `mep_kernels::CertifyOn` gives it for any
/// `mep_kernels::Launcher` (CUDA, or the emulation); it is a trait of its own here because
/// mep-kernels depends on this crate (for its f64 reference gradients).
pub trait BoundsDevice: Send + Sync + 'static {
    /// One device allocation.
    type Mem: Send + Sync;
    /// A short name for messages ("cuda", "emu").
    fn name(&self) -> &'static str;
    /// `bytes` bytes of unspecified contents.
    fn alloc(&self, bytes: usize) -> std::result::Result<Self::Mem, DeviceError>;
    /// Copies `src` into `mem` at byte `offset`.
    fn write(&self, mem: &mut Self::Mem, offset: usize, src: &[u8]) -> std::result::Result<(), DeviceError>;
    /// Copies `dst.len()` bytes of `mem` from byte `offset` into `dst`.
    fn read(&self, mem: &Self::Mem, offset: usize, dst: &mut [u8]) -> std::result::Result<(), DeviceError>;
    /// Copies `bytes` bytes from `src` at byte `src_offset` to `dst` at `dst_offset`.
    fn copy(
        &self,
        src: &Self::Mem,
        src_offset: usize,
        dst: &mut Self::Mem,
        dst_offset: usize,
        bytes: usize,
    ) -> std::result::Result<(), DeviceError>;
    /// The device address of the first byte of `mem`.
    fn ptr(&self, mem: &Self::Mem) -> u64;
    /// Runs kernel `kernel` (its `extern "C"` name) on `blocks` blocks of `threads` threads.
    fn launch(
        &self,
        kernel: &str,
        blocks: u32,
        threads: u32,
        args: &[DeviceArg],
    ) -> std::result::Result<(), DeviceError>;
}

/// A zonotope forward pass on some device, for [`crate::bounds::margin_bounds_on`].
pub(crate) trait ZonoDevice: Send + Sync {
    /// The launcher's name ("cuda", "emu").
    fn name(&self) -> &'static str;
    /// The zonotope's margin lower bound of each interval (`−∞` for one given up at the
    /// symbol budget), as [`zonotope::forward`] computes it.
    fn zonotope_bounds(&self, net: &Net64, op0: usize, xs: &[Zono], targets: &[usize]) -> Result<Vec<f64>>;
}

/// One interval's zonotope on the device: `rows` dense rows of shape `dims`, and its box
/// radius on the host (`None`: zero, as everywhere before a max-pool).
struct DZono<M> {
    dims: [usize; 3],
    rows: usize,
    mem: M,
    r: Option<Vec<f64>>,
}

/// A host zonotope of the box `r` alone (no rows), for the CPU's maps of it.
fn box_only(dims: [usize; 3], r: Vec<f64>) -> Zono {
    Zono {
        dims,
        rows: Vec::new(),
        r,
        zero: None,
    }
}

/// `r` unless it is all zero.
fn nonzero(r: Vec<f64>) -> Option<Vec<f64>> {
    r.iter().any(|&v| v != 0.0).then_some(r)
}

impl<M> DZono<M> {
    fn d(&self) -> usize {
        self.dims.iter().product()
    }
}

/// The network's convolutions on a device, and the launcher that runs the bounds' kernels.
pub(crate) struct DeviceBounds<L: BoundsDevice> {
    l: L,
    /// Per convolution of the network: its weights and bias.
    convs: Vec<(L::Mem, L::Mem)>,
}

fn dev_err(what: &str, e: DeviceError) -> CertifyError {
    CertifyError::Device {
        what: what.to_string(),
        source: e,
    }
}

fn bytes_of(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

impl<L: BoundsDevice> DeviceBounds<L> {
    /// Uploads the convolutions of `net`.
    pub fn new(l: L, net: &Net64) -> Result<Self> {
        let mut convs = Vec::with_capacity(net.convs.len());
        for c in &net.convs {
            let w = upload(&l, c.weights())?;
            let b = upload(&l, &c.bias)?;
            convs.push((w, b));
        }
        Ok(DeviceBounds { l, convs })
    }

    fn launch(&self, kernel: &str, total: usize, args: &[DeviceArg]) -> Result<()> {
        if total == 0 {
            return Ok(());
        }
        let blocks = total.div_ceil(BLOCK as usize);
        let grid = u32::try_from(blocks).map_err(|_| CertifyError::Shape {
            what: format!("the launch of {kernel}"),
            expected: format!("at most {} blocks", u32::MAX),
            found: format!("{blocks}"),
        })?;
        self.l.launch(kernel, grid, BLOCK, args).map_err(|e| dev_err(kernel, e))
    }

    fn ptr(&self, m: &L::Mem) -> DeviceArg {
        DeviceArg::Ptr(self.l.ptr(m))
    }

    /// `n` values of unspecified contents.
    fn alloc(&self, n: usize) -> Result<L::Mem> {
        self.l.alloc(n * 8).map_err(|e| dev_err("allocating the zonotope", e))
    }

    fn fill(&self, m: &L::Mem, n: usize, v: f64) -> Result<()> {
        self.launch(
            "zono_fill_f64_v1",
            n,
            &[DeviceArg::I64(n as i64), DeviceArg::F64(v), self.ptr(m)],
        )
    }

    fn download(&self, m: &L::Mem, n: usize) -> Result<Vec<f64>> {
        let mut b = vec![0u8; n * 8];
        self.l
            .read(m, 0, &mut b)
            .map_err(|e| dev_err("reading the zonotope back", e))?;
        Ok(b.chunks_exact(8)
            .map(|c| f64::from_ne_bytes(c.try_into().expect("8 bytes")))
            .collect())
    }

    fn copy(&self, x: &DZono<L::Mem>) -> Result<DZono<L::Mem>> {
        let n = x.rows * x.d();
        let mut mem = self.alloc(n)?;
        self.l
            .copy(&x.mem, 0, &mut mem, 0, n * 8)
            .map_err(|e| dev_err("copying a block's input", e))?;
        Ok(DZono {
            dims: x.dims,
            rows: x.rows,
            mem,
            r: x.r.clone(),
        })
    }

    /// The stretch `x` (centre and slope, no symbols) on the device.
    fn stretch(&self, x: &Zono) -> Result<DZono<L::Mem>> {
        if x.rows.len() != 2 || x.r.iter().any(|&v| v != 0.0) {
            return Err(CertifyError::Shape {
                what: "an interval's stretch for the device".into(),
                expected: "a centre and a slope, no symbols, no box".into(),
                found: format!("{} rows", x.rows.len()),
            });
        }
        let data = [x.row(0).into_owned(), x.row(1).into_owned()].concat();
        Ok(DZono {
            dims: x.dims,
            rows: 2,
            mem: upload(&self.l, &data)?,
            r: None,
        })
    }

    /// Convolution `i` of every row, the bias on the centre.
    fn conv(&self, net: &Net64, i: usize, x: &DZono<L::Mem>) -> Result<DZono<L::Mem>> {
        let c = &net.convs[i];
        let g = c.geom(1, x.dims)?;
        let (oh, ow) = (g.out_h(), g.out_w());
        let dims = [g.c_out, oh, ow];
        let d: usize = dims.iter().product();
        let y = self.alloc(x.rows * d)?;
        let (w, b) = &self.convs[i];
        let [c_in, h, wd] = x.dims;
        let int = |v: usize| DeviceArg::I32(v as i32);
        self.launch(
            "zono_conv_f64_v1",
            x.rows * d,
            &[
                DeviceArg::I64((x.rows * d) as i64),
                int(c_in),
                int(h),
                int(wd),
                int(g.c_out),
                int(oh),
                int(ow),
                int(c.k),
                int(g.stride),
                int(g.pad),
                self.ptr(&x.mem),
                self.ptr(w),
                self.ptr(&y),
            ],
        )?;
        self.launch(
            "zono_bias_f64_v1",
            d,
            &[
                DeviceArg::I64(d as i64),
                int((oh * ow).max(1)),
                self.ptr(b),
                self.ptr(&y),
            ],
        )?;
        let r = match &x.r {
            Some(r) => nonzero(
                c.abs_part(&Batch {
                    n: 1,
                    dims: x.dims,
                    data: r.clone(),
                })?
                .data,
            ),
            None => None,
        };
        Ok(DZono {
            dims,
            rows: x.rows,
            mem: y,
            r,
        })
    }

    /// The ReLU, or `None` when the interval makes more neurons unstable than the symbol
    /// budget holds (the CPU's [`zonotope`] `relu`, with its choices).
    fn relu(&self, mut x: DZono<L::Mem>) -> Result<Option<DZono<L::Mem>>> {
        let d = x.d();
        let (lo, hi) = (self.alloc(d)?, self.alloc(d)?);
        let r = x.r.as_deref().map(|r| upload(&self.l, r)).transpose()?;
        self.launch(
            "zono_concrete_f64_v1",
            d,
            &[
                DeviceArg::I64(d as i64),
                DeviceArg::I32(x.rows as i32),
                self.ptr(&x.mem),
                r.as_ref().map_or(DeviceArg::Ptr(0), |r| self.ptr(r)),
                self.ptr(&lo),
                self.ptr(&hi),
            ],
        )?;
        let (lo, hi) = (self.download(&lo, d)?, self.download(&hi, d)?);
        let (scale, fresh) = zonotope::relax(&lo, &hi);
        if zonotope::over_budget(d, x.rows, fresh.len()) {
            return Ok(None);
        }
        x.r = x.r.take().and_then(|mut r| {
            zonotope::scale_box(&mut r, &scale);
            nonzero(r)
        });
        let s = upload(&self.l, &scale)?;
        self.launch(
            "zono_scale_f64_v1",
            x.rows * d,
            &[
                DeviceArg::I64((x.rows * d) as i64),
                DeviceArg::I64(d as i64),
                self.ptr(&s),
                self.ptr(&x.mem),
            ],
        )?;
        if fresh.is_empty() {
            return Ok(Some(x));
        }
        let m = fresh.len();
        let rows = x.rows + m;
        let mut mem = self.alloc(rows * d)?;
        // Zeros first (the new rows are zero but at their neuron), then the scaled rows.
        self.fill(&mem, rows * d, 0.0)?;
        self.l
            .copy(&x.mem, 0, &mut mem, 0, x.rows * d * 8)
            .map_err(|e| dev_err("growing the zonotope", e))?;
        let idx: Vec<u8> = fresh.iter().flat_map(|&(k, _)| (k as i64).to_ne_bytes()).collect();
        let idx_mem = upload_bytes(&self.l, &idx)?;
        let mu: Vec<f64> = fresh.iter().map(|&(_, mu)| mu).collect();
        let mu = upload(&self.l, &mu)?;
        self.launch(
            "zono_fresh_f64_v1",
            m,
            &[
                DeviceArg::I64(m as i64),
                DeviceArg::I64(d as i64),
                DeviceArg::I32(x.rows as i32),
                self.ptr(&idx_mem),
                self.ptr(&mu),
                self.ptr(&mem),
            ],
        )?;
        Ok(Some(DZono {
            dims: x.dims,
            rows,
            mem,
            r: x.r,
        }))
    }

    /// `y += x`, `x` holding the first rows of `y`.
    fn add(&self, y: &mut DZono<L::Mem>, x: &DZono<L::Mem>) -> Result<()> {
        if x.dims != y.dims || x.rows > y.rows {
            return Err(CertifyError::Shape {
                what: "a residual sum on the device".into(),
                expected: format!("a shortcut of shape {:?} with at most {} rows", y.dims, y.rows),
                found: format!("{:?} with {} rows", x.dims, x.rows),
            });
        }
        let n = x.rows * x.d();
        if let Some(xr) = &x.r {
            let yr = y.r.get_or_insert_with(|| vec![0.0; xr.len()]);
            yr.iter_mut().zip(xr).for_each(|(a, b)| *a += b);
        }
        self.launch(
            "zono_add_f64_v1",
            n,
            &[DeviceArg::I64(n as i64), self.ptr(&x.mem), self.ptr(&y.mem)],
        )
    }

    /// The max-pool, on the host: the CPU's [`zonotope::max_pool`] of the rows brought back.
    fn max_pool(&self, x: &DZono<L::Mem>) -> Result<DZono<L::Mem>> {
        let z = self.host(x)?;
        let (lo, hi) = z.concrete();
        let (out, _) = zonotope::max_pool(&z, &lo, &hi);
        let data: Vec<f64> = (0..out.rows.len()).flat_map(|i| out.row(i).into_owned()).collect();
        Ok(DZono {
            dims: out.dims,
            rows: out.rows.len(),
            mem: upload(&self.l, &data)?,
            r: nonzero(out.r),
        })
    }

    /// The zonotope on the host, every row dense.
    fn host(&self, x: &DZono<L::Mem>) -> Result<Zono> {
        let d = x.d();
        let data = self.download(&x.mem, x.rows * d)?;
        Ok(Zono {
            dims: x.dims,
            rows: data
                .chunks_exact(d.max(1))
                .map(|r| Row::full(x.dims, r.to_vec()))
                .collect(),
            r: x.r.clone().unwrap_or_else(|| vec![0.0; d]),
            zero: None,
        })
    }

    fn pad_a(&self, x: &DZono<L::Mem>, out: [usize; 3], pad: usize, subsample: bool) -> Result<DZono<L::Mem>> {
        let [c, h, w] = x.dims;
        let [co, oh, ow] = out;
        let total = x.rows * co * oh * ow;
        let y = self.alloc(total)?;
        let int = |v: usize| DeviceArg::I32(v as i32);
        self.launch(
            "zono_pad_a_f64_v1",
            total,
            &[
                DeviceArg::I64(total as i64),
                int(c),
                int(h),
                int(w),
                int(co),
                int(oh),
                int(ow),
                int(pad),
                int(if subsample { 2 } else { 1 }),
                self.ptr(&x.mem),
                self.ptr(&y),
            ],
        )?;
        let r =
            x.r.clone()
                .and_then(|r| nonzero(zonotope::pad_a(&box_only(x.dims, r), out, pad, subsample).r));
        Ok(DZono {
            dims: out,
            rows: x.rows,
            mem: y,
            r,
        })
    }

    fn avg_pool(&self, x: &DZono<L::Mem>) -> Result<DZono<L::Mem>> {
        let [c, h, w] = x.dims;
        let total = x.rows * c;
        let y = self.alloc(total)?;
        self.launch(
            "zono_avgpool_f64_v1",
            total,
            &[
                DeviceArg::I64(total as i64),
                DeviceArg::I32((h * w).max(1) as i32),
                self.ptr(&x.mem),
                self.ptr(&y),
            ],
        )?;
        let r =
            x.r.clone()
                .and_then(|r| nonzero(zonotope::avg_pool(&box_only(x.dims, r)).r));
        Ok(DZono {
            dims: [c, 1, 1],
            rows: x.rows,
            mem: y,
            r,
        })
    }

    /// One interval's zonotope margin bound.
    fn one(&self, net: &Net64, op0: usize, x: &Zono, target: usize) -> Result<f64> {
        let mut stack = vec![self.stretch(x)?];
        let top = |s: &mut Vec<DZono<L::Mem>>| s.pop().expect("the program keeps a top");
        for op in op0..net.ops.len() {
            let out = match net.ops[op] {
                Op::Conv(i) => {
                    let x = top(&mut stack);
                    self.conv(net, i, &x)?
                }
                Op::Relu => match self.relu(top(&mut stack))? {
                    Some(z) => z,
                    None => return Ok(f64::NEG_INFINITY),
                },
                Op::MaxPool => {
                    let x = top(&mut stack);
                    self.max_pool(&x)?
                }
                Op::Save => self.copy(stack.last().expect("a block input"))?,
                Op::AddShortcut(sc) => {
                    let branch = top(&mut stack);
                    let saved = top(&mut stack);
                    let share = match sc {
                        Shortcut64::Identity => saved,
                        Shortcut64::Projection(i) => self.conv(net, i, &saved)?,
                        Shortcut64::PadA { pad, subsample } => self.pad_a(&saved, branch.dims, pad, subsample)?,
                    };
                    let mut branch = branch;
                    self.add(&mut branch, &share)?;
                    branch
                }
                Op::AvgPool => {
                    let x = top(&mut stack);
                    self.avg_pool(&x)?
                }
                Op::Linear => {
                    let z = self.host(&top(&mut stack))?;
                    return Ok(zonotope::margins(net, &z, target));
                }
            };
            stack.push(out);
        }
        Err(CertifyError::Shape {
            what: "the network's program".into(),
            expected: "a classifier at its end".into(),
            found: "none".into(),
        })
    }
}

fn upload<L: BoundsDevice>(l: &L, v: &[f64]) -> Result<L::Mem> {
    upload_bytes(l, &bytes_of(v))
}

fn upload_bytes<L: BoundsDevice>(l: &L, bytes: &[u8]) -> Result<L::Mem> {
    let mut m = l
        .alloc(bytes.len())
        .map_err(|e| dev_err("allocating on the device", e))?;
    l.write(&mut m, 0, bytes)
        .map_err(|e| dev_err("writing to the device", e))?;
    Ok(m)
}

impl<L: BoundsDevice> ZonoDevice for DeviceBounds<L> {
    fn name(&self) -> &'static str {
        self.l.name()
    }

    fn zonotope_bounds(&self, net: &Net64, op0: usize, xs: &[Zono], targets: &[usize]) -> Result<Vec<f64>> {
        xs.iter().zip(targets).map(|(x, &t)| self.one(net, op0, x, t)).collect()
    }
}
