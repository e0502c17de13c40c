// The `nccl` communicator of device `emu`: kernels/cuda/nccl_comm.inc over the emulated NCCL
// (kernels/emu/nccl.h) and runtime (vb::rt::emu), registered when the library loads. The source that runs
// NCCL on GPUs runs here across processes on the CPU, so that CI tests it on machines without a GPU.
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
#include "kernels/emu/nccl.h"
#include "kernels/runtime.h"

namespace vb::emu {
namespace {

namespace device_rt = ::vb::rt::emu;
using namespace ::vb::nccl_emu;
constexpr DeviceType kCommDevice = DeviceType::EMU;

#include "kernels/cuda/nccl_comm.inc"

[[maybe_unused]] const bool registered = [] {
  dist::register_comm_backend("nccl", DeviceType::EMU, nccl_comm::make_communicator);
  return true;
}();

}  // namespace
}  // namespace vb::emu
