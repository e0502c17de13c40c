// PLACEHOLDER until implemented: throws.
#include "autograd/op_utils.h"

namespace vb {

Tensor add(const Tensor& a, const Tensor& b) { fail("add: not implemented yet"); }
Tensor sub(const Tensor& a, const Tensor& b) { fail("sub: not implemented yet"); }
Tensor mul(const Tensor& a, const Tensor& b) { fail("mul: not implemented yet"); }
Tensor div(const Tensor& a, const Tensor& b) { fail("div: not implemented yet"); }
Tensor maximum(const Tensor& a, const Tensor& b) { fail("maximum: not implemented yet"); }
Tensor minimum(const Tensor& a, const Tensor& b) { fail("minimum: not implemented yet"); }
Tensor add(const Tensor& a, double s) { fail("add: not implemented yet"); }
Tensor mul(const Tensor& a, double s) { fail("mul: not implemented yet"); }
Tensor rsub(const Tensor& a, double s) { fail("rsub: not implemented yet"); }
Tensor neg(const Tensor& x) { fail("neg: not implemented yet"); }
Tensor exp(const Tensor& x) { fail("exp: not implemented yet"); }
Tensor log(const Tensor& x) { fail("log: not implemented yet"); }
Tensor log1p(const Tensor& x) { fail("log1p: not implemented yet"); }
Tensor sqrt(const Tensor& x) { fail("sqrt: not implemented yet"); }
Tensor rsqrt(const Tensor& x) { fail("rsqrt: not implemented yet"); }
Tensor abs(const Tensor& x) { fail("abs: not implemented yet"); }
Tensor sign(const Tensor& x) { fail("sign: not implemented yet"); }
Tensor tanh(const Tensor& x) { fail("tanh: not implemented yet"); }
Tensor sigmoid(const Tensor& x) { fail("sigmoid: not implemented yet"); }
Tensor relu(const Tensor& x) { fail("relu: not implemented yet"); }
Tensor gelu(const Tensor& x, bool tanh_approximation) { fail("gelu: not implemented yet"); }
Tensor pow(const Tensor& x, double exponent) { fail("pow: not implemented yet"); }
Tensor clamp(const Tensor& x, std::optional<double> min, std::optional<double> max) { fail("clamp: not implemented yet"); }
Tensor eq(const Tensor& a, const Tensor& b) { fail("eq: not implemented yet"); }
Tensor ne(const Tensor& a, const Tensor& b) { fail("ne: not implemented yet"); }
Tensor lt(const Tensor& a, const Tensor& b) { fail("lt: not implemented yet"); }
Tensor le(const Tensor& a, const Tensor& b) { fail("le: not implemented yet"); }
Tensor gt(const Tensor& a, const Tensor& b) { fail("gt: not implemented yet"); }
Tensor ge(const Tensor& a, const Tensor& b) { fail("ge: not implemented yet"); }
Tensor eq(const Tensor& a, double s) { fail("eq: not implemented yet"); }
Tensor gt(const Tensor& a, double s) { fail("gt: not implemented yet"); }
Tensor lt(const Tensor& a, double s) { fail("lt: not implemented yet"); }
Tensor logical_not(const Tensor& a) { fail("logical_not: not implemented yet"); }
Tensor logical_and(const Tensor& a, const Tensor& b) { fail("logical_and: not implemented yet"); }
Tensor logical_or(const Tensor& a, const Tensor& b) { fail("logical_or: not implemented yet"); }
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) { fail("where: not implemented yet"); }
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) { fail("masked_fill: not implemented yet"); }

}  // namespace vb
