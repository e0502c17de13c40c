// Frame sampling: the uniform centres, random sparse sampling's segments, determinism, short clips.
#include <doctest/doctest.h>

#include <cmath>
#include <set>

#include "tensor/error.h"
#include "train/data/sampling.h"

using namespace vb::data;

TEST_CASE("sampling: uniform takes each segment's centre") {
  CHECK(sample_frame_indices(16, 4, Sampling::Uniform) == std::vector<int64_t>{2, 6, 10, 14});
  CHECK(sample_frame_indices(10, 4, Sampling::Uniform) == std::vector<int64_t>{1, 3, 6, 8});  // ⌊(i+½)·10/4⌋
  CHECK(sample_frame_indices(8, 8, Sampling::Uniform) == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7});
  CHECK(sample_frame_indices(1, 3, Sampling::Uniform) == std::vector<int64_t>{0, 0, 0});
  // Fewer frames than T: indices repeat, in order.
  CHECK(sample_frame_indices(3, 8, Sampling::Uniform) == std::vector<int64_t>{0, 0, 0, 1, 1, 2, 2, 2});
  const std::vector<double> pos = sample_positions(4, Sampling::Uniform);
  CHECK(pos == std::vector<double>{0.125, 0.375, 0.625, 0.875});
  // The seed does not matter for uniform sampling.
  CHECK(sample_positions(5, Sampling::Uniform, 1, 2, 3) == sample_positions(5, Sampling::Uniform, 9, 8, 7));
}

TEST_CASE("sampling: random sparse picks one frame in each segment, deterministically") {
  const int64_t n = 100, T = 8;
  std::vector<std::set<int64_t>> seen(T);
  for (uint64_t clip = 0; clip < 300; ++clip) {
    const std::vector<int64_t> idx = sample_frame_indices(n, T, Sampling::Random, 42, 3, clip);
    REQUIRE(idx.size() == size_t(T));
    for (int64_t i = 0; i < T; ++i) {
      const auto lo = int64_t(std::floor(double(i) * n / T)), hi = int64_t(std::ceil(double(i + 1) * n / T));
      CHECK(idx[size_t(i)] >= lo);
      CHECK(idx[size_t(i)] < hi);
      seen[size_t(i)].insert(idx[size_t(i)]);
    }
    CHECK(idx == sample_frame_indices(n, T, Sampling::Random, 42, 3, clip));  // same triple, same frames
  }
  // Over many clips every frame of a segment is drawn (12.5 frames per segment: 12 or 13 or 14 distinct).
  for (const auto& s : seen) CHECK(s.size() >= 12);
  // Each of seed, epoch and clip index changes the draw.
  const auto base = sample_positions(T, Sampling::Random, 1, 1, 1);
  CHECK(base != sample_positions(T, Sampling::Random, 2, 1, 1));
  CHECK(base != sample_positions(T, Sampling::Random, 1, 2, 1));
  CHECK(base != sample_positions(T, Sampling::Random, 1, 1, 2));
  for (size_t i = 0; i < base.size(); ++i) {
    CHECK(base[i] >= double(i) / T);
    CHECK(base[i] < double(i + 1) / T);
  }
  // Short clips still give T indices in range, non-decreasing.
  const std::vector<int64_t> short_clip = sample_frame_indices(3, 8, Sampling::Random, 5, 0, 0);
  REQUIRE(short_clip.size() == 8);
  for (size_t i = 0; i < 8; ++i) {
    CHECK(short_clip[i] >= 0);
    CHECK(short_clip[i] < 3);
    if (i > 0) CHECK(short_clip[i] >= short_clip[i - 1]);
  }
}

TEST_CASE("sampling: bad arguments") {
  CHECK_THROWS_WITH_AS(sample_positions(0, Sampling::Uniform), doctest::Contains("T = 0"), vb::Error);
  CHECK_THROWS_WITH_AS(sample_frame_indices(0, 4, Sampling::Uniform), doctest::Contains("0 frames"), vb::Error);
}
