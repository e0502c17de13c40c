// The GEMM ladder (kernels/cuda/gemm_ladder.cu) on a device against the CPU backend, written once:
// tests/emu/gemm_ladder.cpp and tests/gpu/gemm_ladder.cpp include this after their device harness
// (tests/support/emu_harness.h, gpu_harness.h), whose device_under_test(), kern (the launchers
// kern::gemm_ladder, gemm_ladder_bf16, gemm_ladder_f16) and run_orders it uses.
//
// Tolerance: the rungs and the CPU backend sum the K products in different orders, each in float32, so
// per element |c − c_cpu| ≤ 2·K·2⁻²⁴·Σ_k |a_ik|·|b_kj| (each sum's rounding error is at most
// (K − 1)·u·Σ|terms| to first order; two sums, u = 2⁻²⁴). The bf16 rungs are compared with the CPU's
// float32 product of the same bf16-rounded inputs (the tensor cores' products of bf16 are exact in float32;
// the emulator sums each 16 of k exactly and rounds once, within the same bound). Allocations are poisoned (NaN), so an element
// a rung leaves unwritten fails. Shapes are odd against the tiles (16 for rungs 1–2, 64×64×8 for 3–4):
// one element, a K of 0, sizes one short of and one past the tiles, and not multiples of anything where
// the rung allows it (rung 4 needs K and N multiples of 4).
#pragma once

#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "kernels/cuda/gemm_ladder.h"
#include "tests/support/check.h"

namespace gemm_ladder_test {

using namespace vb;

using vb::test::bytes_of;

inline Tensor from_bytes(const std::vector<uint8_t>& b, const Shape& shape) {
  Tensor t = empty(shape, DType::Float32);
  if (!b.empty()) std::memcpy(t.data_ptr(), b.data(), b.size());
  return t;
}

// One rung on one shape: checked against the CPU backend within the bound above.
// `input`: the rung's inputs, float32, bf16 or (for the tensor-core rungs that take it) f16.
inline void check_rung(int rung, int64_t m, int64_t n, int64_t k, uint64_t seed, DType input = DType::Float32) {
  CAPTURE(rung);
  CAPTURE(m);
  CAPTURE(n);
  CAPTURE(k);
  CAPTURE(input);
  Generator g{seed, 0};
  const bool low = input != DType::Float32;
  Tensor a = randn({m, k}, &g), b = randn({k, n}, &g);
  if (low) {  // the inputs the rung sees, back in float32 for the reference
    a = to(to(a, input), DType::Float32);
    b = to(to(b, input), DType::Float32);
  }
  const Device d = device_under_test();
  const std::vector<uint8_t> bytes = run_orders([&] {
    Tensor dc = empty({m, n}, DType::Float32, d);
    if (low) {
      const Tensor da = contiguous(to(to(a, input), d)), db = contiguous(to(to(b, input), d));
      auto* pc = static_cast<float*>(dc.data_ptr());
      if (input == DType::BFloat16)
        kern::gemm_ladder_bf16(rung, static_cast<const __nv_bfloat16*>(da.data_ptr()),
                        static_cast<const __nv_bfloat16*>(db.data_ptr()), pc, m, n, k);
      else
        kern::gemm_ladder_f16(rung, static_cast<const __half*>(da.data_ptr()), static_cast<const __half*>(db.data_ptr()), pc,
                       m, n, k);
    } else {
      const Tensor da = contiguous(to(a, d)), db = contiguous(to(b, d));
      kern::gemm_ladder(rung, static_cast<const float*>(da.data_ptr()), static_cast<const float*>(db.data_ptr()),
                 static_cast<float*>(dc.data_ptr()), m, n, k);
    }
    return bytes_of(dc);
  });
  const Tensor c = from_bytes(bytes, {m, n});
  const std::vector<double> got = c.to_vector(), want = matmul(a, b).to_vector(),
                            bound = matmul(abs(a), abs(b)).to_vector();
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double allowed = 2.0 * double(k) * std::ldexp(1.0, -24) * bound[i];
    const double excess = std::isfinite(got[i]) ? std::abs(got[i] - want[i]) - allowed : INFINITY;
    if (excess > worst || !std::isfinite(excess)) {
      worst = excess;
      at = i;
    }
  }
  CHECK_MESSAGE(worst <= 0, "rung ", rung, ": element ", at, " is ", got.empty() ? 0.0 : got[at], ", the CPU gives ",
                want.empty() ? 0.0 : want[at]);
}

}  // namespace gemm_ladder_test

TEST_CASE("every rung of the GEMM ladder against the CPU backend, on shapes odd against its tiles") {
  using gemm_ladder_test::check_rung;
  const std::vector<std::array<int64_t, 3>> any_shape = {{1, 1, 1}, {3, 5, 0}, {15, 17, 9}, {16, 16, 16}, {33, 31, 47},
                                                         {65, 63, 17}, {64, 128, 64}};
  const std::vector<std::array<int64_t, 3>> multiples_of_4 = {{1, 4, 4}, {3, 8, 0}, {65, 68, 12}, {64, 64, 64},
                                                              {100, 36, 20}};
  // K a multiple of 8 (rung 5), M and N free: one past and one short of its 64×64 tiles and 32-wide k steps.
  const std::vector<std::array<int64_t, 3>> k_multiple_of_8 = {{1, 1, 8}, {3, 5, 0}, {15, 17, 16}, {65, 63, 40},
                                                               {64, 128, 64}, {33, 31, 48}};
  // K and N multiples of 8 (rungs 6 to 8), M free; K over several 32-wide steps (the double buffer, and rung
  // 8's three stages reused); one past rung 8's 128×128 tiles in M and two in N.
  const std::vector<std::array<int64_t, 3>> kn_multiples_of_8 = {{1, 8, 8},       {65, 72, 40},   {33, 24, 96},
                                                                 {130, 136, 200}, {129, 264, 72}};
  uint64_t seed = 1;
  for (int rung = 1; rung <= vb::ladder::kGemmRungs; ++rung) {
    const vb::ladder::Rung& r = vb::ladder::kGemmRungTable[rung - 1];
    std::vector<vb::DType> inputs = {std::string(r.dtype) == "bf16" ? vb::DType::BFloat16 : vb::DType::Float32};
    if (r.f16_too) inputs.push_back(vb::DType::Float16);
    for (vb::DType input : inputs)
      for (const auto* shapes : {&kn_multiples_of_8, &k_multiple_of_8, &multiples_of_4, &any_shape})
        for (const auto& s : *shapes)  // every shape the rung takes
          if (std::string(vb::ladder::gemm_shape_requirement(rung, s[0], s[1], s[2])).empty())
            check_rung(rung, s[0], s[1], s[2], seed++, input);
  }
}

TEST_CASE("the GEMM ladder refuses a rung that does not exist and a shape a rung cannot take") {
  const vb::Device d = device_under_test();
  vb::Tensor x = vb::zeros({8, 8}, vb::DType::Float32, d);
  auto* p = static_cast<float*>(x.data_ptr());
  auto message = [&](int rung, int64_t m, int64_t n, int64_t k) -> std::string {
    try {
      kern::gemm_ladder(rung, p, p, p, m, n, k);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  CHECK(message(0, 2, 2, 2).find("no rung 0") != std::string::npos);
  CHECK(message(vb::ladder::kGemmRungs + 1, 2, 2, 2).find("no rung") != std::string::npos);
  CHECK(message(4, 2, 6, 4).find("multiples of 4") != std::string::npos);
  CHECK(message(1, -1, 2, 2).find("shape") != std::string::npos);
  CHECK(message(5, 8, 8, 8).find("takes bf16") != std::string::npos);  // the float32 entry point
  CHECK(message(6, 8, 8, 8).find("takes bf16") != std::string::npos);
  CHECK(message(7, 8, 8, 8).find("takes bf16") != std::string::npos);
  CHECK(message(8, 8, 8, 8).find("takes bf16") != std::string::npos);
}
