// bench_kernels_gpu's kernel-ladder cases: the numbered rungs of each ladder (train/kernel_lab.h; docs/KERNELS.md),
// per run (s = bytes per element of the case's dtype):
//   gemm_ladder rung N MxKxN, the GEMM ladder (kernels/cuda/gemm_ladder.cu)                compute-bound
//       The numbered rungs at 2048³: float32 (naive, shared tiles, register tiles, vectorised) and bf16 or
//       f16 in / float32 out on the tensor cores (rungs 5–8). FLOPs 2·M·N·K, bytes s·(M·K + K·N) + 4·M·N.
//       Baseline for the f32 rungs: cuBLASLt f32 (no TF32) on the same matrices, beside the GEMM ceiling of
//       the dtype.
//   layer_norm_ladder rung N fwd 8192x768 f32, the layer-norm ladder (kernels/cuda/layer_norm_ladder.cu)  memory-bound
//       Bytes 8·N·C + 8·C + 8·N (x read once, y written, w and b, mean and rstd); FLOPs ≈ 8·N·C. No
//       baseline here: compare with the "layer_norm fwd 8192x768 f32" row (the framework's kernel).
//   attention_ladder rung N fwd B·HxTxD, the attention ladder (kernels/cuda/attention_ladder.cu)  compute-bound
//       Rung 1 (three kernels, the scores in global memory), rungs 2 and 3 (the framework's float32 and
//       tensor-core kernels) at B·H = 96, T = 512, D = 64. FLOPs 4·B·H·T²·D, bytes 4·B·H·T·D elements + lse
//       (rung 1 also moves its 3·B·H·T² floats of scores, not counted: the row shows what they cost). No
//       baseline here: rungs 2 and 3 are the "attention fwd B8 H12 T512 D64" rows' kernels.
//   conv_ladder rung N fwd NxHxWxC->O kK sS, the convolution ladder (kernels/cuda/conv_ladder.cu)  compute-bound
//       Rung 1 (direct loops), rungs 2 and 3 (the framework's implicit-GEMM kernels, float32 and tensor
//       cores) at ResNet-50's 14×14×256 → 256 3×3 layer, batch 8. FLOPs and bytes as the conv2d rows; no
//       baseline here: compare with the "conv2d fwd" rows (cuDNN) of the same shape.
#include <cmath>
#include <string>

#include "bench/kernels_gpu/baselines.h"
#include "bench/kernels_gpu/cases.h"
#include "kernels/cuda/attention_ladder.h"
#include "kernels/cuda/conv_ladder.h"
#include "kernels/cuda/gemm_ladder.h"
#include "kernels/cuda/layer_norm_ladder.h"
#include "train/kernel_lab.h"

namespace vb::bench::kernels_gpu {

// ---- the GEMM ladder ----

namespace {

// Rung `rung` of kernels/cuda/gemm_ladder.cu on the set's device (train/kernel_lab.h); on the CPU, the CPU
// backend's float32 GEMM (of the bf16 inputs, exactly, for the bf16 rungs): the smoke test's reference.
void gemm_ladder_run(int rung, Set& s) {
  if (!s[0].device().is_cpu()) return train::run_gemm_rung(rung, s[0], s[1], s[2]);
  Tensor out = unsqueeze(s[2], 0);  // the backend takes (Bt, M, K) · (Bt, K, N)
  backend_of(s).matmul(unsqueeze(to(s[0], DType::Float32), 0), unsqueeze(to(s[1], DType::Float32), 0), out);
}

}  // namespace

void add_gemm_ladder_cases(std::vector<Case>& cases, bool smoke) {
  // Smoke: odd against the tiles (16; 64×64×8; 64×64×32), N and K multiples of 8 (rungs 4 to 8).
  const int64_t m = smoke ? 67 : 2048, n = smoke ? 72 : 2048, k = smoke ? 40 : 2048;
  for (int rung = 1; rung <= ladder::kGemmRungs; ++rung) {
    const ladder::Rung& r = ladder::kGemmRungTable[rung - 1];
    const bool bf16 = std::string(r.dtype) == "bf16";
    std::vector<DType> types = {bf16 ? DType::BFloat16 : DType::Float32};
    if (r.f16_too) types.push_back(DType::Float16);  // the tensor-core rungs take f16 too
    for (const DType t : types) {
      Case c;
      c.name = fmt::format("gemm_ladder rung {} {}x{}x{} {}", rung, m, k, n, short_name(t));
      c.dtype = t;
      c.flops = 2.0 * double(m) * double(n) * double(k);
      c.bytes = elem(t) * double(m * k + k * n) + 4.0 * double(m * n);
      c.make = [=](Device d) {
        const double scale = 1.0 / std::sqrt(double(k));
        return Set{input({m, k}, t, d, 11), input({k, n}, t, d, 12, scale), output({m, n}, DType::Float32, d)};
      };
      c.run = [rung](Set& s) { gemm_ladder_run(rung, s); };
      c.outputs = {2};
#if defined(VB_HAVE_CUDA)
      if (t == DType::Float32)  // cuBLASLt's 16-bit GEMM writes 16 bits: compare those rungs with the "gemm" rows
        c.baseline = [m, n, k](const std::vector<Set>& sets) {
          return make_lt_gemm(GemmShape{m, k, n, false}, DType::Float32, sets);  // it reads the data pointers only
        };
#endif
      cases.push_back(std::move(c));
    }
  }
}

// ---- the layer-norm ladder ----

namespace {

// Rung `rung` of kernels/cuda/layer_norm_ladder.cu (train/kernel_lab.h); on the CPU, the CPU backend's layer_norm.
void layer_norm_ladder_run(int rung, Set& s) {
  if (s[0].device().is_cpu()) return backend_of(s).layer_norm(s[0], s[1], s[2], 1e-12, s[3], s[4], s[5]);
  train::run_layer_norm_rung(rung, s[0], s[1], s[2], 1e-12, s[3], s[4], s[5]);
}

}  // namespace

void add_layer_norm_ladder_cases(std::vector<Case>& cases, bool smoke) {
  const int64_t n = smoke ? 7 : 8192, c = 768;  // as the layer_norm cases: BERT-base's hidden states
  for (int rung = 1; rung <= ladder::kLayerNormRungs; ++rung) {
    Case f;
    f.name = fmt::format("layer_norm_ladder rung {} fwd {}x{} f32", rung, n, c);
    f.dtype = DType::Float32;
    f.compute_bound = false;
    f.flops = 8.0 * double(n * c);
    f.bytes = 8.0 * double(n * c) + 8.0 * double(c) + 8.0 * double(n);
    f.make = [=](Device d) {
      return Set{input({n, c}, DType::Float32, d, 41), input({c}, DType::Float32, d, 42), input({c}, DType::Float32, d, 43),
                 output({n, c}, DType::Float32, d),    output({n}, DType::Float32, d),    output({n}, DType::Float32, d)};
    };
    f.run = [rung](Set& x) { layer_norm_ladder_run(rung, x); };
    f.outputs = {3, 4, 5};
    cases.push_back(std::move(f));
  }
}

// ---- the attention ladder ----

namespace {

// Rung `rung` of kernels/cuda/attention_ladder.cu (train/kernel_lab.h) on (B·H, T, D); on the CPU, the CPU
// backend's attention (as (1, B·H, T, D)).
void attention_ladder_run(int rung, double scale, Set& s) {
  if (!s[0].device().is_cpu()) return train::run_attention_rung(rung, s[0], s[1], s[2], scale, s[3], s[4], s[5]);
  Tensor out = unsqueeze(s[3], 0), lse = unsqueeze(s[4], 0);
  backend_of(s).attention(unsqueeze(s[0], 0), unsqueeze(s[1], 0), unsqueeze(s[2], 0), Tensor(), scale, 0.0, 0, 0, out,
                          lse);
}

}  // namespace

void add_attention_ladder_cases(std::vector<Case>& cases, bool smoke) {
  // Smoke: partial tiles of 32 and 64 rows, a head dim that is not a multiple of 16.
  const int64_t bh = smoke ? 2 : 96, t = smoke ? 37 : 512, d = smoke ? 24 : 64;
  for (int rung = 1; rung <= ladder::kAttentionRungs; ++rung) {
    const DType ty = std::string(ladder::kAttentionRungTable[rung - 1].dtype) == "bf16" ? DType::BFloat16 : DType::Float32;
    const double scale = 1.0 / std::sqrt(double(d));
    Case c;
    c.name = fmt::format("attention_ladder rung {} fwd {}x{}x{} {}", rung, bh, t, d, short_name(ty));
    c.dtype = ty;
    c.flops = 4.0 * double(bh) * double(t * t) * double(d);
    c.bytes = 4.0 * elem(ty) * double(bh * t * d) + 4.0 * double(bh * t);
    c.make = [=](Device dev) {
      // s[5]: rung 1's scores, made with the set, outside the timed runs (undefined for the other rungs).
      Tensor q = input({bh, t, d}, ty, dev, 61);
      Tensor work = dev.is_cpu() ? Tensor() : train::attention_rung_workspace(rung, q);
      return Set{q, input({bh, t, d}, ty, dev, 62), input({bh, t, d}, ty, dev, 63), output({bh, t, d}, ty, dev),
                 output({bh, t}, DType::Float32, dev), work};
    };
    c.run = [rung, scale](Set& s) { attention_ladder_run(rung, scale, s); };
    c.outputs = {3, 4};
    cases.push_back(std::move(c));
  }
}

// ---- the convolution ladder ----

namespace {

// Rung `rung` of kernels/cuda/conv_ladder.cu (train/kernel_lab.h); on the CPU, the CPU backend's conv2d.
void conv_ladder_run(int rung, const Conv2dParams& p, Set& s) {
  if (s[0].device().is_cpu()) return backend_of(s).conv2d(s[0], s[1], Tensor(), p, s[2]);
  train::run_conv_rung(rung, s[0], s[1], p, s[2]);
}

}  // namespace

void add_conv_ladder_cases(std::vector<Case>& cases, bool smoke) {
  // Smoke: odd against the 64×64 tiles, C not a multiple of 16.
  const int64_t n = smoke ? 2 : 8, hw = smoke ? 7 : 14, c = smoke ? 20 : 256, o = smoke ? 24 : 256, k = 3;
  Conv2dParams p;
  p.pad_h = p.pad_w = 1;
  for (int rung = 1; rung <= ladder::kConvRungs; ++rung) {
    const DType ty = std::string(ladder::kConvRungTable[rung - 1].dtype) == "bf16" ? DType::BFloat16 : DType::Float32;
    Case cs;
    cs.name = fmt::format("conv_ladder rung {} fwd {}x{}x{}x{}->{} k{} s1 {}", rung, n, hw, hw, c, o, k, short_name(ty));
    cs.dtype = ty;
    cs.flops = 2.0 * double(n * hw * hw) * double(o) * double(k * k * c);
    cs.bytes = elem(ty) * double(n * hw * hw * c + o * k * k * c + n * hw * hw * o);
    cs.make = [=](Device dev) {
      return Set{input({n, hw, hw, c}, ty, dev, 71), input({o, k, k, c}, ty, dev, 72, 1.0 / std::sqrt(double(k * k * c))),
                 output({n, hw, hw, o}, ty, dev)};
    };
    cs.run = [rung, p](Set& s) { conv_ladder_run(rung, p, s); };
    cs.outputs = {2};
    cases.push_back(std::move(cs));
  }
}

}  // namespace vb::bench::kernels_gpu
