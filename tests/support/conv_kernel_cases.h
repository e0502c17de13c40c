// The convolution, pooling and batch-norm kernel tests shared by tests/emu/conv_kernels.cpp (under
// the emulator) and tests/gpu/conv_kernels.cpp (on a GPU): each includes this file after its device
// harness (tests/support/emu_harness.h, gpu_harness.h), whose rt, kern and repeat_bit_identical (four
// fiber orders under the emulator, twice on a GPU, bit-identical results) it uses.
// Every kernel runs against the CPU backend: odd shapes that are not multiples of the tiles,
// float32 / bfloat16 / float16, outputs poisoned (NaN bytes) before each run.
//
// Tolerances, |actual − expected| ≤ atol·max(1, max|expected|) + rtol·|expected|: the reference is the CPU
// backend in float32 on the same (rounded) inputs, so the kernels differ from it by the float32
// summation order and, for halves, by the final rounding: float32 atol 2e-6, rtol 1e-5; bfloat16
// (8 significant bits) rtol 2^-7; float16 (11 bits) rtol 2^-10.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/conv.h"

namespace {

using vb::DType;
using vb::Shape;
using vb::Tensor;

std::vector<float> random_floats(std::size_t n, unsigned seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// v with every element rounded to T, as float again: what the kernel sees of T inputs.
template <class T>
std::vector<float> rounded(std::vector<float> v) {
  for (float& x : v) x = static_cast<float>(T(x));
  return v;
}

// A device (emulated) array of T, poisoned with 0xFF bytes (NaN) until written.
template <class T>
struct Buffer {
  T* data;
  std::size_t size;
  explicit Buffer(std::size_t n) : data(static_cast<T*>(rt::malloc(std::max<std::size_t>(n, 1) * sizeof(T)))), size(n) {
    rt::memset(data, 0xff, std::max<std::size_t>(n, 1) * sizeof(T));
  }
  explicit Buffer(const std::vector<float>& host) : Buffer(host.size()) { write(host); }
  void write(const std::vector<float>& host) {
    std::vector<T> converted(host.begin(), host.end());
    rt::copy(data, converted.data(), size * sizeof(T));
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { rt::free(data); }
  void poison() { rt::memset(data, 0xff, std::max<std::size_t>(size, 1) * sizeof(T)); }
  std::vector<float> host() const {
    std::vector<T> raw(size);
    rt::copy(raw.data(), data, size * sizeof(T));
    return std::vector<float>(raw.begin(), raw.end());
  }
};

template <class T>
constexpr double rtol_of() {
  if constexpr (std::is_same_v<T, float>) return 1e-5;
  else if constexpr (std::is_same_v<T, __nv_bfloat16>) return 1.0 / 128;
  else return 1.0 / 1024;
}

template <class T>
const char* name_of() {
  if constexpr (std::is_same_v<T, float>) return "float32";
  else if constexpr (std::is_same_v<T, __nv_bfloat16>) return "bfloat16";
  else return "float16";
}

// |actual − expected| ≤ atol·max(1, max|expected|) + rtol·|expected| everywhere (NaN only where expected).
void expect_close(const std::vector<float>& actual, const std::vector<double>& expected, double atol, double rtol,
                  const std::string& what) {
  REQUIRE_MESSAGE(actual.size() == expected.size(), what);
  double scale = 1.0;  // the inputs are O(1): a result that is all rounding noise is judged against 1
  for (double e : expected)
    if (std::isfinite(e)) scale = std::max(scale, std::abs(e));
  for (std::size_t i = 0; i < actual.size(); ++i) {
    const double a = actual[i], e = expected[i];
    if (std::isnan(e)) {
      CHECK_MESSAGE(std::isnan(a), what << ": element " << i << " is " << a << ", expected NaN");
      continue;
    }
    const bool ok = std::abs(a - e) <= atol * scale + rtol * std::abs(e);
    if (!ok) {
      FAIL_CHECK(what << ": element " << i << " of " << actual.size() << " is " << a << ", expected " << e);
      return;
    }
  }
}

Tensor cpu_tensor(const std::vector<float>& v, const Shape& shape) { return Tensor::from_vector(v, shape, DType::Float32); }

// ---- convolution ----

struct ConvCase {
  const char* name;
  int64_t N, H, W, C, O, KH, KW;
  vb::Conv2dParams p;
  bool bias;
};

template <class T>
void check_conv(const ConvCase& cc, unsigned seed) {
  const vb::ConvShape s = vb::conv_shape(cc.N, cc.H, cc.W, cc.C, cc.O, cc.KH, cc.KW, cc.p);
  const int64_t Cg = cc.C / cc.p.groups;
  const Shape xs{s.N, s.H, s.W, s.C}, ws{s.O, s.KH, s.KW, Cg}, ys{s.N, s.OH, s.OW, s.O};
  const auto x = rounded<T>(random_floats(std::size_t(s.N * s.H * s.W * s.C), seed));
  const auto w = rounded<T>(random_floats(std::size_t(s.O * s.KH * s.KW * Cg), seed + 1));
  const auto b = rounded<T>(random_floats(std::size_t(s.O), seed + 2));
  const auto gy = rounded<T>(random_floats(std::size_t(s.N * s.OH * s.OW * s.O), seed + 3));
  const std::string what = std::string(cc.name) + " " + name_of<T>();

  vb::CpuBackend& cpu = vb::cpu_backend();
  Tensor y_ref = Tensor::empty(ys), gx_ref = Tensor::empty(xs), gw_ref = Tensor::empty(ws);
  cpu.conv2d(cpu_tensor(x, xs), cpu_tensor(w, ws), cc.bias ? cpu_tensor(b, {s.O}) : Tensor(), cc.p, y_ref);
  cpu.conv2d_backward_input(cpu_tensor(gy, ys), cpu_tensor(w, ws), cc.p, gx_ref);
  cpu.conv2d_backward_weight(cpu_tensor(gy, ys), cpu_tensor(x, xs), cc.p, gw_ref);

  Buffer<T> dx(x), dw(w), db(b), dgy(gy);
  Buffer<T> dy(y_ref.numel()), dgx(gx_ref.numel()), dgw(gw_ref.numel());
  Buffer<float> workspace(vb::conv2d_backward_weight_workspace_bytes(s) / sizeof(float));
  const auto results = repeat_bit_identical([&] {
    dy.poison();
    dgx.poison();
    dgw.poison();
    workspace.poison();
    kern::conv2d<T>(dx.data, dw.data, cc.bias ? db.data : nullptr, dy.data, s);
    kern::conv2d_backward_input<T>(dgy.data, dw.data, dgx.data, s);
    kern::conv2d_backward_weight<T>(dgy.data, dx.data, dgw.data, workspace.data, s);
    std::vector<float> all = dy.host();
    for (const auto* buffer : {&dgx, &dgw}) {
      const auto h = buffer->host();
      all.insert(all.end(), h.begin(), h.end());
    }
    return all;
  });
  const auto y_n = std::size_t(y_ref.numel()), gx_n = std::size_t(gx_ref.numel());
  const double atol = std::is_same_v<T, float> ? 2e-6 : 1e-3, rtol = rtol_of<T>();
  expect_close({results.begin(), results.begin() + long(y_n)}, y_ref.to_vector(), atol, rtol, what + " forward");
  expect_close({results.begin() + long(y_n), results.begin() + long(y_n + gx_n)}, gx_ref.to_vector(), atol, rtol,
               what + " input gradient");
  expect_close({results.begin() + long(y_n + gx_n), results.end()}, gw_ref.to_vector(), atol, rtol,
               what + " weight gradient");
}

const ConvCase conv_cases[] = {
    {"3x3 stride 2 pad 1 dilation 2", 2, 7, 7, 5, 6, 3, 3, {2, 2, 1, 1, 2, 2, 1}, true},
    {"depthwise 3x3 pad 1", 2, 7, 6, 5, 5, 3, 3, {1, 1, 1, 1, 1, 1, 5}, false},
    {"1x1", 2, 5, 4, 6, 7, 1, 1, {}, true},
    {"1x1 stride 2 (downsample)", 2, 7, 7, 6, 8, 1, 1, {2, 2, 0, 0, 1, 1, 1}, false},
    {"2 groups, 3x2 kernel, unequal strides", 2, 8, 7, 6, 4, 3, 2, {2, 1, 1, 0, 1, 1, 2}, true},
    {"several tiles and K steps", 3, 9, 9, 20, 70, 3, 3, {1, 1, 1, 1, 1, 1, 1}, true},
    {"weight gradient in two slices", 2, 24, 24, 3, 4, 3, 3, {1, 1, 1, 1, 1, 1, 1}, false},
    // ResNet's shapes at a small size: the tensor-core kernels' runs of 16 k inside one tap (Cg ≥ 16),
    // several 32-deep K steps in every pass; the 7×7/2 stem on 6 channels (frame differences).
    {"3x3 stride 2, 32 -> 48 channels", 2, 10, 9, 32, 48, 3, 3, {2, 2, 1, 1, 1, 1, 1}, false},
    {"7x7 stride 2 stem, 6 channels", 1, 16, 15, 6, 16, 7, 7, {2, 2, 3, 3, 1, 1, 1}, true},
};

TEST_CASE_TEMPLATE("conv2d forward, input and weight gradients match the CPU backend", T, float, __nv_bfloat16,
                   __half) {
  unsigned seed = 10;
  for (const ConvCase& cc : conv_cases) {
    CAPTURE(cc.name);
    check_conv<T>(cc, seed += 10);
  }
}

TEST_CASE("conv2d launchers reject inconsistent shapes") {
  vb::ConvShape s = vb::conv_shape(1, 5, 5, 4, 4, 3, 3, {});
  s.OH = 4;
  CHECK_THROWS_WITH_AS(kern::conv2d<float>(nullptr, nullptr, nullptr, nullptr, s),
                       doctest::Contains("conv2d: inconsistent convolution shape"), std::invalid_argument);
  s = vb::conv_shape(1, 5, 5, 6, 4, 3, 3, {1, 1, 0, 0, 1, 1, 4});  // 6 channels in 4 groups
  CHECK_THROWS_AS(kern::conv2d_backward_input<float>(nullptr, nullptr, nullptr, s), std::invalid_argument);
}

// ---- pooling ----

enum class Pool { max, avg, adaptive };

template <class T>
void check_pool(Pool kind, const vb::PoolShape& s, const vb::Pool2dParams& p, bool plant_nan, unsigned seed,
                const std::string& name) {
  const Shape xs{s.N, s.H, s.W, s.C}, ys{s.N, s.OH, s.OW, s.C};
  auto x = rounded<T>(random_floats(std::size_t(s.N * s.H * s.W * s.C), seed));
  if (plant_nan) x[std::size_t(((1 * s.H + 2) * s.W + 3) * s.C + 1)] = NAN;
  const auto gy = rounded<T>(random_floats(std::size_t(s.N * s.OH * s.OW * s.C), seed + 1));
  const std::string what = name + " " + name_of<T>();

  vb::CpuBackend& cpu = vb::cpu_backend();
  Tensor y_ref = Tensor::empty(ys), idx_ref = Tensor::empty(ys, DType::Int64), gx_ref = Tensor::empty(xs);
  if (kind == Pool::max) {
    cpu.max_pool2d(cpu_tensor(x, xs), p, y_ref, idx_ref);
    cpu.max_pool2d_backward(cpu_tensor(gy, ys), idx_ref, gx_ref);
  } else if (kind == Pool::avg) {
    cpu.avg_pool2d(cpu_tensor(x, xs), p, y_ref);
    cpu.avg_pool2d_backward(cpu_tensor(gy, ys), p, gx_ref);
  } else {
    cpu.adaptive_avg_pool2d(cpu_tensor(x, xs), y_ref);
    cpu.adaptive_avg_pool2d_backward(cpu_tensor(gy, ys), gx_ref);
  }

  Buffer<T> dx(x), dgy(gy), dy(y_ref.numel()), dgx(gx_ref.numel());
  Buffer<int64_t> didx(std::size_t(y_ref.numel()));
  std::vector<int64_t> indices;
  const auto results = repeat_bit_identical([&] {
    dy.poison();
    dgx.poison();
    didx.poison();
    if (kind == Pool::max) {
      kern::max_pool2d<T>(dx.data, dy.data, didx.data, s);
      kern::max_pool2d_backward<T>(dgy.data, didx.data, dgx.data, s);
      indices.resize(didx.size);
      rt::copy(indices.data(), didx.data, didx.size * sizeof(int64_t));
    } else if (kind == Pool::avg) {
      kern::avg_pool2d<T>(dx.data, dy.data, s);
      kern::avg_pool2d_backward<T>(dgy.data, dgx.data, s);
    } else {
      kern::adaptive_avg_pool2d<T>(dx.data, dy.data, s);
      kern::adaptive_avg_pool2d_backward<T>(dgy.data, dgx.data, s);
    }
    std::vector<float> all = dy.host();
    const auto g = dgx.host();
    all.insert(all.end(), g.begin(), g.end());
    for (int64_t i : indices) all.push_back(static_cast<float>(i));  // exact: planes are small
    return all;
  });
  const auto y_n = std::size_t(y_ref.numel()), gx_n = std::size_t(gx_ref.numel());
  const double atol = std::is_same_v<T, float> ? 2e-6 : 1e-3, rtol = rtol_of<T>();
  expect_close({results.begin(), results.begin() + long(y_n)}, y_ref.to_vector(), atol, rtol, what + " forward");
  expect_close({results.begin() + long(y_n), results.begin() + long(y_n + gx_n)}, gx_ref.to_vector(), atol, rtol,
               what + " backward");
  if (kind == Pool::max) {
    const std::vector<float> got(results.begin() + long(y_n + gx_n), results.end());
    const std::vector<double> want = idx_ref.to_vector();
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < got.size(); ++i) REQUIRE_MESSAGE(double(got[i]) == want[i], what << " index " << i);
  }
}

TEST_CASE_TEMPLATE("pooling forward and backward match the CPU backend", T, float, __nv_bfloat16, __half) {
  const vb::Pool2dParams k3s2p1{3, 3, 2, 2, 1, 1, true}, k2s2{2, 2, 2, 2, 0, 0, true}, k3s1p1_exclude{3, 3, 1, 1, 1, 1, false};
  const vb::Pool2dParams k3s2p1_exclude{3, 3, 2, 2, 1, 1, false};
  check_pool<T>(Pool::max, vb::pool_shape(2, 7, 6, 5, k3s2p1), k3s2p1, false, 1, "max 3x3/2 pad 1");
  check_pool<T>(Pool::max, vb::pool_shape(2, 7, 6, 5, k3s2p1), k3s2p1, true, 2, "max with a NaN");
  check_pool<T>(Pool::max, vb::pool_shape(2, 7, 6, 3, k2s2), k2s2, false, 3, "max 2x2/2");
  check_pool<T>(Pool::avg, vb::pool_shape(2, 7, 6, 5, k3s2p1), k3s2p1, false, 4, "avg count_include_pad");
  check_pool<T>(Pool::avg, vb::pool_shape(2, 7, 6, 5, k3s2p1_exclude), k3s2p1_exclude, false, 5, "avg exclude pad");
  check_pool<T>(Pool::avg, vb::pool_shape(1, 5, 4, 3, k3s1p1_exclude), k3s1p1_exclude, false, 6, "avg 3x3/1");
  for (auto [H, W, OH, OW] : {std::array<int64_t, 4>{7, 5, 3, 2}, {6, 6, 1, 1}, {3, 4, 5, 4}}) {
    const vb::PoolShape s{2, H, W, 5, OH, OW};
    check_pool<T>(Pool::adaptive, s, {}, false, 7, "adaptive " + std::to_string(H) + "x" + std::to_string(W) +
                                                         " -> " + std::to_string(OH) + "x" + std::to_string(OW));
  }
}

// ---- batch norm ----

template <class T, class P>
void check_batch_norm(int64_t M, int64_t C, bool affine, unsigned seed) {
  const std::string what = std::string("batch_norm ") + name_of<T>() + " params " + name_of<P>() + " M=" +
                           std::to_string(M) + " C=" + std::to_string(C);
  const auto x = rounded<T>(random_floats(std::size_t(M * C), seed, 3.0f, 5.0f));  // |mean| ≫ std
  const auto gy = rounded<T>(random_floats(std::size_t(M * C), seed + 1));
  const auto w = rounded<P>(random_floats(std::size_t(C), seed + 2, 0.5f, 1.5f));
  const auto b = rounded<P>(random_floats(std::size_t(C), seed + 3));
  const auto rm0 = rounded<P>(random_floats(std::size_t(C), seed + 4));
  const auto rv0 = rounded<P>(random_floats(std::size_t(C), seed + 5, 0.5f, 2.0f));
  const double momentum = 0.1, eps = 1e-5;

  for (bool training : {true, false}) {
    CAPTURE(training);
    vb::CpuBackend& cpu = vb::cpu_backend();
    const Shape xs{M, C}, cs{C};
    Tensor rm = cpu_tensor(rm0, cs), rv = cpu_tensor(rv0, cs);
    Tensor y_ref = Tensor::empty(xs), mean_ref = Tensor::empty(cs), invstd_ref = Tensor::empty(cs);
    const Tensor wt = affine ? cpu_tensor(w, cs) : Tensor(), bt = affine ? cpu_tensor(b, cs) : Tensor();
    cpu.batch_norm(cpu_tensor(x, xs), wt, bt, rm, rv, training, momentum, eps, y_ref, mean_ref, invstd_ref);
    Tensor gx_ref = Tensor::empty(xs), gw_ref = Tensor::empty(cs), gb_ref = Tensor::empty(cs);
    cpu.batch_norm_backward(cpu_tensor(gy, xs), cpu_tensor(x, xs), wt, mean_ref, invstd_ref, training, gx_ref,
                            gw_ref, gb_ref);

    Buffer<T> dx(x), dgy(gy), dy(static_cast<std::size_t>(M * C)), dgx(static_cast<std::size_t>(M * C));
    Buffer<P> dw(w), db(b), drm(rm0), drv(rv0), dgw(static_cast<std::size_t>(C)), dgb(static_cast<std::size_t>(C));
    Buffer<float> dmean(static_cast<std::size_t>(C)), dinvstd(static_cast<std::size_t>(C)), workspace(vb::batch_norm_workspace_bytes(M, C) / 4);
    const auto results = repeat_bit_identical([&] {
      for (auto* out : {&dy, &dgx}) out->poison();
      for (auto* out : {&dgw, &dgb}) out->poison();
      for (auto* out : {&dmean, &dinvstd, &workspace}) out->poison();
      drm.write(rm0);  // fresh running statistics for every order
      drv.write(rv0);
      kern::batch_norm<T, P>(dx.data, affine ? dw.data : nullptr, affine ? db.data : nullptr, drm.data, drv.data,
                             training, momentum, eps, dy.data, dmean.data, dinvstd.data, workspace.data, M, C);
      kern::batch_norm_backward<T, P>(dgy.data, dx.data, affine ? dw.data : nullptr, dmean.data, dinvstd.data,
                                      training, dgx.data, dgw.data, dgb.data, workspace.data, M, C);
      std::vector<float> all;
      for (const std::vector<float>& part : {dy.host(), dgx.host(), dmean.host(), dinvstd.host(), drm.host(),
                                             drv.host(), dgw.host(), dgb.host()})
        all.insert(all.end(), part.begin(), part.end());
      return all;
    });
    const double atol = std::is_same_v<T, float> ? 1e-5 : 2e-3, rtol = rtol_of<T>();
    const double prtol = std::max(rtol_of<P>(), 1e-5);  // parameters and statistics in P (or float32)
    std::size_t at = 0;
    auto part = [&](std::size_t n) {
      std::vector<float> v(results.begin() + long(at), results.begin() + long(at + n));
      at += n;
      return v;
    };
    const auto mc = std::size_t(M * C), c = std::size_t(C);
    expect_close(part(mc), y_ref.to_vector(), atol, rtol, what + " y");
    expect_close(part(mc), gx_ref.to_vector(), atol, rtol, what + " gx");
    expect_close(part(c), mean_ref.to_vector(), 1e-6, 1e-5, what + " save_mean");
    expect_close(part(c), invstd_ref.to_vector(), 1e-6, 2e-4, what + " save_invstd");
    expect_close(part(c), rm.to_vector(), 1e-6, prtol, what + " running_mean");
    expect_close(part(c), rv.to_vector(), 1e-6, std::max(prtol, 2e-4), what + " running_var");
    // gw and gb are sums over M rows of T-rounded terms: judged relative to their largest element.
    expect_close(part(c), gw_ref.to_vector(), std::is_same_v<T, float> ? 1e-5 : 1e-2, prtol, what + " gw");
    expect_close(part(c), gb_ref.to_vector(), std::is_same_v<T, float> ? 1e-5 : 1e-2, prtol, what + " gb");
  }
}

TEST_CASE("batch_norm training and eval, forward and backward, match the CPU backend") {
  check_batch_norm<float, float>(600, 37, true, 1);  // three slabs, two channel blocks
  check_batch_norm<float, float>(30, 5, false, 2);   // no weight or bias
  check_batch_norm<float, float>(1, 3, true, 3);     // one row: the unbiased variance falls back to M2/M
  check_batch_norm<__nv_bfloat16, float>(300, 19, true, 4);
  check_batch_norm<__nv_bfloat16, __nv_bfloat16>(50, 7, true, 5);
  check_batch_norm<__half, float>(300, 19, true, 6);
  check_batch_norm<__half, __half>(50, 7, true, 7);
}

TEST_CASE("batch_norm launchers reject eval without running statistics") {
  CHECK_THROWS_WITH_AS((kern::batch_norm<float, float>(nullptr, nullptr, nullptr, nullptr, nullptr, false, 0.1, 1e-5,
                                                       nullptr, nullptr, nullptr, nullptr, 4, 3)),
                       doctest::Contains("eval mode needs running_mean and running_var"), std::invalid_argument);
}

}  // namespace
