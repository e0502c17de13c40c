// The cases of bench_kernels_gpu (the program's usage, timing and checks: the comment at the top of main.cpp).
//
// A case is one op at one shape and dtype: how to make a set of its tensors on a device, how to run ours on
// a set, which entries of the set are outputs, its FLOPs and bytes per run, and, where this program has
// one, the vendor library's version (baselines.h). Each op family adds its cases in its own file (listed
// below and in main.cpp's comment), whose top comment gives the family's shapes, FLOPs and bytes formulas
// and baseline. A new family: its file with an add_<family>_cases, declared below and called from
// all_cases() (main.cpp), which sets the order of the table and of --list.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "kernels/backend.h"

namespace vb::bench::kernels_gpu {

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

inline const char* short_name(DType t) {
  switch (t) {
    case DType::Float32: return "f32";
    case DType::BFloat16: return "bf16";
    case DType::Float16: return "f16";
    default: return "?";
  }
}

inline double elem(DType t) { return double(dtype_size(t)); }

// Standard-normal values (times `scale`) of dtype t on device d, the same on every device for a seed:
// drawn in float32 by the counter-based generator, then rounded.
inline Tensor input(const Shape& shape, DType t, Device d, uint64_t seed, double scale = 1.0) {
  Generator g{seed, 0};
  Tensor x = randn(shape, &g, DType::Float32, d);
  if (scale != 1.0) x = mul(x, scale);
  return t == DType::Float32 ? x : to(x, t);
}

inline Tensor output(const Shape& shape, DType t, Device d) { return Tensor::empty(shape, t, d); }

inline Backend& backend_of(const Set& s) { return backend(s[0].device()); }

// ---- shapes shared between files ----

// A GEMM (gemm.cpp; also the GEMM ladder's cuBLASLt baseline and the GEMM ceiling, main.cpp).
struct GemmShape {
  int64_t m, k, n;
  bool linear;  // b is the transposed view of a row-major (N, K) weight
};

std::string gemm_name(const GemmShape& g, DType t);
// The set of a GEMM: a (1, M, K), b (1, K, N) (a view of w (1, N, K) for linear), out (1, M, N).
Set gemm_set(const GemmShape& g, DType t, Device d);

// A convolution's sizes: x (N, H, W, C), w (O, KH, KW, C), y (N, OH, OW, O); padding k/2, no dilation or
// groups (ResNet's convolutions). conv.cpp's cases, cudnn.cpp's descriptors.
struct ConvShape {
  int64_t N, H, W, C, O, KH, KW, OH, OW;
  int stride, pad;
};

// ---- the families, in the order of all_cases() ----

void add_gemm_cases(std::vector<Case>& cases, bool smoke);              // gemm.cpp
void add_conv_cases(std::vector<Case>& cases, bool smoke);              // conv.cpp
void add_attention_cases(std::vector<Case>& cases, bool smoke);         // attention.cpp
void add_row_cases(std::vector<Case>& cases, bool smoke);               // rows.cpp
void add_nearest_centroid_cases(std::vector<Case>& cases, bool smoke);  // nearest_centroid.cpp
void add_gemm_ladder_cases(std::vector<Case>& cases, bool smoke);       // ladders.cpp
void add_layer_norm_ladder_cases(std::vector<Case>& cases, bool smoke);
void add_attention_ladder_cases(std::vector<Case>& cases, bool smoke);
void add_conv_ladder_cases(std::vector<Case>& cases, bool smoke);
void add_adamw_cases(std::vector<Case>& cases, bool smoke);  // adamw.cpp

}  // namespace vb::bench::kernels_gpu
