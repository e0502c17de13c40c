// Which T frames of a clip a sample sees.
//
// A clip is cut into T equal segments of its time span; each segment contributes one frame:
//   uniform (evaluation):        the segment's centre,            position_i = (i + 0.5) / T
//   random sparse (training):    a uniformly random point in it,  position_i = (i + u_i) / T,  u_i ~ U[0, 1)
// (TSN, Wang et al. 2016; ClipBERT, Lei et al. 2021). Positions are fractions of the clip in [0, 1).
// A folder of n frames maps a position p to frame floor(p · n); a video maps it to the time
// start + p · (end − start) and decodes the frame nearest that time.
// When a clip has fewer frames than T, several segments fall on the same frame and indices repeat
// (n = 3, T = 8, uniform: 0 0 0 1 1 2 2 2), so every sample has exactly T frames, in time order.
// The random draws depend only on (seed, epoch, clip index): the same triple gives the same frames.
#pragma once
#include <cstdint>
#include <vector>

namespace vb::data {

enum class Sampling { Uniform, Random };

std::vector<double> sample_positions(int64_t T, Sampling mode, uint64_t seed = 0, uint64_t epoch = 0,
                                     uint64_t clip_index = 0);

// Frame indices in [0, n) for positions in [0, 1).
std::vector<int64_t> positions_to_indices(const std::vector<double>& positions, int64_t n);

// Shorthand: positions_to_indices(sample_positions(...), n).
std::vector<int64_t> sample_frame_indices(int64_t n, int64_t T, Sampling mode, uint64_t seed = 0,
                                          uint64_t epoch = 0, uint64_t clip_index = 0);

}  // namespace vb::data
