// The kernel emulator's scheduler: runs each block's threads as fibers on one worker OS thread,
// releases barriers and warp rendezvous when every participant has arrived at the same site, and
// turns every way a block can get stuck into an Error naming the threads and the source lines.
#include <algorithm>
#include <array>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <random>
#include <thread>

#include <cxxabi.h>
#include <dlfcn.h>

#include "kernels/emu/device.h"
#include "kernels/emu/emulator.h"
#include "kernels/emu/fiber.h"
#include "kernels/emu/insight_detail.h"

thread_local uint3 threadIdx;
thread_local uint3 blockIdx;
thread_local dim3 blockDim;
thread_local dim3 gridDim;

namespace vb::emulator {
namespace detail {
namespace {

enum class State { runnable, at_barrier, at_warp, exited };

// A cp.async whose data waits, in strict mode, for its group's cp.async.wait_group.
struct PendingCopy {
  void* dst;
  std::array<std::byte, 16> data;
  int bytes;
};

struct Fiber {
  Context context;
  unsigned linear = 0;
  uint3 index{};
  State state = State::runnable;
  Site site;                  // where it waits
  WarpOp* warp_op = nullptr;  // at_warp: its part of the rendezvous
  int predicate = 0;          // at_barrier: its __syncthreads_count predicate, then the count
  std::vector<PendingCopy> uncommitted;
  std::deque<std::vector<PendingCopy>> groups;
};

struct Launch {
  KernelCall call;
  dim3 grid;
  dim3 block;
  std::size_t dynamic_shared_bytes;
  Site site;
  Options options;
  unsigned threads;
};

struct Block {
  const Launch* launch = nullptr;
  uint3 index{};
  std::vector<Fiber> fibers;
  Context scheduler;
  std::vector<unsigned> pass;  // the runnable fibers of this pass, in run order
  std::size_t pass_next = 0;
  std::byte* dynamic_shared = nullptr;
  std::mt19937_64 rng;
  bool failed = false;
  std::string failure;
};

// What fail() throws inside the failing fiber, so that the fiber's own frames unwind (and free
// what they hold) before fiber_entry records the failure.
struct Failure {
  std::string message;
};

thread_local Block* t_block = nullptr;
thread_local Fiber* t_fiber = nullptr;

std::string short_path(const char* path) {
  // The last two components ("cuda/softmax.cu") name a file well enough and keep messages short.
  std::string p(path);
  const auto last = p.rfind('/');
  if (last == std::string::npos || last == 0) return p;
  const auto before = p.rfind('/', last - 1);
  return before == std::string::npos ? p : p.substr(before + 1);
}

bool same_site(const Site& a, const Site& b) {
  return a.line() == b.line() && a.column() == b.column() &&
         std::strcmp(a.file_name(), b.file_name()) == 0;
}

std::string hex(unsigned mask) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%08x", mask);
  return text;
}

std::string kernel_name(const void* kernel) {
  Dl_info info{};
  if (dladdr(kernel, &info) && info.dli_sname && info.dli_saddr == kernel) {
    int status = 0;
    std::unique_ptr<char, void (*)(void*)> demangled(
        abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &status), std::free);
    return status == 0 ? demangled.get() : info.dli_sname;
  }
  char text[32];
  std::snprintf(text, sizeof text, "%p", kernel);
  return std::string("at ") + text + " (not exported: build with -rdynamic to see its name)";
}

std::string dims(uint3 d) {
  char text[40];
  std::snprintf(text, sizeof text, "(%u,%u,%u)", d.x, d.y, d.z);
  return text;
}
std::string dims(dim3 d) { return dims(uint3{d.x, d.y, d.z}); }

// "threads 0-15, 17" for a 1-D block, "threads (0,0,0)-(7,1,0)" otherwise.
std::string describe_threads(const Block& block, const std::vector<unsigned>& linear) {
  const dim3 b = block.launch->block;
  const bool one_d = b.y == 1 && b.z == 1;
  auto name = [&](unsigned l) {
    return one_d ? std::to_string(l) : dims(uint3{l % b.x, l / b.x % b.y, l / (b.x * b.y)});
  };
  std::string text = linear.size() == 1 ? "thread " : "threads ";
  for (std::size_t i = 0; i < linear.size();) {
    std::size_t j = i;
    while (j + 1 < linear.size() && linear[j + 1] == linear[j] + 1) ++j;
    if (i) text += ", ";
    text += name(linear[i]);
    if (j > i) {
      text += '-';
      text += name(linear[j]);
    }
    i = j + 1;
  }
  return text;
}

std::string block_prefix(const Block& block) {
  const Launch& l = *block.launch;
  return "kernel " + kernel_name(l.call.kernel) + ", block " + dims(block.index) + " of grid " +
         dims(l.grid) + " (" + std::to_string(l.threads) + " threads), launched at " + where(l.site) +
         ": ";
}

void apply(const PendingCopy& copy) { std::memcpy(copy.dst, copy.data.data(), static_cast<std::size_t>(copy.bytes)); }

void finish_copies(Fiber& fiber) {
  for (const auto& group : fiber.groups)
    for (const PendingCopy& copy : group) apply(copy);
  for (const PendingCopy& copy : fiber.uncommitted) apply(copy);
  fiber.groups.clear();
  fiber.uncommitted.clear();
}

// Leaves the current fiber for the next runnable one of this pass, or for the scheduler when the
// pass is over (or the block failed).
void yield(bool exits = false) {
  Block& block = *t_block;
  Fiber& from = *t_fiber;
  Context* to = &block.scheduler;
  Fiber* next = nullptr;
  if (!block.failed && block.pass_next < block.pass.size()) {
    next = &block.fibers[block.pass[block.pass_next++]];
    to = &next->context;
    threadIdx = next->index;
  }
  t_fiber = next;
  switch_context(from.context, *to, block.launch->options.fibers, exits);
}

void fiber_entry() {
  fiber_started();
  Block& block = *t_block;
  Fiber& fiber = *t_fiber;
  try {
    block.launch->call.invoke(block.launch->call.arguments);
  } catch (const Failure& f) {
    block.failed = true;
    block.failure = describe_threads(block, {fiber.linear}) + ": " + f.message;
  } catch (const std::exception& e) {
    block.failed = true;
    block.failure = describe_threads(block, {fiber.linear}) + " threw: " + e.what();
  } catch (...) {
    block.failed = true;
    block.failure = describe_threads(block, {fiber.linear}) + " threw an exception";
  }
  finish_copies(fiber);  // a GPU completes a thread's outstanding cp.async too
  fiber.state = State::exited;
  yield(true);
  std::abort();  // an exited fiber is never resumed
}

struct WarpView {
  unsigned first;  // linear index of lane 0
  unsigned lanes;  // how many lanes exist (the last warp of a block may be short)
};

WarpView warp_of(const Block& block, unsigned linear) {
  const unsigned first = linear / 32 * 32;
  return {first, std::min(32u, block.launch->threads - first)};
}

// Whether `other` is waiting at exactly the rendezvous `op` at `site` describes.
bool same_rendezvous(const Fiber& other, const WarpOp& op, const Site& site) {
  return other.state == State::at_warp && std::strcmp(other.warp_op->name, op.name) == 0 &&
         other.warp_op->mask == op.mask && same_site(other.site, site);
}

// Completes a mask-less rendezvous (__activemask) with the lanes of the warp waiting at its site.
void release_gathered(Block& block, Fiber& fiber, WarpView warp) {
  WarpOp* lanes[32] = {};
  unsigned mask = 0;
  for (unsigned lane = 0; lane < warp.lanes; ++lane) {
    Fiber& other = block.fibers[warp.first + lane];
    if (other.state == State::at_warp && other.warp_op->gather && same_site(other.site, fiber.site) &&
        std::strcmp(other.warp_op->name, fiber.warp_op->name) == 0) {
      lanes[lane] = other.warp_op;
      mask |= 1u << lane;
    }
  }
  fiber.warp_op->resolve(lanes, mask);
  for (unsigned lane = 0; lane < 32; ++lane)
    if (mask >> lane & 1u) block.fibers[warp.first + lane].state = State::runnable;
}

// Completes every warp rendezvous whose lanes have all arrived; says whether any did.
bool release_warps(Block& block) {
  bool progress = false;
  for (Fiber& fiber : block.fibers) {
    if (fiber.state != State::at_warp) continue;
    const WarpView warp = warp_of(block, fiber.linear);
    if (fiber.warp_op->gather) {
      release_gathered(block, fiber, warp);
      progress = true;
      continue;
    }
    const unsigned mask = fiber.warp_op->mask;
    if (warp.lanes < 32 && (mask >> warp.lanes) != 0) continue;  // names lanes that do not exist
    WarpOp* lanes[32] = {};
    bool complete = true;
    for (unsigned lane = 0; lane < 32 && complete; ++lane) {
      if (!(mask >> lane & 1u)) continue;
      Fiber& other = block.fibers[warp.first + lane];
      complete = same_rendezvous(other, *fiber.warp_op, fiber.site);
      lanes[lane] = other.warp_op;
    }
    if (!complete) continue;
    fiber.warp_op->resolve(lanes, mask);
    for (unsigned lane = 0; lane < 32; ++lane)
      if (mask >> lane & 1u) block.fibers[warp.first + lane].state = State::runnable;
    progress = true;
  }
  return progress;
}

// Why the rendezvous of `fiber` cannot complete.
std::string explain_warp(const Block& block, const Fiber& fiber) {
  const WarpView warp = warp_of(block, fiber.linear);
  const WarpOp& op = *fiber.warp_op;
  std::vector<unsigned> waiting;
  std::string reason;
  for (unsigned lane = 0; lane < 32; ++lane) {
    if (!(op.mask >> lane & 1u)) continue;
    if (lane >= warp.lanes) {
      if (reason.empty())
        reason = "lane " + std::to_string(lane) + " does not exist (the block has " +
                 std::to_string(block.launch->threads) + " threads)";
      continue;
    }
    const Fiber& other = block.fibers[warp.first + lane];
    if (same_rendezvous(other, op, fiber.site)) {
      waiting.push_back(other.linear);
      continue;
    }
    if (!reason.empty()) continue;
    const std::string who = describe_threads(block, {other.linear}) + " (lane " + std::to_string(lane) + ")";
    if (other.state == State::exited)
      reason = who + " has exited";
    else if (other.state == State::at_barrier)
      reason = who + " waits at __syncthreads at " + where(other.site);
    else
      reason = who + " waits at " + other.warp_op->name + " at " + where(other.site) + " with mask " +
               hex(other.warp_op->mask);
  }
  return std::string(op.name) + " at " + where(fiber.site) + " with mask " + hex(op.mask) +
         " cannot complete: " + reason + "; " + describe_threads(block, waiting) + " wait there";
}

// Called when no fiber can run and no warp rendezvous can complete: releases the barrier if every
// thread waits at the same one, returns false if every thread has exited, and throws otherwise.
bool release_barrier(Block& block) {
  std::vector<unsigned> exited;
  std::vector<const Fiber*> at_barrier;
  const Fiber* at_warp = nullptr;
  for (const Fiber& fiber : block.fibers) {
    if (fiber.state == State::exited) exited.push_back(fiber.linear);
    if (fiber.state == State::at_barrier) at_barrier.push_back(&fiber);
    if (fiber.state == State::at_warp && !at_warp) at_warp = &fiber;
  }
  if (exited.size() == block.fibers.size()) return false;
  if (at_warp) throw Error(block_prefix(block) + explain_warp(block, *at_warp));

  // Group the waiting threads by barrier site, in order of first arrival index.
  std::vector<std::pair<Site, std::vector<unsigned>>> sites;
  for (const Fiber* fiber : at_barrier) {
    auto it = std::find_if(sites.begin(), sites.end(), [&](const auto& s) { return same_site(s.first, fiber->site); });
    if (it == sites.end()) sites.push_back({fiber->site, {fiber->linear}});
    else it->second.push_back(fiber->linear);
  }
  std::string waits;
  for (const auto& [site, threads] : sites) {
    if (!waits.empty()) waits += ", ";
    waits += describe_threads(block, threads) + " wait at __syncthreads at " + where(site);
  }
  if (sites.size() > 1)
    throw Error(block_prefix(block) + "divergent __syncthreads: " + waits +
                (exited.empty() ? "" : ", " + describe_threads(block, exited) + " exited"));
  if (!exited.empty())
    throw Error(block_prefix(block) + describe_threads(block, exited) +
                " exited while " + waits + ": every thread of a block must reach each __syncthreads");

  int count = 0;
  for (const Fiber& fiber : block.fibers) count += fiber.predicate != 0;
  for (Fiber& fiber : block.fibers) {
    fiber.predicate = count;
    fiber.state = State::runnable;
  }
  return true;
}

void build_pass(Block& block) {
  block.pass.clear();
  const unsigned n = static_cast<unsigned>(block.fibers.size());
  for (unsigned i = 0; i < n; ++i) {
    const unsigned f = block.launch->options.order == Order::reversed ? n - 1 - i : i;
    if (block.fibers[f].state == State::runnable) block.pass.push_back(f);
  }
  if (block.launch->options.order == Order::shuffled) std::shuffle(block.pass.begin(), block.pass.end(), block.rng);
}

struct Worker {
  Worker() { make_thread_context(block.scheduler); }  // reads /proc/self/maps: once per thread
  StackPool stacks;
  Block block;
};

void run_block(const Launch& launch, unsigned block_linear, std::byte* dynamic_shared) {
  static thread_local Worker worker;
  Block& block = worker.block;
  const dim3 g = launch.grid;
  block.launch = &launch;
  block.index = {block_linear % g.x, block_linear / g.x % g.y, block_linear / (g.x * g.y)};
  block.failed = false;
  block.failure.clear();
  block.dynamic_shared = dynamic_shared;
  block.rng.seed(launch.options.seed * 0x9E3779B97F4A7C15ull + block_linear);
  if (dynamic_shared) std::memset(dynamic_shared, poison_byte, launch.dynamic_shared_bytes);

  blockIdx = block.index;
  blockDim = launch.block;
  gridDim = launch.grid;

  std::size_t stack_bytes = launch.options.stack_bytes;
#if defined(__SANITIZE_ADDRESS__)
  if (!stack_bytes) stack_bytes = 256 * 1024;
#else
  if (!stack_bytes) stack_bytes = 128 * 1024;
#endif
  const Stack* stacks = worker.stacks.get(launch.threads, stack_bytes);
  block.fibers.resize(launch.threads);
  const dim3 b = launch.block;
  for (unsigned i = 0; i < launch.threads; ++i) {
    Fiber& fiber = block.fibers[i];
    fiber.linear = i;
    fiber.index = {i % b.x, i / b.x % b.y, i / (b.x * b.y)};
    fiber.state = State::runnable;
    fiber.predicate = 0;
    fiber.uncommitted.clear();
    fiber.groups.clear();
    make_context(fiber.context, launch.options.fibers, stacks[i], &fiber_entry);
  }

  t_block = &block;
  struct Reset {
    ~Reset() { t_block = nullptr; t_fiber = nullptr; }
  } reset;
  const bool observed = insight::detail::active();
  if (observed) insight::detail::block_begin(dynamic_shared, launch.dynamic_shared_bytes);
  for (;;) {
    build_pass(block);
    if (!block.pass.empty()) {
      Fiber& first = block.fibers[block.pass[0]];
      block.pass_next = 1;
      t_fiber = &first;
      threadIdx = first.index;
      if (observed) insight::detail::threads_running(true);
      switch_context(block.scheduler, first.context, launch.options.fibers);
      if (observed) insight::detail::threads_running(false);
      t_fiber = nullptr;
    }
    if (block.failed) throw Error(block_prefix(block) + block.failure);
    if (release_warps(block)) continue;
    if (!release_barrier(block)) {
      if (observed) insight::detail::block_end();
      return;
    }
    if (observed) insight::detail::barrier();
  }
}

// Worker OS threads, started once and kept: the calling thread of a launch is worker 0.
class WorkerPool {
 public:
  static WorkerPool& instance() {
    static WorkerPool pool;
    return pool;
  }

  void run(int workers, const std::function<void(int)>& job) {
    std::lock_guard launch_lock(launch_mutex_);
    {
      std::lock_guard lock(mutex_);
      while (static_cast<int>(threads_.size()) < workers - 1) {
        const int index = static_cast<int>(threads_.size()) + 1;
        threads_.emplace_back([this, index] { serve(index); });
      }
      job_ = &job;
      wanted_ = workers;
      remaining_ = workers - 1;
      ++generation_;
    }
    wake_.notify_all();
    job(0);
    std::unique_lock lock(mutex_);
    done_.wait(lock, [this] { return remaining_ == 0; });
    job_ = nullptr;
  }

  ~WorkerPool() {
    {
      std::lock_guard lock(mutex_);
      quit_ = true;
    }
    wake_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

 private:
  void serve(int index) {
    std::uint64_t seen = 0;
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return quit_ || generation_ != seen; });
      if (quit_) return;
      seen = generation_;
      if (index >= wanted_) continue;
      const auto* job = job_;
      lock.unlock();
      (*job)(index);
      lock.lock();
      if (--remaining_ == 0) done_.notify_all();
    }
  }

  std::mutex launch_mutex_;  // one multi-worker launch at a time
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> threads_;
  const std::function<void(int)>* job_ = nullptr;
  int wanted_ = 0;
  int remaining_ = 0;
  std::uint64_t generation_ = 0;
  bool quit_ = false;
};

void check_configuration(const Launch& launch) {
  const dim3 b = launch.block, g = launch.grid;
  std::string problem;
  if (b.x == 0 || b.y == 0 || b.z == 0 || g.x == 0 || g.y == 0 || g.z == 0)
    problem = "a grid or block dimension is 0";
  else if (b.x > 1024 || b.y > 1024 || b.z > 64 || std::uint64_t{b.x} * b.y * b.z > 1024)
    problem = "a block holds at most 1024 threads (x, y <= 1024, z <= 64)";
  else if (g.x > 0x7FFFFFFFu || g.y > 65535 || g.z > 65535)
    problem = "grid dimensions are at most (2^31-1, 65535, 65535)";
  else if (launch.dynamic_shared_bytes > 227 * 1024)
    problem = "dynamic shared memory is at most 227 KiB per block";
  if (!problem.empty())
    throw Error("kernel " + kernel_name(launch.call.kernel) + " launched at " + where(launch.site) +
                " with grid " + dims(g) + ", block " + dims(b) + " and " +
                std::to_string(launch.dynamic_shared_bytes) + " bytes of dynamic shared memory: " + problem);
}

Fiber& current_fiber(const char* what) {
  if (!t_fiber) {
    std::fprintf(stderr, "kernel emulator: %s called outside a kernel\n", what);
    std::abort();
  }
  return *t_fiber;
}

}  // namespace

std::string where(const Site& site) { return short_path(site.file_name()) + ":" + std::to_string(site.line()); }

void warp_sync(WarpOp& op, Site site) {
  Fiber& fiber = current_fiber(op.name);
  const unsigned lane = fiber.linear % 32;
  if (!op.gather && !(op.mask >> lane & 1u))
    fail(std::string(op.name) + " at " + where(site) + " with mask " + hex(op.mask) +
         ", which does not name the calling lane " + std::to_string(lane));
  fiber.warp_op = &op;
  fiber.site = site;
  fiber.state = State::at_warp;
  yield();
}

int block_sync(int predicate, Site site) {
  Fiber& fiber = current_fiber("__syncthreads");
  fiber.predicate = predicate;
  fiber.site = site;
  fiber.state = State::at_barrier;
  yield();
  return fiber.predicate;
}

unsigned lane_id() { return current_fiber("a warp intrinsic").linear % 32; }

void fail(const std::string& message) {
  current_fiber("an emulator check");
  throw Failure{message};
}

void cp_async(void* shared_dst, const void* global_src, int cp_bytes, int src_bytes) {
  Fiber& fiber = current_fiber("cp.async");
  if (cp_bytes != 4 && cp_bytes != 8 && cp_bytes != 16)
    fail("cp.async copies 4, 8 or 16 bytes, not " + std::to_string(cp_bytes));
  if (src_bytes < 0 || src_bytes > cp_bytes)
    fail("cp.async of " + std::to_string(cp_bytes) + " bytes with src-size " + std::to_string(src_bytes));
  if (reinterpret_cast<std::uintptr_t>(shared_dst) % cp_bytes ||
      (src_bytes && reinterpret_cast<std::uintptr_t>(global_src) % cp_bytes))
    fail("cp.async of " + std::to_string(cp_bytes) + " bytes needs both addresses aligned to " +
         std::to_string(cp_bytes) + " bytes");
  PendingCopy copy{shared_dst, {}, cp_bytes};
  std::memcpy(copy.data.data(), global_src, static_cast<std::size_t>(src_bytes));  // the rest zero-fills
  if (!t_block->launch->options.strict_async) {
    apply(copy);
    return;
  }
  std::memset(shared_dst, poison_byte, static_cast<std::size_t>(cp_bytes));  // until the wait
  fiber.uncommitted.push_back(copy);
}

void cp_async_commit() {
  Fiber& fiber = current_fiber("cp.async.commit_group");
  fiber.groups.push_back(std::move(fiber.uncommitted));  // an empty group counts too
  fiber.uncommitted.clear();
}

void cp_async_wait(int newest_pending) {
  Fiber& fiber = current_fiber("cp.async.wait_group");
  while (fiber.groups.size() > static_cast<std::size_t>(std::max(newest_pending, 0))) {
    for (const PendingCopy& copy : fiber.groups.front()) apply(copy);
    fiber.groups.pop_front();
  }
}

}  // namespace detail

namespace {

Options options_from_environment() {
  Options options;
  options.workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (const char* order = std::getenv("VB_EMU_ORDER")) {
    const std::string text = order;
    if (text.rfind("reversed", 0) == 0) options.order = Order::reversed;
    if (text.rfind("shuffled", 0) == 0) {
      options.order = Order::shuffled;
      if (const auto colon = text.find(':'); colon != std::string::npos)
        options.seed = std::strtoull(text.c_str() + colon + 1, nullptr, 10);
    }
  }
  if (const char* workers = std::getenv("VB_EMU_WORKERS")) options.workers = std::max(1, std::atoi(workers));
  if (const char* strict = std::getenv("VB_EMU_STRICT_ASYNC")) options.strict_async = std::atoi(strict) != 0;
  if (const char* fibers = std::getenv("VB_EMU_FIBERS"))
    options.fibers = std::string(fibers) == "fast" ? Fibers::fast : Fibers::ucontext;
  if (const char* kib = std::getenv("VB_EMU_STACK_KIB"))
    options.stack_bytes = std::strtoull(kib, nullptr, 10) * 1024;
  return options;
}

thread_local const Options* t_options = nullptr;

}  // namespace

const Options& current_options() {
  static const Options defaults = options_from_environment();
  return t_options ? *t_options : defaults;
}

std::string describe(const Options& options) {
  std::string text = options.order == Order::in_order   ? "in order"
                     : options.order == Order::reversed ? "reversed"
                                                        : "shuffled, seed " + std::to_string(options.seed);
  text += ", " + std::to_string(options.workers) + (options.workers == 1 ? " worker" : " workers");
  if (options.strict_async) text += ", strict cp.async";
  return text;
}

ScopedOptions::ScopedOptions(const Options& options) : previous_(t_options), options_(options) {
  t_options = &options_;
}
ScopedOptions::~ScopedOptions() { t_options = previous_; }

std::vector<Options> race_orders() {
  std::vector<Options> orders;
  for (Order order : {Order::in_order, Order::reversed, Order::shuffled, Order::shuffled, Order::shuffled}) {
    Options options = current_options();
    options.order = order;
    options.seed = order == Order::shuffled ? orders.size() : 0;
    // The reversed order also holds every cp.async back until its wait: a missing wait then reads NaN
    // there and nowhere else, and the results differ.
    if (order == Order::reversed) options.strict_async = true;
    orders.push_back(options);
  }
  return orders;
}

void* dynamic_shared() {
  if (!detail::t_block) {
    std::fprintf(stderr, "kernel emulator: VB_DYNAMIC_SHARED used outside a kernel\n");
    std::abort();
  }
  return detail::t_block->dynamic_shared;
}

void run_grid(const KernelCall& call, dim3 grid, dim3 block, std::size_t dynamic_shared_bytes,
              std::source_location launch_site) {
  using namespace detail;
  Launch launch{call, grid, block, dynamic_shared_bytes, launch_site, current_options(),
                block.x * block.y * block.z};
  check_configuration(launch);
  if (launch.options.fibers == Fibers::fast && !fast_fibers_available()) launch.options.fibers = Fibers::ucontext;

  const std::uint64_t blocks = std::uint64_t{grid.x} * grid.y * grid.z;
  std::vector<unsigned> order(blocks);
  for (unsigned i = 0; i < blocks; ++i) order[i] = i;
  if (launch.options.order == Order::reversed) std::reverse(order.begin(), order.end());
  if (launch.options.order == Order::shuffled) std::shuffle(order.begin(), order.end(), std::mt19937_64(launch.options.seed));

  std::atomic<std::uint64_t> next{0};
  std::atomic<bool> stop{false};
  std::mutex error_mutex;
  std::exception_ptr error;
  const std::function<void(int)> job = [&](int) {
    struct Free {
      void operator()(std::byte* p) const { ::operator delete[](p, std::align_val_t{128}); }
    };
    // Exactly the requested size, so that AddressSanitizer sees a write past its end.
    std::unique_ptr<std::byte[], Free> shared(
        dynamic_shared_bytes ? static_cast<std::byte*>(::operator new[](dynamic_shared_bytes, std::align_val_t{128}))
                             : nullptr);
    try {
      for (std::uint64_t i; !stop && (i = next++) < blocks;) run_block(launch, order[i], shared.get());
    } catch (...) {
      std::lock_guard lock(error_mutex);
      if (!error) error = std::current_exception();
      stop = true;
    }
  };
  // Insight (kernels/emu/insight.h) observes the launch: one worker, so that blocks run one at a time.
  struct Observed {
    bool on = insight::detail::active();
    ~Observed() {
      if (on) insight::detail::launch_end();
    }
  } observed;
  if (observed.on) {
    launch.options.workers = 1;
    insight::detail::launch_begin(kernel_name(call.kernel).c_str(), call.kernel, grid, block, dynamic_shared_bytes,
                                  rt::emu::allocation_ranges());
  }
  const int workers = static_cast<int>(std::min<std::uint64_t>(std::max(1, launch.options.workers), blocks));
  if (workers == 1)
    job(0);
  else
    WorkerPool::instance().run(workers, job);
  if (error) std::rethrow_exception(error);
}

}  // namespace vb::emulator
