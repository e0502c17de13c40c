// Pooling (channels-last): max, average and adaptive average against direct loops in double, their
// gradients against finite differences, half precision against float32, and bad-input errors.
#include <cmath>
#include <limits>
#include <random>

#include "tests/support/check.h"

using namespace vb;
using vb::test::check_close;
using vb::test::gradcheck;

namespace {

// Distinct values in [-1, 1) (a random permutation of a grid), so that max pooling has no ties and
// finite differences never cross an argmax boundary.
Tensor values(const Shape& shape, uint32_t seed, DType dtype = DType::Float64) {
  const int64_t n = shape_numel(shape);
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = -1.0 + 2.0 * double(i) / double(n);
  std::shuffle(v.begin(), v.end(), std::mt19937(seed));
  return Tensor::from_vector(v, shape, dtype);
}

// mode: 0 max, 1 avg, 2 adaptive. Returns y (and the max indices through `indices`).
Tensor naive_pool(const Tensor& x, int mode, int k, int s, int pad, bool count_include_pad, int64_t oh_, int64_t ow_,
                  std::vector<int64_t>* indices = nullptr) {
  const int64_t N = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
  const int64_t OH = mode == 2 ? oh_ : (H + 2 * pad - k) / s + 1, OW = mode == 2 ? ow_ : (W + 2 * pad - k) / s + 1;
  const std::vector<double> xv = x.to_vector();
  std::vector<double> y(size_t(N * OH * OW * C));
  if (indices) indices->assign(y.size(), -1);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow)
        for (int64_t c = 0; c < C; ++c) {
          int64_t h0, h1, w0, w1;
          double divisor;
          if (mode == 2) {
            h0 = int64_t(std::floor(double(oh * H) / double(OH)));
            h1 = int64_t(std::ceil(double((oh + 1) * H) / double(OH)));
            w0 = int64_t(std::floor(double(ow * W) / double(OW)));
            w1 = int64_t(std::ceil(double((ow + 1) * W) / double(OW)));
            divisor = double((h1 - h0) * (w1 - w0));
          } else {
            h0 = oh * s - pad, w0 = ow * s - pad, h1 = h0 + k, w1 = w0 + k;
            // The padded image spans [−pad, H + pad); a window never reaches past it here.
            divisor = double((std::min(h1, H + pad) - h0) * (std::min(w1, W + pad) - w0));
            h0 = std::max<int64_t>(h0, 0), w0 = std::max<int64_t>(w0, 0);
            h1 = std::min(h1, H), w1 = std::min(w1, W);
            if (!count_include_pad) divisor = double((h1 - h0) * (w1 - w0));
          }
          double acc = mode == 0 ? -INFINITY : 0.0;
          int64_t arg = -1;
          for (int64_t ih = h0; ih < h1; ++ih)
            for (int64_t iw = w0; iw < w1; ++iw) {
              const double v = xv[size_t(((n * H + ih) * W + iw) * C + c)];
              if (mode != 0) acc += v;
              else if (v > acc) acc = v, arg = ih * W + iw;
            }
          const size_t o = size_t(((n * OH + oh) * OW + ow) * C + c);
          y[o] = mode == 0 ? acc : acc / divisor;
          if (indices) (*indices)[o] = arg;
        }
  return Tensor::from_vector(y, {N, OH, OW, C}, DType::Float64);
}

template <typename F>
void throws_with(F f, const std::string& op, const std::string& words) {
  try {
    f();
    FAIL("expected vb::Error containing: " << words);
  } catch (const vb::Error& e) {
    const std::string msg = e.what();
    CHECK_MESSAGE(msg.find(op) != std::string::npos, msg);
    CHECK_MESSAGE(msg.find(words) != std::string::npos, msg);
  }
}

struct Window {
  int k, s, pad;
};

}  // namespace

TEST_CASE("max_pool2d matches a direct loop; padding never wins; indices are h·W + w") {
  for (Window win : {Window{3, 2, 1}, Window{2, 2, 0}, Window{3, 1, 1}, Window{1, 1, 0}, Window{2, 1, 1}}) {
    // All values negative, so a padded zero would win if padding counted as 0.
    const Tensor x = add(mul(values({2, 7, 6, 3}, 1), 0.5), -1.0);
    std::vector<int64_t> idx;
    const Tensor ref = naive_pool(x, 0, win.k, win.s, win.pad, true, 0, 0, &idx);
    const std::string what = fmt::format("max k{} s{} p{}", win.k, win.s, win.pad);
    check_close(max_pool2d(x, win.k, win.s, win.pad), ref, 0, 0, what);
    check_close(max_pool2d(to(x, DType::Float32), win.k, win.s, win.pad), ref, 1e-7, 1e-7, what + " float32");

    Tensor y = Tensor::empty(ref.shape(), DType::Float64), indices = Tensor::empty(ref.shape(), DType::Int64);
    Pool2dParams p;
    p.kernel_h = p.kernel_w = win.k, p.stride_h = p.stride_w = win.s, p.pad_h = p.pad_w = win.pad;
    backend(Device()).max_pool2d(x, p, y, indices);
    const std::vector<double> got = indices.to_vector();
    for (size_t i = 0; i < idx.size(); ++i) REQUIRE_MESSAGE(int64_t(got[i]) == idx[i], what, " index ", i);
  }
}

TEST_CASE("max_pool2d propagates NaN like PyTorch") {
  std::vector<double> v = {1, 2, NAN, 4};
  const Tensor y = max_pool2d(Tensor::from_vector(v, {1, 2, 2, 1}, DType::Float64), 2, 2);
  CHECK(std::isnan(y.item()));
}

TEST_CASE("max_pool2d across many channels: the first maximum on ties, NaN wins, in every lane") {
  // 40 channels: the kernel's vectorised channel loop (16 lanes at a time, then a remainder) must keep, per
  // lane, the rules of the scalar one. One 2 × 2 window, cells 0…3 (index ih·W + iw). Channel c mod 4:
  // 0 all four cells equal (tie: cell 0); 1 the maximum in cell 2; 2 a NaN in cell 1 and a larger value in
  // cell 3 (the NaN, at cell 1); 3 −inf in cells 0–2 and −5 in cell 3.
  constexpr int64_t C = 40;
  std::vector<double> v(size_t(4 * C));
  for (int64_t c = 0; c < C; ++c)
    for (int64_t cell = 0; cell < 4; ++cell) {
      double& x = v[size_t(cell * C + c)];
      switch (c % 4) {
        case 0: x = 0.25 * double(c); break;
        case 1: x = cell == 2 ? 3.0 + double(c) : double(cell); break;
        case 2: x = cell == 1 ? NAN : (cell == 3 ? 100.0 : 0.0); break;
        default: x = cell == 3 ? -5.0 : -INFINITY; break;
      }
    }
  for (DType dt : {DType::Float32, DType::Float64}) {
    CAPTURE(dtype_name(dt));
    const Tensor x = Tensor::from_vector(v, {1, 2, 2, C}, dt);
    Tensor y = Tensor::empty({1, 1, 1, C}, dt), indices = Tensor::empty({1, 1, 1, C}, DType::Int64);
    Pool2dParams p;
    p.kernel_h = p.kernel_w = 2, p.stride_h = p.stride_w = 2;
    backend(Device()).max_pool2d(x, p, y, indices);
    const std::vector<double> got = y.to_vector(), at = indices.to_vector();
    for (int64_t c = 0; c < C; ++c) {
      CAPTURE(c);
      switch (c % 4) {
        case 0: CHECK(got[size_t(c)] == 0.25 * double(c)); CHECK(at[size_t(c)] == 0); break;
        case 1: CHECK(got[size_t(c)] == 3.0 + double(c)); CHECK(at[size_t(c)] == 2); break;
        case 2: CHECK(std::isnan(got[size_t(c)])); CHECK(at[size_t(c)] == 1); break;
        default: CHECK(got[size_t(c)] == -5.0); CHECK(at[size_t(c)] == 3); break;
      }
    }
  }
}

TEST_CASE("avg_pool2d matches a direct loop with and without count_include_pad") {
  for (Window win : {Window{3, 2, 1}, Window{2, 2, 0}, Window{3, 1, 1}, Window{4, 3, 2}}) {
    for (bool include : {true, false}) {
      const Tensor x = values({2, 7, 6, 3}, 2);
      const std::string what = fmt::format("avg k{} s{} p{} include_pad={}", win.k, win.s, win.pad, include);
      const Tensor ref = naive_pool(x, 1, win.k, win.s, win.pad, include, 0, 0);
      check_close(avg_pool2d(x, win.k, win.s, win.pad, include), ref, 1e-14, 1e-14, what);
      check_close(avg_pool2d(to(x, DType::Float32), win.k, win.s, win.pad, include), ref, 1e-6, 1e-6,
                  what + " float32");
    }
  }
}

TEST_CASE("adaptive_avg_pool2d matches a direct loop for divisible, non-divisible and larger outputs") {
  const Tensor x = values({2, 7, 5, 3}, 3);
  for (auto [oh, ow] : {std::pair<int64_t, int64_t>{1, 1}, {3, 2}, {7, 5}, {4, 3}, {9, 6}}) {
    const std::string what = fmt::format("adaptive {}x{}", oh, ow);
    check_close(adaptive_avg_pool2d(x, oh, ow), naive_pool(x, 2, 0, 0, 0, true, oh, ow), 1e-14, 1e-14, what);
  }
}

TEST_CASE("pooling gradients match finite differences") {
  const Tensor x = values({2, 7, 6, 3}, 4);
  for (Window win : {Window{3, 2, 1}, Window{2, 2, 0}, Window{3, 1, 1}}) {
    const std::string what = fmt::format("k{} s{} p{}", win.k, win.s, win.pad);
    gradcheck([win](const std::vector<Tensor>& in) { return max_pool2d(in[0], win.k, win.s, win.pad); }, {x},
              "max_pool2d " + what);
    for (bool include : {true, false}) {
      gradcheck(
          [win, include](const std::vector<Tensor>& in) { return avg_pool2d(in[0], win.k, win.s, win.pad, include); },
          {x}, "avg_pool2d " + what + (include ? " include_pad" : " exclude_pad"));
    }
  }
  for (auto [oh, ow] : {std::pair<int64_t, int64_t>{1, 1}, {4, 4}, {5, 3}, {9, 7}}) {
    gradcheck([oh, ow](const std::vector<Tensor>& in) { return adaptive_avg_pool2d(in[0], oh, ow); }, {x},
              fmt::format("adaptive_avg_pool2d {}x{}", oh, ow));
  }
}

TEST_CASE("pooling gradients through non-contiguous inputs and gradients") {
  // An NCHW tensor permuted to NHWC in, the output transposed before the loss.
  const Tensor x = values({2, 3, 6, 5}, 5);
  auto nhwc = [](const Tensor& t) { return permute(t, {0, 2, 3, 1}); };
  gradcheck([&](const std::vector<Tensor>& in) { return transpose(max_pool2d(nhwc(in[0]), 3, 2, 1), 1, 2); }, {x},
            "max_pool2d permuted");
  gradcheck([&](const std::vector<Tensor>& in) { return transpose(avg_pool2d(nhwc(in[0]), 3, 2, 1, false), 1, 2); },
            {x}, "avg_pool2d permuted");
  gradcheck([&](const std::vector<Tensor>& in) { return transpose(adaptive_avg_pool2d(nhwc(in[0]), 4, 3), 1, 2); },
            {x}, "adaptive_avg_pool2d permuted");
}

TEST_CASE("pooling in bfloat16 and float16 matches float32 on the same rounded inputs") {
  const Tensor x = values({2, 8, 8, 16}, 6, DType::Float32);
  for (DType half : {DType::BFloat16, DType::Float16}) {
    const Tensor xh = to(x, half), xr = to(xh, DType::Float32);
    const double rtol = half == DType::BFloat16 ? 1.0 / 128 : 1.0 / 1024;
    const std::string name(dtype_name(half));
    check_close(to(max_pool2d(xh, 3, 2, 1), DType::Float32), max_pool2d(xr, 3, 2, 1), 0, 0, "max " + name);
    check_close(to(avg_pool2d(xh, 3, 2, 1), DType::Float32), avg_pool2d(xr, 3, 2, 1), 1e-3, rtol, "avg " + name);
    check_close(to(adaptive_avg_pool2d(xh, 3, 3), DType::Float32), adaptive_avg_pool2d(xr, 3, 3), 1e-3, rtol,
                "adaptive " + name);
  }
}

TEST_CASE("pooling rejects bad inputs, naming the op") {
  const Tensor x = values({1, 5, 5, 2}, 7);
  throws_with([&] { max_pool2d(values({5, 5, 2}, 1), 2, 2); }, "max_pool2d", "4-d");
  throws_with([&] { max_pool2d(x, 2, 2, 2); }, "max_pool2d", "padding 2");
  throws_with([&] { max_pool2d(x, 7, 1); }, "max_pool2d", "smaller than");
  throws_with([&] { avg_pool2d(x, 0, 1); }, "avg_pool2d", "kernel");
  throws_with([&] { avg_pool2d(x, 2, 0); }, "avg_pool2d", "stride");
  throws_with([&] { adaptive_avg_pool2d(x, 0, 2); }, "adaptive_avg_pool2d", "positive");
  throws_with([&] { adaptive_avg_pool2d(values({1, 5, 2}, 1), 1, 1); }, "adaptive_avg_pool2d", "4-d");
  throws_with([&] { max_pool2d(Tensor::from_vector(std::vector<int64_t>(50, 1), {1, 5, 5, 2}), 2, 2); },
              "max_pool2d", "int64");
}
