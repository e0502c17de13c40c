// The one way the project launches a kernel, and what a kernel source needs to compile both as
// CUDA (nvcc) and under the kernel emulator (g++, see docs/EMULATOR.md):
//
//   vb::launch(kernel, {grid, block, shared_bytes, stream}, arguments...);
//
// converts the arguments to the kernel's parameter types as a CUDA launch does, then under nvcc
// launches on the GPU (and checks the launch), and under the emulator runs the whole grid on the
// CPU before returning, once the stream's pending asynchronous work (an emulated NCCL collective,
// kernels/emu/pending_work.h) has finished, so that streams are in order there too.
//
//   VB_KERNEL_NS                    `cuda` under nvcc, `emu` under the emulator (`emu_insight` for the
//                                   kernels the build also compiles for insight): a kernel source
//                                   wraps its code in `namespace vb::VB_KERNEL_NS { ... }` so that
//                                   both compiled copies link into one library.
//   VB_DYNAMIC_SHARED(type, name);  declares `type* name` pointing at the block's dynamic shared
//                                   memory (`extern __shared__` does not link under g++).
#pragma once

#include <cstddef>
#include <cstdint>
#include <source_location>
#include <tuple>
#include <utility>

#include <vector_types.h>

#include "kernels/runtime.h"

namespace vb {

// Blocks of `per_block` threads that cover `items`, one item each: ⌈items / per_block⌉, a launch's grid size.
inline unsigned blocks_for(int64_t items, int per_block) { return unsigned((items + per_block - 1) / per_block); }

struct LaunchConfig {
  dim3 grid;
  dim3 block;
  std::size_t shared_bytes = 0;  // dynamic shared memory per block
  rt::Stream stream{};
  std::source_location site = std::source_location::current();  // the launch's call site
};

}  // namespace vb

#if defined(__CUDACC__)

#define VB_KERNEL_NS cuda
#define VB_DYNAMIC_SHARED(type, name)                                  \
  extern __shared__ __align__(128) unsigned char vb_dynamic_shared_[]; \
  type* name = reinterpret_cast<type*>(vb_dynamic_shared_)

namespace vb {

template <class... Params, class... Args>
void launch(void (*kernel)(Params...), const LaunchConfig& config, Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "vb::launch: wrong number of kernel arguments");
  kernel<<<config.grid, config.block, config.shared_bytes, static_cast<cudaStream_t>(config.stream.handle)>>>(
      std::forward<Args>(args)...);
  rt::cuda::check(static_cast<int>(cudaGetLastError()), "kernel launch", config.site);
}

}  // namespace vb

#else

#include "kernels/emu/emulator.h"
#include "kernels/emu/pending_work.h"

#ifndef VB_KERNEL_NS
#define VB_KERNEL_NS emu  // emu_insight for the copies compiled for insight (cmake/cuda.cmake)
#endif
#define VB_DYNAMIC_SHARED(type, name) type* name = static_cast<type*>(::vb::emulator::dynamic_shared())

namespace vb {
namespace launch_detail {

// Copy-initialisation: exactly the implicit conversions a call (and so a CUDA launch) performs.
template <class Param, class Arg>
Param convert(Arg&& arg) {
  return std::forward<Arg>(arg);
}

}  // namespace launch_detail

template <class... Params, class... Args>
void launch(void (*kernel)(Params...), const LaunchConfig& config, Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "vb::launch: wrong number of kernel arguments");
  struct Call {
    void (*kernel)(Params...);
    std::tuple<Params...> arguments;  // each thread calls the kernel with its own copy
  };
  const Call call{kernel, {launch_detail::convert<Params>(std::forward<Args>(args))...}};
  const emulator::KernelCall erased{
      [](const void* p) {
        const Call& c = *static_cast<const Call*>(p);
        std::apply(c.kernel, c.arguments);
      },
      &call, reinterpret_cast<const void*>(kernel)};
  rt::emu::wait_stream(config.stream);  // a kernel starts after the stream's earlier work
  emulator::run_grid(erased, config.grid, config.block, config.shared_bytes, config.site);
}

}  // namespace vb

#endif
