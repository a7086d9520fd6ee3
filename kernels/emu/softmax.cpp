// Host wrappers of kernels/softmax.cu for the CPU emulation (see cuda_emu.h).
#include "cuda_emu.h"
#include "../softmax.cu"

#define XENT_PARAMS (long long n, int c, const float* logits, const int* targets, float* probs, float* losses)
#define XENT_ARGS (n, c, logits, targets, probs, losses)
EMU_ENTRY(softmax_xent_f32_v1, XENT_PARAMS, XENT_ARGS)
EMU_ENTRY(softmax_xent_f32_v2, XENT_PARAMS, XENT_ARGS)
EMU_ENTRY(softmax_xent_bwd_f32_v1,
          (long long n, int c, const float* probs, const int* targets, float scale, float* dlogits),
          (n, c, probs, targets, scale, dlogits))

EMU_TABLE(softmax, EMU_KERNEL(softmax_xent_f32_v1), EMU_KERNEL(softmax_xent_f32_v2), EMU_KERNEL(softmax_xent_bwd_f32_v1))
