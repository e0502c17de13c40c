// How the GPU kernel benchmarks time a kernel (bench/kernels_gpu/; bench/torch_kernels_gpu.py does
// exactly the same in Python, so the two sides of a comparison are measured alike):
//
// 1. Rotation. A case's inputs and outputs form one "set"; rotation_sets() makes enough sets that
//    together they hold at least twice the L2 cache (50 MB on an H100), and successive runs walk
//    through the sets in turn. A run therefore finds its inputs evicted from L2 by the runs between,
//    as a kernel inside a model does, and a memory-bound kernel is not flattered by L2 bandwidth.
// 2. Warm-up. Every set is run once, and at least `warmup` runs are made, before anything is timed:
//    lazy module loading, the caching allocator's first allocations and library heuristics happen
//    there.
// 3. Batches. One timed sample is `inner` back-to-back runs between two CUDA events on the stream,
//    divided by `inner`; `inner` is chosen from a calibration batch so that a sample lasts about
//    `batch_ms` (at most `max_inner` runs). Back-to-back launches keep the GPU busy, so a short
//    kernel is timed without the launch latency of an idle GPU; a host that cannot keep up (a slow
//    op wrapper) does show, as it would in a model.
// 4. The result is the median over `samples` samples, in seconds per run; a slow case stops sampling
//    once its samples add up to `max_seconds` (with at least `min_samples` taken), which keeps a full
//    run of every case within a few minutes.
//
// Host-side C++ over vb::rt::cuda (kernels/runtime.h); only built with the CUDA backend.
#pragma once

#if defined(VB_HAVE_CUDA)

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "kernels/runtime.h"

namespace vb::bench {

struct TimingOptions {
  int warmup = 3;            // untimed runs before the first sample (at least one per set)
  int samples = 25;          // timed batches; the median is reported
  double batch_ms = 2.0;     // a batch lasts about this long
  int max_inner = 200;       // runs per batch at most
  double max_seconds = 1.0;  // stop sampling a case after this much timed work ...
  int min_samples = 5;       // ... once at least this many samples are taken
};

// The number of input sets whose combined size (set_bytes each) is at least twice the L2 cache.
inline int rotation_sets(std::size_t set_bytes, std::size_t l2_bytes, int max_sets = 64) {
  if (set_bytes == 0) return 1;
  const std::size_t want = (2 * l2_bytes + set_bytes - 1) / set_bytes;
  return int(std::clamp<std::size_t>(want, 1, std::size_t(max_sets)));
}

// Median seconds per call of run(set) over `sets` rotating sets, on the default stream.
template <class Run>
double median_seconds(Run&& run, int sets, const TimingOptions& o) {
  namespace rtc = vb::rt::cuda;
  int next = 0;
  auto run_next = [&] {
    run(next);
    next = (next + 1) % sets;
  };
  for (int i = 0; i < std::max(o.warmup, sets); ++i) run_next();
  vb::rt::Event start = rtc::event_create(), stop = rtc::event_create();
  auto batch_ms = [&](int inner) {
    rtc::event_record(start, vb::rt::Stream{});
    for (int i = 0; i < inner; ++i) run_next();
    rtc::event_record(stop, vb::rt::Stream{});
    rtc::event_synchronize(stop);
    return double(rtc::elapsed_ms(start, stop));
  };
  // Calibration: one batch of a full rotation (at least one run) estimates the time per run.
  const int probe = std::max(1, std::min(sets, o.max_inner));
  const double per_run_ms = std::max(batch_ms(probe) / probe, 1e-6);
  const int inner = std::clamp(int(std::ceil(o.batch_ms / per_run_ms)), 1, o.max_inner);
  std::vector<double> times;
  double total_ms = 0;
  for (int s = 0; s < std::max(1, o.samples); ++s) {
    const double ms = batch_ms(inner);
    times.push_back(ms / inner);
    total_ms += ms;
    if (s + 1 >= o.min_samples && total_ms > 1e3 * o.max_seconds) break;
  }
  rtc::event_destroy(start);
  rtc::event_destroy(stop);
  std::sort(times.begin(), times.end());
  return times[times.size() / 2] * 1e-3;
}

}  // namespace vb::bench

#endif  // VB_HAVE_CUDA
