// optim.cu: optimiser steps on flat f32 parameter buffers, PyTorch's single-tensor
// semantics, element for element the CPU backend's (crates/mep-tensor/src/cpu/ops.rs).
//
//   adam_step_f32  torch.optim.Adam / AdamW: p *= decay (AdamW: decay = 1 − lr·wd, else 1);
//                  g += l2·p (Adam with wd ≠ 0: l2 = wd; else skipped); m = β₁m + c₁g; v = β₂v + c₂g²;
//                  p −= step_size · m / (sqrt(v)/bc2_sqrt + eps)
//                  with c₁ = 1−β₁, c₂ = 1−β₂, step_size = lr/(1−β₁ᵗ), bc2_sqrt = sqrt(1−β₂ᵗ)
//                  computed by the host in f64 and rounded once to f32, as PyTorch does.
//   sgd_step_f32   torch.optim.SGD, dampening 0: g += wd·p (when wd ≠ 0); with momentum μ ≠ 0,
//                  buf = g on the first step, else μ·buf + g, then g = nesterov ? g + μ·buf
//                  : buf; p −= lr·g.
//
// v1: one thread per element, grid = ceil(n / blockDim.x).
// v2: grid-stride loop (any grid).
#include "common.cuh"

__device__ __forceinline__ void adam_one(float& p, float g, float& m, float& v, float beta1, float beta2, float c1,
                                         float c2, float eps, float step_size, float bc2_sqrt, float l2,
                                         float decay) {
    float pv = p * decay;
    // Only when Adam's L2 term is on, as PyTorch: 0·∞ would turn an infinite parameter into NaN.
    if (l2 != 0.0f) g = g + l2 * pv;
    float mv = beta1 * m + c1 * g;
    float vv = beta2 * v + c2 * g * g;
    m = mv;
    v = vv;
    p = pv - step_size * (mv / (sqrtf(vv) / bc2_sqrt + eps));
}

__device__ __forceinline__ void sgd_one(float& p, float g, float& b, float lr, float mu, float wd, int nesterov,
                                        int first) {
    if (wd != 0.0f) g = g + wd * p;
    if (mu != 0.0f) {
        float bv = first ? g : mu * b + g;
        b = bv;
        g = nesterov ? g + mu * bv : bv;
    }
    p -= lr * g;
}

extern "C" __global__ void adam_step_f32_v1(long long n, float beta1, float beta2, float c1, float c2, float eps,
                                            float step_size, float bc2_sqrt, float l2, float decay,
                                            float* __restrict__ p, const float* __restrict__ g,
                                            float* __restrict__ m, float* __restrict__ v) {
    long long i = global_index();
    if (i < n) adam_one(p[i], g[i], m[i], v[i], beta1, beta2, c1, c2, eps, step_size, bc2_sqrt, l2, decay);
}

extern "C" __global__ void adam_step_f32_v2(long long n, float beta1, float beta2, float c1, float c2, float eps,
                                            float step_size, float bc2_sqrt, float l2, float decay,
                                            float* __restrict__ p, const float* __restrict__ g,
                                            float* __restrict__ m, float* __restrict__ v) {
    for (long long i = global_index(), step = grid_threads(); i < n; i += step)
        adam_one(p[i], g[i], m[i], v[i], beta1, beta2, c1, c2, eps, step_size, bc2_sqrt, l2, decay);
}

// The bias terms [step_size, bc2_sqrt] read from the device (Optim::adam_step_indirect), so
// that a step captured in a CUDA graph replays with the terms the host wrote before.
extern "C" __global__ void adam_step_indirect_f32_v1(long long n, float beta1, float beta2, float c1, float c2,
                                                     float eps, const float* __restrict__ bias, float l2,
                                                     float decay, float* __restrict__ p,
                                                     const float* __restrict__ g, float* __restrict__ m,
                                                     float* __restrict__ v) {
    long long i = global_index();
    if (i < n) adam_one(p[i], g[i], m[i], v[i], beta1, beta2, c1, c2, eps, bias[0], bias[1], l2, decay);
}

extern "C" __global__ void adam_step_indirect_f32_v2(long long n, float beta1, float beta2, float c1, float c2,
                                                     float eps, const float* __restrict__ bias, float l2,
                                                     float decay, float* __restrict__ p,
                                                     const float* __restrict__ g, float* __restrict__ m,
                                                     float* __restrict__ v) {
    for (long long i = global_index(), step = grid_threads(); i < n; i += step)
        adam_one(p[i], g[i], m[i], v[i], beta1, beta2, c1, c2, eps, bias[0], bias[1], l2, decay);
}

extern "C" __global__ void sgd_step_f32_v1(long long n, float lr, float mu, float wd, int nesterov, int first,
                                           float* __restrict__ p, const float* __restrict__ g,
                                           float* __restrict__ buf) {
    long long i = global_index();
    if (i < n) sgd_one(p[i], g[i], buf[i], lr, mu, wd, nesterov, first);
}

extern "C" __global__ void sgd_step_f32_v2(long long n, float lr, float mu, float wd, int nesterov, int first,
                                           float* __restrict__ p, const float* __restrict__ g,
                                           float* __restrict__ buf) {
    for (long long i = global_index(), step = grid_threads(); i < n; i += step)
        sgd_one(p[i], g[i], buf[i], lr, mu, wd, nesterov, first);
}
