// Host table of kernels/pool.cu for the CPU emulation (see cuda_emu.h).
#include "cuda_emu.h"
#include "../pool.cu"

EMU_TABLE(pool,
          EMU_KERNEL(max_pool2d_f32_v1),
          EMU_KERNEL(max_pool2d_f32_v2),
          EMU_KERNEL(max_pool2d_bwd_f32_v1),
          EMU_KERNEL(max_pool2d_argmax_f32_v2),
          EMU_KERNEL(max_pool2d_bwd_f32_v2),
          EMU_KERNEL(global_avg_pool_f32_v1),
          EMU_KERNEL(global_avg_pool_f32_v2),
          EMU_KERNEL(global_avg_pool_bwd_f32_v1),
          EMU_KERNEL(upsample_nearest2x_f32_v1),
          EMU_KERNEL(upsample_nearest2x_bwd_f32_v1),
          EMU_KERNEL(shortcut_pad_f32_v1),
          EMU_KERNEL(shortcut_pad_bwd_f32_v1))
