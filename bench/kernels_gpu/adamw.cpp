// bench_kernels_gpu's AdamW cases (per run; s = bytes per element of the case's dtype):
//   adamw bert-base, one fused step over BERT-base's 199 parameter tensors (109.5M) memory-bound
//       Bytes per element 2·s (p read and written) + s (g) + 16 (m, v float32 read and written);
//       FLOPs ≈ 14 per element. Params f32 and bf16 (m, v float32). Baseline: torch.optim.AdamW(fused=True)
//       for f32 (torch_kernels_gpu.py; PyTorch keeps m and v in the parameters' dtype, so no bf16 row).
#include <cmath>

#include "bench/kernels_gpu/cases.h"
#include "kernels/cuda/nn.h"  // the fused AdamW launcher

namespace vb::bench::kernels_gpu {

namespace {

// BERT-base's parameters in named_parameters order: embeddings (word, position, type, LayerNorm), 12
// layers (q, k, v, attention output, LayerNorm, intermediate, output, LayerNorm), the pooler.
std::vector<Shape> bert_base_parameter_shapes() {
  const int64_t h = 768, f = 3072;
  std::vector<Shape> s = {{30522, h}, {512, h}, {2, h}, {h}, {h}};
  for (int layer = 0; layer < 12; ++layer) {
    for (int i = 0; i < 4; ++i) s.insert(s.end(), {{h, h}, {h}});
    s.insert(s.end(), {{h}, {h}, {f, h}, {f}, {h, f}, {h}, {h}, {h}});
  }
  s.insert(s.end(), {{h, h}, {h}});
  return s;
}

constexpr double kLr = 1e-3, kBeta1 = 0.9, kBeta2 = 0.999, kEps = 1e-8, kWeightDecay = 0.01;

// AdamW's first step (bias corrections 1 − β) in double, the reference: train/optim.h's formula.
void adamw_reference(Set& s) {
  const double c1 = 1 - kBeta1, c2 = 1 - kBeta2;
  for (size_t i = 0; i + 3 < s.size(); i += 4) {
    Tensor &p = s[i], &m = s[i + 2], &v = s[i + 3];
    std::vector<double> pv = p.to_vector(), gv = s[i + 1].to_vector(), mv = m.to_vector(), vv = v.to_vector();
    for (size_t j = 0; j < pv.size(); ++j) {
      if (p.dim() >= 2) pv[j] *= 1 - kLr * kWeightDecay;
      mv[j] = kBeta1 * mv[j] + (1 - kBeta1) * gv[j];
      vv[j] = kBeta2 * vv[j] + (1 - kBeta2) * gv[j] * gv[j];
      pv[j] -= kLr / c1 * mv[j] / (std::sqrt(vv[j]) / std::sqrt(c2) + kEps);
    }
    copy_(p, Tensor::from_vector(pv, p.shape(), DType::Float64));
    copy_(m, Tensor::from_vector(mv, m.shape(), DType::Float64));
    copy_(v, Tensor::from_vector(vv, v.shape(), DType::Float64));
  }
}

// Ours: the fused multi-tensor launcher (kernels/cuda/nn.h) called directly: the kernel that Backend::adamw
// (train::AdamW's step) launches, without that method's per-tensor checks.
void adamw_device(Set& s) {
  std::vector<nn_kernels::AdamWTensor> tensors;
  for (size_t i = 0; i + 3 < s.size(); i += 4)
    tensors.push_back({s[i].data_ptr(), s[i + 1].data_ptr(), static_cast<float*>(s[i + 2].data_ptr()),
                       static_cast<float*>(s[i + 3].data_ptr()), s[i].numel(), s[i].dtype(), s[i].dim() >= 2});
  [[maybe_unused]] const nn_kernels::AdamWHyper h{kLr, kBeta1, kBeta2, kEps, kWeightDecay, 1 - kBeta1, 1 - kBeta2};
  switch (s[0].device().type) {
#if defined(VB_HAVE_EMU)
    case DeviceType::EMU: vb::emu::adamw(tensors.data(), int(tensors.size()), h); return;
#endif
#if defined(VB_HAVE_CUDA)
    case DeviceType::CUDA: vb::cuda::adamw(tensors.data(), int(tensors.size()), h); return;
#endif
    default: fail("adamw: no fused kernel for device {}", s[0].device());
  }
}

}  // namespace

void add_adamw_cases(std::vector<Case>& cases, bool smoke) {
  std::vector<Shape> shapes;
  if (smoke) {
    for (int64_t i = 0; i < 30; ++i) shapes.push_back(i % 3 == 0 ? Shape{i % 7 + 1, 13} : Shape{(i * 37) % 101 + 1});
  } else {
    shapes = bert_base_parameter_shapes();
  }
  double numel = 0;
  for (const Shape& s : shapes) numel += double(shape_numel(s));
  for (DType t : {DType::Float32, DType::BFloat16}) {
    Case c;
    c.name = smoke ? fmt::format("adamw {} tensors {}", shapes.size(), short_name(t))
                   : fmt::format("adamw bert-base {}", short_name(t));
    c.dtype = t;
    c.compute_bound = false;
    c.flops = 14.0 * numel;
    c.bytes = numel * (3.0 * elem(t) + 16.0);
    c.make = [shapes, t](Device d) {
      Set s;
      uint64_t seed = 71;
      for (const Shape& shape : shapes) {
        Generator g{seed++, 0};
        s.push_back(input(shape, t, d, seed++));                     // p
        s.push_back(input(shape, t, d, seed++));                     // g
        s.push_back(input(shape, DType::Float32, d, seed++, 0.1));   // m
        s.push_back(mul(rand(shape, &g, DType::Float32, d), 1e-2));  // v ≥ 0
      }
      return s;
    };
    c.run = [](Set& s) { s[0].device().is_cpu() ? adamw_reference(s) : adamw_device(s); };
    for (size_t i = 0; i < 4 * shapes.size(); ++i)
      if (i % 4 != 1) c.outputs.push_back(i);
    cases.push_back(std::move(c));
  }
}

}  // namespace vb::bench::kernels_gpu
