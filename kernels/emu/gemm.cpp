// Host table of kernels/gemm.cu for the CPU emulation (see cuda_emu.h).
#include "cuda_emu.h"
#include "../gemm.cu"

EMU_TABLE(gemm, EMU_KERNEL(linear_f32_v1), EMU_KERNEL(linear_bwd_input_f32_v1), EMU_KERNEL(linear_bwd_weight_f32_v1),
          EMU_KERNEL(col_sum_f32_v1), EMU_KERNEL(gemm_nt_f32_v2), EMU_KERNEL(gemm_nn_f32_v2), EMU_KERNEL(gemm_tn_f32_v2),
          EMU_KERNEL(col_sum_f32_v2))
