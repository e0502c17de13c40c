// The GEMM ladder (kernels/cuda/gemm_ladder.cu) under the emulator against the CPU backend, every case
// under four fiber orders (in order, reversed with strict cp.async, a shuffle, two workers) with identical
// bytes; the cases are tests/support/gemm_ladder_cases.h, shared with the GPU test. Then the ladder as the
// emulator's insight sees it (kernels/emu/insight.h): what each rung changes, in counts.
#include "tests/support/emu_harness.h"  // first: skips the test without the emulator

#if defined(VB_HAVE_EMU)

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cuda/gemm_ladder.h"
#include "kernels/emu/insight.h"
#include "tests/support/gemm_ladder_cases.h"

#if defined(VB_HAVE_INSIGHT)
// 64 × 64 × 64 through the instrumented copies (vb::emu_insight): what each rung asks of memory.
TEST_CASE("the ladder through the emulator's insight: each rung's idea shows in the counts") {
  using namespace vb::emulator::insight;
  const int64_t n = 64;
  const vb::Device d = device_under_test();
  vb::Generator g{3, 0};
  const vb::Tensor a = vb::contiguous(vb::to(vb::randn({n, n}, &g), d)), b = vb::contiguous(vb::to(vb::randn({n, n}, &g), d));
  vb::Tensor c = vb::empty({n, n}, vb::DType::Float32, d);
  std::array<LineStats, 5> total{};
  std::string text;
  for (int rung = 1; rung <= 4; ++rung) {
    Recorder rec;
    vb::emu_insight::gemm_ladder(rung, static_cast<const float*>(a.data_ptr()), static_cast<const float*>(b.data_ptr()),
                                 static_cast<float*>(c.data_ptr()), n, n, n);
    const Report r = rec.report();
    REQUIRE(r.kernels.size() == 1);
    total[size_t(rung)] = r.kernels[0].total;
    text += format_report(r);
  }
  MESSAGE(text);
  // Global load requests: every thread its own (rung 1: 64·64·64·2 loads / 32 lanes), once per 16-wide
  // tile (rung 2), once per 64-wide tile (rungs 3, 4: 64·64 of A and B per 64×64 block, 8 k at a time).
  CHECK(total[1].global_loads == 2 * n * n * n / 32);
  CHECK(total[2].global_loads == total[1].global_loads / 16);
  CHECK(total[3].global_loads == 2 * n * n / 32);
  CHECK(total[4].global_loads * 4 == total[3].global_loads);  // float4: a quarter of the requests
  // Bytes in sectors: at least what must move (A and B once each per block column / row of C).
  CHECK(32 * total[3].global_load_sectors == 2 * n * n * 4);
  CHECK(32 * total[4].global_load_sectors == 2 * n * n * 4);
  // Shared memory: rung 3 reads B with lanes 4 words apart (2-way conflicts); rung 4 reads float4s without.
  CHECK(total[2].max_ways == 1);
  CHECK(total[3].max_ways == 2);
  CHECK(total[4].max_ways == 1);
  CHECK(total[4].shared_wavefronts == total[4].shared_ideal_wavefronts);
  // Shared requests per FMA: 2 per FMA (rung 2), 8 per 16 (rung 3), 2 per 16 (rung 4), plus the stores.
  const int64_t fma_warps = n * n * n / 32;
  CHECK(total[2].shared_loads == 2 * fma_warps);
  CHECK(total[3].shared_loads == fma_warps / 2);
  CHECK(total[4].shared_loads == fma_warps / 8);

  // Rung 5 (bf16, tensor cores): ldmatrix's 16-byte rows are conflict-free (the 40-element row pitch); a
  // warp's staging loads of A (a thread per row) touch 32 sectors each, and B's transposing stores conflict
  // 4-way: what a next rung (cp.async, coalesced staging) is for.
  const vb::Tensor ha = vb::contiguous(vb::to(a, vb::DType::BFloat16)), hb = vb::contiguous(vb::to(b, vb::DType::BFloat16));
  auto run5 = [&] {
    vb::emu_insight::gemm_ladder_bf16(5, static_cast<const __nv_bfloat16*>(ha.data_ptr()),
                                      static_cast<const __nv_bfloat16*>(hb.data_ptr()), static_cast<float*>(c.data_ptr()),
                                      n, n, n);
  };
  Report r;
  {
    Recorder rec;
    run5();
    r = rec.report();
  }
  MESSAGE(format_report(r));
  REQUIRE(r.kernels.size() == 1);
  int ldmatrix_lines = 0, a_staging_lines = 0, b_transposing_lines = 0;
  for (const LineStats& l : r.kernels[0].lines) {
    if (l.shared_loads > 0 && l.global_loads == 0) {  // the ldmatrix lines: every request 16-byte rows
      ++ldmatrix_lines;
      CHECK_MESSAGE(l.shared_wavefronts == l.shared_ideal_wavefronts, l.location);
      CHECK_MESSAGE(l.shared_ideal_wavefronts == 4 * l.shared_loads, l.location);
    }
    // A's staging: 2 k-steps × 128 threads × 2 words / 32 lanes = 16 requests, lanes on 32 rows: 32 sectors each.
    a_staging_lines += l.global_loads == 16 && l.global_load_sectors == 32 * 16;
    // B's transposing 2-byte stores, lanes 80 bytes apart: 4-way conflicts.
    b_transposing_lines += l.shared_stores > 0 && l.max_ways == 4;
  }
  CHECK(ldmatrix_lines == 2);
  CHECK(a_staging_lines == 1);
  CHECK(b_transposing_lines == 1);

  // Rung 6: both tiles copied by cp.async as coalesced 16-byte words (16 sectors per 512-byte request),
  // B read by ldmatrix.trans without conflicts; A's copies, two 64-byte rows per quarter-warp at an
  // 80-byte pitch, still meet 2-way in 4 banks.
  // (One Recorder at a time: each rung's lives in a function call.)
  auto observe = [&](int rung) {
    Recorder rec;
    vb::emu_insight::gemm_ladder_bf16(rung, static_cast<const __nv_bfloat16*>(ha.data_ptr()),
                                      static_cast<const __nv_bfloat16*>(hb.data_ptr()), static_cast<float*>(c.data_ptr()),
                                      n, n, n);
    return rec.report();
  };
  const Report r6 = observe(6);
  MESSAGE(format_report(r6));
  REQUIRE(r6.kernels.size() == 1);
  const LineStats& t6 = r6.kernels[0].total;
  CHECK(t6.global_loads == 2 * 2 * (128 * 2 / 32));  // 2 k-steps × (A, B) × 2 words per thread per warp
  CHECK(t6.global_load_sectors == 16 * t6.global_loads);
  CHECK(t6.global_load_sectors * 32 == 2 * n * n * 2);  // A and B once each, bf16: the minimum
  int copy_lines = 0, conflicted_copy_lines = 0, read_lines = 0;
  for (const LineStats& l : r6.kernels[0].lines) {
    if (l.global_loads > 0 && l.shared_stores > 0) {
      ++copy_lines;
      conflicted_copy_lines += l.max_ways == 2;
    }
    if (l.shared_loads > 0) {
      ++read_lines;
      CHECK_MESSAGE(l.shared_wavefronts == l.shared_ideal_wavefronts, l.location);
    }
  }
  CHECK(copy_lines == 2);
  CHECK(conflicted_copy_lines == 1);
  CHECK(read_lines == 2);

  // Rung 7: rung 6 with A's chunks swizzled instead of padded: the same global traffic, every copy and read
  // at the ideal wavefronts (no conflicts anywhere), in less shared memory.
  const Report r7 = observe(7);
  MESSAGE(format_report(r7));
  REQUIRE(r7.kernels.size() == 1);
  const LineStats& t7 = r7.kernels[0].total;
  CHECK(t7.global_loads == t6.global_loads);
  CHECK(t7.global_load_sectors == t6.global_load_sectors);
  CHECK(t7.max_ways == 1);
  CHECK(t7.shared_wavefronts == t7.shared_ideal_wavefronts);
  CHECK(t7.shared_wavefronts < t6.shared_wavefronts);  // rung 6's conflicted copies took extra wavefronts
  CHECK(r7.kernels[0].dynamic_shared_bytes < r6.kernels[0].dynamic_shared_bytes);

  // Rung 8 against rung 7 at 128³ (one of its 128×128 tiles, four of rung 7's): each copied element serves
  // twice the rows and columns, so half the global bytes, at the minimum; one ldmatrix for every 4 mma
  // instead of 2, so half the shared reads; every copy and read still conflict-free (B swizzled too); C
  // stored as 8-byte pairs, 32 bytes a row per request: whole sectors, in half the requests.
  const int64_t big = 128;
  const vb::Tensor ba = vb::contiguous(vb::to(vb::to(vb::randn({big, big}, &g), vb::DType::BFloat16), d)),
                   bb = vb::contiguous(vb::to(vb::to(vb::randn({big, big}, &g), vb::DType::BFloat16), d));
  vb::Tensor bc = vb::empty({big, big}, vb::DType::Float32, d);
  auto observe_big = [&](int rung) {
    Recorder rec;
    vb::emu_insight::gemm_ladder_bf16(rung, static_cast<const __nv_bfloat16*>(ba.data_ptr()),
                                      static_cast<const __nv_bfloat16*>(bb.data_ptr()),
                                      static_cast<float*>(bc.data_ptr()), big, big, big);
    return rec.report();
  };
  const Report b7 = observe_big(7), b8 = observe_big(8);
  MESSAGE(format_report(b8));
  REQUIRE(b7.kernels.size() == 1);
  REQUIRE(b8.kernels.size() == 1);
  const LineStats &s7 = b7.kernels[0].total, &s8 = b8.kernels[0].total;
  CHECK(s8.global_load_sectors * 32 == 2 * big * big * 2);
  CHECK(2 * s8.global_load_sectors == s7.global_load_sectors);
  CHECK(2 * s8.shared_loads == s7.shared_loads);
  CHECK(s8.max_ways == 1);
  CHECK(s8.shared_wavefronts == s8.shared_ideal_wavefronts);
  CHECK(32 * s8.global_store_sectors == s8.global_store_bytes);
  CHECK(2 * s8.global_stores == s7.global_stores);
}
#endif

#endif
