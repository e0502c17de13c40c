// The attention ladder (kernels/cuda/attention_ladder.cu) under the emulator: what each rung changes, as the
// emulator's insight counts it (the values of every rung against the CPU backend: tests/emu/kernel_lab.cpp;
// rungs 2 and 3, the framework's kernels, have their own tests with masks, dropout and the backward:
// tests/emu/attention.cpp).
//   rung 1: the scores cross global memory — B·H·T² floats written by the first kernel, read and written by
//           the softmax (a thread per row: 32 sectors per request), read by the third;
//   rung 2: nothing but q, k, v and out (and lse) crosses global memory, in 4-sector requests;
//   rung 3: fewer, wider requests (16-byte cp.async copies and stores) and no bank conflicts in its ldmatrix
//           reads.
#include <doctest/doctest.h>

#include "tests/emu/emu_test.h"  // first: skips the test when there is no emulator

#if defined(VB_HAVE_EMU) && defined(VB_HAVE_INSIGHT)

#include <cstdint>
#include <vector>

#include "autograd/ops.h"
#include "kernels/cuda/attention_ladder.h"
#include "kernels/emu/insight.h"
#include "tensor/device.h"
#include "train/kernel_lab.h"

TEST_CASE("the attention ladder through the emulator's insight: the scores in memory, then on chip, then on the tensor cores") {
  using namespace vb::emulator::insight;
  const int64_t bh = 2, t = 64, d = 64;
  const vb::Device dev(vb::DeviceType::EMU);
  vb::Generator g{7, 0};
  std::vector<Report> reports;
  std::string text;
  for (int rung = 1; rung <= 3; ++rung) {
    const vb::DType dt = rung == 3 ? vb::DType::BFloat16 : vb::DType::Float32;
    const vb::Tensor q = vb::contiguous(vb::to(vb::to(vb::randn({bh, t, d}, &g), dt), dev)),
                     k = vb::contiguous(vb::to(vb::to(vb::randn({bh, t, d}, &g), dt), dev)),
                     v = vb::contiguous(vb::to(vb::to(vb::randn({bh, t, d}, &g), dt), dev));
    vb::Tensor out = vb::zeros({bh, t, d}, dt, dev), lse = vb::zeros({bh, t}, vb::DType::Float32, dev);
    Recorder rec;
    vb::train::run_attention_rung(rung, q, k, v, 0.125, out, lse, vb::train::attention_rung_workspace(rung, q),
                                  /*insight=*/true);
    reports.push_back(rec.report());
    text += format_report(reports.back());
  }
  MESSAGE(text);
  // Rung 1: three kernels. The softmax walks rows with a thread each: 32 sectors per request, and it reads
  // its row three times and writes it once (T² floats a head).
  REQUIRE(reports[0].kernels.size() == 3);
  const KernelStats* softmax = reports[0].find("attn_softmax");
  REQUIRE(softmax != nullptr);
  CHECK(softmax->total.global_loads == 3 * (bh * t / 32) * t);
  CHECK(softmax->total.global_load_sectors == 32 * softmax->total.global_loads);
  // The scores kernel stores them all: one float per thread, 4 sectors per warp.
  const KernelStats* scores = reports[0].find("attn_scores");
  REQUIRE(scores != nullptr);
  CHECK(scores->total.global_stores == bh * t * t / 32);
  CHECK(scores->total.global_store_sectors == 4 * scores->total.global_stores);
  // Rungs 2 and 3: one kernel; its global stores are out and lse only — the scores never leave the chip.
  REQUIRE(reports[1].kernels.size() == 1);
  REQUIRE(reports[2].kernels.size() == 1);
  const LineStats& r2 = reports[1].kernels.at(0).total;
  const LineStats& r3 = reports[2].kernels.at(0).total;
  int64_t r1_sectors = 0;
  for (const KernelStats& k : reports[0].kernels) r1_sectors += k.total.global_load_sectors;
  CHECK(r2.global_stores == bh * t * d / 32 + bh * t);  // out by warps of 32 floats; lse by one lane per row
  CHECK(r2.global_load_sectors * 10 < r1_sectors);      // the materialised rung loads > 10× the sectors
  // Rung 3 loads by 16-byte cp.async copies: 16 sectors (512 bytes) per request, and no bank conflicts.
  CHECK(r3.global_load_sectors == 16 * r3.global_loads);
  CHECK(r3.shared_wavefronts == r3.shared_ideal_wavefronts);
  CHECK(r3.global_loads * 4 < r2.global_loads);
}

#endif
