// Host table of kernels/conv.cu for the CPU emulation (see cuda_emu.h).
#include "cuda_emu.h"
#include "../conv.cu"

EMU_TABLE(conv, EMU_KERNEL(conv2d_fwd_f32_v1), EMU_KERNEL(conv2d_bwd_input_f32_v1),
          EMU_KERNEL(conv2d_bwd_weight_f32_v1), EMU_KERNEL(channel_sum_f32_v1), EMU_KERNEL(conv2d_fwd_f32_v2),
          EMU_KERNEL(conv2d_fwd_1x1_f32_v2), EMU_KERNEL(conv2d_bwd_input_f32_v2),
          EMU_KERNEL(conv2d_bwd_input_1x1_f32_v2), EMU_KERNEL(conv2d_bwd_weight_f32_v2),
          EMU_KERNEL(conv2d_bwd_weight_sum_f32_v2), EMU_KERNEL(channel_sum_f32_v2))
