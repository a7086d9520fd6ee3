// batch_norm.cu: batch normalisation of NCHW f32 tensors x[n, c, h, w], per channel. A channel's
// m = n·hw values are numbered k = i·hw + j (sample i, pixel j); they lie at offset
// i·c·hw + j from the channel's first value x[ch·hw]. Every formula, and where it rounds to
// f32, is the CPU backend's (crates/mep-tensor/src/cpu/ops.rs); sums are taken in double.
//
//   batch_norm_infer      y = act((x − mean)·s + β), s = γ / √(var + eps) rounded once;
//                         act: act_apply of common.cuh (identity, relu, leaky relu, sigmoid)
//   batch_norm_infer_bwd  dx = dy·k, k = γ·(1/√(var + eps)); with the params kernel
//                         dγ = Σ dy (x − mean) / √(var + eps), dβ = Σ dy (either may be null)
//   batch_norm_train      batch mean μ and biased variance σ² from sums shifted by the
//                         channel's first value (no cancellation when |μ| ≫ σ), σ² clamped at
//                         0 but NaN kept (a channel holding NaN or ±∞ has NaN variance, as in
//                         PyTorch); y = act((x − μ)·γ·invstd + β);
//                         save_mean = μ, save_invstd = 1/√(σ² + eps); running stats
//                         r = (1 − momentum) r + momentum·stat with the unbiased σ²·m/(m − 1)
//   batch_norm_train_bwd  dγ = invstd Σ dy (x − μ), dβ = Σ dy,
//                         dx = a·dy + b − q·(x − μ), a = γ·invstd, b = −a·dβ/m, q = a·invstd·dγ/m
//
// v1, the specification: one thread per channel for the reductions (batch_norm_train_stats,
// batch_norm_infer_params, batch_norm_train_bwd_sums; the per-channel coefficients go to a
// small scratch array), one thread per element for the maps (batch_norm_infer,
// batch_norm_infer_bwd, batch_norm_apply, batch_norm_train_bwd_dx); grid = ceil(count / blockDim.x).
// v2: grid (c, S): S slices per channel so that small c still fills the GPU, blockDim.x a
// multiple of 32; a block's threads walk consecutive k of its slice (coalesced within a
// plane, no division per element). Reductions are two launches without atomics, so results
// are deterministic: a *_partial kernel writes each slice's double sums (block_sum2) to
// part[(ch·S + s)·2 + {0, 1}], then the second kernel re-sums a channel's S partials in slice
// order in every block, finishes the statistics (block (ch, 0) writes the per-channel outputs)
// and maps its slice. batch_norm_infer_bwd_f32_v2 computes dx and the partials in one pass
// (part may be null when neither dγ nor dβ is wanted); batch_norm_infer_params_f32_v2
// (one thread per channel) finishes them.
#include "common.cuh"

// Inference scale γ / √(var + eps), one division in double (the CPU's forward).
__device__ __forceinline__ float bn_infer_scale(float gamma, float var, float eps) {
    return (float)((double)gamma / sqrt((double)var + (double)eps));
}

// 1 / √(var + eps) in double (the CPU's backward multiplies by it).
__device__ __forceinline__ double bn_invstd(float var, float eps) {
    return 1.0 / sqrt((double)var + (double)eps);
}

// Batch statistics from the shifted sums s1 = Σ (x − shift), s2 = Σ (x − shift)².
__device__ __forceinline__ void bn_batch_stats(double m, double shift, double s1, double s2, float eps,
                                               double& mean, double& var, double& invstd) {
    double d = s1 / m;
    // Clamped at 0 against cancellation, but not with fmax, which turns the NaN of a non-finite
    // input into 0 (PyTorch's variance is NaN then; the CPU's float::relu).
    double v = s2 / m - d * d;
    var = v < 0.0 ? 0.0 : v;
    mean = shift + d;
    invstd = 1.0 / sqrt(var + (double)eps);
}

// Saved statistics for backward and PyTorch's running update (unbiased variance).
__device__ __forceinline__ void bn_write_stats(long long ch, double m, double mean, double var, double invstd,
                                               float momentum, float* running_mean, float* running_var,
                                               float* save_mean, float* save_invstd) {
    save_mean[ch] = (float)mean;
    save_invstd[ch] = (float)invstd;
    double unbiased = m > 1.0 ? var * m / (m - 1.0) : var;
    double mom = momentum;
    running_mean[ch] = (float)((1.0 - mom) * (double)running_mean[ch] + mom * mean);
    running_var[ch] = (float)((1.0 - mom) * (double)running_var[ch] + mom * unbiased);
}

// Backward coefficients from Σ dy and Σ dy (x − μ); writes dγ, dβ.
__device__ __forceinline__ void bn_bwd_coef(long long ch, double m, double sd, double sxd, float gamma,
                                            float save_invstd, float* dgamma, float* dbeta, float& a, float& b,
                                            float& q) {
    double invstd = save_invstd, dg = sxd * invstd, ad = (double)gamma * invstd;
    if (dgamma) dgamma[ch] = (float)dg;
    if (dbeta) dbeta[ch] = (float)sd;
    a = (float)ad;
    b = m > 0.0 ? (float)(-ad * sd / m) : 0.0f;
    q = m > 0.0 ? (float)(ad * invstd * dg / m) : 0.0f;
}

// ---- v2 helpers ------------------------------------------------------------------------

// Slice s of S of a channel of m values: [k0, k1), cut at multiples of 32.
__device__ __forceinline__ void bn_slice(long long m, int s, int slices, long long& k0, long long& k1) {
    long long chunk = ((m + slices - 1) / slices + 31) / 32 * 32;
    k0 = min(m, (long long)s * chunk);
    k1 = min(m, k0 + chunk);
}

// Calls f(off) for k in [k0, k1) of one channel, off = i·chw + j its offset from the channel's
// first value; thread t takes k0 + t, k0 + t + blockDim.x, ... Returns to the caller (any
// barrier after it is reached by every thread).
template <class F>
__device__ __forceinline__ void bn_channel_for(long long k0, long long k1, long long hw, long long chw, F f) {
    long long step = blockDim.x, k = k0 + threadIdx.x;
    if (k >= k1) return;
    long long i = k / hw, j = k - i * hw;
    for (;;) {
        f(i * chw + j);
        k += step;
        if (k >= k1) return;
        j += step;
        if (j >= hw) {
            // j < hw + step: one plane on when hw ≥ step, else j < 2·step fits 32 bits.
            long long q = hw >= step ? 1 : (long long)((unsigned)j / (unsigned)hw);
            i += q;
            j -= q * hw;
        }
    }
}

// ---- inference forward -----------------------------------------------------------------

extern "C" __global__ void batch_norm_infer_f32_v1(long long n, long long c, long long hw,
                                                   const float* __restrict__ x, const float* __restrict__ gamma,
                                                   const float* __restrict__ beta, const float* __restrict__ mean,
                                                   const float* __restrict__ var, float eps, int act, float slope,
                                                   float* __restrict__ y) {
    long long i = global_index();
    if (i >= n * c * hw) return;
    long long ch = (i / hw) % c;
    float s = bn_infer_scale(gamma[ch], var[ch], eps);
    y[i] = act_apply(act, slope, (x[i] - mean[ch]) * s + beta[ch]);
}

extern "C" __global__ void batch_norm_infer_f32_v2(long long n, long long c, long long hw, int slices,
                                                   const float* __restrict__ x, const float* __restrict__ gamma,
                                                   const float* __restrict__ beta, const float* __restrict__ mean,
                                                   const float* __restrict__ var, float eps, int act, float slope,
                                                   float* __restrict__ y) {
    long long ch = blockIdx.x, k0, k1;
    bn_slice(n * hw, blockIdx.y, slices, k0, k1);
    float mu = mean[ch], s = bn_infer_scale(gamma[ch], var[ch], eps), b = beta[ch];
    const float* xc = x + ch * hw;
    float* yc = y + ch * hw;
    bn_channel_for(k0, k1, hw, c * hw, [&](long long off) { yc[off] = act_apply(act, slope, (xc[off] - mu) * s + b); });
}

// ---- inference backward ----------------------------------------------------------------

extern "C" __global__ void batch_norm_infer_bwd_f32_v1(long long n, long long c, long long hw,
                                                       const float* __restrict__ dy, const float* __restrict__ gamma,
                                                       const float* __restrict__ var, float eps,
                                                       float* __restrict__ dx) {
    long long i = global_index();
    if (i >= n * c * hw) return;
    long long ch = (i / hw) % c;
    dx[i] = dy[i] * (float)((double)gamma[ch] * bn_invstd(var[ch], eps));
}

// dγ and dβ (either may be null), one thread per channel.
extern "C" __global__ void batch_norm_infer_params_f32_v1(long long n, long long c, long long hw,
                                                          const float* __restrict__ x, const float* __restrict__ dy,
                                                          const float* __restrict__ mean,
                                                          const float* __restrict__ var, float eps,
                                                          float* __restrict__ dgamma, float* __restrict__ dbeta) {
    long long ch = global_index();
    if (ch >= c) return;
    double mu = mean[ch], sd = 0.0, sxd = 0.0;
    for (long long i = 0; i < n; ++i) {
        long long p = (i * c + ch) * hw;
        for (long long j = 0; j < hw; ++j) {
            double g = dy[p + j];
            sd += g;
            sxd += g * ((double)x[p + j] - mu);
        }
    }
    if (dgamma) dgamma[ch] = (float)(sxd * bn_invstd(var[ch], eps));
    if (dbeta) dbeta[ch] = (float)sd;
}

// dx over the slice and, when part is not null, the slice's Σ dy and Σ dy (x − mean).
extern "C" __global__ void batch_norm_infer_bwd_f32_v2(long long n, long long c, long long hw, int slices,
                                                       const float* __restrict__ x, const float* __restrict__ dy,
                                                       const float* __restrict__ gamma,
                                                       const float* __restrict__ mean,
                                                       const float* __restrict__ var, float eps,
                                                       float* __restrict__ dx, double* __restrict__ part) {
    long long ch = blockIdx.x, k0, k1;
    int s = blockIdx.y;
    bn_slice(n * hw, s, slices, k0, k1);
    float k = (float)((double)gamma[ch] * bn_invstd(var[ch], eps));
    const float* xc = x + ch * hw;
    const float* dyc = dy + ch * hw;
    float* dxc = dx + ch * hw;
    if (!part) {
        bn_channel_for(k0, k1, hw, c * hw, [&](long long off) { dxc[off] = dyc[off] * k; });
        return; // uniform over the block
    }
    double mu = mean[ch], sd = 0.0, sxd = 0.0;
    bn_channel_for(k0, k1, hw, c * hw, [&](long long off) {
        float g = dyc[off];
        dxc[off] = g * k;
        sd += (double)g;
        sxd += (double)g * ((double)xc[off] - mu);
    });
    block_sum2(sd, sxd);
    if (threadIdx.x == 0) {
        part[2 * (ch * slices + s)] = sd;
        part[2 * (ch * slices + s) + 1] = sxd;
    }
}

// dγ and dβ (either may be null) from the partials of batch_norm_infer_bwd_f32_v2, one
// thread per channel.
extern "C" __global__ void batch_norm_infer_params_f32_v2(long long c, int slices, const double* __restrict__ part,
                                                          const float* __restrict__ var, float eps,
                                                          float* __restrict__ dgamma, float* __restrict__ dbeta) {
    long long ch = global_index();
    if (ch >= c) return;
    double sd = 0.0, sxd = 0.0;
    for (int s = 0; s < slices; ++s) {
        sd += part[2 * (ch * slices + s)];
        sxd += part[2 * (ch * slices + s) + 1];
    }
    if (dgamma) dgamma[ch] = (float)(sxd * bn_invstd(var[ch], eps));
    if (dbeta) dbeta[ch] = (float)sd;
}

// ---- training forward ------------------------------------------------------------------

// Statistics of one channel per thread; scale[ch] = γ·invstd for batch_norm_apply_f32_v1.
// Needs m ≥ 1 (the host checks m ≥ 2).
extern "C" __global__ void batch_norm_train_stats_f32_v1(long long n, long long c, long long hw,
                                                         const float* __restrict__ x,
                                                         const float* __restrict__ gamma, float momentum,
                                                         float eps, float* __restrict__ running_mean,
                                                         float* __restrict__ running_var,
                                                         float* __restrict__ save_mean,
                                                         float* __restrict__ save_invstd,
                                                         float* __restrict__ scale) {
    long long ch = global_index();
    if (ch >= c) return;
    double shift = x[ch * hw], s1 = 0.0, s2 = 0.0;
    for (long long i = 0; i < n; ++i) {
        const float* xp = x + (i * c + ch) * hw;
        for (long long j = 0; j < hw; ++j) {
            double d = (double)xp[j] - shift;
            s1 += d;
            s2 += d * d;
        }
    }
    double m = (double)(n * hw), mu, var, invstd;
    bn_batch_stats(m, shift, s1, s2, eps, mu, var, invstd);
    bn_write_stats(ch, m, mu, var, invstd, momentum, running_mean, running_var, save_mean, save_invstd);
    scale[ch] = (float)((double)gamma[ch] * invstd);
}

// y = act((x − mean)·scale + β), per-channel f32 coefficients, one thread per element.
extern "C" __global__ void batch_norm_apply_f32_v1(long long n, long long c, long long hw,
                                                   const float* __restrict__ x, const float* __restrict__ mean,
                                                   const float* __restrict__ scale, const float* __restrict__ beta,
                                                   int act, float slope, float* __restrict__ y) {
    long long i = global_index();
    if (i >= n * c * hw) return;
    long long ch = (i / hw) % c;
    y[i] = act_apply(act, slope, (x[i] - mean[ch]) * scale[ch] + beta[ch]);
}

// The slice's Σ (x − shift), Σ (x − shift)², shift = the channel's first value (m ≥ 1).
extern "C" __global__ void batch_norm_train_partial_f32_v2(long long n, long long c, long long hw, int slices,
                                                           const float* __restrict__ x, double* __restrict__ part) {
    long long ch = blockIdx.x, k0, k1;
    int s = blockIdx.y;
    bn_slice(n * hw, s, slices, k0, k1);
    const float* xc = x + ch * hw;
    double shift = xc[0], s1 = 0.0, s2 = 0.0;
    bn_channel_for(k0, k1, hw, c * hw, [&](long long off) {
        double d = (double)xc[off] - shift;
        s1 += d;
        s2 += d * d;
    });
    block_sum2(s1, s2);
    if (threadIdx.x == 0) {
        part[2 * (ch * slices + s)] = s1;
        part[2 * (ch * slices + s) + 1] = s2;
    }
}

// Statistics from the partials (every block, same order), saved and running statistics from
// block (ch, 0), then the slice normalised.
extern "C" __global__ void batch_norm_train_apply_f32_v2(long long n, long long c, long long hw, int slices,
                                                         const float* __restrict__ x,
                                                         const double* __restrict__ part,
                                                         const float* __restrict__ gamma,
                                                         const float* __restrict__ beta, float momentum, float eps,
                                                         int act, float slope, float* __restrict__ running_mean,
                                                         float* __restrict__ running_var,
                                                         float* __restrict__ save_mean,
                                                         float* __restrict__ save_invstd, float* __restrict__ y) {
    long long ch = blockIdx.x, k0, k1;
    int s = blockIdx.y;
    double s1 = 0.0, s2 = 0.0;
    for (int t = 0; t < slices; ++t) {
        s1 += part[2 * (ch * slices + t)];
        s2 += part[2 * (ch * slices + t) + 1];
    }
    const float* xc = x + ch * hw;
    double m = (double)(n * hw), mean, var, invstd;
    bn_batch_stats(m, (double)xc[0], s1, s2, eps, mean, var, invstd);
    if (s == 0 && threadIdx.x == 0)
        bn_write_stats(ch, m, mean, var, invstd, momentum, running_mean, running_var, save_mean, save_invstd);
    float mu = (float)mean, a = (float)((double)gamma[ch] * invstd), b = beta[ch];
    float* yc = y + ch * hw;
    bn_slice(n * hw, s, slices, k0, k1);
    bn_channel_for(k0, k1, hw, c * hw, [&](long long off) { yc[off] = act_apply(act, slope, (xc[off] - mu) * a + b); });
}

// ---- training backward -----------------------------------------------------------------

// Σ dy, Σ dy (x − μ) of one channel per thread; dγ, dβ and coef[3 ch..] = (a, b, q) for
// batch_norm_train_bwd_dx_f32_v1.
extern "C" __global__ void batch_norm_train_bwd_sums_f32_v1(long long n, long long c, long long hw,
                                                            const float* __restrict__ x,
                                                            const float* __restrict__ dy,
                                                            const float* __restrict__ gamma,
                                                            const float* __restrict__ save_mean,
                                                            const float* __restrict__ save_invstd,
                                                            float* __restrict__ dgamma, float* __restrict__ dbeta,
                                                            float* __restrict__ coef) {
    long long ch = global_index();
    if (ch >= c) return;
    double mu = save_mean[ch], sd = 0.0, sxd = 0.0;
    for (long long i = 0; i < n; ++i) {
        long long p = (i * c + ch) * hw;
        for (long long j = 0; j < hw; ++j) {
            double g = dy[p + j];
            sd += g;
            sxd += g * ((double)x[p + j] - mu);
        }
    }
    bn_bwd_coef(ch, (double)(n * hw), sd, sxd, gamma[ch], save_invstd[ch], dgamma, dbeta, coef[3 * ch],
                coef[3 * ch + 1], coef[3 * ch + 2]);
}

extern "C" __global__ void batch_norm_train_bwd_dx_f32_v1(long long n, long long c, long long hw,
                                                          const float* __restrict__ x, const float* __restrict__ dy,
                                                          const float* __restrict__ save_mean,
                                                          const float* __restrict__ coef, float* __restrict__ dx) {
    long long i = global_index();
    if (i >= n * c * hw) return;
    long long ch = (i / hw) % c;
    float a = coef[3 * ch], b = coef[3 * ch + 1], q = coef[3 * ch + 2];
    dx[i] = a * dy[i] + b - q * (x[i] - save_mean[ch]);
}

// The slice's Σ dy and Σ dy (x − mean).
extern "C" __global__ void batch_norm_grad_partial_f32_v2(long long n, long long c, long long hw, int slices,
                                                          const float* __restrict__ x, const float* __restrict__ dy,
                                                          const float* __restrict__ mean,
                                                          double* __restrict__ part) {
    long long ch = blockIdx.x, k0, k1;
    int s = blockIdx.y;
    bn_slice(n * hw, s, slices, k0, k1);
    const float* xc = x + ch * hw;
    const float* dyc = dy + ch * hw;
    double mu = mean[ch], sd = 0.0, sxd = 0.0;
    bn_channel_for(k0, k1, hw, c * hw, [&](long long off) {
        double g = dyc[off];
        sd += g;
        sxd += g * ((double)xc[off] - mu);
    });
    block_sum2(sd, sxd);
    if (threadIdx.x == 0) {
        part[2 * (ch * slices + s)] = sd;
        part[2 * (ch * slices + s) + 1] = sxd;
    }
}

// Coefficients from the partials (every block, same order), dγ and dβ from block (ch, 0),
// then dx over the slice.
extern "C" __global__ void batch_norm_train_bwd_f32_v2(long long n, long long c, long long hw, int slices,
                                                       const float* __restrict__ x, const float* __restrict__ dy,
                                                       const float* __restrict__ gamma,
                                                       const float* __restrict__ save_mean,
                                                       const float* __restrict__ save_invstd,
                                                       const double* __restrict__ part, float* __restrict__ dx,
                                                       float* __restrict__ dgamma, float* __restrict__ dbeta) {
    long long ch = blockIdx.x, k0, k1;
    int s = blockIdx.y;
    double sd = 0.0, sxd = 0.0;
    for (int t = 0; t < slices; ++t) {
        sd += part[2 * (ch * slices + t)];
        sxd += part[2 * (ch * slices + t) + 1];
    }
    bool writer = s == 0 && threadIdx.x == 0;
    float a, b, q;
    bn_bwd_coef(ch, (double)(n * hw), sd, sxd, gamma[ch], save_invstd[ch], writer ? dgamma : nullptr,
                writer ? dbeta : nullptr, a, b, q);
    float mu = save_mean[ch];
    const float* xc = x + ch * hw;
    const float* dyc = dy + ch * hw;
    float* dxc = dx + ch * hw;
    bn_slice(n * hw, s, slices, k0, k1);
    bn_channel_for(k0, k1, hw, c * hw, [&](long long off) { dxc[off] = a * dyc[off] + b - q * (xc[off] - mu); });
}
