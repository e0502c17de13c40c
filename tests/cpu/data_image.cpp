// Frames: PNG round trip and read errors, the evaluation resize + centre crop against hand computations,
// augmentation parameters and outputs, ImageNet normalisation.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "tensor/error.h"
#include "train/data/image.h"
#include "train/data/sample_rng.h"

namespace fs = std::filesystem;
using namespace vb::data;

namespace {

// Pixel (x, y) channel c of the test pattern: distinct values everywhere.
uint8_t pattern(int x, int y, int c) { return uint8_t((x * 37 + y * 11 + c * 71) % 256); }

Image make_pattern(int w, int h) {
  Image img(w, h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) img.pixel(x, y)[c] = pattern(x, y, c);
  return img;
}

double normalise(double v, int c) { return (v / 255.0 - kImageNetMean[c]) / kImageNetStd[c]; }

fs::path temp_path(const std::string& name) {
  return fs::temp_directory_path() / ("vb_image_" + std::to_string(getpid()) + "_" + name);
}

}  // namespace

TEST_CASE("image: PNG round trip and unreadable files") {
  const Image img = make_pattern(7, 5);
  const fs::path p = temp_path("rt.png");
  write_png(p.string(), img);
  const Image back = read_image(p.string());
  CHECK(back.width == 7);
  CHECK(back.height == 5);
  CHECK(back.rgb == img.rgb);
  CHECK(encode_png(img) == encode_png(img));  // deterministic bytes
  std::ofstream(p, std::ios::binary) << "\x89PNG\r\n\x1a\n garbage that is not a PNG";
  CHECK_THROWS_WITH_AS(read_image(p.string()), doctest::Contains(p.string().c_str()), vb::Error);
  try {
    read_image(p.string());
  } catch (const vb::Error& e) {
    CHECK(std::string(e.what()).find("cannot be read: ") != std::string::npos);  // and stb's reason after it
  }
  fs::remove(p);
  CHECK_THROWS_WITH_AS(read_image(p.string()), doctest::Contains("rt.png"), vb::Error);
}

TEST_CASE("image: evaluation resize + centre crop, by hand") {
  // 6×4 → S = 2: resized to 3×2 (x step 2, y step 2), centre offset round((3−2)/2) = round(0.5) = 0.
  // Output (ox, oy) samples the source at (2·ox + 0.5, 2·oy + 0.5): the mean of a 2×2 block.
  {
    const Image img = make_pattern(6, 4);
    std::vector<float> out(2 * 2 * 3);
    eval_transform(img, 2, out.data());
    for (int oy = 0; oy < 2; ++oy)
      for (int ox = 0; ox < 2; ++ox)
        for (int c = 0; c < 3; ++c) {
          const double v = (pattern(2 * ox, 2 * oy, c) + pattern(2 * ox + 1, 2 * oy, c) +
                            pattern(2 * ox, 2 * oy + 1, c) + pattern(2 * ox + 1, 2 * oy + 1, c)) / 4.0;
          CHECK(out[size_t((oy * 2 + ox) * 3 + c)] == doctest::Approx(normalise(v, c)).epsilon(1e-5));
        }
  }
  // 8×4 → S = 2: resized to 4×2, centre offset 1 resized pixel = 2 source pixels: blocks at x = 2·ox + 2.
  {
    const Image img = make_pattern(8, 4);
    std::vector<float> out(2 * 2 * 3);
    eval_transform(img, 2, out.data());
    for (int oy = 0; oy < 2; ++oy)
      for (int ox = 0; ox < 2; ++ox)
        for (int c = 0; c < 3; ++c) {
          const int x = 2 * ox + 2, y = 2 * oy;
          const double v =
              (pattern(x, y, c) + pattern(x + 1, y, c) + pattern(x, y + 1, c) + pattern(x + 1, y + 1, c)) / 4.0;
          CHECK(out[size_t((oy * 2 + ox) * 3 + c)] == doctest::Approx(normalise(v, c)).epsilon(1e-5));
        }
  }
  // 4×10 → S = 2: resized to 2×5, centre offset round(1.5) = 2 (half to even) = 4 source rows.
  {
    const Image img = make_pattern(4, 10);
    std::vector<float> out(2 * 2 * 3);
    eval_transform(img, 2, out.data());
    for (int oy = 0; oy < 2; ++oy)
      for (int ox = 0; ox < 2; ++ox)
        for (int c = 0; c < 3; ++c) {
          const int x = 2 * ox, y = 2 * oy + 4;
          const double v =
              (pattern(x, y, c) + pattern(x + 1, y, c) + pattern(x, y + 1, c) + pattern(x + 1, y + 1, c)) / 4.0;
          CHECK(out[size_t((oy * 2 + ox) * 3 + c)] == doctest::Approx(normalise(v, c)).epsilon(1e-5));
        }
  }
  // Upsampling 2×2 → 4×4: source point (ox + 0.5)/2 − 0.5, clamped: −0.25 → 0, 0.25, 0.75, 1.25 → 1.
  {
    const Image img = make_pattern(2, 2);
    std::vector<float> out(4 * 4 * 3);
    eval_transform(img, 4, out.data());
    const double sx[4] = {0, 0.25, 0.75, 1};
    for (int oy = 0; oy < 4; ++oy)
      for (int ox = 0; ox < 4; ++ox)
        for (int c = 0; c < 3; ++c) {
          const double fx = sx[ox], fy = sx[oy];
          const double v = (1 - fy) * ((1 - fx) * pattern(0, 0, c) + fx * pattern(1, 0, c)) +
                           fy * ((1 - fx) * pattern(0, 1, c) + fx * pattern(1, 1, c));
          CHECK(out[size_t((oy * 4 + ox) * 3 + c)] == doctest::Approx(normalise(v, c)).epsilon(1e-5));
        }
  }
  // Already S × S: normalised, not resampled.
  {
    const Image img = make_pattern(5, 5);
    std::vector<float> out(5 * 5 * 3);
    eval_transform(img, 5, out.data());
    for (int i = 0; i < 75; ++i) CHECK(out[size_t(i)] == doctest::Approx(normalise(img.rgb[size_t(i)], i % 3)));
  }
}

TEST_CASE("image: ImageNet normalisation statistics") {
  // The ImageNet mean colour maps to ≈ 0; a constant image stays constant under any augmentation.
  Image grey(20, 12);
  const uint8_t v[3] = {124, 116, 104};  // ≈ 255 · mean
  for (size_t i = 0; i < grey.rgb.size(); ++i) grey.rgb[i] = v[i % 3];
  AugmentOptions o;
  o.rotate_degrees = 30;
  for (uint64_t clip = 0; clip < 5; ++clip) {
    SampleRng rng(7, 0, clip, Purpose::Augment);
    const AugmentParams p = draw_augment(o, grey.width, grey.height, rng);
    std::vector<float> out(16 * 16 * 3);
    train_transform(grey, 16, p, out.data());
    for (size_t i = 0; i < out.size(); ++i) {
      CHECK(out[i] == doctest::Approx(normalise(v[i % 3], int(i % 3))).epsilon(1e-5));
      CHECK(std::abs(out[i]) < 0.01);
    }
  }
  // Black and white halves: per channel, the mean is the mean of the two normalised values and the
  // standard deviation is half their distance, 1 / (2 · std[c]).
  Image half(16, 16);
  for (int y = 0; y < 16; ++y)
    for (int x = 8; x < 16; ++x)
      for (int c = 0; c < 3; ++c) half.pixel(x, y)[c] = 255;
  std::vector<float> out(16 * 16 * 3);
  eval_transform(half, 16, out.data());
  for (int c = 0; c < 3; ++c) {
    double sum = 0, sq = 0;
    for (int i = c; i < 16 * 16 * 3; i += 3) sum += out[size_t(i)];
    const double mean = sum / 256;
    for (int i = c; i < 16 * 16 * 3; i += 3) sq += (out[size_t(i)] - mean) * (out[size_t(i)] - mean);
    CHECK(mean == doctest::Approx((normalise(0, c) + normalise(255, c)) / 2).epsilon(1e-5));
    CHECK(std::sqrt(sq / 256) == doctest::Approx(0.5 / kImageNetStd[c]).epsilon(1e-5));
  }
}

TEST_CASE("image: augmentation parameters follow their ranges and switches") {
  AugmentOptions o;
  int flips = 0;
  const int n = 2000;
  for (int i = 0; i < n; ++i) {
    SampleRng rng(3, 1, uint64_t(i), Purpose::Augment);
    const AugmentParams p = draw_augment(o, 64, 48, rng);
    const double area = p.w * p.h, ratio = (p.w * 64) / (p.h * 48);
    CHECK(p.x0 >= 0);
    CHECK(p.y0 >= 0);
    CHECK(p.x0 + p.w <= 1 + 1e-12);
    CHECK(p.y0 + p.h <= 1 + 1e-12);
    CHECK(area >= 0.06);  // 0.08 up to rounding to whole pixels
    CHECK(ratio >= 0.70);
    CHECK(ratio <= 1.40);
    CHECK(std::abs(p.angle_degrees) <= 10);
    CHECK(p.zoom >= 0.9);
    CHECK(p.zoom <= 1.1);
    flips += p.flip;
    SampleRng again(3, 1, uint64_t(i), Purpose::Augment);
    const AugmentParams q = draw_augment(o, 64, 48, again);
    CHECK((q.x0 == p.x0 && q.w == p.w && q.flip == p.flip && q.angle_degrees == p.angle_degrees));
  }
  CHECK(flips > n * 0.45);
  CHECK(flips < n * 0.55);

  // All switched off: the whole frame, unflipped, unrotated — the identity on an S × S image.
  AugmentOptions off;
  off.random_resized_crop = off.flip = off.rotate = off.scale_jitter = false;
  SampleRng rng(0, 0, 0, Purpose::Augment);
  const AugmentParams id = draw_augment(off, 8, 8, rng);
  const Image img = make_pattern(8, 8);
  std::vector<float> a(8 * 8 * 3), b(8 * 8 * 3);
  train_transform(img, 8, id, a.data());
  eval_transform(img, 8, b.data());
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i] == doctest::Approx(b[i]).epsilon(1e-5));
  // A flip mirrors the columns exactly.
  AugmentParams flip = id;
  flip.flip = true;
  train_transform(img, 8, flip, a.data());
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 8; ++x)
      for (int c = 0; c < 3; ++c)
        CHECK(a[size_t((y * 8 + x) * 3 + c)] == doctest::Approx(b[size_t((y * 8 + 7 - x) * 3 + c)]).epsilon(1e-5));
  // A rotation by 90° counter-clockwise: the right column becomes the top row, output (x, y) ← source (7 − y, x).
  AugmentParams turn = id;
  turn.angle_degrees = 90;
  train_transform(img, 8, turn, a.data());
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 8; ++x)
      for (int c = 0; c < 3; ++c)
        CHECK(a[size_t((y * 8 + x) * 3 + c)] ==
              doctest::Approx(normalise(pattern(7 - y, x, c), c)).epsilon(1e-4));

  AugmentOptions bad;
  bad.scale_min = 0;
  CHECK_THROWS_WITH_AS(bad.validate(), doctest::Contains("scale"), vb::Error);
  bad = AugmentOptions{};
  bad.flip_p = 2;
  CHECK_THROWS_WITH_AS(bad.validate(), doctest::Contains("flip"), vb::Error);
  bad = AugmentOptions{};
  bad.scale_jitter_range = 1;
  CHECK_THROWS_WITH_AS(bad.validate(), doctest::Contains("jitter"), vb::Error);
}
