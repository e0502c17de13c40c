// Optimizer primitives on the CPU: the fused AdamW step and the per-tensor sums of squares behind the
// global gradient norm. Both walk every tensor of the model once, in chunks of kChunk elements spread over
// the OpenMP threads as one list (a model is a few large tensors and many small ones: one parallel loop
// over all chunks keeps both threads busy, where one loop per tensor would run the small ones serially).
//
// AdamW, per element (kernels/backend.h's AdamWStep; the CUDA kernel kernels/cuda/nn_adamw.cu computes
// the same, in the same float32 order, with the same scalars rounded once from double):
//   g ← g·s (only when grad_scale s ≠ 1: clipping's factor, rounded to g's dtype);
//   p ← p·(1 − lr·λ) (decay slots);  m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²;
//   p ← p − (lr/c1) · m / (√v·(1/√c2) + ε)
//   (float32: β1·m + ((1 − β1)·g), β2·v + ((1 − β2)·g²), √v·(1/√c2) + ε and p − (m/d)·(lr/c1) each one FMA)
// Cost: ≈ 14 FLOPs and a square root per element; reads p, g, m, v and writes p, m, v — 28 bytes per
// float32 element, against ≈ 15 separate tensor ops (and as many temporaries) unfused.
//
// sum_squares: out[i] = Σ_j x_ij², each chunk summed in double, the chunks of a tensor added in order,
// so the result does not depend on the thread count. Cost: 2 FLOPs and one read per element.
#include <cmath>
#include <type_traits>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"

namespace vb {

namespace {

constexpr int64_t kChunk = 16384;

struct Chunk {
  size_t tensor;
  int64_t begin, end;
};

template <typename Numel>
std::vector<Chunk> chunks_of(size_t count, Numel numel) {
  std::vector<Chunk> out;
  for (size_t i = 0; i < count; ++i)
    for (int64_t b = 0, n = numel(i); b < n; b += kChunk) out.push_back({i, b, std::min(n, b + kChunk)});
  return out;
}

// The step's scalars in the compute type C: float for float32 and the half types (the CUDA kernel's
// arithmetic), double for float64.
template <typename C>
struct Scalars {
  C beta1, one_minus_beta1, beta2, one_minus_beta2, eps, decay_factor, inv_sqrt_c2, step_size, grad_scale;
  bool weight_decay, scaled;

  explicit Scalars(const AdamWStep& h)
      : beta1(C(h.beta1)), one_minus_beta1(C(1 - h.beta1)), beta2(C(h.beta2)), one_minus_beta2(C(1 - h.beta2)),
        eps(C(h.eps)), decay_factor(C(1 - h.lr * h.weight_decay)), inv_sqrt_c2(C(1 / std::sqrt(h.bias_correction2))),
        step_size(C(h.lr / h.bias_correction1)), grad_scale(C(h.grad_scale)), weight_decay(h.weight_decay != 0),
        scaled(h.grad_scale != 1) {}
};

template <typename T, typename C>
void adamw_range(const AdamWSlot& slot, const Scalars<C>& s, int64_t begin, int64_t end) {
  T* p = slot.param.data<T>();
  const T* g = slot.grad.data<T>();
  float* m = slot.exp_avg.data<float>();
  float* v = slot.exp_avg_sq.data<float>();
  const bool decay = slot.decay && s.weight_decay;
  // One loop per case of the scale, so that the compiler vectorises each without a test per element.
  const auto run = [&](auto scaled) {
    for (int64_t i = begin; i < end; ++i) {
      // (scaled: the gradient as scaling it in place would have left it, T(g·s), without writing it)
      C gi = C(g[i]);
      if constexpr (decltype(scaled)::value) gi = C(T(gi * s.grad_scale));
      C pi = C(p[i]);
      if (decay) pi *= s.decay_factor;
      // The multiply-adds are fused where written (std::fma) and nowhere else: this file is compiled without
      // contraction (CMakeLists.txt), so vector and scalar code round alike, as the formula says
      // (tests/cpu/optim.cpp holds the kernel to it bit for bit).
      const C mi = std::fma(s.beta1, C(m[i]), s.one_minus_beta1 * gi);
      const C vi = std::fma(s.beta2, C(v[i]), s.one_minus_beta2 * (gi * gi));
      m[i] = float(mi);
      v[i] = float(vi);
      pi = std::fma(-(mi / std::fma(std::sqrt(vi), s.inv_sqrt_c2, s.eps)), s.step_size, pi);
      p[i] = T(pi);
    }
  };
  if (s.scaled)
    run(std::true_type{});
  else
    run(std::false_type{});
}

// Sixteen running sums (element i goes to sum i mod 16), added pairwise at the end: sixteen independent
// chains the compiler turns into two vectors of doubles, instead of one chain of dependent adds that
// ran at one element per add latency (a quarter of the base preset's clip_grad_norm). The order is fixed,
// so the result still does not depend on the thread count.
template <typename T>
double sum_squares_range(const Tensor& x, int64_t begin, int64_t end) {
  constexpr int kLanes = 16;
  const T* d = x.data<T>() + begin;
  const int64_t n = end - begin, whole = n / kLanes * kLanes;
  double acc[kLanes] = {};
  for (int64_t i = 0; i < whole; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      const double e = double(d[i + j]);
      acc[j] += e * e;
    }
  for (int64_t i = whole; i < n; ++i) {
    const double e = double(d[i]);
    acc[i - whole] += e * e;
  }
  for (int width = kLanes / 2; width > 0; width /= 2)
    for (int j = 0; j < width; ++j) acc[j] += acc[j + width];
  return acc[0];
}

}  // namespace

void CpuBackend::adamw(const std::vector<AdamWSlot>& slots, const AdamWStep& step) {
  VB_CHECK(step.bias_correction1 > 0 && step.bias_correction2 > 0,
           "cpu adamw: bias corrections must be positive (1 − β^t for step t ≥ 1), got {} and {}",
           step.bias_correction1, step.bias_correction2);
  for (size_t i = 0; i < slots.size(); ++i) {
    const AdamWSlot& s = slots[i];
    VB_CHECK(is_floating(s.param.dtype()) && s.grad.dtype() == s.param.dtype(),
             "cpu adamw: slot {}: parameter {} with gradient {} (expected the same floating dtype)", i,
             s.param.dtype(), s.grad.dtype());
    VB_CHECK(s.exp_avg.dtype() == DType::Float32 && s.exp_avg_sq.dtype() == DType::Float32,
             "cpu adamw: slot {}: moments are {} and {} (expected float32)", i, s.exp_avg.dtype(),
             s.exp_avg_sq.dtype());
    for (const Tensor* t : {&s.grad, &s.exp_avg, &s.exp_avg_sq})
      VB_CHECK(t->shape() == s.param.shape(), "cpu adamw: slot {}: a tensor of shape {} for a parameter of shape {}",
               i, shape_str(t->shape()), shape_str(s.param.shape()));
    for (const Tensor* t : {&s.param, &s.grad, &s.exp_avg, &s.exp_avg_sq})
      VB_CHECK(t->is_contiguous() && t->device().type == DeviceType::CPU,
               "cpu adamw: slot {}: every tensor must be contiguous and on the CPU (got one on {})", i, t->device());
  }
  const std::vector<Chunk> chunks = chunks_of(slots.size(), [&](size_t i) { return slots[i].param.numel(); });
  const Scalars<float> sf(step);
  const Scalars<double> sd(step);
  const int64_t total = int64_t(chunks.size());
#pragma omp parallel for schedule(dynamic, 1) if (total > 1)
  for (int64_t c = 0; c < total; ++c) {
    const Chunk& k = chunks[size_t(c)];
    const AdamWSlot& slot = slots[k.tensor];
    switch (slot.param.dtype()) {
      case DType::Float32: adamw_range<float, float>(slot, sf, k.begin, k.end); break;
      case DType::Float64: adamw_range<double, double>(slot, sd, k.begin, k.end); break;
      case DType::BFloat16: adamw_range<bf16, float>(slot, sf, k.begin, k.end); break;
      default: adamw_range<f16, float>(slot, sf, k.begin, k.end); break;
    }
  }
}

void CpuBackend::sum_squares(const std::vector<Tensor>& xs, Tensor& out) {
  VB_CHECK(out.dtype() == DType::Float32 && out.dim() == 1 && out.size(0) == int64_t(xs.size()) &&
               out.is_contiguous(),
           "cpu sum_squares: output {} {} (expected float32 of shape ({}))", shape_str(out.shape()), out.dtype(),
           xs.size());
  for (size_t i = 0; i < xs.size(); ++i)
    VB_CHECK(is_floating(xs[i].dtype()) && xs[i].is_contiguous(),
             "cpu sum_squares: tensor {} is {} {} (expected a contiguous floating tensor)", i, xs[i].dtype(),
             xs[i].is_contiguous() ? "contiguous" : "non-contiguous");
  const std::vector<Chunk> chunks = chunks_of(xs.size(), [&](size_t i) { return xs[i].numel(); });
  std::vector<double> partial(chunks.size());
  const int64_t total = int64_t(chunks.size());
#pragma omp parallel for schedule(dynamic, 1) if (total > 1)
  for (int64_t c = 0; c < total; ++c) {
    const Chunk& k = chunks[size_t(c)];
    const Tensor& x = xs[k.tensor];
    double r;
    switch (x.dtype()) {
      case DType::Float32: r = sum_squares_range<float>(x, k.begin, k.end); break;
      case DType::Float64: r = sum_squares_range<double>(x, k.begin, k.end); break;
      case DType::BFloat16: r = sum_squares_range<bf16>(x, k.begin, k.end); break;
      default: r = sum_squares_range<f16>(x, k.begin, k.end); break;
    }
    partial[size_t(c)] = r;
  }
  std::vector<double> sums(xs.size(), 0.0);
  for (size_t c = 0; c < chunks.size(); ++c) sums[chunks[c].tensor] += partial[c];
  float* o = out.data<float>();
  for (size_t i = 0; i < xs.size(); ++i) o[i] = float(sums[i]);
}

}  // namespace vb
