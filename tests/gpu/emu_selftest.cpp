// The emulator's self-test kernels on a real GPU: each result must equal the emulator's (bit for
// bit, except mma.sync, whose accumulation order and rounding are the tensor cores' own and is
// judged against a float64 product). Exits 77 (skipped) without a GPU or without the CUDA build.
#include "tests/support/gpu_only.h"
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/runtime.h"

#if defined(VB_HAVE_CUDA)

#include "kernels/cuda/emu_selftest.h"
#include "tests/support/atomic_counters.h"

namespace {

namespace rt = vb::rt::cuda;
namespace gpu = vb::cuda::selftest;
namespace emu = vb::emu::selftest;
using vb::selftest::ShuffleKind;

}  // namespace

#include "tests/support/device_buffer.h"

namespace {

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

std::vector<int> random_ints(std::size_t n, int lo, int hi, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<int> v(n);
  for (int& x : v) x = std::uniform_int_distribution<int>(lo, hi)(rng);
  return v;
}

}  // namespace

TEST_CASE("shuffles: GPU equals emulator") {
  const auto in = random_ints(64, -100000, 100000, 1);
  for (ShuffleKind kind : {ShuffleKind::idx, ShuffleKind::up, ShuffleKind::down, ShuffleKind::bfly})
    for (int width : {1, 2, 4, 8, 16, 32})
      for (int operand : {0, 1, 3, 5, 8, 17, 31}) {
        std::vector<int> expected(64);
        emu::shuffle_int(in.data(), expected.data(), 64, kind, operand, width);
        DeviceBuffer<int> din(in), dout(std::vector<int>(64));
        gpu::shuffle_int(din.data, dout.data, 64, kind, operand, width);
        INFO("kind ", static_cast<int>(kind), " width ", width, " operand ", operand);
        CHECK(dout.host() == expected);
      }
}

TEST_CASE("votes, reductions and match_any: GPU equals emulator") {
  const auto predicate = random_ints(96, 0, 1, 2), values = random_ints(64, -1000, 1000, 3),
             small = random_ints(64, 0, 3, 4);
  std::vector<unsigned> ballot(96);
  std::vector<int> any(96), all(96), reduced(7 * 64);
  std::vector<unsigned> matched(64);
  emu::vote(predicate.data(), ballot.data(), any.data(), all.data(), 96);
  emu::warp_reduce(values.data(), reduced.data(), 64);
  emu::match_any(small.data(), matched.data(), 64);

  DeviceBuffer<int> dpred(predicate), dany(std::vector<int>(96)), dall(std::vector<int>(96)), dvalues(values),
      dreduced(std::vector<int>(7 * 64)), dsmall(small);
  DeviceBuffer<unsigned> dballot(std::vector<unsigned>(96)), dmatched(std::vector<unsigned>(64));
  gpu::vote(dpred.data, dballot.data, dany.data, dall.data, 96);
  gpu::warp_reduce(dvalues.data, dreduced.data, 64);
  gpu::match_any(dsmall.data, dmatched.data, 64);
  CHECK(dballot.host() == ballot);
  CHECK(dany.host() == any);
  CHECK(dall.host() == all);
  CHECK(dreduced.host() == reduced);
  CHECK(dmatched.host() == matched);
}

TEST_CASE("atomics: GPU counters equal the emulator's") {
  const vb::selftest::AtomicCounters init = vb::atomics_test::initial_counters();
  const int threads = vb::selftest::atomic_blocks * vb::selftest::atomic_threads;
  vb::selftest::AtomicCounters expected = init;
  std::vector<int> old_expected(threads);
  emu::atomics(&expected, old_expected.data());
  DeviceBuffer<vb::selftest::AtomicCounters> counters(std::vector{init});
  DeviceBuffer<int> old{std::vector<int>(threads)};
  gpu::atomics(counters.data, old.data);
  const auto got = counters.host()[0];
  // Every counter but exch is order-independent; exch's final value is whichever thread came last.
  vb::atomics_test::check_same_counters(got, expected);
  auto seen = old.host();
  seen.push_back(got.exch);
  std::sort(seen.begin(), seen.end());
  for (int i = 0; i <= threads; ++i) REQUIRE(seen[i] == i - 1);
}

TEST_CASE("shared memory block sums, cp.async and argument conversion: GPU equals emulator") {
  std::vector<float> in(4 * 256);
  for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i % 13);
  std::vector<float> sums(4), dyn_sums(4);
  emu::block_sum_static(in.data(), sums.data(), 4);
  emu::block_sum_dynamic(in.data(), dyn_sums.data(), 4, 256);
  DeviceBuffer<float> din(in), dsums(std::vector<float>(4)), ddyn(std::vector<float>(4));
  gpu::block_sum_static(din.data, dsums.data, 4);
  gpu::block_sum_dynamic(din.data, ddyn.data, 4, 256);
  CHECK(same_bits(dsums.host(), sums));
  CHECK(same_bits(ddyn.host(), dyn_sums));

  for (int bytes : {4, 8, 16})
    for (int valid : {0, 5, 37, 64 * bytes / 4}) {
      std::vector<float> src(64 * bytes / 4), expected(src.size());
      for (std::size_t i = 0; i < src.size(); ++i) src[i] = 0.5f + static_cast<float>(i);
      emu::cp_async_copy(src.data(), expected.data(), valid, bytes);
      DeviceBuffer<float> dsrc(src), dout(std::vector<float>(src.size(), -1.0f));
      gpu::cp_async_copy(dsrc.data, dout.data, valid, bytes);
      INFO(bytes, " bytes, ", valid, " valid");
      CHECK(same_bits(dout.host(), expected));
    }

  std::vector<float> scaled(64, -1.0f);
  emu::argument_conversion(scaled.data(), 3, 40);
  DeviceBuffer<float> dscaled(std::vector<float>(64, -1.0f));
  gpu::argument_conversion(dscaled.data, 3, 40);
  CHECK(same_bits(dscaled.host(), scaled));
}

TEST_CASE("ldmatrix registers: GPU equals emulator") {
  std::vector<std::uint16_t> in(4 * 64);
  for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<std::uint16_t>(1000 + i);
  for (int matrices : {1, 2, 4})
    for (bool trans : {false, true}) {
      std::vector<std::uint32_t> expected(128, 0);
      emu::ldmatrix(in.data(), expected.data(), matrices, trans);
      DeviceBuffer<std::uint16_t> din(in);
      DeviceBuffer<std::uint32_t> dout(std::vector<std::uint32_t>(128, 0));
      gpu::ldmatrix(din.data, dout.data, matrices, trans);
      INFO("x", matrices, trans ? ".trans" : "");
      CHECK(dout.host() == expected);
    }
}

TEST_CASE("mma.sync and ldmatrix + mma: GPU within float32 rounding of the emulator") {
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  std::vector<__half> a(256), b16(256), b8(128);
  std::vector<__nv_bfloat16> ab(256), bb(128);
  for (auto& x : a) x = __float2half(dist(rng));
  for (auto& x : b16) x = __float2half(dist(rng));
  for (auto& x : b8) x = __float2half(dist(rng));
  for (auto& x : ab) x = __float2bfloat16(dist(rng));
  for (auto& x : bb) x = __float2bfloat16(dist(rng));
  std::vector<float> c(128);
  for (auto& x : c) x = dist(rng);
  auto close = [](const std::vector<float>& got, const std::vector<float>& want) {
    for (std::size_t i = 0; i < got.size(); ++i)
      if (std::abs(got[i] - want[i]) > 1e-4f + 1e-5f * std::abs(want[i])) return false;
    return got.size() == want.size();
  };

  std::vector<float> d(128), dt(256);
  emu::mma_f16(a.data(), b8.data(), c.data(), d.data());
  DeviceBuffer<__half> da(a), db8(b8), db16(b16);
  DeviceBuffer<float> dc(c), dd(std::vector<float>(128)), ddt(std::vector<float>(256));
  gpu::mma_f16(da.data, db8.data, dc.data, dd.data);
  CHECK(close(dd.host(), d));

  emu::mma_bf16(ab.data(), bb.data(), c.data(), d.data());
  DeviceBuffer<__nv_bfloat16> dab(ab), dbb(bb);
  gpu::mma_bf16(dab.data, dbb.data, dc.data, dd.data);
  CHECK(close(dd.host(), d));

  emu::ldmatrix_mma(a.data(), b16.data(), dt.data());
  gpu::ldmatrix_mma(da.data, db16.data, ddt.data);
  CHECK(close(ddt.host(), dt));
}

#endif
