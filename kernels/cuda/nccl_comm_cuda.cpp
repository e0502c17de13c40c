// The `nccl` communicator of device `cuda`: kernels/cuda/nccl_comm.inc over NCCL and the real runtime
// (vb::rt::cuda), registered when the library loads, in builds that found NCCL (cmake/cuda.cmake).
#if defined(VB_HAVE_CUDA) && defined(VB_HAVE_NCCL)
#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kernels/backend.h"
#include "kernels/dist/communicator.h"
#include "kernels/dist/init.h"
#include "kernels/dist/store.h"
#include "kernels/runtime.h"

namespace vb::cuda {
namespace {

namespace device_rt = ::vb::rt::cuda;
constexpr DeviceType kCommDevice = DeviceType::CUDA;

#include "kernels/cuda/nccl_comm.inc"

[[maybe_unused]] const bool registered = [] {
  dist::register_comm_backend("nccl", DeviceType::CUDA, nccl_comm::make_communicator);
  return true;
}();

}  // namespace
}  // namespace vb::cuda

#endif  // VB_HAVE_CUDA && VB_HAVE_NCCL
