// Atomics under the emulator, with blocks spread over several worker threads so that they really
// race: every counter must end where CUDA's rules put it, whatever the order.
#include <doctest/doctest.h>

#include <algorithm>

#include "tests/emu/emu_test.h"  // first: skips the test when there is no emulator

#if defined(VB_HAVE_EMU)

#include "kernels/cuda/emu_selftest.h"
#include "kernels/emu/device.h"
#include "tests/support/atomic_counters.h"

namespace {

using namespace vb::atomics_test;

// The same updates, one thread after another.
AtomicCounters expected() {
  AtomicCounters c = initial_counters();
  const int threads = vb::selftest::atomic_blocks * vb::selftest::atomic_threads;
  float half_sum = 0, bf16_sum = 0;
  for (int g = 0; g < threads; ++g) {
    c.add_int += 1;
    c.add_unsigned += 3u;
    c.add_ull += 1ull << 33;
    c.add_float += 0.5f;
    c.add_double += 0.25;
    half_sum += 1;
    if (g < 256) bf16_sum += 1;
    c.sub_int -= 3;
    const int v = (g * 7919) % 2048 - 1000;
    c.max_int = std::max(c.max_int, v);
    c.min_int = std::min(c.min_int, v);
    const unsigned u = static_cast<unsigned>(g) * 2654435761u;
    c.max_unsigned = std::max(c.max_unsigned, u);
    c.min_unsigned = std::min(c.min_unsigned, u);
    c.max_ull = std::max(c.max_ull, static_cast<unsigned long long>(g) << 40);
    c.inc = c.inc >= vb::selftest::inc_limit ? 0 : c.inc + 1;
    c.dec = (c.dec == 0 || c.dec > vb::selftest::dec_limit) ? vb::selftest::dec_limit : c.dec - 1;
    if (g % 3 == 0 && g % 32 < 20) c.and_bits &= ~(1u << (g % 32));
    if (g % 5 == 0) c.or_bits |= 1u << (g % 29);
    c.xor_bits ^= 1u << (g % 7);
    c.cas_counter += 1;
  }
  c.add_half = __float2half(half_sum);
  c.add_bf16 = __float2bfloat16(bf16_sum);
  return c;
}

}  // namespace

TEST_CASE("atomics from blocks on several workers end where CUDA's rules put them") {
  const int threads = vb::selftest::atomic_blocks * vb::selftest::atomic_threads;
  for (int workers : {1, 2, 4}) {
    for (auto order : {vb::emulator::Order::in_order, vb::emulator::Order::shuffled}) {
      vb::emulator::ScopedOptions scoped(vb::emu_test::options(order, workers));
      INFO(vb::emulator::describe(vb::emulator::current_options()));
      AtomicCounters c = initial_counters();
      std::vector<int> old_exch(threads);
      vb::emu::selftest::atomics(&c, old_exch.data());
      check_same_counters(c, expected());
      // atomicExch hands each value on exactly once: the old values and the final one are the
      // initial value and every thread's index.
      std::vector<int> seen = old_exch;
      seen.push_back(c.exch);
      std::sort(seen.begin(), seen.end());
      std::vector<int> all(threads + 1);
      for (int i = 0; i <= threads; ++i) all[i] = i - 1;
      CHECK(seen == all);
    }
  }
}

TEST_CASE("atomicInc and atomicDec wrap as CUDA documents") {
  // Inc counts 0..limit and wraps to 0 (and resets to 0 from above the limit); Dec counts down to
  // 0 and jumps to the limit from 0 or from above it.
  unsigned inc = 0, dec = 0;
  std::vector<unsigned> incs, decs;
  for (int i = 0; i < 4; ++i) {
    atomicInc(&inc, 2);
    atomicDec(&dec, 2);
    incs.push_back(inc);
    decs.push_back(dec);
  }
  CHECK(incs == std::vector<unsigned>{1, 2, 0, 1});
  CHECK(decs == std::vector<unsigned>{2, 1, 0, 2});
  unsigned high = 10;
  CHECK(atomicInc(&high, 2) == 10);
  CHECK(high == 0);
  high = 10;
  CHECK(atomicDec(&high, 2) == 10);
  CHECK(high == 2);
}

#endif  // VB_HAVE_EMU
