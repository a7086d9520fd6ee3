// softmax.cu: row-wise softmax and cross-entropy of logits [n, c] (row-major), targets as
// int class indices (checked by the host to lie in 0..c).
//
//   softmax_xent_f32      probs = softmax(logits) row by row, shifted by the row maximum;
//                         losses[i] = log Σ exp(l − max) − (l[target] − max), the sum in double
//   softmax_xent_bwd_f32  dlogits = scale · (probs − onehot(targets))
//
// softmax_xent v1: one thread per row, three serial passes; grid = ceil(n / blockDim.x).
// softmax_xent v2: one block per row (grid = n), block reductions for the maximum (warp
//                  shuffles, NaN propagating) and the sum (double); blockDim.x a multiple of 32.
// softmax_xent_bwd v1: one thread per element of [n, c].
#include "common.cuh"

extern "C" __global__ void softmax_xent_f32_v1(long long n, int c, const float* __restrict__ logits,
                                               const int* __restrict__ targets, float* __restrict__ probs,
                                               float* __restrict__ losses) {
    long long row = global_index();
    if (row >= n) return;
    const float* l = logits + row * c;
    float* p = probs + row * c;
    float mx = NEG_INF_F;
    for (int j = 0; j < c; ++j) mx = (l[j] > mx || l[j] != l[j]) ? l[j] : mx;
    double sum = 0.0;
    for (int j = 0; j < c; ++j) {
        p[j] = expf(l[j] - mx);
        sum += p[j];
    }
    float inv = (float)(1.0 / sum);
    for (int j = 0; j < c; ++j) p[j] *= inv;
    losses[row] = (float)(log(sum) - (double)(l[targets[row]] - mx));
}

extern "C" __global__ void softmax_xent_f32_v2(long long n, int c, const float* __restrict__ logits,
                                               const int* __restrict__ targets, float* __restrict__ probs,
                                               float* __restrict__ losses) {
    long long row = blockIdx.x;
    if (row >= n) return; // uniform over the block
    const float* l = logits + row * c;
    float* p = probs + row * c;
    float mx = NEG_INF_F;
    for (int j = threadIdx.x; j < c; j += blockDim.x) mx = (l[j] > mx || l[j] != l[j]) ? l[j] : mx;
    mx = block_max(mx);
    double sum = 0.0;
    for (int j = threadIdx.x; j < c; j += blockDim.x) {
        float e = expf(l[j] - mx);
        p[j] = e;
        sum += e;
    }
    sum = block_sum(sum);
    float inv = (float)(1.0 / sum);
    for (int j = threadIdx.x; j < c; j += blockDim.x) p[j] *= inv;
    if (threadIdx.x == 0) losses[row] = (float)(log(sum) - (double)(l[targets[row]] - mx));
}

extern "C" __global__ void softmax_xent_bwd_f32_v1(long long n, int c, const float* __restrict__ probs,
                                                   const int* __restrict__ targets, float scale,
                                                   float* __restrict__ dlogits) {
    long long i = global_index();
    if (i >= n * c) return;
    long long row = i / c;
    int j = (int)(i - row * c);
    dlogits[i] = j == targets[row] ? scale * (probs[i] - 1.0f) : scale * probs[i];
}
