// reduce.cu: reductions of flat f32 buffers into one f64 accumulator.
//
//   dot_f32     *out += Σ x_i y_i
//   sumsq_f32   *out += Σ x_i²   (the norm is its square root, taken by the host)
//
// Products are formed and summed in double, as the CPU backend does; `*out` must be set
// (usually to 0) before the launch. The order of the atomic additions is not fixed, so
// results agree with the CPU to rounding of double, not bitwise.
//
// v1: one thread per element, one atomicAdd per thread; grid = ceil(n / blockDim.x).
// v2: grid-stride loop with a per-thread double partial, a warp-shuffle then shared-memory
//     block reduction, and one atomicAdd per block; any grid (a few blocks per SM);
//     blockDim.x a multiple of 32.
#include "common.cuh"

extern "C" __global__ void dot_f32_v1(long long n, const float* __restrict__ x, const float* __restrict__ y,
                                      double* __restrict__ out) {
    long long i = global_index();
    if (i < n) atomicAdd(out, (double)x[i] * (double)y[i]);
}

extern "C" __global__ void dot_f32_v2(long long n, const float* __restrict__ x, const float* __restrict__ y,
                                      double* __restrict__ out) {
    double acc = 0.0;
    for (long long i = global_index(), step = grid_threads(); i < n; i += step) acc += (double)x[i] * (double)y[i];
    acc = block_sum(acc);
    if (threadIdx.x == 0) atomicAdd(out, acc);
}

extern "C" __global__ void sumsq_f32_v1(long long n, const float* __restrict__ x, double* __restrict__ out) {
    long long i = global_index();
    if (i < n) {
        double v = x[i];
        atomicAdd(out, v * v);
    }
}

extern "C" __global__ void sumsq_f32_v2(long long n, const float* __restrict__ x, double* __restrict__ out) {
    double acc = 0.0;
    for (long long i = global_index(), step = grid_threads(); i < n; i += step) {
        double v = x[i];
        acc += v * v;
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) atomicAdd(out, acc);
}
