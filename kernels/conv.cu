// conv.cu: 2-D convolution over NCHW tensors (PyTorch's Conv2d: no groups, no dilation),
// forward and both gradients, and the per-channel sums that are the bias gradients.
//
//   conv2d_fwd         y = act(conv(x, w) + bias + residual); x [n, c_in, ih, iw],
//                      w [c_out, c_in, kh, kw], y [n, c_out, oh, ow]; bias [c_out] and
//                      residual (y's shape) are optional (null); act: act_apply of
//                      common.cuh (identity, relu, leaky relu with slope, sigmoid)
//   conv2d_bwd_input   dx = the input gradient of conv2d given dy, plus an optional bias[c_in]
//                      per channel (which makes it conv_transpose2d's forward)
//   conv2d_bwd_weight  dw[o, c, ki, kj] = Σ_{img, oy, ox} dy[img, o, oy, ox] · x[img, c, iy, ix]
//                      with iy = oy·stride − pad + ki, ix = ox·stride − pad + kj
//   channel_sum        out[c] = Σ_{img, p} t[img, c, p] (bias gradients), in double
//
// Transposed convolution needs no kernel of its own: for a ConvT2dGeom g, conv_transpose2d
// is conv2d_bwd_input of g.as_conv() (whose weight layout [c_out, c_in] is convT's
// [c_in, c_out]), its input gradient is conv2d_fwd of g.as_conv(), and its weight gradient
// conv2d_bwd_weight of g.as_conv() with x and dy swapped; crates/mep-kernels/src/ops/conv.rs
// does that mapping, as the CPU backend (crates/mep-tensor/src/cpu/conv.rs) does.
//
// v1: one thread per output element, summing in double: the readable specification.
// v2: implicit GEMM, C[M×N] = A[M×K]·B[K×N] without materialising im2col columns:
//       fwd        M = c_out, N = n·oh·ow, K = c_in·kh·kw   (A = w, B = im2col(x))
//       bwd_input  M = c_in,  N = n·ih·iw, K = c_out·kh·kw  (A = wᵀ, B = dy gathered through
//                  the stride: an entry is zero unless (iy + pad − ki) is a multiple of it)
//       bwd_weight M = c_out, N = c_in·kh·kw, K = n·oh·ow   (A = dy, B = im2col(x)ᵀ), the K
//                  range split over blockIdx.z into partial sums that conv2d_bwd_weight_sum
//                  adds in a fixed order (deterministic, unlike atomics)
//     64×64 output tiles, 16-deep K slices, 256 threads each computing a 4×4 register tile,
//     operands staged through double-buffered static shared memory (one barrier per slice;
//     the next slice is fetched into registers while the current one is multiplied). Index
//     decoding is incremental (mixed-radix counters) so the inner loops do no division.
//     1×1 stride-1 unpadded convs (ResNet's bottleneck and projection convs) have their own
//     entry points, conv2d_fwd_1x1 and conv2d_bwd_input_1x1: a plain GEMM on NCHW planes.
//     channel_sum v2 is one block per channel with a fixed-order block reduction.
//     Sums are in f32 in v2; results agree with the CPU's f32 GEMMs to rounding.
//
// v3, in conv_region.cu: the forward and input gradient over tap classes, without the
//     padding taps and inserted zeros v2 multiplies; the fast kernel set runs v3 for those two
//     and v2 for the weight gradient.
//
// Sizes are int (the host checks that every extent and product fits); element offsets are
// long long. Every v2 kernel runs 256 threads per block; grid (ceil(N / 64), ceil(M / 64),
// splits).
#include "common.cuh"
#include "tile.cuh"
#include "digits.cuh"

// Full unrolling of the fixed 4- and 16-trip loops keeps the register tiles in registers
// (NVRTC); g++ has no such pragma and needs none.

#define CONV_GEOM_PARAMS                                                                              \
    int n, int c_in, int ih, int iw, int c_out, int kh, int kw, int stride, int pad, int oh, int ow

// ---- v1: one thread per output --------------------------------------------------------

extern "C" __global__ void conv2d_fwd_f32_v1(CONV_GEOM_PARAMS, const float* __restrict__ x,
                                             const float* __restrict__ wt, const float* __restrict__ bias,
                                             const float* __restrict__ residual, int act, float slope,
                                             float* __restrict__ y) {
    long long i = global_index();
    if (i >= (long long)n * c_out * oh * ow) return;
    int ox = (int)(i % ow), oy = (int)(i / ow % oh), o = (int)(i / ((long long)ow * oh) % c_out);
    long long img = i / ((long long)ow * oh * c_out);
    double acc = 0.0;
    for (int c = 0; c < c_in; ++c)
        for (int ki = 0; ki < kh; ++ki)
            for (int kj = 0; kj < kw; ++kj) {
                int iy = oy * stride - pad + ki, ix = ox * stride - pad + kj;
                if (iy < 0 || iy >= ih || ix < 0 || ix >= iw) continue;
                acc += (double)wt[(((long long)o * c_in + c) * kh + ki) * kw + kj] *
                       (double)x[((img * c_in + c) * ih + iy) * iw + ix];
            }
    float v = (float)acc;
    if (bias) v += bias[o];
    if (residual) v += residual[i];
    y[i] = act_apply(act, slope, v);
}

extern "C" __global__ void conv2d_bwd_input_f32_v1(CONV_GEOM_PARAMS, const float* __restrict__ dy,
                                                   const float* __restrict__ wt, const float* __restrict__ bias,
                                                   float* __restrict__ dx) {
    long long i = global_index();
    if (i >= (long long)n * c_in * ih * iw) return;
    int ix = (int)(i % iw), iy = (int)(i / iw % ih), c = (int)(i / ((long long)iw * ih) % c_in);
    long long img = i / ((long long)iw * ih * c_in);
    double acc = 0.0;
    for (int o = 0; o < c_out; ++o)
        for (int ki = 0; ki < kh; ++ki)
            for (int kj = 0; kj < kw; ++kj) {
                // Output pixel (oy, ox) read input pixel (iy, ix) through tap (ki, kj).
                int ty = iy + pad - ki, tx = ix + pad - kj;
                if (ty < 0 || tx < 0 || ty % stride != 0 || tx % stride != 0) continue;
                int oy = ty / stride, ox = tx / stride;
                if (oy >= oh || ox >= ow) continue;
                acc += (double)wt[(((long long)o * c_in + c) * kh + ki) * kw + kj] *
                       (double)dy[((img * c_out + o) * oh + oy) * ow + ox];
            }
    float v = (float)acc;
    if (bias) v += bias[c];
    dx[i] = v;
}

extern "C" __global__ void conv2d_bwd_weight_f32_v1(CONV_GEOM_PARAMS, const float* __restrict__ x,
                                                    const float* __restrict__ dy, float* __restrict__ dw) {
    long long i = global_index();
    if (i >= (long long)c_out * c_in * kh * kw) return;
    int kj = (int)(i % kw), ki = (int)(i / kw % kh), c = (int)(i / ((long long)kw * kh) % c_in);
    int o = (int)(i / ((long long)kw * kh * c_in));
    double acc = 0.0;
    for (long long img = 0; img < n; ++img)
        for (int oy = 0; oy < oh; ++oy)
            for (int ox = 0; ox < ow; ++ox) {
                int iy = oy * stride - pad + ki, ix = ox * stride - pad + kj;
                if (iy < 0 || iy >= ih || ix < 0 || ix >= iw) continue;
                acc += (double)dy[((img * c_out + o) * oh + oy) * ow + ox] *
                       (double)x[((img * c_in + c) * ih + iy) * iw + ix];
            }
    dw[i] = (float)acc;
}

// out[c] = Σ over images and the plane of t[img, c, :]; one thread per channel.
extern "C" __global__ void channel_sum_f32_v1(int n, int c, long long hw, const float* __restrict__ t,
                                              float* __restrict__ out) {
    long long ch = global_index();
    if (ch >= c) return;
    double acc = 0.0;
    for (long long img = 0; img < n; ++img) {
        const float* plane = t + (img * c + ch) * hw;
        for (long long p = 0; p < hw; ++p) acc += plane[p];
    }
    out[ch] = (float)acc;
}

// ---- v2: the tiled implicit GEMM --------------------------------------------------------


// A[r][k] = p[r·ld + k] (the conv weight as [c_out, c_in·kh·kw]); k-fast.
struct ConvRowsA {
    const float* p;
    long long ld;
    int rows, r0;
    __device__ __forceinline__ void fetch(int k0, int k1, float (&v)[4]) const {
        int k = k0 + (threadIdx.x & 15);
        TILE_UNROLL
        for (int i = 0; i < 4; ++i) {
            int r = r0 + (threadIdx.x >> 4) + 16 * i;
            v[i] = (k < k1 && r < rows) ? p[(long long)r * ld + k] : 0.0f;
        }
    }
    __device__ __forceinline__ void store(float* s, const float (&v)[4]) const { tile_store_kfast(s, v); }
};

// B[k][j] = t[img, k, p] for column j = (img, p) of an NCHW tensor with `ch` channels of
// `hw` pixels: the operand of 1×1 stride-1 convs (x forward, dy for the input gradient);
// row-fast, so one column's pointer serves every k.
struct ConvPlanesB {
    const float* col; // &t[img, 0, p], or null past the last column
    long long hw;
    __device__ __forceinline__ ConvPlanesB(const float* t, int ch, int hw_, int cols, int n0) : hw(hw_) {
        int j = n0 + (threadIdx.x & 63);
        int img = j / hw_;
        col = j < cols ? t + ((long long)img * ch) * hw_ + (j - img * hw_) : nullptr;
    }
    __device__ __forceinline__ void fetch(int k0, int k1, float (&v)[4]) const {
        TILE_UNROLL
        for (int i = 0; i < 4; ++i) {
            int k = k0 + (threadIdx.x >> 6) + 4 * i;
            v[i] = (col && k < k1) ? col[k * hw] : 0.0f;
        }
    }
    __device__ __forceinline__ void store(float* s, const float (&v)[4]) const { tile_store_rowfast(s, v); }
};

// B[k][j] = x[img, c, oy·s − pad + ki, ox·s − pad + kj] with k = (c, ki, kj) and
// j = (img, oy, ox): the forward's im2col columns, read in place; row-fast.
struct ConvIm2colB {
    const float* x_img; // &x[img, 0, 0, 0], or null past the last column
    int ih, iw, kh, kw, iy0, ix0;
    ConvDigits k, step; // (c, ki, kj) of this thread's next element; 4 rows
    __device__ __forceinline__ ConvIm2colB(const float* x, int c_in, int ih_, int iw_, int kh_, int kw_, int stride,
                                           int pad, int oh, int ow, int cols, int n0, int k0)
        : ih(ih_), iw(iw_), kh(kh_), kw(kw_) {
        int j = n0 + (threadIdx.x & 63);
        ConvDigits px = conv_digits(j, oh, ow);
        x_img = j < cols ? x + (long long)px.hi * c_in * ih * iw : nullptr;
        iy0 = px.mid * stride - pad;
        ix0 = px.lo * stride - pad;
        k = conv_digits(k0 + (threadIdx.x >> 6), kh, kw);
        step = conv_digits(4, kh, kw);
    }
    __device__ __forceinline__ void fetch(int k0, int k1, float (&v)[4]) {
        TILE_UNROLL
        for (int i = 0; i < 4; ++i) {
            int kk = k0 + (threadIdx.x >> 6) + 4 * i;
            int iy = iy0 + k.mid, ix = ix0 + k.lo;
            bool in = x_img && kk < k1 && iy >= 0 && iy < ih && ix >= 0 && ix < iw;
            v[i] = in ? x_img[((long long)k.hi * ih + iy) * iw + ix] : 0.0f;
            conv_advance(k, step, kh, kw);
        }
    }
    __device__ __forceinline__ void store(float* s, const float (&v)[4]) const { tile_store_rowfast(s, v); }
};

// A[c][k] = w[o, c, ki, kj] with k = (o, ki·kw + kj): the weight transposed, for the input
// gradient; row-fast (contiguous along c for 1×1 kernels).
struct ConvWeightTA {
    const float* wt;
    int c_in, khw, m0;
    ConvDigits k, step; // (o, 0, tap)
    __device__ __forceinline__ ConvWeightTA(const float* wt_, int c_in_, int khw_, int m0_, int k0)
        : wt(wt_), c_in(c_in_), khw(khw_), m0(m0_) {
        k = conv_digits(k0 + (threadIdx.x >> 6), 1, khw);
        step = conv_digits(4, 1, khw);
    }
    __device__ __forceinline__ void fetch(int k0, int k1, float (&v)[4]) {
        int c = m0 + (threadIdx.x & 63);
        TILE_UNROLL
        for (int i = 0; i < 4; ++i) {
            int kk = k0 + (threadIdx.x >> 6) + 4 * i;
            v[i] = (c < c_in && kk < k1) ? wt[((long long)k.hi * c_in + c) * khw + k.lo] : 0.0f;
            conv_advance(k, step, 1, khw);
        }
    }
    __device__ __forceinline__ void store(float* s, const float (&v)[4]) const { tile_store_rowfast(s, v); }
};

// B[k][j] = dy[img, o, oy, ox] with k = (o, ki, kj) and j = (img, iy, ix) of dx, where
// (oy, ox) = (iy + pad − ki, ix + pad − kj) / stride when that divides exactly and lands in
// the output, else 0: the transposed im2col of dy; row-fast.
struct ConvCol2imB {
    const float* dy_img; // &dy[img, 0, 0, 0], or null past the last column
    int oh, ow, kh, kw, stride, ty0, tx0;
    ConvDigits k, step; // (o, ki, kj)
    __device__ __forceinline__ ConvCol2imB(const float* dy, int c_out, int ih, int iw, int kh_, int kw_, int stride_,
                                           int pad, int oh_, int ow_, int cols, int n0, int k0)
        : oh(oh_), ow(ow_), kh(kh_), kw(kw_), stride(stride_) {
        int j = n0 + (threadIdx.x & 63);
        ConvDigits px = conv_digits(j, ih, iw);
        dy_img = j < cols ? dy + (long long)px.hi * c_out * oh * ow : nullptr;
        ty0 = px.mid + pad;
        tx0 = px.lo + pad;
        k = conv_digits(k0 + (threadIdx.x >> 6), kh, kw);
        step = conv_digits(4, kh, kw);
    }
    // q = t / stride when t ≥ 0 is a multiple of stride below `lim`·stride.
    __device__ __forceinline__ bool exact(int t, int lim, int& q) const {
        if (t < 0) return false;
        q = stride == 1 ? t : t / stride;
        return q * stride == t && q < lim;
    }
    __device__ __forceinline__ void fetch(int k0, int k1, float (&v)[4]) {
        TILE_UNROLL
        for (int i = 0; i < 4; ++i) {
            int kk = k0 + (threadIdx.x >> 6) + 4 * i;
            int oy = 0, ox = 0;
            bool in = dy_img && kk < k1 && exact(ty0 - k.mid, oh, oy) && exact(tx0 - k.lo, ow, ox);
            v[i] = in ? dy_img[((long long)k.hi * oh + oy) * ow + ox] : 0.0f;
            conv_advance(k, step, kh, kw);
        }
    }
    __device__ __forceinline__ void store(float* s, const float (&v)[4]) const { tile_store_rowfast(s, v); }
};

// A[o][k] = dy[img, o, p] with k = (img, p) over the output pixels: the weight gradient's
// left operand; k-fast (contiguous along the pixels).
struct ConvDyA {
    const float* dy;
    int c_out, ohw, m0;
    ConvDigits k, step; // (img, 0, p)
    __device__ __forceinline__ ConvDyA(const float* dy_, int c_out_, int ohw_, int m0_, int k0)
        : dy(dy_), c_out(c_out_), ohw(ohw_), m0(m0_) {
        k = conv_digits(k0 + (threadIdx.x & 15), 1, ohw);
        step = conv_digits(TILE_K, 1, ohw);
    }
    __device__ __forceinline__ void fetch(int k0, int k1, float (&v)[4]) {
        bool in = k0 + (int)(threadIdx.x & 15) < k1;
        const float* col = dy + (long long)k.hi * c_out * ohw + k.lo;
        TILE_UNROLL
        for (int i = 0; i < 4; ++i) {
            int o = m0 + (threadIdx.x >> 4) + 16 * i;
            v[i] = (in && o < c_out) ? col[(long long)o * ohw] : 0.0f;
        }
        conv_advance(k, step, 1, ohw);
    }
    __device__ __forceinline__ void store(float* s, const float (&v)[4]) const { tile_store_kfast(s, v); }
};

// B[k][j] = x[img, c, oy·s − pad + ki, ox·s − pad + kj] with k = (img, oy, ox) over the
// output pixels and j = (c, ki, kj) over the weight: im2col transposed, for the weight
// gradient; k-fast. The 4 columns are decoded once, the pixel advances by TILE_K per slice.
struct ConvXWindowB {
    const float* x;
    int c_in, ih, iw, oh, ow, stride, pad;
    int off[4], ky[4], kx[4]; // per column: c·ih·iw + ki·iw + kj, ki, kj (ki huge past the last column)
    ConvDigits k, step;       // (img, oy, ox)
    __device__ __forceinline__ ConvXWindowB(const float* x_, int c_in_, int ih_, int iw_, int kh, int kw, int stride_,
                                            int pad_, int oh_, int ow_, int cols, int n0, int k0)
        : x(x_), c_in(c_in_), ih(ih_), iw(iw_), oh(oh_), ow(ow_), stride(stride_), pad(pad_) {
        TILE_UNROLL
        for (int i = 0; i < 4; ++i) {
            int j = n0 + (threadIdx.x >> 4) + 16 * i;
            ConvDigits d = conv_digits(j, kh, kw);
            off[i] = j < cols ? (d.hi * ih + d.mid) * iw + d.lo : 0;
            ky[i] = j < cols ? d.mid : 1 << 30;
            kx[i] = d.lo;
        }
        k = conv_digits(k0 + (threadIdx.x & 15), oh, ow);
        step = conv_digits(TILE_K, oh, ow);
    }
    __device__ __forceinline__ void fetch(int k0, int k1, float (&v)[4]) {
        bool in = k0 + (int)(threadIdx.x & 15) < k1;
        int iy0 = k.mid * stride - pad, ix0 = k.lo * stride - pad;
        const float* base = x + (long long)k.hi * c_in * ih * iw + (long long)iy0 * iw + ix0;
        TILE_UNROLL
        for (int i = 0; i < 4; ++i) {
            int iy = iy0 + ky[i], ix = ix0 + kx[i];
            v[i] = (in && iy >= 0 && iy < ih && ix >= 0 && ix < iw) ? base[off[i]] : 0.0f;
        }
        conv_advance(k, step, oh, ow);
    }
    __device__ __forceinline__ void store(float* s, const float (&v)[4]) const { tile_store_kfast(s, v); }
};

// Writes this thread's 4×4 tile of C into NCHW planes: column j = (img, p) of `plane`
// pixels, row m a channel of `rows`: out[(img·rows + m)·plane + p] =
// act(acc + bias[m] + residual[same]) (bias and residual may be null).
__device__ __forceinline__ void conv_store_planes(const float (&acc)[4][4], int m0, int n0, int rows, int cols,
                                                  int plane, const float* __restrict__ bias,
                                                  const float* __restrict__ residual, int act, float slope,
                                                  float* __restrict__ out) {
    int mb = m0 + (threadIdx.x >> 4) * 4, nb = n0 + (threadIdx.x & 15) * 4;
    ConvDigits px = conv_digits(nb, 1, plane);
    const ConvDigits one = conv_digits(1, 1, plane);
    TILE_UNROLL
    for (int j = 0; j < 4; ++j) {
        if (nb + j < cols) {
            TILE_UNROLL
            for (int i = 0; i < 4; ++i) {
                int m = mb + i;
                if (m >= rows) continue;
                long long idx = ((long long)px.hi * rows + m) * plane + px.lo;
                float v = acc[i][j];
                if (bias) v += bias[m];
                if (residual) v += residual[idx];
                out[idx] = act_apply(act, slope, v);
            }
        }
        conv_advance(px, one, 1, plane);
    }
}

// Writes this thread's 4×4 tile of a row-major C [rows, cols].
__device__ __forceinline__ void conv_store_rows(const float (&acc)[4][4], int m0, int n0, int rows, int cols,
                                                float* __restrict__ out) {
    int mb = m0 + (threadIdx.x >> 4) * 4, nb = n0 + (threadIdx.x & 15) * 4;
    TILE_UNROLL
    for (int i = 0; i < 4; ++i) {
        if (mb + i >= rows) continue;
        TILE_UNROLL
        for (int j = 0; j < 4; ++j)
            if (nb + j < cols) out[(long long)(mb + i) * cols + nb + j] = acc[i][j];
    }
}

extern "C" __global__ void __launch_bounds__(TILE_THREADS)
    conv2d_fwd_f32_v2(CONV_GEOM_PARAMS, const float* __restrict__ x, const float* __restrict__ wt,
                      const float* __restrict__ bias, const float* __restrict__ residual, int act, float slope,
                      float* __restrict__ y) {
    int K = c_in * kh * kw, N = n * oh * ow;
    int m0 = blockIdx.y * TILE_M, n0 = blockIdx.x * TILE_N;
    ConvRowsA a{wt, K, c_out, m0};
    ConvIm2colB b(x, c_in, ih, iw, kh, kw, stride, pad, oh, ow, N, n0, 0);
    float acc[4][4] = {};
    tile_mma(a, b, 0, K, acc);
    conv_store_planes(acc, m0, n0, c_out, N, oh * ow, bias, residual, act, slope, y);
}

// The forward of a 1×1, stride-1, unpadded conv (oh = ih, ow = iw): Y_img = W·X_img.
extern "C" __global__ void __launch_bounds__(TILE_THREADS)
    conv2d_fwd_1x1_f32_v2(CONV_GEOM_PARAMS, const float* __restrict__ x, const float* __restrict__ wt,
                          const float* __restrict__ bias, const float* __restrict__ residual, int act, float slope,
                          float* __restrict__ y) {
    (void)kh, (void)kw, (void)stride, (void)pad, (void)oh, (void)ow; // 1, 1, 1, 0, ih, iw
    int hw = ih * iw, N = n * hw;
    int m0 = blockIdx.y * TILE_M, n0 = blockIdx.x * TILE_N;
    ConvRowsA a{wt, c_in, c_out, m0};
    ConvPlanesB b(x, c_in, hw, N, n0);
    float acc[4][4] = {};
    tile_mma(a, b, 0, c_in, acc);
    conv_store_planes(acc, m0, n0, c_out, N, hw, bias, residual, act, slope, y);
}

extern "C" __global__ void __launch_bounds__(TILE_THREADS)
    conv2d_bwd_input_f32_v2(CONV_GEOM_PARAMS, const float* __restrict__ dy, const float* __restrict__ wt,
                            const float* __restrict__ bias, float* __restrict__ dx) {
    int khw = kh * kw, K = c_out * khw, N = n * ih * iw;
    int m0 = blockIdx.y * TILE_M, n0 = blockIdx.x * TILE_N;
    ConvWeightTA a(wt, c_in, khw, m0, 0);
    ConvCol2imB b(dy, c_out, ih, iw, kh, kw, stride, pad, oh, ow, N, n0, 0);
    float acc[4][4] = {};
    tile_mma(a, b, 0, K, acc);
    conv_store_planes(acc, m0, n0, c_in, N, ih * iw, bias, nullptr, 0, 0.0f, dx);
}

// The input gradient of a 1×1, stride-1, unpadded conv: dX_img = Wᵀ·dY_img.
extern "C" __global__ void __launch_bounds__(TILE_THREADS)
    conv2d_bwd_input_1x1_f32_v2(CONV_GEOM_PARAMS, const float* __restrict__ dy, const float* __restrict__ wt,
                                const float* __restrict__ bias, float* __restrict__ dx) {
    (void)kh, (void)kw, (void)stride, (void)pad, (void)oh, (void)ow; // 1, 1, 1, 0, ih, iw
    int hw = ih * iw, N = n * hw;
    int m0 = blockIdx.y * TILE_M, n0 = blockIdx.x * TILE_N;
    ConvWeightTA a(wt, c_in, 1, m0, 0);
    ConvPlanesB b(dy, c_out, hw, N, n0);
    float acc[4][4] = {};
    tile_mma(a, b, 0, c_out, acc);
    conv_store_planes(acc, m0, n0, c_in, N, hw, bias, nullptr, 0, 0.0f, dx);
}

// Split z of the weight gradient: pixels [z·chunk, (z + 1)·chunk) (chunk a multiple of 16)
// into out + z·c_out·c_in·kh·kw (dw itself when there is one split).
// Two blocks per SM as a hint: without it ptxas for sm_80 spills 8 bytes (with it, none
// on sm_80 or sm_90; checked by `cargo xtask kernels-check`).
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_bwd_weight_f32_v2(CONV_GEOM_PARAMS, int chunk, const float* __restrict__ x,
                             const float* __restrict__ dy, float* __restrict__ out) {
    int N = c_in * kh * kw, K = n * oh * ow;
    int m0 = blockIdx.y * TILE_M, n0 = blockIdx.x * TILE_N;
    int k0 = blockIdx.z * chunk, k1 = min(K, k0 + chunk);
    ConvDyA a(dy, c_out, oh * ow, m0, k0);
    ConvXWindowB b(x, c_in, ih, iw, kh, kw, stride, pad, oh, ow, N, n0, k0);
    float acc[4][4] = {};
    tile_mma(a, b, k0, k1, acc);
    conv_store_rows(acc, m0, n0, c_out, N, out + (long long)blockIdx.z * c_out * N);
}

// dw[i] = Σ_z part[z·len + i], z in order; one thread per element.
extern "C" __global__ void conv2d_bwd_weight_sum_f32_v2(long long len, int splits, const float* __restrict__ part,
                                                        float* __restrict__ dw) {
    long long i = global_index();
    if (i >= len) return;
    float s = 0.0f;
    for (int z = 0; z < splits; ++z) s += part[z * len + i];
    dw[i] = s;
}

// out[c] as v1, one block per channel (blockIdx.x), blockDim.x a multiple of 32.
extern "C" __global__ void channel_sum_f32_v2(int n, int c, long long hw, const float* __restrict__ t,
                                              float* __restrict__ out) {
    long long ch = blockIdx.x;
    double acc = 0.0;
    if (hw >= blockDim.x) {
        for (long long img = 0; img < n; ++img) {
            const float* plane = t + (img * c + ch) * hw;
            for (long long p = threadIdx.x; p < hw; p += blockDim.x) acc += plane[p];
        }
    } else {
        // Small planes: spread the (image, pixel) pairs over the block instead.
        for (long long e = threadIdx.x; e < n * hw; e += blockDim.x) {
            long long img = e / hw;
            acc += t[(img * c + ch) * hw + (e - img * hw)];
        }
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) out[ch] = (float)acc;
}
