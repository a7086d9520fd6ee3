// common.cuh: device helpers shared by the kernel families (indices, alignment tests, warp
// and block reductions, the activations). Included by each .cu; real CUDA C++ that NVRTC compiles.
//
// Block reductions assume blockDim.x is a multiple of 32 (at most 1024) and that every
// thread of the block calls them; they sum the warps' partials in warp order, so a result
// does not depend on thread scheduling.
#pragma once

#define FULL_MASK 0xffffffffu

// −∞ as f32 (NVRTC has no <math.h> and so no INFINITY).
#define NEG_INF_F (__int_as_float(0xff800000))

// Global index of this thread in a 1-D grid.
__device__ __forceinline__ long long global_index() {
    return (long long)blockIdx.x * blockDim.x + threadIdx.x;
}

// Number of threads in a 1-D grid (the step of a grid-stride loop).
__device__ __forceinline__ long long grid_threads() {
    return (long long)gridDim.x * blockDim.x;
}

// Whether a pointer may be read as float4.
__device__ __forceinline__ bool aligned16(const void* p) {
    return ((unsigned long long)p & 15ull) == 0;
}

// Sum over the 32 lanes of a warp; every lane gets the result.
template <class T>
__device__ __forceinline__ T warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

// Maximum over the 32 lanes of a warp; every lane gets the result. NaN propagates.
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) {
        float u = __shfl_xor_sync(FULL_MASK, v, o);
        v = (u > v || u != u) ? u : v;
    }
    return v;
}

// Sums of two values over the block; every thread gets both (fixed warp order).
__device__ __forceinline__ void block_sum2(double& a, double& b) {
    __shared__ double sa[32];
    __shared__ double sb[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    a = warp_sum(a);
    b = warp_sum(b);
    if (lane == 0) {
        sa[warp] = a;
        sb[warp] = b;
    }
    __syncthreads();
    a = 0.0;
    b = 0.0;
    for (int w = 0; w < nwarps; ++w) {
        a += sa[w];
        b += sb[w];
    }
    __syncthreads(); // the slots may be reused by the next call
}

// Sum of one value over the block; every thread gets it.
__device__ __forceinline__ double block_sum(double a) {
    double b = 0.0;
    block_sum2(a, b);
    return a;
}

// Maximum over the block; every thread gets it. NaN propagates.
__device__ __forceinline__ float block_max(float v) {
    __shared__ float sm[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_max(v);
    if (lane == 0) sm[warp] = v;
    __syncthreads();
    v = sm[0];
    for (int w = 1; w < nwarps; ++w) v = (sm[w] > v || sm[w] != sm[w]) ? sm[w] : v;
    __syncthreads();
    return v;
}

// The activations of the kernels' `int act, float slope` parameters (elementwise.cu's
// act_fwd/act_bwd and the fused ones of conv.cu and batch_norm.cu), as the host encodes them
// (crates/mep-kernels/src/ops/elementwise.rs, act_args); slope is leaky relu's.
enum ActCode { ACT_IDENTITY = 0, ACT_RELU = 1, ACT_LEAKY_RELU = 2, ACT_SIGMOID = 3 };

// act(v), the CPU backend's expressions; relu propagates NaN like PyTorch.
__device__ __forceinline__ float act_apply(int act, float slope, float v) {
    switch (act) {
    case ACT_RELU: return v < 0.0f ? 0.0f : v;
    case ACT_LEAKY_RELU: return v > 0.0f ? v : slope * v;
    case ACT_SIGMOID: return 1.0f / (1.0f + expf(-v));
    default: return v;
    }
}

// g · act'(·), the derivative read off the output y.
__device__ __forceinline__ float act_grad(int act, float slope, float y, float g) {
    switch (act) {
    case ACT_RELU: return y <= 0.0f ? 0.0f : g; // PyTorch's threshold_backward: NaN passes dy
    case ACT_LEAKY_RELU: return y > 0.0f ? g : slope * g;
    case ACT_SIGMOID: return g * y * (1.0f - y);
    default: return g;
    }
}
