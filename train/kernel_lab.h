// `videobert kernels`: the kernel lab. Lists the numbered kernel ladders (kernels/cuda/*_ladder.cu) and
// runs one rung on one device: checked against the CPU backend, timed on a GPU beside the library that
// does the same work, and, under the emulator, observed access by access (kernels/emu/insight.h) so that
// a reader sees why one rung is faster than the one before without a GPU.
//
//   videobert kernels list
//   videobert kernels run gemm --rung 3 --shape 256x256x256 --device emu --insight [--svg warp.svg]
//   videobert kernels run gemm --rung 4 --shape 2048x2048x2048 --device cuda
//   videobert kernels run layer_norm --rung 2 --shape 4096x768 --device emu --insight
//   videobert kernels run attention --rung 1 --shape 1x2x64x64 --device emu --insight
//   videobert kernels run conv --rung 2 --shape 1x8x8x32x32x3x1 --device emu --insight
#pragma once
#include <cstdint>
#include <string>

#include "kernels/backend.h"  // Conv2dParams
#include "tensor/tensor.h"

namespace vb::train {

struct KernelRunOptions {
  std::string op = "gemm";            // gemm, layer_norm, attention or conv
  int rung = 1;
  std::string shape = "256x256x256";  // gemm: MxNxK; layer_norm: NxC; attention: BxHxTxD; conv: NxHxWxCxOxKxS
  std::string dtype;                  // f32, bf16 or f16; "" = the rung's own (gemm 5–8, attention 3, conv 3: bf16;
                                      // gemm 5–8 also take f16)
  std::string device = "emu";         // cpu, emu or cuda
  bool insight = false;               // emu only: count every access (kernels/emu/insight.h)
  std::string svg;                    // with insight: write one warp's access pattern per line here
  int repeat = 10;                    // cuda: timed runs (the median is reported)
  bool time = true;                   // cuda: false runs the rung once, checked, untimed (under a profiler)
  uint64_t seed = 0;
};

struct KernelRunResult {
  std::string text;  // what the command prints
  bool ok = false;   // the output agreed with the CPU backend within the bound
  double max_excess = 0;  // max over elements of |ours − cpu| − bound (≤ 0 when ok)
};

// The ladders, their rungs and what each adds.
std::string kernel_list();
// One rung: an Error names a bad op, rung, shape or device.
KernelRunResult run_kernel(const KernelRunOptions& options);

// One rung on contiguous tensors of a device with the ladders (emu, cuda): gemm a (M, K), b (K, N) —
// float32, or bf16 or f16 for the tensor-core rungs — into c (M, N) float32; layer_norm x (N, C), w, b (C)
// float32 into y (N, C), mean and rstd (N). insight: the emulator's instrumented copy (kernels/emu/insight.h).
// An Error names a bad rung, shape or device.
void run_gemm_rung(int rung, const Tensor& a, const Tensor& b, Tensor& c, bool insight = false);
void run_layer_norm_rung(int rung, const Tensor& x, const Tensor& w, const Tensor& b, double eps, Tensor& y,
                         Tensor& mean, Tensor& rstd, bool insight = false);
// attention q, k, v (B·H, T, D) — float32, or bf16 for rung 3 — into out (B·H, T, D) of their dtype and
// lse (B·H, T) float32; workspace: rung 1's scores, attention_rung_workspace's tensor, made once outside a
// timed loop (the other rungs need none: it may be undefined).
Tensor attention_rung_workspace(int rung, const Tensor& q);
void run_attention_rung(int rung, const Tensor& q, const Tensor& k, const Tensor& v, double scale, Tensor& out,
                        Tensor& lse, const Tensor& workspace, bool insight = false);
// conv x (N, H, W, C), w (O, KH, KW, C) — float32, or bf16 for rung 3 — into y (N, OH, OW, O) of their dtype,
// one group.
void run_conv_rung(int rung, const Tensor& x, const Tensor& w, const Conv2dParams& p, Tensor& y, bool insight = false);

}  // namespace vb::train
