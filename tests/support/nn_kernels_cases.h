// The NN kernels (kernels/cuda/nn.h) against the CPU backend, written once for both kernel namespaces:
// tests/emu/nn_kernels.cpp includes this with NN_KERNELS_NS = emu (every case under several fiber
// orders, bit-identical), tests/gpu/nn_kernels.cpp with NN_KERNELS_NS = cuda (every case run twice,
// bit-identical). The includer defines, before including:
//   std::vector<uint8_t> run_orders(const std::function<std::vector<uint8_t>()>& run);
// which runs `run` (launches; returns the output bytes) under its orders and returns the bytes.
//
// Inputs are random and never all zero, shapes odd (7 x 33, 5 x 1029, ...); outputs are filled with
// 0xFF bytes (NaN in every float type) before each run, so an unwritten element fails. Tolerances
// |got − cpu| ≤ atol + rtol·|cpu| per storage dtype (tol()): float32 allows a few float32 ulps of
// reordered sums; bfloat16/float16 one or two ulps of the output rounding (the two sides round the
// same float32 result computed in another order).
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/nn.h"
#include "tests/support/check.h"
#include "train/optim.h"

namespace nn_kernels_test {

namespace rtk = vb::rt::NN_KERNELS_NS;
namespace K = vb::NN_KERNELS_NS;
using vb::DType;
using vb::Shape;
using vb::Tensor;

// Device memory of `bytes`, poisoned with 0xFF, or holding a copy of a CPU tensor.
struct Buffer {
  void* ptr = nullptr;
  std::size_t bytes = 0;
  explicit Buffer(std::size_t n) : ptr(rtk::malloc(std::max<std::size_t>(n, 1))), bytes(n) { poison(); }
  explicit Buffer(const Tensor& t) : Buffer(static_cast<std::size_t>(t.numel() * t.element_size())) { upload(t); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { rtk::free(ptr); }
  void poison() {
    if (bytes) rtk::memset(ptr, 0xff, bytes);
  }
  void upload(const Tensor& t) {
    const Tensor c = vb::contiguous(t);
    REQUIRE(static_cast<std::size_t>(c.numel() * c.element_size()) == bytes);
    if (bytes) rtk::copy(ptr, c.data_ptr(), bytes);
  }
  void append_to(std::vector<uint8_t>& out) const {
    const std::size_t at = out.size();
    out.resize(at + bytes);
    if (bytes) rtk::copy(out.data() + at, ptr, bytes);
  }
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr);
  }
};

// The CPU tensor of `shape` and `dtype` stored at bytes[offset ..]; advances offset.
inline Tensor take(const std::vector<uint8_t>& bytes, std::size_t& offset, const Shape& shape, DType dtype) {
  Tensor t = Tensor::empty(shape, dtype);
  const auto n = static_cast<std::size_t>(t.numel() * t.element_size());
  REQUIRE(offset + n <= bytes.size());
  if (n) std::memcpy(t.data_ptr(), bytes.data() + offset, n);
  offset += n;
  return t;
}

struct Tol {
  double atol, rtol;
};

inline Tol tol(DType dtype) {
  switch (dtype) {
    case DType::BFloat16: return {1e-2, 1.6e-2};
    case DType::Float16: return {2e-3, 2e-3};
    default: return {2e-6, 2e-5};
  }
}

// Uniform values in [lo, hi) of `dtype`, the same values the CPU and the device see.
inline Tensor random(const Shape& shape, uint64_t seed, DType dtype, double lo = -2.0, double hi = 2.0) {
  return vb::contiguous(vb::to(vb::test::uniform(shape, seed, lo, hi, DType::Float32), dtype));
}

inline Tensor random_ids(const Shape& shape, int64_t lo, int64_t hi, uint64_t seed, DType dtype = DType::Int64) {
  vb::Generator g{seed, 0};
  return vb::randint(lo, hi, shape, &g, dtype);
}

inline std::string name(DType dtype) { return std::string(vb::dtype_name(dtype)); }

constexpr DType kFloats[] = {DType::Float32, DType::BFloat16, DType::Float16};

inline vb::CpuBackend& cpu() { return vb::cpu_backend(); }

}  // namespace nn_kernels_test

using namespace nn_kernels_test;

TEST_CASE("softmax and log_softmax, forward and backward, match the CPU backend") {
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{7, 33}, {5, 1}, {3, 1000}, {3, 1029}, {2, 2051}};
  for (DType dtype : kFloats)
    for (auto [rows, cols] : shapes)
      for (bool log : {false, true}) {
        const std::string what = fmt::format("softmax log={} {} ({}, {})", log, name(dtype), rows, cols);
        CAPTURE(what);
        const Tensor x = random({rows, cols}, 11 + rows + cols, dtype, -6, 6);
        const Tensor gy = random({rows, cols}, 12 + rows, dtype);
        Tensor y_cpu = Tensor::empty({rows, cols}, dtype), gx_cpu = Tensor::empty({rows, cols}, dtype);
        cpu().softmax(x, y_cpu, log);
        cpu().softmax_backward(y_cpu, gy, gx_cpu, log);

        Buffer dx(x), dgy(gy), dy_cpu(y_cpu), dyv(x.numel() * x.element_size()), dgx(x.numel() * x.element_size());
        const auto bytes = run_orders([&] {
          dyv.poison();
          dgx.poison();
          K::softmax_forward(dx.ptr, dyv.ptr, rows, cols, dtype, log);
          // The backward from the CPU's y, so that the two backward computations see the same input.
          K::softmax_backward(dy_cpu.ptr, dgy.ptr, dgx.ptr, rows, cols, dtype, log);
          std::vector<uint8_t> out;
          dyv.append_to(out);
          dgx.append_to(out);
          return out;
        });
        std::size_t at = 0;
        const Tol t = tol(dtype);
        vb::test::check_close(take(bytes, at, {rows, cols}, dtype), y_cpu, t.atol, t.rtol, what + " y");
        vb::test::check_close(take(bytes, at, {rows, cols}, dtype), gx_cpu, t.atol * 4, t.rtol, what + " gx");
      }
}

TEST_CASE("layer_norm forward and backward (with gw, gb) match the CPU backend") {
  // 96, 768 and 1024 columns take the forward's 16-byte form (kernels/cuda/nn_layer_norm.cu), 33 and 1029
  // the element forms.
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{7, 33},  {1, 1},    {37, 96}, {5, 768},
                                                           {3, 1024}, {3, 1029}, {2, 4500}};
  for (DType dtype : kFloats)
    for (auto [rows, cols] : shapes)
      for (bool affine : {true, false}) {
        const std::string what = fmt::format("layer_norm affine={} {} ({}, {})", affine, name(dtype), rows, cols);
        CAPTURE(what);
        const Tensor x = random({rows, cols}, 21 + rows + cols, dtype, -3, 5);
        const Tensor w = affine ? random({cols}, 22 + cols, dtype, 0.5, 1.5) : Tensor();
        const Tensor b = affine ? random({cols}, 23 + cols, dtype) : Tensor();
        const Tensor gy = random({rows, cols}, 24 + rows, dtype);
        Tensor y = Tensor::empty({rows, cols}, dtype), gx = Tensor::empty({rows, cols}, dtype);
        Tensor mean = Tensor::empty({rows}, DType::Float32), rstd = Tensor::empty({rows}, DType::Float32);
        Tensor gw = Tensor::empty({cols}, dtype), gb = Tensor::empty({cols}, dtype);
        cpu().layer_norm(x, w, b, 1e-5, y, mean, rstd);
        cpu().layer_norm_backward(gy, x, w, mean, rstd, gx, gw, gb);

        const auto es = static_cast<std::size_t>(x.element_size());
        Buffer dx(x), dgy(gy), dmean_cpu(mean), drstd_cpu(rstd);
        std::optional<Buffer> dw, db;
        if (affine) dw.emplace(w), db.emplace(b);
        Buffer dy(rows * cols * es), dgx(rows * cols * es), dgw(cols * es), dgb(cols * es);
        Buffer dmean(rows * 4), drstd(rows * 4), work(K::layer_norm_backward_workspace_bytes(rows, cols));
        const auto bytes = run_orders([&] {
          for (Buffer* o : {&dy, &dgx, &dgw, &dgb, &dmean, &drstd, &work}) o->poison();
          K::layer_norm_forward(dx.ptr, affine ? dw->ptr : nullptr, affine ? db->ptr : nullptr, 1e-5, dy.ptr,
                                dmean.as<float>(), drstd.as<float>(), rows, cols, dtype);
          K::layer_norm_backward(dgy.ptr, dx.ptr, affine ? dw->ptr : nullptr, dmean_cpu.as<float>(),
                                 drstd_cpu.as<float>(), dgx.ptr, dgw.ptr, dgb.ptr, rows, cols, dtype, work.ptr);
          std::vector<uint8_t> out;
          for (Buffer* o : {&dy, &dmean, &drstd, &dgx, &dgw, &dgb}) o->append_to(out);
          return out;
        });
        std::size_t at = 0;
        const Tol t = tol(dtype);
        vb::test::check_close(take(bytes, at, {rows, cols}, dtype), y, t.atol * 4, t.rtol, what + " y");
        vb::test::check_close(take(bytes, at, {rows}, DType::Float32), mean, 1e-6, 1e-5, what + " mean");
        vb::test::check_close(take(bytes, at, {rows}, DType::Float32), rstd, 1e-6, 1e-5, what + " rstd");
        vb::test::check_close(take(bytes, at, {rows, cols}, dtype), gx, t.atol * 8, t.rtol * 2, what + " gx");
        // gw, gb sum over rows: their error grows with the row count.
        const double scale = std::sqrt(static_cast<double>(rows));
        vb::test::check_close(take(bytes, at, {cols}, dtype), gw, t.atol * 4 * scale, t.rtol, what + " gw");
        vb::test::check_close(take(bytes, at, {cols}, dtype), gb, t.atol * 4 * scale, t.rtol, what + " gb");
      }
}

TEST_CASE("cross_entropy forward and backward match the CPU backend (ignore_index, label smoothing)") {
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{7, 33}, {9, 2}, {4, 1000}, {3, 1029}};
  for (DType dtype : kFloats)
    for (auto [rows, cols] : shapes)
      for (double smoothing : {0.0, 0.1}) {
        const std::string what = fmt::format("cross_entropy s={} {} ({}, {})", smoothing, name(dtype), rows, cols);
        CAPTURE(what);
        const Tensor logits = random({rows, cols}, 31 + rows + cols, dtype, -5, 5);
        Tensor target = vb::contiguous(random_ids({rows}, 0, cols, 32 + rows));
        target.data<int64_t>()[1] = -100;  // ignored
        const Tensor gloss = random({rows}, 33, dtype, 0.5, 2);
        Tensor loss = Tensor::empty({rows}, dtype), lse = Tensor::empty({rows}, DType::Float32);
        Tensor glogits = Tensor::empty({rows, cols}, dtype);
        cpu().cross_entropy(logits, target, -100, smoothing, loss, lse);
        cpu().cross_entropy_backward(logits, target, lse, gloss, -100, smoothing, glogits);

        Buffer dx(logits), dt(target), dg(gloss), dlse_cpu(lse);
        Buffer dloss(loss.numel() * loss.element_size()), dlse(rows * 4), dgx(glogits.numel() * glogits.element_size());
        const auto bytes = run_orders([&] {
          for (Buffer* o : {&dloss, &dlse, &dgx}) o->poison();
          K::cross_entropy_forward(dx.ptr, dt.as<int64_t>(), rows, cols, dtype, -100, smoothing, dloss.ptr,
                                   dlse.as<float>());
          K::cross_entropy_backward(dx.ptr, dt.as<int64_t>(), dlse_cpu.as<float>(), dg.ptr, 1, rows, cols, dtype, -100,
                                    smoothing, dgx.ptr);
          std::vector<uint8_t> out;
          for (Buffer* o : {&dloss, &dlse, &dgx}) o->append_to(out);
          return out;
        });
        std::size_t at = 0;
        const Tol t = tol(dtype);
        vb::test::check_close(take(bytes, at, {rows}, dtype), loss, t.atol * 4, t.rtol, what + " loss");
        vb::test::check_close(take(bytes, at, {rows}, DType::Float32), lse, 1e-5, 1e-5, what + " lse");
        vb::test::check_close(take(bytes, at, {rows, cols}, dtype), glogits, t.atol, t.rtol, what + " glogits");
      }
}

TEST_CASE("cross_entropy: a mean's expanded gradient (stride 0) and a bad target") {
  const int64_t rows = 5, cols = 17;
  const Tensor logits = random({rows, cols}, 41, DType::Float32);
  const Tensor target = random_ids({rows}, 0, cols, 42);
  const Tensor g1 = Tensor::from_vector(std::vector<float>{0.2f}, {1});
  Tensor glogits = Tensor::empty({rows, cols}), loss = Tensor::empty({rows}), lse = Tensor::empty({rows});
  cpu().cross_entropy(logits, target, -100, 0.0, loss, lse);
  cpu().cross_entropy_backward(logits, target, lse, g1.as_strided({rows}, {0}, 0), -100, 0.0, glogits);
  Buffer dx(logits), dt(target), dg(g1), dlse(lse), dgx(glogits.numel() * 4);
  K::cross_entropy_backward(dx.ptr, dt.as<int64_t>(), dlse.as<float>(), dg.ptr, 0, rows, cols, DType::Float32, -100,
                            0.0, dgx.ptr);
  std::vector<uint8_t> bytes;
  dgx.append_to(bytes);
  std::size_t at = 0;
  vb::test::check_close(take(bytes, at, {rows, cols}, DType::Float32), glogits, 2e-6, 2e-5, "stride 0");

  Tensor bad = vb::clone(target);
  bad.data<int64_t>()[3] = cols;
  Buffer dbad(bad), dloss(rows * 4), dlse2(rows * 4);
  try {
    K::cross_entropy_forward(dx.ptr, dbad.as<int64_t>(), rows, cols, DType::Float32, -100, 0.0, dloss.ptr,
                             dlse2.as<float>());
    FAIL("no error for a target out of range");
  } catch (const vb::Error& e) {
    const std::string m = e.what();
    CHECK_MESSAGE(m.find("target 17 of row 3") != std::string::npos, m);
  }
  CHECK_THROWS_AS(K::cross_entropy_backward(dx.ptr, dbad.as<int64_t>(), dlse.as<float>(), dg.ptr, 0, rows, cols,
                                            DType::Float32, -100, 0.0, dgx.ptr),
                  vb::Error);
}

TEST_CASE("embedding forward (int32 and int64 ids) and deterministic backward match the CPU backend") {
  const int64_t vocab = 23, hidden = 37, count = 61;
  for (DType dtype : kFloats)
    for (DType id_dtype : {DType::Int64, DType::Int32})
      for (int64_t padding_idx : {int64_t(-1), int64_t(4)}) {
        const std::string what = fmt::format("embedding {} ids {} padding {}", name(dtype), name(id_dtype), padding_idx);
        CAPTURE(what);
        const Tensor weight = random({vocab, hidden}, 51, dtype);
        const Tensor ids = random_ids({count}, 0, vocab, 52, id_dtype);  // many repeats
        const Tensor grad = random({count, hidden}, 53, dtype);
        Tensor out = Tensor::empty({count, hidden}, dtype), gweight = Tensor::empty({vocab, hidden}, dtype);
        cpu().embedding(weight, ids, out);
        cpu().embedding_backward(grad, ids, padding_idx, gweight);

        Buffer dw(weight), dids(ids), dgrad(grad), dout(out.numel() * out.element_size());
        Buffer dgw(gweight.numel() * gweight.element_size());
        const auto bytes = run_orders([&] {
          dout.poison();
          dgw.poison();
          K::embedding_forward(dw.ptr, vocab, hidden, dtype, dids.ptr, id_dtype, count, dout.ptr);
          K::embedding_backward(dgrad.ptr, dids.ptr, id_dtype, count, padding_idx, dgw.ptr, vocab, hidden, dtype);
          std::vector<uint8_t> o;
          dout.append_to(o);
          dgw.append_to(o);
          return o;
        });
        std::size_t at = 0;
        vb::test::check_close(take(bytes, at, {count, hidden}, dtype), out, 0, 0, what + " out");
        // Both sum in index order in float32 and round once: identical.
        vb::test::check_close(take(bytes, at, {vocab, hidden}, dtype), gweight, 0, 0, what + " gweight");
      }
}

TEST_CASE("embedding: an id out of range is an error naming it, forward and backward") {
  const Tensor weight = random({5, 3}, 61, DType::Float32);
  const Tensor ids = Tensor::from_vector(std::vector<int64_t>{1, 4, 7, 0}, {4});
  Buffer dw(weight), dids(ids), dout(4 * 3 * 4), dgrad(random({4, 3}, 62, DType::Float32)), dgw(5 * 3 * 4);
  try {
    K::embedding_forward(dw.ptr, 5, 3, DType::Float32, dids.ptr, DType::Int64, 4, dout.ptr);
    FAIL("no error for id 7");
  } catch (const vb::Error& e) {
    const std::string m = e.what();
    CHECK_MESSAGE(m.find("id 7 (at position 2) is out of range [0, 5)") != std::string::npos, m);
  }
  try {
    K::embedding_backward(dgrad.ptr, dids.ptr, DType::Int64, 4, -1, dgw.ptr, 5, 3, DType::Float32);
    FAIL("no error for id 7");
  } catch (const vb::Error& e) {
    const std::string m = e.what();
    CHECK_MESSAGE(m.find("id 7 (at position 2)") != std::string::npos, m);
  }
  CHECK_THROWS_AS(K::embedding_forward(dw.ptr, 5, 3, DType::Float32, dids.ptr, DType::Float32, 4, dout.ptr),
                  vb::Error);
}

TEST_CASE("index_select, index_add, gather and scatter_add match the CPU backend") {
  for (DType dtype : {DType::Float32, DType::BFloat16, DType::Float16, DType::Int64}) {
    const std::string what = name(dtype);
    CAPTURE(what);
    const bool is_int = dtype == DType::Int64;
    auto values = [&](const Shape& s, uint64_t seed) {
      return is_int ? random_ids(s, -50, 50, seed) : random(s, seed, dtype);
    };
    // x (outer 3, n 7, inner 5) along dim 1; 9 indices with repeats.
    const Tensor x = values({3, 7, 5}, 71);
    const Tensor idx = random_ids({9}, 0, 7, 72);
    Tensor sel = Tensor::empty({3, 9, 5}, dtype);
    cpu().index_select(x, 1, idx, sel);
    const Tensor src = values({3, 9, 5}, 73);
    Tensor added = vb::clone(x);
    cpu().index_add(added, 1, idx, src);
    // gather along dim 2 of x (3, 7, 5) with an index (3, 4, 6) (smaller in dim 1), and scatter_add of
    // src2 (3, 4, 6) into a copy of x (3, 7, 5) along dim 2 with an index (3, 4, 6).
    const Tensor gidx = random_ids({3, 4, 6}, 0, 5, 74);
    Tensor gathered = Tensor::empty({3, 4, 6}, dtype);
    cpu().gather(x, 2, gidx, gathered);
    const Tensor src2 = values({3, 4, 6}, 75);
    Tensor scattered = vb::clone(x);
    cpu().scatter_add(scattered, 2, gidx, src2);

    const auto es = static_cast<std::size_t>(x.element_size());
    Buffer dx(x), didx(idx), dsrc(src), dgidx(gidx), dsrc2(src2);
    Buffer dsel(3 * 9 * 5 * es), dadded(x.numel() * es), dgathered(3 * 4 * 6 * es), dscattered(x.numel() * es);
    vb::nn_kernels::IndexGeometry g;
    g.ndim = 3;
    g.dim = 2;
    g.size = 5;
    for (int d = 0; d < 3; ++d) {
      g.index_shape[d] = gidx.size(d);
      g.strides[d] = x.stride(d);  // x and the scatter target share x's contiguous strides
      g.src_strides[d] = src2.stride(d);
    }
    const auto bytes = run_orders([&] {
      dsel.poison();
      dgathered.poison();
      dadded.upload(x);
      dscattered.upload(x);
      K::index_select(dx.ptr, 3, 7, 5, dtype, didx.as<int64_t>(), 9, dsel.ptr);
      K::index_add(dadded.ptr, 3, 7, 5, dtype, didx.as<int64_t>(), 9, dsrc.ptr);
      K::gather(dx.ptr, g, dtype, dgidx.as<int64_t>(), dgathered.ptr);
      K::scatter_add(dscattered.ptr, g, dtype, dgidx.as<int64_t>(), dsrc2.ptr);
      std::vector<uint8_t> o;
      for (Buffer* b : {&dsel, &dadded, &dgathered, &dscattered}) b->append_to(o);
      return o;
    });
    std::size_t at = 0;
    // Copies move bytes; the sums add in the same order with the same rounding: identical.
    vb::test::check_close(take(bytes, at, {3, 9, 5}, dtype), sel, 0, 0, what + " index_select");
    vb::test::check_close(take(bytes, at, {3, 7, 5}, dtype), added, 0, 0, what + " index_add");
    vb::test::check_close(take(bytes, at, {3, 4, 6}, dtype), gathered, 0, 0, what + " gather");
    vb::test::check_close(take(bytes, at, {3, 7, 5}, dtype), scattered, 0, 0, what + " scatter_add");
  }
}

TEST_CASE("index ops: an index out of range is an error naming it") {
  const Tensor x = random({4, 3}, 81, DType::Float32);
  const Tensor idx = Tensor::from_vector(std::vector<int64_t>{0, 3, -1}, {3});
  Buffer dx(x), didx(idx), dout(3 * 3 * 4);
  try {
    K::index_select(dx.ptr, 1, 4, 3, DType::Float32, didx.as<int64_t>(), 3, dout.ptr);
    FAIL("no error for index -1");
  } catch (const vb::Error& e) {
    const std::string m = e.what();
    CHECK_MESSAGE(m.find("index -1 (at position 2) is out of range [0, 4)") != std::string::npos, m);
  }
  Buffer dsrc(random({3, 3}, 82, DType::Float32));
  CHECK_THROWS_AS(K::index_add(dx.ptr, 1, 4, 3, DType::Float32, didx.as<int64_t>(), 3, dsrc.ptr), vb::Error);
}

TEST_CASE("dropout draws the CPU backend's mask (same seed and offset)") {
  for (DType dtype : kFloats)
    for (double p : {0.1, 0.5, 1.0}) {
      const int64_t n = 4099;
      const std::string what = fmt::format("dropout p={} {}", p, name(dtype));
      CAPTURE(what);
      const Tensor x = random({n}, 91, dtype, 0.5, 2);  // never 0, so the mask shows
      Tensor out = Tensor::empty({n}, dtype);
      cpu().dropout(x, p, 1234, 777, out);
      Buffer dx(x), dout(n * x.element_size());
      const auto bytes = run_orders([&] {
        dout.poison();
        K::dropout(dx.ptr, dout.ptr, n, dtype, p, 1234, 777);
        std::vector<uint8_t> o;
        dout.append_to(o);
        return o;
      });
      std::size_t at = 0;
      vb::test::check_close(take(bytes, at, {n}, dtype), out, 0, 0, what);  // bit for bit
    }
}

TEST_CASE("AdamW: several tensors of mixed dtypes in one launch match train::AdamW for 3 steps") {
  struct Spec {
    Shape shape;
    DType dtype;
    bool decay;
  };
  const std::vector<Spec> specs = {{{7, 33}, DType::Float32, true},  {{33}, DType::Float32, false},
                                   {{5, 13}, DType::BFloat16, true}, {{1029}, DType::Float16, true},
                                   {{3}, DType::Float32, true}};
  std::vector<vb::train::ParamRef> refs;
  for (std::size_t i = 0; i < specs.size(); ++i)
    refs.push_back({fmt::format("p{}", i), random(specs[i].shape, 100 + i, specs[i].dtype), specs[i].decay});
  // Device copies of the initial parameters and zero moments.
  std::vector<std::unique_ptr<Buffer>> params, grads, ms, vs;
  for (auto& r : refs) {
    params.push_back(std::make_unique<Buffer>(r.param));
    const Tensor zeros = vb::zeros(r.param.shape(), DType::Float32);
    ms.push_back(std::make_unique<Buffer>(zeros));
    vs.push_back(std::make_unique<Buffer>(zeros));
    grads.push_back(std::make_unique<Buffer>(static_cast<std::size_t>(r.param.numel() * r.param.element_size())));
  }
  vb::train::AdamW opt(refs, 0.9, 0.999, 1e-8, 0.1);
  const double lr = 1e-2;
  for (int step = 1; step <= 3; ++step) {
    for (std::size_t i = 0; i < refs.size(); ++i) {
      const Tensor g = random(refs[i].param.shape(), 200 + 10 * step + i, refs[i].param.dtype());
      refs[i].param.set_grad(g);
      grads[i]->upload(g);
    }
    opt.step(lr);
    std::vector<vb::nn_kernels::AdamWTensor> tensors;
    for (std::size_t i = 0; i < refs.size(); ++i)
      tensors.push_back({params[i]->ptr, grads[i]->ptr, ms[i]->as<float>(), vs[i]->as<float>(), refs[i].param.numel(),
                         refs[i].param.dtype(), refs[i].decay});
    const vb::nn_kernels::AdamWHyper hyper{lr, 0.9, 0.999, 1e-8, 0.1, 1 - std::pow(0.9, step), 1 - std::pow(0.999, step)};
    K::adamw(tensors.data(), static_cast<int>(tensors.size()), hyper);
  }
  const vb::nn::NamedTensors state = opt.state_tensors();
  for (std::size_t i = 0; i < refs.size(); ++i) {
    const std::string what = fmt::format("adamw {} {}", refs[i].name, name(refs[i].param.dtype()));
    std::vector<uint8_t> bytes;
    params[i]->append_to(bytes);
    ms[i]->append_to(bytes);
    vs[i]->append_to(bytes);
    std::size_t at = 0;
    const Tol t = tol(refs[i].param.dtype());
    vb::test::check_close(take(bytes, at, refs[i].param.shape(), refs[i].param.dtype()), refs[i].param, t.atol,
                          t.rtol, what + " param");
    vb::test::check_close(take(bytes, at, refs[i].param.shape(), DType::Float32), state[2 * i].second, 1e-7, 1e-5,
                          what + " m");
    vb::test::check_close(take(bytes, at, refs[i].param.shape(), DType::Float32), state[2 * i + 1].second, 1e-9, 1e-5,
                          what + " v");
  }
  // Bit-identical under the orders: the same step twice from the same state.
  std::vector<vb::nn_kernels::AdamWTensor> tensors;
  for (std::size_t i = 0; i < refs.size(); ++i)
    tensors.push_back({params[i]->ptr, grads[i]->ptr, ms[i]->as<float>(), vs[i]->as<float>(), refs[i].param.numel(),
                       refs[i].param.dtype(), refs[i].decay});
  std::vector<uint8_t> start;
  for (std::size_t i = 0; i < refs.size(); ++i) {
    params[i]->append_to(start);
    ms[i]->append_to(start);
    vs[i]->append_to(start);
  }
  run_orders([&] {
    std::size_t at = 0;
    for (std::size_t i = 0; i < refs.size(); ++i)
      for (Buffer* b : {params[i].get(), ms[i].get(), vs[i].get()}) {
        rtk::copy(b->ptr, start.data() + at, b->bytes);
        at += b->bytes;
      }
    const vb::nn_kernels::AdamWHyper hyper{lr, 0.9, 0.999, 1e-8, 0.1, 1 - std::pow(0.9, 4), 1 - std::pow(0.999, 4)};
    K::adamw(tensors.data(), static_cast<int>(tensors.size()), hyper);
    std::vector<uint8_t> o;
    for (std::size_t i = 0; i < refs.size(); ++i)
      for (Buffer* b : {params[i].get(), ms[i].get(), vs[i].get()}) b->append_to(o);
    return o;
  });
}
