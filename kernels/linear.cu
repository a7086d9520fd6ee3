// linear.cu: linear (fully connected) layers, row-major, PyTorch's weight layout w [m, k].
//
//   linear             y[n, m] = x[n, k]·w[m, k]ᵀ + bias[m]   (bias optional: null)
//   linear_bwd_input   dx[n, k] = dy[n, m]·w[m, k]
//   linear_bwd_weight  dw[m, k] = dy[n, m]ᵀ·x[n, k]
//   col_sum            out[j] = Σ_i t[i, j] over a [rows, cols] matrix (db = Σ_n dy), in double
//
// v1: one thread per output element, summing in double: the readable specification.
// v2: one tiled SGEMM, C[M×N] = op(A)·op(B) (+ bias[N]) with A and B each either normal or
//     transposed in memory: gemm_nt (A·Bᵀ: the forward), gemm_nn (A·B: the input gradient),
//     gemm_tn (Aᵀ·B: the weight gradient). 64×64 output tiles, 16-deep K slices, 256
//     threads each computing a 4×4 register tile, double-buffered static shared memory (one
//     barrier per slice), each operand loaded along its contiguous dimension; sums in f32.
//     col_sum v2: blocks of 32 columns × 8 row groups, coalesced, fixed-order reduction.
//     The tile loop itself is tile.cuh's, shared with conv.cu.
// v3: the v2 GEMMs in TF32 and bf16 (gemm_{nt,nn,tn}_{tf32,bf16}_v3): the same loaders and
//     64×64 tiles with tile_tc.cuh's tensor-core slice (operands rounded as they are staged,
//     f32 sums); bf16 rounds the result (bias added first), as autocast stores it.
// v4: v3 with the operands copied raw from global to shared memory by cp.async (sm_80), one
//     16-byte copy per thread and operand per slice, the next slice in flight while this one
//     is multiplied (gemm_{nt,nn,tn}_{tf32,bf16}_v4; tile_tc.cuh's tile_mma_tc_async); the
//     rounding moves to the fragment loads (the same bits). A k-contiguous operand is staged
//     as s[row][k] so that the copies need no transpose. The host runs v4 when every strided
//     dimension is a multiple of 4 and the operands are 16-byte aligned, v3 otherwise.
//
// Sizes are int (the host checks that they fit); offsets are long long. v2 GEMMs run 256
// threads per block on grid (ceil(N / 64), ceil(M / 64)), at least GEMM_MIN_BLOCKS blocks
// per SM.
#include "common.cuh"
#include "tile.cuh"
#include "mma.cuh"
#include "tile_tc.cuh"

// Full unrolling of the fixed 4- and 16-trip loops keeps the register tiles in registers
// (NVRTC); g++ has no such pragma and needs none.

// ---- v1: one thread per output --------------------------------------------------------

extern "C" __global__ void linear_f32_v1(int n, int k, int m, const float* __restrict__ x,
                                         const float* __restrict__ w, const float* __restrict__ bias,
                                         float* __restrict__ y) {
    long long i = global_index();
    if (i >= (long long)n * m) return;
    long long row = i / m;
    int o = (int)(i - row * m);
    double acc = 0.0;
    for (int c = 0; c < k; ++c) acc += (double)x[row * k + c] * (double)w[(long long)o * k + c];
    float v = (float)acc;
    if (bias) v += bias[o];
    y[i] = v;
}

extern "C" __global__ void linear_bwd_input_f32_v1(int n, int k, int m, const float* __restrict__ dy,
                                                   const float* __restrict__ w, float* __restrict__ dx) {
    long long i = global_index();
    if (i >= (long long)n * k) return;
    long long row = i / k;
    int c = (int)(i - row * k);
    double acc = 0.0;
    for (int o = 0; o < m; ++o) acc += (double)dy[row * m + o] * (double)w[(long long)o * k + c];
    dx[i] = (float)acc;
}

extern "C" __global__ void linear_bwd_weight_f32_v1(int n, int k, int m, const float* __restrict__ x,
                                                    const float* __restrict__ dy, float* __restrict__ dw) {
    long long i = global_index();
    if (i >= (long long)m * k) return;
    long long o = i / k;
    int c = (int)(i - o * k);
    double acc = 0.0;
    for (long long row = 0; row < n; ++row) acc += (double)dy[row * m + o] * (double)x[row * k + c];
    dw[i] = (float)acc;
}

extern "C" __global__ void col_sum_f32_v1(int rows, int cols, const float* __restrict__ t, float* __restrict__ out) {
    long long j = global_index();
    if (j >= cols) return;
    double acc = 0.0;
    for (long long i = 0; i < rows; ++i) acc += t[i * cols + j];
    out[j] = (float)acc;
}

// ---- v2: tiled SGEMM ---------------------------------------------------------------------

// Four 256-thread blocks per SM caps the kernels at 64 registers. Without the bound, ptxas
// of NVRTC 13.0 for sm_90 aimed at 64 on its own in gemm_nn and spilled 4 bytes to reach it
// (65 needed), and gave gemm_nt 71 (3 blocks per SM); told the target, it schedules for it
// and every 13.x fits all three in 64 without spilling (kernels-check).
#define GEMM_MIN_BLOCKS 4


// An operand as `rows` rows of depth K, staged in shared memory as s[k][row], 4 elements
// per thread per 64×16 slice. KMajor: element (r, k) at p[r·ld + k] (contiguous along k),
// loaded k-fast: element i at (row t/16 + 16 i, k t%16). RowMajor: element (r, k) at
// p[k·ld + r] (contiguous along rows), loaded row-fast: element i at (row t%64, k t/64 + 4 i).
template <bool KMajor>
struct GemmOperand {
    const float* p;
    long long ld;
    int rows, r0;
    __device__ __forceinline__ void fetch(int k0, int k1, float (&v)[4]) const {
        if (KMajor) {
            int k = k0 + (threadIdx.x & 15);
            TILE_UNROLL
            for (int i = 0; i < 4; ++i) {
                int r = r0 + (threadIdx.x >> 4) + 16 * i;
                v[i] = (k < k1 && r < rows) ? p[(long long)r * ld + k] : 0.0f;
            }
        } else {
            int r = r0 + (threadIdx.x & 63);
            TILE_UNROLL
            for (int i = 0; i < 4; ++i) {
                int k = k0 + (threadIdx.x >> 6) + 4 * i;
                v[i] = (k < k1 && r < rows) ? p[(long long)k * ld + r] : 0.0f;
            }
        }
    }
    // The slice at k0 of v4's cp.async tile loop, raw: one 16-byte copy per thread, 4
    // elements along the contiguous dimension (KMajor: row t/4, k 4(t%4)..; RowMajor: k t/16,
    // rows 4(t%16)..), the part past the matrix or k1 zero-filled. The host checks that ld is
    // a multiple of 4 and p 16-byte aligned.
    using Stage = TcStage<KMajor, TILE_M>;
    __device__ __forceinline__ void copy(float* s, int k0, int k1) const {
        if (KMajor) {
            int row = (int)threadIdx.x >> 2, kq = 4 * ((int)threadIdx.x & 3);
            int r = r0 + row, k = k0 + kq;
            int n = r < rows ? 4 * max(0, min(4, k1 - k)) : 0;
            cp_async<16>(s + row * Stage::LD + kq, n ? p + (long long)r * ld + k : p, n);
        } else {
            int kk = (int)threadIdx.x >> 4, rq = 4 * ((int)threadIdx.x & 15);
            int r = r0 + rq, k = k0 + kk;
            int n = k < k1 ? 4 * max(0, min(4, rows - r)) : 0;
            cp_async<16>(s + kk * Stage::LD + rq, n ? p + (long long)k * ld + r : p, n);
        }
    }
    __device__ __forceinline__ void store(float* s, const float (&v)[4]) const {
        if (KMajor)
            tile_store_kfast(s, v);
        else
            tile_store_rowfast(s, v);
    }
};

// C[M×N] = A·B (+ bias[N]) for this block's 64×64 tile (blockIdx.y rows, blockIdx.x columns);
// thread t computes rows 4 (t / 16) + i and columns 4 (t % 16) + j of the tile. P: 0 for
// f32 FMAs, else the tensor-core precision (PREC_TF32, PREC_BF16); ASYNC: operands staged by
// cp.async (v4) rather than through registers (v3).
template <bool AK, bool BK, int P = 0, bool ASYNC = false>
__device__ __forceinline__ void gemm_tile(int M, int N, int K, const float* __restrict__ A, long long lda,
                                          const float* __restrict__ B, long long ldb, const float* __restrict__ bias,
                                          float* __restrict__ C) {
    const int m0 = blockIdx.y * TILE_M, n0 = blockIdx.x * TILE_N;
    const int tm = (threadIdx.x >> 4) * 4, tn = (threadIdx.x & 15) * 4;
    GemmOperand<AK> la{A, lda, M, m0};
    GemmOperand<BK> lb{B, ldb, N, n0};
    float acc[4][4] = {};
    if constexpr (P == 0)
        tile_mma(la, lb, 0, K, acc);
    else if constexpr (ASYNC)
        tile_mma_tc_async<P, TILE_M, TILE_N, 4, 4>(la, lb, 0, K, acc);
    else
        tile_mma_tc<P, TILE_M, TILE_N, 4, 4>(la, lb, 0, K, acc);
    TILE_UNROLL
    for (int i = 0; i < 4; ++i) {
        int r = m0 + tm + i;
        if (r >= M) continue;
        TILE_UNROLL
        for (int j = 0; j < 4; ++j) {
            int c = n0 + tn + j;
            if (c >= N) continue;
            float v = bias ? acc[i][j] + bias[c] : acc[i][j];
            if constexpr (P != 0) v = round_result<P>(v);
            C[(long long)r * N + c] = v;
        }
    }
}

// C[M×N] = A[M×K]·B[N×K]ᵀ + bias: the forward, y = x·wᵀ + b.
extern "C" __global__ void __launch_bounds__(TILE_THREADS, GEMM_MIN_BLOCKS)
    gemm_nt_f32_v2(int M, int N, int K, const float* __restrict__ A, const float* __restrict__ B,
                   const float* __restrict__ bias, float* __restrict__ C) {
    gemm_tile<true, true>(M, N, K, A, K, B, K, bias, C);
}

// C[M×N] = A[M×K]·B[K×N] + bias: the input gradient, dx = dy·w.
extern "C" __global__ void __launch_bounds__(TILE_THREADS, GEMM_MIN_BLOCKS)
    gemm_nn_f32_v2(int M, int N, int K, const float* __restrict__ A, const float* __restrict__ B,
                   const float* __restrict__ bias, float* __restrict__ C) {
    gemm_tile<true, false>(M, N, K, A, K, B, N, bias, C);
}

// C[M×N] = A[K×M]ᵀ·B[K×N] + bias: the weight gradient, dw = dyᵀ·x.
extern "C" __global__ void __launch_bounds__(TILE_THREADS, GEMM_MIN_BLOCKS)
    gemm_tn_f32_v2(int M, int N, int K, const float* __restrict__ A, const float* __restrict__ B,
                   const float* __restrict__ bias, float* __restrict__ C) {
    gemm_tile<false, false>(M, N, K, A, M, B, N, bias, C);
}

// ---- v3: the v2 GEMMs on tensor cores ----------------------------------------------------

// gemm_nt_f32_v2 (A·Bᵀ, the forward) in tf32.
extern "C" __global__ void __launch_bounds__(TILE_THREADS)
    gemm_nt_tf32_v3(int M, int N, int K, const float* __restrict__ A, const float* __restrict__ B,
                    const float* __restrict__ bias, float* __restrict__ C) {
    gemm_tile<true, true, PREC_TF32>(M, N, K, A, K, B, K, bias, C);
}

// gemm_nn_f32_v2 (A·B, the input gradient) in tf32.
extern "C" __global__ void __launch_bounds__(TILE_THREADS)
    gemm_nn_tf32_v3(int M, int N, int K, const float* __restrict__ A, const float* __restrict__ B,
                    const float* __restrict__ bias, float* __restrict__ C) {
    gemm_tile<true, false, PREC_TF32>(M, N, K, A, K, B, N, bias, C);
}

// gemm_tn_f32_v2 (Aᵀ·B, the weight gradient) in tf32.
extern "C" __global__ void __launch_bounds__(TILE_THREADS)
    gemm_tn_tf32_v3(int M, int N, int K, const float* __restrict__ A, const float* __restrict__ B,
                    const float* __restrict__ bias, float* __restrict__ C) {
    gemm_tile<false, false, PREC_TF32>(M, N, K, A, M, B, N, bias, C);
}

// gemm_nt_f32_v2 (A·Bᵀ, the forward) in bf16.
extern "C" __global__ void __launch_bounds__(TILE_THREADS)
    gemm_nt_bf16_v3(int M, int N, int K, const float* __restrict__ A, const float* __restrict__ B,
                    const float* __restrict__ bias, float* __restrict__ C) {
    gemm_tile<true, true, PREC_BF16>(M, N, K, A, K, B, K, bias, C);
}

// gemm_nn_f32_v2 (A·B, the input gradient) in bf16.
extern "C" __global__ void __launch_bounds__(TILE_THREADS)
    gemm_nn_bf16_v3(int M, int N, int K, const float* __restrict__ A, const float* __restrict__ B,
                    const float* __restrict__ bias, float* __restrict__ C) {
    gemm_tile<true, false, PREC_BF16>(M, N, K, A, K, B, N, bias, C);
}

// gemm_tn_f32_v2 (Aᵀ·B, the weight gradient) in bf16.
extern "C" __global__ void __launch_bounds__(TILE_THREADS)
    gemm_tn_bf16_v3(int M, int N, int K, const float* __restrict__ A, const float* __restrict__ B,
                    const float* __restrict__ bias, float* __restrict__ C) {
    gemm_tile<false, false, PREC_BF16>(M, N, K, A, M, B, N, bias, C);
}

// ---- v4: the v3 GEMMs staged by cp.async -------------------------------------------------

// gemm_nt_tf32_v3 (A·Bᵀ, the forward) with cp.async staging.
extern "C" __global__ void __launch_bounds__(TILE_THREADS)
    gemm_nt_tf32_v4(int M, int N, int K, const float* __restrict__ A, const float* __restrict__ B,
                    const float* __restrict__ bias, float* __restrict__ C) {
    gemm_tile<true, true, PREC_TF32, true>(M, N, K, A, K, B, K, bias, C);
}

// gemm_nn_tf32_v3 (A·B, the input gradient) with cp.async staging.
extern "C" __global__ void __launch_bounds__(TILE_THREADS)
    gemm_nn_tf32_v4(int M, int N, int K, const float* __restrict__ A, const float* __restrict__ B,
                    const float* __restrict__ bias, float* __restrict__ C) {
    gemm_tile<true, false, PREC_TF32, true>(M, N, K, A, K, B, N, bias, C);
}

// gemm_tn_tf32_v3 (Aᵀ·B, the weight gradient) with cp.async staging.
extern "C" __global__ void __launch_bounds__(TILE_THREADS)
    gemm_tn_tf32_v4(int M, int N, int K, const float* __restrict__ A, const float* __restrict__ B,
                    const float* __restrict__ bias, float* __restrict__ C) {
    gemm_tile<false, false, PREC_TF32, true>(M, N, K, A, M, B, N, bias, C);
}

// gemm_nt_bf16_v3 (A·Bᵀ, the forward) with cp.async staging.
extern "C" __global__ void __launch_bounds__(TILE_THREADS)
    gemm_nt_bf16_v4(int M, int N, int K, const float* __restrict__ A, const float* __restrict__ B,
                    const float* __restrict__ bias, float* __restrict__ C) {
    gemm_tile<true, true, PREC_BF16, true>(M, N, K, A, K, B, K, bias, C);
}

// gemm_nn_bf16_v3 (A·B, the input gradient) with cp.async staging.
extern "C" __global__ void __launch_bounds__(TILE_THREADS)
    gemm_nn_bf16_v4(int M, int N, int K, const float* __restrict__ A, const float* __restrict__ B,
                    const float* __restrict__ bias, float* __restrict__ C) {
    gemm_tile<true, false, PREC_BF16, true>(M, N, K, A, K, B, N, bias, C);
}

// gemm_tn_bf16_v3 (Aᵀ·B, the weight gradient) with cp.async staging.
extern "C" __global__ void __launch_bounds__(TILE_THREADS)
    gemm_tn_bf16_v4(int M, int N, int K, const float* __restrict__ A, const float* __restrict__ B,
                    const float* __restrict__ bias, float* __restrict__ C) {
    gemm_tile<false, false, PREC_BF16, true>(M, N, K, A, M, B, N, bias, C);
}

// out[j] as v1; block (32, 8): threadIdx.x a column of blockIdx.x's 32, threadIdx.y one of
// 8 interleaved row groups, so that each warp reads 32 consecutive floats of a row.
extern "C" __global__ void col_sum_f32_v2(int rows, int cols, const float* __restrict__ t, float* __restrict__ out) {
    __shared__ double part[8][32];
    int j = blockIdx.x * 32 + threadIdx.x;
    double acc = 0.0;
    if (j < cols)
        for (long long i = threadIdx.y; i < rows; i += 8) acc += t[i * cols + j];
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && j < cols) {
        double s = 0.0;
        for (int g = 0; g < 8; ++g) s += part[g][threadIdx.x];
        out[j] = (float)s;
    }
}
