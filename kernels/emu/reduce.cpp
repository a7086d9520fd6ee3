// Host wrappers of kernels/reduce.cu for the CPU emulation (see cuda_emu.h).
#include "cuda_emu.h"
#include "../reduce.cu"

EMU_ENTRY(dot_f32_v1, (long long n, const float* x, const float* y, double* out), (n, x, y, out))
EMU_ENTRY(dot_f32_v2, (long long n, const float* x, const float* y, double* out), (n, x, y, out))
EMU_ENTRY(sumsq_f32_v1, (long long n, const float* x, double* out), (n, x, out))
EMU_ENTRY(sumsq_f32_v2, (long long n, const float* x, double* out), (n, x, out))

EMU_TABLE(reduce, EMU_KERNEL(dot_f32_v1), EMU_KERNEL(dot_f32_v2), EMU_KERNEL(sumsq_f32_v1), EMU_KERNEL(sumsq_f32_v2))
