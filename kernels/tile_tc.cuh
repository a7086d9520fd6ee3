// tile_tc.cuh: tile.cuh's tile loop with tensor cores (mma.cuh) in place of the FMA tile, for
// the TF32 and bf16 kernels of linear.cu, conv_region.cu and conv_wgrad.cu. The loaders, the
// shared-memory staging (s[k][row], row stride rows + 4, double-buffered 16-deep slices) and
// the caller's epilogue are the fp32 kernels' own: only the values staged are rounded
// (round_operand, as they go to shared memory) and the 16-deep slice is multiplied by mma.sync
// instead of FMAs. The accumulators then go through shared memory into the SIMT tile's
// thread mapping (thread t owns rows TM·(t / (BN/TN)) + i, columns TN·(t % (BN/TN)) + j), so
// that every caller's epilogue runs unchanged. Include after tile.cuh and mma.cuh.
//
// tile_mma_tc_async (below) is the same tile loop with the operands staged raw by cp.async
// (mma.cuh) and rounded where the fragments are loaded from shared memory instead.
//
// Warps: the 8 warps of a block tile BM × BN as (BM / 32) × (256 / BM) warp tiles of 32 rows
// × WN = BM·BN/256 columns; a warp tile is 2 × WN/8 mma tiles of 16 × 8.
#pragma once

template <int P, int BM, int BN>
struct TcTile {
    static constexpr int WN = BM * BN / TILE_THREADS, WARPS_N = BN / WN, NT = WN / 8;
    static constexpr int LDA = BM + 4, LDB = BN + 4, LDC = BN + 4;
    static_assert(P == PREC_TF32 || P == PREC_BF16, "a tensor-core precision");
    static_assert((BM / 32) * WARPS_N == TILE_THREADS / 32 && WN % 8 == 0, "8 warps of 32 × WN");
    float c[2][NT][4];
    int wm, wn, g, t;

    __device__ __forceinline__ TcTile() {
        int warp = (int)threadIdx.x >> 5, lane = (int)threadIdx.x & 31;
        wm = (warp / WARPS_N) * 32;
        wn = (warp % WARPS_N) * WN;
        g = lane >> 2;
        t = lane & 3;
        TILE_UNROLL
        for (int i = 0; i < 2; ++i)
            TILE_UNROLL
            for (int j = 0; j < NT; ++j)
                TILE_UNROLL
                for (int r = 0; r < 4; ++r) c[i][j][r] = 0.0f;
    }

    // c += A·B over one staged TILE_K slice: sa[k·LDA + row], sb[k·LDB + col], already rounded.
    __device__ __forceinline__ void slice(const float* sa, const float* sb) {
        if constexpr (P == PREC_TF32) {
            TILE_UNROLL
            for (int ks = 0; ks < TILE_K; ks += 8) {
                unsigned int a[2][4], b[2];
                TILE_UNROLL
                for (int i = 0; i < 2; ++i) {
                    const float* p = sa + (ks + t) * LDA + wm + 16 * i + g;
                    a[i][0] = __float_as_uint(p[0]);
                    a[i][1] = __float_as_uint(p[8]);
                    a[i][2] = __float_as_uint(p[4 * LDA]);
                    a[i][3] = __float_as_uint(p[4 * LDA + 8]);
                }
                TILE_UNROLL
                for (int j = 0; j < NT; ++j) {
                    const float* q = sb + (ks + t) * LDB + wn + 8 * j + g;
                    b[0] = __float_as_uint(q[0]);
                    b[1] = __float_as_uint(q[4 * LDB]);
                    TILE_UNROLL
                    for (int i = 0; i < 2; ++i) mma_tf32_m16n8k8(c[i][j], a[i], b);
                }
            }
        } else {
            static_assert(TILE_K == 16, "one m16n8k16 step per slice");
            unsigned int a[2][4], b[2];
            TILE_UNROLL
            for (int i = 0; i < 2; ++i) {
                const float* p = sa + 2 * t * LDA + wm + 16 * i + g;
                a[i][0] = pack_bf16(p[0], p[LDA]);
                a[i][1] = pack_bf16(p[8], p[LDA + 8]);
                a[i][2] = pack_bf16(p[8 * LDA], p[9 * LDA]);
                a[i][3] = pack_bf16(p[8 * LDA + 8], p[9 * LDA + 8]);
            }
            TILE_UNROLL
            for (int j = 0; j < NT; ++j) {
                const float* q = sb + 2 * t * LDB + wn + 8 * j + g;
                b[0] = pack_bf16(q[0], q[LDB]);
                b[1] = pack_bf16(q[8 * LDB], q[9 * LDB]);
                TILE_UNROLL
                for (int i = 0; i < 2; ++i) mma_bf16_m16n8k16(c[i][j], a[i], b);
            }
        }
    }

    // c += A·B over one slice staged raw (not rounded, as cp.async copies it) in the layouts
    // SA and SB (TcStage): the operands are rounded here, as fragments are loaded, to the
    // same bits slice() multiplies.
    template <class SA, class SB>
    __device__ __forceinline__ void slice_raw(const float* sa, const float* sb) {
        if constexpr (P == PREC_TF32) {
            auto tf = [](float x) { return __float_as_uint(round_tf32(x)); };
            TILE_UNROLL
            for (int ks = 0; ks < TILE_K; ks += 8) {
                unsigned int a[2][4], b[2];
                TILE_UNROLL
                for (int i = 0; i < 2; ++i) {
                    int r = wm + 16 * i + g, k = ks + t;
                    a[i][0] = tf(SA::at(sa, r, k));
                    a[i][1] = tf(SA::at(sa, r + 8, k));
                    a[i][2] = tf(SA::at(sa, r, k + 4));
                    a[i][3] = tf(SA::at(sa, r + 8, k + 4));
                }
                TILE_UNROLL
                for (int j = 0; j < NT; ++j) {
                    int n = wn + 8 * j + g, k = ks + t;
                    b[0] = tf(SB::at(sb, n, k));
                    b[1] = tf(SB::at(sb, n, k + 4));
                    TILE_UNROLL
                    for (int i = 0; i < 2; ++i) mma_tf32_m16n8k8(c[i][j], a[i], b);
                }
            }
        } else {
            static_assert(TILE_K == 16, "one m16n8k16 step per slice");
            unsigned int a[2][4], b[2];
            const int k = 2 * t;
            TILE_UNROLL
            for (int i = 0; i < 2; ++i) {
                int r = wm + 16 * i + g;
                a[i][0] = pack_bf16_rn(SA::at(sa, r, k), SA::at(sa, r, k + 1));
                a[i][1] = pack_bf16_rn(SA::at(sa, r + 8, k), SA::at(sa, r + 8, k + 1));
                a[i][2] = pack_bf16_rn(SA::at(sa, r, k + 8), SA::at(sa, r, k + 9));
                a[i][3] = pack_bf16_rn(SA::at(sa, r + 8, k + 8), SA::at(sa, r + 8, k + 9));
            }
            TILE_UNROLL
            for (int j = 0; j < NT; ++j) {
                int n = wn + 8 * j + g;
                b[0] = pack_bf16_rn(SB::at(sb, n, k), SB::at(sb, n, k + 1));
                b[1] = pack_bf16_rn(SB::at(sb, n, k + 8), SB::at(sb, n, k + 9));
                TILE_UNROLL
                for (int i = 0; i < 2; ++i) mma_bf16_m16n8k16(c[i][j], a[i], b);
            }
        }
    }

    // acc += the block's C in the SIMT mapping of TM × TN per thread, through sc (BM·LDC
    // floats of shared memory that no thread reads or writes any more: the caller's last use
    // of it is behind a barrier). Every thread of the block must call it.
    template <int TM, int TN>
    __device__ __forceinline__ void to_threads(float* sc, float (&acc)[TM][TN]) {
        static_assert((BM / TM) * (BN / TN) == TILE_THREADS, "one thread per TM×TN sub-tile");
        TILE_UNROLL
        for (int i = 0; i < 2; ++i)
            TILE_UNROLL
            for (int j = 0; j < NT; ++j)
                TILE_UNROLL
                for (int r = 0; r < 4; ++r)
                    sc[(wm + 16 * i + g + 8 * (r >> 1)) * LDC + wn + 8 * j + 2 * t + (r & 1)] = c[i][j][r];
        __syncthreads();
        const int tm = ((int)threadIdx.x / (BN / TN)) * TM, tn = ((int)threadIdx.x % (BN / TN)) * TN;
        TILE_UNROLL
        for (int i = 0; i < TM; ++i)
            TILE_UNROLL
            for (int j = 0; j < TN; ++j) acc[i][j] += sc[(tm + i) * LDC + tn + j];
        __syncthreads(); // sc may be staging memory again for the caller
    }
};

// Rounds the values a thread is about to stage, as precision P multiplies them.
template <int P, int N>
__device__ __forceinline__ void tc_round(float (&v)[N]) {
    TILE_UNROLL
    for (int i = 0; i < N; ++i) v[i] = round_operand<P>(v[i]);
}

// tile_mma_shaped's contract (same loaders, same acc mapping; acc += A·B over [k0, k1)) with
// the slices rounded to precision P and multiplied on tensor cores.
template <int P, int BM, int BN, int TM, int TN, class LA, class LB>
__device__ __forceinline__ void tile_mma_tc(LA& la, LB& lb, int k0, int k1, float (&acc)[TM][TN]) {
    using Tc = TcTile<P, BM, BN>;
    constexpr int LDA = Tc::LDA, LDB = Tc::LDB;
    constexpr int NA = BM * TILE_K / TILE_THREADS, NB = BN * TILE_K / TILE_THREADS;
    constexpr int STAGE = 2 * TILE_K * (LDA + LDB), OUT = BM * Tc::LDC;
    // The staging buffers and, after the last slice, the accumulators' transpose.
    __shared__ float4 smem4[(STAGE > OUT ? STAGE : OUT) / 4];
    float* sa = reinterpret_cast<float*>(smem4);
    float* sb = sa + 2 * TILE_K * LDA;
    Tc tc;
    float ra[NA], rb[NB];
    la.fetch(k0, k1, ra);
    lb.fetch(k0, k1, rb);
    tc_round<P>(ra);
    tc_round<P>(rb);
    la.store(sa, ra);
    lb.store(sb, rb);
    __syncthreads();
    int buf = 0;
    for (int kt = k0; kt < k1; kt += TILE_K) {
        bool more = kt + TILE_K < k1;
        if (more) {
            la.fetch(kt + TILE_K, k1, ra);
            lb.fetch(kt + TILE_K, k1, rb);
            tc_round<P>(ra);
            tc_round<P>(rb);
        }
        tc.slice(sa + buf * TILE_K * LDA, sb + buf * TILE_K * LDB);
        if (more) {
            // The other buffer was last read before the previous barrier.
            la.store(sa + (buf ^ 1) * TILE_K * LDA, ra);
            lb.store(sb + (buf ^ 1) * TILE_K * LDB, rb);
        }
        __syncthreads();
        buf ^= 1;
    }
    tc.template to_threads<TM, TN>(sa, acc);
}

// ---- cp.async staging -----------------------------------------------------------------------
//
// A TILE_K-deep slice of an operand of ROWS rows in shared memory, as one stage of the cp.async
// tile loop. RK false: s[k][row], row stride ROWS + 4 (tile.cuh's layout), for operands whose
// global memory is contiguous along rows; RK true: s[row][k], row stride TILE_K + 4 (80
// bytes: 16-byte aligned rows, and the fragment loads of a warp fall in distinct banks), for
// operands contiguous along k. Either way a 16-byte cp.async moves 4 elements that are
// neighbours in both memories.
template <bool RK, int ROWS>
struct TcStage {
    static constexpr int LD = RK ? TILE_K + 4 : ROWS + 4;
    static constexpr int SIZE = RK ? ROWS * LD : TILE_K * LD; // floats
    static __device__ __forceinline__ float at(const float* s, int row, int k) {
        return RK ? s[row * LD + k] : s[k * LD + row];
    }
};

// tile_mma_tc's contract (acc += A·B over [k0, k1) in the SIMT mapping, precision P) with
// the slices staged by cp.async: the loaders' `copy(s, k, k1)` issues this thread's copies
// of the slice at k into stage s (layout `Stage`, a TcStage; zeros outside the matrix or at
// k ≥ k1), and the operands are rounded as fragments are loaded (TcTile::slice_raw). Two
// stages: the copies of slice k + 1 are in flight while slice k is multiplied.
template <int P, int BM, int BN, int TM, int TN, class LA, class LB>
__device__ __forceinline__ void tile_mma_tc_async(LA& la, LB& lb, int k0, int k1, float (&acc)[TM][TN]) {
    using Tc = TcTile<P, BM, BN>;
    using SA = typename LA::Stage;
    using SB = typename LB::Stage;
    constexpr int STAGE = 2 * (SA::SIZE + SB::SIZE), OUT = BM * Tc::LDC;
    static_assert(SA::SIZE % 4 == 0 && SB::SIZE % 4 == 0, "16-byte aligned stages");
    // The two stages and, after the last slice, the accumulators' transpose.
    __shared__ float4 smem4[(STAGE > OUT ? STAGE : OUT) / 4];
    float* sa = reinterpret_cast<float*>(smem4);
    float* sb = sa + 2 * SA::SIZE;
    Tc tc;
    if (k0 < k1) {
        la.copy(sa, k0, k1);
        lb.copy(sb, k0, k1);
        cp_async_commit();
    }
    int buf = 0;
    for (int kt = k0; kt < k1; kt += TILE_K) {
        if (kt + TILE_K < k1) {
            // The other stage was last read before the previous iteration's closing barrier.
            la.copy(sa + (buf ^ 1) * SA::SIZE, kt + TILE_K, k1);
            lb.copy(sb + (buf ^ 1) * SB::SIZE, kt + TILE_K, k1);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads(); // every thread's copies of this stage have landed
        tc.template slice_raw<SA, SB>(sa + buf * SA::SIZE, sb + buf * SB::SIZE);
        __syncthreads();
        buf ^= 1;
    }
    tc.template to_threads<TM, TN>(sa, acc);
}

// A body shared by an f32 kernel (P = 0) and its tensor-core twins holds a TcTileOr: the
// TcTile of a tensor-core precision, nothing for f32 (its calls sit in discarded
// `if constexpr` branches).
struct TcNone {};
template <int P, int BM, int BN>
struct TcPick {
    using type = TcTile<P, BM, BN>;
};
template <int BM, int BN>
struct TcPick<0, BM, BN> {
    using type = TcNone;
};
template <int P, int BM, int BN>
using TcTileOr = typename TcPick<P, BM, BN>::type;
