// Per-sample randomness for the data pipeline: every random choice made for one sample (which frames,
// which crop, flip or caption) is a pure function of (seed, epoch, clip index, purpose, draw number), so
// the loader's output does not depend on how many worker threads there are or which one loads a sample.
//
// Draw k of purpose p for clip i in epoch e is Philox4x32-10 with key = seed and the 128-bit counter
// (k, p, i, e): distinct (p, i, e) never share a counter, so the streams are independent.
#pragma once
#include <cstdint>

#include "tensor/philox.h"

namespace vb::data {

// What a stream of draws is for; each purpose gets its own counter space.
enum class Purpose : uint32_t { Frames = 1, Augment = 2, Caption = 3, Shuffle = 4, Synth = 5 };

class SampleRng {
 public:
  SampleRng(uint64_t seed, uint64_t epoch, uint64_t index, Purpose purpose)
      : seed_(seed), epoch_(uint32_t(epoch)), index_(uint32_t(index)), purpose_(uint32_t(purpose)) {}

  // Uniform in [0, 1), 24 bits as philox_uniform.
  double uniform() { return double(next().x0 >> 8) * (1.0 / 16777216.0); }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [lo, hi); hi > lo.
  int64_t randint(int64_t lo, int64_t hi) {
    const Philox4 r = next();
    const uint64_t bits = uint64_t(r.x0) | (uint64_t(r.x1) << 32);
    return lo + int64_t(bits % uint64_t(hi - lo));
  }
  bool bernoulli(double p) { return uniform() < p; }

 private:
  Philox4 next() {
    return philox4x32_10(Philox4{draw_++, purpose_, index_, epoch_}, uint32_t(seed_), uint32_t(seed_ >> 32));
  }

  uint64_t seed_;
  uint32_t epoch_, index_, purpose_;
  uint32_t draw_ = 0;
};

}  // namespace vb::data
