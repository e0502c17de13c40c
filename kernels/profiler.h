// The kernel profiler: how long each kernel method of the CPU backend takes, by name, op and dtype — the
// table that says what dominates a step (`bench_train_cpu --profile`, bench/train_cpu.cpp, prints it).
//
// While it records, backend(cpu) hands out a wrapper around the CPU backend whose every method (generated
// from kernels/backend_methods.def) reads the clock before and after the real one. A row is one kernel
// method, split by its elementwise or reduction op and by the dtype of its first tensor: "matmul bfloat16",
// "unary gelu float32", "binary add float32"; a copy shows both dtypes ("copy float32 → bfloat16": the casts
// of mixed precision). Self time leaves out the kernel methods a method calls through backend() itself;
// total time keeps them. Times are summed over the threads that call kernels (a data loader's too).
//
// Only the CPU is profiled: a GPU kernel's host time is its launch, not its run. Kernels that CPU code calls
// directly (cpu_backend(), e.g. the contiguous copies inside a kernel) count in their caller's time. Cost:
// two clock reads and a locked map update per call (~0.1–0.3 µs), nothing when not recording.
#pragma once
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace vb {

class Backend;

struct KernelTime {
  std::string kernel;         // "matmul bfloat16", "unary gelu float32", "copy float32 → bfloat16"
  int64_t calls = 0;
  double self_seconds = 0;    // without the kernel methods it called through backend()
  double total_seconds = 0;   // with them
};

// Starts recording (clearing what an earlier recording left); fails if one is already running. With `shapes`,
// rows are split further by the shapes of the tensors each call was given (and the strides of non-contiguous
// ones): which products of a step cost what — e.g. that the base preset's text layers run at M = 134 rows.
void kernel_profile_start(bool shapes = false);
// Stops recording and returns the rows, the largest self time first (ties by name).
std::vector<KernelTime> kernel_profile_stop();
bool kernel_profiling();

// A markdown table of the `top` largest rows per step (times and calls divided by `steps`), each with its
// share of `wall_seconds` (the steps' wall-clock time), then the sum over all kernels and the rest of the
// wall time ("outside the kernels": autograd, allocation, the framework's own work).
std::string kernel_profile_table(const std::vector<KernelTime>& rows, double wall_seconds, int64_t steps,
                                 size_t top);

namespace detail {
// The wrapper backend(cpu) returns while recording (null otherwise); kernels/backend.cpp reads it.
extern std::atomic<Backend*> g_profiling_cpu;
}  // namespace detail

}  // namespace vb
