// `videobert kernels` (train/kernel_lab.h) under the emulator: the list shows the GEMM ladder's rungs; a
// rung runs, agrees with the CPU backend and, with --insight, prints the emulator's counts and draws one
// warp's accesses; bad ops, rungs, shapes and devices are errors that name them.
#include <doctest/doctest.h>

#include "tests/emu/emu_test.h"  // first: skips the test when there is no emulator

#if defined(VB_HAVE_EMU)

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "kernels/cuda/attention_ladder.h"
#include "kernels/cuda/conv_ladder.h"
#include "kernels/cuda/gemm_ladder.h"
#include "kernels/cuda/layer_norm_ladder.h"
#include "kernels/cuda/occupancy.h"
#include "tensor/error.h"
#include "tests/support/check.h"
#include "train/kernel_lab.h"

using namespace vb;
using namespace vb::train;

namespace {
bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }
}  // namespace

TEST_CASE("kernels list shows every rung of every ladder with what it adds") {
  const std::string list = kernel_list();
  for (const auto* table : {&ladder::kGemmRungTable[0], &ladder::kLayerNormRungTable[0],
                            &ladder::kAttentionRungTable[0], &ladder::kConvRungTable[0]}) {
    const int count = table == &ladder::kGemmRungTable[0]        ? ladder::kGemmRungs
                      : table == &ladder::kLayerNormRungTable[0] ? ladder::kLayerNormRungs
                      : table == &ladder::kConvRungTable[0]      ? ladder::kConvRungs
                                                                 : ladder::kAttentionRungs;
    for (int i = 0; i < count; ++i) {
      CHECK_MESSAGE(contains(list, table[i].name), table[i].name);
      CHECK_MESSAGE(contains(list, table[i].adds), table[i].adds);
    }
  }
  CHECK(contains(list, "attention      3  bf16      tensor cores"));
  CHECK(contains(list, "conv           3  bf16      tensor cores"));
  CHECK(contains(list, "gemm           8  bf16,f16  64x64 warp tiles"));
}

// Every rung of `op` on emu at each shape agrees with the CPU backend; `--device cpu` runs the reference,
// whose report names `reference`.
static void check_every_rung(const std::string& op, int rungs, std::initializer_list<const char*> shapes,
                      const std::string& reference) {
  for (const char* shape : shapes) {
    for (int rung = 1; rung <= rungs; ++rung) {
      KernelRunOptions o;
      o.op = op;
      o.rung = rung;
      o.shape = shape;
      const KernelRunResult r = run_kernel(o);
      CHECK_MESSAGE(r.ok, r.text);
      CHECK(contains(r.text, "within"));
    }
  }
  KernelRunOptions o;
  o.op = op;
  o.shape = *shapes.begin();
  o.device = "cpu";
  o.repeat = 1;
  CHECK(contains(run_kernel(o).text, reference));
}

TEST_CASE("kernels run conv: every rung on emu agrees with the CPU backend; cpu runs the reference") {
  // Odd sizes against the 64×64 tiles, C not a multiple of 16, stride 1 and 2.
  check_every_rung("conv", ladder::kConvRungs, {"2x7x9x20x24x3x1", "1x8x8x16x40x3x2", "1x5x5x3x8x1x1"},
                   "the CPU backend's conv2d");
}

TEST_CASE("kernels run attention: every rung on emu agrees with the CPU backend; cpu runs the reference") {
  // T = 37 and 70: partial tiles of 32 (rung 2) and 64 (rung 3) rows; D = 24: not a multiple of 16.
  check_every_rung("attention", ladder::kAttentionRungs, {"1x2x37x24", "2x1x70x64"}, "the CPU backend's attention");
}

TEST_CASE("kernels run layer_norm: every rung on emu agrees with the CPU backend; cpu runs the reference") {
  check_every_rung("layer_norm", ladder::kLayerNormRungs, {"9x100"}, "the CPU backend's layer_norm");
}

TEST_CASE("kernels run gemm: every rung on emu agrees with the CPU backend; cpu runs the reference") {
  check_every_rung("gemm", ladder::kGemmRungs, {"33x40x24"}, "the CPU backend's GEMM");  // N, K multiples of 8: every rung
  // The tensor-core rungs with float16 inputs (the same kernels, instantiated for __half).
  for (int rung = 1; rung <= ladder::kGemmRungs; ++rung) {
    if (!ladder::kGemmRungTable[rung - 1].f16_too) continue;
    KernelRunOptions o;
    o.rung = rung;
    o.shape = "33x40x24";
    o.dtype = "f16";
    const KernelRunResult r = run_kernel(o);
    CHECK_MESSAGE(r.ok, r.text);
    CHECK(contains(r.text, "33x40x24 f16 on emu"));
  }
}

#if defined(VB_HAVE_INSIGHT)
TEST_CASE("kernels run --insight prints the counts per line and --svg draws one warp's accesses") {
  KernelRunOptions o;
  o.rung = 2;
  o.shape = "32x32x32";
  o.insight = true;
  o.svg = (std::filesystem::temp_directory_path() / "vb_kernel_lab_warp.svg").string();
  const KernelRunResult r = run_kernel(o);
  MESSAGE(r.text);
  CHECK(r.ok);
  CHECK(contains(r.text, "gemm_shared"));
  CHECK(contains(r.text, "sect/req"));
  CHECK(contains(r.text, "gemm_ladder.cu:"));  // counts on the kernel's source lines
  CHECK(contains(r.text, "occupancy of"));
  CHECK(contains(r.text, "sm_90 32 registers"));  // gemm_shared: 256 threads, 2 KiB: 8 blocks, 100%
  std::ifstream in(o.svg);
  std::stringstream svg;
  svg << in.rdbuf();
  CHECK(contains(svg.str(), "<svg"));
  CHECK(contains(svg.str(), "</svg>"));
  CHECK(contains(svg.str(), "gemm_ladder.cu:"));
  std::filesystem::remove(o.svg);
}
#endif

TEST_CASE("the occupancy estimate against hand-worked cases") {
  using vb::ladder::occupancy;
  // 256 threads, 72 registers: 2,304 registers per warp, 8 warps per block: ⌊65,536 / 18,432⌋ = 3 blocks,
  // 24 of 64 warps.
  auto o = occupancy(80, 256, 72, 4096);
  CHECK(o.blocks == 3);
  CHECK(o.fraction == doctest::Approx(24.0 / 64));
  CHECK(std::string(o.limit) == "registers");
  // 32 registers, no shared memory: 8 blocks of 8 warps fill the 64 warps.
  o = occupancy(90, 256, 32, 0);
  CHECK(o.blocks == 8);
  CHECK(o.fraction == 1.0);
  CHECK(std::string(o.limit) == "warps");
  // 100 KiB of shared memory per block: one block on sm_80 (164 KiB), two on sm_90 (228 KiB).
  CHECK(occupancy(80, 128, 32, 100 * 1024).blocks == 1);
  CHECK(occupancy(90, 128, 32, 100 * 1024).blocks == 2);
  CHECK(std::string(occupancy(90, 128, 32, 100 * 1024).limit) == "shared memory");
  // 168 registers (rung 2 of the layer-norm ladder on sm_90): 5,376 per warp, 4 warps per block: 3 blocks.
  CHECK(occupancy(90, 128, 168, 0).blocks == 3);
  // 32-thread blocks are limited by the 32 blocks an SM holds: half the warps.
  o = occupancy(80, 32, 16, 0);
  CHECK(o.blocks == 32);
  CHECK(std::string(o.limit) == "blocks");
  CHECK(vb::ladder::ladder_resources("vb::emu::(anonymous namespace)::ln_warp(float const*)")->registers_sm90 == 168);
  CHECK(vb::ladder::ladder_resources("vb::emu::(anonymous namespace)::ln_warp_vectorised(float const*)")->registers_sm90 == 56);
}

TEST_CASE("kernels run refuses what it cannot do, naming it") {
  auto error = [](KernelRunOptions o) { return vb::test::error_of([&] { run_kernel(o); }); };
  KernelRunOptions o;
  o.op = "softmax";
  CHECK(contains(error(o), "no ladder for op 'softmax'"));
  o = {};
  o.rung = 9;
  CHECK(contains(error(o), "no rung 9"));
  o = {};
  o.shape = "12x3";
  CHECK(contains(error(o), "--shape 12x3"));
  o = {};
  o.shape = "8x6x4";
  o.rung = 4;
  CHECK(contains(error(o), "multiples of 4"));
  o = {};
  o.device = "cpu";
  o.insight = true;
  CHECK(contains(error(o), "--device emu"));
  o = {};
  o.svg = "x.svg";
  CHECK(contains(error(o), "add --insight"));
  o = {};
  o.op = "layer_norm";
  o.shape = "4x2048";
  o.rung = 2;
  CHECK(contains(error(o), "C ≤ 1024"));
  o.shape = "4by8";
  CHECK(contains(error(o), "--shape 4by8"));
  o = {};
  o.dtype = "bf16";
  CHECK(contains(error(o), "gemm rung 1 takes f32"));
  o.dtype = "f16";  // gemm rung 1 is float32; f16 is for the tensor-core rungs
  CHECK(contains(error(o), "gemm rung 1 takes f32 inputs"));
  o.rung = 5;
  o.dtype = "f8";
  CHECK(contains(error(o), "expected f32 or bf16 (or f16"));
  o = {};
  o.op = "conv";
  o.dtype = "f16";
  CHECK(contains(error(o), "expected f32 or bf16 (or f16, for the GEMM's tensor-core rungs)"));
  o = {};
  o.op = "attention";
  o.shape = "1x2x16x200";
  CHECK(contains(error(o), "head dims D from 1 to 128"));
  o.shape = "1x2x16";
  CHECK(contains(error(o), "--shape 1x2x16"));
  o.shape = "1x2x16x8";
  o.rung = 3;
  o.dtype = "f32";
  CHECK(contains(error(o), "attention rung 3 takes bf16"));
  o = {};
  o.op = "conv";
  o.shape = "1x8x8x16x16x3";
  CHECK(contains(error(o), "--shape 1x8x8x16x16x3"));
  o.shape = "1x8x8x0x16x3x1";
  CHECK(contains(error(o), "C, K and S must be at least 1"));
  o.shape = "1x0x8x4x4x3x1";
  CHECK(contains(error(o), "OH, OW ≥ 1"));
}

#endif
