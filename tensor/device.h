// Devices and the memory runtime under them. The CPU runtime lives here; the CUDA backend registers the
// `cuda` (a real GPU) and `emu` (the same kernels run by the emulator) runtimes when it is built.
#pragma once
#include <cstddef>
#include <cstdint>
#include <compare>
#include <string>

#include "tensor/error.h"

namespace vb {

enum class DeviceType : uint8_t { CPU, CUDA, EMU };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  Device() = default;
  Device(DeviceType t, int i = 0) : type(t), index(i) {}
  // Parses "cpu", "cuda", "cuda:1", "emu".
  static Device parse(const std::string& s);
  std::string str() const;
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool operator==(const Device&) const = default;
  auto operator<=>(const Device&) const = default;  // an order, for maps keyed by device
};

// Memory operations for one device type. Copies name both ends so that a runtime can move data to and
// from the CPU.
class DeviceRuntime {
 public:
  virtual ~DeviceRuntime() = default;
  virtual void* allocate(size_t bytes, Device d) = 0;
  virtual void deallocate(void* p, Device d) = 0;
  // Copies `bytes` between two places at least one of which is on this runtime's device type.
  virtual void copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) = 0;
  virtual void synchronize(Device d) = 0;
  virtual int device_count() const = 0;
  // Page-locked host memory from which copies to this device run asynchronously; nullptr when the runtime
  // has none (then ordinary host memory serves). Freed blocks are reused only once the copies queued from
  // them have finished.
  virtual void* allocate_pinned(size_t bytes) { return nullptr; }
  virtual void deallocate_pinned(void* p) {}
};

void register_runtime(DeviceType t, DeviceRuntime* runtime);

// The CPU's cache of large blocks (tensor/device.cpp): the size class an allocation of `bytes` is rounded up
// to (64-byte multiples below 1 MiB, which are not cached; four classes per power of two above), the
// bytes of free blocks it holds now, and returning them all to the system. cpu_caches_blocks() is false in
// builds with AddressSanitizer, which cache nothing.
size_t cpu_size_class(size_t bytes);
// bytes rounded up to one of four classes per power of two (2^k, 1.25·2^k, 1.5·2^k, 1.75·2^k): at most 25%
// slack. The large size classes of both caching allocators (this CPU one and kernels/cuda/allocator.h's).
size_t quarter_power_size_class(size_t bytes);
bool cpu_caches_blocks();
size_t cpu_cached_bytes();
void cpu_empty_cache();
// The runtime of `t`; an Error naming the device when that backend was not built or has no device.
DeviceRuntime& runtime(DeviceType t);
bool has_runtime(DeviceType t);

// Copies bytes between any two devices (through the host when neither end is the CPU).
void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes);

}  // namespace vb

template <>
struct fmt::formatter<vb::Device> : fmt::formatter<std::string> {
  auto format(const vb::Device& d, format_context& ctx) const {
    return fmt::formatter<std::string>::format(d.str(), ctx);
  }
};
