// pool.cu: pooling and resampling of NCHW f32 tensors, plane by plane (a plane is one
// (sample, channel) pair, h·w values). Semantics are the CPU backend's
// (crates/mep-tensor/src/cpu/ops.rs).
//
//   max_pool2d            y = max over each k×k window at `stride`, padding `pad` counting as −∞
//                         (the window is clipped to the input). PyTorch's scan: row-major, a
//                         value takes over when it is larger or NaN, so ties keep the first
//                         maximum and NaN propagates
//   max_pool2d_bwd        dx[argmax of each window] += dy, the argmax recomputed from x by the
//                         same scan; each dx sums its windows' dy in row-major window order, as
//                         the CPU does, so results are bitwise the CPU's
//   global_avg_pool       y[p] = (Σ_plane x in double) / hw;  bwd: dx = dy[p] / hw in f32
//   upsample_nearest2x    y[p, i, j] = x[p, i/2, j/2];  bwd: dx = (dy00 + dy01) + (dy10 + dy11)
//   shortcut_pad          option-A shortcut: x[:, :, ::2, ::2] when subsample, then `pad` zero
//                         channels before and after;  bwd: the kept pixels get their dy, others 0
//
// v1 everywhere: one thread per output element (max_pool2d_bwd: per dx element, gathering
// from the windows that contain it; no atomics), grid = ceil(count / blockDim.x);
// global_avg_pool v1: one thread per plane.
// max_pool2d v2: 8×32 outputs per block of 256 threads, grid (planes, tiles of the plane);
//   the block stages its input tile ((8−1)·stride + k) × ((32−1)·stride + k) in shared
//   memory (at most POOL_TILE floats: the host falls back to v1 beyond), so each input is
//   read from global memory once instead of (k/stride)² times.
// max_pool2d_bwd v2: max_pool2d_argmax_f32_v2 writes each window's argmax (int, within the
//   plane) once, then each dx gathers from at most ⌈k/stride⌉² argmaxes instead of
//   rescanning every window.
// global_avg_pool v2: one warp per plane (8 per block of 256), lanes striding over the plane.
// global_avg_pool_bwd, upsample_nearest2x(_bwd), shortcut_pad(_bwd): v1 only (plain copies).
#include "common.cuh"

// Output tile of max_pool2d_f32_v2 and the capacity of its staged input tile, in floats.
#define POOL_TH 8
#define POOL_TW 32
#define POOL_TILE 4096

// The input range [lo, hi) that window o covers along a dimension of `size`, clipped.
__device__ __forceinline__ void pool_window(long long o, int k, int stride, int pad, long long size, long long& lo,
                                            long long& hi) {
    long long start = o * stride - pad;
    lo = min(max(start, 0LL), size);
    hi = min(max(start + k, 0LL), size);
}

// PyTorch's scan rule: larger, or NaN, takes over.
__device__ __forceinline__ bool pool_takes_over(float v, float best) {
    return v > best || v != v;
}

// Index within the plane of the maximum of window (oy, ox) (clipped window's first value
// when every value is −∞), and that maximum.
__device__ __forceinline__ long long pool_argmax(const float* xp, long long h, long long w, int k, int stride,
                                                 int pad, long long oy, long long ox, float& best) {
    long long h0, h1, w0, w1;
    pool_window(oy, k, stride, pad, h, h0, h1);
    pool_window(ox, k, stride, pad, w, w0, w1);
    long long arg = h0 * w + w0;
    best = NEG_INF_F;
    for (long long iy = h0; iy < h1; ++iy)
        for (long long ix = w0; ix < w1; ++ix) {
            float v = xp[iy * w + ix];
            if (pool_takes_over(v, best)) {
                best = v;
                arg = iy * w + ix;
            }
        }
    return arg;
}

// The output rows (or columns) whose windows contain input row i: [lo, hi).
__device__ __forceinline__ void pool_covering(long long i, int k, int stride, int pad, long long out, long long& lo,
                                              long long& hi) {
    long long first = i + pad - k + 1; // o·stride ≥ first
    lo = first <= 0 ? 0 : (first + stride - 1) / stride;
    hi = min((i + pad) / stride + 1, out);
}

// ---- max pool --------------------------------------------------------------------------

extern "C" __global__ void max_pool2d_f32_v1(long long planes, long long h, long long w, int k, int stride, int pad,
                                             long long oh, long long ow, const float* __restrict__ x,
                                             float* __restrict__ y) {
    long long i = global_index();
    if (i >= planes * oh * ow) return;
    long long p = i / (oh * ow), r = i - p * (oh * ow);
    float best;
    pool_argmax(x + p * h * w, h, w, k, stride, pad, r / ow, r % ow, best);
    y[i] = best;
}

extern "C" __global__ void max_pool2d_f32_v2(long long planes, long long h, long long w, int k, int stride, int pad,
                                             long long oh, long long ow, const float* __restrict__ x,
                                             float* __restrict__ y) {
    __shared__ float tile[POOL_TILE];
    long long p = blockIdx.x;
    if (p >= planes) return; // uniform over the block
    long long tiles_w = (ow + POOL_TW - 1) / POOL_TW;
    long long oy0 = (long long)(blockIdx.y / tiles_w) * POOL_TH, ox0 = (long long)(blockIdx.y % tiles_w) * POOL_TW;
    int th = (POOL_TH - 1) * stride + k, tw = (POOL_TW - 1) * stride + k;
    long long iy0 = oy0 * stride - pad, ix0 = ox0 * stride - pad;
    const float* xp = x + p * h * w;
    int ty = threadIdx.x / POOL_TW, tx = threadIdx.x % POOL_TW;
    // Positions outside the input stay −∞ and are never read (windows are clipped).
    for (int r = ty; r < th; r += POOL_TH) {
        long long iy = iy0 + r;
        for (int cc = tx; cc < tw; cc += POOL_TW) {
            long long ix = ix0 + cc;
            tile[r * tw + cc] = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? xp[iy * w + ix] : NEG_INF_F;
        }
    }
    __syncthreads();
    long long oy = oy0 + ty, ox = ox0 + tx;
    if (oy >= oh || ox >= ow) return;
    long long h0, h1, w0, w1;
    pool_window(oy, k, stride, pad, h, h0, h1);
    pool_window(ox, k, stride, pad, w, w0, w1);
    float best = NEG_INF_F;
    for (long long iy = h0; iy < h1; ++iy) {
        const float* row = tile + (iy - iy0) * tw - ix0;
        for (long long ix = w0; ix < w1; ++ix) {
            float v = row[ix];
            if (pool_takes_over(v, best)) best = v;
        }
    }
    y[(p * oh + oy) * ow + ox] = best;
}

// ---- max pool backward -----------------------------------------------------------------

extern "C" __global__ void max_pool2d_bwd_f32_v1(long long planes, long long h, long long w, int k, int stride,
                                                 int pad, long long oh, long long ow, const float* __restrict__ x,
                                                 const float* __restrict__ dy, float* __restrict__ dx) {
    long long i = global_index();
    if (i >= planes * h * w) return;
    long long p = i / (h * w), r = i - p * (h * w), iy = r / w, ix = r % w;
    const float* xp = x + p * h * w;
    const float* dyp = dy + p * oh * ow;
    long long oy0, oy1, ox0, ox1;
    pool_covering(iy, k, stride, pad, oh, oy0, oy1);
    pool_covering(ix, k, stride, pad, ow, ox0, ox1);
    float acc = 0.0f, best;
    for (long long oy = oy0; oy < oy1; ++oy)
        for (long long ox = ox0; ox < ox1; ++ox)
            if (pool_argmax(xp, h, w, k, stride, pad, oy, ox, best) == r) acc += dyp[oy * ow + ox];
    dx[i] = acc;
}

// arg[p, oy, ox] = index within plane p of the window's maximum (the host checks h·w fits an int).
extern "C" __global__ void max_pool2d_argmax_f32_v2(long long planes, long long h, long long w, int k, int stride,
                                                    int pad, long long oh, long long ow,
                                                    const float* __restrict__ x, int* __restrict__ arg) {
    long long i = global_index();
    if (i >= planes * oh * ow) return;
    long long p = i / (oh * ow), r = i - p * (oh * ow);
    float best;
    arg[i] = (int)pool_argmax(x + p * h * w, h, w, k, stride, pad, r / ow, r % ow, best);
}

extern "C" __global__ void max_pool2d_bwd_f32_v2(long long planes, long long h, long long w, int k, int stride,
                                                 int pad, long long oh, long long ow, const int* __restrict__ arg,
                                                 const float* __restrict__ dy, float* __restrict__ dx) {
    long long i = global_index();
    if (i >= planes * h * w) return;
    long long p = i / (h * w), r = i - p * (h * w), iy = r / w, ix = r % w;
    const int* argp = arg + p * oh * ow;
    const float* dyp = dy + p * oh * ow;
    long long oy0, oy1, ox0, ox1;
    pool_covering(iy, k, stride, pad, oh, oy0, oy1);
    pool_covering(ix, k, stride, pad, ow, ox0, ox1);
    float acc = 0.0f;
    for (long long oy = oy0; oy < oy1; ++oy)
        for (long long ox = ox0; ox < ox1; ++ox)
            if (argp[oy * ow + ox] == r) acc += dyp[oy * ow + ox];
    dx[i] = acc;
}

// ---- global average pool ---------------------------------------------------------------

extern "C" __global__ void global_avg_pool_f32_v1(long long planes, long long hw, const float* __restrict__ x,
                                                  float* __restrict__ y) {
    long long p = global_index();
    if (p >= planes) return;
    double sum = 0.0;
    for (long long j = 0; j < hw; ++j) sum += x[p * hw + j];
    y[p] = (float)(sum / (double)hw);
}

extern "C" __global__ void global_avg_pool_f32_v2(long long planes, long long hw, const float* __restrict__ x,
                                                  float* __restrict__ y) {
    long long p = global_index() / 32; // uniform over the warp
    if (p >= planes) return;           // whole warps leave
    int lane = threadIdx.x & 31;
    const float* xp = x + p * hw;
    double sum = 0.0;
    for (long long j = lane; j < hw; j += 32) sum += xp[j];
    sum = warp_sum(sum);
    if (lane == 0) y[p] = (float)(sum / (double)hw);
}

extern "C" __global__ void global_avg_pool_bwd_f32_v1(long long planes, long long hw, const float* __restrict__ dy,
                                                      float* __restrict__ dx) {
    long long i = global_index();
    if (i >= planes * hw) return;
    dx[i] = dy[i / hw] / (float)hw;
}

// ---- nearest 2x upsampling -------------------------------------------------------------

extern "C" __global__ void upsample_nearest2x_f32_v1(long long planes, long long h, long long w,
                                                     const float* __restrict__ x, float* __restrict__ y) {
    long long i = global_index();
    if (i >= planes * 4 * h * w) return;
    long long p = i / (4 * h * w), r = i - p * (4 * h * w), oy = r / (2 * w), ox = r % (2 * w);
    y[i] = x[(p * h + oy / 2) * w + ox / 2];
}

extern "C" __global__ void upsample_nearest2x_bwd_f32_v1(long long planes, long long h, long long w,
                                                         const float* __restrict__ dy, float* __restrict__ dx) {
    long long i = global_index();
    if (i >= planes * h * w) return;
    long long p = i / (h * w), r = i - p * (h * w), iy = r / w, ix = r % w;
    const float* e = dy + (p * 2 * h + 2 * iy) * 2 * w + 2 * ix; // even output row
    const float* o = e + 2 * w;                                  // odd output row
    dx[i] = (e[0] + e[1]) + (o[0] + o[1]);
}

// ---- option-A shortcut -----------------------------------------------------------------

// y [n, c + 2 pad, oh, ow]; oh, ow = ceil(h/2), ceil(w/2) when subsample, else h, w.
extern "C" __global__ void shortcut_pad_f32_v1(long long n, long long c, long long h, long long w, int subsample,
                                               long long pad, long long oh, long long ow,
                                               const float* __restrict__ x, float* __restrict__ y) {
    long long oc = c + 2 * pad, i = global_index();
    if (i >= n * oc * oh * ow) return;
    long long p = i / (oh * ow), r = i - p * (oh * ow), s = p / oc, ch = p % oc;
    if (ch < pad || ch >= pad + c) {
        y[i] = 0.0f;
        return;
    }
    long long oy = r / ow, ox = r % ow, st = subsample ? 2 : 1;
    y[i] = x[((s * c + ch - pad) * h + oy * st) * w + ox * st];
}

extern "C" __global__ void shortcut_pad_bwd_f32_v1(long long n, long long c, long long h, long long w, int subsample,
                                                   long long pad, long long oh, long long ow,
                                                   const float* __restrict__ dy, float* __restrict__ dx) {
    long long i = global_index();
    if (i >= n * c * h * w) return;
    long long p = i / (h * w), r = i - p * (h * w), s = p / c, ch = p % c, iy = r / w, ix = r % w;
    const float* dyp = dy + (s * (c + 2 * pad) + ch + pad) * oh * ow;
    if (!subsample) {
        dx[i] = dyp[r];
        return;
    }
    dx[i] = (iy % 2 == 0 && ix % 2 == 0) ? dyp[(iy / 2) * ow + ix / 2] : 0.0f;
}
