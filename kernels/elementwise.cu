// elementwise.cu: pointwise ops on flat f32 buffers of n elements (any layout).
//
//   act_fwd_f32    y = act(x)               act: an ActCode of common.cuh (identity, relu,
//                                           leaky relu with slope, sigmoid); relu propagates
//                                           NaN like PyTorch
//   act_bwd_f32    dx = dy · act'(·), the derivative read off the output y: relu y <= 0 ? 0 : 1
//                  (PyTorch's threshold_backward, so a NaN y passes dy),
//                  leaky relu y > 0 ? 1 : slope, sigmoid y (1 − y)
//   add_f32        y = a + b
//   add_assign_f32 y += x
//   axpy_f32       y += alpha x
//   scale_f32      x *= alpha
//   fill_f32       y = value
//
// v1: one thread per element, grid = ceil(n / blockDim.x).
// v2: grid-stride loop (any grid, e.g. a few blocks per SM), reading and writing float4
//     when every pointer is 16-byte aligned, with a scalar tail; scalar otherwise.
// Both compute each element with the same expression as the CPU backend
// (crates/mep-tensor/src/cpu/ops.rs).
#include "common.cuh"

// y[i] = f(a[i], b[i]) over a grid-stride loop, float4 where aligned (a, b may alias y).
template <class F>
__device__ __forceinline__ void grid_map2(long long n, const float* a, const float* b, float* y, F f) {
    long long i0 = global_index(), step = grid_threads();
    long long head = 0;
    if (aligned16(a) && aligned16(b) && aligned16(y)) {
        long long n4 = n >> 2;
        const float4* a4 = reinterpret_cast<const float4*>(a);
        const float4* b4 = reinterpret_cast<const float4*>(b);
        float4* y4 = reinterpret_cast<float4*>(y);
        for (long long i = i0; i < n4; i += step) {
            float4 u = a4[i], v = b4[i];
            y4[i] = make_float4(f(u.x, v.x), f(u.y, v.y), f(u.z, v.z), f(u.w, v.w));
        }
        head = n4 << 2;
    }
    for (long long i = head + i0; i < n; i += step) y[i] = f(a[i], b[i]);
}

// ---- activations ---------------------------------------------------------------------

extern "C" __global__ void act_fwd_f32_v1(long long n, int act, float slope, const float* __restrict__ x,
                                          float* __restrict__ y) {
    long long i = global_index();
    if (i < n) y[i] = act_apply(act, slope, x[i]);
}

extern "C" __global__ void act_fwd_f32_v2(long long n, int act, float slope, const float* __restrict__ x,
                                          float* __restrict__ y) {
    grid_map2(n, x, x, y, [=](float v, float) { return act_apply(act, slope, v); });
}

extern "C" __global__ void act_bwd_f32_v1(long long n, int act, float slope, const float* __restrict__ y,
                                          const float* __restrict__ dy, float* __restrict__ dx) {
    long long i = global_index();
    if (i < n) dx[i] = act_grad(act, slope, y[i], dy[i]);
}

extern "C" __global__ void act_bwd_f32_v2(long long n, int act, float slope, const float* __restrict__ y,
                                          const float* __restrict__ dy, float* __restrict__ dx) {
    grid_map2(n, y, dy, dx, [=](float yv, float g) { return act_grad(act, slope, yv, g); });
}

// ---- sums ----------------------------------------------------------------------------

extern "C" __global__ void add_f32_v1(long long n, const float* __restrict__ a, const float* __restrict__ b,
                                      float* __restrict__ y) {
    long long i = global_index();
    if (i < n) y[i] = a[i] + b[i];
}

extern "C" __global__ void add_f32_v2(long long n, const float* __restrict__ a, const float* __restrict__ b,
                                      float* __restrict__ y) {
    grid_map2(n, a, b, y, [](float u, float v) { return u + v; });
}

extern "C" __global__ void add_assign_f32_v1(long long n, float* __restrict__ y, const float* __restrict__ x) {
    long long i = global_index();
    if (i < n) y[i] += x[i];
}

extern "C" __global__ void add_assign_f32_v2(long long n, float* y, const float* x) {
    grid_map2(n, y, x, y, [](float u, float v) { return u + v; });
}

extern "C" __global__ void axpy_f32_v1(long long n, float alpha, const float* __restrict__ x,
                                       float* __restrict__ y) {
    long long i = global_index();
    if (i < n) y[i] += alpha * x[i];
}

extern "C" __global__ void axpy_f32_v2(long long n, float alpha, const float* x, float* y) {
    grid_map2(n, y, x, y, [=](float u, float v) { return u + alpha * v; });
}

extern "C" __global__ void scale_f32_v1(long long n, float alpha, float* __restrict__ x) {
    long long i = global_index();
    if (i < n) x[i] *= alpha;
}

extern "C" __global__ void scale_f32_v2(long long n, float alpha, float* x) {
    grid_map2(n, x, x, x, [=](float u, float) { return u * alpha; });
}

extern "C" __global__ void fill_f32_v1(long long n, float value, float* __restrict__ y) {
    long long i = global_index();
    if (i < n) y[i] = value;
}

extern "C" __global__ void fill_f32_v2(long long n, float value, float* y) {
    grid_map2(n, y, y, y, [=](float, float) { return value; });
}
