// The PTX helpers under the emulator: mma.sync against a float64 product on random f16 and bf16
// tiles, ldmatrix's register layouts, ldmatrix + mma computing a 16x16x16 tile, and cp.async with
// zero-fill and wait groups (also in strict mode).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <random>

#include "tests/emu/emu_test.h"  // first: skips the test when there is no emulator

#if defined(VB_HAVE_EMU)

#include "kernels/cuda/emu_selftest.h"

namespace selftest = vb::emu::selftest;

namespace {

template <class E>
E from_float(float x) {
  if constexpr (std::is_same_v<E, __half>)
    return __float2half(x);
  else
    return __float2bfloat16(x);
}
float to_float(__half x) { return __half2float(x); }
float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <class E>
std::vector<E> random_tile(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  std::vector<E> v(n);
  for (E& x : v) x = from_float<E>(dist(rng));
  return v;
}

// c (m x n) += a (m x k) b (k x n) in float64 from the low-precision inputs; all row-major.
template <class E>
std::vector<double> product(const std::vector<E>& a, const std::vector<E>& b, const std::vector<float>& c, int m,
                            int n, int k) {
  std::vector<double> d(m * n);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double sum = c.empty() ? 0.0 : c[i * n + j];
      for (int p = 0; p < k; ++p) sum += double(to_float(a[i * k + p])) * double(to_float(b[p * n + j]));
      d[i * n + j] = sum;
    }
  return d;
}

// The emulator rounds the exact sum once to float: half an ulp of float, plus slack.
void check_close(const std::vector<float>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("element ", i, ": ", got[i], " vs ", want[i]);
    CHECK(std::abs(got[i] - want[i]) <= 1e-6 + 1e-6 * std::abs(want[i]));
  }
}

template <class E, class Mma>
void check_mma(Mma mma, unsigned seed) {
  const auto a = random_tile<E>(16 * 16, seed), b = random_tile<E>(16 * 8, seed + 1);
  std::vector<float> c(16 * 8), d(16 * 8);
  std::mt19937 rng(seed + 2);
  for (float& x : c) x = std::uniform_real_distribution<float>(-4.0f, 4.0f)(rng);
  mma(a.data(), b.data(), c.data(), d.data());
  check_close(d, product(a, b, c, 16, 8, 16));
}

}  // namespace

TEST_CASE("mma.sync m16n8k16 matches a float64 product on random f16 and bf16 tiles") {
  for (unsigned seed : {1u, 2u, 3u}) {
    check_mma<__half>(selftest::mma_f16, seed);
    check_mma<__nv_bfloat16>(selftest::mma_bf16, seed);
  }
}

TEST_CASE("ldmatrix x1, x2, x4 and .trans hand each lane the PTX ISA's elements") {
  std::vector<std::uint16_t> in(4 * 64);
  for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<std::uint16_t>(1000 + i);
  auto at = [&](int j, int r, int c) { return std::uint32_t{in[j * 64 + r * 8 + c]}; };
  for (int matrices : {1, 2, 4})
    for (bool trans : {false, true}) {
      std::vector<std::uint32_t> out(32 * 4, 0);
      selftest::ldmatrix(in.data(), out.data(), matrices, trans);
      for (int lane = 0; lane < 32; ++lane)
        for (int j = 0; j < matrices; ++j) {
          const int r = lane / 4, c = 2 * (lane % 4);
          const std::uint32_t expected =
              trans ? at(j, c, r) | at(j, c + 1, r) << 16 : at(j, r, c) | at(j, r, c + 1) << 16;
          INFO("x", matrices, trans ? ".trans" : "", " lane ", lane, " register ", j);
          REQUIRE(out[lane * 4 + j] == expected);
        }
    }
}

TEST_CASE("ldmatrix + mma.sync compute a 16x16x16 tile") {
  const auto a = random_tile<__half>(16 * 16, 7), b = random_tile<__half>(16 * 16, 8);
  std::vector<float> c(16 * 16);
  selftest::ldmatrix_mma(a.data(), b.data(), c.data());
  check_close(c, product(a, b, {}, 16, 16, 16));
}

TEST_CASE("cp.async copies 4, 8 and 16 bytes, zero-fills past src-size, and honours wait groups") {
  for (bool strict : {false, true})
    for (int bytes : {4, 8, 16}) {
      const int total = 64 * bytes / 4;
      std::vector<float> in(total);
      for (int i = 0; i < total; ++i) in[i] = 1.5f + static_cast<float>(i);
      for (int valid : {0, 5, 37, total}) {
        vb::emulator::Options options = vb::emu_test::options();
        options.strict_async = strict;
        vb::emulator::ScopedOptions scoped(options);
        std::vector<float> out(total, -1.0f);
        selftest::cp_async_copy(in.data(), out.data(), valid, bytes);
        for (int i = 0; i < total; ++i) {
          INFO(bytes, " bytes, ", valid, " valid, strict ", strict, ", element ", i);
          REQUIRE(out[i] == (i < valid ? in[i] : 0.0f));
        }
      }
    }
}

#endif  // VB_HAVE_EMU
