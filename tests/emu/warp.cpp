// Warp intrinsics under the emulator: every shuffle kind and width, votes, reductions and
// match_any, against expectations computed here from CUDA's documented semantics.
#include <doctest/doctest.h>

#include <cstring>

#include "tests/emu/emu_test.h"  // first: skips the test when there is no emulator

#if defined(VB_HAVE_EMU)

#include "kernels/cuda/emu_selftest.h"

using vb::selftest::ShuffleKind;
namespace selftest = vb::emu::selftest;

namespace {

// The lane thread t reads from, per the CUDA Programming Guide (not the PTX formula the emulator
// uses): sub-warps of `width`; idx wraps within its sub-warp; up/down/xor leaving it (xor: only
// upwards) return the thread's own value.
int shuffle_source(int t, ShuffleKind kind, int operand, int width) {
  const int lane = t % 32, warp = t - lane, first = lane / width * width, end = first + width;
  int src = lane;
  switch (kind) {
    case ShuffleKind::idx: src = first + operand % width; break;
    case ShuffleKind::up: src = lane - operand >= first ? lane - operand : lane; break;
    case ShuffleKind::down: src = lane + operand < end ? lane + operand : lane; break;
    case ShuffleKind::bfly: src = (lane ^ operand) < end ? lane ^ operand : lane; break;
  }
  return warp + src;
}

const char* name(ShuffleKind kind) {
  switch (kind) {
    case ShuffleKind::idx: return "__shfl_sync";
    case ShuffleKind::up: return "__shfl_up_sync";
    case ShuffleKind::down: return "__shfl_down_sync";
    case ShuffleKind::bfly: return "__shfl_xor_sync";
  }
  return "";
}

constexpr ShuffleKind kinds[] = {ShuffleKind::idx, ShuffleKind::up, ShuffleKind::down, ShuffleKind::bfly};

}  // namespace

TEST_CASE("shuffles of every kind, width and operand move the values CUDA says") {
  constexpr int threads = 64;
  const auto in = vb::emu_test::random_ints<int>(threads, -1000000, 1000000, 1);
  std::vector<int> out(threads);
  for (ShuffleKind kind : kinds)
    for (int width : {1, 2, 4, 8, 16, 32})
      for (int operand : {0, 1, 3, 5, 8, 17, 31}) {
        selftest::shuffle_int(in.data(), out.data(), threads, kind, operand, width);
        for (int t = 0; t < threads; ++t) {
          INFO(name(kind), " width ", width, " operand ", operand, " thread ", t);
          REQUIRE(out[t] == in[shuffle_source(t, kind, operand, width)]);
        }
      }
}

TEST_CASE("shuffles move 8-byte values whole") {
  constexpr int threads = 32;
  std::vector<double> in(threads), out(threads);
  for (int t = 0; t < threads; ++t) in[t] = 1.0 / (t + 1) + 1e300 * (t % 3);
  for (ShuffleKind kind : kinds)
    for (int width : {4, 32}) {
      selftest::shuffle_double(in.data(), out.data(), threads, kind, 3, width);
      for (int t = 0; t < threads; ++t) {
        INFO(name(kind), " width ", width, " thread ", t);
        REQUIRE(std::memcmp(&out[t], &in[shuffle_source(t, kind, 3, width)], sizeof(double)) == 0);
      }
    }
}

TEST_CASE("ballot, any and all vote over each warp") {
  constexpr int threads = 96;
  auto predicate = vb::emu_test::random_ints<int>(threads, 0, 1, 2);
  for (int t = 32; t < 64; ++t) predicate[t] = 1;  // warp 1: all true
  for (int t = 64; t < 96; ++t) predicate[t] = 0;  // warp 2: all false
  std::vector<unsigned> ballot(threads);
  std::vector<int> any(threads), all(threads);
  selftest::vote(predicate.data(), ballot.data(), any.data(), all.data(), threads);
  for (int t = 0; t < threads; ++t) {
    unsigned expected = 0;
    for (int lane = 0; lane < 32; ++lane) expected |= (predicate[t / 32 * 32 + lane] ? 1u : 0u) << lane;
    INFO("thread ", t);
    CHECK(ballot[t] == expected);
    CHECK(any[t] == (expected != 0));
    CHECK(all[t] == (expected == 0xffffffffu));
  }
}

TEST_CASE("__reduce_*_sync combine the warp's values") {
  constexpr int threads = 64;
  const auto in = vb::emu_test::random_ints<int>(threads, -1000, 1000, 3);
  std::vector<int> out(7 * threads);
  selftest::warp_reduce(in.data(), out.data(), threads);
  for (int w = 0; w < threads / 32; ++w) {
    int add = 0, mn = in[w * 32], mx = in[w * 32];
    unsigned uadd = 0, band = ~0u, bor = 0, bxor = 0;
    for (int lane = 0; lane < 32; ++lane) {
      const int v = in[w * 32 + lane];
      const auto u = static_cast<unsigned>(v);
      add += v;
      mn = std::min(mn, v);
      mx = std::max(mx, v);
      uadd += u;
      band &= u;
      bor |= u;
      bxor ^= u;
    }
    const int expected[7] = {add, mn, mx, static_cast<int>(uadd), static_cast<int>(band), static_cast<int>(bor),
                             static_cast<int>(bxor)};
    for (int k = 0; k < 7; ++k)
      for (int lane = 0; lane < 32; ++lane) {
        INFO("reduction ", k, " warp ", w, " lane ", lane);
        REQUIRE(out[k * threads + w * 32 + lane] == expected[k]);
      }
  }
}

TEST_CASE("__match_any_sync groups the lanes holding equal values") {
  constexpr int threads = 64;
  const auto in = vb::emu_test::random_ints<int>(threads, 0, 3, 4);
  std::vector<unsigned> out(threads);
  selftest::match_any(in.data(), out.data(), threads);
  for (int t = 0; t < threads; ++t) {
    unsigned expected = 0;
    for (int lane = 0; lane < 32; ++lane) expected |= (in[t / 32 * 32 + lane] == in[t] ? 1u : 0u) << lane;
    INFO("thread ", t);
    CHECK(out[t] == expected);
  }
}

TEST_CASE("warp results do not depend on the fiber order") {
  constexpr int threads = 64;
  const auto in = vb::emu_test::random_ints<int>(threads, -1000, 1000, 5);
  const auto out = vb::emulator::run_under_orders([&] {
    std::vector<int> result(7 * threads);
    selftest::warp_reduce(in.data(), result.data(), threads);
    return result;
  });
  CHECK(out.size() == 7 * threads);
}

#endif  // VB_HAVE_EMU
