// The emulator self-test's atomic counters (kernels/cuda/emu_selftest.h) as tests/emu/atomics.cpp and
// tests/gpu/emu_selftest.cpp start and compare them.
#pragma once

#include <doctest/doctest.h>

#include <climits>

#include "kernels/cuda/emu_selftest.h"

namespace vb::atomics_test {

using vb::selftest::AtomicCounters;

// The counters before the atomics kernel runs: zero, except the minima (at their largest value), the
// maximum of int (at its smallest), the AND target (all ones) and exch (−1, which no thread stores).
inline AtomicCounters initial_counters() {
  AtomicCounters c{};
  c.max_int = INT_MIN;
  c.min_int = INT_MAX;
  c.min_unsigned = UINT_MAX;
  c.and_bits = ~0u;
  c.exch = -1;
  c.add_half = __float2half(0.0f);
  c.add_bf16 = __float2bfloat16(0.0f);
  return c;
}

// Every counter whose final value CUDA's rules fix whatever the order of the threads: all but exch.
inline void check_same_counters(const AtomicCounters& got, const AtomicCounters& want) {
  CHECK(got.add_int == want.add_int);
  CHECK(got.add_unsigned == want.add_unsigned);
  CHECK(got.add_ull == want.add_ull);
  CHECK(got.add_float == want.add_float);
  CHECK(got.add_double == want.add_double);
  CHECK(__half2float(got.add_half) == __half2float(want.add_half));
  CHECK(__bfloat162float(got.add_bf16) == __bfloat162float(want.add_bf16));
  CHECK(got.sub_int == want.sub_int);
  CHECK(got.max_int == want.max_int);
  CHECK(got.min_int == want.min_int);
  CHECK(got.max_unsigned == want.max_unsigned);
  CHECK(got.min_unsigned == want.min_unsigned);
  CHECK(got.max_ull == want.max_ull);
  CHECK(got.inc == want.inc);
  CHECK(got.dec == want.dec);
  CHECK(got.and_bits == want.and_bits);
  CHECK(got.or_bits == want.or_bits);
  CHECK(got.xor_bits == want.xor_bits);
  CHECK(got.cas_counter == want.cas_counter);
}

}  // namespace vb::atomics_test
