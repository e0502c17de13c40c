// The backend of device `emu`: kernels/cuda/backend.inc over the emulated kernels (vb::emu) and
// runtime (vb::rt::emu), registered when the library loads. Matrix products, which a GPU hands to
// cuBLASLt, run on the CPU backend's GEMM: emulator memory is host memory, seen as CPU tensors.
#include <memory>

#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/conv.h"
#include "kernels/cuda/nn.h"
#include "kernels/cuda/nearest_centroid.h"
#include "kernels/cuda/core.h"
#include "kernels/runtime.h"

namespace vb::emu {
namespace device_rt = ::vb::rt::emu;
namespace device_kernels = ::vb::emu;
#include "kernels/cuda/backend.inc"

void device_matmul(const Tensor& a, const Tensor& b, const Tensor& bias, Tensor& out, bool accumulate) {
  Tensor host_out = backend_detail::host_view(out);
  if (accumulate)
    cpu_backend().matmul_add(backend_detail::host_view(a), backend_detail::host_view(b), host_out);
  else if (bias.defined())
    cpu_backend().matmul_bias(backend_detail::host_view(a), backend_detail::host_view(b),
                              backend_detail::host_view(bias), host_out);
  else
    cpu_backend().matmul(backend_detail::host_view(a), backend_detail::host_view(b), host_out);
}

namespace {
[[maybe_unused]] const bool registered = [] {
  register_backend(DeviceType::EMU, new CudaBackend(Device(DeviceType::EMU)));
  return true;
}();
}  // namespace

}  // namespace vb::emu
