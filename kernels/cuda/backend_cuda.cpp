// The backend of device `cuda`: kernels/cuda/backend.inc over the nvcc-compiled kernels (vb::cuda) and
// the real runtime (vb::rt::cuda), registered when the library loads on a machine with a GPU.
#if defined(VB_HAVE_CUDA)
#include "kernels/backend.h"
#include "kernels/runtime.h"

namespace vb::cuda {
namespace device_rt = ::vb::rt::cuda;
#include "kernels/cuda/backend.inc"

namespace {
[[maybe_unused]] const bool registered = [] {
  if (device_rt::device_count() > 0) register_backend(DeviceType::CUDA, new CudaBackend(Device(DeviceType::CUDA)));
  return true;
}();
}  // namespace

}  // namespace vb::cuda
#endif
