// The backend of device `emu`: kernels/cuda/backend.inc over the emulated kernels (vb::emu) and
// runtime (vb::rt::emu), registered when the library loads.
#include "kernels/backend.h"
#include "kernels/runtime.h"

namespace vb::emu {
namespace device_rt = ::vb::rt::emu;
#include "kernels/cuda/backend.inc"

namespace {
[[maybe_unused]] const bool registered = [] {
  register_backend(DeviceType::EMU, new CudaBackend(Device(DeviceType::EMU)));
  return true;
}();
}  // namespace

}  // namespace vb::emu
