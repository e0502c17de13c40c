#include "tensor/device.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace vb {

Device Device::parse(const std::string& s) {
  auto colon = s.find(':');
  std::string kind = s.substr(0, colon);
  int index = 0;
  if (colon != std::string::npos) {
    const std::string num = s.substr(colon + 1);
    VB_CHECK(!num.empty() && num.find_first_not_of("0123456789") == std::string::npos,
             "device '{}': expected an index after ':', as in cuda:0", s);
    index = std::stoi(num);
  }
  if (kind == "cpu") return {DeviceType::CPU, index};
  if (kind == "cuda") return {DeviceType::CUDA, index};
  if (kind == "emu") return {DeviceType::EMU, index};
  fail("device '{}': expected cpu, cuda, cuda:N or emu", s);
}

std::string Device::str() const {
  switch (type) {
    case DeviceType::CPU: return "cpu";
    case DeviceType::CUDA: return index == 0 ? "cuda" : fmt::format("cuda:{}", index);
    case DeviceType::EMU: return "emu";
  }
  return "?";
}

namespace {

// CPU memory: 64-byte aligned so that vector loads and cache lines line up.
//
// Large blocks are cached. glibc serves an allocation above its mmap threshold (at most 32 MiB, often far
// less) with fresh pages from the kernel and unmaps them on free, so every training step paid for its
// large tensors (activations, a BERT-base word-embedding gradient of 94 MB) in page faults: the kernel
// zeroing pages took ~20% of a base-preset CPU step on the dev VM. A step allocates the same sizes again
// and again, so freed blocks of at least kCachedMin bytes are kept by size class and handed out again:
// - size classes: four per power of two (1, 1.25, 1.5, 1.75 MiB, 2, 2.5, ... MiB): at most 25% slack;
// - the cache holds at most VB_CPU_CACHE_MB (default: a quarter of physical memory, at most 8 GiB) of free
//   blocks; a block that would take it past that is returned to the system at once;
// - when an allocation fails, the cache is returned to the system and the allocation tried once more.
// Smaller blocks go straight to malloc, whose heap already reuses them. Builds with AddressSanitizer
// (VIDEOBERT_SANITIZE) cache nothing, so that it sees every use of a freed block.
class CpuRuntime final : public DeviceRuntime {
 public:
  static constexpr size_t kCachedMin = size_t(1) << 20;
#if defined(VB_SANITIZE) && VB_SANITIZE
  static constexpr bool kCaching = false;
#else
  static constexpr bool kCaching = true;
#endif

  void* allocate(size_t bytes, Device) override {
    if (bytes < kCachedMin || !kCaching) return system_alloc((bytes + 63) / 64 * 64);
    const size_t size = quarter_power_size_class(bytes);
    {
      std::lock_guard lock(mutex_);
      auto it = cache_.find(size);
      if (it != cache_.end()) {
        void* p = it->second;
        cache_.erase(it);
        cached_bytes_ -= size;
        live_[p] = size;
        return p;
      }
    }
    void* p = system_alloc(size);
    std::lock_guard lock(mutex_);
    live_[p] = size;
    return p;
  }
  void deallocate(void* p, Device) override {
    if (p == nullptr) return;
    {
      std::lock_guard lock(mutex_);
      auto it = live_.find(p);
      if (it != live_.end()) {
        const size_t size = it->second;
        live_.erase(it);
        if (cached_bytes_ + size <= cache_limit()) {
          cache_.emplace(size, p);
          cached_bytes_ += size;
          return;
        }
      }
    }
    std::free(p);
  }
  void copy(void* dst, Device, const void* src, Device, size_t bytes) override {
    if (bytes) std::memmove(dst, src, bytes);
  }
  void synchronize(Device) override {}
  int device_count() const override { return 1; }

  size_t cached_bytes() {
    std::lock_guard lock(mutex_);
    return cached_bytes_;
  }
  void empty_cache() {
    std::lock_guard lock(mutex_);
    for (auto& [size, p] : cache_) std::free(p);
    cache_.clear();
    cached_bytes_ = 0;
  }

 private:
  void* system_alloc(size_t bytes) {
    void* p = std::aligned_alloc(64, bytes == 0 ? 64 : bytes);
    if (p == nullptr) {  // the cached blocks may be what is missing
      empty_cache();
      p = std::aligned_alloc(64, bytes == 0 ? 64 : bytes);
    }
    VB_CHECK(p != nullptr, "cpu: out of memory allocating {} bytes", bytes);
    return p;
  }
  static size_t cache_limit() {
    static const size_t limit = [] {
      if (const char* v = std::getenv("VB_CPU_CACHE_MB"); v != nullptr && *v != '\0') {
        char* end = nullptr;
        const unsigned long long mb = std::strtoull(v, &end, 10);
        VB_CHECK(end != v && *end == '\0', "VB_CPU_CACHE_MB={}: expected a whole number of MiB", v);
        return size_t(mb) << 20;
      }
      const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
      const size_t physical = pages > 0 && page > 0 ? size_t(pages) * size_t(page) : size_t(4) << 30;
      return std::min(physical / 4, size_t(8) << 30);
    }();
    return limit;
  }

  std::mutex mutex_;
  std::multimap<size_t, void*> cache_;     // free blocks by size class
  std::unordered_map<void*, size_t> live_;  // cached-size blocks handed out, and their class
  size_t cached_bytes_ = 0;
};

// Never destroyed: tensors in other static objects may be freed during exit, after this would be.
CpuRuntime& cpu_runtime() {
  static CpuRuntime* cpu = new CpuRuntime;
  return *cpu;
}

std::array<DeviceRuntime*, 3>& registry() {
  static std::array<DeviceRuntime*, 3> r = {&cpu_runtime(), nullptr, nullptr};
  return r;
}

}  // namespace

size_t quarter_power_size_class(size_t bytes) {
  if (bytes < 4) return bytes;
  const int top = 63 - __builtin_clzll(bytes);  // 2^top ≤ bytes < 2^(top+1)
  const size_t step = size_t(1) << (top - 2);   // four classes per power of two
  return (bytes + step - 1) / step * step;
}
size_t cpu_size_class(size_t bytes) {
  return bytes < CpuRuntime::kCachedMin ? (bytes + 63) / 64 * 64 : quarter_power_size_class(bytes);
}
size_t cpu_cached_bytes() { return cpu_runtime().cached_bytes(); }
bool cpu_caches_blocks() { return CpuRuntime::kCaching; }
void cpu_empty_cache() { cpu_runtime().empty_cache(); }

void register_runtime(DeviceType t, DeviceRuntime* rt) { registry()[size_t(t)] = rt; }

bool has_runtime(DeviceType t) {
  DeviceRuntime* rt = registry()[size_t(t)];
  return rt != nullptr && rt->device_count() > 0;
}

DeviceRuntime& runtime(DeviceType t) {
  DeviceRuntime* rt = registry()[size_t(t)];
  if (rt == nullptr) {
    fail("device {}: this build has no {} backend (configure with -DVIDEOBERT_CUDA=ON and CUDA's headers)",
         Device(t).str(), Device(t).str());
  }
  return *rt;
}

void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  if (bytes == 0) return;
  if (dst_dev.is_cpu() && src_dev.is_cpu()) {
    std::memmove(dst, src, bytes);
  } else if (!dst_dev.is_cpu() && (src_dev.is_cpu() || src_dev.type == dst_dev.type)) {
    runtime(dst_dev.type).copy(dst, dst_dev, src, src_dev, bytes);
  } else if (!src_dev.is_cpu() && dst_dev.is_cpu()) {
    runtime(src_dev.type).copy(dst, dst_dev, src, src_dev, bytes);
  } else {  // two different accelerator kinds: stage through the host
    std::vector<unsigned char> host(bytes);
    runtime(src_dev.type).copy(host.data(), Device(), src, src_dev, bytes);
    runtime(dst_dev.type).copy(dst, dst_dev, host.data(), Device(), bytes);
  }
}

}  // namespace vb
