// Host wrappers of kernels/elementwise.cu for the CPU emulation (see cuda_emu.h).
#include "cuda_emu.h"
#include "../elementwise.cu"

#define ACT_PARAMS (long long n, int act, float slope, const float* x, float* y)
#define ACT_ARGS (n, act, slope, x, y)
EMU_ENTRY(act_fwd_f32_v1, ACT_PARAMS, ACT_ARGS)
EMU_ENTRY(act_fwd_f32_v2, ACT_PARAMS, ACT_ARGS)
#define ACT_BWD_PARAMS (long long n, int act, float slope, const float* y, const float* dy, float* dx)
#define ACT_BWD_ARGS (n, act, slope, y, dy, dx)
EMU_ENTRY(act_bwd_f32_v1, ACT_BWD_PARAMS, ACT_BWD_ARGS)
EMU_ENTRY(act_bwd_f32_v2, ACT_BWD_PARAMS, ACT_BWD_ARGS)
EMU_ENTRY(add_f32_v1, (long long n, const float* a, const float* b, float* y), (n, a, b, y))
EMU_ENTRY(add_f32_v2, (long long n, const float* a, const float* b, float* y), (n, a, b, y))
EMU_ENTRY(add_assign_f32_v1, (long long n, float* y, const float* x), (n, y, x))
EMU_ENTRY(add_assign_f32_v2, (long long n, float* y, const float* x), (n, y, x))
EMU_ENTRY(axpy_f32_v1, (long long n, float alpha, const float* x, float* y), (n, alpha, x, y))
EMU_ENTRY(axpy_f32_v2, (long long n, float alpha, const float* x, float* y), (n, alpha, x, y))
EMU_ENTRY(scale_f32_v1, (long long n, float alpha, float* x), (n, alpha, x))
EMU_ENTRY(scale_f32_v2, (long long n, float alpha, float* x), (n, alpha, x))
EMU_ENTRY(fill_f32_v1, (long long n, float value, float* y), (n, value, y))
EMU_ENTRY(fill_f32_v2, (long long n, float value, float* y), (n, value, y))

EMU_TABLE(elementwise, EMU_KERNEL(act_fwd_f32_v1), EMU_KERNEL(act_fwd_f32_v2), EMU_KERNEL(act_bwd_f32_v1), EMU_KERNEL(act_bwd_f32_v2), EMU_KERNEL(add_f32_v1), EMU_KERNEL(add_f32_v2), EMU_KERNEL(add_assign_f32_v1), EMU_KERNEL(add_assign_f32_v2), EMU_KERNEL(axpy_f32_v1), EMU_KERNEL(axpy_f32_v2), EMU_KERNEL(scale_f32_v1), EMU_KERNEL(scale_f32_v2), EMU_KERNEL(fill_f32_v1), EMU_KERNEL(fill_f32_v2))
