// conv_small.cu: the input gradient of a 2-D convolution (NCHW, as conv.cu's
// conv2d_bwd_input) for few input channels, c_in ≤ 4: a ResNet stem's, whose dx has 3
// channels and whose 64-row GEMM tile (conv2d_bwd_input_f32_v2, M = c_in) would be 95 %
// empty, and, through conv.cu's mapping, a transposed conv to few channels.
//
//   dx[img, c, iy, ix] = Σ_o Σ_{ki, kj} w[o, c, ki, kj] · dy[img, o, oy, ox] + bias[c]
//                        over the taps with (iy + pad − ki, ix + pad − kj) = stride·(oy, ox)
//                        and (oy, ox) inside dy; bias is optional (null)
//
// v3 ("M over pixels"): the dx pixels of one stride phase (iy mod stride, ix mod stride)
// are reached by the same taps, ki ≡ (iy + pad) mod stride (every stride-th kernel row),
// so a block takes one (image, phase) and a 32×32 tile of that phase's pixels; each thread
// computes 4 consecutive phase rows of one phase column, for all c_in channels (an exact
// loop over c_in: no tile rows to fill). It sums only over c_out and the taps that reach
// its phase and land inside dy: no products with inserted zeros or padding. The phase's
// taps of a slice of c_out are staged in shared memory, read back as broadcasts; a warp's
// 32 threads are 32 consecutive phase columns, so their dy reads are consecutive. One dy
// value serves every (pixel row, tap row) pair of the thread's 4 rows that it belongs to.
// Sums are in f32 in a fixed order (deterministic).
//
// Launch: 256 threads; grid (ceil(pw / 32), ceil(ph / 32), n·stride²) where (ph, pw) =
// ceil((ih, iw) / stride) is the largest phase plane; the host checks that
// c_in · ceil(kh / stride) · ceil(kw / stride) ≤ SMALL_W_SLICE (crates/mep-kernels/src/ops/conv_small.rs).
#include "common.cuh"

#define SMALL_W_SLICE 4096  // weights staged per c_out slice (16 KiB)
#define SMALL_ROWS 4        // phase rows per thread
#define SMALL_THREADS 256   // 32 phase columns × 8 groups of SMALL_ROWS rows

template <int C>
__device__ __forceinline__ void conv_bwd_input_small(int n, int ih, int iw, int c_out, int kh, int kw, int s, int pad,
                                                     int oh, int ow, const float* __restrict__ dy,
                                                     const float* __restrict__ wt, const float* __restrict__ bias,
                                                     float* __restrict__ dx, float* ws) {
    (void)n;
    int phase = blockIdx.z % (s * s), img = blockIdx.z / (s * s);
    int ry = phase / s, rx = phase - ry * s;
    // First tap row of the phase, and dy's row for phase row 0 through it.
    int k0y = (ry + pad) % s, k0x = (rx + pad) % s;
    int nty = k0y < kh ? (kh - k0y + s - 1) / s : 0, ntx = k0x < kw ? (kw - k0x + s - 1) / s : 0;
    int dy0 = (ry + pad - k0y) / s, dx0 = (rx + pad - k0x) / s;
    int ph = ry < ih ? (ih - ry + s - 1) / s : 0, pw = rx < iw ? (iw - rx + s - 1) / s : 0;
    int qx = blockIdx.x * 32 + (threadIdx.x & 31);
    int qy0 = (blockIdx.y * (SMALL_THREADS / 32) + (threadIdx.x >> 5)) * SMALL_ROWS;
    bool live = qx < pw && qy0 < ph;
    int taps = nty * ntx;
    float acc[SMALL_ROWS][C];
    for (int i = 0; i < SMALL_ROWS; ++i)
        for (int c = 0; c < C; ++c) acc[i][c] = 0.0f;
    if (taps > 0) {
        int os = SMALL_W_SLICE / (C * taps);
        // Phase row qy0 + i meets dy row oy through tap row t = base + i − oy.
        int base = qy0 + dy0;
        int oy_lo = max(0, base - nty + 1), oy_hi = min(oh - 1, base + SMALL_ROWS - 1);
        for (int o0 = 0; o0 < c_out; o0 += os) {
            int o1 = min(c_out, o0 + os);
            __syncthreads(); // the previous slice has been read
            int count = (o1 - o0) * taps * C;
            for (int e = threadIdx.x; e < count; e += SMALL_THREADS) {
                // e = ((o − o0)·nty + t)·ntx + u)·C + c
                int c = e % C, r = e / C;
                int u = r % ntx;
                r /= ntx;
                int t = r % nty, o = o0 + r / nty;
                ws[e] = wt[(((long long)o * C + c) * kh + k0y + s * t) * kw + k0x + s * u];
            }
            __syncthreads();
            if (!live) continue;
            for (int o = o0; o < o1; ++o) {
                const float* d = dy + ((long long)img * c_out + o) * oh * ow;
                const float* wo = ws + (o - o0) * taps * C;
                for (int oy = oy_lo; oy <= oy_hi; ++oy)
                    for (int u = 0; u < ntx; ++u) {
                        int ox = qx + dx0 - u;
                        if (ox < 0 || ox >= ow) continue;
                        float v = d[(long long)oy * ow + ox];
                        for (int i = 0; i < SMALL_ROWS; ++i) {
                            int t = base + i - oy;
                            if (t < 0 || t >= nty || qy0 + i >= ph) continue;
                            const float* w = wo + (t * ntx + u) * C;
                            for (int c = 0; c < C; ++c) acc[i][c] += w[c] * v;
                        }
                    }
            }
        }
    }
    if (!live) return;
    int ix = qx * s + rx;
    for (int i = 0; i < SMALL_ROWS && qy0 + i < ph; ++i) {
        int iy = (qy0 + i) * s + ry;
        for (int c = 0; c < C; ++c)
            dx[(((long long)img * C + c) * ih + iy) * iw + ix] = acc[i][c] + (bias ? bias[c] : 0.0f);
    }
}

extern "C" __global__ void __launch_bounds__(SMALL_THREADS)
    conv2d_bwd_input_small_f32_v3(int n, int c_in, int ih, int iw, int c_out, int kh, int kw, int stride, int pad,
                                  int oh, int ow, const float* __restrict__ dy, const float* __restrict__ wt,
                                  const float* __restrict__ bias, float* __restrict__ dx) {
    __shared__ float ws[SMALL_W_SLICE];
    switch (c_in) {
    case 1: conv_bwd_input_small<1>(n, ih, iw, c_out, kh, kw, stride, pad, oh, ow, dy, wt, bias, dx, ws); break;
    case 2: conv_bwd_input_small<2>(n, ih, iw, c_out, kh, kw, stride, pad, oh, ow, dy, wt, bias, dx, ws); break;
    case 3: conv_bwd_input_small<3>(n, ih, iw, c_out, kh, kw, stride, pad, oh, ow, dy, wt, bias, dx, ws); break;
    case 4: conv_bwd_input_small<4>(n, ih, iw, c_out, kh, kw, stride, pad, oh, ow, dy, wt, bias, dx, ws); break;
    default: break; // the host never launches it with more
    }
}
