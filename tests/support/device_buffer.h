// A device array for the tests that call kernel launchers directly (tests/support/attention_cases.h,
// tests/gpu/emu_selftest.cpp): n elements of T in the memory of the includer's runtime `rt` (vb::rt::emu
// or vb::rt::cuda, a namespace alias defined before this is included), filled with 0xFF bytes (NaN in
// every float type) or with a copy of host values converted to T, freed at scope exit.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace {

template <class T>
struct DeviceBuffer {
  T* data;
  std::size_t size;
  explicit DeviceBuffer(std::size_t n) : data(static_cast<T*>(rt::malloc(std::max<std::size_t>(n, 1) * sizeof(T)))), size(n) {
    rt::memset(data, 0xFF, n * sizeof(T));
  }
  template <class U>
  explicit DeviceBuffer(const std::vector<U>& host) : DeviceBuffer(host.size()) {
    const std::vector<T> converted(host.begin(), host.end());
    rt::copy(data, converted.data(), size * sizeof(T));
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { rt::free(data); }
  std::vector<T> host() const {
    std::vector<T> h(size);
    rt::copy(h.data(), data, size * sizeof(T));
    return h;
  }
  std::vector<float> floats() const {
    const std::vector<T> h = host();
    return std::vector<float>(h.begin(), h.end());
  }
};

}  // namespace
