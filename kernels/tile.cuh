// tile.cuh: the 64×64 SIMT tile loop that conv.cu (implicit GEMM) and linear.cu (SGEMM) share:
// C[64×64] += A[64×K]·B[K×64] with 16-deep K slices, 256 threads each computing a 4×4
// register tile, operands staged through double-buffered static shared memory. The loaders
// (how A and B are read from global memory) are the callers'. Pasted into each family by
// mep_kernels::sources for NVRTC, as common.cuh is.
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

// Each thread moves 4 elements of a 64×16 operand slice into shared memory, stored
// transposed as s[k][row]. k-fast: element i at (row t/16 + 16 i, k t%16), for operands
// contiguous along k. Row-fast: element i at (row t%64, k t/64 + 4 i), for operands
// contiguous along rows.
__device__ __forceinline__ void tile_store_kfast(float* s, const float (&v)[4]) {
    int k = threadIdx.x & 15, r = threadIdx.x >> 4;
    TILE_UNROLL
    for (int i = 0; i < 4; ++i) s[k * TILE_LD + r + 16 * i] = v[i];
}
__device__ __forceinline__ void tile_store_rowfast(float* s, const float (&v)[4]) {
    int k = threadIdx.x >> 6, r = threadIdx.x & 63;
    TILE_UNROLL
    for (int i = 0; i < 4; ++i) s[(k + 4 * i) * TILE_LD + r] = v[i];
}

// acc += A[m0.., k0..k1) · B[k0..k1), n0..] for this thread's 4×4 outputs: rows
// m0 + 4 (t / 16) + i, columns n0 + 4 (t % 16) + j. The loaders `la` (A) and `lb` (B) know
// their tile origin; `fetch(k, k1, v)` is called for k = k0, k0 + TILE_K, ... in order and
// must give 0 outside the matrix or at k ≥ k1; `store(s, v)` puts v in s[k][row].
template <class LA, class LB>
__device__ __forceinline__ void tile_mma(LA& la, LB& lb, int k0, int k1, float (&acc)[4][4]) {
    __shared__ float4 sa4[2 * TILE_K * TILE_LD / 4];
    __shared__ float4 sb4[2 * TILE_K * TILE_LD / 4];
    float* sa = reinterpret_cast<float*>(sa4);
    float* sb = reinterpret_cast<float*>(sb4);
    const int tm = (threadIdx.x >> 4) * 4, tn = (threadIdx.x & 15) * 4;
    float ra[4], rb[4];
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
        const float* a = sa + buf * TILE_K * TILE_LD + tm;
        const float* b = sb + buf * TILE_K * TILE_LD + tn;
        TILE_UNROLL
        for (int k = 0; k < TILE_K; ++k) {
            float4 av = *reinterpret_cast<const float4*>(a + k * TILE_LD);
            float4 bv = *reinterpret_cast<const float4*>(b + k * TILE_LD);
            float ar[4] = {av.x, av.y, av.z, av.w};
            float br[4] = {bv.x, bv.y, bv.z, bv.w};
            TILE_UNROLL
            for (int i = 0; i < 4; ++i)
                TILE_UNROLL
                for (int j = 0; j < 4; ++j) acc[i][j] += ar[i] * br[j];
        }
        if (more) {
            // The other buffer was last read before the previous barrier.
            la.store(sa + (buf ^ 1) * TILE_K * TILE_LD, ra);
            lb.store(sb + (buf ^ 1) * TILE_K * TILE_LD, rb);
        }
        __syncthreads();
        buf ^= 1;
    }
}
