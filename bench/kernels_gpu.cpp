// Kernel benchmarks on the GPU: our CUDA kernels (kernels/cuda/) at the shapes BERT-base and ResNet-50
// train with, beside the measured ceilings of the machine and the vendor library that does the same
// work, in the same run. Under the emulator (--device emu --smoke) the same cases run at tiny shapes and
// are checked against the CPU backend: a smoke test, with no timing at all.
//
// Usage (on a machine with a GPU and a build with the CUDA backend: cmake -S . -B build -G Ninja
// -DVIDEOBERT_CUDA=ON && cmake --build build --target bench_kernels_gpu; scripts/gpu-check.sh builds it and
// runs it beside torch_kernels_gpu.py on a lent GPU machine, see docs/GPU.md):
//   build/bench_kernels_gpu                         every case at full size; prints a markdown table
//   build/bench_kernels_gpu --json out.jsonl        ... and writes one JSON line per measurement (the file
//                                                   is rewritten after every case: a run cut short keeps
//                                                   what it measured)
//   build/bench_kernels_gpu --filter attention      only cases whose name contains the text
//   build/bench_kernels_gpu --device emu --smoke    tiny shapes under the emulator, checked (CI; ~seconds)
//   build/bench_kernels_gpu --device cuda --smoke   tiny shapes on the GPU, checked against the CPU
// Options: --samples N (timed batches, median reported; default 25), --warmup N (default 3),
//   --batch-ms X (length of one timed batch; default 2), --max-seconds X (a case stops sampling after X
//   seconds of timed batches, with at least 5 taken; default 1), --list (each case's name, FLOPs and
//   bytes, as torch_kernels_gpu.py --list prints them: the two must agree), --help.
// Exit status: 0 when every case ran (and, with --smoke, matched the CPU; without, our output agreed with
//   the baseline's: a baseline that cannot run is a note in the table, not a failure), 1 otherwise, 2 for a
//   bad argument, 77 when there is nothing to run here (no CUDA backend built, or no GPU; no emulator for
//   --device emu).
// PyTorch's side: python3 bench/torch_kernels_gpu.py --json torch.jsonl (same case names, same timing);
// python3 bench/compare_gpu.py ours.jsonl torch.jsonl joins both into one table.
//
// Timing (bench/gpu_timing.h): CUDA events around batches of back-to-back runs after a warm-up, the
// median of --samples batches, inputs and outputs rotated among enough sets to exceed twice the L2
// cache. Ours is timed through the Backend interface (kernels/backend.h) with preallocated outputs:
// exactly the kernels an op launches, plus its host-side checks and workspace allocations from the
// caching allocator, but without the op's output allocation and autograd recording. AdamW's case calls
// the fused multi-tensor launcher (kernels/cuda/nn.h) directly: the kernel Backend::adamw (train::AdamW's
// step) launches, without that method's per-tensor checks.
//
// Ceilings, measured at start-up: copy bandwidth = one 1 GiB device-to-device cudaMemcpy, counting the
// bytes read and written (2 GiB); GEMM = one cuBLASLt 8192³ GEMM, bf16 with float32 accumulation (the
// ceiling of bf16 and f16 cases) and float32 (CUBLAS_COMPUTE_32F, no TF32: the ceiling of f32 cases).
// "% of ceiling" is achieved FLOP/s over the GEMM ceiling of the case's dtype for compute-bound cases,
// achieved bytes/s over the copy bandwidth for memory-bound ones. "ours/baseline" is the baseline's time
// over ours: 1.0 = as fast, 0.5 = half as fast.
//
// Cases, per run (s = bytes per element of the case's dtype):
//   gemm MxKxN, linear MxK->N   (cuBLASLt; in the emulated build the CPU GEMM)         compute-bound
//       out (M, N) = a (M, K)·b (K, N); "linear" reads b as the transposed view of a row-major
//       weight (N, K), as nn::Linear does. FLOPs 2·M·N·K; bytes (M·K + K·N + M·N)·s.
//       Baseline: cuBLASLt with the same layouts, descriptors made once and the fastest of its top 8
//       heuristic algorithms (ours builds descriptors and asks the heuristic on every call); PyTorch's
//       matmul in torch_kernels_gpu.py.
//       Shapes: 4096³; BERT-base projections for 4096 tokens (qkv 768->2304, out 768->768, ffn
//       768->3072 and 3072->768). f32, bf16, f16.
//   conv2d fwd / dgrad / wgrad, channels-last, batch 32, ResNet-50's layers       compute-bound
//       FLOPs 2·N·OH·OW·O·KH·KW·C for each pass; bytes: fwd x + w + y, dgrad gy + w + gx, wgrad gy + x + gw.
//       Shapes: conv1 7×7/2 3->64 at 224²; conv2_x 3×3 64->64 and 1×1 256->64 at 56²; conv3_x's strided
//       3×3/2 128->128 56²->28²; conv4_x 3×3 256->256 and 1×1 256->1024 at 14²; conv5_x 3×3 512->512 at
//       7². f32, bf16 (on the tensor cores, kernels/cuda/conv_mma.cu). Baseline: cuDNN (cudnnConvolutionForward / BackwardData / BackwardFilter with NHWC
//       descriptors, float32 compute, the fastest algorithm cudnnFind* reports; f32 with CUDNN_FMA_MATH,
//       no TF32, as our f32 kernels). cuDNN is loaded at run time (libcudnn.so.9, or $VB_CUDNN_LIB):
//       without it the table says so. PyTorch's conv2d on channels-last tensors (cuDNN under PyTorch's
//       autotuning) is measured too, in torch_kernels_gpu.py.
//   attention fwd / bwd, B×H×T×D, no mask, scale 1/√D                            compute-bound
//       FLOPs fwd 4·B·H·T²·D (q·kᵀ and P·v); bwd 10·B·H·T²·D (2.5× the forward: S, dP, dV, dK, dQ).
//       Bytes fwd (q, k, v, out)·s + lse 4·B·H·T; bwd (q, k, v, out, dout read; dq, dk, dv written)·s
//       + lse. Shapes: B 32, H 12, D 64 at T 128 and 512 (the targets), and B 8 at T 512. f32,
//       bf16 (forward and backward on the tensor cores, kernels/cuda/attention_mma.cu; f32 runs the
//       float32-arithmetic kernels of attention.cu). Baseline: PyTorch's scaled_dot_product_attention (torch_kernels_gpu.py). cuDNN's fused
//       attention needs the cuDNN frontend's graph API, which this build does not carry: not measured.
//   layer_norm fwd / bwd, 8192×768 (BERT-base's hidden states, 16 × 512 tokens)    memory-bound
//       Bytes fwd 2·N·C·s (x read, y written) + 2·C·s (w, b) + 8·N (mean, rstd); bwd 3·N·C·s (gy, x read,
//       gx written) + 8·N + 3·C·s (w read, gw, gb written). FLOPs ≈ 8·N·C fwd, 14·N·C bwd. f32, bf16.
//   softmax fwd / bwd, 16384×1024 (attention-probability rows)                     memory-bound
//       Bytes fwd 2·N·C·s, bwd 3·N·C·s (y, gy read; gx written). FLOPs ≈ 5·N·C, 4·N·C.
//   cross_entropy fwd / bwd, 4096×30522 (BERT's MLM logits), reduction none        memory-bound
//       Bytes fwd N·C·s + 8·N (targets) + N·s (loss) + 4·N (lse); bwd 2·N·C·s (logits read, glogits
//       written) + 8·N + 4·N + N·s (targets, lse, gloss). FLOPs ≈ 5·N·C fwd and bwd.
//   adamw bert-base, one fused step over BERT-base's 199 parameter tensors (109.5M) memory-bound
//       Bytes per element 2·s (p read and written) + s (g) + 16 (m, v float32 read and written);
//       FLOPs ≈ 14 per element. Params f32 and bf16 (m, v float32). Baseline: torch.optim.AdamW(fused=True)
//       for f32 (torch_kernels_gpu.py; PyTorch keeps m and v in the parameters' dtype, so no bf16 row).
//   Layer_norm, softmax and cross_entropy's baselines are PyTorch's functional ops (torch_kernels_gpu.py).
//   nearest_centroid N×D kK, k-means' assignment step (kernels/cuda/nearest_centroid.cu)
//       index, distance (N) of the nearest of K centroids (K, D), by direct differences on the CUDA cores.
//       FLOPs 3·N·K·D (a subtract and an fma per row, centroid and dim); bytes N·D·s + K·D·s + 12·N (x and
//       the centroids read once, int64 index and float32 distance written; x is really read once per 16
//       centroids). K = 12 (one node of the paper's hierarchy, 2^20 frame features of 512 dims):
//       memory-bound, GB/s against the copy ceiling. K = 1024 (a flat vocabulary): compute-bound, against
//       the GEMM ceiling of its dtype — the cost of not using a GEMM (the kernel's comment says why). f32,
//       bf16. No baseline in this program.
//   gemm_ladder rung N MxKxN, the GEMM ladder (kernels/cuda/gemm_ladder.cu)                compute-bound
//       The numbered rungs at 2048³: float32 (naive, shared tiles, register tiles, vectorised) and bf16 in /
//       float32 out on the tensor cores (rungs 5–7). FLOPs 2·M·N·K, bytes s·(M·K + K·N) + 4·M·N. Baseline for
//       the f32 rungs: cuBLASLt f32 (no TF32) on the same matrices, beside the GEMM ceiling of the dtype.
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
//
// With --smoke every case runs once at a tiny shape that takes the same kernel paths (the same
// warp-per-row or block-per-row forms, odd sizes, more AdamW tensors than one launch carries) on the
// device, with outputs poisoned first, and the same case once on the CPU backend; every output must
// match within |ours − cpu| ≤ atol + rtol·|cpu| (f32 1e-4 + 1e-4; bf16 and f16 1e-2 + 1.6e-2, about two
// ulps). Full-size GPU runs check the baseline instead: our output and the baseline's must agree within
// max|ours − baseline| ≤ tol · max|baseline| (f32 1e-4, f16 2e-3, bf16 1e-2).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "kernels/backend.h"
#include "kernels/cuda/attention_ladder.h"
#include "kernels/cuda/conv_ladder.h"
#include "kernels/cuda/gemm_ladder.h"
#include "kernels/cuda/layer_norm_ladder.h"
#include "kernels/cuda/nn.h"  // the fused AdamW launcher
#include "tensor/atomic_file.h"
#include "train/kernel_lab.h"
#if defined(VB_HAVE_EMU)
#include "kernels/cuda/allocator.h"  // poisoned allocations (smoke), empty_cache
#endif

#if defined(VB_HAVE_CUDA)
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <nlohmann/json.hpp>

#include "bench/gpu_timing.h"
#if __has_include(<cudnn.h>)
#include <cudnn.h>
#define VB_BENCH_CUDNN 1
#endif
#endif

namespace {

using namespace vb;

// ---- cases ----

// The tensors of one run: inputs first, then outputs (the case lists which entries are outputs).
using Set = std::vector<Tensor>;

// A library implementation of a case, run on the same sets as ours.
class Baseline {
 public:
  virtual ~Baseline() = default;
  virtual std::string name() const = 0;
  // Computes the case's outputs into the set's output tensors.
  virtual void run(const Set& set) = 0;
};

struct Case {
  std::string name;
  DType dtype = DType::Float32;
  bool compute_bound = true;
  double flops = 0, bytes = 0;  // per run
  std::function<Set(Device)> make;
  // Ours on the set's device; on the CPU this is the CPU backend (the smoke test's reference).
  std::function<void(Set&)> run;
  std::vector<size_t> outputs;
  // The vendor library's version, built from the sets it will run on; null when this program has none.
  std::function<std::unique_ptr<Baseline>(const std::vector<Set>&)> baseline;
};

const char* short_name(DType t) {
  switch (t) {
    case DType::Float32: return "f32";
    case DType::BFloat16: return "bf16";
    case DType::Float16: return "f16";
    default: return "?";
  }
}

double elem(DType t) { return double(dtype_size(t)); }

// Standard-normal values (times `scale`) of dtype t on device d, the same on every device for a seed:
// drawn in float32 by the counter-based generator, then rounded.
Tensor input(const Shape& shape, DType t, Device d, uint64_t seed, double scale = 1.0) {
  Generator g{seed, 0};
  Tensor x = randn(shape, &g, DType::Float32, d);
  if (scale != 1.0) x = mul(x, scale);
  return t == DType::Float32 ? x : to(x, t);
}

Tensor output(const Shape& shape, DType t, Device d) { return Tensor::empty(shape, t, d); }

Backend& backend_of(const Set& s) { return backend(s[0].device()); }

// ---- GEMM ----

struct GemmShape {
  int64_t m, k, n;
  bool linear;  // b is the transposed view of a row-major (N, K) weight
};

std::string gemm_name(const GemmShape& g, DType t) {
  return g.linear ? fmt::format("linear {}x{}->{} {}", g.m, g.k, g.n, short_name(t))
                  : fmt::format("gemm {}x{}x{} {}", g.m, g.k, g.n, short_name(t));
}

// The set of a GEMM: a (1, M, K), b (1, K, N) (a view of w (1, N, K) for linear), out (1, M, N).
Set gemm_set(const GemmShape& g, DType t, Device d) {
  const double scale = 1.0 / std::sqrt(double(g.k));  // outputs of order 1
  Tensor a = input({1, g.m, g.k}, t, d, 11);
  Tensor b = g.linear ? transpose(input({1, g.n, g.k}, t, d, 12, scale), 1, 2) : input({1, g.k, g.n}, t, d, 12, scale);
  return {a, b, output({1, g.m, g.n}, t, d)};
}

#if defined(VB_HAVE_CUDA)
std::unique_ptr<Baseline> make_lt_gemm(const GemmShape& g, DType t, const std::vector<Set>& sets);
#endif

void add_gemm_cases(std::vector<Case>& cases, bool smoke) {
  const std::vector<GemmShape> shapes = smoke ? std::vector<GemmShape>{{33, 17, 65, false}, {40, 24, 72, true}}
                                              : std::vector<GemmShape>{{4096, 4096, 4096, false},
                                                                       {4096, 768, 2304, true},
                                                                       {4096, 768, 768, true},
                                                                       {4096, 768, 3072, true},
                                                                       {4096, 3072, 768, true}};
  for (DType t : {DType::Float32, DType::BFloat16, DType::Float16}) {
    for (const GemmShape& g : shapes) {
      Case c;
      c.name = gemm_name(g, t);
      c.dtype = t;
      c.flops = 2.0 * g.m * g.n * g.k;
      c.bytes = elem(t) * double(g.m * g.k + g.k * g.n + g.m * g.n);
      c.make = [g, t](Device d) { return gemm_set(g, t, d); };
      c.run = [](Set& s) { backend_of(s).matmul(s[0], s[1], s[2]); };
      c.outputs = {2};
#if defined(VB_HAVE_CUDA)
      c.baseline = [g, t](const std::vector<Set>& sets) { return make_lt_gemm(g, t, sets); };
#endif
      cases.push_back(std::move(c));
    }
  }
}

// ---- convolution ----

struct ConvLayer {
  int64_t n, h, w, c, o, k;
  int stride;
};

// A convolution's sizes: x (N, H, W, C), w (O, KH, KW, C), y (N, OH, OW, O); padding k/2, no dilation or
// groups (ResNet's convolutions).
struct ConvShape {
  int64_t N, H, W, C, O, KH, KW, OH, OW;
  int stride, pad;
};

ConvShape conv_shape(const ConvLayer& l) {
  const int pad = int(l.k / 2);
  const int64_t oh = (l.h + 2 * pad - l.k) / l.stride + 1, ow = (l.w + 2 * pad - l.k) / l.stride + 1;
  return {l.n, l.h, l.w, l.c, l.o, l.k, l.k, oh, ow, l.stride, pad};
}

#if defined(VB_HAVE_CUDA) && defined(VB_BENCH_CUDNN)
enum class ConvPass { Forward, Data, Filter };
std::unique_ptr<Baseline> make_cudnn_conv(ConvPass pass, const ConvShape& s, DType t, const std::vector<Set>& sets);
#endif

void add_conv_cases(std::vector<Case>& cases, bool smoke) {
  // ResNet-50 (torchvision's v1.5: the stride sits on the 3×3), batch 32.
  std::vector<ConvLayer> layers = {{32, 224, 224, 3, 64, 7, 2},  {32, 56, 56, 64, 64, 3, 1},
                                   {32, 56, 56, 256, 64, 1, 1},  {32, 56, 56, 128, 128, 3, 2},
                                   {32, 14, 14, 256, 256, 3, 1}, {32, 14, 14, 256, 1024, 1, 1},
                                   {32, 7, 7, 512, 512, 3, 1}};
  if (smoke) {
    // The same kernel sizes, strides and paddings on a small image with fewer channels.
    for (ConvLayer& l : layers) {
      l.n = 2;
      l.h = l.w = l.k == 7 ? 11 : 9;
      l.c = l.c == 3 ? 3 : l.c / 16;
      l.o = l.o / 16;
    }
  }
  for (DType t : {DType::Float32, DType::BFloat16}) {
    for (const ConvLayer& l : layers) {
      const ConvShape s = conv_shape(l);
      Conv2dParams p;
      p.stride_h = p.stride_w = s.stride;
      p.pad_h = p.pad_w = s.pad;
      const std::string shape =
          fmt::format("n{} {}x{}x{}->{} k{} s{} {}", l.n, l.h, l.w, l.c, l.o, l.k, l.stride, short_name(t));
      const double flops = 2.0 * double(s.N * s.OH * s.OW * s.O * s.KH * s.KW * s.C);
      const double x_bytes = elem(t) * double(s.N * s.H * s.W * s.C),
                   w_bytes = elem(t) * double(s.O * s.KH * s.KW * s.C),
                   y_bytes = elem(t) * double(s.N * s.OH * s.OW * s.O);
      const Shape xs = {s.N, s.H, s.W, s.C}, ws = {s.O, s.KH, s.KW, s.C}, ys = {s.N, s.OH, s.OW, s.O};
      const double wscale = 1.0 / std::sqrt(double(s.KH * s.KW * s.C));
      {
        Case c;
        c.name = "conv2d fwd " + shape;
        c.dtype = t;
        c.flops = flops;
        c.bytes = x_bytes + w_bytes + y_bytes;
        c.make = [=](Device d) { return Set{input(xs, t, d, 21), input(ws, t, d, 22, wscale), output(ys, t, d)}; };
        c.run = [p](Set& set) { backend_of(set).conv2d(set[0], set[1], Tensor(), p, set[2]); };
        c.outputs = {2};
#if defined(VB_HAVE_CUDA) && defined(VB_BENCH_CUDNN)
        c.baseline = [s, t](const std::vector<Set>& sets) { return make_cudnn_conv(ConvPass::Forward, s, t, sets); };
#endif
        cases.push_back(std::move(c));
      }
      {
        Case c;
        c.name = "conv2d dgrad " + shape;
        c.dtype = t;
        c.flops = flops;
        c.bytes = y_bytes + w_bytes + x_bytes;
        c.make = [=](Device d) { return Set{input(ys, t, d, 23), input(ws, t, d, 22, wscale), output(xs, t, d)}; };
        c.run = [p](Set& set) { backend_of(set).conv2d_backward_input(set[0], set[1], p, set[2]); };
        c.outputs = {2};
#if defined(VB_HAVE_CUDA) && defined(VB_BENCH_CUDNN)
        c.baseline = [s, t](const std::vector<Set>& sets) { return make_cudnn_conv(ConvPass::Data, s, t, sets); };
#endif
        cases.push_back(std::move(c));
      }
      {
        Case c;
        c.name = "conv2d wgrad " + shape;
        c.dtype = t;
        c.flops = flops;
        c.bytes = y_bytes + x_bytes + w_bytes;
        // gy scaled so that the weight gradient, a sum over N·OH·OW positions, is of order 1.
        const double gscale = 1.0 / std::sqrt(double(s.N * s.OH * s.OW));
        c.make = [=](Device d) { return Set{input(ys, t, d, 23, gscale), input(xs, t, d, 21), output(ws, t, d)}; };
        c.run = [p](Set& set) { backend_of(set).conv2d_backward_weight(set[0], set[1], p, set[2]); };
        c.outputs = {2};
#if defined(VB_HAVE_CUDA) && defined(VB_BENCH_CUDNN)
        c.baseline = [s, t](const std::vector<Set>& sets) { return make_cudnn_conv(ConvPass::Filter, s, t, sets); };
#endif
        cases.push_back(std::move(c));
      }
    }
  }
}

// ---- attention ----

void add_attention_cases(std::vector<Case>& cases, bool smoke) {
  struct Shape4 {
    int64_t b, h, t, d;
  };
  const std::vector<Shape4> shapes = smoke
                                         ? std::vector<Shape4>{{2, 2, 37, 64}}
                                         : std::vector<Shape4>{{32, 12, 128, 64}, {32, 12, 512, 64}, {8, 12, 512, 64}};
  for (DType t : {DType::Float32, DType::BFloat16}) {
    for (const Shape4& a : shapes) {
      const std::string shape = fmt::format("B{} H{} T{} D{} {}", a.b, a.h, a.t, a.d, short_name(t));
      const Shape qs = {a.b, a.h, a.t, a.d}, ls = {a.b, a.h, a.t};
      const double scale = 1.0 / std::sqrt(double(a.d));
      const double qkvo = elem(t) * double(a.b * a.h * a.t * a.d), lse = 4.0 * double(a.b * a.h * a.t);
      const double fwd_flops = 4.0 * double(a.b * a.h) * double(a.t * a.t) * double(a.d);
      // q, k, v, and the forward's out and lse (computed by the set's own device).
      auto forward_set = [=](Device d) {
        Set s{input(qs, t, d, 31), input(qs, t, d, 32), input(qs, t, d, 33), output(qs, t, d),
              output(ls, DType::Float32, d)};
        backend(d).attention(s[0], s[1], s[2], Tensor(), scale, 0.0, 0, 0, s[3], s[4]);
        return s;
      };
      {
        Case c;
        c.name = "attention fwd " + shape;
        c.dtype = t;
        c.flops = fwd_flops;
        c.bytes = 4 * qkvo + lse;
        c.make = [=](Device d) {
          return Set{input(qs, t, d, 31), input(qs, t, d, 32), input(qs, t, d, 33), output(qs, t, d),
                     output(ls, DType::Float32, d)};
        };
        c.run = [scale](Set& s) { backend_of(s).attention(s[0], s[1], s[2], Tensor(), scale, 0.0, 0, 0, s[3], s[4]); };
        c.outputs = {3, 4};
        cases.push_back(std::move(c));
      }
      {
        Case c;
        c.name = "attention bwd " + shape;
        c.dtype = t;
        c.flops = 2.5 * fwd_flops;
        c.bytes = 8 * qkvo + lse;
        c.make = [=](Device d) {
          Set s = forward_set(d);
          s.push_back(input(qs, t, d, 34));  // dout
          for (int i = 0; i < 3; ++i) s.push_back(output(qs, t, d));
          return s;
        };
        c.run = [scale](Set& s) {
          backend_of(s).attention_backward(s[0], s[1], s[2], Tensor(), s[3], s[5], s[4], scale, 0.0, 0, 0, s[6], s[7],
                                           s[8]);
        };
        c.outputs = {6, 7, 8};
        cases.push_back(std::move(c));
      }
    }
  }
}

// ---- layer_norm, softmax, cross_entropy ----

void add_row_cases(std::vector<Case>& cases, bool smoke) {
  for (DType t : {DType::Float32, DType::BFloat16}) {
    const double s = elem(t);
    {
      const int64_t n = smoke ? 7 : 8192, c = 768;
      const std::string shape = fmt::format("{}x{} {}", n, c, short_name(t));
      const double eps = 1e-12;  // BERT's
      auto forward_set = [=](Device d) {
        Set set{input({n, c}, t, d, 41), input({c}, t, d, 42),           input({c}, t, d, 43),
                output({n, c}, t, d),    output({n}, DType::Float32, d), output({n}, DType::Float32, d)};
        return set;
      };
      Case f;
      f.name = "layer_norm fwd " + shape;
      f.dtype = t;
      f.compute_bound = false;
      f.flops = 8.0 * double(n * c);
      f.bytes = 2.0 * double(n * c) * s + 2.0 * double(c) * s + 8.0 * double(n);
      f.make = forward_set;
      f.run = [eps](Set& x) { backend_of(x).layer_norm(x[0], x[1], x[2], eps, x[3], x[4], x[5]); };
      f.outputs = {3, 4, 5};
      cases.push_back(std::move(f));
      Case b;
      b.name = "layer_norm bwd " + shape;
      b.dtype = t;
      b.compute_bound = false;
      b.flops = 14.0 * double(n * c);
      b.bytes = 3.0 * double(n * c) * s + 8.0 * double(n) + 3.0 * double(c) * s;
      b.make = [=](Device d) {
        Set x = forward_set(d);
        backend(d).layer_norm(x[0], x[1], x[2], eps, x[3], x[4], x[5]);
        x.push_back(input({n, c}, t, d, 44));  // gy
        x.push_back(output({n, c}, t, d));     // gx
        x.push_back(output({c}, t, d));        // gw
        x.push_back(output({c}, t, d));        // gb
        return x;
      };
      b.run = [](Set& x) { backend_of(x).layer_norm_backward(x[6], x[0], x[1], x[4], x[5], x[7], x[8], x[9]); };
      b.outputs = {7, 8, 9};
      cases.push_back(std::move(b));
    }
    {
      const int64_t n = smoke ? 9 : 16384, c = 1024;
      const std::string shape = fmt::format("{}x{} {}", n, c, short_name(t));
      Case f;
      f.name = "softmax fwd " + shape;
      f.dtype = t;
      f.compute_bound = false;
      f.flops = 5.0 * double(n * c);
      f.bytes = 2.0 * double(n * c) * s;
      f.make = [=](Device d) { return Set{input({n, c}, t, d, 51, 3.0), output({n, c}, t, d)}; };
      f.run = [](Set& x) { backend_of(x).softmax(x[0], x[1], false); };
      f.outputs = {1};
      cases.push_back(std::move(f));
      Case b;
      b.name = "softmax bwd " + shape;
      b.dtype = t;
      b.compute_bound = false;
      b.flops = 4.0 * double(n * c);
      b.bytes = 3.0 * double(n * c) * s;
      b.make = [=](Device d) {
        Set x{output({n, c}, t, d), input({n, c}, t, d, 52), output({n, c}, t, d)};  // y, gy, gx
        backend(d).softmax(input({n, c}, t, d, 51, 3.0), x[0], false);
        return x;
      };
      b.run = [](Set& x) { backend_of(x).softmax_backward(x[0], x[1], x[2], false); };
      b.outputs = {2};
      cases.push_back(std::move(b));
    }
    {
      const int64_t n = smoke ? 3 : 4096, c = 30522;
      const std::string shape = fmt::format("{}x{} {}", n, c, short_name(t));
      auto forward_set = [=](Device d) {
        Generator g{62, 0};
        return Set{input({n, c}, t, d, 61, 2.0), randint(0, c, {n}, &g, DType::Int64, d), output({n}, t, d),
                   output({n}, DType::Float32, d)};
      };
      Case f;
      f.name = "cross_entropy fwd " + shape;
      f.dtype = t;
      f.compute_bound = false;
      f.flops = 5.0 * double(n * c);
      f.bytes = double(n * c) * s + 8.0 * double(n) + double(n) * s + 4.0 * double(n);
      f.make = forward_set;
      f.run = [](Set& x) { backend_of(x).cross_entropy(x[0], x[1], -100, 0.0, x[2], x[3]); };
      f.outputs = {2, 3};
      cases.push_back(std::move(f));
      Case b;
      b.name = "cross_entropy bwd " + shape;
      b.dtype = t;
      b.compute_bound = false;
      b.flops = 5.0 * double(n * c);
      b.bytes = 2.0 * double(n * c) * s + 8.0 * double(n) + 4.0 * double(n) + double(n) * s;
      b.make = [=](Device d) {
        Set x = forward_set(d);
        backend(d).cross_entropy(x[0], x[1], -100, 0.0, x[2], x[3]);
        x.push_back(input({n}, t, d, 63));  // gloss
        x.push_back(output({n, c}, t, d));  // glogits
        return x;
      };
      b.run = [](Set& x) { backend_of(x).cross_entropy_backward(x[0], x[1], x[3], x[4], -100, 0.0, x[5]); };
      b.outputs = {5};
      cases.push_back(std::move(b));
    }
  }
}

// ---- nearest_centroid ----

void add_nearest_centroid_cases(std::vector<Case>& cases, bool smoke) {
  struct Size {
    int64_t n, k, d;
  };
  // Smoke: N, K, D odd against the kernel's 128-row blocks, 16-centroid chunks and 32-dim slices.
  const std::vector<Size> sizes = smoke ? std::vector<Size>{{131, 12, 37}, {70, 33, 64}}
                                        : std::vector<Size>{{int64_t(1) << 20, 12, 512}, {65536, 1024, 512}};
  for (const Size& z : sizes) {
    for (DType t : {DType::Float32, DType::BFloat16}) {
      Case c;
      c.name = fmt::format("nearest_centroid {}x{} k{} {}", z.n, z.d, z.k, short_name(t));
      c.dtype = t;
      c.compute_bound = z.k > 16;
      c.flops = 3.0 * double(z.n) * double(z.k) * double(z.d);
      c.bytes = double(z.n * z.d + z.k * z.d) * elem(t) + 12.0 * double(z.n);
      c.make = [z, t](Device d) {
        return Set{input({z.n, z.d}, t, d, 81), input({z.k, z.d}, t, d, 82), output({z.n}, DType::Int64, d),
                   output({z.n}, DType::Float32, d)};
      };
      c.run = [](Set& x) { backend_of(x).nearest_centroid(x[0], x[1], x[2], x[3]); };
      c.outputs = {2, 3};
      cases.push_back(std::move(c));
    }
  }
}

// ---- the GEMM ladder ----

// Rung `rung` of kernels/cuda/gemm_ladder.cu on the set's device (train/kernel_lab.h); on the CPU, the CPU
// backend's float32 GEMM (of the bf16 inputs, exactly, for the bf16 rungs): the smoke test's reference.
void gemm_ladder_run(int rung, Set& s) {
  if (!s[0].device().is_cpu()) return train::run_gemm_rung(rung, s[0], s[1], s[2]);
  Tensor out = unsqueeze(s[2], 0);  // the backend takes (Bt, M, K) · (Bt, K, N)
  backend_of(s).matmul(unsqueeze(to(s[0], DType::Float32), 0), unsqueeze(to(s[1], DType::Float32), 0), out);
}

void add_gemm_ladder_cases(std::vector<Case>& cases, bool smoke) {
  // Smoke: odd against the tiles (16; 64×64×8; 64×64×32), N and K multiples of 8 (rungs 4 to 6).
  const int64_t m = smoke ? 67 : 2048, n = smoke ? 72 : 2048, k = smoke ? 40 : 2048;
  for (int rung = 1; rung <= ladder::kGemmRungs; ++rung) {
    const bool bf16 = std::string(ladder::kGemmRungTable[rung - 1].dtype) == "bf16";
    const DType t = bf16 ? DType::BFloat16 : DType::Float32;
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
    if (!bf16)  // cuBLASLt's bf16 GEMM writes bf16: compare the bf16 rung with the "gemm … bf16" rows instead
      c.baseline = [m, n, k](const std::vector<Set>& sets) {
        return make_lt_gemm(GemmShape{m, k, n, false}, DType::Float32, sets);  // it reads the data pointers only
      };
#endif
    cases.push_back(std::move(c));
  }
}

// Rung `rung` of kernels/cuda/layer_norm_ladder.cu (train/kernel_lab.h); on the CPU, the CPU backend's layer_norm.
void layer_norm_ladder_run(int rung, Set& s) {
  if (s[0].device().is_cpu()) return backend_of(s).layer_norm(s[0], s[1], s[2], 1e-12, s[3], s[4], s[5]);
  train::run_layer_norm_rung(rung, s[0], s[1], s[2], 1e-12, s[3], s[4], s[5]);
}

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

// Rung `rung` of kernels/cuda/attention_ladder.cu (train/kernel_lab.h) on (B·H, T, D); on the CPU, the CPU
// backend's attention (as (1, B·H, T, D)).
void attention_ladder_run(int rung, double scale, Set& s) {
  if (!s[0].device().is_cpu()) return train::run_attention_rung(rung, s[0], s[1], s[2], scale, s[3], s[4]);
  Tensor out = unsqueeze(s[3], 0), lse = unsqueeze(s[4], 0);
  backend_of(s).attention(unsqueeze(s[0], 0), unsqueeze(s[1], 0), unsqueeze(s[2], 0), Tensor(), scale, 0.0, 0, 0, out,
                          lse);
}

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
      return Set{input({bh, t, d}, ty, dev, 61), input({bh, t, d}, ty, dev, 62), input({bh, t, d}, ty, dev, 63),
                 output({bh, t, d}, ty, dev),    output({bh, t}, DType::Float32, dev)};
    };
    c.run = [rung, scale](Set& s) { attention_ladder_run(rung, scale, s); };
    c.outputs = {3, 4};
    cases.push_back(std::move(c));
  }
}

// Rung `rung` of kernels/cuda/conv_ladder.cu (train/kernel_lab.h); on the CPU, the CPU backend's conv2d.
void conv_ladder_run(int rung, const Conv2dParams& p, Set& s) {
  if (s[0].device().is_cpu()) return backend_of(s).conv2d(s[0], s[1], Tensor(), p, s[2]);
  train::run_conv_rung(rung, s[0], s[1], p, s[2]);
}

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

// ---- AdamW ----

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

std::vector<Case> all_cases(bool smoke) {
  std::vector<Case> cases;
  add_gemm_cases(cases, smoke);
  add_conv_cases(cases, smoke);
  add_attention_cases(cases, smoke);
  add_row_cases(cases, smoke);
  add_nearest_centroid_cases(cases, smoke);
  add_gemm_ladder_cases(cases, smoke);
  add_layer_norm_ladder_cases(cases, smoke);
  add_attention_ladder_cases(cases, smoke);
  add_conv_ladder_cases(cases, smoke);
  add_adamw_cases(cases, smoke);
  return cases;
}

// ---- comparison ----

struct Tolerance {
  double atol, rtol;  // elementwise, against the CPU (smoke)
  double normwise;    // max|a − b| ≤ normwise · max|b|, against a baseline
};

Tolerance tolerance(DType t) {
  switch (t) {
    case DType::Float32: return {1e-4, 1e-4, 1e-4};
    case DType::Float16: return {1e-2, 1.6e-2, 2e-3};
    default: return {1e-2, 1.6e-2, 1e-2};
  }
}

// The worst elementwise excess over atol + rtol·|expected| (≤ 0 when every element passes; NaN counts as
// failing unless both are NaN), with a description of the worst element.
struct Mismatch {
  int64_t bad = 0;
  std::string worst;
};

Mismatch compare_elementwise(const Tensor& actual, const Tensor& expected, double atol, double rtol) {
  const std::vector<double> a = actual.to_vector(), e = expected.to_vector();
  Mismatch m;
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) && std::isnan(e[i])) continue;
    const double excess = std::abs(a[i] - e[i]) - (atol + rtol * std::abs(e[i]));
    if (!(excess <= 0)) {
      ++m.bad;
      if (!(excess <= worst)) {
        worst = std::isnan(excess) ? INFINITY : excess;
        m.worst = fmt::format("element {}: {} vs {}", i, a[i], e[i]);
      }
    }
  }
  return m;
}

// ---- the smoke test: every case once on the device and once on the CPU ----

[[maybe_unused]] int run_smoke(const std::vector<Case>& cases, Device device) {
#if defined(VB_HAVE_EMU)
  set_poison_allocations(true);  // an output element a kernel leaves unwritten reads as NaN
#endif
  std::printf("## Kernel benchmark smoke test on %s (tiny shapes, checked against the CPU backend; no timing)\n\n",
              device.str().c_str());
  std::printf("| case | outputs | result |\n|---|---:|---|\n");
  int failures = 0;
  for (const Case& c : cases) {
    std::string result = "ok";
    try {
      Set ours = c.make(device), ref = c.make(Device());
      c.run(ours);
      c.run(ref);
      const Tolerance tol = tolerance(c.dtype);
      for (size_t i : c.outputs) {
        const Mismatch m = compare_elementwise(ours[i], ref[i], tol.atol, tol.rtol);
        if (m.bad > 0) {
          result = fmt::format("MISMATCH in output {} {}: {} elements outside atol {} rtol {}; worst {}", i,
                               shape_str(ours[i].shape()), m.bad, tol.atol, tol.rtol, m.worst);
          break;
        }
      }
    } catch (const std::exception& e) {
      result = std::string("ERROR: ") + e.what();
    }
    if (result != "ok") ++failures;
    std::printf("| %s | %zu | %s |\n", c.name.c_str(), c.outputs.size(), result.c_str());
    std::fflush(stdout);
  }
  std::printf("\n%zu cases, %d failed\n", cases.size(), failures);
  return failures == 0 ? 0 : 1;
}

#if defined(VB_HAVE_CUDA)
// ---- vendor libraries, loaded at run time: the benchmark links only libvideobert, and cuDNN may be
//      missing from a machine (or live in PyTorch's wheel: point $VB_CUDNN_LIB at it) ----

namespace rtc = vb::rt::cuda;

void* open_library(const std::vector<std::string>& names, std::string& tried) {
  for (const std::string& n : names) {
    if (n.empty()) continue;
    if (void* h = dlopen(n.c_str(), RTLD_NOW | RTLD_GLOBAL)) return h;
    tried += (tried.empty() ? "" : "; ") + n + ": " + dlerror();
  }
  return nullptr;
}

template <class F>
F symbol(void* library, const char* library_name, const char* name) {
  void* p = dlsym(library, name);
  VB_CHECK(p != nullptr, "{} has no symbol {}", library_name, name);
  return reinterpret_cast<F>(p);
}

// A member holding the entry point `fn`, typed from the library's header, and its loading.
#define VB_BENCH_SYMBOL(fn) decltype(&::fn) fn = nullptr
#define VB_BENCH_LOAD(fn) fn = symbol<decltype(&::fn)>(library, library_name, #fn)

struct CublasLt {
  VB_BENCH_SYMBOL(cublasLtCreate);
  VB_BENCH_SYMBOL(cublasLtGetStatusString);
  VB_BENCH_SYMBOL(cublasLtMatmulDescCreate);
  VB_BENCH_SYMBOL(cublasLtMatmulDescDestroy);
  VB_BENCH_SYMBOL(cublasLtMatmulDescSetAttribute);
  VB_BENCH_SYMBOL(cublasLtMatrixLayoutCreate);
  VB_BENCH_SYMBOL(cublasLtMatrixLayoutDestroy);
  VB_BENCH_SYMBOL(cublasLtMatmulPreferenceCreate);
  VB_BENCH_SYMBOL(cublasLtMatmulPreferenceDestroy);
  VB_BENCH_SYMBOL(cublasLtMatmulPreferenceSetAttribute);
  VB_BENCH_SYMBOL(cublasLtMatmulAlgoGetHeuristic);
  VB_BENCH_SYMBOL(cublasLtMatmul);
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = size_t(32) << 20;  // what our matmul gives cuBLASLt (kernels/cuda/backend_cuda.cpp)

  explicit CublasLt(void* library) {
    const char* library_name = "libcublasLt";
    VB_BENCH_LOAD(cublasLtCreate);
    VB_BENCH_LOAD(cublasLtGetStatusString);
    VB_BENCH_LOAD(cublasLtMatmulDescCreate);
    VB_BENCH_LOAD(cublasLtMatmulDescDestroy);
    VB_BENCH_LOAD(cublasLtMatmulDescSetAttribute);
    VB_BENCH_LOAD(cublasLtMatrixLayoutCreate);
    VB_BENCH_LOAD(cublasLtMatrixLayoutDestroy);
    VB_BENCH_LOAD(cublasLtMatmulPreferenceCreate);
    VB_BENCH_LOAD(cublasLtMatmulPreferenceDestroy);
    VB_BENCH_LOAD(cublasLtMatmulPreferenceSetAttribute);
    VB_BENCH_LOAD(cublasLtMatmulAlgoGetHeuristic);
    VB_BENCH_LOAD(cublasLtMatmul);
    check(cublasLtCreate(&handle), "cublasLtCreate");
    workspace = rtc::malloc(workspace_bytes);
  }
  void check(cublasStatus_t status, const char* what) const {
    VB_CHECK(status == CUBLAS_STATUS_SUCCESS, "cuBLASLt baseline: {} failed: {}", what,
             cublasLtGetStatusString(status));
  }
};

// Why a library could not be loaded (printed under the table).
std::vector<std::string> library_notes;

// The process's cuBLASLt (never destroyed: the driver may be gone at exit), or null.
CublasLt* cublas_lt() {
  static CublasLt* lt = []() -> CublasLt* {
    std::string tried;
    void* library = open_library({"libcublasLt.so." + std::to_string(CUBLAS_VER_MAJOR), "libcublasLt.so"}, tried);
    if (library == nullptr) {
      library_notes.push_back("cuBLASLt could not be loaded (" + tried + "): no GEMM baseline");
      return nullptr;
    }
    return new CublasLt(library);
  }();
  return lt;
}

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::Float32: return CUDA_R_32F;
    case DType::BFloat16: return CUDA_R_16BF;
    case DType::Float16: return CUDA_R_16F;
    default: fail("cuBLASLt baseline: dtype {}", t);
  }
}

// cuBLASLt on a GEMM set [a, b, out]. Row-major out (M, N) = a (M, K)·b (K, N) is column-major
// outᵀ (N, M) = bᵀ·aᵀ: cuBLASLt's A is b and its B is a, as in our matmul (kernels/cuda/backend_cuda.cpp).
// Float32 accumulation (CUBLAS_COMPUTE_32F, no TF32). Of cuBLASLt's top 8 heuristic algorithms the
// fastest on these sets is kept.
class LtGemm final : public Baseline {
 public:
  LtGemm(CublasLt& lt, const GemmShape& g, DType t, const std::vector<Set>& sets) : lt_(lt) {
    const cudaDataType_t type = cuda_type(t);
    lt.check(lt.cublasLtMatmulDescCreate(&desc_, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
    // b (K, N) row-major is column-major (N, K), op N; the linear weight (N, K) row-major is column-major
    // (K, N), read with op T.
    const cublasOperation_t op_a = g.linear ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = CUBLAS_OP_N;
    lt.check(lt.cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)), "transa");
    lt.check(lt.cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)), "transb");
    layout(&a_, type, g.linear ? g.k : g.n, g.linear ? g.n : g.k, g.linear ? g.k : g.n);
    layout(&b_, type, g.k, g.m, g.k);
    layout(&d_, type, g.n, g.m, g.n);
    cublasLtMatmulPreference_t preference = nullptr;
    lt.check(lt.cublasLtMatmulPreferenceCreate(&preference), "cublasLtMatmulPreferenceCreate");
    lt.check(lt.cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                     &lt.workspace_bytes, sizeof(lt.workspace_bytes)),
             "workspace preference");
    // The reduction schemes our matmul allows (float32 partial sums only), so that both compute alike.
    const uint32_t reductions = CUBLASLT_REDUCTION_SCHEME_NONE | CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
    lt.check(lt.cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                                                     &reductions, sizeof(reductions)),
             "reduction scheme preference");
    cublasLtMatmulHeuristicResult_t results[8] = {};
    int found = 0;
    const cublasStatus_t status =
        lt.cublasLtMatmulAlgoGetHeuristic(lt.handle, desc_, a_, b_, d_, d_, preference, 8, results, &found);
    lt.cublasLtMatmulPreferenceDestroy(preference);
    lt.check(status, "cublasLtMatmulAlgoGetHeuristic");
    VB_CHECK(found > 0, "cuBLASLt baseline: no algorithm for {} {}x{}x{}", t, g.m, g.k, g.n);
    const bench::TimingOptions quick{1, 5, 1.0, 50};
    double best = INFINITY;
    std::string failed;
    for (int i = 0; i < found; ++i) {
      if (results[i].state != CUBLAS_STATUS_SUCCESS) continue;
      algo_ = &results[i].algo;
      try {
        const double s = bench::median_seconds([&](int k) { run(sets[size_t(k)]); }, int(sets.size()), quick);
        if (s < best) {
          best = s;
          chosen_ = results[i].algo;
        }
      } catch (const std::exception& e) {  // an algorithm the heuristic offered but cannot run: skip it
        failed = e.what();
      }
    }
    VB_CHECK(best < INFINITY, "cuBLASLt baseline: none of {} algorithms ran for {} {}x{}x{} ({})", found, t, g.m, g.k,
             g.n, failed);
    algo_ = &chosen_;
  }
  ~LtGemm() override {
    lt_.cublasLtMatrixLayoutDestroy(d_);
    lt_.cublasLtMatrixLayoutDestroy(b_);
    lt_.cublasLtMatrixLayoutDestroy(a_);
    lt_.cublasLtMatmulDescDestroy(desc_);
  }
  std::string name() const override { return "cuBLASLt"; }
  void run(const Set& s) override {
    const float alpha = 1.0f, beta = 0.0f;
    lt_.check(
        lt_.cublasLtMatmul(lt_.handle, desc_, &alpha, s[1].data_ptr(), a_, s[0].data_ptr(), b_, &beta, s[2].data_ptr(),
                           d_, s[2].data_ptr(), d_, algo_, lt_.workspace, lt_.workspace_bytes, nullptr),
        "cublasLtMatmul");
  }

 private:
  void layout(cublasLtMatrixLayout_t* l, cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld) {
    lt_.check(lt_.cublasLtMatrixLayoutCreate(l, type, uint64_t(rows), uint64_t(cols), ld),
              "cublasLtMatrixLayoutCreate");
  }

  CublasLt& lt_;
  cublasLtMatmulDesc_t desc_ = nullptr;
  cublasLtMatrixLayout_t a_ = nullptr, b_ = nullptr, d_ = nullptr;
  const cublasLtMatmulAlgo_t* algo_ = nullptr;
  cublasLtMatmulAlgo_t chosen_{};
};

std::unique_ptr<Baseline> make_lt_gemm(const GemmShape& g, DType t, const std::vector<Set>& sets) {
  CublasLt* lt = cublas_lt();
  if (lt == nullptr) return nullptr;
  return std::make_unique<LtGemm>(*lt, g, t, sets);
}

#if defined(VB_BENCH_CUDNN)
// cuDNN 9 marks its convolution API deprecated in favour of the graph API; it is still supported, and
// it is the direct equivalent of our three kernels.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

struct Cudnn {
  VB_BENCH_SYMBOL(cudnnGetVersion);
  VB_BENCH_SYMBOL(cudnnGetErrorString);
  VB_BENCH_SYMBOL(cudnnCreate);
  VB_BENCH_SYMBOL(cudnnCreateTensorDescriptor);
  VB_BENCH_SYMBOL(cudnnSetTensor4dDescriptor);
  VB_BENCH_SYMBOL(cudnnDestroyTensorDescriptor);
  VB_BENCH_SYMBOL(cudnnCreateFilterDescriptor);
  VB_BENCH_SYMBOL(cudnnSetFilter4dDescriptor);
  VB_BENCH_SYMBOL(cudnnDestroyFilterDescriptor);
  VB_BENCH_SYMBOL(cudnnCreateConvolutionDescriptor);
  VB_BENCH_SYMBOL(cudnnSetConvolution2dDescriptor);
  VB_BENCH_SYMBOL(cudnnSetConvolutionMathType);
  VB_BENCH_SYMBOL(cudnnDestroyConvolutionDescriptor);
  VB_BENCH_SYMBOL(cudnnFindConvolutionForwardAlgorithm);
  VB_BENCH_SYMBOL(cudnnFindConvolutionBackwardDataAlgorithm);
  VB_BENCH_SYMBOL(cudnnFindConvolutionBackwardFilterAlgorithm);
  VB_BENCH_SYMBOL(cudnnConvolutionForward);
  VB_BENCH_SYMBOL(cudnnConvolutionBackwardData);
  VB_BENCH_SYMBOL(cudnnConvolutionBackwardFilter);
  cudnnHandle_t handle = nullptr;
  size_t version = 0;

  explicit Cudnn(void* library) {
    const char* library_name = "libcudnn";
    VB_BENCH_LOAD(cudnnGetVersion);
    VB_BENCH_LOAD(cudnnGetErrorString);
    VB_BENCH_LOAD(cudnnCreate);
    VB_BENCH_LOAD(cudnnCreateTensorDescriptor);
    VB_BENCH_LOAD(cudnnSetTensor4dDescriptor);
    VB_BENCH_LOAD(cudnnDestroyTensorDescriptor);
    VB_BENCH_LOAD(cudnnCreateFilterDescriptor);
    VB_BENCH_LOAD(cudnnSetFilter4dDescriptor);
    VB_BENCH_LOAD(cudnnDestroyFilterDescriptor);
    VB_BENCH_LOAD(cudnnCreateConvolutionDescriptor);
    VB_BENCH_LOAD(cudnnSetConvolution2dDescriptor);
    VB_BENCH_LOAD(cudnnSetConvolutionMathType);
    VB_BENCH_LOAD(cudnnDestroyConvolutionDescriptor);
    VB_BENCH_LOAD(cudnnFindConvolutionForwardAlgorithm);
    VB_BENCH_LOAD(cudnnFindConvolutionBackwardDataAlgorithm);
    VB_BENCH_LOAD(cudnnFindConvolutionBackwardFilterAlgorithm);
    VB_BENCH_LOAD(cudnnConvolutionForward);
    VB_BENCH_LOAD(cudnnConvolutionBackwardData);
    VB_BENCH_LOAD(cudnnConvolutionBackwardFilter);
    version = cudnnGetVersion();
    VB_CHECK(version / 10000 == CUDNN_MAJOR, "libcudnn is version {}, this program was built against cuDNN {}", version,
             int(CUDNN_MAJOR));
    check(cudnnCreate(&handle), "cudnnCreate");
  }
  void check(cudnnStatus_t status, const char* what) const {
    VB_CHECK(status == CUDNN_STATUS_SUCCESS, "cuDNN baseline: {} failed: {}", what, cudnnGetErrorString(status));
  }
};

// The process's cuDNN ($VB_CUDNN_LIB, else libcudnn.so.<major> on the loader's path), or null.
Cudnn* cudnn() {
  static Cudnn* dnn = []() -> Cudnn* {
    const char* env = std::getenv("VB_CUDNN_LIB");
    std::string tried;
    void* library = open_library(
        {env ? std::string(env) : std::string(), "libcudnn.so." + std::to_string(CUDNN_MAJOR), "libcudnn.so"}, tried);
    if (library == nullptr) {
      library_notes.push_back("cuDNN could not be loaded (" + tried +
                              "): no conv baseline in this table; set VB_CUDNN_LIB to a libcudnn.so." +
                              std::to_string(CUDNN_MAJOR) + ", or use PyTorch's conv rows (torch_kernels_gpu.py)");
      return nullptr;
    }
    try {
      return new Cudnn(library);
    } catch (const std::exception& e) {
      library_notes.push_back(std::string("cuDNN unusable: ") + e.what());
      return nullptr;
    }
  }();
  return dnn;
}

cudnnDataType_t cudnn_type(DType t) {
  switch (t) {
    case DType::Float32: return CUDNN_DATA_FLOAT;
    case DType::BFloat16: return CUDNN_DATA_BFLOAT16;
    case DType::Float16: return CUDNN_DATA_HALF;
    default: fail("cuDNN baseline: dtype {}", t);
  }
}

// One convolution pass with NHWC descriptors, float32 compute, and the fastest algorithm cudnnFind*
// measures (any workspace it asks for).
class CudnnConv final : public Baseline {
 public:
  CudnnConv(Cudnn& dnn, ConvPass pass, const ConvShape& s, DType t) : dnn_(dnn), pass_(pass) {
    const cudnnDataType_t type = cudnn_type(t);
    dnn.check(dnn.cudnnCreateTensorDescriptor(&x_), "cudnnCreateTensorDescriptor");
    dnn.check(dnn.cudnnCreateTensorDescriptor(&y_), "cudnnCreateTensorDescriptor");
    dnn.check(dnn.cudnnCreateFilterDescriptor(&w_), "cudnnCreateFilterDescriptor");
    dnn.check(dnn.cudnnCreateConvolutionDescriptor(&conv_), "cudnnCreateConvolutionDescriptor");
    dnn.check(dnn.cudnnSetTensor4dDescriptor(x_, CUDNN_TENSOR_NHWC, type, int(s.N), int(s.C), int(s.H), int(s.W)), "x");
    dnn.check(dnn.cudnnSetTensor4dDescriptor(y_, CUDNN_TENSOR_NHWC, type, int(s.N), int(s.O), int(s.OH), int(s.OW)),
              "y");
    dnn.check(dnn.cudnnSetFilter4dDescriptor(w_, type, CUDNN_TENSOR_NHWC, int(s.O), int(s.C), int(s.KH), int(s.KW)),
              "w");
    dnn.check(dnn.cudnnSetConvolution2dDescriptor(conv_, s.pad, s.pad, s.stride, s.stride, 1, 1,
                                                  CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
              "cudnnSetConvolution2dDescriptor");
    dnn.check(dnn.cudnnSetConvolutionMathType(conv_, t == DType::Float32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH),
              "cudnnSetConvolutionMathType");
    size_t workspace = 0;
    int found = 0;
    bool chosen = false;
    switch (pass) {
      case ConvPass::Forward: {
        cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        dnn.check(dnn.cudnnFindConvolutionForwardAlgorithm(dnn.handle, x_, w_, conv_, y_,
                                                           CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &found, perf),
                  "cudnnFindConvolutionForwardAlgorithm");
        for (int i = 0; i < found && !chosen; ++i)
          if (perf[i].status == CUDNN_STATUS_SUCCESS) fwd_ = perf[i].algo, workspace = perf[i].memory, chosen = true;
        break;
      }
      case ConvPass::Data: {
        cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        dnn.check(dnn.cudnnFindConvolutionBackwardDataAlgorithm(dnn.handle, w_, y_, conv_, x_,
                                                                CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &found, perf),
                  "cudnnFindConvolutionBackwardDataAlgorithm");
        for (int i = 0; i < found && !chosen; ++i)
          if (perf[i].status == CUDNN_STATUS_SUCCESS) data_ = perf[i].algo, workspace = perf[i].memory, chosen = true;
        break;
      }
      case ConvPass::Filter: {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
        dnn.check(dnn.cudnnFindConvolutionBackwardFilterAlgorithm(
                      dnn.handle, x_, y_, conv_, w_, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &found, perf),
                  "cudnnFindConvolutionBackwardFilterAlgorithm");
        for (int i = 0; i < found && !chosen; ++i)
          if (perf[i].status == CUDNN_STATUS_SUCCESS) filter_ = perf[i].algo, workspace = perf[i].memory, chosen = true;
        break;
      }
    }
    VB_CHECK(chosen, "cuDNN baseline: no algorithm succeeded for this convolution ({} tried)", found);
    workspace_bytes_ = workspace;
    if (workspace > 0)
      workspace_ = Tensor::empty({int64_t((workspace + 3) / 4)}, DType::Float32, Device(DeviceType::CUDA));
  }
  ~CudnnConv() override {
    dnn_.cudnnDestroyConvolutionDescriptor(conv_);
    dnn_.cudnnDestroyFilterDescriptor(w_);
    dnn_.cudnnDestroyTensorDescriptor(y_);
    dnn_.cudnnDestroyTensorDescriptor(x_);
  }
  std::string name() const override { return "cuDNN"; }
  // The sets are conv2d's: fwd [x, w, y], dgrad [gy, w, gx], wgrad [gy, x, gw].
  void run(const Set& s) override {
    const float alpha = 1.0f, beta = 0.0f;
    void* ws = workspace_.defined() ? workspace_.data_ptr() : nullptr;
    switch (pass_) {
      case ConvPass::Forward:
        dnn_.check(dnn_.cudnnConvolutionForward(dnn_.handle, &alpha, x_, s[0].data_ptr(), w_, s[1].data_ptr(), conv_,
                                                fwd_, ws, workspace_bytes_, &beta, y_, s[2].data_ptr()),
                   "cudnnConvolutionForward");
        break;
      case ConvPass::Data:
        dnn_.check(dnn_.cudnnConvolutionBackwardData(dnn_.handle, &alpha, w_, s[1].data_ptr(), y_, s[0].data_ptr(),
                                                     conv_, data_, ws, workspace_bytes_, &beta, x_, s[2].data_ptr()),
                   "cudnnConvolutionBackwardData");
        break;
      case ConvPass::Filter:
        dnn_.check(
            dnn_.cudnnConvolutionBackwardFilter(dnn_.handle, &alpha, x_, s[1].data_ptr(), y_, s[0].data_ptr(), conv_,
                                                filter_, ws, workspace_bytes_, &beta, w_, s[2].data_ptr()),
            "cudnnConvolutionBackwardFilter");
        break;
    }
  }

 private:
  Cudnn& dnn_;
  ConvPass pass_;
  cudnnTensorDescriptor_t x_ = nullptr, y_ = nullptr;
  cudnnFilterDescriptor_t w_ = nullptr;
  cudnnConvolutionDescriptor_t conv_ = nullptr;
  cudnnConvolutionFwdAlgo_t fwd_{};
  cudnnConvolutionBwdDataAlgo_t data_{};
  cudnnConvolutionBwdFilterAlgo_t filter_{};
  Tensor workspace_;
  size_t workspace_bytes_ = 0;
};

#pragma GCC diagnostic pop

std::unique_ptr<Baseline> make_cudnn_conv(ConvPass pass, const ConvShape& s, DType t, const std::vector<Set>&) {
  Cudnn* dnn = cudnn();
  if (dnn == nullptr) return nullptr;
  return std::make_unique<CudnnConv>(*dnn, pass, s, t);
}
#endif  // VB_BENCH_CUDNN

// ---- the GPU run ----

// max|a − b| / max|b| over the tensors.
double normwise_difference(const std::vector<Tensor>& actual, const std::vector<Tensor>& expected) {
  double diff = 0, scale = 0;
  for (size_t k = 0; k < actual.size(); ++k) {
    const std::vector<double> a = actual[k].to_vector(), e = expected[k].to_vector();
    for (size_t i = 0; i < a.size(); ++i) {
      const double d = std::abs(a[i] - e[i]);
      diff = std::isnan(d) ? INFINITY : std::max(diff, d);
      scale = std::max(scale, std::abs(e[i]));
    }
  }
  return scale > 0 ? diff / scale : diff;
}

std::vector<Tensor> outputs_on_cpu(const Case& c, const Set& s) {
  std::vector<Tensor> out;
  for (size_t i : c.outputs) out.push_back(to(s[i], Device()));
  return out;
}

struct Ceilings {
  double copy_bytes_per_s = 0;
  double gemm_bf16_flops = 0, gemm_f32_flops = 0;  // per second
};

int64_t set_bytes(const Set& s) {
  int64_t b = 0;
  for (const Tensor& t : s) b += t.numel() * t.element_size();
  return b;
}

std::string rate(double amount, double seconds, bool flops) {
  char buf[64];
  if (flops)
    std::snprintf(buf, sizeof buf, "%.1f TFLOP/s", amount / seconds / 1e12);
  else
    std::snprintf(buf, sizeof buf, "%.0f GB/s", amount / seconds / 1e9);
  return buf;
}

nlohmann::json json_line(const std::string& name, const std::string& impl, const std::string& device, DType t,
                         bool compute, double seconds, double flops, double bytes) {
  return {{"name", name},
          {"impl", impl},
          {"device", device},
          {"dtype", short_name(t)},
          {"bound", compute ? "compute" : "memory"},
          {"seconds", seconds},
          {"flops", flops},
          {"bytes", bytes}};
}

struct GpuOptions {
  bench::TimingOptions timing;
  std::string json_path;
};

// The copy bandwidth (one 1 GiB device-to-device copy, counting the bytes read and written) and the
// GEMM ceilings (one cuBLASLt 8192³ GEMM in bf16 and in f32).
Ceilings measure_ceilings(const GpuOptions& o, std::vector<nlohmann::json>& lines, const std::string& device_name) {
  const Device cuda(DeviceType::CUDA);
  Ceilings c;
  {
    const int64_t n = int64_t(1) << 28;  // float32 elements: 1 GiB
    Tensor src = zeros({n}, DType::Float32, cuda), dst = Tensor::empty({n}, DType::Float32, cuda);
    const size_t bytes = size_t(n) * 4;
    const double s = bench::median_seconds(
        [&](int) { rtc::copy_async(dst.data_ptr(), src.data_ptr(), bytes, rt::Stream{}); }, 1, o.timing);
    c.copy_bytes_per_s = 2.0 * double(bytes) / s;
    lines.push_back(
        json_line("ceiling copy 1GiB", "cudaMemcpy", device_name, DType::Float32, false, s, 0, 2.0 * double(bytes)));
  }
  empty_cache(DeviceType::CUDA);
  for (DType t : {DType::BFloat16, DType::Float32}) {
    const GemmShape g{8192, 8192, 8192, false};
    std::vector<Set> sets = {gemm_set(g, t, cuda)};
    std::unique_ptr<Baseline> lt;
    try {
      lt = make_lt_gemm(g, t, sets);
    } catch (const std::exception& e) {
      library_notes.push_back(std::string("the GEMM ceiling ran through our matmul: ") + e.what());
    }
    std::string impl = "cuBLASLt";
    std::function<void(int)> run = [&](int) { lt->run(sets[0]); };
    if (!lt) {  // our matmul is cuBLASLt too, with the heuristic's first algorithm
      impl = "videobert matmul (cuBLASLt)";
      run = [&](int) { backend(cuda).matmul(sets[0][0], sets[0][1], sets[0][2]); };
    }
    const double s = bench::median_seconds(run, 1, o.timing), flops = 2.0 * 8192.0 * 8192.0 * 8192.0;
    (t == DType::BFloat16 ? c.gemm_bf16_flops : c.gemm_f32_flops) = flops / s;
    lines.push_back(json_line(gemm_name(g, t).replace(0, 4, "ceiling gemm"), impl, device_name, t, true, s, flops,
                              elem(t) * 3.0 * 8192.0 * 8192.0));
    sets.clear();
    lt.reset();
    empty_cache(DeviceType::CUDA);
  }
  return c;
}

struct Row {
  std::string name;
  double ours_s = NAN, baseline_s = NAN, fraction = NAN;
  std::string ours_rate, baseline, note;
  bool failed = false;
};

std::string ms(double s) {
  if (std::isnan(s)) return "—";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", s * 1e3);
  return buf;
}

void print_row(const Row& r) {
  char fraction[32] = "—", ratio[32] = "—";
  if (!std::isnan(r.fraction)) std::snprintf(fraction, sizeof fraction, "%.0f%%", 100 * r.fraction);
  if (!std::isnan(r.baseline_s) && !std::isnan(r.ours_s))
    std::snprintf(ratio, sizeof ratio, "%.2f", r.baseline_s / r.ours_s);
  std::printf("| %s | %s | %s | %s | %s | %s | %s | %s |\n", r.name.c_str(), ms(r.ours_s).c_str(),
              r.ours_rate.empty() ? "—" : r.ours_rate.c_str(), fraction, r.baseline.empty() ? "—" : r.baseline.c_str(),
              ms(r.baseline_s).c_str(), ratio, r.note.c_str());
  std::fflush(stdout);
}

int run_gpu(const std::vector<Case>& cases, const GpuOptions& o) {
  const Device cuda(DeviceType::CUDA);
  cudaDeviceProp prop{};
  rtc::check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  int runtime_version = 0, driver_version = 0;
  rtc::check(cudaRuntimeGetVersion(&runtime_version), "cudaRuntimeGetVersion");
  rtc::check(cudaDriverGetVersion(&driver_version), "cudaDriverGetVersion");
  const std::string device_name = prop.name;
  const size_t l2 = size_t(prop.l2CacheSize);
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&now));

  std::vector<nlohmann::json> lines;
  std::printf("## Kernel benchmarks: videobert CUDA kernels vs vendor libraries\n\n");
  std::printf("Device: %s, %d SMs, %.0f GiB, L2 %.0f MiB, compute capability %d.%d; CUDA runtime %d, driver %d; %s.\n",
              prop.name, prop.multiProcessorCount, double(prop.totalGlobalMem) / (1 << 30), double(l2) / (1 << 20),
              prop.major, prop.minor, runtime_version, driver_version, date);
  std::printf(
      "Timing: median of %d batches of back-to-back runs (CUDA events), inputs rotated over at least 2x L2.\n\n",
      o.timing.samples);
  // The JSON lines so far, rewritten (atomically) after every case: a run cut short keeps what it measured.
  auto write_json = [&] {
    if (o.json_path.empty()) return;
    std::string text;
    for (const nlohmann::json& l : lines) text += l.dump() + "\n";
    write_text_atomic(o.json_path, text);
  };
  const Ceilings ceil = measure_ceilings(o, lines, device_name);
  write_json();
  std::printf(
      "Ceilings: copy %.0f GB/s (1 GiB device-to-device, read + write); GEMM 8192^3 bf16 %.1f TFLOP/s, "
      "f32 %.1f TFLOP/s (cuBLASLt).\n\n",
      ceil.copy_bytes_per_s / 1e9, ceil.gemm_bf16_flops / 1e12, ceil.gemm_f32_flops / 1e12);
  std::printf("| case | ours ms | ours | %% of ceiling | baseline | baseline ms | ours/baseline | note |\n");
  std::printf("|---|---:|---:|---:|---|---:|---:|---|\n");

  int failures = 0;
  for (const Case& c : cases) {
    Row r;
    r.name = c.name;
    try {
      std::vector<Set> sets;
      sets.push_back(c.make(cuda));
      const int count = bench::rotation_sets(size_t(set_bytes(sets[0])), l2);
      while (int(sets.size()) < count) sets.push_back(c.make(cuda));
      r.ours_s = bench::median_seconds([&](int i) { c.run(sets[size_t(i)]); }, count, o.timing);
      const double amount = c.compute_bound ? c.flops : c.bytes;
      r.ours_rate = rate(amount, r.ours_s, c.compute_bound);
      const double ceiling = c.compute_bound ? (c.dtype == DType::Float32 ? ceil.gemm_f32_flops : ceil.gemm_bf16_flops)
                                             : ceil.copy_bytes_per_s;
      r.fraction = amount / r.ours_s / ceiling;
      lines.push_back(
          json_line(c.name, "videobert", device_name, c.dtype, c.compute_bound, r.ours_s, c.flops, c.bytes));
      if (c.baseline) {
        // A baseline that cannot run leaves its columns empty with a note; it does not fail our case.
        std::unique_ptr<Baseline> b;
        try {
          b = c.baseline(sets);
          if (b) r.baseline_s = bench::median_seconds([&](int i) { b->run(sets[size_t(i)]); }, count, o.timing);
        } catch (const std::exception& e) {
          r.note = std::string("baseline not measured: ") + e.what();
          b.reset();
        }
        if (b) {
          r.baseline = b->name();
          lines.push_back(
              json_line(c.name, b->name(), device_name, c.dtype, c.compute_bound, r.baseline_s, c.flops, c.bytes));
          // Both compute the same thing: ours and the baseline's outputs on the first set agree.
          c.run(sets[0]);
          const std::vector<Tensor> ours = outputs_on_cpu(c, sets[0]);
          b->run(sets[0]);
          const double d = normwise_difference(ours, outputs_on_cpu(c, sets[0]));
          if (!(d <= tolerance(c.dtype).normwise)) {
            r.note = fmt::format("DISAGREES with {0}: max abs(ours − {0}) / max abs({0}) = {1:.2e}", b->name(), d);
            r.failed = true;
          }
        }
      }
    } catch (const std::exception& e) {
      r.note = std::string("ERROR: ") + e.what();
      r.failed = true;
    }
    failures += r.failed;
    std::replace(r.note.begin(), r.note.end(), '\n', ' ');  // one table row
    std::replace(r.note.begin(), r.note.end(), '|', '/');
    print_row(r);
    write_json();
    empty_cache(DeviceType::CUDA);
  }
#if !defined(VB_BENCH_CUDNN)
  library_notes.push_back(
      "this build found no cudnn.h, so it has no cuDNN conv baseline; PyTorch's conv rows "
      "(torch_kernels_gpu.py) are the conv baseline");
#endif
  for (const std::string& note : library_notes) std::printf("\nNote: %s.\n", note.c_str());
  std::printf(
      "\nNot measured: cuDNN's fused attention (it needs the cuDNN frontend's graph API); PyTorch's "
      "scaled_dot_product_attention is the attention baseline (bench/torch_kernels_gpu.py).\n");
  if (!o.json_path.empty())
    std::fprintf(stderr, "bench_kernels_gpu: %zu JSON lines written to %s\n", lines.size(), o.json_path.c_str());
  if (failures > 0) std::printf("\n%d cases failed.\n", failures);
  return failures == 0 ? 0 : 1;
}

#endif  // VB_HAVE_CUDA

}  // namespace

int main(int argc, char** argv) {
  using vb::Device;
  using vb::DeviceType;
  std::string device_arg = "cuda", filter;
  bool smoke = false, list = false;
#if defined(VB_HAVE_CUDA)
  GpuOptions gpu;
#endif
  auto usage = [&](int code) {
    std::fprintf(
        code == 0 ? stdout : stderr,
        "usage: %s [--device cuda|emu] [--smoke] [--json FILE] [--filter TEXT] [--samples N] [--warmup N]\n"
        "          [--batch-ms X] [--max-seconds X] [--list]\n(see the comment at the top of bench/kernels_gpu.cpp)\n",
        argv[0]);
    return code;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_kernels_gpu: %s needs a value\n", a.c_str());
        std::exit(usage(2));
      }
      return argv[++i];
    };
    if (a == "--device")
      device_arg = value();
    else if (a == "--smoke")
      smoke = true;
    else if (a == "--filter")
      filter = value();
    else if (a == "--list")
      list = true;
    else if (a == "--help" || a == "-h")
      return usage(0);
#if defined(VB_HAVE_CUDA)
    else if (a == "--json")
      gpu.json_path = value();
    else if (a == "--samples")
      gpu.timing.samples = std::stoi(value());
    else if (a == "--warmup")
      gpu.timing.warmup = std::stoi(value());
    else if (a == "--batch-ms")
      gpu.timing.batch_ms = std::stod(value());
    else if (a == "--max-seconds")
      gpu.timing.max_seconds = std::stod(value());
#else
    else if (a == "--json" || a == "--samples" || a == "--warmup" || a == "--batch-ms" || a == "--max-seconds")
      value();
#endif
    else {
      std::fprintf(stderr, "bench_kernels_gpu: unknown argument %s\n", a.c_str());
      return usage(2);
    }
  }
  try {
    const Device device = Device::parse(device_arg);
    std::vector<Case> cases = all_cases(smoke);
    if (!filter.empty()) std::erase_if(cases, [&](const Case& c) { return c.name.find(filter) == std::string::npos; });
    if (list) {
      for (const Case& c : cases) std::printf("%s\t%.17g\t%.17g\n", c.name.c_str(), c.flops, c.bytes);
      return 0;
    }
    if (device.type == DeviceType::EMU) {
#if defined(VB_HAVE_EMU)
      if (!smoke) {
        std::fprintf(stderr, "bench_kernels_gpu: the emulator cannot time kernels; run it with --smoke\n");
        return 2;
      }
      return run_smoke(cases, device);
#else
      std::printf(
          "bench_kernels_gpu: this build has no kernel emulator (CUDA's headers were not found); nothing to run\n");
      return 77;
#endif
    }
    if (device.type != DeviceType::CUDA) {
      std::fprintf(stderr, "bench_kernels_gpu: --device %s: expected cuda or emu\n", device_arg.c_str());
      return 2;
    }
#if defined(VB_HAVE_CUDA)
    if (vb::rt::cuda::device_count() == 0) {
      std::printf(
          "bench_kernels_gpu: no GPU on this machine; nothing to time (the emulator smoke test: --device emu "
          "--smoke)\n");
      return 77;
    }
    return smoke ? run_smoke(cases, device) : run_gpu(cases, gpu);
#else
    std::printf(
        "bench_kernels_gpu: this build has no CUDA backend (VIDEOBERT_CUDA=OFF, or nvcc was not found), so "
        "there is no GPU kernel to time; the emulator smoke test: --device emu --smoke\n");
    return 77;
#endif
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_kernels_gpu: %s\n", e.what());
    return 1;
  }
}
