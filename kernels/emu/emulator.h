// The kernel emulator's host-side interface: how a grid is run on the CPU, the options that choose
// fiber order, worker count and strictness, the error it throws, and the order-comparison test
// helper. Kernel code never includes this directly: kernels/launch.h does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <source_location>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include <vector_types.h>

namespace vb::emulator {

// Everything the emulator detects (divergent barriers, bad warp masks, deadlock, a kernel's own
// exception) arrives as this, thrown from the launch, its message naming the kernel, the block,
// the threads and the source lines.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The order in which the fibers of a block (and the blocks of a grid) run between two
// synchronisation points. A kernel whose result depends on it has a race.
enum class Order { in_order, reversed, shuffled };

enum class Fibers { ucontext, fast };  // fast: hand-written x86-64 context switch

// The default on x86-64: the fast switch (about 15x fewer nanoseconds per switch; under AddressSanitizer
// the emu tests ran 1.5x faster with it, and ASan follows both through the fiber annotations).
#if defined(__x86_64__)
inline constexpr Fibers kDefaultFibers = Fibers::fast;
#else
inline constexpr Fibers kDefaultFibers = Fibers::ucontext;
#endif

struct Options {
  Order order = Order::in_order;
  std::uint64_t seed = 0;           // for Order::shuffled
  int workers = 1;                  // OS threads sharing the blocks; 1 runs fully deterministically
  bool strict_async = false;        // cp.async poisons its destination until the matching wait
  Fibers fibers = kDefaultFibers;
  std::size_t stack_bytes = 0;      // per fiber; 0 picks 128 KiB (256 KiB under AddressSanitizer)
};

// The options launches from this host thread use: the innermost ScopedOptions, else the process
// defaults read once from the environment:
//   VB_EMU_ORDER=in_order|reversed|shuffled[:seed]  VB_EMU_WORKERS=n  VB_EMU_STRICT_ASYNC=1
//   VB_EMU_FIBERS=ucontext|fast  VB_EMU_STACK_KIB=n
const Options& current_options();
std::string describe(const Options& options);  // "reversed, 2 workers", for messages

// Sets the options of launches made from this host thread while it lives.
class ScopedOptions {
 public:
  explicit ScopedOptions(const Options& options);
  ~ScopedOptions();
  ScopedOptions(const ScopedOptions&) = delete;
  ScopedOptions& operator=(const ScopedOptions&) = delete;

 private:
  const Options* previous_;
  Options options_;
};

// One kernel call, type-erased: `invoke(arguments)` runs the kernel body for the current fiber.
struct KernelCall {
  void (*invoke)(const void* arguments);
  const void* arguments;
  const void* kernel;  // the kernel's address, to find its name
};

// Runs every block of the grid to completion (the launch is synchronous); throws Error.
void run_grid(const KernelCall& call, dim3 grid, dim3 block, std::size_t dynamic_shared_bytes,
              std::source_location launch_site);

// The running block's dynamic shared memory (VB_DYNAMIC_SHARED); filled with 0xFF bytes, a NaN in
// every float, half and bfloat16, when the block starts.
void* dynamic_shared();

// The fiber orders run_under_orders tries: in order, reversed (with strict cp.async) and three seeded
// shuffles, each with the worker count of the current options.
std::vector<Options> race_orders();

// Runs `run` (which launches kernels and returns their results as a vector) once under each of
// `orders` and throws Error naming the two orders and the first element whose bits differ.
template <class Run>
auto run_under_orders(Run run, std::span<const Options> orders = {}) -> decltype(run()) {
  using Result = decltype(run());
  using T = typename Result::value_type;
  static_assert(std::is_trivially_copyable_v<T>, "results are compared bit for bit");
  std::vector<Options> defaults;
  if (orders.empty()) {
    defaults = race_orders();
    orders = defaults;
  }
  std::optional<Result> first;
  for (const Options& options : orders) {
    ScopedOptions scoped(options);
    Result result = run();
    if (!first) {
      first = std::move(result);
      continue;
    }
    const bool same_size = result.size() == first->size();
    for (std::size_t i = 0; i < first->size(); ++i) {
      if (same_size && std::memcmp(&result[i], &(*first)[i], sizeof(T)) == 0) continue;
      throw Error("results differ between fiber orders (" + describe(orders[0]) + ") and (" +
                  describe(options) + ")" +
                  (same_size ? " at element " + std::to_string(i)
                             : ": " + std::to_string(first->size()) + " vs " +
                                   std::to_string(result.size()) + " elements") +
                  ": a race between threads (a missing __syncthreads or __syncwarp?" +
                  (options.strict_async != orders[0].strict_async ? " or cp_async_wait, with strict cp.async?)"
                                                                   : ")"));
    }
  }
  return std::move(*first);
}

}  // namespace vb::emulator
