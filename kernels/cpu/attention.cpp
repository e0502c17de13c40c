// Scaled dot-product attention, materialised per (batch, head): the CPU reference for the CUDA kernels.
//
//   forward, for each (b, h) with q (Tq, D), k and v (Tk, D), mask (Tq, Tk) additive (or none):
//     S   = scale·q·kᵀ + mask                                   (Tq, Tk)
//     lse_i = m_i + log Σ_j exp(S_ij − m_i),  m_i = max_j S_ij   (Tq)
//     P   = exp(S − lse)                                        (Tq, Tk)  row softmax
//     P'  = P ⊙ Z / (1 − p),  Z_ij = [u ≥ p], u = philox_uniform(seed, offset + ((b·H + h)·Tq + i)·Tk + j)
//     out = P'·v                                                (Tq, D)
//   backward (gout = ∂L/∂out), recomputing P from the saved lse:
//     gv  = P'ᵀ·gout                                            (Tk, D)
//     dP  = (gout·vᵀ) ⊙ Z / (1 − p)                             (Tq, Tk)  gradient w.r.t. P
//     Δ_i = Σ_j P_ij·dP_ij                                      (Tq)      softmax's row term
//       (equal to Σ_d gout_id·out_id, which a fused GPU kernel uses; here it comes from P and dP, so the
//       backward does not read `out`)
//     dS  = P ⊙ (dP − Δ)                                        (Tq, Tk)
//     gq  = scale·dS·k,   gk = scale·dS ᵀ·q
//   The mask is a constant: it gets no gradient.
//
// Fully masked rows (S_ij = −inf for every j): a softmax over nothing has no value (PyTorch's math path
// gives NaN). We return 0 for that row of out, store lse = −inf, and give the row zero gradients — what
// padding wants: a query that may attend to nothing contributes nothing, and NaN never enters the model.
//
// lse is float32 for float32/bfloat16/float16 inputs and float64 for float64 inputs.
// Layouts: q, k, v, gout and the outputs out, gq, gk, gv may have any strides whose last (D) is 1 — in
// particular the (B, H, T, D) views of (B, T, H·D) rows that split_heads makes, so that multi-head attention
// reads the projections where they are and writes out in the layout merge_heads turns back into rows,
// without a copy on either side (scaled_dot_product_attention chooses those layouts on the CPU). Other
// strides go through a contiguous copy. The results are the same bits in any layout.
// Parallel over (b, h); each pair's matrix products use Eigen.
// Cost per (b, h): forward 4·Tq·Tk·D FLOPs (two GEMMs) + ≈5·Tq·Tk for the softmax; backward 8·Tq·Tk·D
// (four GEMMs) + ≈8·Tq·Tk; memory: reads q, k, v (and the mask), writes out — plus a Tq×Tk scratch matrix.
#include <Eigen/Core>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"
#include "tensor/philox.h"

namespace vb {

namespace {

struct AttentionShape {
  int64_t B, H, Tq, Tk, D;
};

template <typename T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// One (B, H, T, D) operand: element (b, h, i, d) at p[b·sb + h·sh + i·sr + d]; each (b, h) is a (T, D) row-major
// matrix with row stride sr, which Eigen maps as it is.
template <typename T>
struct Heads {
  T* p;
  int64_t sb, sh, sr;
  using Map = Eigen::Map<std::conditional_t<std::is_const_v<T>, const RowMatrix<std::remove_const_t<T>>,
                                            RowMatrix<std::remove_const_t<T>>>,
                         0, Eigen::OuterStride<>>;
  Map at(int64_t b, int64_t h, int64_t rows, int64_t cols) const {
    return Map(p + b * sb + h * sh, rows, cols, Eigen::OuterStride<>(sr));
  }
};
// t as Heads<T>: T const for the inputs (heads<const float>(q)), not for the outputs.
template <typename T>
Heads<T> heads(const Tensor& t) {
  return {t.data<std::remove_const_t<T>>(), t.stride(0), t.stride(1), t.stride(2)};
}

// S = scale·q·kᵀ + mask for one (b, h).
template <typename T, typename M, typename Q, typename K>
void scores(const Q& q, const K& k, const M* mask, const Shape& mstride, int64_t b, int64_t h, T scale,
            RowMatrix<T>& s) {
  s.noalias() = scale * (q * k.transpose());
  if (!mask) return;
  const M* base = mask + b * mstride[0] + h * mstride[1];
  for (int64_t i = 0; i < s.rows(); ++i) {
    for (int64_t j = 0; j < s.cols(); ++j) s(i, j) += scalar_cast<T>(base[i * mstride[2] + j * mstride[3]]);
  }
}

// P ← P ⊙ Z / (1 − p) in place, with the mask counters of pair (b·H + h).
template <typename T>
void apply_dropout(RowMatrix<T>& p_mat, double p, uint64_t seed, uint64_t first) {
  const T keep_scale = p >= 1 ? T(0) : T(1.0 / (1.0 - p));
  const float threshold = float(p);
  const int64_t cols = p_mat.cols();
  std::vector<float> u(static_cast<size_t>(cols));
  for (int64_t i = 0; i < p_mat.rows(); ++i) {
    philox_uniform_block(seed, first + uint64_t(i * cols), cols, u.data());  // u_j = philox_uniform(·, first + i·cols + j)
    for (int64_t j = 0; j < cols; ++j) {
      const bool keep = p < 1 && u[size_t(j)] >= threshold;
      p_mat(i, j) = keep ? p_mat(i, j) * keep_scale : T(0);
    }
  }
}

template <typename T, typename M>
void attention_forward_typed(Heads<const T> q, Heads<const T> k, Heads<const T> v, const M* mask, const Shape& mstride,
                             AttentionShape sh, T scale, double p, uint64_t seed, uint64_t offset, Heads<T> out,
                             T* lse) {
  const int64_t pairs = sh.B * sh.H;
  const T neg_inf = -std::numeric_limits<T>::infinity();
#pragma omp parallel for schedule(static) if (pairs > 1 && pairs * sh.Tq * sh.Tk * sh.D >= cpu::kParallelGrain)
  for (int64_t bh = 0; bh < pairs; ++bh) {
    const int64_t b = bh / sh.H, h = bh % sh.H;
    const auto qm = q.at(b, h, sh.Tq, sh.D), km = k.at(b, h, sh.Tk, sh.D), vm = v.at(b, h, sh.Tk, sh.D);
    RowMatrix<T> s(sh.Tq, sh.Tk);  // (Tq, Tk): S, then P
    scores(qm, km, mask, mstride, b, h, scale, s);
    T* lse_row = lse + bh * sh.Tq;
    for (int64_t i = 0; i < sh.Tq; ++i) {
      const T m = sh.Tk > 0 ? s.row(i).maxCoeff() : neg_inf;
      if (m == neg_inf) {  // fully masked row: zeros (see the top of the file)
        s.row(i).setZero();
        lse_row[i] = neg_inf;
        continue;
      }
      s.row(i) = (s.row(i).array() - m).exp().matrix();
      const T sum = s.row(i).sum();
      s.row(i) *= T(1) / sum;
      lse_row[i] = m + std::log(sum);
    }
    if (p > 0) apply_dropout(s, p, seed, offset + uint64_t(bh * sh.Tq * sh.Tk));
    auto om = out.at(b, h, sh.Tq, sh.D);  // (Tq, D)
    om.noalias() = s * vm;
  }
}

template <typename T, typename M>
void attention_backward_typed(Heads<const T> q, Heads<const T> k, Heads<const T> v, const M* mask, const Shape& mstride,
                              Heads<const T> gout, const T* lse, AttentionShape sh, T scale, double p, uint64_t seed,
                              uint64_t offset, Heads<T> gq, Heads<T> gk, Heads<T> gv) {
  const int64_t pairs = sh.B * sh.H;
  const T neg_inf = -std::numeric_limits<T>::infinity();
#pragma omp parallel for schedule(static) if (pairs > 1 && pairs * sh.Tq * sh.Tk * sh.D >= cpu::kParallelGrain)
  for (int64_t bh = 0; bh < pairs; ++bh) {
    const int64_t b = bh / sh.H, h = bh % sh.H;
    const auto qm = q.at(b, h, sh.Tq, sh.D), km = k.at(b, h, sh.Tk, sh.D), vm = v.at(b, h, sh.Tk, sh.D);
    const auto go = gout.at(b, h, sh.Tq, sh.D);  // (Tq, D)
    RowMatrix<T> pm(sh.Tq, sh.Tk);               // (Tq, Tk): S, then P
    scores(qm, km, mask, mstride, b, h, scale, pm);
    const T* lse_row = lse + bh * sh.Tq;
    for (int64_t i = 0; i < sh.Tq; ++i) {
      if (lse_row[i] == neg_inf) pm.row(i).setZero();
      else pm.row(i) = (pm.row(i).array() - lse_row[i]).exp().matrix();
    }
    RowMatrix<T> dp = go * vm.transpose();  // (Tq, Tk): ∂L/∂P'
    auto gvm = gv.at(b, h, sh.Tk, sh.D);
    if (p > 0) {
      RowMatrix<T> z = RowMatrix<T>::Ones(sh.Tq, sh.Tk);  // Z / (1 − p)
      apply_dropout(z, p, seed, offset + uint64_t(bh * sh.Tq * sh.Tk));
      gvm.noalias() = (pm.array() * z.array()).matrix().transpose() * go;
      dp.array() *= z.array();
    } else {
      gvm.noalias() = pm.transpose() * go;
    }
    // dS = P ⊙ (dP − Δ), Δ_i = Σ_j P_ij·dP_ij; overwrite dp with dS.
    for (int64_t i = 0; i < sh.Tq; ++i) {
      const T delta = (pm.row(i).array() * dp.row(i).array()).sum();
      dp.row(i) = (pm.row(i).array() * (dp.row(i).array() - delta)).matrix();
    }
    auto gqm = gq.at(b, h, sh.Tq, sh.D);
    auto gkm = gk.at(b, h, sh.Tk, sh.D);
    gqm.noalias() = scale * (dp * km);
    gkm.noalias() = scale * (dp.transpose() * qm);
  }
}

AttentionShape check_attention(const char* op, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask) {
  VB_CHECK(q.dim() == 4 && k.dim() == 4 && k.shape() == v.shape() && q.size(0) == k.size(0) && q.size(1) == k.size(1) &&
               q.size(3) == k.size(3),
           "cpu {}: expected q (B, H, Tq, D), k and v (B, H, Tk, D), got {}, {} and {}", op, shape_str(q.shape()),
           shape_str(k.shape()), shape_str(v.shape()));
  const AttentionShape sh{q.size(0), q.size(1), q.size(2), k.size(2), q.size(3)};
  VB_CHECK(!mask.defined() || mask.shape() == Shape({sh.B, sh.H, sh.Tq, sh.Tk}),
           "cpu {}: mask must be expanded to ({}, {}, {}, {}), got {}", op, sh.B, sh.H, sh.Tq, sh.Tk,
           mask.defined() ? shape_str(mask.shape()) : "none");
  VB_CHECK(!mask.defined() || is_floating(mask.dtype()), "cpu {}: mask must be additive float, got {}", op,
           mask.defined() ? mask.dtype() : DType::Float32);
  return sh;
}

// Calls f(mask pointer typed M, or nullptr with M = T) for the mask's dtype.
template <typename T, typename F>
void with_mask(const Tensor& mask, F&& f) {
  if (!mask.defined()) {
    f(static_cast<const T*>(nullptr));
    return;
  }
  switch (mask.dtype()) {
    case DType::Float32:
      f(mask.data<float>());
      break;
    case DType::Float64:
      f(mask.data<double>());
      break;
    case DType::BFloat16:
      f(mask.data<bf16>());
      break;
    case DType::Float16:
      f(mask.data<f16>());
      break;
    default:
      fail("cpu attention: mask must be floating, got {}", mask.dtype());
  }
}

// Calls f(T{}) with T the type of float32 or float64 inputs (the half types were staged through float32 before).
template <typename F>
void with_real_type(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::Float32:
      return f(float{});
    case DType::Float64:
      return f(double{});
    default:
      fail("cpu {}: expected floating q, k, v, got {}", op, dtype);
  }
}

Tensor float32_empty_like(const Tensor& t) { return Tensor::empty(t.shape(), DType::Float32, t.device()); }

// An operand as the kernels read it: itself when its D values are contiguous, else a contiguous copy.
Tensor unit_rows(const Tensor& t) { return t.size(3) == 1 || t.stride(3) == 1 ? t : cpu::contiguous(t); }

// Runs write(o) with o = `out` itself when its D values are contiguous, else with a contiguous temporary that
// is then copied into `out`.
template <typename F>
void write_rows(Tensor& out, F&& write) {
  if (out.size(3) == 1 || out.stride(3) == 1) {
    write(out);
    return;
  }
  Tensor tmp = Tensor::empty(out.shape(), out.dtype(), out.device());
  write(tmp);
  cpu::copy_into(out, tmp);
}

void check_output(const char* op, const char* name, const Tensor& t, const Shape& shape, DType dtype) {
  VB_CHECK(t.shape() == shape && t.dtype() == dtype, "cpu {}: output {} is {} {} (expected {} {})", op, name,
           shape_str(t.shape()), t.dtype(), shape_str(shape), dtype);
}

}  // namespace

void CpuBackend::attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, const Tensor& mask, double scale,
                           double dropout_p, uint64_t seed, uint64_t offset, Tensor& out, Tensor& lse) {
  const AttentionShape sh = check_attention("attention", q_in, k_in, v_in, mask);
  check_output("attention", "out", out, q_in.shape(), q_in.dtype());
  check_output("attention", "lse", lse, {sh.B, sh.H, sh.Tq}, is_half(q_in.dtype()) ? DType::Float32 : q_in.dtype());
  VB_CHECK(lse.is_contiguous(), "cpu attention: lse must be contiguous");
  if (is_half(q_in.dtype())) {
    Tensor of = float32_empty_like(out);
    attention(cpu::float32_contiguous(q_in), cpu::float32_contiguous(k_in), cpu::float32_contiguous(v_in), mask, scale,
              dropout_p, seed, offset, of, lse);
    cpu::copy_into(out, of);
    return;
  }
  const Tensor q = unit_rows(q_in), k = unit_rows(k_in), v = unit_rows(v_in);
  const Shape mstride = mask.defined() ? mask.strides() : Shape(4, 0);
  write_rows(out, [&](Tensor& o) {
    with_real_type(q.dtype(), "attention", [&](auto zero) {
      using T = decltype(zero);
      with_mask<T>(mask, [&](const auto* m) {
        attention_forward_typed(heads<const T>(q), heads<const T>(k), heads<const T>(v), m, mstride, sh, T(scale),
                                dropout_p, seed, offset, heads<T>(o), lse.data<T>());
      });
    });
  });
}

void CpuBackend::attention_backward(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, const Tensor& mask,
                                    const Tensor& out, const Tensor& gout_in, const Tensor& lse, double scale,
                                    double dropout_p, uint64_t seed, uint64_t offset, Tensor& gq, Tensor& gk,
                                    Tensor& gv) {
  const AttentionShape sh = check_attention("attention_backward", q_in, k_in, v_in, mask);
  VB_CHECK(gout_in.shape() == q_in.shape(), "cpu attention_backward: gout {} must have q's shape {}",
           shape_str(gout_in.shape()), shape_str(q_in.shape()));
  check_output("attention_backward", "gq", gq, q_in.shape(), q_in.dtype());
  check_output("attention_backward", "gk", gk, k_in.shape(), k_in.dtype());
  check_output("attention_backward", "gv", gv, v_in.shape(), v_in.dtype());
  if (is_half(q_in.dtype())) {
    Tensor gqf = float32_empty_like(gq), gkf = float32_empty_like(gk), gvf = float32_empty_like(gv);
    attention_backward(cpu::float32_contiguous(q_in), cpu::float32_contiguous(k_in), cpu::float32_contiguous(v_in),
                       mask, out, cpu::float32_contiguous(gout_in), lse, scale, dropout_p, seed, offset, gqf, gkf, gvf);
    cpu::copy_into(gq, gqf);
    cpu::copy_into(gk, gkf);
    cpu::copy_into(gv, gvf);
    return;
  }
  const Tensor q = unit_rows(q_in), k = unit_rows(k_in), v = unit_rows(v_in), gout = unit_rows(gout_in);
  const Tensor l = cpu::contiguous(lse);
  const Shape mstride = mask.defined() ? mask.strides() : Shape(4, 0);
  write_rows(gq, [&](Tensor& gqo) {
    write_rows(gk, [&](Tensor& gko) {
      write_rows(gv, [&](Tensor& gvo) {
        with_real_type(q.dtype(), "attention_backward", [&](auto zero) {
          using T = decltype(zero);
          with_mask<T>(mask, [&](const auto* m) {
            attention_backward_typed(heads<const T>(q), heads<const T>(k), heads<const T>(v), m, mstride,
                                     heads<const T>(gout), l.data<T>(), sh, T(scale), dropout_p, seed, offset,
                                     heads<T>(gqo), heads<T>(gko), heads<T>(gvo));
          });
        });
      });
    });
  });
}

}  // namespace vb
