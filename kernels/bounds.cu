// bounds.cu: the zonotope of mep-certify's bounds (crates/mep-certify/src/zonotope.rs) on the
// device, in f64 (crates/mep-certify/src/device.rs runs them).
//
// An interval's zonotope is `rows` dense rows of one tensor `[c, h, w]` (`d` values each):
// the centre, the slope, then one row per noise symbol. Every kernel computes each value
// with the CPU's operations in the CPU's order, so the device's rows are the CPU's, value
// for value: the convolution is the chain of fused multiply-adds in `(ky, kx, ci)` order of
// the CPU's direct kernel (crates/mep-certify/src/direct.rs; taps in the padding, which the
// CPU may multiply by its zeros, add nothing), and sums that must not be contracted into an
// FMA are written with __dadd_rn / __dmul_rn.
//
//   zono_conv_f64      y[r] = W x[r] (no bias) for every row r
//   zono_bias_f64      the centre row += bias of its channel
//   zono_concrete_f64  per neuron, concrete bounds [lo, hi] of the rows on s ∈ [0, 1]
//   zono_scale_f64     every row times the ReLU's factor per neuron (1, 0 or λ)
//   zono_fresh_f64     the ReLU's new symbols: centre += μ, row n + j = μ_j at neuron idx_j
//   zono_add_f64       y += x (a residual sum: x holds the first rows of y)
//   zono_pad_a_f64     option A's shortcut: channels shifted by `pad`, pixels subsampled
//   zono_avgpool_f64   each row's channel means
//   zono_fill_f64      y = v
//
// v1 of each: one thread per output value, grid = ceil(total / blockDim.x). The convolution's
// v1 reads every row densely: its waste is the zeros outside a symbol's reach, which the CPU's
// windows skip (BENCHMARKS.md, "The bounds on the kernel backend", counts them).
#include "common.cuh"

// Where flat index `i` of `[rows, c, oh, ow]` lies.
struct RowPixel {
    long long row;
    int c, oy, ox;
};

__device__ __forceinline__ RowPixel row_pixel(long long i, int c, int oh, int ow) {
    RowPixel p;
    p.ox = (int)(i % ow);
    long long t = i / ow;
    p.oy = (int)(t % oh);
    t /= oh;
    p.c = (int)(t % c);
    p.row = t / c;
    return p;
}

extern "C" __global__ void zono_conv_f64_v1(long long total, int c_in, int h, int w, int c_out, int oh, int ow,
                                            int k, int stride, int pad, const double* __restrict__ x,
                                            const double* __restrict__ wt, double* __restrict__ y) {
    long long i = global_index();
    if (i >= total) return;
    RowPixel o = row_pixel(i, c_out, oh, ow);
    int ox = o.ox, oy = o.oy, co = o.c;
    long long r = o.row;
    const double* xr = x + r * (long long)c_in * h * w;
    double acc = 0.0;
    for (int ky = 0; ky < k; ++ky) {
        int iy = oy * stride - pad + ky;
        if (iy < 0 || iy >= h) continue;
        for (int kx = 0; kx < k; ++kx) {
            int ix = ox * stride - pad + kx;
            if (ix < 0 || ix >= w) continue;
            for (int ci = 0; ci < c_in; ++ci)
                acc = fma(wt[((co * c_in + ci) * k + ky) * k + kx], xr[((long long)ci * h + iy) * w + ix], acc);
        }
    }
    y[i] = acc;
}

extern "C" __global__ void zono_bias_f64_v1(long long d, int plane, const double* __restrict__ bias,
                                            double* __restrict__ y) {
    long long i = global_index();
    if (i < d) y[i] = __dadd_rn(y[i], bias[i / plane]);
}

// lo, hi = min/max(c0, c0 + c1) ∓ (Σ_{i≥2} |e_i| + r + 2⁻⁵⁰ g), g = |c0| + |c1| + Σ|e_i| + r
// (the CPU's `Zono::concrete`), the symbols summed in row order; `r` the box radius, or null
// for none.
extern "C" __global__ void zono_concrete_f64_v1(long long d, int rows, const double* __restrict__ x,
                                                const double* __restrict__ r, double* __restrict__ lo,
                                                double* __restrict__ hi) {
    long long k = global_index();
    if (k >= d) return;
    double s = 0.0;
    for (int i = 2; i < rows; ++i) s = __dadd_rn(s, fabs(x[(long long)i * d + k]));
    double c0 = x[k], c1 = x[d + k];
    double rk = r ? r[k] : 0.0;
    double g = __dadd_rn(__dadd_rn(__dadd_rn(fabs(c0), fabs(c1)), s), rk);
    double wdt = __dadd_rn(__dadd_rn(s, rk), __dmul_rn(0x1p-50, g));
    double e = __dadd_rn(c0, c1);
    lo[k] = __dsub_rn(fmin(c0, e), wdt);
    hi[k] = __dadd_rn(fmax(c0, e), wdt);
}

extern "C" __global__ void zono_scale_f64_v1(long long total, long long d, const double* __restrict__ scale,
                                             double* __restrict__ x) {
    long long i = global_index();
    if (i >= total) return;
    double f = scale[i % d];
    x[i] = f == 0.0 ? 0.0 : __dmul_rn(x[i], f);
}

extern "C" __global__ void zono_fresh_f64_v1(long long m, long long d, int rows, const long long* __restrict__ idx,
                                             const double* __restrict__ mu, double* __restrict__ x) {
    long long j = global_index();
    if (j >= m) return;
    long long k = idx[j];
    x[k] = __dadd_rn(x[k], mu[j]);
    x[((long long)rows + j) * d + k] = mu[j];
}

extern "C" __global__ void zono_add_f64_v1(long long n, const double* __restrict__ x, double* __restrict__ y) {
    long long i = global_index();
    if (i < n) y[i] = __dadd_rn(y[i], x[i]);
}

extern "C" __global__ void zono_pad_a_f64_v1(long long total, int c, int h, int w, int c_out, int oh, int ow,
                                             int pad, int s, const double* __restrict__ x,
                                             double* __restrict__ y) {
    long long i = global_index();
    if (i >= total) return;
    RowPixel o = row_pixel(i, c_out, oh, ow);
    int ci = o.c - pad;
    y[i] = (ci >= 0 && ci < c) ? x[((o.row * c + ci) * h + (long long)s * o.oy) * w + (long long)s * o.ox] : 0.0;
}

extern "C" __global__ void zono_avgpool_f64_v1(long long total, int hw, const double* __restrict__ x,
                                               double* __restrict__ y) {
    long long i = global_index();
    if (i >= total) return;
    double s = 0.0;
    for (int p = 0; p < hw; ++p) s = __dadd_rn(s, x[i * hw + p]);
    y[i] = __ddiv_rn(s, (double)hw);
}

extern "C" __global__ void zono_fill_f64_v1(long long n, double v, double* __restrict__ y) {
    long long i = global_index();
    if (i < n) y[i] = v;
}
