// Host table of kernels/bn.cu for the CPU emulation (see cuda_emu.h).
#include "cuda_emu.h"
#include "../bn.cu"

EMU_TABLE(bn,
          EMU_KERNEL(batch_norm_infer_f32_v1),
          EMU_KERNEL(batch_norm_infer_f32_v2),
          EMU_KERNEL(batch_norm_infer_bwd_f32_v1),
          EMU_KERNEL(batch_norm_infer_params_f32_v1),
          EMU_KERNEL(batch_norm_infer_bwd_f32_v2),
          EMU_KERNEL(batch_norm_infer_params_f32_v2),
          EMU_KERNEL(batch_norm_train_stats_f32_v1),
          EMU_KERNEL(batch_norm_apply_f32_v1),
          EMU_KERNEL(batch_norm_train_partial_f32_v2),
          EMU_KERNEL(batch_norm_train_apply_f32_v2),
          EMU_KERNEL(batch_norm_train_bwd_sums_f32_v1),
          EMU_KERNEL(batch_norm_train_bwd_dx_f32_v1),
          EMU_KERNEL(batch_norm_grad_partial_f32_v2),
          EMU_KERNEL(batch_norm_train_bwd_f32_v2))
