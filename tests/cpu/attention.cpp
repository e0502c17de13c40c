// scaled_dot_product_attention on the CPU: forward against a naive double reference written here
// (materialise S, softmax, P·v), float64 gradient checks with and without masks and dropout, fully
// masked rows, half types against float32, shape errors, and strided heads (split_heads' views in, outputs
// in their layout) bit for bit against contiguous tensors, with no copy kernel in multi-head attention.
#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/profiler.h"
#include "nn/layers.h"
#include "tensor/philox.h"
#include "tests/support/check.h"

using namespace vb;
using vb::test::check_close;
using vb::test::error_of;
using vb::test::gradcheck;
using vb::test::uniform;

namespace {

// Naive attention in double. mask: additive (B, H, Tq, Tk) values (empty = none). Dropout as the kernel
// specifies: element ((b·H + h)·Tq + i)·Tk + j of the Philox stream at (seed, offset). A row masked
// everywhere gives 0.
Tensor attention_reference(const Tensor& q, const Tensor& k, const Tensor& v, const std::vector<double>& mask,
                           double scale, double p = 0, uint64_t seed = 0, uint64_t offset = 0) {
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), Tk = k.size(2), D = q.size(3);
  std::vector<double> out(size_t(B * H * Tq * D), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < Tq; ++i) {
        std::vector<double> s(static_cast<size_t>(Tk));
        double m = -INFINITY;
        for (int64_t j = 0; j < Tk; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += q.at({b, h, i, d}) * k.at({b, h, j, d});
          s[size_t(j)] = scale * dot + (mask.empty() ? 0 : mask[size_t(((b * H + h) * Tq + i) * Tk + j)]);
          m = std::max(m, s[size_t(j)]);
        }
        if (m == -INFINITY) continue;
        double sum = 0;
        for (double& e : s) sum += (e = std::exp(e - m));
        for (int64_t j = 0; j < Tk; ++j) {
          double pij = s[size_t(j)] / sum;
          if (p > 0) {
            const uint64_t n = offset + uint64_t(((b * H + h) * Tq + i) * Tk + j);
            pij = philox_uniform(seed, n) >= float(p) ? pij / (1 - p) : 0;
          }
          for (int64_t d = 0; d < D; ++d) out[size_t(((b * H + h) * Tq + i) * D + d)] += pij * v.at({b, h, j, d});
        }
      }
  return Tensor::from_vector(out, {B, H, Tq, D}, DType::Float64);
}

// Additive values of a bool mask broadcast to (B, H, Tq, Tk): 0 where true, −inf where false.
std::vector<double> additive_of(const Tensor& mask, const Shape& scores) {
  const Tensor e = contiguous(expand(mask, scores));
  std::vector<double> out;
  for (double m : e.to_vector()) out.push_back(m != 0 ? 0.0 : -INFINITY);
  return out;
}

// A (B, 1, 1, Tk) key-padding mask: batch b may attend to its first lengths[b] keys.
Tensor padding_mask(const std::vector<int64_t>& lengths, int64_t tk) {
  std::vector<double> m;
  for (int64_t len : lengths)
    for (int64_t j = 0; j < tk; ++j) m.push_back(j < len ? 1 : 0);
  return Tensor::from_vector(m, {int64_t(lengths.size()), 1, 1, tk}, DType::Bool);
}

}  // namespace

TEST_CASE("attention forward matches the naive reference") {
  const Tensor q = uniform({2, 3, 5, 4}, 1), k = uniform({2, 3, 7, 4}, 2), v = uniform({2, 3, 7, 4}, 3);
  check_close(scaled_dot_product_attention(q, k, v), attention_reference(q, k, v, {}, 0.5), 1e-12, 1e-12,
              "no mask, default scale 1/sqrt(D)");
  check_close(scaled_dot_product_attention(q, k, v, {}, 0.0, 0.9), attention_reference(q, k, v, {}, 0.9), 1e-12,
              1e-12, "explicit scale");
  // Bool key-padding mask (B, 1, 1, Tk).
  const Tensor pad = padding_mask({7, 3}, 7);
  check_close(scaled_dot_product_attention(q, k, v, pad), attention_reference(q, k, v, additive_of(pad, {2, 3, 5, 7}), 0.5),
              1e-12, 1e-12, "bool padding mask");
  // Float additive mask (Tq, Tk), broadcast over B and H.
  const Tensor fm = uniform({5, 7}, 4, -2, 2);
  const std::vector<double> fmv = contiguous(expand(fm, {2, 3, 5, 7})).to_vector();
  check_close(scaled_dot_product_attention(q, k, v, fm), attention_reference(q, k, v, fmv, 0.5), 1e-12, 1e-12,
              "float mask");
  // Non-contiguous q: a (B, Tq, H, D) tensor transposed to (B, H, Tq, D).
  const Tensor qt = transpose(uniform({2, 5, 3, 4}, 5), 1, 2);
  check_close(scaled_dot_product_attention(qt, k, v), attention_reference(contiguous(qt), k, v, {}, 0.5), 1e-12,
              1e-12, "transposed q");
}

TEST_CASE("attention dropout uses the Philox mask at ((b·H + h)·Tq + i)·Tk + j") {
  const Tensor q = uniform({2, 2, 4, 3}, 10), k = uniform({2, 2, 6, 3}, 11), v = uniform({2, 2, 6, 3}, 12);
  Generator g{99, 1000};
  const Tensor out = scaled_dot_product_attention(q, k, v, {}, 0.3, std::nullopt, &g);
  CHECK(g.offset == 1000 + 2 * 2 * 4 * 6);
  check_close(out, attention_reference(q, k, v, {}, 1 / std::sqrt(3.0), 0.3, 99, 1000), 1e-12, 1e-12, "dropout");
  Generator g2{99, 0};
  scaled_dot_product_attention(q, k, v, {}, 0.0, std::nullopt, &g2);
  CHECK(g2.offset == 0);
}

TEST_CASE("attention gradients") {
  const auto sdpa = [](const Tensor& mask, double p = 0) {
    return [mask, p](const std::vector<Tensor>& in) {
      Generator gen{5, 3};  // fresh each call: the same dropout mask for every evaluation
      return scaled_dot_product_attention(in[0], in[1], in[2], mask, p, std::nullopt, &gen);
    };
  };
  const std::vector<Tensor> qkv = {uniform({2, 2, 3, 4}, 20), uniform({2, 2, 5, 4}, 21), uniform({2, 2, 5, 4}, 22)};
  gradcheck(sdpa({}), qkv, "attention no mask");
  gradcheck(sdpa(padding_mask({5, 2}, 5)), qkv, "attention bool padding mask");
  gradcheck(sdpa(uniform({2, 1, 3, 5}, 23, -1, 1)), qkv, "attention float mask");
  gradcheck(sdpa({}, 0.3), qkv, "attention dropout");
  gradcheck(sdpa(padding_mask({3, 4}, 5), 0.5), qkv, "attention mask and dropout");
  gradcheck([](const std::vector<Tensor>& in) {
    return scaled_dot_product_attention(transpose(in[0], 1, 2), in[1], in[2], {}, 0.0, 0.7);
  }, {uniform({1, 3, 2, 4}, 24), uniform({1, 2, 1, 4}, 25), uniform({1, 2, 1, 4}, 26)},
            "attention transposed q, one key, explicit scale");
}

TEST_CASE("a fully masked row gives zeros and zero gradients, never NaN") {
  Tensor q = uniform({1, 2, 3, 4}, 30), k = uniform({1, 2, 5, 4}, 31), v = uniform({1, 2, 5, 4}, 32);
  // Query row 1 may attend to nothing; the others to keys 0..2.
  std::vector<double> m(15, 1.0);
  for (int j = 0; j < 5; ++j) m[size_t(5 + j)] = 0;
  for (int i : {0, 2})
    for (int j = 3; j < 5; ++j) m[size_t(i * 5 + j)] = 0;
  const Tensor mask = Tensor::from_vector(m, {3, 5}, DType::Bool);
  for (Tensor* t : {&q, &k, &v}) t->set_requires_grad(true);
  const Tensor out = scaled_dot_product_attention(q, k, v, mask);
  check_close(out, attention_reference(q, k, v, additive_of(mask, {1, 2, 3, 5}), 0.5), 1e-12, 1e-12, "values");
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t d = 0; d < 4; ++d) CHECK(out.at({0, h, 1, d}) == 0.0);
  backward(out, uniform({1, 2, 3, 4}, 33));
  for (const Tensor* t : {&q, &k, &v})
    for (double g : t->grad().to_vector()) CHECK(std::isfinite(g));
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t d = 0; d < 4; ++d) CHECK(q.grad().at({0, h, 1, d}) == 0.0);
  // Keys nobody may attend to get no gradient.
  for (int64_t j = 3; j < 5; ++j) CHECK(k.grad().at({0, 0, j, 0}) == 0.0);
}

TEST_CASE("attention in float32, bfloat16 and float16") {
  const Tensor q = uniform({2, 2, 8, 16}, 40), k = uniform({2, 2, 8, 16}, 41), v = uniform({2, 2, 8, 16}, 42);
  const Tensor ref = scaled_dot_product_attention(q, k, v, padding_mask({8, 5}, 8));
  auto run = [&](DType t) {
    return to(scaled_dot_product_attention(to(q, t), to(k, t), to(v, t), padding_mask({8, 5}, 8)), DType::Float64);
  };
  check_close(run(DType::Float32), ref, 1e-6, 1e-5, "float32");
  check_close(run(DType::BFloat16), ref, 2e-2, 2e-2, "bfloat16");
  check_close(run(DType::Float16), ref, 3e-3, 3e-3, "float16");
  // Gradients in float32 against float64.
  std::vector<Tensor> g64, g32;
  for (DType t : {DType::Float64, DType::Float32}) {
    Tensor a = detach(to(q, t)), b = detach(to(k, t)), c = detach(to(v, t));
    for (Tensor* x : {&a, &b, &c}) x->set_requires_grad(true);
    backward(sum(scaled_dot_product_attention(a, b, c, {}, 0.0, std::nullopt) * to(uniform({2, 2, 8, 16}, 43), t)));
    auto& dst = t == DType::Float64 ? g64 : g32;
    dst = {a.grad(), b.grad(), c.grad()};
  }
  for (size_t i = 0; i < 3; ++i) check_close(to(g32[i], DType::Float64), g64[i], 1e-5, 1e-4, "float32 gradient");
}

TEST_CASE("attention errors") {
  const Tensor q = uniform({2, 3, 5, 4}, 50), k = uniform({2, 3, 7, 4}, 51), v = uniform({2, 3, 7, 4}, 52);
  CHECK(error_of([&] { scaled_dot_product_attention(q, uniform({2, 3, 7, 8}, 1), v); }).find("expected q (B, H, Tq, D)") !=
        std::string::npos);
  CHECK_THROWS_AS(scaled_dot_product_attention(q, k, uniform({2, 3, 6, 4}, 1)), Error);
  CHECK_THROWS_AS(scaled_dot_product_attention(uniform({3, 5, 4}, 1), k, v), Error);
  CHECK(error_of([&] { scaled_dot_product_attention(q, k, v, uniform({5, 6}, 1)); }).find("do not broadcast") !=
        std::string::npos);
  CHECK_THROWS_AS(scaled_dot_product_attention(q, to(k, DType::Float32), v), Error);
  CHECK_THROWS_AS(scaled_dot_product_attention(q, k, v, {}, 1.5), Error);
}

TEST_CASE("attention reads and writes strided heads: the same bits as contiguous tensors, and no copies") {
  // q, k, v as split_heads makes them: (B, H, T, D) views of (B, T, H·D) rows (last stride 1), and a view with
  // a non-unit last stride (the kernel copies it); outputs written straight into such views, or through a
  // contiguous temporary when their last stride is not 1. Every result must equal, bit for bit, the same call
  // on contiguous copies (the kernel's maps only change where rows start).
  const int64_t B = 2, H = 3, Tq = 5, Tk = 7, D = 4;
  const auto heads_view = [&](const Tensor& rows, int64_t t) {  // (B, t, H·D) → (B, H, t, D)
    return permute(reshape(rows, {B, t, H, D}), {0, 2, 1, 3});
  };
  for (DType dt : {DType::Float32, DType::Float64}) {
    CAPTURE(dtype_name(dt));
    const Tensor q = heads_view(uniform({B, Tq, H * D}, 60, -1, 1, dt), Tq);
    const Tensor k = heads_view(uniform({B, Tk, H * D}, 61, -1, 1, dt), Tk);
    const Tensor v = transpose(uniform({B, H, D, Tk}, 62, -1, 1, dt), 2, 3);  // last stride Tk: copied
    REQUIRE((q.stride(3) == 1 && !q.is_contiguous() && v.stride(3) == Tk));
    const Tensor mask = expand(uniform({B, 1, 1, Tk}, 63, -1, 0, dt), {B, H, Tq, Tk});
    const Tensor gout = heads_view(uniform({B, Tq, H * D}, 64, -1, 1, dt), Tq);
    const Tensor qc = contiguous(q), kc = contiguous(k), vc = contiguous(v), gc = contiguous(gout);
    Backend& cpu = backend(Device{});
    for (double p : {0.0, 0.25}) {
      CAPTURE(p);
      Tensor out_c = Tensor::empty({B, H, Tq, D}, dt), lse_c = Tensor::empty({B, H, Tq}, (dt == DType::Float64 ? DType::Float64 : DType::Float32));
      cpu.attention(qc, kc, vc, mask, 0.5, p, 9, 100, out_c, lse_c);
      // out into a (B, T, H, D) block viewed as (B, H, T, D) (last stride 1), and into a transposed view.
      Tensor out_rows = permute(Tensor::empty({B, Tq, H, D}, dt), {0, 2, 1, 3});
      Tensor out_t = transpose(Tensor::empty({B, H, D, Tq}, dt), 2, 3);
      Tensor lse_s = Tensor::empty({B, H, Tq}, (dt == DType::Float64 ? DType::Float64 : DType::Float32));
      for (Tensor* out : {&out_rows, &out_t}) {
        cpu.attention(q, k, v, mask, 0.5, p, 9, 100, *out, lse_s);
        CHECK(contiguous(*out).to_vector() == out_c.to_vector());
        CHECK(lse_s.to_vector() == lse_c.to_vector());
      }
      std::vector<Tensor> gc3 = {Tensor::empty({B, H, Tq, D}, dt), Tensor::empty({B, H, Tk, D}, dt),
                                 Tensor::empty({B, H, Tk, D}, dt)};
      cpu.attention_backward(qc, kc, vc, mask, out_c, gc, lse_c, 0.5, p, 9, 100, gc3[0], gc3[1], gc3[2]);
      Tensor gq = permute(Tensor::empty({B, Tq, H, D}, dt), {0, 2, 1, 3});
      Tensor gk = transpose(Tensor::empty({B, H, D, Tk}, dt), 2, 3);
      Tensor gv = permute(Tensor::empty({B, Tk, H, D}, dt), {0, 2, 1, 3});
      cpu.attention_backward(q, k, v, mask, out_rows, gout, lse_c, 0.5, p, 9, 100, gq, gk, gv);
      CHECK(contiguous(gq).to_vector() == gc3[0].to_vector());
      CHECK(contiguous(gk).to_vector() == gc3[1].to_vector());
      CHECK(contiguous(gv).to_vector() == gc3[2].to_vector());
    }
  }
  // Outputs of the wrong shape or dtype are errors, not writes past their ends.
  {
    const Tensor q = uniform({1, 2, 3, 4}, 65), k = uniform({1, 2, 5, 4}, 66);
    Tensor out = Tensor::empty({1, 2, 3, 5}, DType::Float64), lse = Tensor::empty({1, 2, 3}, DType::Float64);
    CHECK(error_of([&] { backend(Device{}).attention(q, k, k, {}, 0.5, 0, 0, 0, out, lse); }).find("output out") !=
          std::string::npos);
  }

  // Multi-head attention on the CPU: split_heads' views go in, merge_heads reads the output as rows, and the
  // gradients come back in the rows' layout — no copy kernel runs in forward or backward (each used to copy
  // q, k, v and the output gradient, then gq, gk, gv and the output: 8 copies).
  nn::MultiheadSelfAttention mha(H * D, H, 0.1);
  Tensor xg = uniform({B, Tq, H * D}, 67, -1, 1, DType::Float32);
  xg.set_requires_grad();
  kernel_profile_start();
  Tensor y = mha.forward(xg);
  backward(sum(y));
  std::map<std::string, int64_t> calls;
  for (const KernelTime& r : kernel_profile_stop()) calls[r.kernel] = r.calls;
  CHECK(calls.count("attention float32") == 1);
  CHECK(calls.count("attention_backward float32") == 1);
  CHECK(calls.count("copy float32 → float32") == 0);
  // Its gradient against float64 finite differences (the strided path end to end, dropout off).
  mha.eval();
  mha.to(DType::Float64);
  gradcheck([&](const std::vector<Tensor>& in) { return mha.forward(in[0]); }, {uniform({B, Tq, H * D}, 68)},
            "multi-head attention, strided heads");
}
