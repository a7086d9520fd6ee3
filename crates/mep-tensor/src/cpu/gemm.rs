//! The GEMM plumbing of the CPU backend's convolutions and linear layers: the scratch
//! [`Workspace`], [`gemm_fixed_order`] (the `gemm` crate held to the kernels that round the
//! same on every x86-64 machine) and its row-major f32 form.

use gemm::Parallelism;
use std::sync::Mutex;

/// Buffers the workspace keeps; enough for every thread of a large machine to hold two.
const WS_MAX_BUFFERS: usize = 64;

/// Scratch memory (im2col columns, transformed weights, partial weight gradients) reused
/// across calls, so that a warm network does not allocate in its convolutions.
#[derive(Default)]
pub struct Workspace {
    free: Mutex<Vec<Vec<f32>>>,
}

impl Workspace {
    /// A buffer of `len` floats with unspecified contents; back to the pool when dropped.
    pub(super) fn take(&self, len: usize) -> Scratch<'_> {
        let mut v = {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            // Prefer the smallest buffer that fits, else grow the largest (fewest reallocations).
            let fit = best_fit(&free, len, Vec::len);
            let pick = fit.or_else(|| free.iter().enumerate().max_by_key(|(_, v)| v.len()).map(|(i, _)| i));
            pick.map(|i| free.swap_remove(i)).unwrap_or_default()
        };
        // Buffers keep their full length between loans and only ever grow, so that reuse
        // never zero-fills (a truncated Vec would refill on its next, longer loan).
        if v.len() < len {
            v.resize(len, 0.0);
        }
        Scratch { ws: self, v, len }
    }
}

/// The index of the smallest of the `free` buffers whose `size` is at least `len`, if any.
pub(super) fn best_fit(free: &[Vec<f32>], len: usize, size: fn(&Vec<f32>) -> usize) -> Option<usize> {
    free.iter()
        .enumerate()
        .filter(|(_, v)| size(v) >= len)
        .min_by_key(|(_, v)| size(v))
        .map(|(i, _)| i)
}

/// A workspace buffer on loan; derefs to its first `len` floats.
pub(super) struct Scratch<'a> {
    ws: &'a Workspace,
    v: Vec<f32>,
    len: usize,
}

impl std::ops::Deref for Scratch<'_> {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.v[..self.len]
    }
}

impl std::ops::DerefMut for Scratch<'_> {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.v[..self.len]
    }
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.v);
        let mut free = self.ws.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < WS_MAX_BUFFERS {
            free.push(v);
        }
    }
}

/// A raw pointer that rayon tasks may share; each task writes a disjoint region of it.
#[derive(Clone, Copy)]
pub(super) struct SharedMut(pub(super) *mut f32);
// SAFETY: the tasks that share it only ever touch disjoint elements.
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// The pointer; a method so that closures capture the whole (`Sync`) wrapper.
    pub(super) fn get(self) -> *mut f32 {
        self.0
    }
}

/// [`gemm_fixed_order`] with a row-major `dst` (unit column stride).
///
/// # Safety
/// As [`gemm_fixed_order`].
/// `dst` is `(pointer, row stride)`, `lhs` and `rhs` `(pointer, row stride, column stride)`.
pub(super) unsafe fn sgemm(
    (m, n, k): (usize, usize, usize),
    (dst, dst_rs): (*mut f32, usize),
    accumulate: bool,
    (lhs, lhs_rs, lhs_cs): (*const f32, usize, usize),
    (rhs, rhs_rs, rhs_cs): (*const f32, usize, usize),
    par: Parallelism,
) {
    gemm_fixed_order(
        m, n, k, dst, dst_rs, 1, accumulate, lhs, lhs_rs, lhs_cs, rhs, rhs_rs, rhs_cs, par,
    );
}

/// [`sgemm`] on slices: `dst[rows×cols] = a·b` with `dst` row-major and each operand
/// `(values, row stride, column stride)`, `rows×depth` and `depth×cols`.
///
/// # Panics
/// When a matrix does not lie inside its slice.
pub(super) fn sgemm_into(
    (rows, cols, depth): (usize, usize, usize),
    dst: &mut [f32],
    (a, a_rs, a_cs): (&[f32], usize, usize),
    (b, b_rs, b_cs): (&[f32], usize, usize),
    par: Parallelism,
) {
    assert!(
        dst.len() >= rows * cols && inside(a, (rows, depth), (a_rs, a_cs)) && inside(b, (depth, cols), (b_rs, b_cs))
    );
    // SAFETY: both operands lie inside their slices (asserted), and `dst` is borrowed mutably.
    unsafe {
        sgemm(
            (rows, cols, depth),
            (dst.as_mut_ptr(), cols),
            false,
            (a.as_ptr(), a_rs, a_cs),
            (b.as_ptr(), b_rs, b_cs),
            par,
        );
    }
}

/// Whether an `r×c` matrix at strides `(rs, cs)` lies inside `v` (an empty one always does).
fn inside(v: &[f32], (r, c): (usize, usize), (rs, cs): (usize, usize)) -> bool {
    r == 0 || c == 0 || v.len() > (r - 1) * rs + (c - 1) * cs
}

/// The most depth one call to gemm gets: gemm blocks its depth by `kc`, which it derives from
/// the L1 cache it reads from /sys and the shape of its micro-kernel (AVX2 or AVX-512), and
/// the blocks change how each output's sum is rounded. For `k ≤ 512` gemm takes `kc = k` on
/// every machine, so [`gemm_fixed_order`] cuts the depth itself, into equal blocks of at most
/// this many.
pub(crate) const GEMM_MAX_DEPTH: usize = 512;
/// Outputs (`m·n`) up to which gemm sums a product of two operands that are both contiguous
/// along the depth with its dot-product ("horizontal") kernels, in 8 lanes with AVX2 and 16
/// with AVX-512, then across the lanes: a machine-dependent rounding. gemm 0.19's threshold.
const GEMM_HORIZONTAL_MAX_OUTPUTS: usize = 16 * 16;

/// `dst[m×n] = lhs[m×k]·rhs[k×n]`, or `+=` when `accumulate`; each matrix given by its pointer,
/// row stride and column stride (in elements).
///
/// Bit-identical on every x86-64 machine, AVX2 or AVX-512, whatever its caches and thread
/// count: each output is `dst (+)= Σ_blocks (Σ_{p in block} lhs·rhs)`, the inner sum a chain
/// of fused multiply-adds in depth order. gemm's main micro-kernel computes exactly that per
/// output whatever its register tile and however it splits m and n over threads; only its
/// depth blocking and its dot-product, matrix-vector and depth ≤ 2 special cases round
/// differently by machine. So the depth is cut here (`GEMM_MAX_DEPTH`), and the shapes that
/// would reach a special case (`m ≤ 1`, `n ≤ 1`, `k ≤ 2`, or both operands contiguous along
/// the depth with at most `GEMM_HORIZONTAL_MAX_OUTPUTS` outputs) run `sgemm_small`
/// instead: small products, where the portable loop costs little.
///
/// # Safety
/// Every addressed element must be inside its allocation, and `dst` must not alias the others.
///
/// Generic over f32 (the backend) and f64 (mep-certify's exact arithmetic), which gemm
/// dispatches alike.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_fixed_order<T: FixedOrderScalar>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    dst_rs: usize,
    dst_cs: usize,
    accumulate: bool,
    lhs: *const T,
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: *const T,
    rhs_rs: usize,
    rhs_cs: usize,
    par: Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    *dst.add(i * dst_rs + j * dst_cs) = T::ZERO;
                }
            }
        }
        return;
    }
    let blocks = k.div_ceil(GEMM_MAX_DEPTH);
    let depth = k.div_ceil(blocks);
    let dot_layout = lhs_cs == 1 && rhs_rs == 1;
    let mut p0 = 0;
    while p0 < k {
        let kb = depth.min(k - p0);
        let acc = accumulate || p0 > 0;
        let (l, r) = (lhs.wrapping_add(p0 * lhs_cs), rhs.wrapping_add(p0 * rhs_rs));
        let special = m <= 1 || n <= 1 || kb <= 2 || (dot_layout && m * n <= GEMM_HORIZONTAL_MAX_OUTPUTS);
        if special {
            sgemm_small(
                (m, n, kb),
                (dst, dst_rs, dst_cs),
                acc,
                (l, lhs_rs, lhs_cs),
                (r, rhs_rs, rhs_cs),
            );
        } else {
            gemm::gemm(
                m,
                n,
                kb,
                dst,
                dst_cs as isize,
                dst_rs as isize,
                acc,
                l,
                lhs_cs as isize,
                lhs_rs as isize,
                r,
                rhs_cs as isize,
                rhs_rs as isize,
                T::ONE,
                T::ONE,
                false,
                false,
                false,
                par,
            );
        }
        p0 += kb;
    }
}

/// [`gemm_fixed_order`] as plain loops, for the shapes where gemm's own kernels would round by
/// machine: per output a fused multiply-add chain in depth order from zero, then added to
/// `dst` (as gemm's main micro-kernel does, so both paths agree to the bit). Each matrix is
/// `(pointer, row stride, column stride)`.
///
/// # Safety
/// As [`gemm_fixed_order`].
unsafe fn sgemm_small<T: FixedOrderScalar>(
    (m, n, k): (usize, usize, usize),
    (dst, dst_rs, dst_cs): (*mut T, usize, usize),
    accumulate: bool,
    (lhs, lhs_rs, lhs_cs): (*const T, usize, usize),
    (rhs, rhs_rs, rhs_cs): (*const T, usize, usize),
) {
    for i in 0..m {
        for j in 0..n {
            let mut acc = T::ZERO;
            for p in 0..k {
                acc = (*lhs.add(i * lhs_rs + p * lhs_cs)).fma(*rhs.add(p * rhs_rs + j * rhs_cs), acc);
            }
            let d = dst.add(i * dst_rs + j * dst_cs);
            *d = if accumulate { *d + acc } else { acc };
        }
    }
}

/// The element types of [`gemm_fixed_order`]: gemm's f32 and f64, with the fused
/// multiply-add its main micro-kernel uses.
pub trait FixedOrderScalar: Copy + 'static + std::ops::Add<Output = Self> {
    const ZERO: Self;
    const ONE: Self;
    /// `self · a + b`, rounded once.
    fn fma(self, a: Self, b: Self) -> Self;
}

impl FixedOrderScalar for f32 {
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;
    fn fma(self, a: f32, b: f32) -> f32 {
        self.mul_add(a, b)
    }
}

impl FixedOrderScalar for f64 {
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;
    fn fma(self, a: f64, b: f64) -> f64 {
        self.mul_add(a, b)
    }
}
