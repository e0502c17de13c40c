#include "tensor/device.h"

#include <array>
#include <cstdlib>
#include <cstring>
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
class CpuRuntime final : public DeviceRuntime {
 public:
  void* allocate(size_t bytes, Device) override {
    size_t rounded = (bytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
    VB_CHECK(p != nullptr, "cpu: out of memory allocating {} bytes", bytes);
    return p;
  }
  void deallocate(void* p, Device) override { std::free(p); }
  void copy(void* dst, Device, const void* src, Device, size_t bytes) override {
    if (bytes) std::memmove(dst, src, bytes);
  }
  void synchronize(Device) override {}
  int device_count() const override { return 1; }
};

std::array<DeviceRuntime*, 3>& registry() {
  static CpuRuntime cpu;
  static std::array<DeviceRuntime*, 3> r = {&cpu, nullptr, nullptr};
  return r;
}

}  // namespace

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
