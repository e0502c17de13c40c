// Mixed precision, as PyTorch's autocast does it, reduced to the rule VideoBERT needs: inside an
// AutocastGuard, the matrix ops — matmul (and so linear), conv2d and scaled_dot_product_attention — cast
// their float32 inputs to the low dtype (bfloat16 or float16), run in it (float32 accumulation inside the
// kernels), and return float32. Everything else — softmax, norms, losses, the optimizer — sees float32, and
// the parameters stay float32 (the master weights): the casts are differentiable, so each weight's gradient
// arrives in float32.
// Devices: GPU-backed ones (cuda, emu) take either low dtype. The CPU takes bfloat16, as PyTorch's CPU
// autocast does by default: matmul, linear and conv2d run their products on bfloat16 operands (on AMX tiles
// where the machine has them: kernels/cpu/gemm_bf16.cpp) and return the float32 sums unrounded — the
// operands are cast, the results are not (autograd/ops_linalg.cpp says why); attention stays float32 (the
// CPU's attention kernel computes in float32 anyway). Under a float16 guard the CPU runs float32 (it has no
// fast float16 products).
#pragma once
#include <optional>

#include "tensor/tensor.h"

namespace vb {

class AutocastGuard {
 public:
  // low: BFloat16 or Float16. An Error for any other dtype.
  explicit AutocastGuard(DType low);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  std::optional<DType> previous_;
};

// The dtype an autocast op should compute in for these inputs: the guard's low dtype when one is active,
// every defined input is float32 and the inputs' device takes that dtype (above); else nullopt.
std::optional<DType> autocast_dtype(std::initializer_list<const Tensor*> inputs);

// The CPU's low copy of a product's weight, recording nothing. A parameter (a leaf that requires grad) is cast
// at its first use inside the outermost AutocastGuard and the copy reused until that guard ends, as PyTorch's
// autocast caches weight casts: a model that runs its text encoder once per objective then casts each weight
// once a step instead of once a pass. The guard assumes the parameters do not change inside it (the optimizer
// steps outside); a parameter given new storage is cast again. Anything else is cast at every call.
Tensor autocast_weight(const Tensor& w, DType low);

}  // namespace vb
