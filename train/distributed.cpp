#include "train/distributed.h"

#include <omp.h>

#include <cstdlib>
#include <thread>

#include "kernels/runtime.h"

namespace vb::train {

std::unique_ptr<dist::ProcessGroup> join_job(const nlohmann::json& c, Device device) {
  const dist::Launch launch = dist::detect_launch();
  if (c["dist"] == "none") {
    VB_CHECK(!launch.distributed(), "config: dist=none, but this process is {}: every rank would train alone and "
             "write the same run folder; use dist=auto", launch.describe());
    return nullptr;
  }
  if (!launch.distributed()) return nullptr;
  if (device.is_cpu() && !std::getenv("OMP_NUM_THREADS")) {
    const int cores = int(std::thread::hardware_concurrency());
    omp_set_num_threads(std::max(1, cores / std::max(1, launch.local_world)));
  }
  if (device.type == DeviceType::CUDA) {
    // One GPU per rank, GPU = local rank, as torchrun and llm.c do: it becomes the process's `cuda`.
    const int gpus = runtime(DeviceType::CUDA).device_count();
    VB_CHECK(launch.local_rank < gpus, "{}: this node has {} GPU{}, one per rank is needed (NCCL refuses two ranks "
             "on one GPU); start at most {} ranks per node", launch.describe(), gpus, gpus == 1 ? "" : "s", gpus);
#if defined(VB_HAVE_CUDA)
    rt::cuda::set_device(launch.local_rank);
#endif
  }
  dist::CommOptions o;
  o.device = device;
  o.timeout_s = c["dist_timeout"];
  return dist::init_process_group(launch, o);
}

std::string rank_prefix() {
  try {
    const dist::Launch launch = dist::detect_launch();
    return launch.distributed() ? fmt::format("[rank {}] ", launch.rank) : "";
  } catch (const Error&) {
    return "";
  }
}

}  // namespace vb::train
