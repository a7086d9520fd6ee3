// conv_region.cu: 2-D convolution's forward and input gradient (NCHW, as conv.cu) as dense
// implicit GEMMs over "tap classes", so that no padding tap and no inserted stride zero is
// multiplied.
//
// The host (crates/mep-kernels/src/ops/conv_region.rs) splits the output index space into
// regions, rows y0 + ystep·a (a < ny) × columns x0 + xstep·b (b < nx), on which the set of
// taps that land inside the source is one dense grid, ty < nty × tx < ntx. Per region it
// launches C[M×N] = A[M×K]·B[K×N] with N = (img, a, b) and K = (c, ty, tx):
//   forward        M = c_out, C = c_in, A = w, B = x at oy·stride − pad + ki: the border
//                  rows and columns (a few) get their own regions with fewer taps
//   input gradient M = c_in, C = c_out, A = wᵀ, B = dy: dx splits into its stride² phases
//                  (iy ≡ r mod stride) and only the taps ki ≡ r + pad (mod stride) reach a
//                  phase, from dy rows (iy + pad − ki) / stride, so a phase is a stride-1
//                  correlation of dy with a flipped sub-kernel; phases are split by border too
// The kernel does not know which: every address is an affine function of the indices, with
// the coefficients passed per launch (REGION_PARAMS):
//   A[m][k] = wt[a_base + m·a_m + c·a_c + ty·a_ty + tx·a_tx]
//   B[k][j] = src[b_base + img·b_img + a·b_a + b·b_b + c·b_c + ty·b_ty + tx·b_tx]
//   C[m][j] → out[o_base + img·o_img + m·o_m + a·o_a + b·o_b]
// and every (a, b, ty, tx) of a region is in bounds by construction, so the loads check
// only the matrix edges. A region with no taps is written by conv2d_region_sum_f32_v3 with
// no splits (the epilogue of zero: bias, residual, activation).
//
// Tiles (tile.cuh's tile_mma_shaped): 64×64, 128×32 and 128×64, the host picking per region the one
// that multiplies least. When a region's grid is under two blocks per SM, K is split over
// blockIdx.z: each split writes its partial C [M×N] to part + z·M·N, and
// conv2d_region_sum_f32_v3 adds them in split order and applies the epilogue once
// (deterministic, unlike atomics).
//
// Kernels: conv2d_region_fwd_<BM>x<BN>_f32_v3 read A k-fast (the forward's weight is
// contiguous along K); conv2d_region_fwd4_<BM>x<BN>_f32_v3 the same as float4, for regions
// with every tap (the interior, and every 1×1 conv) when K % 4 = 0 and the weight is 16-byte
// aligned; conv2d_region_dgrad_<BM>x<BN>_f32_v3 read A row-fast (wᵀ is contiguous along M
// for 1×1 kernels, the ResNet bottleneck's). Sums in f32.
//
// v4: the v3 kernels in TF32 and bf16 (conv2d_region_{fwd,fwd4,dgrad}_<BM>x<BN>_{tf32,bf16}_v4):
// the same regions, loaders and tiles with tile_tc.cuh's tensor-core slice (operands rounded
// as they are staged, f32 sums). bf16 rounds the conv's result (bias added first) to bf16
// before the residual and the activation, which stay f32; conv2d_region_sum_bf16_v4 is the
// split-K sum that does so (TF32 splits use conv2d_region_sum_f32_v3: nothing to round).
//
// v5: the v4 kernels with the operands copied raw from global to shared memory by cp.async
// (sm_80; conv2d_region_{fwd,fwd4,dgrad}_<BM>x<BN>_{tf32,bf16}_v5, tile_tc.cuh's
// tile_mma_tc_async): the next slice in flight while this one is multiplied, the rounding at
// the fragment loads (the same bits as v4). The gathers copy 4 bytes per element into v4's
// layout; fwd4's float4 weight rows are 16-byte copies staged s[row][k]. Split-K and
// empty regions use v4's sum kernels.
#include "common.cuh"
#include "tile.cuh"
#include "digits.cuh"
#include "mma.cuh"
#include "tile_tc.cuh"

#define REGION_PARAMS                                                                                 \
    int M, int C, int nty, int ntx, int ny, int nx, int N, int a_m, int a_c, int a_ty, int a_tx,      \
        int a_base, long long b_img, int b_c, int b_ty, int b_tx, int b_a, int b_b, int b_base,       \
        long long o_img, int o_m, int o_a, int o_b, int o_base

// A[m][k] of a region; k = (c, ty, tx). ROWFAST: threads along m (see tile_shaped_store_*).
template <int BM, bool ROWFAST>
struct RegionA {
    static constexpr int NA = BM * TILE_K / TILE_THREADS, KS = TILE_THREADS / BM;
    const float* w;
    int rows, a_m, a_c, a_ty, a_tx, nty, ntx, r0;
    ConvDigits k, step; // (c, ty, tx) of this thread's next element
    __device__ __forceinline__ RegionA(const float* wt, int M, int nty_, int ntx_, int a_m_, int a_c_, int a_ty_,
                                       int a_tx_, int a_base, int m0, int k0)
        : w(wt + a_base), rows(M), a_m(a_m_), a_c(a_c_), a_ty(a_ty_), a_tx(a_tx_), nty(nty_), ntx(ntx_), r0(m0) {
        if (ROWFAST) {
            k = conv_digits(k0 + (int)threadIdx.x / BM, nty, ntx);
            step = conv_digits(KS, nty, ntx);
        } else {
            k = conv_digits(k0 + (int)(threadIdx.x & 15), nty, ntx);
            step = conv_digits(TILE_K, nty, ntx);
        }
    }
    __device__ __forceinline__ int offset() const { return k.hi * a_c + k.mid * a_ty + k.lo * a_tx; }
    __device__ __forceinline__ void fetch(int k0, int k1, float (&v)[NA]) {
        if (ROWFAST) {
            int r = r0 + (int)threadIdx.x % BM;
            TILE_UNROLL
            for (int i = 0; i < NA; ++i) {
                int kk = k0 + (int)threadIdx.x / BM + KS * i;
                v[i] = (r < rows && kk < k1) ? w[(long long)r * a_m + offset()] : 0.0f;
                conv_advance(k, step, nty, ntx);
            }
        } else {
            bool in = k0 + (int)(threadIdx.x & 15) < k1;
            int off = offset();
            TILE_UNROLL
            for (int i = 0; i < NA; ++i) {
                int r = r0 + (int)(threadIdx.x >> 4) + 16 * i;
                v[i] = (in && r < rows) ? w[(long long)r * a_m + off] : 0.0f;
            }
            conv_advance(k, step, nty, ntx);
        }
    }
    __device__ __forceinline__ void store(float* s, const float (&v)[NA]) const {
        if (ROWFAST)
            tile_shaped_store_rowfast<BM>(s, v);
        else
            tile_shaped_store_kfast<BM>(s, v);
    }
    // fetch and store in one, for v5: each element a 4-byte cp.async (the gather has no
    // two neighbours in both memories) to the place store puts it, zero-filled off the matrix.
    using Stage = TcStage<false, BM>;
    __device__ __forceinline__ void copy(float* s, int k0, int k1) {
        if (ROWFAST) {
            int rl = (int)threadIdx.x % BM, r = r0 + rl;
            TILE_UNROLL
            for (int i = 0; i < NA; ++i) {
                int kl = (int)threadIdx.x / BM + KS * i;
                bool in = r < rows && k0 + kl < k1;
                cp_async<4>(s + kl * Stage::LD + rl, in ? w + (long long)r * a_m + offset() : w, in ? 4 : 0);
                conv_advance(k, step, nty, ntx);
            }
        } else {
            int kl = (int)(threadIdx.x & 15);
            bool in = k0 + kl < k1;
            int off = offset();
            TILE_UNROLL
            for (int i = 0; i < NA; ++i) {
                int rl = (int)(threadIdx.x >> 4) + 16 * i, r = r0 + rl;
                bool ok = in && r < rows;
                cp_async<4>(s + kl * Stage::LD + rl, ok ? w + (long long)r * a_m + off : w, ok ? 4 : 0);
            }
            conv_advance(k, step, nty, ntx);
        }
    }
};

// A[m][k] = wt[a_base + m·a_m + k]: a forward region whose taps are the whole kernel, so that
// K runs along the weight's rows, read as float4 (the host checks a_m % 4 == 0 and that wt
// is 16-byte aligned; K's splits are whole slices, so k < k1 means k + 3 < k1). Thread t
// loads k = 4 (t % 4) .. + 3 of rows t / 4 + 64 i.
template <int BM>
struct RegionAVec {
    static constexpr int NA = BM * TILE_K / TILE_THREADS;
    const float* w;
    int rows, a_m, r0;
    __device__ __forceinline__ RegionAVec(const float* wt, int M, int, int, int a_m_, int, int, int, int a_base,
                                          int m0, int)
        : w(wt + a_base), rows(M), a_m(a_m_), r0(m0) {}
    __device__ __forceinline__ void fetch(int k0, int k1, float (&v)[NA]) {
        int k = k0 + (int)(threadIdx.x & 3) * 4;
        TILE_UNROLL
        for (int i = 0; i < NA / 4; ++i) {
            int r = r0 + (int)(threadIdx.x >> 2) + 64 * i;
            float4 q = (k < k1 && r < rows) ? *reinterpret_cast<const float4*>(w + (long long)r * a_m + k)
                                            : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            v[4 * i] = q.x, v[4 * i + 1] = q.y, v[4 * i + 2] = q.z, v[4 * i + 3] = q.w;
        }
    }
    __device__ __forceinline__ void store(float* s, const float (&v)[NA]) const {
        constexpr int LD = BM + 4;
        int k = (int)(threadIdx.x & 3) * 4, r = (int)(threadIdx.x >> 2);
        TILE_UNROLL
        for (int i = 0; i < NA / 4; ++i)
            TILE_UNROLL
            for (int e = 0; e < 4; ++e) s[(k + e) * LD + r + 64 * i] = v[4 * i + e];
    }
    // For v5: the same float4s as 16-byte cp.async copies, staged s[row][k] (no transpose).
    using Stage = TcStage<true, BM>;
    __device__ __forceinline__ void copy(float* s, int k0, int k1) {
        int kq = (int)(threadIdx.x & 3) * 4, k = k0 + kq;
        TILE_UNROLL
        for (int i = 0; i < NA / 4; ++i) {
            int rl = (int)(threadIdx.x >> 2) + 64 * i, r = r0 + rl;
            bool ok = k < k1 && r < rows;
            cp_async<16>(s + rl * Stage::LD + kq, ok ? w + (long long)r * a_m + k : w, ok ? 16 : 0);
        }
    }
};

// B[k][j] of a region; j = (img, a, b), threads along j (the source is contiguous along b
// for the forward at stride 1 and for every input gradient).
template <int BN>
struct RegionB {
    static constexpr int NB = BN * TILE_K / TILE_THREADS, KS = TILE_THREADS / BN;
    const float* col; // the source at (img, a, b) and tap (0, 0, 0), or null past the last column
    const float* src0; // an address for the zero-filling copies, which read nothing
    int b_c, b_ty, b_tx, nty, ntx;
    ConvDigits k, step;
    __device__ __forceinline__ RegionB(const float* src, int N, int ny, int nx, int nty_, int ntx_, long long b_img,
                                       int b_c_, int b_ty_, int b_tx_, int b_a, int b_b, int b_base, int n0, int k0)
        : src0(src), b_c(b_c_), b_ty(b_ty_), b_tx(b_tx_), nty(nty_), ntx(ntx_) {
        int j = n0 + (int)threadIdx.x % BN;
        ConvDigits px = conv_digits(j, ny, nx);
        col = j < N ? src + px.hi * b_img + (b_base + px.mid * b_a + px.lo * b_b) : nullptr;
        k = conv_digits(k0 + (int)threadIdx.x / BN, nty, ntx);
        step = conv_digits(KS, nty, ntx);
    }
    __device__ __forceinline__ void fetch(int k0, int k1, float (&v)[NB]) {
        TILE_UNROLL
        for (int i = 0; i < NB; ++i) {
            int kk = k0 + (int)threadIdx.x / BN + KS * i;
            v[i] = (col && kk < k1) ? col[(long long)k.hi * b_c + (k.mid * b_ty + k.lo * b_tx)] : 0.0f;
            conv_advance(k, step, nty, ntx);
        }
    }
    __device__ __forceinline__ void store(float* s, const float (&v)[NB]) const { tile_shaped_store_rowfast<BN>(s, v); }
    // fetch and store in one, for v5: 4-byte cp.async copies (see RegionA::copy).
    using Stage = TcStage<false, BN>;
    __device__ __forceinline__ void copy(float* s, int k0, int k1) {
        int jl = (int)threadIdx.x % BN;
        TILE_UNROLL
        for (int i = 0; i < NB; ++i) {
            int kl = (int)threadIdx.x / BN + KS * i;
            bool ok = col && k0 + kl < k1;
            cp_async<4>(s + kl * Stage::LD + jl, ok ? col + ((long long)k.hi * b_c + (k.mid * b_ty + k.lo * b_tx)) : src0,
                        ok ? 4 : 0);
            conv_advance(k, step, nty, ntx);
        }
    }
};

// out[o_base + img·o_img + m·o_m + a·o_a + b·o_b] = act(v + bias[m] + residual[same]) for
// column j = (img, a, b) (bias and residual may be null). P: the precision whose result
// rounding applies to v + bias (0: none).
template <int P = 0>
__device__ __forceinline__ void region_put(float v, int m, const ConvDigits& px, long long o_img, int o_m, int o_a,
                                           int o_b, int o_base, const float* __restrict__ bias,
                                           const float* __restrict__ residual, int act, float slope,
                                           float* __restrict__ out) {
    long long idx = px.hi * o_img + o_base + (long long)m * o_m + px.mid * o_a + px.lo * o_b;
    if (bias) v += bias[m];
    if constexpr (P != 0) v = round_result<P>(v);
    if (residual) v += residual[idx];
    out[idx] = act_apply(act, slope, v);
}

template <int BM, int BN, int TM, int TN, class LA, int P = 0, bool ASYNC = false>
__device__ __forceinline__ void region_gemm(REGION_PARAMS, int chunk, const float* __restrict__ src,
                                            const float* __restrict__ wt, const float* __restrict__ bias,
                                            const float* __restrict__ residual, int act, float slope,
                                            float* __restrict__ out, float* __restrict__ part) {
    int K = C * nty * ntx;
    int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    int k0 = blockIdx.z * chunk, k1 = min(K, k0 + chunk);
    LA a(wt, M, nty, ntx, a_m, a_c, a_ty, a_tx, a_base, m0, k0);
    RegionB<BN> b(src, N, ny, nx, nty, ntx, b_img, b_c, b_ty, b_tx, b_a, b_b, b_base, n0, k0);
    float acc[TM][TN] = {};
    if constexpr (P == 0)
        tile_mma_shaped<BM, BN, TM, TN>(a, b, k0, k1, acc);
    else if constexpr (ASYNC)
        tile_mma_tc_async<P, BM, BN, TM, TN>(a, b, k0, k1, acc);
    else
        tile_mma_tc<P, BM, BN, TM, TN>(a, b, k0, k1, acc);
    int mb = m0 + (int)(threadIdx.x / (BN / TN)) * TM, nb = n0 + (int)(threadIdx.x % (BN / TN)) * TN;
    if (part) {
        // One split's partial sums, row-major [M, N]; the sum kernel does the epilogue.
        float* p = part + (long long)blockIdx.z * M * N;
        TILE_UNROLL
        for (int i = 0; i < TM; ++i) {
            if (mb + i >= M) continue;
            TILE_UNROLL
            for (int j = 0; j < TN; ++j)
                if (nb + j < N) p[(long long)(mb + i) * N + nb + j] = acc[i][j];
        }
        return;
    }
    ConvDigits px = conv_digits(nb, ny, nx);
    const ConvDigits one = conv_digits(1, ny, nx);
    TILE_UNROLL
    for (int j = 0; j < TN; ++j) {
        if (nb + j < N) {
            TILE_UNROLL
            for (int i = 0; i < TM; ++i)
                if (mb + i < M)
                    region_put<P>(acc[i][j], mb + i, px, o_img, o_m, o_a, o_b, o_base, bias, residual, act, slope, out);
        }
        conv_advance(px, one, ny, nx);
    }
}

// Entry points: grid (ceil(N / BN), ceil(M / BM), splits), 256 threads; `chunk` is the K
// range of one split (a multiple of TILE_K; K itself when there is one split), and `part`
// null when there is one split (the epilogue is applied here) or the partial-sum buffer.
#define REGION_IO                                                                                     \
    int chunk, const float* __restrict__ src, const float* __restrict__ wt, const float* __restrict__ bias, \
        const float* __restrict__ residual, int act, float slope, float* __restrict__ out,              \
        float* __restrict__ part
#define REGION_ARGS                                                                                   \
    M, C, nty, ntx, ny, nx, N, a_m, a_c, a_ty, a_tx, a_base, b_img, b_c, b_ty, b_tx, b_a, b_b, b_base, o_img, \
        o_m, o_a, o_b, o_base, chunk, src, wt, bias, residual, act, slope, out, part

extern "C" __global__ void __launch_bounds__(TILE_THREADS)
    conv2d_region_fwd_64x64_f32_v3(REGION_PARAMS, REGION_IO) {
    region_gemm<64, 64, 4, 4, RegionA<64, false>>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS)
    conv2d_region_fwd_128x32_f32_v3(REGION_PARAMS, REGION_IO) {
    region_gemm<128, 32, 4, 4, RegionA<128, false>>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS)
    conv2d_region_fwd_128x64_f32_v3(REGION_PARAMS, REGION_IO) {
    region_gemm<128, 64, 8, 4, RegionA<128, false>>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS)
    conv2d_region_dgrad_64x64_f32_v3(REGION_PARAMS, REGION_IO) {
    region_gemm<64, 64, 4, 4, RegionA<64, true>>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS)
    conv2d_region_dgrad_128x32_f32_v3(REGION_PARAMS, REGION_IO) {
    region_gemm<128, 32, 4, 4, RegionA<128, true>>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS)
    conv2d_region_dgrad_128x64_f32_v3(REGION_PARAMS, REGION_IO) {
    region_gemm<128, 64, 8, 4, RegionA<128, true>>(REGION_ARGS);
}

extern "C" __global__ void __launch_bounds__(TILE_THREADS)
    conv2d_region_fwd4_64x64_f32_v3(REGION_PARAMS, REGION_IO) {
    region_gemm<64, 64, 4, 4, RegionAVec<64>>(REGION_ARGS);
}
// Two blocks per SM as a hint: without it ptxas for sm_90 spills 12 bytes at 64 registers.
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_fwd4_128x32_f32_v3(REGION_PARAMS, REGION_IO) {
    region_gemm<128, 32, 4, 4, RegionAVec<128>>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS)
    conv2d_region_fwd4_128x64_f32_v3(REGION_PARAMS, REGION_IO) {
    region_gemm<128, 64, 8, 4, RegionAVec<128>>(REGION_ARGS);
}

// out at element (m, j) of a region = epilogue(Σ_z part[z·M·N + m·N + j]), z in order; one
// thread per element; here `chunk` is the number of splits. With none (part unused) it
// writes the epilogue of 0: a region that no tap reaches.
template <int P>
__device__ __forceinline__ void region_sum(REGION_PARAMS, REGION_IO) {
    (void)C, (void)nty, (void)ntx, (void)a_m, (void)a_c, (void)a_ty, (void)a_tx, (void)a_base, (void)b_img;
    (void)b_c, (void)b_ty, (void)b_tx, (void)b_a, (void)b_b, (void)b_base, (void)src, (void)wt;
    long long i = global_index(), len = (long long)M * N;
    if (i >= len) return;
    int m = (int)(i / N), j = (int)(i - (long long)m * N);
    float v = 0.0f;
    for (int z = 0; z < chunk; ++z) v += part[z * len + i];
    region_put<P>(v, m, conv_digits(j, ny, nx), o_img, o_m, o_a, o_b, o_base, bias, residual, act, slope, out);
}

extern "C" __global__ void conv2d_region_sum_f32_v3(REGION_PARAMS, REGION_IO) { region_sum<0>(REGION_ARGS); }

// ---- v4: tensor cores ----------------------------------------------------------------------
// Two blocks per SM as a hint: ptxas left to itself aimed at 64 registers in some of these and
// spilled a few bytes for sm_80 or sm_90 (kernels-check).
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_fwd_64x64_tf32_v4(REGION_PARAMS, REGION_IO) {
    region_gemm<64, 64, 4, 4, RegionA<64, false>, PREC_TF32>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_fwd_128x32_tf32_v4(REGION_PARAMS, REGION_IO) {
    region_gemm<128, 32, 4, 4, RegionA<128, false>, PREC_TF32>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_fwd_128x64_tf32_v4(REGION_PARAMS, REGION_IO) {
    region_gemm<128, 64, 8, 4, RegionA<128, false>, PREC_TF32>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_dgrad_64x64_tf32_v4(REGION_PARAMS, REGION_IO) {
    region_gemm<64, 64, 4, 4, RegionA<64, true>, PREC_TF32>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_dgrad_128x32_tf32_v4(REGION_PARAMS, REGION_IO) {
    region_gemm<128, 32, 4, 4, RegionA<128, true>, PREC_TF32>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_dgrad_128x64_tf32_v4(REGION_PARAMS, REGION_IO) {
    region_gemm<128, 64, 8, 4, RegionA<128, true>, PREC_TF32>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_fwd4_64x64_tf32_v4(REGION_PARAMS, REGION_IO) {
    region_gemm<64, 64, 4, 4, RegionAVec<64>, PREC_TF32>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_fwd4_128x32_tf32_v4(REGION_PARAMS, REGION_IO) {
    region_gemm<128, 32, 4, 4, RegionAVec<128>, PREC_TF32>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_fwd4_128x64_tf32_v4(REGION_PARAMS, REGION_IO) {
    region_gemm<128, 64, 8, 4, RegionAVec<128>, PREC_TF32>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_fwd_64x64_bf16_v4(REGION_PARAMS, REGION_IO) {
    region_gemm<64, 64, 4, 4, RegionA<64, false>, PREC_BF16>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_fwd_128x32_bf16_v4(REGION_PARAMS, REGION_IO) {
    region_gemm<128, 32, 4, 4, RegionA<128, false>, PREC_BF16>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_fwd_128x64_bf16_v4(REGION_PARAMS, REGION_IO) {
    region_gemm<128, 64, 8, 4, RegionA<128, false>, PREC_BF16>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_dgrad_64x64_bf16_v4(REGION_PARAMS, REGION_IO) {
    region_gemm<64, 64, 4, 4, RegionA<64, true>, PREC_BF16>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_dgrad_128x32_bf16_v4(REGION_PARAMS, REGION_IO) {
    region_gemm<128, 32, 4, 4, RegionA<128, true>, PREC_BF16>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_dgrad_128x64_bf16_v4(REGION_PARAMS, REGION_IO) {
    region_gemm<128, 64, 8, 4, RegionA<128, true>, PREC_BF16>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_fwd4_64x64_bf16_v4(REGION_PARAMS, REGION_IO) {
    region_gemm<64, 64, 4, 4, RegionAVec<64>, PREC_BF16>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_fwd4_128x32_bf16_v4(REGION_PARAMS, REGION_IO) {
    region_gemm<128, 32, 4, 4, RegionAVec<128>, PREC_BF16>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_fwd4_128x64_bf16_v4(REGION_PARAMS, REGION_IO) {
    region_gemm<128, 64, 8, 4, RegionAVec<128>, PREC_BF16>(REGION_ARGS);
}

// conv2d_region_sum_f32_v3 with the bf16 result rounding.
extern "C" __global__ void conv2d_region_sum_bf16_v4(REGION_PARAMS, REGION_IO) { region_sum<PREC_BF16>(REGION_ARGS); }

// ---- v5: the v4 kernels staged by cp.async ------------------------------------------------
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_fwd_64x64_tf32_v5(REGION_PARAMS, REGION_IO) {
    region_gemm<64, 64, 4, 4, RegionA<64, false>, PREC_TF32, true>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_fwd_128x32_tf32_v5(REGION_PARAMS, REGION_IO) {
    region_gemm<128, 32, 4, 4, RegionA<128, false>, PREC_TF32, true>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_fwd_128x64_tf32_v5(REGION_PARAMS, REGION_IO) {
    region_gemm<128, 64, 8, 4, RegionA<128, false>, PREC_TF32, true>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_dgrad_64x64_tf32_v5(REGION_PARAMS, REGION_IO) {
    region_gemm<64, 64, 4, 4, RegionA<64, true>, PREC_TF32, true>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_dgrad_128x32_tf32_v5(REGION_PARAMS, REGION_IO) {
    region_gemm<128, 32, 4, 4, RegionA<128, true>, PREC_TF32, true>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_dgrad_128x64_tf32_v5(REGION_PARAMS, REGION_IO) {
    region_gemm<128, 64, 8, 4, RegionA<128, true>, PREC_TF32, true>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_fwd4_64x64_tf32_v5(REGION_PARAMS, REGION_IO) {
    region_gemm<64, 64, 4, 4, RegionAVec<64>, PREC_TF32, true>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_fwd4_128x32_tf32_v5(REGION_PARAMS, REGION_IO) {
    region_gemm<128, 32, 4, 4, RegionAVec<128>, PREC_TF32, true>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_fwd4_128x64_tf32_v5(REGION_PARAMS, REGION_IO) {
    region_gemm<128, 64, 8, 4, RegionAVec<128>, PREC_TF32, true>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_fwd_64x64_bf16_v5(REGION_PARAMS, REGION_IO) {
    region_gemm<64, 64, 4, 4, RegionA<64, false>, PREC_BF16, true>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_fwd_128x32_bf16_v5(REGION_PARAMS, REGION_IO) {
    region_gemm<128, 32, 4, 4, RegionA<128, false>, PREC_BF16, true>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_fwd_128x64_bf16_v5(REGION_PARAMS, REGION_IO) {
    region_gemm<128, 64, 8, 4, RegionA<128, false>, PREC_BF16, true>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_dgrad_64x64_bf16_v5(REGION_PARAMS, REGION_IO) {
    region_gemm<64, 64, 4, 4, RegionA<64, true>, PREC_BF16, true>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_dgrad_128x32_bf16_v5(REGION_PARAMS, REGION_IO) {
    region_gemm<128, 32, 4, 4, RegionA<128, true>, PREC_BF16, true>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_dgrad_128x64_bf16_v5(REGION_PARAMS, REGION_IO) {
    region_gemm<128, 64, 8, 4, RegionA<128, true>, PREC_BF16, true>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_fwd4_64x64_bf16_v5(REGION_PARAMS, REGION_IO) {
    region_gemm<64, 64, 4, 4, RegionAVec<64>, PREC_BF16, true>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_fwd4_128x32_bf16_v5(REGION_PARAMS, REGION_IO) {
    region_gemm<128, 32, 4, 4, RegionAVec<128>, PREC_BF16, true>(REGION_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS, 2)
    conv2d_region_fwd4_128x64_bf16_v5(REGION_PARAMS, REGION_IO) {
    region_gemm<128, 64, 8, 4, RegionAVec<128>, PREC_BF16, true>(REGION_ARGS);
}
