#include "kernels/backend.h"

#include <array>

#include "kernels/cpu/cpu_backend.h"

namespace vb {

namespace {
std::array<Backend*, 3>& registry() {
  static std::array<Backend*, 3> r = {&cpu_backend(), nullptr, nullptr};
  return r;
}
}  // namespace

void register_backend(DeviceType type, Backend* b) { registry()[size_t(type)] = b; }

Backend& backend(Device device) {
  Backend* b = registry()[size_t(device.type)];
  if (b == nullptr) fail("device {}: no kernels are built for it in this build", device);
  return *b;
}

}  // namespace vb
