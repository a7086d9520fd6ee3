// digits.cuh: mixed-radix counters for the conv kernels' index decoding (conv.cu,
// conv_region.cu): decode a flat index once, then advance it by a fixed step with carries
// instead of dividing in the inner loops. Pasted into each family by mep_kernels::sources.
#pragma once

// A position in a mixed-radix counter (hi, mid, lo), lo < nlo and mid < nmid, that advances
// by a fixed step without dividing: decode once, then add with carries.
struct ConvDigits {
    int hi, mid, lo;
};

__device__ __forceinline__ ConvDigits conv_digits(int v, int nmid, int nlo) {
    int hi = v / (nmid * nlo);
    int r = v - hi * nmid * nlo;
    int mid = r / nlo;
    return ConvDigits{hi, mid, r - mid * nlo};
}

// d += step (step's digits in range, so one carry per digit suffices).
__device__ __forceinline__ void conv_advance(ConvDigits& d, const ConvDigits& step, int nmid, int nlo) {
    d.lo += step.lo;
    int carry = d.lo >= nlo;
    if (carry) d.lo -= nlo;
    d.mid += step.mid + carry;
    carry = d.mid >= nmid;
    if (carry) d.mid -= nmid;
    d.hi += step.hi + carry;
}
