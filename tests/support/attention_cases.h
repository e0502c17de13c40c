// The attention kernel tests (kernels/cuda/attention.cu) shared by tests/emu/attention_kernels.cpp (under
// the emulator) and tests/gpu/attention_kernels.cpp (on a GPU): each includes this file after its device
// harness (tests/support/emu_harness.h, gpu_harness.h), whose rt, kern and repeat_bit_identical (four
// fiber orders under the emulator, twice on a GPU, bit-identical results) it uses.
// Forward and backward against the CPU backend (float32) and, for bfloat16/float16, judged the
// FlashAttention way against a float64 reference: the kernel's largest error may be at most twice that of
// the same attention computed naively in the low precision (every intermediate rounded, as PyTorch's math
// path does), plus 1e-4. Odd sizes (not multiples of the 32-row tiles of the float32 kernels or the 64-row
// tiles of the tensor-core forward), head dims up to the largest (128),
// a padding mask expanded with stride-0 dimensions, an additive mask with a fully masked row, dropout (the
// CPU's masks), outputs poisoned with NaN.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/attention.h"
#include "tensor/philox.h"
#include "tensor/tensor.h"
#include "tests/support/check.h"
#include "tests/support/device_buffer.h"

namespace {

using vb::AttentionInputs;
using vb::DType;
using vb::Shape;
using vb::Tensor;

constexpr double kInf = std::numeric_limits<double>::infinity();

// x rounded to the element type T (float, __nv_bfloat16, __half: their conversions round to nearest even).
template <class T>
double round_to(double x) {
  return static_cast<float>(T(static_cast<float>(x)));
}

template <class T>
DType dtype_of() {
  if constexpr (std::is_same_v<T, __half>)
    return DType::Float16;
  else if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return DType::BFloat16;
  else
    return DType::Float32;
}

enum class MaskKind { none, padding, additive };

struct Case {
  int64_t B, H, Tq, Tk, D;
  MaskKind mask = MaskKind::none;
  double dropout_p = 0.0;
  uint64_t seed = 0x5eed, offset = 1234;
};

std::string describe(const Case& c) {
  const char* mask = c.mask == MaskKind::none ? "none" : c.mask == MaskKind::padding ? "padding" : "additive";
  return "B=" + std::to_string(c.B) + " H=" + std::to_string(c.H) + " Tq=" + std::to_string(c.Tq) +
         " Tk=" + std::to_string(c.Tk) + " D=" + std::to_string(c.D) + " mask=" + mask +
         " p=" + std::to_string(c.dropout_p);
}

// Host inputs, already rounded to the element types; the mask as its distinct elements + strides.
struct Inputs {
  std::vector<float> q, k, v, gout, mask;
  Shape mask_base_shape;
  int64_t mask_stride[4] = {0, 0, 0, 0};
  double scale;
};

template <class T, class M>
Inputs make_inputs(const Case& c, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  auto random = [&](int64_t n, float amplitude) {
    std::vector<float> x(static_cast<std::size_t>(n));
    for (float& e : x) e = float(round_to<T>(amplitude * dist(rng)));
    return x;
  };
  Inputs in;
  in.q = random(c.B * c.H * c.Tq * c.D, 2.0f);  // scores of a few units: a peaked softmax
  in.k = random(c.B * c.H * c.Tk * c.D, 2.0f);
  in.v = random(c.B * c.H * c.Tk * c.D, 1.0f);
  in.gout = random(c.B * c.H * c.Tq * c.D, 1.0f);
  in.scale = 1.0 / std::sqrt(double(c.D));
  const float neg_inf = -std::numeric_limits<float>::infinity();
  if (c.mask == MaskKind::padding) {
    // (B, 1, 1, Tk) keep/pad pattern as 0 / −inf, expanded to (B, H, Tq, Tk) with stride-0 dims.
    in.mask_base_shape = {c.B, 1, 1, c.Tk};
    for (int64_t b = 0; b < c.B; ++b) {
      const int64_t valid = b % 2 == 0 ? std::max<int64_t>(c.Tk - 3, 1) : std::max<int64_t>(c.Tk / 3, 1);
      for (int64_t j = 0; j < c.Tk; ++j) in.mask.push_back(j < valid ? 0.0f : neg_inf);
    }
    in.mask_stride[0] = c.Tk;
    in.mask_stride[3] = 1;
  } else if (c.mask == MaskKind::additive) {
    // A full (B, H, Tq, Tk) additive mask: random biases, 10% −inf, and one fully masked row.
    in.mask_base_shape = {c.B, c.H, c.Tq, c.Tk};
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    for (int64_t e = 0; e < c.B * c.H * c.Tq * c.Tk; ++e)
      in.mask.push_back(u(rng) < 0.1f ? neg_inf : float(round_to<M>(dist(rng))));
    const int64_t row = ((c.B - 1) * c.H + (c.H - 1)) * c.Tq + c.Tq / 2;
    std::fill_n(in.mask.begin() + row * c.Tk, c.Tk, neg_inf);
    in.mask_stride[0] = c.H * c.Tq * c.Tk;
    in.mask_stride[1] = c.Tq * c.Tk;
    in.mask_stride[2] = c.Tk;
    in.mask_stride[3] = 1;
  }
  return in;
}

// Everything the kernels produce, as float; bits of low-precision elements are preserved.
struct Results {
  std::vector<float> out, lse, gq, gk, gv;

  std::vector<float> flat() const {
    std::vector<float> all;
    for (const auto* part : {&out, &lse, &gq, &gk, &gv}) all.insert(all.end(), part->begin(), part->end());
    return all;
  }
};

template <class T, class M>
Results run_device(const Case& c, const Inputs& in) {
  DeviceBuffer<T> q(in.q), k(in.k), v(in.v), gout(in.gout);
  DeviceBuffer<M> mask(in.mask);
  AttentionInputs<T, M> args;
  args.shape = {c.B, c.H, c.Tq, c.Tk, c.D};
  args.q = q.data;
  args.k = k.data;
  args.v = v.data;
  if (c.mask != MaskKind::none) {
    args.mask = mask.data;
    std::copy_n(in.mask_stride, 4, args.mask_stride);
  }
  args.scale = in.scale;
  args.dropout_p = c.dropout_p;
  args.seed = c.seed;
  args.offset = c.offset;
  const std::size_t nq = std::size_t(c.B * c.H * c.Tq * c.D), nk = std::size_t(c.B * c.H * c.Tk * c.D);
  DeviceBuffer<T> out(nq), gq(nq), gk(nk), gv(nk);
  DeviceBuffer<float> lse(std::size_t(c.B * c.H * c.Tq)), delta(vb::attention_backward_workspace(args.shape));
  kern::attention_forward(args, out.data, lse.data);
  kern::attention_backward(args, out.data, gout.data, lse.data, delta.data, gq.data, gk.data, gv.data);
  rt::synchronize();
  return {out.floats(), lse.floats(), gq.floats(), gk.floats(), gv.floats()};
}

// The kernels, repeated by the includer's repeat_bit_identical; the results of the last run.
template <class T, class M>
Results run_checked(const Case& c, const Inputs& in) {
  Results last;
  repeat_bit_identical([&] {
    last = run_device<T, M>(c, in);
    return last.flat();
  });
  return last;
}

// The CPU backend on the same inputs, for the first `batches` batch entries (all by default; a leading
// slice keeps its dropout indices, which start at (b, h) = (0, 0)). float32 only: the CPU's
// low-precision path is float32 inside.
Results run_cpu(const Case& c, const Inputs& in, DType mask_dtype, int64_t batches = -1) {
  const int64_t B = batches < 0 ? c.B : batches;
  REQUIRE(B <= c.B);
  const Shape qs{B, c.H, c.Tq, c.D}, ks{B, c.H, c.Tk, c.D};
  auto leading = [](const std::vector<float>& x, int64_t n) { return std::vector<float>(x.begin(), x.begin() + n); };
  const Tensor q = Tensor::from_vector(leading(in.q, B * c.H * c.Tq * c.D), qs),
               k = Tensor::from_vector(leading(in.k, B * c.H * c.Tk * c.D), ks),
               v = Tensor::from_vector(leading(in.v, B * c.H * c.Tk * c.D), ks),
               gout = Tensor::from_vector(leading(in.gout, B * c.H * c.Tq * c.D), qs);
  Tensor mask;
  if (c.mask != MaskKind::none) {
    Shape base = in.mask_base_shape;
    base[0] = B;
    mask = Tensor::from_vector(leading(in.mask, B * in.mask_stride[0]), base, mask_dtype)
               .as_strided({B, c.H, c.Tq, c.Tk},
                           {in.mask_stride[0], in.mask_stride[1], in.mask_stride[2], in.mask_stride[3]}, 0);
  }
  Tensor out = Tensor::empty(qs), lse = Tensor::empty({B, c.H, c.Tq});
  Tensor gq = Tensor::empty(qs), gk = Tensor::empty(ks), gv = Tensor::empty(ks);
  vb::CpuBackend& cpu = vb::cpu_backend();
  cpu.attention(q, k, v, mask, in.scale, c.dropout_p, c.seed, c.offset, out, lse);
  cpu.attention_backward(q, k, v, mask, out, gout, lse, in.scale, c.dropout_p, c.seed, c.offset, gq, gk, gv);
  auto floats = [](const Tensor& t) {
    const std::vector<double> d = t.to_vector();
    return std::vector<float>(d.begin(), d.end());
  };
  return {floats(out), floats(lse), floats(gq), floats(gk), floats(gv)};
}

// An independent materialised attention in double; `rnd` rounds every intermediate (identity for the
// float64 reference, the element type's rounding for the naive low-precision one).
template <class Round>
std::vector<std::vector<double>> reference(const Case& c, const Inputs& in, Round rnd) {
  const int64_t B = c.B, H = c.H, Tq = c.Tq, Tk = c.Tk, D = c.D;
  std::vector<double> out(std::size_t(B * H * Tq * D)), lse(std::size_t(B * H * Tq)), gq(out.size()),
      gk(std::size_t(B * H * Tk * D)), gv(gk.size());
  const double keep_scale = c.dropout_p >= 1 ? 0.0 : 1.0 / (1.0 - c.dropout_p);
  std::vector<double> p(std::size_t(Tq * Tk)), z(p.size()), dp(p.size());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t bh = b * H + h;
      const float* q = in.q.data() + bh * Tq * D;
      const float* k = in.k.data() + bh * Tk * D;
      const float* v = in.v.data() + bh * Tk * D;
      const float* go = in.gout.data() + bh * Tq * D;
      for (int64_t i = 0; i < Tq; ++i) {
        std::vector<double> s(static_cast<std::size_t>(Tk));
        double m = -kInf;
        for (int64_t j = 0; j < Tk; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += double(q[i * D + d]) * k[j * D + d];
          s[j] = rnd(in.scale * rnd(dot));
          if (c.mask != MaskKind::none)
            s[j] = rnd(s[j] + in.mask[b * in.mask_stride[0] + h * in.mask_stride[1] + i * in.mask_stride[2] +
                                      j * in.mask_stride[3]]);
          m = std::max(m, s[j]);
          const uint64_t index = uint64_t((bh * Tq + i) * Tk + j);
          z[i * Tk + j] = c.dropout_p > 0 && vb::philox_uniform(c.seed, c.offset + index) < float(c.dropout_p)
                              ? 0.0
                              : (c.dropout_p > 0 ? keep_scale : 1.0);
        }
        double sum = 0;
        for (int64_t j = 0; j < Tk; ++j) sum += m == -kInf ? 0.0 : std::exp(s[j] - m);
        lse[bh * Tq + i] = m == -kInf ? -kInf : m + std::log(sum);
        for (int64_t j = 0; j < Tk; ++j) p[i * Tk + j] = m == -kInf ? 0.0 : rnd(std::exp(s[j] - m) / sum);
      }
      for (int64_t i = 0; i < Tq; ++i)
        for (int64_t d = 0; d < D; ++d) {
          double acc = 0;
          for (int64_t j = 0; j < Tk; ++j) acc += rnd(p[i * Tk + j] * z[i * Tk + j]) * v[j * D + d];
          out[(bh * Tq + i) * D + d] = rnd(acc);
        }
      // Backward: dP = (dO·vᵀ) ⊙ Z, Δ_i = Σ_j P_ij·dP_ij, dS = P ⊙ (dP − Δ).
      for (int64_t i = 0; i < Tq; ++i) {
        double delta = 0;
        for (int64_t j = 0; j < Tk; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += double(go[i * D + d]) * v[j * D + d];
          dp[i * Tk + j] = rnd(rnd(dot) * z[i * Tk + j]);
          delta += p[i * Tk + j] * dp[i * Tk + j];
        }
        for (int64_t j = 0; j < Tk; ++j) dp[i * Tk + j] = rnd(p[i * Tk + j] * (dp[i * Tk + j] - delta));  // dS
      }
      for (int64_t d = 0; d < D; ++d) {
        for (int64_t i = 0; i < Tq; ++i) {
          double acc = 0;
          for (int64_t j = 0; j < Tk; ++j) acc += dp[i * Tk + j] * k[j * D + d];
          gq[(bh * Tq + i) * D + d] = rnd(in.scale * rnd(acc));
        }
        for (int64_t j = 0; j < Tk; ++j) {
          double acc_k = 0, acc_v = 0;
          for (int64_t i = 0; i < Tq; ++i) {
            acc_k += dp[i * Tk + j] * q[i * D + d];
            acc_v += rnd(p[i * Tk + j] * z[i * Tk + j]) * go[i * D + d];
          }
          gk[(bh * Tk + j) * D + d] = rnd(in.scale * rnd(acc_k));
          gv[(bh * Tk + j) * D + d] = rnd(acc_v);
        }
      }
    }
  return {out, lse, gq, gk, gv};
}

bool same_infinity(double a, double b) { return std::isinf(a) && std::isinf(b) && (a > 0) == (b > 0); }

// vb::test::check_close over want's elements and the leading ones of got (the whole problem's results
// against a reference on a leading slice).
template <class Want>
void check_close(const std::vector<float>& got, const std::vector<Want>& want, double atol, double rtol,
                 const std::string& what) {
  REQUIRE(got.size() >= want.size());
  const Shape n{int64_t(want.size())};
  vb::test::check_close(Tensor::from_vector(std::vector<double>(got.begin(), got.begin() + n[0]), n, DType::Float64),
                        Tensor::from_vector(std::vector<double>(want.begin(), want.end()), n, DType::Float64), atol,
                        rtol, what);
}

struct Tolerance {
  double atol, rtol;
};

// The kernels' results against the CPU backend's (on its leading slice, where run_cpu took one).
void check_close_to_cpu(const Results& got, const Results& cpu, Tolerance out, Tolerance lse, Tolerance grads) {
  check_close(got.out, cpu.out, out.atol, out.rtol, "out");
  check_close(got.lse, cpu.lse, lse.atol, lse.rtol, "lse");
  check_close(got.gq, cpu.gq, grads.atol, grads.rtol, "gq");
  check_close(got.gk, cpu.gk, grads.atol, grads.rtol, "gk");
  check_close(got.gv, cpu.gv, grads.atol, grads.rtol, "gv");
}

template <class V>
double max_error(const V& got, const std::vector<double>& ref) {
  double worst = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    if (same_infinity(got[i], ref[i])) continue;
    const double e = std::abs(double(got[i]) - ref[i]);
    worst = std::isnan(e) ? kInf : std::max(worst, e);
  }
  return worst;
}

const char* const kNames[] = {"out", "lse", "gq", "gk", "gv"};

// float32: against the CPU backend.
void check_float32(const Case& c) {
  INFO(describe(c));
  const Inputs in = make_inputs<float, float>(c, 11);
  check_close_to_cpu(run_checked<float, float>(c, in), run_cpu(c, in, DType::Float32), {1e-5, 1e-5}, {1e-5, 1e-5},
                     {1e-5, 1e-4});
}

// bfloat16 / float16: the FlashAttention criterion against float64; lse (float32) within 1e-4.
template <class T, class M>
void check_low_precision(const Case& c) {
  INFO(describe(c), ", mask ", dtype_name(dtype_of<M>()), ", ", dtype_name(dtype_of<T>()));
  const Inputs in = make_inputs<T, M>(c, 23);
  const Results got = run_checked<T, M>(c, in);
  const auto exact = reference(c, in, [](double x) { return x; });
  const auto naive = reference(c, in, [](double x) { return round_to<T>(x); });
  const std::vector<float>* parts[] = {&got.out, &got.lse, &got.gq, &got.gk, &got.gv};
  check_close(got.lse, exact[1], 1e-4, 1e-5, "lse");
  for (int part : {0, 2, 3, 4}) {
    const double ours = max_error(*parts[part], exact[part]), theirs = max_error(naive[part], exact[part]);
    INFO(kNames[part], ": kernel max error ", ours, ", naive ", dtype_name(dtype_of<T>()), " max error ", theirs);
    CHECK(ours <= 2 * theirs + 1e-4);
  }
}

}  // namespace

TEST_CASE("attention float32: forward and backward match the CPU backend") {
  check_float32({2, 2, 7, 13, 16});
  check_float32({1, 2, 37, 45, 24, MaskKind::padding});          // several query and key tiles
  check_float32({2, 2, 7, 13, 64, MaskKind::additive});          // with a fully masked row
  check_float32({1, 2, 33, 40, 40, MaskKind::additive, 0.2});    // dropout across tiles
  check_float32({2, 1, 9, 11, 100, MaskKind::padding, 0.1});     // four head-dim columns per lane
  check_float32({2, 1, 9, 70, 128, MaskKind::padding, 0.1});     // the largest head dim
  check_float32({1, 1, 1, 1, 8});                                // the smallest problem
}

TEST_CASE("attention float32 dropout: the kernel drops the CPU's elements") {
  // With p = 0.5 any difference in the masks would change out by O(1); also a different offset.
  Case c{1, 2, 20, 30, 16, MaskKind::none, 0.5, 99, 777};
  check_float32(c);
}

TEST_CASE("attention bfloat16 and float16: the FlashAttention criterion against float64") {
  check_low_precision<__nv_bfloat16, __nv_bfloat16>({2, 2, 7, 13, 64, MaskKind::padding});
  check_low_precision<__nv_bfloat16, float>({1, 2, 40, 35, 32, MaskKind::additive, 0.15});
  check_low_precision<__nv_bfloat16, float>({2, 2, 19, 50, 64, MaskKind::padding, 0.1});
  check_low_precision<__half, __half>({1, 2, 19, 50, 48, MaskKind::additive});
  check_low_precision<__half, float>({2, 1, 33, 9, 24, MaskKind::padding, 0.25});
  check_low_precision<__half, float>({2, 2, 19, 50, 96, MaskKind::padding});
  // The tensor-core kernels' own edges (kernels/cuda/attention_mma.cu: 64-row tiles, streamed tiles in
  // two cp.async stages, head dims padded to 32, 64 or 128).
  check_low_precision<__nv_bfloat16, __nv_bfloat16>({1, 2, 130, 200, 64, MaskKind::padding});  // stages reused
  check_low_precision<__half, float>({1, 1, 70, 150, 128, MaskKind::additive, 0.1});            // largest D
  check_low_precision<__nv_bfloat16, float>({2, 1, 17, 70, 20});  // D % 8 ≠ 0: element loads, not cp.async
  check_low_precision<__half, __half>({1, 2, 65, 64, 8});          // D < 16; one query row past a tile
  check_low_precision<__nv_bfloat16, __nv_bfloat16>({1, 1, 5, 0, 16});  // no keys: out 0, lse −inf
  check_low_precision<__half, float>({1, 1, 0, 5, 16});                  // no queries: dk = dv = 0
}

TEST_CASE("attention launchers reject what the kernels cannot do") {
  float dummy = 0;
  AttentionInputs<float, float> args;
  args.q = args.k = args.v = &dummy;
  args.shape = {1, 1, 4, 4, 129};
  auto message = [&] {
    try {
      kern::attention_forward(args, &dummy, &dummy);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK(message().find("head dim D in [1, 128]") != std::string::npos);
  args.shape.D = 16;
  args.dropout_p = 1.5;
  CHECK(message().find("dropout probability") != std::string::npos);
}
