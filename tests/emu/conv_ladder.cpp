// The convolution ladder (kernels/cuda/conv_ladder.cu) under the emulator: what each rung changes, as the
// emulator's insight counts it (the values of every rung against the CPU backend: tests/emu/kernel_lab.cpp;
// rungs 2 and 3, the framework's kernels, have their own tests with groups, strides, dilation and both
// gradients: tests/emu/conv.cpp).
//   rung 1: every multiply-add loads its two operands from global memory — x as a broadcast (1 sector), w
//           from 32 filters at once (32 sectors): 16.5 sectors per request on average;
//   rung 2: the operands cross global memory once per tile, gathered into shared memory and read there
//           without bank conflicts;
//   rung 3: the same gathers in half the requests (bf16), the fragments read by ldmatrix without conflicts.
#include <doctest/doctest.h>

#include "tests/emu/emu_test.h"  // first: skips the test when there is no emulator

#if defined(VB_HAVE_EMU) && defined(VB_HAVE_INSIGHT)

#include <cstdint>
#include <vector>

#include "autograd/ops.h"
#include "kernels/cuda/conv_ladder.h"
#include "kernels/emu/insight.h"
#include "tensor/device.h"
#include "train/kernel_lab.h"

TEST_CASE("the convolution ladder through the emulator's insight: direct loads, then gathered tiles, then the tensor cores") {
  using namespace vb::emulator::insight;
  const int64_t n = 1, h = 8, w = 8, c = 32, o = 32;
  const vb::Device dev(vb::DeviceType::EMU);
  vb::Conv2dParams p;
  p.pad_h = p.pad_w = 1;
  vb::Generator g{9, 0};
  std::vector<Report> reports;
  std::string text;
  for (int rung = 1; rung <= 3; ++rung) {
    const vb::DType dt = rung == 3 ? vb::DType::BFloat16 : vb::DType::Float32;
    const vb::Tensor x = vb::contiguous(vb::to(vb::to(vb::randn({n, h, w, c}, &g), dt), dev)),
                     k = vb::contiguous(vb::to(vb::to(vb::randn({o, 3, 3, c}, &g), dt), dev));
    vb::Tensor y = vb::zeros({n, h, w, o}, dt, dev);
    Recorder rec;
    vb::train::run_conv_rung(rung, x, k, p, y, /*insight=*/true);
    reports.push_back(rec.report());
    text += format_report(reports.back());
  }
  MESSAGE(text);
  for (const Report& r : reports) REQUIRE(r.kernels.size() == 1);
  const LineStats &r1 = reports[0].kernels[0].total, &r2 = reports[1].kernels[0].total, &r3 = reports[2].kernels[0].total;
  // Rung 1: one load of x (a broadcast: 1 sector) and one of w (32 filters: 32 sectors) per tap and channel:
  // 16.5 sectors per request, and y stored once, 32 floats (4 sectors) per warp.
  CHECK(2 * r1.global_load_sectors == 33 * r1.global_loads);
  CHECK(r1.global_stores == n * h * w * o / 32);
  CHECK(r1.global_store_sectors == 4 * r1.global_stores);
  CHECK(r1.shared_loads + r1.shared_stores == 0);
  // Rung 2: the operands staged in shared memory (read there without conflicts); > 50× fewer sectors from
  // global memory; y stored the same way.
  CHECK(r2.global_load_sectors * 50 < r1.global_load_sectors);
  CHECK(r2.shared_wavefronts == r2.shared_ideal_wavefronts);
  CHECK(r2.global_stores == r1.global_stores);
  // Rungs 2 and 3 gather coalesced: the lanes of a row read its consecutive k together, so every sector a
  // load touches is used whole (with lanes along rows, one 16-byte word per pixel, it was 28.6 sectors
  // per request and twice the bytes).
  CHECK(32 * r2.global_load_sectors == r2.global_load_bytes);
  CHECK(32 * r3.global_load_sectors == r3.global_load_bytes);
  // Rung 3: bf16 halves the gathers' bytes; ldmatrix and the staging stores at the ideal wavefronts.
  CHECK(2 * r3.global_load_bytes == r2.global_load_bytes);
  CHECK(r3.shared_wavefronts == r3.shared_ideal_wavefronts);
  // Rung 3's epilogue goes through shared memory and stores whole rows of C, a column pair per lane: every
  // sector whole (from the fragments directly, 8 rows × 16 bytes per request, it was twice the sectors).
  CHECK(r3.global_store_sectors * 32 == r3.global_store_bytes);
}

#endif
