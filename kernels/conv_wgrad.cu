// conv_wgrad.cu: the weight gradient of a 2-D convolution (NCHW, as conv.cu's
// conv2d_bwd_weight) over one region at a time, so that no product with padding is issued.
//
//   dw[o, c, ki, kj] = Σ_{img, oy, ox} dy[img, o, oy, ox] · x[img, c, oy·s − pad + ki, ox·s − pad + kj]
//
// A tap row ki reads the input only for output rows in an interval [lo(ki), hi(ki)), and
// the same holds for columns, so the products that touch the input split into regions: a
// rectangle of output pixels [oy0, oy1) × [ox0, ox1) (of every image) with a rectangle of
// taps [ky0, ky1) × [kx0, kx1) all of which stay inside the input there. One launch is one
// region's implicit GEMM, C = A·B with
//   M = c_out, N = c_in·(ky1 − ky0)·(kx1 − kx0), K = n·(oy1 − oy0)·(ox1 − ox0)
//   A[o][k] = dy[img, o, oy, ox], B[k][(c, ki, kj)] = x[img, c, oy·s − pad + ki, ox·s − pad + kj]
// with no bounds test on x (none is needed). The host (crates/mep-kernels/src/ops/conv_wgrad.rs)
// picks the regions: either the tap classes (taps grouped by their pixel rectangle, each dw
// column in one region: dense N when c_in is large) or the pixel bands (pixels grouped by
// their set of in-bounds taps, each pixel in one region: one big interior region with every
// tap when c_in·kh·kw is small, as in a stem), whichever issues fewer products.
//
// v3: 64×TN output tiles (TN = 64, or 32 so that N = 3·7·7 = 147 pads to 160 and not to
// 192), 16-deep K slices, 256 threads each computing 4 × TN/16 outputs, operands staged
// through double-buffered static shared memory as in tile.cuh.
// v4 (conv2d_bwd_weight_t128_f32_v4, its own name so that kernels-check holds both it and
// v3, which stays in use, to no spills): the same loop with 128×128 tiles, 8×8 outputs per
// thread, for the regions whose c_out and N it pads no more than 64×64 does (the big layers).
// Both split the K range over blockIdx.z into partial sums (out + z·len, len =
// c_out·c_in·kh·kw, the layout of dw) that conv.cu's conv2d_bwd_weight_sum_f32_v2 adds in a
// fixed order: deterministic, f32. A block whose K range is empty writes zeros, so every
// split of a region writes each of its dw columns.
//
// v5: v3 in TF32 and bf16 (conv2d_bwd_weight_{tf32,bf16}_v5, conv2d_bwd_weight_n32_{tf32,bf16}_v5):
// the same regions, loads and staging with tile_tc.cuh's tensor-core slice (operands rounded
// as they are staged, f32 sums); the host uses them for every region (no 128×128 twin: its
// accumulator transpose would not fit static shared memory). The result is f32 partial sums
// like v3's; the bf16 result rounding is the host's last pass over dw
// (conv2d_bwd_weight_round_bf16_v5), after the partial sums are added.
//
// v6: v5 with the operands copied raw from global to shared memory by cp.async (sm_80; 4
// bytes per element, into v5's layout), the next slice in flight while this one is
// multiplied, the rounding at the fragment loads (the same bits as v5):
// conv2d_bwd_weight_{tf32,bf16}_v6, conv2d_bwd_weight_n32_{tf32,bf16}_v6.
//
// Launch: 256 threads; grid (ceil(N / TN), ceil(c_out / TM), splits).
#include "common.cuh"
#include "tile.cuh" // TILE_UNROLL, TILE_K, TILE_THREADS
#include "mma.cuh"
#include "tile_tc.cuh"

#define WG_PARAMS                                                                                         \
    int n, int c_in, int ih, int iw, int c_out, int kh, int kw, int stride, int pad, int oh, int ow, int oy0, \
        int oy1, int ox0, int ox1, int ky0, int ky1, int kx0, int kx1, int chunk, const float* __restrict__ x, \
        const float* __restrict__ dy, float* __restrict__ out

// (img, ry, rx) of pixel k of the region's rectangle (rh × rw per image). Decoded afresh for
// each 16-deep slice: a few divisions per thread beside its 16·(TM/16)·(TN/16) multiply-adds.
struct WgPixel {
    int img, ry, rx;
};

__device__ __forceinline__ WgPixel wg_pixel(int k, int rh, int rw) {
    int img = k / (rh * rw), r = k - img * rh * rw;
    return WgPixel{img, r / rw, r % rw};
}

// P: 0 for f32 FMAs, else the tensor-core precision; ASYNC (v6, tensor cores only): the
// operands staged by cp.async.
template <int TM, int TN, int P = 0, bool ASYNC = false>
__device__ __forceinline__ void conv_bwd_weight_region(WG_PARAMS) {
    constexpr int IM = TM / 16, JN = TN / 16; // rows and columns per thread (and A, B elements each loads)
    constexpr int LDA = TM + 4, LDB = TN + 4;  // float4-aligned; the pad spreads k-fast stores over banks
    __shared__ float4 sa4[2 * TILE_K * LDA / 4];
    __shared__ float4 sb4[2 * TILE_K * LDB / 4];
    float* sa = reinterpret_cast<float*>(sa4);
    float* sb = reinterpret_cast<float*>(sb4);
    (void)n, (void)oy1, (void)ox1;
    const int rh = oy1 - oy0, rw = ox1 - ox0, nky = ky1 - ky0, nkx = kx1 - kx0;
    const int N = c_in * nky * nkx, K = n * rh * rw;
    const int m0 = blockIdx.y * TM, n0 = blockIdx.x * TN;
    const int k0 = min(K, (int)blockIdx.z * chunk), k1 = min(K, k0 + chunk);
    const int kt = threadIdx.x & 15, rt = threadIdx.x >> 4; // k-fast loads: slice depth, row
    const long long ohw = (long long)oh * ow, ihw = (long long)ih * iw;

    // This thread's JN columns of B: offset of (c, ki, kj) in an image of x, relative to
    // the window's corner; -1 past the last column.
    long long off[JN];
    TILE_UNROLL
    for (int i = 0; i < JN; ++i) {
        int j = n0 + rt + 16 * i;
        int c = j / (nky * nkx), r = j - c * nky * nkx;
        int yi = r / nkx, xi = r - yi * nkx;
        off[i] = j < N ? c * ihw + (long long)(ky0 + yi) * iw + kx0 + xi : -1;
    }

    float ra[IM], rb[JN];
    auto fetch = [&](int k) {
        bool in = k + kt < k1;
        WgPixel p = wg_pixel(in ? k + kt : 0, rh, rw); // rh, rw > 0 whenever k0 < k1
        int oy = oy0 + p.ry, ox = ox0 + p.rx;
        const float* a = dy + (long long)p.img * c_out * ohw + (long long)oy * ow + ox;
        TILE_UNROLL
        for (int i = 0; i < IM; ++i) {
            int o = m0 + rt + 16 * i;
            ra[i] = (in && o < c_out) ? a[o * ohw] : 0.0f;
        }
        long long corner = (long long)p.img * c_in * ihw + (long long)(oy * stride - pad) * iw + ox * stride - pad;
        TILE_UNROLL
        for (int i = 0; i < JN; ++i) rb[i] = (in && off[i] >= 0) ? x[corner + off[i]] : 0.0f;
    };
    auto store = [&](int buf) {
        if constexpr (P != 0) {
            tc_round<P>(ra);
            tc_round<P>(rb);
        }
        float* a = sa + buf * TILE_K * LDA + kt * LDA + rt;
        float* b = sb + buf * TILE_K * LDB + kt * LDB + rt;
        TILE_UNROLL
        for (int i = 0; i < IM; ++i) a[16 * i] = ra[i];
        TILE_UNROLL
        for (int i = 0; i < JN; ++i) b[16 * i] = rb[i];
    };

    // fetch and store in one, for v6: each element a 4-byte cp.async to where store puts it
    // (the pixels of a slice are not contiguous in dy or x), zero-filled off the matrix; the
    // operands stay raw in shared memory and are rounded at the fragment loads.
    auto copy = [&](int k, int buf) {
        bool in = k + kt < k1;
        WgPixel p = wg_pixel(in ? k + kt : 0, rh, rw);
        int oy = oy0 + p.ry, ox = ox0 + p.rx;
        const float* a = dy + (long long)p.img * c_out * ohw + (long long)oy * ow + ox;
        float* sa_ = sa + buf * TILE_K * LDA + kt * LDA + rt;
        float* sb_ = sb + buf * TILE_K * LDB + kt * LDB + rt;
        TILE_UNROLL
        for (int i = 0; i < IM; ++i) {
            int o = m0 + rt + 16 * i;
            bool ok = in && o < c_out;
            cp_async<4>(sa_ + 16 * i, ok ? a + o * ohw : dy, ok ? 4 : 0);
        }
        long long corner = (long long)p.img * c_in * ihw + (long long)(oy * stride - pad) * iw + ox * stride - pad;
        TILE_UNROLL
        for (int i = 0; i < JN; ++i) {
            bool ok = in && off[i] >= 0;
            cp_async<4>(sb_ + 16 * i, ok ? x + corner + off[i] : x, ok ? 4 : 0);
        }
    };

    const int tm = (threadIdx.x >> 4) * IM, tn = (threadIdx.x & 15) * JN;
    float acc[IM][JN];
    TILE_UNROLL
    for (int i = 0; i < IM; ++i)
        TILE_UNROLL
        for (int j = 0; j < JN; ++j) acc[i][j] = 0.0f;
    TcTileOr<P, TM, TN> tc;
    if constexpr (ASYNC) {
        static_assert(P != 0, "cp.async staging is for the tensor-core kernels");
        // tile_tc.cuh's tile_mma_tc_async loop on this kernel's own loads.
        if (k0 < k1) {
            copy(k0, 0);
            cp_async_commit();
            int buf = 0;
            for (int k = k0; k < k1; k += TILE_K) {
                if (k + TILE_K < k1) {
                    // The other stage was last read before the previous iteration's closing barrier.
                    copy(k + TILE_K, buf ^ 1);
                    cp_async_commit();
                    cp_async_wait<1>();
                } else {
                    cp_async_wait<0>();
                }
                __syncthreads(); // every thread's copies of this stage have landed
                tc.template slice_raw<TcStage<false, TM>, TcStage<false, TN>>(sa + buf * TILE_K * LDA,
                                                                              sb + buf * TILE_K * LDB);
                __syncthreads();
                buf ^= 1;
            }
        }
    } else if (k0 < k1) {
        fetch(k0);
        store(0);
        __syncthreads();
        int buf = 0;
        for (int k = k0; k < k1; k += TILE_K) {
            bool more = k + TILE_K < k1;
            if (more) fetch(k + TILE_K);
            if constexpr (P != 0) {
                tc.slice(sa + buf * TILE_K * LDA, sb + buf * TILE_K * LDB);
            } else {
                const float* a = sa + buf * TILE_K * LDA + tm;
                const float* b = sb + buf * TILE_K * LDB + tn;
                TILE_UNROLL
                for (int kk = 0; kk < TILE_K; ++kk) {
                    float ar[IM], br[JN];
                    TILE_UNROLL
                    for (int q = 0; q < IM / 4; ++q) {
                        float4 av = *reinterpret_cast<const float4*>(a + kk * LDA + 4 * q);
                        ar[4 * q] = av.x, ar[4 * q + 1] = av.y, ar[4 * q + 2] = av.z, ar[4 * q + 3] = av.w;
                    }
                    if constexpr (JN % 4 == 0) {
                        TILE_UNROLL
                        for (int q = 0; q < JN / 4; ++q) {
                            float4 bv = *reinterpret_cast<const float4*>(b + kk * LDB + 4 * q);
                            br[4 * q] = bv.x, br[4 * q + 1] = bv.y, br[4 * q + 2] = bv.z, br[4 * q + 3] = bv.w;
                        }
                    } else {
                        TILE_UNROLL
                        for (int j = 0; j < JN; ++j) br[j] = b[kk * LDB + j];
                    }
                    TILE_UNROLL
                    for (int i = 0; i < IM; ++i)
                        TILE_UNROLL
                        for (int j = 0; j < JN; ++j) acc[i][j] += ar[i] * br[j];
                }
            }
            // The other buffer was last read before the previous barrier.
            if (more) store(buf ^ 1);
            __syncthreads();
            buf ^= 1;
        }
    }

    if constexpr (P != 0) {
        // The accumulators' transpose, in its own buffer: v3's staging arrays are apart.
        __shared__ float4 sc4[TM * (TN + 4) / 4];
        tc.template to_threads<IM, JN>(reinterpret_cast<float*>(sc4), acc);
    }
    float* part = out + (long long)blockIdx.z * c_out * c_in * kh * kw;
    TILE_UNROLL
    for (int j = 0; j < JN; ++j) {
        int col = n0 + tn + j;
        if (col >= N) continue;
        int c = col / (nky * nkx), r = col - c * nky * nkx;
        int yi = r / nkx, xi = r - yi * nkx;
        long long idx = ((long long)c * kh + ky0 + yi) * kw + kx0 + xi;
        TILE_UNROLL
        for (int i = 0; i < IM; ++i) {
            int o = m0 + tm + i;
            if (o < c_out) part[(long long)o * c_in * kh * kw + idx] = acc[i][j];
        }
    }
}

// One region of the weight gradient with 64×64 tiles (dense N).
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2) conv2d_bwd_weight_f32_v3(WG_PARAMS) {
    conv_bwd_weight_region<64, 64>(n, c_in, ih, iw, c_out, kh, kw, stride, pad, oh, ow, oy0, oy1, ox0, ox1, ky0, ky1,
                               kx0, kx1, chunk, x, dy, out);
}

// The same with 64×32 tiles, for a region whose N a 32-wide tile pads less (a stem's 147).
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2) conv2d_bwd_weight_n32_f32_v3(WG_PARAMS) {
    conv_bwd_weight_region<64, 32>(n, c_in, ih, iw, c_out, kh, kw, stride, pad, oh, ow, oy0, oy1, ox0, ox1, ky0, ky1,
                               kx0, kx1, chunk, x, dy, out);
}

// v5: v3 on tensor cores.
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2) conv2d_bwd_weight_tf32_v5(WG_PARAMS) {
    conv_bwd_weight_region<64, 64, PREC_TF32>(n, c_in, ih, iw, c_out, kh, kw, stride, pad, oh, ow, oy0, oy1, ox0, ox1,
                                              ky0, ky1, kx0, kx1, chunk, x, dy, out);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2) conv2d_bwd_weight_n32_tf32_v5(WG_PARAMS) {
    conv_bwd_weight_region<64, 32, PREC_TF32>(n, c_in, ih, iw, c_out, kh, kw, stride, pad, oh, ow, oy0, oy1, ox0, ox1,
                                              ky0, ky1, kx0, kx1, chunk, x, dy, out);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2) conv2d_bwd_weight_bf16_v5(WG_PARAMS) {
    conv_bwd_weight_region<64, 64, PREC_BF16>(n, c_in, ih, iw, c_out, kh, kw, stride, pad, oh, ow, oy0, oy1, ox0, ox1,
                                              ky0, ky1, kx0, kx1, chunk, x, dy, out);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2) conv2d_bwd_weight_n32_bf16_v5(WG_PARAMS) {
    conv_bwd_weight_region<64, 32, PREC_BF16>(n, c_in, ih, iw, c_out, kh, kw, stride, pad, oh, ow, oy0, oy1, ox0, ox1,
                                              ky0, ky1, kx0, kx1, chunk, x, dy, out);
}

// v6: v5 with the operands staged by cp.async.
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2) conv2d_bwd_weight_tf32_v6(WG_PARAMS) {
    conv_bwd_weight_region<64, 64, PREC_TF32, true>(n, c_in, ih, iw, c_out, kh, kw, stride, pad, oh, ow, oy0, oy1, ox0,
                                              ox1, ky0, ky1, kx0, kx1, chunk, x, dy, out);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2) conv2d_bwd_weight_n32_tf32_v6(WG_PARAMS) {
    conv_bwd_weight_region<64, 32, PREC_TF32, true>(n, c_in, ih, iw, c_out, kh, kw, stride, pad, oh, ow, oy0, oy1, ox0,
                                              ox1, ky0, ky1, kx0, kx1, chunk, x, dy, out);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2) conv2d_bwd_weight_bf16_v6(WG_PARAMS) {
    conv_bwd_weight_region<64, 64, PREC_BF16, true>(n, c_in, ih, iw, c_out, kh, kw, stride, pad, oh, ow, oy0, oy1, ox0,
                                              ox1, ky0, ky1, kx0, kx1, chunk, x, dy, out);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2) conv2d_bwd_weight_n32_bf16_v6(WG_PARAMS) {
    conv_bwd_weight_region<64, 32, PREC_BF16, true>(n, c_in, ih, iw, c_out, kh, kw, stride, pad, oh, ow, oy0, oy1, ox0,
                                              ox1, ky0, ky1, kx0, kx1, chunk, x, dy, out);
}

// dw[i] rounded to bf16 in place, once its sums are complete: one thread per element.
extern "C" __global__ void conv2d_bwd_weight_round_bf16_v5(long long len, float* __restrict__ dw) {
    long long i = global_index();
    if (i < len) dw[i] = round_bf16(dw[i]);
}

// v4: 128×128 tiles, 8×8 outputs per thread (four times the multiply-adds per shared-memory
// read of v3's 4×4), for regions whose c_out and N it pads no more than 64×64 tiles (the big
// layers' weight gradients); one block per SM is enough to hide latency with 64 accumulators.
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 1) conv2d_bwd_weight_t128_f32_v4(WG_PARAMS) {
    conv_bwd_weight_region<128, 128>(n, c_in, ih, iw, c_out, kh, kw, stride, pad, oh, ow, oy0, oy1, ox0, ox1, ky0,
                                     ky1, kx0, kx1, chunk, x, dy, out);
}
