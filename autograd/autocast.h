// Mixed precision, as PyTorch's autocast does it, reduced to the rule VideoBERT needs: inside an
// AutocastGuard, the matrix ops — matmul (and so linear), conv2d and scaled_dot_product_attention — cast
// their float32 inputs to the low dtype (bfloat16 or float16), run in it (float32 accumulation inside the
// kernels), and return float32. Everything else — softmax, norms, losses, the optimizer — sees float32, and
// the parameters stay float32 (the master weights): the casts are differentiable, so each weight's gradient
// arrives in float32. On the CPU the guard changes nothing: the CPU runs float32.
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
// the inputs live on a GPU-backed device (cuda, emu) and every defined input is float32; else nullopt.
std::optional<DType> autocast_dtype(std::initializer_list<const Tensor*> inputs);

}  // namespace vb
