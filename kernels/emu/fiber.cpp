// Fibers for the kernel emulator: see fiber.h.
#include "kernels/emu/fiber.h"

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if defined(__x86_64__)
// vb_emu_switch(void** save_sp, void* load_sp): pushes the callee-saved registers and the SSE/x87
// control words (all the System V ABI asks a function to preserve), swaps stack pointers, pops.
// A new fiber's stack is laid out so that the final `ret` lands in vb_emu_fiber_start, which calls
// the entry function kept in r12 with a properly aligned stack.
asm(R"(
  .text
  .p2align 4
  .globl vb_emu_switch
  .hidden vb_emu_switch
  .type vb_emu_switch, @function
vb_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size vb_emu_switch, .-vb_emu_switch

  .p2align 4
  .globl vb_emu_fiber_start
  .hidden vb_emu_fiber_start
  .type vb_emu_fiber_start, @function
vb_emu_fiber_start:
  callq *%r12
  ud2
  .size vb_emu_fiber_start, .-vb_emu_fiber_start
)");
extern "C" void vb_emu_switch(void** save_sp, void* load_sp);
extern "C" void vb_emu_fiber_start();
#endif

namespace vb::emulator::detail {
namespace {

std::size_t page_size() {
  static const std::size_t size = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return size;
}

}  // namespace

StackPool::~StackPool() {
  for (const Stack& stack : stacks_) munmap(stack.bottom - page_size(), stack.size + page_size());
}

const Stack* StackPool::get(std::size_t count, std::size_t bytes) {
  const std::size_t page = page_size();
  bytes = (bytes + page - 1) / page * page;
  if (bytes > bytes_) {  // a larger size asked for: start over
    for (const Stack& stack : stacks_) munmap(stack.bottom - page, stack.size + page);
    stacks_.clear();
    bytes_ = bytes;
  }
  while (stacks_.size() < count) {
    void* region = mmap(nullptr, bytes_ + page, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (region == MAP_FAILED)
      throw Error("kernel emulator: cannot map a " + std::to_string(bytes_ / 1024) +
                  " KiB fiber stack (" + std::to_string(stacks_.size()) + " mapped): " +
                  std::strerror(errno));
    mprotect(region, page, PROT_NONE);  // the guard page: stacks grow down into it
    stacks_.push_back({static_cast<std::byte*>(region) + page, bytes_});
  }
  return stacks_.data();
}

bool fast_fibers_available() {
#if defined(__x86_64__)
  return true;
#else
  return false;
#endif
}

void make_context(Context& context, Fibers fibers, const Stack& stack, void (*entry)()) {
  context.stack_bottom = stack.bottom;
  context.stack_size = stack.size;
#if defined(__SANITIZE_ADDRESS__)
  // A previous fiber may have left this stack with poisoned frames (it was abandoned mid-kernel).
  __asan_unpoison_memory_region(stack.bottom, stack.size);
#endif
#if defined(__x86_64__)
  if (fibers == Fibers::fast) {
    // Top of stack, 16-byte aligned; below it the frame vb_emu_switch pops: control words, r15,
    // r14, r13, r12 (= entry), rbx, rbp (= 0, ends a debugger's backtrace), return address.
    auto top = reinterpret_cast<std::uintptr_t>(stack.bottom + stack.size) & ~std::uintptr_t{15};
    auto* frame = reinterpret_cast<std::uint64_t*>(top - 80);
    frame[0] = 0x1F80 | (std::uint64_t{0x037F} << 32);  // default MXCSR and x87 control word
    frame[1] = frame[2] = frame[3] = 0;
    frame[4] = reinterpret_cast<std::uint64_t>(entry);
    frame[5] = frame[6] = 0;
    frame[7] = reinterpret_cast<std::uint64_t>(&vb_emu_fiber_start);
    context.sp = frame;
    return;
  }
#endif
  // getcontext is a system call; copying one initialised context per thread avoids it per fiber.
  static thread_local ucontext_t initialised = [] {
    ucontext_t uc;
    getcontext(&uc);
    return uc;
  }();
  context.uc = initialised;
  context.uc.uc_mcontext.fpregs = &context.uc.__fpregs_mem;  // it pointed into the original
  context.uc.uc_stack.ss_sp = stack.bottom;
  context.uc.uc_stack.ss_size = stack.size;
  context.uc.uc_link = nullptr;
  makecontext(&context.uc, entry, 0);
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer's swapcontext interceptor unpoisons the whole uc_stack of the context it
  // resumes, which erases the redzones of the frames a fiber left live at a barrier: an overflow of
  // a local array after a __syncthreads would go unreported. makecontext was the only reader of
  // uc_stack (swapcontext only restores registers); switch_context's annotations tell ASan the stack.
  context.uc.uc_stack.ss_sp = nullptr;
  context.uc.uc_stack.ss_size = 0;
#endif
}

void make_thread_context(Context& context) {
  pthread_attr_t attr;
  void* bottom = nullptr;
  std::size_t size = 0;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    pthread_attr_getstack(&attr, &bottom, &size);
    pthread_attr_destroy(&attr);
  }
  context.stack_bottom = bottom;
  context.stack_size = size;
}

void switch_context(Context& from, Context& to, Fibers fibers, bool from_exits) {
#if defined(__SANITIZE_ADDRESS__)
  void* fake_stack = nullptr;
  __sanitizer_start_switch_fiber(from_exits ? nullptr : &fake_stack, to.stack_bottom, to.stack_size);
#endif
#if defined(__x86_64__)
  if (fibers == Fibers::fast)
    vb_emu_switch(&from.sp, to.sp);
  else
#endif
    swapcontext(&from.uc, &to.uc);
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#endif
}

void fiber_started() {
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
}

}  // namespace vb::emulator::detail
