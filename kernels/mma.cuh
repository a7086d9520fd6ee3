// mma.cuh: the tensor-core instructions the TF32 and bf16 kernels use, as device functions:
// inline PTX under NVRTC (sm_80 and newer), cuda_emu.h's warp-level emulation under g++
// (which cannot compile PTX), so that one kernel source runs on both. Pasted into a family by
// mep_kernels::sources as common.cuh is; include it after common.cuh.
//
// The rounding is mep_tensor::precision's rule: TF32 operands by cvt.rna (ties away from
// zero), bf16 operands and bf16 results by round-to-nearest-even; sums in f32.
#pragma once

// A kernel's precision as a template argument, numbered as mep_tensor::Precision.
#define PREC_TF32 1
#define PREC_BF16 2

#if defined(__CUDACC__) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
// mma.sync with TF32 and bf16, and their conversions, need sm_80: an older device compiles
// the family (its fp32 kernels run) but must never launch a tensor-core kernel.
#define MMA_UNSUPPORTED 1
#endif

// x rounded to TF32 (the f32 value with its low 13 bits zero).
__device__ __forceinline__ float round_tf32(float x) {
#if defined(__CUDACC__)
#ifdef MMA_UNSUPPORTED
    __trap();
    return x;
#else
    unsigned int r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return __uint_as_float(r);
#endif
#else
    return __uint_as_float(emu_cvt_rna_tf32(x));
#endif
}

// The 16 bits of x rounded to bf16 (round to nearest even).
__device__ __forceinline__ unsigned short bf16_bits(float x) {
#if defined(__CUDACC__)
#ifdef MMA_UNSUPPORTED
    __trap();
    return 0;
#else
    unsigned short r;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(x));
    return r;
#endif
#else
    return emu_cvt_rn_bf16(x);
#endif
}

// x rounded to bf16, as an f32.
__device__ __forceinline__ float round_bf16(float x) { return __uint_as_float((unsigned int)bf16_bits(x) << 16); }

// An operand value rounded as precision P stages it.
template <int P>
__device__ __forceinline__ float round_operand(float x) {
    return P == PREC_TF32 ? round_tf32(x) : round_bf16(x);
}

// A result as precision P stores it: bf16 results are rounded, TF32 results stay f32.
template <int P>
__device__ __forceinline__ float round_result(float x) {
    return P == PREC_BF16 ? round_bf16(x) : x;
}

// Two values already rounded to bf16 as one register: lo in the low half (the lower k).
__device__ __forceinline__ unsigned int pack_bf16(float lo, float hi) {
    return (__float_as_uint(lo) >> 16) | (__float_as_uint(hi) & 0xffff0000u);
}

// d += A·B over one warp with mma.sync.aligned.m16n8k<K>.row.col.f32.<type>.<type>.f32, K = 8
// for TF32 (one value per register, f32 bits), K = 16 for bf16 (two per register,
// pack_bf16): a and b are the lane's fragments, d its four accumulators (the layouts in
// cuda_emu.h's emu_mma, from the PTX ISA).
#define MMA_SYNC_ASM(shape_types)                                                                        \
    asm volatile("mma.sync.aligned." shape_types " {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};" \
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])                                          \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]))
template <int K>
__device__ __forceinline__ void mma_m16n8(float (&d)[4], const unsigned int (&a)[4], const unsigned int (&b)[2]) {
    static_assert(K == 8 || K == 16, "m16n8k8 (TF32) or m16n8k16 (bf16)");
#if defined(__CUDACC__)
#ifdef MMA_UNSUPPORTED
    __trap();
#else
    if constexpr (K == 8)
        MMA_SYNC_ASM("m16n8k8.row.col.f32.tf32.tf32.f32");
    else
        MMA_SYNC_ASM("m16n8k16.row.col.f32.bf16.bf16.f32");
#endif
#else
    float c[4] = {d[0], d[1], d[2], d[3]};
    emu_mma<K>(d, a, b, c);
#endif
}

__device__ __forceinline__ void mma_tf32_m16n8k8(float (&d)[4], const unsigned int (&a)[4], const unsigned int (&b)[2]) {
    mma_m16n8<8>(d, a, b);
}
__device__ __forceinline__ void mma_bf16_m16n8k16(float (&d)[4], const unsigned int (&a)[4], const unsigned int (&b)[2]) {
    mma_m16n8<16>(d, a, b);
}

// Two f32 values rounded to bf16 (round to nearest even) as one register, lo in the low half:
// pack_bf16(round_bf16(lo), round_bf16(hi)) in one instruction.
__device__ __forceinline__ unsigned int pack_bf16_rn(float lo, float hi) {
#if defined(__CUDACC__)
#ifdef MMA_UNSUPPORTED
    __trap();
    return 0;
#else
    unsigned int r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
#endif
#else
    return (unsigned int)emu_cvt_rn_bf16(lo) | ((unsigned int)emu_cvt_rn_bf16(hi) << 16);
#endif
}

// ---- cp.async (sm_80): global → shared without registers ----------------------------------
//
// cp_async<BYTES>(dst, src, n): copies n ≤ BYTES bytes from global src to shared dst and
// zero-fills the rest of BYTES (n = 0 reads nothing: src need only be a valid address), both
// addresses aligned to BYTES; 16 bytes bypass L1 (.cg), 4 and 8 cache there (.ca, the only
// form those sizes have). A thread's copies land only after cp_async_commit() groups them
// and cp_async_wait<N>() has left at most N of its newer groups in flight; other threads see
// them after a barrier that follows the wait. The emulation completes each copy at once (see
// cuda_emu.h), so only a GPU catches a missing wait.
template <int BYTES>
__device__ __forceinline__ void cp_async(void* dst, const void* src, int n) {
    static_assert(BYTES == 4 || BYTES == 8 || BYTES == 16, "cp.async copies 4, 8 or 16 bytes");
#if defined(__CUDACC__)
#ifdef MMA_UNSUPPORTED
    __trap();
#else
    unsigned int s = (unsigned int)__cvta_generic_to_shared(dst);
    if constexpr (BYTES == 16)
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(src), "r"(n) : "memory");
    else
        asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;" ::"r"(s), "l"(src), "n"(BYTES), "r"(n)
                     : "memory");
#endif
#else
    emu_cp_async(dst, src, BYTES, n);
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDACC__) && !defined(MMA_UNSUPPORTED)
    asm volatile("cp.async.commit_group;" ::: "memory");
#endif
}

// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDACC__) && !defined(MMA_UNSUPPORTED)
    if constexpr (N == 0)
        asm volatile("cp.async.wait_all;" ::: "memory");
    else
        asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
#endif
}
