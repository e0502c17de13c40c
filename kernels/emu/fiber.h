// Fibers for the kernel emulator: stacks from mmap with a guard page, and two ways to switch
// between them (glibc's ucontext, and a hand-written x86-64 switch that skips ucontext's signal-mask
// system call). Every switch is announced to AddressSanitizer so it follows the stacks.
#pragma once

#include <cstddef>
#include <vector>

#include <ucontext.h>

#include "kernels/emu/emulator.h"

namespace vb::emulator::detail {

// A fiber's stack: `size` usable bytes above one inaccessible guard page, so an overflow faults.
struct Stack {
  std::byte* bottom = nullptr;
  std::size_t size = 0;
};

// The stacks of one worker thread, kept across blocks and launches.
class StackPool {
 public:
  StackPool() = default;
  StackPool(const StackPool&) = delete;
  StackPool& operator=(const StackPool&) = delete;
  ~StackPool();
  // The first `count` stacks, each at least `bytes` long.
  const Stack* get(std::size_t count, std::size_t bytes);

 private:
  std::vector<Stack> stacks_;
  std::size_t bytes_ = 0;
};

struct Context {
  ucontext_t uc;              // Fibers::ucontext
  void* sp = nullptr;         // Fibers::fast: the saved stack pointer
  const void* stack_bottom = nullptr;
  std::size_t stack_size = 0;
};

bool fast_fibers_available();
// Makes `context` start `entry` on `stack` at its first switch.
void make_context(Context& context, Fibers fibers, const Stack& stack, void (*entry)());
// Makes `context` the calling OS thread's own stack (the scheduler's).
void make_thread_context(Context& context);
// Saves the current state into `from` and resumes `to`. `from_exits`: the caller never resumes.
void switch_context(Context& from, Context& to, Fibers fibers, bool from_exits = false);
// The first thing a fiber's entry function does.
void fiber_started();

}  // namespace vb::emulator::detail
