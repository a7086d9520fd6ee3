// neb.cu: the path operations of the nudged elastic band on a path stored as one row-major
// [rows, dim] f32 buffer, a row per pivot; sums in double, as the CPU backend
// (crates/mep-tensor/src/cpu/neb.rs) computes them.
//
//   lerp_rows_f32      dst row r = (1 − t_r) src[a_r] + t_r src[b_r] (in double; t = 0 and t = 1
//                      copy), ab = [a_0, b_0, a_1, b_1, ...]; v1: one thread per element of dst
//   copy_rows_f32      dst[i] = src[i] for i < n (the host offsets both pointers to the first
//                      row); v1: one thread per element
//   row_distances_f32  out[i] = |x[i+1] − x[i]| for i < rows − 1
//                      v1: one thread per pair, a serial loop over dim
//                      v2: one block per pair (grid = rows − 1), block reduction
//   neb_forces_f32     one block per pivot (grid = P); endpoint rows get force 0 and norm 0.
//                      Improved tangent (Henkelman & Jónsson 2000, eqs. 8–11) as a combination
//                      α τ+ + β τ- of τ+ = R[i+1] − R[i], τ- = R[i] − R[i−1]; ties E[i+1] = E[i−1]
//                      take the bisector τ+/|τ+| + τ-/|τ-|; a tangent shorter than
//                      1e-10 (|α||τ+| + |β||τ-|) is zero-length and the bisector, then τ+, then
//                      τ- are tried, else no tangent. Force: −∇E + (∇E·τ̂)τ̂ + k(|τ+| − |τ-|)τ̂
//                      (eq. 12; no spring term when has_spring = 0); the climbing image gets
//                      −∇E + 2(∇E·τ̂)τ̂. norms[i] = |perpendicular true force| (climbing: |whole
//                      force|). v1 only: three block reductions per pivot, the work is O(P D).
//                      e holds the P energies, then the climbing image's index (−1: none).
//   neb_energies_f32   e (as above) from P f32 energies on the device, the climbing image the
//                      highest interior pivot (the first of equal ones) when climb != 0: what
//                      a step captured in a CUDA graph feeds the forces. v1: one thread.
//   neb_plan_f64       the string method's plan (mep-tensor's redistribution_plan, in the same
//                      f64 operations and order) from the segment lengths dist, each side of
//                      the climbing image of the f32 energies on its own when energies != 0;
//                      writes ab and t as lerp_rows_f32 reads them. v1: one thread.
//
// Reductions need blockDim.x a multiple of 32.
#include "common.cuh"

// A tangent shorter than this times |α||τ+| + |β||τ-| is rounding noise (cpu/neb.rs ZERO_TANGENT).
#define NEB_ZERO_TANGENT 1e-10

// The climbing image's index, stored after the P energies (−1: none).
__device__ __forceinline__ long long neb_climbing(const double* e, long long pivots) { return (long long)e[pivots]; }

// The highest interior pivot of f32 energies, the first of equal ones (mep-tensor's climbing_image).
__device__ __forceinline__ long long neb_highest_interior(const float* e, long long pivots) {
    long long best = 1;
    for (long long i = 2; i + 1 < pivots; ++i)
        if ((double)e[i] > (double)e[best]) best = i;
    return best;
}

extern "C" __global__ void neb_energies_f32_v1(long long pivots, const float* __restrict__ e32, int climb,
                                               double* __restrict__ e) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    for (long long i = 0; i < pivots; ++i) e[i] = (double)e32[i];
    e[pivots] = (climb && pivots >= 3) ? (double)neb_highest_interior(e32, pivots) : -1.0;
}

extern "C" __global__ void neb_plan_f64_v1(long long rows, const double* __restrict__ dist,
                                           const float* __restrict__ energies, int* __restrict__ ab,
                                           float* __restrict__ t, double* __restrict__ cum) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    long long p = rows;
    for (long long r = 0; r < p; ++r) {
        ab[2 * r] = (int)r;
        ab[2 * r + 1] = (int)r;
        t[r] = 0.0f;
    }
    cum[0] = 0.0;
    for (long long i = 0; i + 1 < p; ++i) cum[i + 1] = cum[i] + dist[i];
    long long c = (energies != nullptr && p >= 3) ? neb_highest_interior(energies, p) : -1;
    long long parts[2][2] = {{0, p - 1}, {0, 0}};
    int nparts = 1;
    if (c > 0 && c + 1 < p) {
        parts[0][1] = c;
        parts[1][0] = c;
        parts[1][1] = p - 1;
        nparts = 2;
    }
    for (int q = 0; q < nparts; ++q) {
        long long lo = parts[q][0], hi = parts[q][1];
        // __dsub_rn and friends: no contraction into fma, so the host's f64 order is kept.
        double total = __dsub_rn(cum[hi], cum[lo]);
        if (!(total > 0.0)) continue; // NaN or empty, as the host skips them
        long long seg = lo;
        for (long long k = lo + 1; k < hi; ++k) {
            double target = __dadd_rn(cum[lo], __ddiv_rn(__dmul_rn(total, (double)(k - lo)), (double)(hi - lo)));
            while (seg + 1 < hi && cum[seg + 1] <= target) ++seg;
            double tk = 0.0;
            if (dist[seg] > 0.0) tk = fmin(fmax(__ddiv_rn(__dsub_rn(target, cum[seg]), dist[seg]), 0.0), 1.0);
            ab[2 * k] = (int)seg;
            ab[2 * k + 1] = (int)(seg + 1);
            t[k] = (float)tk;
        }
    }
}

extern "C" __global__ void lerp_rows_f32_v1(long long rows, long long dim, const float* __restrict__ src,
                                            const int* __restrict__ ab, const float* __restrict__ t,
                                            float* __restrict__ dst) {
    long long i = global_index();
    if (i >= rows * dim) return;
    long long r = i / dim, j = i - r * dim;
    float tr = t[r];
    float a = src[(long long)ab[2 * r] * dim + j], b = src[(long long)ab[2 * r + 1] * dim + j];
    if (tr == 0.0f) {
        dst[i] = a;
    } else if (tr == 1.0f) {
        dst[i] = b;
    } else {
        double td = tr;
        dst[i] = (float)((1.0 - td) * (double)a + td * (double)b);
    }
}

extern "C" __global__ void copy_rows_f32_v1(long long n, const float* __restrict__ src, float* __restrict__ dst) {
    long long i = global_index();
    if (i < n) dst[i] = src[i];
}

extern "C" __global__ void row_distances_f32_v1(long long rows, long long dim, const float* __restrict__ x,
                                                double* __restrict__ out) {
    long long i = global_index();
    if (i + 1 >= rows) return;
    const float* a = x + i * dim;
    const float* b = a + dim;
    double s = 0.0;
    for (long long j = 0; j < dim; ++j) {
        double d = (double)b[j] - (double)a[j];
        s += d * d;
    }
    out[i] = sqrt(s);
}

extern "C" __global__ void row_distances_f32_v2(long long rows, long long dim, const float* __restrict__ x,
                                                double* __restrict__ out) {
    long long i = blockIdx.x;
    if (i + 1 >= rows) return; // uniform over the block
    const float* a = x + i * dim;
    const float* b = a + dim;
    double s = 0.0;
    for (long long j = threadIdx.x; j < dim; j += blockDim.x) {
        double d = (double)b[j] - (double)a[j];
        s += d * d;
    }
    s = block_sum(s);
    if (threadIdx.x == 0) out[i] = sqrt(s);
}

// Henkelman & Jónsson 2000, eqs. 8–11: the tangent's coefficients (α, β) before normalisation.
__device__ __forceinline__ void tangent_coefficients(double e_prev, double e, double e_next, double np, double nm,
                                                     double& a, double& b) {
    if (e_next > e && e > e_prev) {
        a = 1.0; // eq. 8, monotone up
        b = 0.0;
    } else if (e_next < e && e < e_prev) {
        a = 0.0; // eq. 8, monotone down
        b = 1.0;
    } else if (e_next == e_prev) {
        a = np > 0.0 ? 1.0 / np : 0.0; // bisector
        b = nm > 0.0 ? 1.0 / nm : 0.0;
    } else {
        double dp = fabs(e_next - e), dm = fabs(e_prev - e); // eqs. 9–11
        double dmax = fmax(dp, dm), dmin = fmin(dp, dm);
        a = e_next > e_prev ? dmax : dmin;
        b = e_next > e_prev ? dmin : dmax;
    }
}

// |τ|² and ∇E·τ for τ = a τ+ + b τ-, summed over the block (a, b uniform over the block).
__device__ __forceinline__ void tangent_measure(long long d, const float* prev, const float* cur, const float* next,
                                                const float* grad, double a, double b, double& tt, double& gt) {
    tt = 0.0;
    gt = 0.0;
    if (a == 0.0 && b == 0.0) return;
    for (long long j = threadIdx.x; j < d; j += blockDim.x) {
        double c = cur[j];
        double t = a * ((double)next[j] - c) + b * (c - (double)prev[j]);
        tt += t * t;
        gt += (double)grad[j] * t;
    }
    block_sum2(tt, gt);
}

// Whether τ = a τ+ + b τ- with |τ|² = tt is long enough to be a tangent.
__device__ __forceinline__ bool neb_tangent_ok(double tt, double a, double b, double np, double nm) {
    return sqrt(tt) > NEB_ZERO_TANGENT * (fabs(a) * np + fabs(b) * nm);
}

// The fallbacks where τ is too short, in order: the bisector τ+/|τ+| + τ-/|τ-|, τ+, τ-:
// their coefficients (fa[q], fb[q]).
__device__ __forceinline__ void neb_fallbacks(double np, double nm, double (&fa)[3], double (&fb)[3]) {
    double inp = np > 0.0 ? 1.0 / np : 0.0, inm = nm > 0.0 ? 1.0 / nm : 0.0;
    fa[0] = inp, fa[1] = inp, fa[2] = 0.0;
    fb[0] = inm, fb[1] = 0.0, fb[2] = inm;
}

// The first fallback q long enough (qt[q] = its |τ|², qg[q] its ∇E·τ), else no tangent
// (a = b = tt = gt = 0).
__device__ __forceinline__ void neb_pick_fallback(const double (&fa)[3], const double (&fb)[3], const double (&qt)[3],
                                                  const double (&qg)[3], double np, double nm, double& a, double& b,
                                                  double& tt, double& gt) {
    a = b = tt = gt = 0.0;
    for (int q = 0; q < 3; ++q) {
        if (neb_tangent_ok(qt[q], fa[q], fb[q], np, nm)) {
            a = fa[q];
            b = fb[q];
            tt = qt[q];
            gt = qg[q];
            return;
        }
    }
}

// Scales (a, b) to the unit tangent (to zero when |τ|² = tt is 0); returns ∇E·τ̂ from gt = ∇E·τ.
__device__ __forceinline__ double neb_normalise(double tt, double gt, double& a, double& b) {
    double tn = sqrt(tt);
    if (tn > 0.0) {
        a /= tn;
        b /= tn;
        return gt / tn;
    }
    a = 0.0;
    b = 0.0;
    return 0.0;
}

// Writes f[j] for this thread's j of [j0, j1) (step blockDim.x) from the normalised tangent
// a τ+ + b τ-: −∇E + (∇E·τ̂)τ̂ + spring τ̂, or −∇E + 2(∇E·τ̂)τ̂ on the climbing image; returns
// this thread's part of |perpendicular force|² (climbing: |force|²).
__device__ __forceinline__ double neb_write_forces(long long j0, long long j1, const float* prev, const float* cur,
                                                   const float* next, const float* grad, double a, double b,
                                                   double gtau, double spring, bool climb, float* f) {
    double norm2 = 0.0;
    for (long long j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
        double c = cur[j];
        double th = a * ((double)next[j] - c) + b * (c - (double)prev[j]);
        double gj = grad[j];
        if (climb) {
            double fj = -gj + 2.0 * gtau * th;
            norm2 += fj * fj;
            f[j] = (float)fj;
        } else {
            double perp = -gj + gtau * th;
            norm2 += perp * perp;
            f[j] = (float)(perp + spring * th);
        }
    }
    return norm2;
}

extern "C" __global__ void neb_forces_f32_v1(long long pivots, long long d, const float* __restrict__ x,
                                             const float* __restrict__ g, const double* __restrict__ e,
                                             int has_spring, float k, float* __restrict__ forces,
                                             double* __restrict__ norms) {
    long long i = blockIdx.x;
    float* f = forces + i * d;
    if (i == 0 || i + 1 == pivots) {
        for (long long j = threadIdx.x; j < d; j += blockDim.x) f[j] = 0.0f;
        if (threadIdx.x == 0) norms[i] = 0.0;
        return;
    }
    const float* prev = x + (i - 1) * d;
    const float* cur = x + i * d;
    const float* next = x + (i + 1) * d;
    const float* grad = g + i * d;
    // Pass 1: |τ+|, |τ-|.
    double np2 = 0.0, nm2 = 0.0;
    for (long long j = threadIdx.x; j < d; j += blockDim.x) {
        double c = cur[j], p = (double)next[j] - c, m = c - (double)prev[j];
        np2 += p * p;
        nm2 += m * m;
    }
    block_sum2(np2, nm2);
    double np = sqrt(np2), nm = sqrt(nm2);
    // Pass 2: the tangent, with the fallbacks where it has zero length.
    double a, b, tt, gt;
    tangent_coefficients(e[i - 1], e[i], e[i + 1], np, nm, a, b);
    tangent_measure(d, prev, cur, next, grad, a, b, tt, gt);
    if (!neb_tangent_ok(tt, a, b, np, nm)) {
        double fa[3], fb[3], qt[3], qg[3];
        neb_fallbacks(np, nm, fa, fb);
        for (int q = 0; q < 3; ++q) tangent_measure(d, prev, cur, next, grad, fa[q], fb[q], qt[q], qg[q]);
        neb_pick_fallback(fa, fb, qt, qg, np, nm, a, b, tt, gt);
    }
    double gtau = neb_normalise(tt, gt, a, b); // ∇E·τ̂
    bool climb = neb_climbing(e, pivots) == i;
    // Eq. 12: the spring force along τ̂, k(|τ+| − |τ-|); none for the climbing image.
    double spring = (has_spring && !climb) ? (double)k * (np - nm) : 0.0;
    // Pass 3: the forces.
    double norm2 = neb_write_forces(0, d, prev, cur, next, grad, a, b, gtau, spring, climb, f);
    norm2 = block_sum(norm2);
    if (threadIdx.x == 0) norms[i] = sqrt(norm2);
}

// ---- v2: parallel over D ------------------------------------------------------------------

// This block's part of a pivot's row: [j0, j1).
__device__ __forceinline__ void neb_chunk(long long d, long long chunk, long long& j0, long long& j1) {
    j0 = (long long)blockIdx.x * chunk;
    j1 = j0 + chunk < d ? j0 + chunk : d;
}

// Σ over chunks of part[(i·nchunks + c)·stride + k], in chunk order.
__device__ __forceinline__ double neb_total(const double* part, long long i, int nchunks, int stride, int k) {
    double s = 0.0;
    for (int c = 0; c < nchunks; ++c) s += part[((long long)i * nchunks + c) * stride + k];
    return s;
}

extern "C" __global__ void neb_partials_f32_v2(long long pivots, long long d, long long chunk,
                                               const float* __restrict__ x, double* __restrict__ part) {
    long long i = blockIdx.y;
    long long j0, j1;
    neb_chunk(d, chunk, j0, j1);
    double np2 = 0.0, nm2 = 0.0;
    if (i > 0 && i + 1 < pivots) { // uniform over the block
        const float* prev = x + (i - 1) * d;
        const float* cur = x + i * d;
        const float* next = x + (i + 1) * d;
        for (long long j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
            double c = cur[j], p = (double)next[j] - c, m = c - (double)prev[j];
            np2 += p * p;
            nm2 += m * m;
        }
    }
    block_sum2(np2, nm2);
    if (threadIdx.x == 0) {
        double* out = part + (i * gridDim.x + blockIdx.x) * 2;
        out[0] = np2;
        out[1] = nm2;
    }
}

// |τ+| and |τ-| of pivot i, and the eq. 8–11 coefficients.
__device__ __forceinline__ void neb_coefficients(const double* part1, const double* __restrict__ e, long long i,
                                                 int nchunks, double& np, double& nm, double& a, double& b) {
    np = sqrt(neb_total(part1, i, nchunks, 2, 0));
    nm = sqrt(neb_total(part1, i, nchunks, 2, 1));
    tangent_coefficients(e[i - 1], e[i], e[i + 1], np, nm, a, b);
}

extern "C" __global__ void neb_measure_f32_v2(long long pivots, long long d, long long chunk,
                                              const float* __restrict__ x, const float* __restrict__ g,
                                              const double* __restrict__ e, const double* __restrict__ part1,
                                              double* __restrict__ part2) {
    long long i = blockIdx.y;
    long long j0, j1;
    neb_chunk(d, chunk, j0, j1);
    double tt = 0.0, gt = 0.0, bt = 0.0, bg = 0.0, gp = 0.0, gm = 0.0;
    if (i > 0 && i + 1 < pivots) { // uniform over the block
        double np, nm, a, b;
        neb_coefficients(part1, e, i, gridDim.x, np, nm, a, b);
        double ba = np > 0.0 ? 1.0 / np : 0.0, bb = nm > 0.0 ? 1.0 / nm : 0.0; // the bisector
        const float* prev = x + (i - 1) * d;
        const float* cur = x + i * d;
        const float* next = x + (i + 1) * d;
        const float* grad = g + i * d;
        for (long long j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
            double c = cur[j], p = (double)next[j] - c, m = c - (double)prev[j], gj = grad[j];
            double t = a * p + b * m, u = ba * p + bb * m;
            tt += t * t;
            gt += gj * t;
            bt += u * u;
            bg += gj * u;
            gp += gj * p;
            gm += gj * m;
        }
    }
    block_sum2(tt, gt);
    block_sum2(bt, bg);
    block_sum2(gp, gm);
    if (threadIdx.x == 0) {
        double* out = part2 + (i * gridDim.x + blockIdx.x) * 6;
        out[0] = tt;
        out[1] = gt;
        out[2] = bt;
        out[3] = bg;
        out[4] = gp;
        out[5] = gm;
    }
}

extern "C" __global__ void neb_forces_f32_v2(long long pivots, long long d, long long chunk,
                                             const float* __restrict__ x, const float* __restrict__ g,
                                             const double* __restrict__ e, const double* __restrict__ part1,
                                             const double* __restrict__ part2, int has_spring, float k,
                                             float* __restrict__ forces,
                                             double* __restrict__ part3) {
    long long i = blockIdx.y;
    long long j0, j1;
    neb_chunk(d, chunk, j0, j1);
    float* f = forces + i * d;
    if (i == 0 || i + 1 == pivots) { // uniform over the block
        for (long long j = j0 + threadIdx.x; j < j1; j += blockDim.x) f[j] = 0.0f;
        if (threadIdx.x == 0) part3[i * gridDim.x + blockIdx.x] = 0.0;
        return;
    }
    int nc = gridDim.x;
    double np, nm, a, b;
    neb_coefficients(part1, e, i, nc, np, nm, a, b);
    double tt = neb_total(part2, i, nc, 6, 0), gt = neb_total(part2, i, nc, 6, 1);
    // The fallbacks of v1, in its order: the bisector, τ+, τ-, else no tangent.
    if (!neb_tangent_ok(tt, a, b, np, nm)) {
        double fa[3], fb[3];
        neb_fallbacks(np, nm, fa, fb);
        double gp = neb_total(part2, i, nc, 6, 4), gm = neb_total(part2, i, nc, 6, 5);
        double qt[3] = {neb_total(part2, i, nc, 6, 2), fa[1] * fa[1] * (np * np), fb[2] * fb[2] * (nm * nm)};
        double qg[3] = {neb_total(part2, i, nc, 6, 3), fa[1] * gp, fb[2] * gm};
        neb_pick_fallback(fa, fb, qt, qg, np, nm, a, b, tt, gt);
    }
    double gtau = neb_normalise(tt, gt, a, b);
    bool climb = neb_climbing(e, pivots) == i;
    double spring = (has_spring && !climb) ? (double)k * (np - nm) : 0.0;
    const float* prev = x + (i - 1) * d;
    const float* cur = x + i * d;
    const float* next = x + (i + 1) * d;
    const float* grad = g + i * d;
    double norm2 = neb_write_forces(j0, j1, prev, cur, next, grad, a, b, gtau, spring, climb, f);
    norm2 = block_sum(norm2);
    if (threadIdx.x == 0) part3[i * gridDim.x + blockIdx.x] = norm2;
}

extern "C" __global__ void neb_norms_f32_v2(long long pivots, int nchunks, const double* __restrict__ part3,
                                            double* __restrict__ norms) {
    long long i = global_index();
    if (i < pivots) norms[i] = sqrt(neb_total(part3, i, nchunks, 1, 0));
}
