// cuda_emu.h: the CUDA execution model on the CPU, for the subset of CUDA C++ that
// kernels/*.cu use, so that the same .cu source runs under `cargo test` without a GPU
// (crates/mep-kernels-emu's build.rs generates one translation unit per kernels/<family>.cu
// that includes this header, the .cu and the EMU_TABLE of its kernels, and compiles it with
// g++ -std=c++20).
//
// What it emulates:
// - `__global__`, `__device__`, `__host__`, `__forceinline__`, `__launch_bounds__(...)`
//   (no-ops or `inline`), `__restrict__` (g++ has it).
// - `threadIdx`, `blockIdx`, `blockDim`, `gridDim`: thread-local `dim3`s.
// - A launch (`emu_launch(grid, block, kernel, args...)`) runs the blocks one at a time, in
//   order x, then y, then z; the threads of a block are fibers on the launching OS thread
//   (see the harness below), switched at barriers and shuffles (one set of
//   blockDim threads per launch, reused for every block). Launches are serialised by a
//   global mutex, so `__shared__` can be `static`: one block owns it at a time.
// - `__syncthreads()`: a barrier over the block's threads. A thread that has returned from
//   the kernel no longer counts (as on sm_70+ hardware in practice; CUDA calls it undefined).
// - Warps of 32 lanes by linear thread index; `__shfl_sync`, `__shfl_down_sync`,
//   `__shfl_xor_sync` (any `width` that is a power of two ≤ 32) exchange 1-, 4- or 8-byte
//   values through per-warp slots between two warp barriers; `__syncwarp()`. A source lane
//   outside the warp's group, or past the last thread of a partial warp, gives the caller's
//   own value. Every lane of the warp must take part (full masks only).
// - `atomicAdd` on float, double, int, unsigned, unsigned long long (std::atomic_ref).
// - Math: expf, logf, sqrtf, fabsf, fmaxf, fminf, powf from <cmath>; rsqrtf, __expf, __logf,
//   __fdividef, __frcp_rn as their precise counterparts; __dadd_rn, __dsub_rn, __dmul_rn,
//   __ddiv_rn (never contracted); `min`/`max` on int, unsigned,
//   long long; `__int_as_float`, `__float_as_int`; `float4`/`make_float4`, `__ldg`.
//
// - Tensor cores (kernels/mma.cuh calls these where NVRTC gets inline PTX): `mma.sync.aligned`
//   m16n8k8 TF32 and m16n8k16 bf16 with f32 accumulators, as warp-wide operations on the
//   per-lane fragments of the PTX ISA (every lane of a full warp must take part), and the
//   operand conversions `cvt.rna.tf32.f32` and `cvt.rn.bf16.f32`, bit-exact
//   (mep_tensor::precision's round_tf32 and round_bf16).
// - Asynchronous copies (kernels/mma.cuh calls these where NVRTC gets inline PTX):
//   `cp.async.{ca,cg}.shared.global` of 4, 8 or 16 bytes with the src-size operand (the bytes
//   past src-size are zero-filled), `cp.async.commit_group`, `cp.async.wait_group N` and
//   `cp.async.wait_all`. Each copy completes at once and the group operations do nothing, so
//   the emulation cannot catch a missing wait (or a wait for too few groups) or a read of a
//   stage that a copy in flight still writes: on a GPU those are races, here they are not.
//   It does check what PTX requires of the operands: the size, src-size ≤ size, and both
//   addresses aligned to the size.
//
// What it does not emulate (a kernel using any of these needs a SIMT twin that the harness
// runs): `wmma`, other inline PTX, dynamic shared memory
// (`extern __shared__`), cooperative groups, streams and events, independent thread
// scheduling inside a warp (lanes only meet at shuffles and barriers), fast-math rounding
// (`__expf` here is as precise as `expf`), FMA contraction (g++ without -march does not
// contract; NVRTC does by default, so GPU results may differ by an ulp).
#pragma once
// x86-64 switches with a few instructions of its own; elsewhere (or with EMU_UCONTEXT, so
// that the portable path can be tested on x86-64) through ucontext's swapcontext.
#if defined(__x86_64__) && !defined(EMU_UCONTEXT)
#define EMU_FIBER_ASM 1
#else
#define EMU_FIBER_ASM 0
#endif


#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#if !EMU_FIBER_ASM
#include <ucontext.h>
#endif
#include <type_traits>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
using uint3 = dim3;

inline thread_local dim3 threadIdx;
inline thread_local dim3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

struct alignas(16) float4 {
    float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

template <class T>
inline T __ldg(const T* p) { return *p; }

inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}
inline int __float_as_int(float f) {
    int i;
    std::memcpy(&i, &f, 4);
    return i;
}
inline float __uint_as_float(unsigned int u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline unsigned int __float_as_uint(float f) {
    unsigned int u;
    std::memcpy(&u, &f, 4);
    return u;
}
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned int min(unsigned int a, unsigned int b) { return a < b ? a : b; }
inline unsigned int max(unsigned int a, unsigned int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }

// ---- the harness ----------------------------------------------------------------------
//
// The threads of a block are fibers: user-space contexts on the launching OS thread, switched
// cooperatively where CUDA threads wait for each other (barriers, shuffles). A barrier then
// costs two context switches per thread (tens of nanoseconds each) instead of a futex wake-up
// of an OS thread, which on a 2-core machine made the emulated kernel tests spend most of
// their time in the operating system's scheduler (10 of 13 CPU-minutes were system time).

/// One emulated thread: its stack and what CUDA lets it read about itself.
struct EmuFiber {
#if EMU_FIBER_ASM
    void* sp = nullptr; // saved stack pointer while switched out
#else
    ucontext_t ctx;
#endif
    unsigned char* stack = nullptr;
    dim3 tid, bid;
    int lane = 0, warp = 0;
    bool done = false;
};

struct EmuBlock;
inline thread_local EmuBlock* emu_block = nullptr;
inline thread_local int emu_lane = 0;
inline thread_local int emu_warp = 0;

/// The launch in progress (launches are serialised): its fibers and the scheduler's context.
struct EmuSched {
    std::vector<EmuFiber>* fibers = nullptr;
    int current = -1;
#if EMU_FIBER_ASM
    void* sp = nullptr;
#else
    ucontext_t ctx;
#endif
    /// Bumped whenever a thread arrives at a barrier or finishes: a scheduler round without
    /// it means every live thread waits for a barrier that can never fill.
    unsigned long long progress = 0;
    /// Runs thread t's whole launch (every block).
    void (*body)(void* launch, int t) = nullptr;
    void* launch = nullptr;
};
inline EmuSched* emu_sched = nullptr;

#if EMU_FIBER_ASM
// Saves the callee-saved registers, MXCSR and the x87 control word on the current stack,
// stores the stack pointer in *save, switches to `to` and restores the same from there (the
// System V x86-64 ABI: everything else is caller-saved).
__attribute__((naked, noinline)) inline void emu_switch(void** /*save*/, void* /*to*/) {
    __asm__ volatile(
        "pushq %rbp\n\t"
        "pushq %rbx\n\t"
        "pushq %r12\n\t"
        "pushq %r13\n\t"
        "pushq %r14\n\t"
        "pushq %r15\n\t"
        "subq $8, %rsp\n\t"
        "stmxcsr (%rsp)\n\t"
        "fnstcw 4(%rsp)\n\t"
        "movq %rsp, (%rdi)\n\t"
        "movq %rsi, %rsp\n\t"
        "ldmxcsr (%rsp)\n\t"
        "fldcw 4(%rsp)\n\t"
        "addq $8, %rsp\n\t"
        "popq %r15\n\t"
        "popq %r14\n\t"
        "popq %r13\n\t"
        "popq %r12\n\t"
        "popq %rbx\n\t"
        "popq %rbp\n\t"
        "ret\n\t");
}
#endif

/// Back to the scheduler, until it resumes this thread.
inline void emu_yield() {
    EmuSched& s = *emu_sched;
    EmuFiber& f = (*s.fibers)[s.current];
    f.bid = blockIdx;
    __asm__ volatile("" ::: "memory");
#if EMU_FIBER_ASM
    emu_switch(&f.sp, s.sp);
#else
    swapcontext(&f.ctx, &s.ctx);
#endif
    __asm__ volatile("" ::: "memory");
}

inline void emu_progress() { ++emu_sched->progress; }

/// A fiber's first frame: runs its thread's launch, then hands back to the scheduler for good.
[[noreturn]] inline void emu_fiber_start() {
    EmuSched& s = *emu_sched;
    int t = s.current;
    s.body(s.launch, t);
    (*s.fibers)[t].done = true;
    emu_progress();
    for (;;) emu_yield(); // never resumed once done
}

#if !EMU_FIBER_ASM
inline void emu_fiber_start_c() { emu_fiber_start(); }
#endif

/// Bytes of stack per emulated thread: kernels keep register tiles of at most a few hundred
/// floats; pages never touched cost nothing.
inline constexpr std::size_t EMU_STACK = 256 * 1024;

/// Stacks reused across launches (launches are serialised, so one pool serves them all).
inline std::vector<std::unique_ptr<unsigned char[]>> emu_stacks;

/// Points `f` at a fresh start of emu_fiber_start on its stack.
inline void emu_fiber_init(EmuFiber& f) {
#if EMU_FIBER_ASM
    // The first switch pops the saved registers and "returns" into emu_fiber_start with the
    // stack as a call would leave it (rsp ≡ 8 mod 16).
    auto top = reinterpret_cast<std::uintptr_t>(f.stack + EMU_STACK) & ~std::uintptr_t(15);
    auto* w = reinterpret_cast<std::uint64_t*>(top - 72);
    std::uint32_t csr[2] = {0x1F80u, 0x037Fu}; // MXCSR and x87 control word at reset
    std::memcpy(&w[0], csr, 8);
    for (int i = 1; i <= 6; ++i) w[i] = 0;
    w[7] = reinterpret_cast<std::uint64_t>(&emu_fiber_start);
    w[8] = 0; // emu_fiber_start never returns
    f.sp = w;
#else
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack;
    f.ctx.uc_stack.ss_size = EMU_STACK;
    f.ctx.uc_link = nullptr;
    makecontext(&f.ctx, emu_fiber_start_c, 0);
#endif
}

/// Runs thread `i` until it waits or finishes.
inline void emu_resume(EmuSched& s, int i) {
    EmuFiber& f = (*s.fibers)[i];
    s.current = i;
    threadIdx = f.tid;
    blockIdx = f.bid;
    emu_lane = f.lane;
    emu_warp = f.warp;
    __asm__ volatile("" ::: "memory");
#if EMU_FIBER_ASM
    emu_switch(&s.sp, f.sp);
#else
    swapcontext(&s.ctx, &f.ctx);
#endif
    __asm__ volatile("" ::: "memory");
}

/// A reusable barrier over `expected` threads; a thread that leaves (`drop`) stops counting.
/// Waiting is yielding to the scheduler until the barrier's generation changes.
class EmuBarrier {
  public:
    void reset(int expected) {
        expected_ = expected;
        arrived_ = 0;
    }
    void arrive_and_wait() {
        unsigned long long gen = gen_;
        emu_progress();
        if (++arrived_ >= expected_) {
            release();
            return;
        }
        while (gen_ == gen) emu_yield();
    }
    void drop() {
        --expected_;
        emu_progress();
        if (arrived_ > 0 && arrived_ >= expected_) release();
    }

  private:
    void release() {
        arrived_ = 0;
        ++gen_;
    }
    int expected_ = 0, arrived_ = 0;
    unsigned long long gen_ = 0;
};

struct EmuWarp {
    EmuBarrier bar;
    unsigned long long slot[32];
    // Each lane's A and B fragment registers during an mma (see emu_mma).
    std::uint32_t frag_a[32][4], frag_b[32][2];
    int lanes = 32;
};

struct EmuBlock {
    EmuBarrier sync;
    std::vector<std::unique_ptr<EmuWarp>> warps;
};


inline void __syncthreads() { emu_block->sync.arrive_and_wait(); }
inline void __syncwarp(unsigned int = 0xffffffffu) { emu_block->warps[emu_warp]->bar.arrive_and_wait(); }

/// Every lane publishes `v`; returns lane `src`'s value (own value when `src` < 0 or past
/// the warp's last thread).
template <class T>
inline T emu_shfl(T v, int src) {
    static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
    EmuWarp& w = *emu_block->warps[emu_warp];
    std::memcpy(&w.slot[emu_lane], &v, sizeof(T));
    w.bar.arrive_and_wait();
    T r = v;
    if (src >= 0 && src < w.lanes) std::memcpy(&r, &w.slot[src], sizeof(T));
    w.bar.arrive_and_wait();
    return r;
}

template <class T>
inline T __shfl_sync(unsigned int, T v, int src_lane, int width = 32) {
    return emu_shfl(v, (emu_lane / width) * width + (src_lane % width));
}

template <class T>
inline T __shfl_down_sync(unsigned int, T v, unsigned int delta, int width = 32) {
    int in_group = emu_lane % width;
    return emu_shfl(v, in_group + (int)delta < width ? emu_lane + (int)delta : -1);
}

template <class T>
inline T __shfl_xor_sync(unsigned int, T v, int lane_mask, int width = 32) {
    int src = emu_lane ^ lane_mask;
    return emu_shfl(v, src / width == emu_lane / width ? src : -1);
}

// ---- tensor cores ------------------------------------------------------------------------
//
// The operand conversions, bit for bit as PTX defines them (and as mep_tensor::precision
// rounds on the CPU), and the warp-wide mma.sync: every lane publishes its fragment
// registers, the warp meets, each lane rebuilds A and B from all 32 fragments by the ISA's
// layout and computes its own four outputs, and the warp meets again before the slots are
// reused.

/// `cvt.rna.tf32.f32`: the nearest value with a 10-bit mantissa, ties away from zero, low 13
/// bits zero; NaN and ±∞ unchanged, a finite value rounding past the largest becomes ±∞.
inline std::uint32_t emu_cvt_rna_tf32(float x) {
    std::uint32_t b = __float_as_uint(x);
    if ((b & 0x7f800000u) == 0x7f800000u) return b; // NaN, ±∞
    return (b + 0x1000u) & ~0x1fffu;
}

/// `cvt.rn.bf16.f32`: round to nearest even; NaN stays a quiet NaN. Returns the 16 bits.
inline std::uint16_t emu_cvt_rn_bf16(float x) {
    std::uint32_t b = __float_as_uint(x);
    if ((b & 0x7fffffffu) > 0x7f800000u) return (std::uint16_t)((b | 0x00400000u) >> 16);
    return (std::uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

/// The f32 value of the low (`hi` false) or high half of a register of two bf16.
inline float emu_bf16_half(std::uint32_t r, bool hi) { return __uint_as_float(hi ? (r & 0xffff0000u) : (r << 16)); }

/// d = A·B + c for one warp. K = 8 (TF32: A[16×8] in a[4], B[8×8] in b[2], one element per
/// register, the low 13 bits ignored as the tensor core ignores them) or K = 16 (bf16: two
/// elements per register, the lower index in the low half). groupID g = lane / 4 and
/// threadID_in_group t = lane % 4 place them (PTX ISA, "Matrix Fragments for mma.m16n8k8"
/// and "... mma.m16n8k16 with floating point type"):
///   TF32 A: a0 (g, t), a1 (g + 8, t), a2 (g, t + 4), a3 (g + 8, t + 4)      (row, k)
///   TF32 B: b0 (t, g), b1 (t + 4, g)                                         (k, col)
///   bf16 A: a0 (g, 2t..2t+1), a1 (g + 8, 2t..), a2 (g, 2t+8..), a3 (g + 8, 2t+8..)
///   bf16 B: b0 (2t..2t+1, g), b1 (2t+8..2t+9, g)
///   C, D:   c0 (g, 2t), c1 (g, 2t + 1), c2 (g + 8, 2t), c3 (g + 8, 2t + 1)
/// Products of the rounded operands are exact in f32; they are added to c in k order in f32.
template <int K>
inline void emu_mma(float (&d)[4], const std::uint32_t (&a)[4], const std::uint32_t (&b)[2], const float (&c)[4]) {
    static_assert(K == 8 || K == 16, "m16n8k8 (tf32) or m16n8k16 (bf16)");
    EmuWarp& w = *emu_block->warps[emu_warp];
    for (int i = 0; i < 4; ++i) w.frag_a[emu_lane][i] = a[i];
    for (int i = 0; i < 2; ++i) w.frag_b[emu_lane][i] = b[i];
    w.bar.arrive_and_wait();
    float A[16][K], B[K][8];
    for (int lane = 0; lane < 32; ++lane) {
        int g = lane >> 2, t = lane & 3;
        const std::uint32_t* fa = w.frag_a[lane];
        const std::uint32_t* fb = w.frag_b[lane];
        if constexpr (K == 8) {
            auto tf = [](std::uint32_t r) { return __uint_as_float(r & ~0x1fffu); };
            A[g][t] = tf(fa[0]), A[g + 8][t] = tf(fa[1]), A[g][t + 4] = tf(fa[2]), A[g + 8][t + 4] = tf(fa[3]);
            B[t][g] = tf(fb[0]), B[t + 4][g] = tf(fb[1]);
        } else {
            for (int h = 0; h < 2; ++h) {
                A[g][2 * t + h] = emu_bf16_half(fa[0], h);
                A[g + 8][2 * t + h] = emu_bf16_half(fa[1], h);
                A[g][2 * t + 8 + h] = emu_bf16_half(fa[2], h);
                A[g + 8][2 * t + 8 + h] = emu_bf16_half(fa[3], h);
                B[2 * t + h][g] = emu_bf16_half(fb[0], h);
                B[2 * t + 8 + h][g] = emu_bf16_half(fb[1], h);
            }
        }
    }
    int g = emu_lane >> 2, t = emu_lane & 3;
    for (int r = 0; r < 4; ++r) {
        int row = g + 8 * (r >> 1), col = 2 * t + (r & 1);
        float acc = c[r];
        for (int k = 0; k < K; ++k) acc += A[row][k] * B[k][col];
        d[r] = acc;
    }
    w.bar.arrive_and_wait();
}

// ---- asynchronous copies ----------------------------------------------------------------

/// `cp.async.{ca,cg}.shared.global [dst], [src], size, src_size`, completed at once: the first
/// src_size bytes from src, zeros for the rest (src is not read when src_size is 0). An
/// operand PTX leaves undefined stops the process, as a GPU's misaligned access would.
inline void emu_cp_async(void* dst, const void* src, int size, int src_size) {
    bool aligned = reinterpret_cast<std::uintptr_t>(dst) % size == 0 &&
                   (src_size == 0 || reinterpret_cast<std::uintptr_t>(src) % size == 0);
    if ((size != 4 && size != 8 && size != 16) || src_size < 0 || src_size > size || !aligned) {
        std::fprintf(stderr, "cp.async: size %d, src-size %d, dst %p, src %p: PTX needs size 4, 8 or 16, "
                     "src-size <= size and both addresses aligned to size\n", size, src_size, dst, src);
        std::abort();
    }
    if (src_size > 0) std::memcpy(dst, src, (std::size_t)src_size);
    std::memset(static_cast<unsigned char*>(dst) + src_size, 0, (std::size_t)(size - src_size));
}

template <class T>
inline T atomicAdd(T* address, T val) {
    return std::atomic_ref<T>(*address).fetch_add(val);
}

/// Serialises launches, so that `static` shared memory belongs to one block at a time.
inline std::mutex emu_launch_mutex;

/// Error codes of `emu_launch`, returned through the C wrappers.
enum EmuStatus : int {
    EMU_OK = 0,
    EMU_BAD_GRID = 1,   // a grid dimension is 0 or above CUDA's limits
    EMU_BAD_BLOCK = 2,  // a block dimension is 0 or the block has more than 1024 threads
    EMU_NO_THREADS = 3, // no memory for the block's thread stacks
    EMU_DEADLOCK = 4,   // every live thread waits at a barrier the others never reach
};

/// What one launch's threads share.
template <class F>
struct EmuLaunch {
    dim3 grid, block;
    int n;
    EmuBlock ctx;
    F kernel_call;
    // Block start: every thread has finished the previous block; the last one to arrive
    // re-arms the in-kernel barriers for the new block.
    int start_arrived = 0;
    unsigned long long start_gen = 0;

    void block_start() {
        unsigned long long gen = start_gen;
        emu_progress();
        if (++start_arrived == n) {
            start_arrived = 0;
            ctx.sync.reset(n);
            for (auto& w : ctx.warps) w->bar.reset(w->lanes);
            ++start_gen;
        } else {
            while (start_gen == gen) emu_yield();
        }
    }

    static void body(void* self, int /*t: its ids are set by emu_resume*/) {
        auto& l = *static_cast<EmuLaunch*>(self);
        emu_block = &l.ctx;
        for (unsigned int bz = 0; bz < l.grid.z; ++bz)
            for (unsigned int by = 0; by < l.grid.y; ++by)
                for (unsigned int bx = 0; bx < l.grid.x; ++bx) {
                    blockIdx = dim3(bx, by, bz);
                    l.block_start();
                    l.kernel_call();
                    l.ctx.sync.drop();
                    l.ctx.warps[emu_warp]->bar.drop();
                }
    }
};

/// Runs `kernel(args...)` on every block of `grid`, each with `block` threads.
template <class... KArgs, class... Args>
inline int emu_launch(dim3 grid, dim3 block, void (*kernel)(KArgs...), Args... args) {
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535) return EMU_BAD_GRID;
    if (block.x == 0 || block.y == 0 || block.z == 0 || block.z > 64) return EMU_BAD_BLOCK;
    unsigned long long nthreads = (unsigned long long)block.x * block.y * block.z;
    if (nthreads > 1024) return EMU_BAD_BLOCK;
    int n = (int)nthreads;
    std::lock_guard<std::mutex> launch_lock(emu_launch_mutex);
    auto call = [&] { kernel(args...); };
    EmuLaunch<decltype(call)> launch{grid, block, n, EmuBlock{}, call};
    int nwarps = (n + 31) / 32;
    for (int w = 0; w < nwarps; ++w) {
        launch.ctx.warps.push_back(std::make_unique<EmuWarp>());
        launch.ctx.warps.back()->lanes = (w + 1 < nwarps || n % 32 == 0) ? 32 : n % 32;
    }
    try {
        while ((int)emu_stacks.size() < n) emu_stacks.emplace_back(new unsigned char[EMU_STACK]);
    } catch (...) {
        return EMU_NO_THREADS;
    }
    std::vector<EmuFiber> fibers(n);
    for (int t = 0; t < n; ++t) {
        EmuFiber& f = fibers[t];
        f.stack = emu_stacks[t].get();
        f.tid = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
        f.lane = t % 32;
        f.warp = t / 32;
        emu_fiber_init(f);
    }
    EmuSched sched;
    sched.fibers = &fibers;
    sched.body = &decltype(launch)::body;
    sched.launch = &launch;
    EmuSched* outer = emu_sched;
    emu_sched = &sched;
    blockDim = block;
    gridDim = grid;
    int status = EMU_OK;
    for (int live = n; live > 0;) {
        unsigned long long before = sched.progress;
        for (int t = 0; t < n; ++t) {
            if (fibers[t].done) continue;
            emu_resume(sched, t);
            live -= fibers[t].done;
        }
        if (live > 0 && sched.progress == before) {
            // The waiting threads are abandoned; their stacks are reset by the next launch.
            status = EMU_DEADLOCK;
            break;
        }
    }
    emu_sched = outer;
    emu_block = nullptr;
    return status;
}

// ---- the packed entry points ------------------------------------------------------------
//
// `EMU_TABLE(family, EMU_KERNEL(k1), EMU_KERNEL(k2), ...)` defines
// `extern "C" const EmuKernelEntry* emu_table_<family>(int* n)`: the family's kernels by name,
// each launched with CUDA's own calling convention (cuLaunchKernel's kernelParams: an array of
// pointers to each argument's value), so that the Rust side (mep-kernels-emu's EmuLauncher)
// drives the emulation exactly as mep-cuda drives a GPU.

struct EmuKernelEntry {
    const char* name;
    int (*launch)(unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx, unsigned int by,
                  unsigned int bz, void** params);
};

template <class... A, std::size_t... I>
inline int emu_packed_impl(dim3 g, dim3 b, void (*k)(A...), void** p, std::index_sequence<I...>) {
    return emu_launch(g, b, k, *static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(p[I])...);
}

/// Launches `k` with the arguments `*params[i]`, each read as the kernel's parameter type.
template <class... A>
inline int emu_packed(dim3 g, dim3 b, void (*k)(A...), void** params) {
    return emu_packed_impl(g, b, k, params, std::index_sequence_for<A...>{});
}

#define EMU_KERNEL(name)                                                                                    \
    EmuKernelEntry {                                                                                        \
        #name, [](unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx, unsigned int by,      \
                  unsigned int bz, void** p) -> int {                                                       \
            return emu_packed(dim3(gx, gy, gz), dim3(bx, by, bz), name, p);                                \
        }                                                                                                   \
    }

#define EMU_TABLE(family, ...)                                                                              \
    extern "C" const EmuKernelEntry* emu_table_##family(int* n) {                                           \
        static const EmuKernelEntry table[] = {__VA_ARGS__ __VA_OPT__(, ) EmuKernelEntry{nullptr, nullptr}}; \
        *n = (int)(sizeof(table) / sizeof(table[0])) - 1;                                                   \
        return table;                                                                                       \
    }
