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
// v2 (what is left of it): conv2d_bwd_weight_sum adds split-K partial sums in a fixed order
//     (deterministic, unlike atomics); channel_sum v2 is one block per channel with a
//     fixed-order block reduction. v2's 64×64 implicit GEMMs for the forward and both
//     gradients (at 020e635 in git) multiplied the padding taps and a stride's inserted
//     zeros (86.7x the needed products for the stem's input gradient, 4x for every stride-2
//     one): they gave way to
// v3 in conv_region.cu (forward and input gradient over tap classes), conv_small.cu (the input
//     gradient for c_in ≤ 4, over pixels) and conv_wgrad.cu (the weight gradient per region
//     of pixels and in-bounds taps; v4 there with 128×128 tiles), which the fast set runs.
//
// Sizes are int (the host checks that every extent and product fits); element offsets are
// long long.
#include "common.cuh"

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

// ---- v2: the fixed-order sums --------------------------------------------------------

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
