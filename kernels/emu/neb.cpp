// Host wrappers of kernels/neb.cu for the CPU emulation (see cuda_emu.h).
#include "cuda_emu.h"
#include "../neb.cu"

EMU_ENTRY(lerp_rows_f32_v1,
          (long long rows, long long dim, const float* src, const int* ab, const float* t, float* dst),
          (rows, dim, src, ab, t, dst))
EMU_ENTRY(copy_rows_f32_v1, (long long n, const float* src, float* dst), (n, src, dst))
EMU_ENTRY(row_distances_f32_v1, (long long rows, long long dim, const float* x, double* out), (rows, dim, x, out))
EMU_ENTRY(row_distances_f32_v2, (long long rows, long long dim, const float* x, double* out), (rows, dim, x, out))
EMU_ENTRY(neb_forces_f32_v1,
          (long long pivots, long long d, const float* x, const float* g, const double* e, int has_spring, float k,
           int climbing, float* forces, double* norms),
          (pivots, d, x, g, e, has_spring, k, climbing, forces, norms))

EMU_TABLE(neb, EMU_KERNEL(lerp_rows_f32_v1), EMU_KERNEL(copy_rows_f32_v1), EMU_KERNEL(row_distances_f32_v1), EMU_KERNEL(row_distances_f32_v2), EMU_KERNEL(neb_forces_f32_v1))
