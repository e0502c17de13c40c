#include "train/info.h"

#include <omp.h>

#include <Eigen/Core>
#include <nlohmann/json.hpp>

#include "kernels/backend.h"
#include "kernels/cpu/conv_onednn.h"
#include "kernels/dist/init.h"
#include "tensor/device.h"

namespace vb {

std::string build_info() {
  std::string out;
  auto line = [&](const std::string& key, const std::string& value) { out += fmt::format("{:<16}{}\n", key + ":", value); };
  line("videobert", VB_VERSION);
  line("build type", VB_BUILD_TYPE);
  line("compiler", VB_CXX_COMPILER);
  line("CUDA option", VB_CUDA_SETTING);
#if defined(VB_HAVE_CUDA)
  line("CUDA backend", "built (kernels compiled by nvcc)");
#else
  line("CUDA backend", "not built");
#endif
#if defined(VB_HAVE_EMU)
  line("emulator", "built (CUDA kernels run on the CPU as device 'emu')");
#else
  line("emulator", "not built");
#endif
  line("sanitizers", VB_SANITIZE ? "address, undefined" : "off");
  std::string devices = "cpu";
  for (DeviceType t : {DeviceType::CUDA, DeviceType::EMU}) {
    if (!has_runtime(t)) continue;
    const int n = runtime(t).device_count();
    devices += t == DeviceType::CUDA ? fmt::format(", cuda ({} GPU{})", n, n == 1 ? "" : "s") : ", emu";
  }
  line("devices", devices);
  line("comm backends", dist::available_backends());
  line("CPU conv", cpu::conv_onednn_info());
  line("CPU threads", fmt::format("{} (OpenMP; set OMP_NUM_THREADS to change)", omp_get_max_threads()));
  line("Eigen", fmt::format("{}.{}.{}", EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION, EIGEN_MINOR_VERSION));
  line("fmt", fmt::format("{}.{}.{}", FMT_VERSION / 10000, FMT_VERSION / 100 % 100, FMT_VERSION % 100));
  line("nlohmann-json", fmt::format("{}.{}.{}", NLOHMANN_JSON_VERSION_MAJOR, NLOHMANN_JSON_VERSION_MINOR,
                                    NLOHMANN_JSON_VERSION_PATCH));
  line("OpenMP", fmt::format("{}", _OPENMP));
  return out;
}

}  // namespace vb
