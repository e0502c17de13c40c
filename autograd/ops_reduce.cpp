// PLACEHOLDER until implemented: throws.
#include "autograd/op_utils.h"

namespace vb {

Tensor sum(const Tensor& x) { fail("sum: not implemented yet"); }
Tensor sum(const Tensor& x, const std::vector<int>& dims, bool keepdim) { fail("sum: not implemented yet"); }
Tensor mean(const Tensor& x) { fail("mean: not implemented yet"); }
Tensor mean(const Tensor& x, const std::vector<int>& dims, bool keepdim) { fail("mean: not implemented yet"); }
Tensor amax(const Tensor& x, const std::vector<int>& dims, bool keepdim) { fail("amax: not implemented yet"); }
Tensor amin(const Tensor& x, const std::vector<int>& dims, bool keepdim) { fail("amin: not implemented yet"); }
Tensor argmax(const Tensor& x, int dim, bool keepdim) { fail("argmax: not implemented yet"); }
Tensor var(const Tensor& x, const std::vector<int>& dims, bool unbiased, bool keepdim) { fail("var: not implemented yet"); }

}  // namespace vb
