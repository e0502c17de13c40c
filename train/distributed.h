// How a training command joins a data-parallel job (docs/DISTRIBUTED.md): the launcher's environment says
// this process's rank (kernels/dist/launch.h); the config's `dist` says whether to use it (auto: data
// parallel when the world has more than one rank; none: one process, and an error if a launcher started
// several), and `dist_timeout` how long any collective may wait.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "kernels/dist/init.h"

namespace vb::train {

// The job's process group, or null for one process. On a CPU with several ranks per node and no
// OMP_NUM_THREADS, each rank takes its share of the cores for its OpenMP threads (as torchrun sets
// OMP_NUM_THREADS), so that the ranks do not oversubscribe the machine.
std::unique_ptr<dist::ProcessGroup> join_job(const nlohmann::json& config, Device device);

// "[rank r] " when the launcher's environment makes this process rank r of several, else "": the prefix
// of every error and warning a rank prints.
std::string rank_prefix();

}  // namespace vb::train
