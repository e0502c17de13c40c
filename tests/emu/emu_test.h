// Helpers shared by the emulator tests.
#pragma once

#if !defined(VB_HAVE_EMU)
#include <cstdlib>
// This build has no kernel emulator (CUDA's headers were not found): every emu test is skipped.
inline const bool vb_emu_tests_skipped = [] {
  std::exit(77);
  return true;
}();
#else

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/emu/emulator.h"

namespace vb::emu_test {

// The message of the vb::emulator::Error that `run` throws, or "" when it throws none.
inline std::string error_of(const std::function<void()>& run) {
  try {
    run();
  } catch (const vb::emulator::Error& e) {
    return e.what();
  }
  return "";
}

inline vb::emulator::Options options(vb::emulator::Order order = vb::emulator::Order::in_order, int workers = 1) {
  vb::emulator::Options o = vb::emulator::current_options();
  o.order = order;
  o.workers = workers;
  if (order == vb::emulator::Order::reversed) o.strict_async = true;  // as run_under_orders' own orders
  return o;
}

template <class T>
std::vector<T> random_ints(std::size_t n, int lo, int hi, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(lo, hi);
  std::vector<T> v(n);
  for (T& x : v) x = static_cast<T>(dist(rng));
  return v;
}

}  // namespace vb::emu_test

#endif
