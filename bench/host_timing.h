// What the CPU-side benchmarks share: the median wall time of repeated calls after a warm-up call, and the
// one JSON line per case that bench/compare.py joins ({name, seconds, flops, bytes}).
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace vb::bench {

inline double median_seconds(const std::function<void()>& fn, int repeats) {
  fn();  // warm-up
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

inline void report(const std::string& name, double seconds, double flops, double bytes = 0) {
  std::printf("{\"name\": \"%s\", \"seconds\": %.6e, \"flops\": %.6e, \"bytes\": %.6e}\n", name.c_str(), seconds,
              flops, bytes);
  std::fflush(stdout);
}

}  // namespace vb::bench
