// The caching allocator of devices `cuda` and `emu` (see allocator.h), and their registration as
// DeviceRuntimes: `emu` always (this file is built with the emulator), `cuda` when this build has the
// CUDA backend and the machine a GPU, so that has_runtime and `videobert info` tell the truth.
#include "kernels/cuda/allocator.h"

#include <unistd.h>

#include <array>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>
#include <vector>

#include "kernels/runtime.h"

#if defined(VB_HAVE_CUDA)
#include <cuda_runtime.h>
#endif

namespace vb {

namespace {

bool& poison_flag() {
  static bool on = [] {
    const char* v = std::getenv("VB_POISON_ALLOC");
    return v != nullptr && v[0] != '\0' && v[0] != '0';
  }();
  return on;
}

std::string mib(size_t bytes) { return fmt::format("{:.2f} MiB", double(bytes) / (1024.0 * 1024.0)); }

// The few runtime calls the allocator makes, for one runtime (vb::rt::emu or vb::rt::cuda).
struct RuntimeCalls {
  void* (*malloc)(size_t bytes, rt::Where where);
  void (*free)(void* p, rt::Where where);
  void (*copy)(void* dst, const void* src, size_t bytes, rt::Where where);
  void (*memset_async)(void* p, int byte, size_t bytes, rt::Stream stream, rt::Where where);
  void (*synchronize)(rt::Where where);
  int (*device_count)();
  // Free and total bytes of the device.
  void (*memory_info)(size_t& free, size_t& total);
  // Pinned host memory, asynchronous copies and the events that tell when they are done.
  void* (*host_malloc)(size_t bytes, rt::Where where);
  void (*host_free)(void* p, rt::Where where);
  void (*copy_async)(void* dst, const void* src, size_t bytes, rt::Stream stream, rt::Where where);
  rt::Event (*event_create)(rt::Where where);
  void (*event_record)(rt::Event e, rt::Stream stream, rt::Where where);
  bool (*event_done)(rt::Event e, rt::Where where);
};

class CachingAllocator final : public DeviceRuntime {
 public:
  CachingAllocator(DeviceType type, RuntimeCalls calls) : type_(type), calls_(calls) {}

  void* allocate(size_t bytes, Device d) override {
    const size_t size = allocation_size_class(bytes);
    const rt::Stream stream{};  // the framework's one stream
    std::lock_guard lock(mutex_);
    void* p = take_cached(size, stream);
    if (p != nullptr) {
      ++stats_.cache_hits;
    } else {
      p = device_malloc(bytes, size, d);
      ++stats_.device_allocations;
      stats_.reserved += size;
    }
    live_[p] = Block{size, stream};
    stats_.allocated += size;
    stats_.peak_allocated = std::max(stats_.peak_allocated, stats_.allocated);
    stats_.peak_reserved = std::max(stats_.peak_reserved, stats_.reserved);
    if (poison_flag()) calls_.memset_async(p, 0xFF, size, stream, rt::Where::current());
    return p;
  }

  void deallocate(void* p, Device d) override {
    if (p == nullptr) return;
    std::lock_guard lock(mutex_);
    auto it = live_.find(p);
    VB_CHECK(it != live_.end(), "{}: freeing a pointer this allocator did not hand out", Device(type_));
    const Block block = it->second;
    live_.erase(it);
    stats_.allocated -= block.size;
    cache_[block.stream.handle].emplace(block.size, p);
  }

  // Host → device from pinned memory is queued on the framework's stream and returns at once (the kernels
  // that read dst come later on the same stream); every other copy is synchronous.
  void copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) override {
    if (!bytes) return;
    if (src_dev.is_cpu() && !dst_dev.is_cpu() && is_pinned(src, bytes)) {
      calls_.copy_async(dst, src, bytes, rt::Stream{}, rt::Where::current());
      std::lock_guard lock(mutex_);
      pending_copy_from_.insert(pinned_block_of(src));
      return;
    }
    calls_.copy(dst, src, bytes, rt::Where::current());
  }

  // Pinned blocks are cached by exact size class like device blocks. A freed block may still be the source
  // of a queued copy, so it gets an event recorded behind that copy and is handed out again only once the
  // event is done.
  void* allocate_pinned(size_t bytes) override {
    const size_t size = allocation_size_class(bytes);
    std::lock_guard lock(mutex_);
    auto range = pinned_cache_.equal_range(size);
    for (auto it = range.first; it != range.second; ++it) {
      if (it->second.event.handle && !calls_.event_done(it->second.event, rt::Where::current())) continue;
      void* p = it->second.pointer;
      if (it->second.event.handle) pinned_events_free_.push_back(it->second.event);
      pinned_cache_.erase(it);
      pinned_live_[p] = size;
      return p;
    }
    void* p = calls_.host_malloc(size, rt::Where::current());
    pinned_live_[p] = size;
    stats_.pinned_reserved += size;
    return p;
  }

  void deallocate_pinned(void* p) override {
    std::lock_guard lock(mutex_);
    auto it = pinned_live_.find(p);
    VB_CHECK(it != pinned_live_.end(), "{}: freeing pinned memory this allocator did not hand out", Device(type_));
    PinnedBlock block{p, {}};
    if (pending_copy_from_.erase(p)) {  // a copy from it may still be queued: free it behind that copy
      if (pinned_events_free_.empty()) pinned_events_free_.push_back(calls_.event_create(rt::Where::current()));
      block.event = pinned_events_free_.back();
      pinned_events_free_.pop_back();
      calls_.event_record(block.event, rt::Stream{}, rt::Where::current());
    }
    pinned_cache_.emplace(it->second, block);
    pinned_live_.erase(it);
  }
  void synchronize(Device) override { calls_.synchronize(rt::Where::current()); }
  int device_count() const override { return calls_.device_count(); }

  MemoryStats stats() {
    std::lock_guard lock(mutex_);
    return stats_;
  }
  void reset_peak() {
    std::lock_guard lock(mutex_);
    stats_.peak_allocated = stats_.allocated;
    stats_.peak_reserved = stats_.reserved;
  }
  void empty_cache() {
    std::lock_guard lock(mutex_);
    release_cache();
  }

 private:
  struct Block {
    size_t size;
    rt::Stream stream;
  };
  struct PinnedBlock {
    void* pointer;
    rt::Event event;  // recorded behind the last copy queued from it; null when none was
  };

  // The live pinned block holding [p, p + bytes), or none.
  bool is_pinned(const void* p, size_t bytes) {
    std::lock_guard lock(mutex_);
    void* block = pinned_block_of(p);
    return block && address(p) + bytes <= address(block) + pinned_live_.at(block);
  }
  static uintptr_t address(const void* p) { return reinterpret_cast<uintptr_t>(p); }
  void* pinned_block_of(const void* p) {
    auto it = pinned_live_.upper_bound(const_cast<void*>(p));  // std::map orders pointers totally
    if (it == pinned_live_.begin()) return nullptr;
    --it;
    return address(p) < address(it->first) + it->second ? it->first : nullptr;
  }

  void* take_cached(size_t size, rt::Stream stream) {
    auto bins = cache_.find(stream.handle);
    if (bins == cache_.end()) return nullptr;
    auto it = bins->second.find(size);
    if (it == bins->second.end()) return nullptr;
    void* p = it->second;
    bins->second.erase(it);
    return p;
  }

  // Every cached block back to the device; the device is synchronised first, since kernels queued
  // before a free may still use the block.
  void release_cache() {
    if (cache_.empty() && pinned_cache_.empty()) return;
    calls_.synchronize(rt::Where::current());
    for (auto& [stream, bins] : cache_) {
      for (auto& [size, p] : bins) {
        calls_.free(p, rt::Where::current());
        stats_.reserved -= size;
      }
    }
    cache_.clear();
    for (auto& [size, block] : pinned_cache_) {  // the device is idle: no copy reads them any more
      calls_.host_free(block.pointer, rt::Where::current());
      stats_.pinned_reserved -= size;
      if (block.event.handle) pinned_events_free_.push_back(block.event);
    }
    pinned_cache_.clear();
  }

  void* device_malloc(size_t bytes, size_t size, Device d) {
    try {
      return calls_.malloc(size, rt::Where::current());
    } catch (const rt::Error&) {
    }
    release_cache();  // out of memory: give the cache back and try once more
    try {
      return calls_.malloc(size, rt::Where::current());
    } catch (const rt::Error& e) {
      size_t free = 0, total = 0;
      calls_.memory_info(free, total);
      fail("{}: out of memory allocating {} bytes ({}, rounded to {}): the device has {} free of {}; this "
           "process holds {} reserved, {} of it in tensors (peak {}) — {}",
           d, bytes, mib(bytes), mib(size), mib(free), mib(total), mib(stats_.reserved), mib(stats_.allocated),
           mib(stats_.peak_allocated), e.what());
    }
  }

  DeviceType type_;
  RuntimeCalls calls_;
  std::mutex mutex_;
  MemoryStats stats_;
  std::unordered_map<void*, Block> live_;
  std::unordered_map<void*, std::multimap<size_t, void*>> cache_;  // stream → size class → blocks
  std::map<void*, size_t> pinned_live_;                              // pinned block → size class
  std::multimap<size_t, PinnedBlock> pinned_cache_;                  // size class → freed pinned blocks
  std::set<void*> pending_copy_from_;                                // live pinned blocks copied from
  std::vector<rt::Event> pinned_events_free_;                        // events for reuse
};

// ---- the two runtimes ----

void host_memory_info(size_t& free, size_t& total) {
  const long page = sysconf(_SC_PAGESIZE);
  free = size_t(sysconf(_SC_AVPHYS_PAGES)) * size_t(page);
  total = size_t(sysconf(_SC_PHYS_PAGES)) * size_t(page);
}

// Never destroyed: tensors in other static objects may be freed after this file's statics are gone.
CachingAllocator& emu_allocator() {
  static CachingAllocator& a = *new CachingAllocator(DeviceType::EMU,
                            RuntimeCalls{
                                [](size_t n, rt::Where w) { return rt::emu::malloc(n, w); },
                                [](void* p, rt::Where w) { rt::emu::free(p, w); },
                                [](void* d, const void* s, size_t n, rt::Where w) { rt::emu::copy(d, s, n, w); },
                                [](void* p, int b, size_t n, rt::Stream s, rt::Where w) {
                                  rt::emu::memset_async(p, b, n, s, w);
                                },
                                [](rt::Where w) { rt::emu::synchronize(w); },
                                [] { return rt::emu::device_count(); },
                                host_memory_info,
                                [](size_t n, rt::Where w) { return rt::emu::host_malloc(n, w); },
                                [](void* p, rt::Where w) { rt::emu::host_free(p, w); },
                                [](void* d, const void* s, size_t n, rt::Stream st, rt::Where w) {
                                  rt::emu::copy_async(d, s, n, st, w);
                                },
                                [](rt::Where w) { return rt::emu::event_create(w); },
                                [](rt::Event e, rt::Stream st, rt::Where w) { rt::emu::event_record(e, st, w); },
                                [](rt::Event e, rt::Where w) { return rt::emu::event_done(e, w); },
                            });
  return a;
}

#if defined(VB_HAVE_CUDA)
CachingAllocator& cuda_allocator() {
  static CachingAllocator& a = *new CachingAllocator(DeviceType::CUDA,
                            RuntimeCalls{
                                [](size_t n, rt::Where w) { return rt::cuda::malloc(n, w); },
                                [](void* p, rt::Where w) { rt::cuda::free(p, w); },
                                [](void* d, const void* s, size_t n, rt::Where w) { rt::cuda::copy(d, s, n, w); },
                                [](void* p, int b, size_t n, rt::Stream s, rt::Where w) {
                                  rt::cuda::memset_async(p, b, n, s, w);
                                },
                                [](rt::Where w) { rt::cuda::synchronize(w); },
                                [] { return rt::cuda::device_count(); },
                                [](size_t& free, size_t& total) {
                                  if (cudaMemGetInfo(&free, &total) != cudaSuccess) {
                                    (void)cudaGetLastError();
                                    free = total = 0;
                                  }
                                },
                                [](size_t n, rt::Where w) { return rt::cuda::host_malloc(n, w); },
                                [](void* p, rt::Where w) { rt::cuda::host_free(p, w); },
                                [](void* d, const void* s, size_t n, rt::Stream st, rt::Where w) {
                                  rt::cuda::copy_async(d, s, n, st, w);
                                },
                                [](rt::Where w) { return rt::cuda::event_create(w); },
                                [](rt::Event e, rt::Stream st, rt::Where w) { rt::cuda::event_record(e, st, w); },
                                [](rt::Event e, rt::Where w) { return rt::cuda::event_done(e, w); },
                            });
  return a;
}
#endif

CachingAllocator& allocator(DeviceType t) {
  if (t == DeviceType::EMU) return emu_allocator();
#if defined(VB_HAVE_CUDA)
  if (t == DeviceType::CUDA && rt::cuda::device_count() > 0) return cuda_allocator();
#endif
  fail("device {}: no caching allocator in this build or on this machine", Device(t));
}

[[maybe_unused]] const bool registered = [] {
  register_runtime(DeviceType::EMU, &emu_allocator());
#if defined(VB_HAVE_CUDA)
  if (rt::cuda::device_count() > 0) register_runtime(DeviceType::CUDA, &cuda_allocator());
#endif
  return true;
}();

}  // namespace

size_t allocation_size_class(size_t bytes) {
  constexpr size_t small_step = 512, large = size_t(1) << 20;
  if (bytes <= large) return std::max<size_t>(small_step, (bytes + small_step - 1) / small_step * small_step);
  return quarter_power_size_class(bytes);
}

MemoryStats memory_stats(DeviceType t) { return allocator(t).stats(); }
void reset_peak_memory_stats(DeviceType t) { allocator(t).reset_peak(); }
void empty_cache(DeviceType t) { allocator(t).empty_cache(); }
void set_poison_allocations(bool on) { poison_flag() = on; }
bool poison_allocations() { return poison_flag(); }

}  // namespace vb
