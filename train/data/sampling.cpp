// Segment-based frame sampling (see sampling.h).
#include "train/data/sampling.h"

#include <algorithm>
#include <cmath>

#include "tensor/error.h"
#include "train/data/sample_rng.h"

namespace vb::data {

std::vector<double> sample_positions(int64_t T, Sampling mode, uint64_t seed, uint64_t epoch, uint64_t clip_index) {
  VB_CHECK(T > 0, "frame sampling: T = {}, expected at least 1 frame per clip", T);
  SampleRng rng(seed, epoch, clip_index, Purpose::Frames);
  std::vector<double> pos(static_cast<size_t>(T));
  for (int64_t i = 0; i < T; ++i) {
    const double u = mode == Sampling::Uniform ? 0.5 : rng.uniform();
    pos[size_t(i)] = (double(i) + u) / double(T);
  }
  return pos;
}

std::vector<int64_t> positions_to_indices(const std::vector<double>& positions, int64_t n) {
  VB_CHECK(n > 0, "frame sampling: the clip has {} frames, expected at least 1", n);
  std::vector<int64_t> idx(positions.size());
  for (size_t i = 0; i < positions.size(); ++i)
    idx[i] = std::clamp(int64_t(std::floor(positions[i] * double(n))), int64_t(0), n - 1);
  return idx;
}

std::vector<int64_t> sample_frame_indices(int64_t n, int64_t T, Sampling mode, uint64_t seed, uint64_t epoch,
                                          uint64_t clip_index) {
  return positions_to_indices(sample_positions(T, mode, seed, epoch, clip_index), n);
}

}  // namespace vb::data
