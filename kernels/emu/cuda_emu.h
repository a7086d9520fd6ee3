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
//   order x, then y, then z; the threads of a block are real OS threads (one pool of
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
//   __fdividef, __frcp_rn as their precise counterparts; `min`/`max` on int, unsigned,
//   long long; `__int_as_float`, `__float_as_int`; `float4`/`make_float4`, `__ldg`.
//
// What it does not emulate (a kernel using any of these needs a SIMT twin that the harness
// runs): tensor-core `mma`/`wmma`, `cp.async`, inline PTX, dynamic shared memory
// (`extern __shared__`), cooperative groups, streams and events, independent thread
// scheduling inside a warp (lanes only meet at shuffles and barriers), fast-math rounding
// (`__expf` here is as precise as `expf`), FMA contraction (g++ without -march does not
// contract; NVRTC does by default, so GPU results may differ by an ulp).
#pragma once

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
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
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned int min(unsigned int a, unsigned int b) { return a < b ? a : b; }
inline unsigned int max(unsigned int a, unsigned int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }

// ---- the harness ----------------------------------------------------------------------

/// A reusable barrier over `expected` threads; a thread that leaves (`drop`) stops counting.
class EmuBarrier {
  public:
    void reset(int expected) {
        std::lock_guard<std::mutex> l(m_);
        expected_ = expected;
        arrived_ = 0;
    }
    void arrive_and_wait() {
        std::unique_lock<std::mutex> l(m_);
        unsigned long long gen = gen_;
        if (++arrived_ >= expected_) {
            release();
        } else {
            cv_.wait(l, [&] { return gen_ != gen; });
        }
    }
    void drop() {
        std::lock_guard<std::mutex> l(m_);
        --expected_;
        if (arrived_ > 0 && arrived_ >= expected_) release();
    }

  private:
    void release() {
        arrived_ = 0;
        ++gen_;
        cv_.notify_all();
    }
    std::mutex m_;
    std::condition_variable cv_;
    int expected_ = 0, arrived_ = 0;
    unsigned long long gen_ = 0;
};

struct EmuWarp {
    EmuBarrier bar;
    unsigned long long slot[32];
    int lanes = 32;
};

struct EmuBlock {
    EmuBarrier sync;
    std::vector<std::unique_ptr<EmuWarp>> warps;
};

inline thread_local EmuBlock* emu_block = nullptr;
inline thread_local int emu_lane = 0;
inline thread_local int emu_warp = 0;

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
    EMU_NO_THREADS = 3, // the OS refused to start the block's threads
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
    EmuBlock ctx;
    int nwarps = (n + 31) / 32;
    for (int w = 0; w < nwarps; ++w) {
        ctx.warps.push_back(std::make_unique<EmuWarp>());
        ctx.warps.back()->lanes = (w + 1 < nwarps || n % 32 == 0) ? 32 : n % 32;
    }
    // Block start: every thread has finished the previous block; the last one to arrive
    // re-arms the in-kernel barriers for the new block.
    std::mutex start_m;
    int start_arrived = 0;
    unsigned long long start_gen = 0;
    std::condition_variable start_cv;
    auto block_start = [&] {
        std::unique_lock<std::mutex> l(start_m);
        unsigned long long gen = start_gen;
        if (++start_arrived == n) {
            start_arrived = 0;
            ctx.sync.reset(n);
            for (auto& w : ctx.warps) w->bar.reset(w->lanes);
            ++start_gen;
            start_cv.notify_all();
        } else {
            start_cv.wait(l, [&] { return start_gen != gen; });
        }
    };
    // Threads wait for `go` until all of them exist; if one cannot be started, the others
    // leave without running anything.
    std::mutex go_m;
    std::condition_variable go_cv;
    int go = 0; // 0 wait, 1 run, -1 abort
    auto body = [&](int t) {
        {
            std::unique_lock<std::mutex> l(go_m);
            go_cv.wait(l, [&] { return go != 0; });
            if (go < 0) return;
        }
        threadIdx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
        blockDim = block;
        gridDim = grid;
        emu_block = &ctx;
        emu_lane = t % 32;
        emu_warp = t / 32;
        for (unsigned int bz = 0; bz < grid.z; ++bz)
            for (unsigned int by = 0; by < grid.y; ++by)
                for (unsigned int bx = 0; bx < grid.x; ++bx) {
                    blockIdx = dim3(bx, by, bz);
                    block_start();
                    kernel(args...);
                    ctx.sync.drop();
                    ctx.warps[emu_warp]->bar.drop();
                }
        emu_block = nullptr;
    };
    std::vector<std::thread> threads;
    threads.reserve(n);
    int status = EMU_OK;
    try {
        for (int t = 0; t < n; ++t) threads.emplace_back(body, t);
    } catch (...) {
        status = EMU_NO_THREADS;
    }
    {
        std::lock_guard<std::mutex> l(go_m);
        go = status == EMU_OK ? 1 : -1;
    }
    go_cv.notify_all();
    for (auto& th : threads) th.join();
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
