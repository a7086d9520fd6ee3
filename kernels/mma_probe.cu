// mma_probe.cu: one tensor-core instruction on one warp, D[16×8] = A[16×K]·B[K×8] (+ D's
// input values), so that a test can hold mma.cuh (the emulation on the CPU, the instruction on
// a GPU) against a plain matrix product of the rounded operands. The fragments are loaded
// here, straight from the PTX ISA's tables, apart from the emulation's own reading of them.
//
//   mma_tf32_probe_v1  K = 8, operands rounded with cvt.rna.tf32.f32
//   mma_bf16_probe_v1  K = 16, operands rounded to bf16 (nearest even)
//
// A row-major [16, K], B row-major [K, 8], D row-major [16, 8] (read as C, then written).
// Launch: one block of 32 threads.
#include "common.cuh"
#include "mma.cuh"

// The lane's C/D fragment of D [16, 8]: c0 (g, 2t), c1 (g, 2t + 1), c2 (g + 8, 2t),
// c3 (g + 8, 2t + 1); read into d, or written from it when `store`.
__device__ __forceinline__ void probe_c(float* D, int g, int t, float (&d)[4], bool store) {
    for (int r = 0; r < 4; ++r) {
        float* p = D + (g + 8 * (r >> 1)) * 8 + 2 * t + (r & 1);
        if (store)
            *p = d[r];
        else
            d[r] = *p;
    }
}

extern "C" __global__ void mma_tf32_probe_v1(const float* __restrict__ A, const float* __restrict__ B,
                                             float* __restrict__ D) {
    int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    // a0 (g, t), a1 (g + 8, t), a2 (g, t + 4), a3 (g + 8, t + 4); b0 (t, g), b1 (t + 4, g).
    unsigned int a[4] = {
        __float_as_uint(round_tf32(A[g * 8 + t])),
        __float_as_uint(round_tf32(A[(g + 8) * 8 + t])),
        __float_as_uint(round_tf32(A[g * 8 + t + 4])),
        __float_as_uint(round_tf32(A[(g + 8) * 8 + t + 4])),
    };
    unsigned int b[2] = {__float_as_uint(round_tf32(B[t * 8 + g])), __float_as_uint(round_tf32(B[(t + 4) * 8 + g]))};
    float d[4];
    probe_c(D, g, t, d, false);
    mma_tf32_m16n8k8(d, a, b);
    probe_c(D, g, t, d, true);
}

extern "C" __global__ void mma_bf16_probe_v1(const float* __restrict__ A, const float* __restrict__ B,
                                             float* __restrict__ D) {
    int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    // Two bf16 per register, the lower k in the low half:
    // a0 (g, 2t..), a1 (g + 8, 2t..), a2 (g, 2t + 8..), a3 (g + 8, 2t + 8..);
    // b0 (2t.., g), b1 (2t + 8.., g).
    auto pa = [&](int row, int k) { return pack_bf16(round_bf16(A[row * 16 + k]), round_bf16(A[row * 16 + k + 1])); };
    auto pb = [&](int k) { return pack_bf16(round_bf16(B[k * 8 + g]), round_bf16(B[(k + 1) * 8 + g])); };
    unsigned int a[4] = {pa(g, 2 * t), pa(g + 8, 2 * t), pa(g, 2 * t + 8), pa(g + 8, 2 * t + 8)};
    unsigned int b[2] = {pb(2 * t), pb(2 * t + 8)};
    float d[4];
    probe_c(D, g, t, d, false);
    mma_bf16_m16n8k16(d, a, b);
    probe_c(D, g, t, d, true);
}
