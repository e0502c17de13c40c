// Image I/O with stb, and the frame transforms (see image.h). Cost per frame: S² output pixels, each a
// 4-tap bilinear read of 3 channels (≈ 30 flops), independent of the source size.
#include "train/data/image.h"

#include <stb_image.h>
#include <stb_image_write.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>

#include "tensor/error.h"
#include "train/data/sample_rng.h"

namespace vb::data {

Image read_image(const std::string& path) {
  int w = 0, h = 0, channels = 0;
  std::unique_ptr<uint8_t, void (*)(void*)> data(stbi_load(path.c_str(), &w, &h, &channels, 3), stbi_image_free);
  if (!data) {
    const char* reason = stbi_failure_reason();
    fail("image {}: cannot be read: {}", path, reason ? reason : "unknown error");
  }
  Image img;
  img.width = w;
  img.height = h;
  img.rgb.assign(data.get(), data.get() + size_t(w) * size_t(h) * 3);
  return img;
}

std::vector<uint8_t> encode_png(const Image& image) {
  VB_CHECK(image.width > 0 && image.height > 0 && image.rgb.size() == size_t(image.width) * size_t(image.height) * 3,
           "encode_png: a {}×{} image needs {} bytes, has {}", image.width, image.height,
           size_t(image.width) * size_t(image.height) * 3, image.rgb.size());
  std::vector<uint8_t> bytes;
  auto append = [](void* ctx, void* data, int size) {
    auto* out = static_cast<std::vector<uint8_t>*>(ctx);
    out->insert(out->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
  };
  VB_CHECK(stbi_write_png_to_func(append, &bytes, image.width, image.height, 3, image.rgb.data(), image.width * 3),
           "encode_png: stb_image_write failed on a {}×{} image", image.width, image.height);
  return bytes;
}

void write_png(const std::string& path, const Image& image) {
  const std::vector<uint8_t> bytes = encode_png(image);
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), std::fclose);
  VB_CHECK(f, "write_png: cannot create {}: {}", path, std::strerror(errno));
  VB_CHECK(std::fwrite(bytes.data(), 1, bytes.size(), f.get()) == bytes.size(), "write_png: cannot write {}: {}",
           path, std::strerror(errno));
  VB_CHECK(std::fclose(f.release()) == 0, "write_png: cannot write {}: {}", path, std::strerror(errno));
}

void AugmentOptions::validate() const {
  VB_CHECK(0 < scale_min && scale_min <= scale_max && scale_max <= 1,
           "augment: crop scale range [{}, {}] must satisfy 0 < min ≤ max ≤ 1", scale_min, scale_max);
  VB_CHECK(0 < ratio_min && ratio_min <= ratio_max, "augment: crop ratio range [{}, {}] must satisfy 0 < min ≤ max",
           ratio_min, ratio_max);
  VB_CHECK(0 <= flip_p && flip_p <= 1, "augment: flip probability {} is not in [0, 1]", flip_p);
  VB_CHECK(0 <= rotate_degrees && rotate_degrees <= 180, "augment: rotation {} degrees is not in [0, 180]",
           rotate_degrees);
  VB_CHECK(0 <= scale_jitter_range && scale_jitter_range < 1, "augment: scale jitter {} is not in [0, 1)",
           scale_jitter_range);
}

AugmentParams draw_augment(const AugmentOptions& o, int width, int height, SampleRng& rng) {
  AugmentParams p;
  if (o.random_resized_crop) {
    // torchvision RandomResizedCrop.get_params, in pixels, then as fractions of the frame.
    const double area = double(width) * double(height);
    const double log_lo = std::log(o.ratio_min), log_hi = std::log(o.ratio_max);
    bool found = false;
    int cw = width, ch = height, cx = 0, cy = 0;
    for (int attempt = 0; attempt < 10 && !found; ++attempt) {
      const double target = area * rng.uniform(o.scale_min, o.scale_max);
      const double aspect = std::exp(rng.uniform(log_lo, log_hi));
      const int w = int(std::lround(std::sqrt(target * aspect)));
      const int h = int(std::lround(std::sqrt(target / aspect)));
      if (0 < w && w <= width && 0 < h && h <= height) {
        cy = int(rng.randint(0, height - h + 1));
        cx = int(rng.randint(0, width - w + 1));
        cw = w;
        ch = h;
        found = true;
      }
    }
    if (!found) {  // the central crop with the ratio clamped into range
      const double in_ratio = double(width) / double(height);
      if (in_ratio < o.ratio_min) {
        cw = width;
        ch = int(std::lround(cw / o.ratio_min));
      } else if (in_ratio > o.ratio_max) {
        ch = height;
        cw = int(std::lround(ch * o.ratio_max));
      }
      cy = (height - ch) / 2;
      cx = (width - cw) / 2;
    }
    p.x0 = double(cx) / width;
    p.y0 = double(cy) / height;
    p.w = double(cw) / width;
    p.h = double(ch) / height;
  }
  if (o.flip) p.flip = rng.bernoulli(o.flip_p);
  if (o.rotate) p.angle_degrees = rng.uniform(-o.rotate_degrees, o.rotate_degrees);
  if (o.scale_jitter) p.zoom = rng.uniform(1 - o.scale_jitter_range, 1 + o.scale_jitter_range);
  return p;
}

namespace {

// The inverse map of one frame: output pixel (ox, oy) → source point
//   u = (ox + ½ − S/2, oy + ½ − S/2)                 centred output coordinates
//   v = R(angle) · u / zoom,  v.x = −v.x if flipped    undo the zoom, rotation and flip (R in y-down axes)
//   src = box0 + (v + S/2) · box_size / S − ½          into the crop box (half-pixel centres)
// then a bilinear read with edge clamping, normalised into out (S, S, 3).
void resample(const Image& img, int S, double bx, double by, double bw, double bh, bool flip, double angle_deg,
              double zoom, float* out) {
  VB_CHECK(img.width > 0 && img.height > 0, "image transform: empty {}×{} image", img.width, img.height);
  VB_CHECK(S > 0, "image transform: output size {} must be positive", S);
  const double a = angle_deg * M_PI / 180.0;
  const double c = std::cos(a) / zoom, s = std::sin(a) / zoom;
  const double half = S / 2.0, sx_scale = bw / S, sy_scale = bh / S;
  const int W = img.width, H = img.height;
  const float scale[3] = {1.0f / (255.0f * kImageNetStd[0]), 1.0f / (255.0f * kImageNetStd[1]),
                          1.0f / (255.0f * kImageNetStd[2])};
  for (int oy = 0; oy < S; ++oy) {
    for (int ox = 0; ox < S; ++ox) {
      const double ux = ox + 0.5 - half, uy = oy + 0.5 - half;
      double vx = c * ux - s * uy, vy = s * ux + c * uy;  // undo a counter-clockwise turn (y grows down)
      if (flip) vx = -vx;
      double sx = bx + (vx + half) * sx_scale - 0.5, sy = by + (vy + half) * sy_scale - 0.5;
      sx = std::clamp(sx, 0.0, double(W - 1));
      sy = std::clamp(sy, 0.0, double(H - 1));
      const int x0 = int(sx), y0 = int(sy);
      const int x1 = std::min(x0 + 1, W - 1), y1 = std::min(y0 + 1, H - 1);
      const float fx = float(sx - x0), fy = float(sy - y0);
      const uint8_t *p00 = img.pixel(x0, y0), *p01 = img.pixel(x1, y0), *p10 = img.pixel(x0, y1),
                    *p11 = img.pixel(x1, y1);
      float* o = out + (size_t(oy) * size_t(S) + size_t(ox)) * 3;
      for (int ch = 0; ch < 3; ++ch) {
        const float top = float(p00[ch]) + fx * (float(p01[ch]) - float(p00[ch]));
        const float bottom = float(p10[ch]) + fx * (float(p11[ch]) - float(p10[ch]));
        const float v = top + fy * (bottom - top);
        o[ch] = v * scale[ch] - kImageNetMean[ch] / kImageNetStd[ch];
      }
    }
  }
}

}  // namespace

void eval_transform(const Image& img, int S, float* out) {
  if (img.width == S && img.height == S) {  // already the target size: normalise only
    for (size_t i = 0; i < img.rgb.size(); ++i) {
      const int ch = int(i % 3);
      out[i] = (float(img.rgb[i]) / 255.0f - kImageNetMean[ch]) / kImageNetStd[ch];
    }
    return;
  }
  VB_CHECK(img.width > 0 && img.height > 0 && S > 0, "eval_transform: cannot make {}×{} from a {}×{} image", S, S,
           img.width, img.height);
  // Resize: the shorter side becomes S, the longer floor(S · long / short) (torchvision's Resize(int)).
  int rw, rh;
  if (img.width <= img.height) {
    rw = S;
    rh = int(int64_t(S) * img.height / img.width);
  } else {
    rh = S;
    rw = int(int64_t(S) * img.width / img.height);
  }
  // Centre crop offsets in the resized image, Python's round (half to even) as torchvision.
  const double cx = std::nearbyint((rw - S) / 2.0), cy = std::nearbyint((rh - S) / 2.0);
  const double kx = double(img.width) / rw, ky = double(img.height) / rh;
  resample(img, S, cx * kx, cy * ky, S * kx, S * ky, false, 0.0, 1.0, out);
}

void train_transform(const Image& img, int S, const AugmentParams& p, float* out) {
  resample(img, S, p.x0 * img.width, p.y0 * img.height, p.w * img.width, p.h * img.height, p.flip,
           p.angle_degrees, p.zoom, out);
}

}  // namespace vb::data
