// The layer-norm ladder (kernels/cuda/layer_norm_ladder.cu) under the emulator against the CPU backend,
// every case under four fiber orders with identical bytes (tests/support/layer_norm_ladder_cases.h,
// shared with the GPU test); then what each rung changes, as the emulator's insight counts it.
#include "tests/support/emu_harness.h"  // first: skips the test without the emulator

#if defined(VB_HAVE_EMU)

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cuda/layer_norm_ladder.h"
#include "kernels/emu/insight.h"
#include "tests/support/layer_norm_ladder_cases.h"

#if defined(VB_HAVE_INSIGHT)
TEST_CASE("the layer-norm ladder through the emulator's insight: 32 sectors per load, then 4, then 16 for 4x the bytes") {
  using namespace vb::emulator::insight;
  const int64_t n = 64, c = 256;
  const vb::Device d = device_under_test();
  vb::Generator g{5, 0};
  const vb::Tensor x = vb::contiguous(vb::to(vb::randn({n, c}, &g), d)), w = vb::ones({c}, vb::DType::Float32, d),
                   b = vb::zeros({c}, vb::DType::Float32, d);
  vb::Tensor y = vb::empty({n, c}, vb::DType::Float32, d), mean = vb::empty({n}, vb::DType::Float32, d),
             rstd = vb::empty({n}, vb::DType::Float32, d);
  std::vector<Report> reports;
  std::string text;
  for (int rung = 1; rung <= 3; ++rung) {
    Recorder rec;
    vb::emu_insight::layer_norm_ladder(rung, static_cast<const float*>(x.data_ptr()),
                                       static_cast<const float*>(w.data_ptr()), static_cast<const float*>(b.data_ptr()),
                                       1e-5f, static_cast<float*>(y.data_ptr()), static_cast<float*>(mean.data_ptr()),
                                       static_cast<float*>(rstd.data_ptr()), n, c);
    reports.push_back(rec.report());
    text += format_report(reports.back());
  }
  MESSAGE(text);
  // Rung 1: the statistics kernels read with a thread per row: every load request touches 32 sectors.
  const KernelStats* mean_kernel = reports[0].find("ln_mean");
  REQUIRE(mean_kernel != nullptr);
  CHECK(mean_kernel->total.global_loads == (n / 32) * c);
  CHECK(mean_kernel->total.global_load_sectors == 32 * mean_kernel->total.global_loads);
  REQUIRE(reports[0].kernels.size() == 3);
  // Rung 2: x read once, 32 consecutive floats per request (and w, b the same way): 4 sectors each.
  const LineStats& r2 = reports[1].kernels.at(0).total;
  CHECK(r2.global_loads == 3 * n * c / 32);
  CHECK(r2.global_load_sectors == 4 * r2.global_loads);
  CHECK(r2.global_stores == n * c / 32 + 2 * n);  // y by whole warps; mean and rstd by lane 0 of each row's warp
  // Rung 3: a quarter of the requests, each 512 bytes in 16 sectors.
  const LineStats& r3 = reports[2].kernels.at(0).total;
  CHECK(r3.global_loads * 4 == r2.global_loads);
  CHECK(r3.global_load_sectors == 16 * r3.global_loads);
  CHECK(r3.global_load_sectors == r2.global_load_sectors);  // the same bytes, in fewer requests
  // One divergent branch per row's warp, in both: lane 0 alone writes mean and rstd.
  CHECK(r2.divergent_branches == n);
  CHECK(r3.divergent_branches == n);
}
#endif

#endif
