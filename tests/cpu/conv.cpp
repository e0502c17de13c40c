// conv2d (channels-last): forward against a direct loop in double, gradients against finite differences,
// half precision against float32, oneDNN's path (kernels/cpu/conv_onednn.h) against the same references, and
// the errors for inputs that do not fit.
#include <omp.h>

#include <random>

#include "kernels/cpu/conv.h"
#include "kernels/cpu/conv_onednn.h"
#include "kernels/cpu/gemm.h"
#include "tests/support/check.h"

using namespace vb;
using vb::test::check_close;
using vb::test::gradcheck;

namespace {

// Values in [-1, 1) from a fixed seed, independent of the library's random ops.
Tensor values(const Shape& shape, uint32_t seed, DType dtype = DType::Float64) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<double> v(size_t(shape_numel(shape)));
  for (double& e : v) e = u(rng);
  return Tensor::from_vector(v, shape, dtype);
}

int64_t out_size(int64_t in, int64_t k, int stride, int pad, int dil) {
  return (in + 2 * pad - dil * (k - 1) - 1) / stride + 1;
}

// y[n, oh, ow, o] = b[o] + Σ x[n, ih, iw, g·Cg + c]·w[o, kh, kw, c], written as directly as possible.
Tensor naive_conv(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p) {
  const int64_t N = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
  const int64_t O = w.size(0), KH = w.size(1), KW = w.size(2), Cg = C / p.groups, Og = O / p.groups;
  const int64_t OH = out_size(H, KH, p.stride_h, p.pad_h, p.dilation_h);
  const int64_t OW = out_size(W, KW, p.stride_w, p.pad_w, p.dilation_w);
  const std::vector<double> xv = x.to_vector(), wv = w.to_vector();
  const std::vector<double> bv = b.defined() ? b.to_vector() : std::vector<double>(size_t(O), 0.0);
  std::vector<double> y(size_t(N * OH * OW * O));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow)
        for (int64_t o = 0; o < O; ++o) {
          const int64_t g = o / Og;
          double s = bv[size_t(o)];
          for (int64_t kh = 0; kh < KH; ++kh)
            for (int64_t kw = 0; kw < KW; ++kw) {
              const int64_t ih = oh * p.stride_h - p.pad_h + kh * p.dilation_h;
              const int64_t iw = ow * p.stride_w - p.pad_w + kw * p.dilation_w;
              if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
              for (int64_t c = 0; c < Cg; ++c)
                s += xv[size_t(((n * H + ih) * W + iw) * C + g * Cg + c)] *
                     wv[size_t(((o * KH + kh) * KW + kw) * Cg + c)];
            }
          y[size_t(((n * OH + oh) * OW + ow) * O + o)] = s;
        }
  return Tensor::from_vector(y, {N, OH, OW, O}, DType::Float64);
}

// gw[o, kh, kw, c] = Σ_{n, oh, ow} gy[n, oh, ow, o]·x[n, ih, iw, c] (one group), summed in float64; with
// abs, the same sum over |terms| (check_sum_bound's scale).
Tensor naive_weight_grad(const Tensor& gy, const Tensor& x, const Shape& w_shape, const Conv2dParams& p, bool abs) {
  const int64_t N = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3), OH = gy.size(1), OW = gy.size(2);
  const int64_t O = w_shape[0], KH = w_shape[1], KW = w_shape[2];
  const std::vector<double> xv = x.to_vector(), gv = gy.to_vector();
  std::vector<double> gw(size_t(shape_numel(w_shape)), 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow)
        for (int64_t o = 0; o < O; ++o)
          for (int64_t kh = 0; kh < KH; ++kh)
            for (int64_t kw = 0; kw < KW; ++kw) {
              const int64_t ih = oh * p.stride_h - p.pad_h + kh * p.dilation_h;
              const int64_t iw = ow * p.stride_w - p.pad_w + kw * p.dilation_w;
              if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
              for (int64_t c = 0; c < C; ++c) {
                const double t =
                    gv[size_t(((n * OH + oh) * OW + ow) * O + o)] * xv[size_t(((n * H + ih) * W + iw) * C + c)];
                gw[size_t(((o * KH + kh) * KW + kw) * C + c)] += abs ? std::abs(t) : t;
              }
            }
  return Tensor::from_vector(gw, w_shape, DType::Float64);
}

Conv2dParams params(int stride, int pad, int dil = 1, int groups = 1) {
  Conv2dParams p;
  p.stride_h = p.stride_w = stride;
  p.pad_h = p.pad_w = pad;
  p.dilation_h = p.dilation_w = dil;
  p.groups = groups;
  return p;
}

struct Case {
  const char* name;
  Shape x, w;
  Conv2dParams p;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      {"3x3 pad 1", {2, 5, 6, 3}, {4, 3, 3, 3}, params(1, 1)},
      {"stride 2 pad 1", {2, 7, 6, 3}, {5, 3, 3, 3}, params(2, 1)},
      {"dilation 2", {1, 7, 8, 2}, {3, 3, 3, 2}, params(1, 2, 2)},
      {"groups 2", {2, 5, 5, 4}, {6, 3, 3, 2}, params(1, 1, 1, 2)},
      {"depthwise", {2, 6, 5, 3}, {3, 3, 3, 1}, params(2, 1, 1, 3)},
      {"1x1 fast path", {2, 4, 3, 5}, {6, 1, 1, 5}, params(1, 0)},
      {"1x1 groups", {1, 3, 4, 4}, {6, 1, 1, 2}, params(1, 0, 1, 2)},
      {"1x1 stride 2", {1, 5, 5, 3}, {2, 1, 1, 3}, params(2, 0)},
      {"odd 3x2 kernel, mixed params", {1, 9, 7, 3}, {2, 3, 2, 3}, Conv2dParams{2, 1, 1, 0, 1, 2, 1}},
      {"size-1 batch and channel", {1, 4, 4, 1}, {1, 2, 2, 1}, params(1, 0)},
      // One group, no horizontal dilation: im2col copies each kernel row as one run, clipped at the edges.
      {"stem-like 7x7 stride 2 pad 3", {2, 9, 11, 3}, {2, 7, 7, 3}, params(2, 3)},
      {"vertical dilation only", {1, 8, 7, 3}, {2, 3, 3, 3}, Conv2dParams{1, 2, 2, 1, 2, 1, 1}},
      {"padding wider than the kernel: windows wholly outside", {1, 3, 3, 2}, {2, 2, 2, 2}, params(1, 3)},
  };
  return all;
}

}  // namespace

TEST_CASE("conv2d forward matches a direct loop (float64 and float32)") {
  for (const Case& c : cases()) {
    const Tensor x = values(c.x, 1), w = values(c.w, 2), b = values({c.w[0]}, 3);
    const Tensor ref = naive_conv(x, w, b, c.p);
    check_close(conv2d(x, w, b, c.p), ref, 1e-12, 1e-12, std::string(c.name) + " float64");
    check_close(conv2d(x, w, {}, c.p), naive_conv(x, w, {}, c.p), 1e-12, 1e-12, std::string(c.name) + " no bias");
    const Tensor y32 = conv2d(to(x, DType::Float32), to(w, DType::Float32), to(b, DType::Float32), c.p);
    CHECK(y32.dtype() == DType::Float32);
    check_close(y32, ref, 1e-5, 1e-5, std::string(c.name) + " float32");
  }
}

TEST_CASE("conv2d forward takes non-contiguous inputs (NCHW storage permuted to NHWC)") {
  const Tensor x_nchw = values({2, 3, 5, 6}, 4), w = values({4, 3, 3, 3}, 5);
  const Tensor x = permute(x_nchw, {0, 2, 3, 1});
  REQUIRE_FALSE(x.is_contiguous());
  check_close(conv2d(x, w, {}, params(1, 1)), naive_conv(x, w, {}, params(1, 1)), 1e-12, 1e-12, "permuted x");
}

TEST_CASE("conv2d column buffer is chunked over the batch without changing results") {
  // 32·32 rows × 2304 columns × 8 bytes ≈ 19 MB of columns per image, over the column budget: the batch
  // of 4 runs as four one-image chunks, and the weight gradient accumulates across them (in 4 row slices
  // per chunk).
  const Conv2dParams p = params(1, 1);
  const Tensor x = values({4, 32, 32, 256}, 6), w = values({4, 3, 3, 256}, 7);
  const Tensor y = conv2d(x, w, {}, p);
  check_close(y, naive_conv(x, w, {}, p), 1e-10, 1e-10, "chunked forward");

  const Tensor gy = values(y.shape(), 8);
  Tensor gw = Tensor::empty(w.shape(), DType::Float64);
  backend(Device()).conv2d_backward_weight(gy, x, p, gw);
  check_close(gw, naive_weight_grad(gy, x, w.shape(), p, false), 1e-9, 1e-10, "chunked weight gradient");
}

TEST_CASE("conv2d gradients match finite differences") {
  for (const Case& c : cases()) {
    const Tensor x = values(c.x, 11), w = values(c.w, 12), b = values({c.w[0]}, 13);
    const Conv2dParams p = c.p;
    gradcheck([p](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], p); }, {x, w, b}, c.name);
  }
}

TEST_CASE("conv2d gradients through a non-contiguous input and gradient") {
  // x arrives as an NCHW tensor permuted to NHWC; the output is transposed before the loss, so the
  // gradient reaching conv2d is non-contiguous too.
  const Tensor x_nchw = values({2, 4, 5, 5}, 21), w = values({4, 3, 3, 2}, 22);
  gradcheck(
      [](const std::vector<Tensor>& in) {
        return transpose(conv2d(permute(in[0], {0, 2, 3, 1}), in[1], {}, params(2, 1, 1, 2)), 1, 2);
      },
      {x_nchw, w}, "permuted input, transposed output");
}

TEST_CASE("conv2d in bfloat16 and float16 matches float32 within the format's precision") {
  const Tensor x = values({2, 6, 6, 8}, 31, DType::Float32), w = values({8, 3, 3, 8}, 32, DType::Float32);
  const Tensor b = values({8}, 33, DType::Float32);
  const Conv2dParams p = params(1, 1);
  for (DType half : {DType::BFloat16, DType::Float16}) {
    // Reference: float32 on the same rounded inputs, so only the output rounding and staging remain.
    const Tensor xh = to(x, half), wh = to(w, half), bh = to(b, half);
    const Tensor ref = conv2d(to(xh, DType::Float32), to(wh, DType::Float32), to(bh, DType::Float32), p);
    const Tensor y = conv2d(xh, wh, bh, p);
    CHECK(y.dtype() == half);
    const double rtol = half == DType::BFloat16 ? 1.0 / 128 : 1.0 / 1024;  // one rounding of the output
    check_close(to(y, DType::Float32), ref, 1e-3, rtol, std::string(dtype_name(half)));
  }
}

TEST_CASE("conv2d rejects inputs that do not fit, naming the op and shapes") {
  const Tensor x = values({1, 5, 5, 4}, 41), w = values({6, 3, 3, 4}, 42);
  auto throws_with = [](auto f, const std::string& words) {
    try {
      f();
      FAIL("expected vb::Error containing: " << words);
    } catch (const vb::Error& e) {
      const std::string msg = e.what();
      CHECK_MESSAGE(msg.find("conv2d") != std::string::npos, msg);
      CHECK_MESSAGE(msg.find(words) != std::string::npos, msg);
    }
  };
  throws_with([&] { conv2d(values({5, 5, 4}, 1), w); }, "4-d");
  throws_with([&] { conv2d(x, values({6, 3, 3}, 1)); }, "4-d");
  throws_with([&] { conv2d(x, values({6, 3, 3, 3}, 1)); }, "(6, 3, 3, 3)");
  throws_with([&] { conv2d(x, w, {}, params(1, 1, 1, 3)); }, "groups=3");
  throws_with([&] { conv2d(x, values({5, 3, 3, 2}, 1), {}, params(1, 1, 1, 2)); }, "groups=2");
  throws_with([&] { conv2d(x, values({6, 7, 7, 4}, 1)); }, "smaller than");
  throws_with([&] { conv2d(x, w, values({5}, 1)); }, "bias");
  throws_with([&] { conv2d(x, to(w, DType::Float32)); }, "dtype");
  throws_with([&] { conv2d(x, w, {}, params(0, 1)); }, "stride");
  throws_with([&] { conv2d(Tensor::from_vector(std::vector<int64_t>(100, 1), {1, 5, 5, 4}), w); }, "int64");
}

namespace {

// False, with a message, in a build without oneDNN (VIDEOBERT_ONEDNN): every convolution then runs conv.cpp,
// which the tests above hold to the same references.
bool have_onednn() {
  if (!cpu::onednn_built()) MESSAGE("this build has no oneDNN: nothing of the oneDNN path to test");
  return cpu::onednn_built();
}

// Sends every eligible convolution to oneDNN while it lives (no size threshold), and restores the settings.
struct OnednnForAll {
  bool on = cpu::conv_onednn(true);
  int64_t min_flops = cpu::conv_onednn_min_flops(0);
  ~OnednnForAll() {
    cpu::conv_onednn(on);
    cpu::conv_onednn_min_flops(min_flops);
  }
};

// |actual − ref| ≤ K·2⁻²⁴·scale + rel·|ref| elementwise, where scale is the same sum over |terms| (float64) and
// K the number of terms per output: float32 accumulation's worst-case bound, plus one rounding of the output to
// a format with relative precision rel (0 for float32). A wrong tap, channel or pixel moves an element by a
// whole term, far outside it.
void check_sum_bound(const Tensor& actual, const Tensor& ref, const Tensor& scale, int64_t K, double rel,
                     const std::string& what) {
  REQUIRE(actual.shape() == ref.shape());
  const std::vector<double> a = actual.to_vector(), r = ref.to_vector(), sc = scale.to_vector();
  int bad = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double bound = double(K) * std::ldexp(1.0, -24) * sc[i] + rel * std::abs(r[i]) + 1e-30;
    if (!(std::abs(a[i] - r[i]) <= bound) && bad++ < 3)
      FAIL_CHECK(what << ": element " << i << " is " << a[i] << ", expected " << r[i] << " within " << bound);
  }
  CHECK_MESSAGE(bad == 0, what << ": " << bad << " of " << a.size() << " elements outside the bound");
}

Tensor backward_input(const Tensor& gy, const Tensor& w, const Shape& x_shape, const Conv2dParams& p, DType out) {
  Tensor gx = Tensor::empty(x_shape, out);
  backend(Device()).conv2d_backward_input(gy, w, p, gx);
  return gx;
}

// The cases of this file, plus ResNet-like ones large enough for oneDNN's blocked kernels (16 and more
// channels, where its 16-wide vector blocks and remainders both occur).
std::vector<Case> onednn_cases() {
  std::vector<Case> all = cases();
  all.push_back({"resnet 3x3, 16 channels", {2, 9, 10, 16}, {16, 3, 3, 16}, params(1, 1)});
  all.push_back({"resnet 3x3, 40 -> 24 channels, stride 2", {2, 11, 9, 40}, {24, 3, 3, 40}, params(2, 1)});
  all.push_back({"1x1, 64 -> 32", {2, 7, 7, 64}, {32, 1, 1, 64}, params(1, 0)});
  all.push_back({"stem 7x7 stride 2, 3 -> 16", {1, 20, 18, 3}, {16, 7, 7, 3}, params(2, 3)});
  all.push_back({"3x3 dilation 2, 32 channels", {1, 10, 10, 32}, {32, 3, 3, 32}, params(1, 2, 2)});
  return all;
}

}  // namespace

TEST_CASE("conv2d through oneDNN: forward and input gradient against float64 (float32 and bfloat16)") {
  if (!have_onednn()) return;
  OnednnForAll guard;
  for (const Case& c : onednn_cases()) {
    const std::string case_name = c.name;
    CAPTURE(case_name);
    const int64_t K = c.w[1] * c.w[2] * c.w[3];
    const Tensor x = values(c.x, 51), w = values(c.w, 52), b = values({c.w[0]}, 53);
    const Tensor y64 = naive_conv(x, w, b, c.p);
    const Tensor gy = values(y64.shape(), 54);
    const bool one_group = c.p.groups == 1;

    // float32: oneDNN for one group (counted), conv.cpp for groups; both within the bound of float64.
    const Tensor x32 = to(x, DType::Float32), w32 = to(w, DType::Float32), b32 = to(b, DType::Float32);
    uint64_t calls = cpu::conv_onednn_calls();
    const Tensor y32 = conv2d(x32, w32, b32, c.p);
    CHECK(cpu::conv_onednn_calls() == calls + (one_group ? 1 : 0));
    check_sum_bound(y32, y64, naive_conv(abs(x), abs(w), abs(b), c.p), K, 0, std::string(c.name) + " forward");
    const Tensor gx64 = backward_input(gy, w, c.x, c.p, DType::Float64);  // conv.cpp in float64
    const Tensor gx_scale = backward_input(abs(gy), abs(w), c.x, c.p, DType::Float64);
    calls = cpu::conv_onednn_calls();
    const Tensor gx32 = backward_input(to(gy, DType::Float32), w32, c.x, c.p, DType::Float32);
    CHECK(cpu::conv_onednn_calls() == calls + (one_group ? 1 : 0));
    check_sum_bound(gx32, gx64, gx_scale, c.w[0] / c.p.groups * c.w[1] * c.w[2], 0,
                    std::string(c.name) + " input gradient");
    if (!one_group) continue;

    // bfloat16 operands, float32 and bfloat16 results: the reference is float64 on the same rounded inputs.
    const Tensor xb = to(x, DType::BFloat16), wb = to(w, DType::BFloat16), gyb = to(gy, DType::BFloat16);
    const Tensor xr = to(xb, DType::Float64), wr = to(wb, DType::Float64), gyr = to(gyb, DType::Float64);
    const Tensor yb_ref = naive_conv(xr, wr, b, c.p), yb_scale = naive_conv(abs(xr), abs(wr), abs(b), c.p);
    const Tensor gxb_ref = backward_input(gyr, wr, c.x, c.p, DType::Float64);
    const Tensor gxb_scale = backward_input(abs(gyr), abs(wr), c.x, c.p, DType::Float64);
    for (DType out : {DType::Float32, DType::BFloat16}) {
      const std::string name = std::string(c.name) + " bfloat16 -> " + std::string(dtype_name(out));
      const double rel = out == DType::BFloat16 ? std::ldexp(1.0, -8) : 0.0;
      Tensor yb = Tensor::empty(y64.shape(), out);
      calls = cpu::conv_onednn_calls();
      backend(Device()).conv2d(xb, wb, b32, c.p, yb);
      const Tensor gxb = backward_input(gyb, wb, c.x, c.p, out);
      CHECK(cpu::conv_onednn_calls() == calls + 2);
      check_sum_bound(yb, yb_ref, yb_scale, K, rel, name + " forward");
      check_sum_bound(gxb, gxb_ref, gxb_scale, c.w[0] * c.w[1] * c.w[2], rel, name + " input gradient");
    }
  }
}

TEST_CASE("conv2d through oneDNN: same bits on 1, 2 and 4 threads, its FLOPs counted, conv.cpp when switched off") {
  if (!have_onednn()) return;
  OnednnForAll guard;
  const Conv2dParams p = params(1, 1);
  const Tensor x = values({2, 14, 14, 64}, 61, DType::Float32), w = values({64, 3, 3, 64}, 62, DType::Float32);
  const Tensor gy = values({2, 14, 14, 64}, 63, DType::Float32);
  const int threads = omp_get_max_threads();
  std::vector<Tensor> out[5];  // out[t]: on t threads (4: more threads than this machine may have cores)
  for (int t : {1, 2, 4}) {
    omp_set_num_threads(t);
    out[t] = {conv2d(x, w, {}, p), backward_input(gy, w, x.shape(), p, DType::Float32)};
  }
  omp_set_num_threads(threads);
  CHECK(test::bytes_of(out[1]) == test::bytes_of(out[2]));
  CHECK(test::bytes_of(out[1]) == test::bytes_of(out[4]));
  CHECK(cpu::conv_onednn_last_impl().rfind("ref", 0) == std::string::npos);

  // The benchmarks' FLOP counter counts oneDNN's convolutions as conv.cpp's: 2·N·OH·OW·O·KH·KW·C each.
  const uint64_t flops = uint64_t(2) * 2 * 14 * 14 * 64 * 3 * 3 * 64;
  for (bool on : {true, false}) {
    cpu::conv_onednn(on);
    cpu::gemm_count_flops(true);
    conv2d(x, w, {}, p);
    backward_input(gy, w, x.shape(), p, DType::Float32);
    cpu::gemm_count_flops(false);
    CHECK_MESSAGE(cpu::gemm_flops_counted() == 2 * flops, (on ? "oneDNN" : "conv.cpp"));
  }

  const uint64_t calls = cpu::conv_onednn_calls();
  const Tensor y_ours = conv2d(x, w, {}, p);
  CHECK(cpu::conv_onednn_calls() == calls);
  check_close(y_ours, out[2][0], 1e-4, 1e-5, "conv.cpp against oneDNN");
}

TEST_CASE("conv2d through oneDNN leaves float16 and float64 to conv.cpp") {
  if (!have_onednn()) return;
  OnednnForAll guard;
  const Conv2dParams p = params(1, 1);
  const Tensor x = values({1, 6, 6, 16}, 71), w = values({16, 3, 3, 16}, 72);
  const Tensor ref = naive_conv(x, w, {}, p);
  const uint64_t calls = cpu::conv_onednn_calls();
  check_close(conv2d(to(x, DType::Float16), to(w, DType::Float16), {}, p), ref, 0.05, 1.0 / 256, "float16");
  check_close(conv2d(x, w, {}, p), ref, 1e-12, 1e-12, "float64");
  CHECK(cpu::conv_onednn_calls() == calls);
}

TEST_CASE("conv2d weight gradient with its im2col rows read in place: the packed path's bits, float64's values") {
  // conv.cpp's conv_backward_weight_gathered (up to 96 output channels, one group, no horizontal dilation) reads
  // each kernel row's run of x where it lies, or builds it with zeros over the image's edges. It must give the
  // bits of the im2col product (same K slices, same chains of FMAs) on 1, 2 and 4 threads, and float64's values.
  // The geometries: the tiny preset's stem (7 × 7 over 6 channels, stride 2: 42 values per row, two panels),
  // several K slices (R > 384 output pixels), odd channel and output counts, O = 96 (the largest taken) and 97
  // (not taken), a 3 × 2 kernel with different strides and paddings per axis, windows wholly outside the image,
  // vertical dilation, a ResNet-like stem over 3 channels, and the last pixels of x, whose whole-vector reads
  // would pass x's end (built in scratch instead).
  const std::vector<Case> all = {
      {"tiny stem 7x7 stride 2, 6 -> 8", {4, 20, 22, 6}, {8, 7, 7, 6}, params(2, 3)},
      {"3x3 over 8 channels", {3, 16, 15, 8}, {8, 3, 3, 8}, params(1, 1)},
      {"3x3 stride 2, 16 channels", {2, 17, 16, 16}, {16, 3, 3, 16}, params(2, 1)},
      {"13 outputs, 5 channels", {2, 12, 13, 5}, {13, 3, 3, 5}, params(1, 1)},
      {"96 outputs", {2, 9, 9, 7}, {96, 3, 3, 7}, params(1, 1)},
      {"97 outputs: the im2col product", {1, 6, 7, 3}, {97, 3, 3, 3}, params(1, 1)},
      {"3x2 kernel, stride 2x1, pad 1x0", {2, 9, 7, 3}, {5, 3, 2, 3}, Conv2dParams{2, 1, 1, 0, 1, 1, 1}},
      {"padding wider than the kernel", {1, 3, 3, 2}, {2, 2, 2, 2}, params(1, 3)},
      {"vertical dilation only", {1, 8, 7, 3}, {2, 3, 3, 3}, Conv2dParams{1, 1, 2, 1, 2, 1, 1}},
      {"stem 7x7 over 3 channels, 64 outputs", {1, 30, 28, 3}, {64, 7, 7, 3}, params(2, 3)},
      {"1 channel, no padding: runs end at x's last value", {2, 6, 9, 1}, {3, 2, 4, 1}, params(1, 0)},
  };
  const int saved_threads = omp_get_max_threads();
  for (const Case& c : all) {
    CAPTURE(c.name);
    const Conv2dParams& p = c.p;
    const int64_t OH = out_size(c.x[1], c.w[1], p.stride_h, p.pad_h, p.dilation_h);
    const int64_t OW = out_size(c.x[2], c.w[2], p.stride_w, p.pad_w, p.dilation_w);
    const Tensor x = values(c.x, 91), gy = values({c.x[0], OH, OW, c.w[0]}, 92);
    const bool taken = c.w[0] <= 96;
    // taken_by: whether the gathered path must run (the call counter says), gW float32 for bfloat16 inputs.
    auto weight_grad = [&](const Tensor& gy_, const Tensor& x_, bool gathered, int threads, bool taken_by) {
      const bool saved = cpu::conv_gathered_weight_grad(gathered);
      omp_set_num_threads(threads);
      Tensor gw = Tensor::empty(c.w, gy_.dtype() == DType::BFloat16 ? DType::Float32 : gy_.dtype());
      const uint64_t calls = cpu::conv_gathered_weight_grad_calls();
      backend(Device()).conv2d_backward_weight(gy_, x_, p, gw);
      CHECK(cpu::conv_gathered_weight_grad_calls() - calls == (gathered && taken_by ? 1u : 0u));
      cpu::conv_gathered_weight_grad(saved);
      omp_set_num_threads(saved_threads);
      return gw;
    };
    // float64 against the loops.
    const Tensor ref = naive_weight_grad(gy, x, c.w, p, false);
    check_close(weight_grad(gy, x, true, 2, taken), ref, 1e-12, 1e-12, "float64");
    // float32: the im2col product's bits on 1, 2 and 4 threads, and float32's summation bound.
    const Tensor x32 = to(x, DType::Float32), gy32 = to(gy, DType::Float32);
    const Tensor packed = weight_grad(gy32, x32, false, 2, taken);
    for (int threads : {1, 2, 4}) {
      CAPTURE(threads);
      CHECK(test::bytes_of({weight_grad(gy32, x32, true, threads, taken)}) == test::bytes_of({packed}));
    }
    check_sum_bound(packed, ref, naive_weight_grad(gy, x, c.w, p, true), c.x[0] * OH * OW, 0.0, "float32");
    // bfloat16 gy and x (gW float32): taken with at most 16 outputs beside VDPBF16PS, up to 96 where bfloat16
    // products run through the float32 GEMM, never on AMX tiles (conv.cpp's gathered_weight_grad_bf16). Taken, the
    // products run in float32 on the widened values: the float32 im2col product's bits on those values, on 1 and
    // 2 threads. Either way within float32's summation bound of the loops in float64 (bfloat16 products are exact).
    const Tensor x16 = to(x, DType::BFloat16), gy16 = to(gy, DType::BFloat16);
    const Tensor x16w = to(x16, DType::Float32), gy16w = to(gy16, DType::Float32);
    const Tensor widened = weight_grad(gy16w, x16w, false, 2, taken);
    const Tensor exact = naive_weight_grad(gy16w, x16w, c.w, p, false),
                 magnitude = naive_weight_grad(gy16w, x16w, c.w, p, true);
    for (bool float32_products : {false, true}) {  // gemm_bf16's own path, then dot products and AMX ruled out
      CAPTURE(float32_products);
      const bool saved_amx = cpu::gemm_bf16_allow(cpu::GemmBf16Path::kAmx, !float32_products);
      const bool saved_dot = cpu::gemm_bf16_allow(cpu::GemmBf16Path::kDot, !float32_products);
      const cpu::GemmBf16Path path = cpu::gemm_bf16_path();
      const bool taken16 =
          taken && (path == cpu::GemmBf16Path::kFloat32 || (path == cpu::GemmBf16Path::kDot && c.w[0] <= 16));
      for (int threads : {1, 2}) {
        CAPTURE(threads);
        const Tensor gw16 = weight_grad(gy16, x16, true, threads, taken16);
        if (taken16) CHECK(test::bytes_of({gw16}) == test::bytes_of({widened}));
        check_sum_bound(gw16, exact, magnitude, c.x[0] * OH * OW, 0.0, "bfloat16");
      }
      cpu::gemm_bf16_allow(cpu::GemmBf16Path::kAmx, saved_amx);
      cpu::gemm_bf16_allow(cpu::GemmBf16Path::kDot, saved_dot);
    }
  }
}
