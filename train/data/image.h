// Frames as images: reading PNG/JPEG (stb_image), and the transforms that turn a clip's T frames into the
// model's input, float32 channels-last (T, S, S, 3) with ImageNet normalisation:
//     out[c] = (v[c] / 255 − mean[c]) / std[c],  mean = (0.485, 0.456, 0.406), std = (0.229, 0.224, 0.225).
//
// Evaluation: the shorter side is resized to S (bilinear, the longer side to floor(S · long / short) as
// torchvision's Resize), then the centre S × S is cropped (offset round-half-even((r − S) / 2) as
// torchvision's CenterCrop). A frame that already is S × S is copied, not resampled.
// Training: a random resized crop (a box of area fraction U(scale) and aspect ratio exp U(log ratio),
// torchvision's RandomResizedCrop.get_params with its defaults and 10 tries before the centre fallback),
// resized to S × S; a horizontal flip with probability 0.5; a rotation by U(−deg, +deg) and a zoom by
// U(1 − jitter, 1 + jitter) about the centre. Each is switchable. The parameters are drawn once per clip
// and applied to every frame of it, so the motion between frames is not disturbed.
// Every transform is one inverse mapping output pixel → source point, sampled bilinearly (half-pixel
// centres, as align_corners=False) in float; points outside the frame take the nearest edge pixel.
// Unlike torchvision there is no antialiasing filter when shrinking and no rounding to uint8 in between.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace vb::data {

class SampleRng;

// An 8-bit RGB image, rows top to bottom: (height, width, 3).
struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;

  Image() = default;
  Image(int w, int h) : width(w), height(h), rgb(size_t(w) * size_t(h) * 3, 0) {}
  uint8_t* pixel(int x, int y) { return rgb.data() + (size_t(y) * size_t(width) + size_t(x)) * 3; }
  const uint8_t* pixel(int x, int y) const { return rgb.data() + (size_t(y) * size_t(width) + size_t(x)) * 3; }
};

// Reads a PNG or JPEG (any channel count, converted to RGB); an Error naming the file and stb's reason.
Image read_image(const std::string& path);
// The PNG file's bytes (deterministic: the same image gives the same bytes).
std::vector<uint8_t> encode_png(const Image& image);
// Writes a PNG (not atomically: frames are bulk data).
void write_png(const std::string& path, const Image& image);

constexpr float kImageNetMean[3] = {0.485f, 0.456f, 0.406f};
constexpr float kImageNetStd[3] = {0.229f, 0.224f, 0.225f};

struct AugmentOptions {
  bool random_resized_crop = true;
  double scale_min = 0.08, scale_max = 1.0;          // area fraction of the crop
  double ratio_min = 3.0 / 4.0, ratio_max = 4.0 / 3.0;  // crop width / height
  bool flip = true;
  double flip_p = 0.5;
  bool rotate = true;
  double rotate_degrees = 10.0;  // angle ~ U(−d, +d)
  bool scale_jitter = true;
  double scale_jitter_range = 0.1;  // zoom ~ U(1 − j, 1 + j)

  void validate() const;  // ranges make sense; an Error naming the option otherwise
};

// One clip's augmentation: the crop box as fractions of the frame, so that frames of any size agree.
struct AugmentParams {
  double x0 = 0, y0 = 0, w = 1, h = 1;  // crop box, fractions of width and height
  bool flip = false;
  double angle_degrees = 0;  // counter-clockwise
  double zoom = 1;           // > 1 magnifies
};

// Draws a clip's augmentation for frames of width × height (the first frame's size).
AugmentParams draw_augment(const AugmentOptions& options, int width, int height, SampleRng& rng);

// Writes one frame's S × S × 3 normalised floats to `out`.
void eval_transform(const Image& image, int size, float* out);
void train_transform(const Image& image, int size, const AugmentParams& params, float* out);

}  // namespace vb::data
