// tile.cuh: the SIMT tile loop that conv.cu, conv_region.cu (implicit GEMMs) and linear.cu
// (SGEMM) share: C[BM×BN] += A[BM×K]·B[K×BN] with 16-deep K slices, 256 threads each computing
// a TM×TN register tile, operands staged through double-buffered static shared memory. The
// loaders (how A and B are read from global memory) are the callers'. Pasted into each family
// by mep_kernels::sources for NVRTC, as common.cuh is.
//
// Shapes in use: 64×64 at 4×4 per thread (`tile_mma`: conv.cu's v2, linear.cu), and for
// conv_region.cu, which picks per launch, also 128×32 at 4×4 (narrow outputs such as a border
// class of a 7×7 plane are not rounded up to 64 columns) and 128×64 at 8×4 (twice the
// products per shared-memory read).
#pragma once

// Full unrolling for NVRTC; the emulation's g++ -O2 decides for itself.
#ifdef __CUDACC__
#define TILE_UNROLL _Pragma("unroll")
#else
#define TILE_UNROLL
#endif

#define TILE_M 64              // output tile rows
#define TILE_N 64              // output tile columns
#define TILE_K 16              // depth of one K slice
#define TILE_LD (TILE_M + 4)     // shared row stride: float4-aligned; the pad spreads k-fast stores over banks
#define TILE_THREADS 256

// Each thread moves BM·TILE_K / TILE_THREADS elements of an A slice (or of a B slice, with
// BN) into shared memory, stored transposed as s[k][row] with row stride LD = rows + 4
// (float4-aligned). k-fast: element i at (row t/16 + 16 i, k t%16), for operands contiguous
// along k. Row-fast: element i at (row t%rows, k t/rows + (TILE_THREADS/rows) i), for
// operands contiguous along rows.
template <int ROWS>
__device__ __forceinline__ void tile_shaped_store_kfast(float* s, const float (&v)[ROWS * TILE_K / TILE_THREADS]) {
    constexpr int LD = ROWS + 4;
    int k = threadIdx.x & 15, r = threadIdx.x >> 4;
    TILE_UNROLL
    for (int i = 0; i < ROWS * TILE_K / TILE_THREADS; ++i) s[k * LD + r + 16 * i] = v[i];
}
template <int ROWS>
__device__ __forceinline__ void tile_shaped_store_rowfast(float* s, const float (&v)[ROWS * TILE_K / TILE_THREADS]) {
    constexpr int LD = ROWS + 4, KS = TILE_THREADS / ROWS;
    int k = threadIdx.x / ROWS, r = threadIdx.x % ROWS;
    TILE_UNROLL
    for (int i = 0; i < ROWS * TILE_K / TILE_THREADS; ++i) s[(k + KS * i) * LD + r] = v[i];
}

// acc += A[m0.., k0..k1) · B[k0..k1), n0..] for this thread's TM×TN outputs: rows
// m0 + TM·(t / (BN/TN)) + i, columns n0 + TN·(t % (BN/TN)) + j. The loaders know their tile
// origin; `fetch(k, k1, v)` is called for k = k0, k0 + TILE_K, ... in order and must give 0
// outside the matrix or at k ≥ k1; `store(s, v)` puts v in s[k][row] (row stride rows + 4).
template <int BM, int BN, int TM, int TN, class LA, class LB>
__device__ __forceinline__ void tile_mma_shaped(LA& la, LB& lb, int k0, int k1, float (&acc)[TM][TN]) {
    static_assert((BM / TM) * (BN / TN) == TILE_THREADS, "one thread per TM×TN sub-tile");
    static_assert(TM % 4 == 0 && TN % 4 == 0, "float4 reads of the staged slices");
    constexpr int LDA = BM + 4, LDB = BN + 4;
    constexpr int NA = BM * TILE_K / TILE_THREADS, NB = BN * TILE_K / TILE_THREADS;
    __shared__ float4 sa4[2 * TILE_K * LDA / 4];
    __shared__ float4 sb4[2 * TILE_K * LDB / 4];
    float* sa = reinterpret_cast<float*>(sa4);
    float* sb = reinterpret_cast<float*>(sb4);
    const int tm = (threadIdx.x / (BN / TN)) * TM, tn = (threadIdx.x % (BN / TN)) * TN;
    float ra[NA], rb[NB];
    la.fetch(k0, k1, ra);
    lb.fetch(k0, k1, rb);
    la.store(sa, ra);
    lb.store(sb, rb);
    __syncthreads();
    int buf = 0;
    for (int kt = k0; kt < k1; kt += TILE_K) {
        bool more = kt + TILE_K < k1;
        if (more) {
            la.fetch(kt + TILE_K, k1, ra);
            lb.fetch(kt + TILE_K, k1, rb);
        }
        const float* a = sa + buf * TILE_K * LDA + tm;
        const float* b = sb + buf * TILE_K * LDB + tn;
        TILE_UNROLL
        for (int k = 0; k < TILE_K; ++k) {
            float ar[TM], br[TN];
            TILE_UNROLL
            for (int q = 0; q < TM / 4; ++q) {
                float4 v = *reinterpret_cast<const float4*>(a + k * LDA + 4 * q);
                ar[4 * q] = v.x, ar[4 * q + 1] = v.y, ar[4 * q + 2] = v.z, ar[4 * q + 3] = v.w;
            }
            TILE_UNROLL
            for (int q = 0; q < TN / 4; ++q) {
                float4 v = *reinterpret_cast<const float4*>(b + k * LDB + 4 * q);
                br[4 * q] = v.x, br[4 * q + 1] = v.y, br[4 * q + 2] = v.z, br[4 * q + 3] = v.w;
            }
            TILE_UNROLL
            for (int i = 0; i < TM; ++i)
                TILE_UNROLL
                for (int j = 0; j < TN; ++j) acc[i][j] += ar[i] * br[j];
        }
        if (more) {
            // The other buffer was last read before the previous barrier.
            la.store(sa + (buf ^ 1) * TILE_K * LDA, ra);
            lb.store(sb + (buf ^ 1) * TILE_K * LDB, rb);
        }
        __syncthreads();
        buf ^= 1;
    }
}

// The 64×64 tile with 4×4 per thread (TILE_M × TILE_N), as conv.cu's v2 and linear.cu use it.
__device__ __forceinline__ void tile_store_kfast(float* s, const float (&v)[4]) { tile_shaped_store_kfast<TILE_M>(s, v); }
__device__ __forceinline__ void tile_store_rowfast(float* s, const float (&v)[4]) {
    tile_shaped_store_rowfast<TILE_M>(s, v);
}
template <class LA, class LB>
__device__ __forceinline__ void tile_mma(LA& la, LB& lb, int k0, int k1, float (&acc)[4][4]) {
    tile_mma_shaped<TILE_M, TILE_N, 4, 4>(la, lb, k0, k1, acc);
}
