// Host wrappers of kernels/optim.cu for the CPU emulation (see cuda_emu.h).
#include "cuda_emu.h"
#include "../optim.cu"

#define ADAM_PARAMS                                                                              \
    (long long n, float beta1, float beta2, float c1, float c2, float eps, float step_size,    \
     float bc2_sqrt, float l2, float decay, float* p, const float* g, float* m, float* v)
#define ADAM_ARGS (n, beta1, beta2, c1, c2, eps, step_size, bc2_sqrt, l2, decay, p, g, m, v)
EMU_ENTRY(adam_step_f32_v1, ADAM_PARAMS, ADAM_ARGS)
EMU_ENTRY(adam_step_f32_v2, ADAM_PARAMS, ADAM_ARGS)
#define SGD_PARAMS \
    (long long n, float lr, float mu, float wd, int nesterov, int first, float* p, const float* g, float* buf)
#define SGD_ARGS (n, lr, mu, wd, nesterov, first, p, g, buf)
EMU_ENTRY(sgd_step_f32_v1, SGD_PARAMS, SGD_ARGS)
EMU_ENTRY(sgd_step_f32_v2, SGD_PARAMS, SGD_ARGS)

EMU_TABLE(optim, EMU_KERNEL(adam_step_f32_v1), EMU_KERNEL(adam_step_f32_v2), EMU_KERNEL(sgd_step_f32_v1), EMU_KERNEL(sgd_step_f32_v2))
