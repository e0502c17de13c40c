// Elementwise ops: arithmetic with broadcasting, unary maths and activations, comparisons, logic, where.
// Each op's backward sits right below its forward. Broadcasting backward sums the gradient down to the
// input's shape (sum_to); activation backwards use the fused gradient kernels (BinaryOp::*Grad).
#include "autograd/op_utils.h"

namespace vb {

using detail::describe;

namespace {

// t seen with `shape` (a broadcast of t's shape): stride 0 on new and size-1 dims. Records nothing.
Tensor broadcast_view(const Tensor& t, const Shape& shape) {
  if (t.shape() == shape) return t;
  const size_t lead = shape.size() - size_t(t.dim());
  Shape strides(shape.size(), 0);
  for (size_t i = lead; i < shape.size(); ++i)
    if (t.shape()[i - lead] == shape[i]) strides[i] = t.strides()[i - lead];
  return t.as_strided(shape, strides, t.offset());
}

void check_binary(const char* op, const Tensor& a, const Tensor& b) {
  detail::check_defined(op, a, "first input");
  detail::check_defined(op, b, "second input");
  detail::check_same_device(op, {a, b});
  detail::check_same_dtype(op, {a, b});
}

// Runs the binary kernel on a and b broadcast together; records nothing.
Tensor binary_raw(BinaryOp op, const char* name, const Tensor& a, const Tensor& b, DType out_dtype) {
  check_binary(name, a, b);
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = Tensor::empty(shape, out_dtype, a.device());
  backend(a.device()).binary(op, broadcast_view(a, shape), broadcast_view(b, shape), out);
  return out;
}

Tensor unary_raw(UnaryOp op, const Tensor& x, double alpha = 0, DType out_dtype = DType::Float32,
                 bool keep_dtype = true) {
  Tensor out = Tensor::empty(x.shape(), keep_dtype ? x.dtype() : out_dtype, x.device());
  backend(x.device()).unary(op, x, out, alpha);
  return out;
}

// A floating-point unary op: checks the input, runs the kernel.
Tensor unary_float(UnaryOp op, const char* name, const Tensor& x, double alpha = 0) {
  detail::check_floating(name, x);
  return unary_raw(op, x, alpha);
}

// g · f'(x) through a fused gradient kernel (g and x of one shape).
Tensor grad_product(BinaryOp op, const Tensor& g, const Tensor& x) {
  Tensor out = Tensor::empty(g.shape(), g.dtype(), g.device());
  backend(g.device()).binary(op, g, broadcast_view(x, g.shape()), out);
  return out;
}

Tensor as_dtype(const Tensor& mask, DType dtype) { return to(mask, dtype); }

}  // namespace

// ---------------------------------------------------------------- arithmetic

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::Add, "add", a, b, a.defined() ? a.dtype() : DType::Float32);
  const Shape sa = a.shape(), sb = b.shape();
  return record(out, "add", {a, b}, [sa, sb](const Node& self, const Tensor& g) -> std::vector<Tensor> {
    return {self.needs(0) ? sum_to(g, sa) : Tensor(), self.needs(1) ? sum_to(g, sb) : Tensor()};
  });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  VB_CHECK(!a.defined() || a.dtype() != DType::Bool, "sub: not defined for bool tensors (use logical ops)");
  Tensor out = binary_raw(BinaryOp::Sub, "sub", a, b, a.defined() ? a.dtype() : DType::Float32);
  const Shape sa = a.shape(), sb = b.shape();
  return record(out, "sub", {a, b}, [sa, sb](const Node& self, const Tensor& g) -> std::vector<Tensor> {
    return {self.needs(0) ? sum_to(g, sa) : Tensor(), self.needs(1) ? sum_to(neg(g), sb) : Tensor()};
  });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::Mul, "mul", a, b, a.defined() ? a.dtype() : DType::Float32);
  // Each input's gradient needs the other input only.
  const Tensor keep_a = b.requires_grad() ? a : Tensor(), keep_b = a.requires_grad() ? b : Tensor();
  const Shape sa = a.shape(), sb = b.shape();
  return record(out, "mul", {a, b}, [keep_a, keep_b, sa, sb](const Node& self, const Tensor& g) -> std::vector<Tensor> {
    return {self.needs(0) ? sum_to(mul(g, keep_b), sa) : Tensor(), self.needs(1) ? sum_to(mul(g, keep_a), sb) : Tensor()};
  });
}

Tensor div(const Tensor& a, const Tensor& b) {
  check_binary("div", a, b);
  detail::check_floating("div", a, "first input");
  Tensor out = binary_raw(BinaryOp::Div, "div", a, b, a.dtype());
  const Tensor keep_a = b.requires_grad() ? a : Tensor();
  const Shape sa = a.shape(), sb = b.shape();
  // ga = g / b;  gb = −g·a / b²
  return record(out, "div", {a, b}, [keep_a, b, sa, sb](const Node& self, const Tensor& g) -> std::vector<Tensor> {
    Tensor ga, gb;
    if (self.needs(0)) ga = sum_to(div(g, b), sa);
    if (self.needs(1)) gb = sum_to(neg(div(mul(g, keep_a), mul(b, b))), sb);
    return {ga, gb};
  });
}

namespace {
// maximum (Gt) or minimum (Lt): the gradient goes to the winning input; ties split it half and half.
Tensor extremum(BinaryOp op, BinaryOp wins, const char* name, const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(op, name, a, b, a.defined() ? a.dtype() : DType::Float32);
  const Shape sa = a.shape(), sb = b.shape();
  return record(out, name, {a, b}, [a, b, wins, name, sa, sb](const Node& self, const Tensor& g) -> std::vector<Tensor> {
    // share_a = [a wins] + ½[a = b]
    Tensor share_a = add(as_dtype(binary_raw(wins, name, a, b, DType::Bool), g.dtype()),
                         mul(as_dtype(eq(a, b), g.dtype()), 0.5));
    Tensor ga, gb;
    if (self.needs(0)) ga = sum_to(mul(g, share_a), sa);
    if (self.needs(1)) gb = sum_to(mul(g, rsub(share_a, 1.0)), sb);
    return {ga, gb};
  });
}
}  // namespace

Tensor maximum(const Tensor& a, const Tensor& b) { return extremum(BinaryOp::Maximum, BinaryOp::Gt, "maximum", a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return extremum(BinaryOp::Minimum, BinaryOp::Lt, "minimum", a, b); }

// ---------------------------------------------------------------- scalar arithmetic (keeps x's dtype)

Tensor add(const Tensor& a, double s) {
  detail::check_defined("add", a);
  Tensor out = unary_raw(UnaryOp::AddScalar, a, s);
  return record(out, "add_scalar", {a}, [](const Node&, const Tensor& g) -> std::vector<Tensor> { return {g}; });
}

Tensor mul(const Tensor& a, double s) {
  detail::check_defined("mul", a);
  Tensor out = unary_raw(UnaryOp::MulScalar, a, s);
  return record(out, "mul_scalar", {a}, [s](const Node&, const Tensor& g) -> std::vector<Tensor> {
    return {mul(g, s)};
  });
}

Tensor rsub(const Tensor& a, double s) {
  detail::check_defined("rsub", a);
  Tensor out = unary_raw(UnaryOp::RSubScalar, a, s);
  return record(out, "rsub", {a}, [](const Node&, const Tensor& g) -> std::vector<Tensor> { return {neg(g)}; });
}

Tensor neg(const Tensor& x) {
  detail::check_defined("neg", x);
  Tensor out = unary_raw(UnaryOp::Neg, x);
  return record(out, "neg", {x}, [](const Node&, const Tensor& g) -> std::vector<Tensor> { return {neg(g)}; });
}

// ---------------------------------------------------------------- unary maths

Tensor exp(const Tensor& x) {
  Tensor y = unary_float(UnaryOp::Exp, "exp", x);
  const Tensor saved = detach(y);  // a detached handle: no cycle through y's own node
  return record(y, "exp", {x}, [saved](const Node&, const Tensor& g) -> std::vector<Tensor> {
    return {mul(g, saved)};
  });
}

Tensor log(const Tensor& x) {
  Tensor y = unary_float(UnaryOp::Log, "log", x);
  return record(y, "log", {x}, [x](const Node&, const Tensor& g) -> std::vector<Tensor> { return {div(g, x)}; });
}

Tensor log1p(const Tensor& x) {
  Tensor y = unary_float(UnaryOp::Log1p, "log1p", x);
  return record(y, "log1p", {x}, [x](const Node&, const Tensor& g) -> std::vector<Tensor> {
    return {div(g, add(x, 1.0))};
  });
}

Tensor sqrt(const Tensor& x) {
  Tensor y = unary_float(UnaryOp::Sqrt, "sqrt", x);
  const Tensor saved = detach(y);
  // d√x = 1 / (2√x)
  return record(y, "sqrt", {x}, [saved](const Node&, const Tensor& g) -> std::vector<Tensor> {
    return {div(mul(g, 0.5), saved)};
  });
}

Tensor rsqrt(const Tensor& x) {
  Tensor y = unary_float(UnaryOp::Rsqrt, "rsqrt", x);
  const Tensor saved = detach(y);
  // d x^(−½) = −½ x^(−3/2) = −½ y³
  return record(y, "rsqrt", {x}, [saved](const Node&, const Tensor& g) -> std::vector<Tensor> {
    return {mul(mul(g, pow(saved, 3.0)), -0.5)};
  });
}

Tensor abs(const Tensor& x) {
  detail::check_defined("abs", x);
  Tensor y = unary_raw(UnaryOp::Abs, x);
  return record(y, "abs", {x}, [x](const Node&, const Tensor& g) -> std::vector<Tensor> { return {mul(g, sign(x))}; });
}

Tensor sign(const Tensor& x) {
  detail::check_defined("sign", x);
  Tensor y = unary_raw(UnaryOp::Sign, x);
  return record(y, "sign", {x}, [](const Node&, const Tensor& g) -> std::vector<Tensor> { return {zeros_like(g)}; });
}

Tensor tanh(const Tensor& x) {
  Tensor y = unary_float(UnaryOp::Tanh, "tanh", x);
  const Tensor saved = detach(y);
  return record(y, "tanh", {x}, [saved](const Node&, const Tensor& g) -> std::vector<Tensor> {
    return {grad_product(BinaryOp::TanhGrad, g, saved)};
  });
}

Tensor sigmoid(const Tensor& x) {
  Tensor y = unary_float(UnaryOp::Sigmoid, "sigmoid", x);
  const Tensor saved = detach(y);
  return record(y, "sigmoid", {x}, [saved](const Node&, const Tensor& g) -> std::vector<Tensor> {
    return {grad_product(BinaryOp::SigmoidGrad, g, saved)};
  });
}

Tensor relu(const Tensor& x) {
  detail::check_defined("relu", x);
  VB_CHECK(x.dtype() != DType::Bool, "relu: not defined for bool tensors");
  Tensor y = unary_raw(UnaryOp::Relu, x);
  return record(y, "relu", {x}, [x](const Node&, const Tensor& g) -> std::vector<Tensor> {
    return {grad_product(BinaryOp::ReluGrad, g, x)};
  });
}

Tensor gelu(const Tensor& x, bool tanh_approximation) {
  Tensor y = unary_float(tanh_approximation ? UnaryOp::GeluTanh : UnaryOp::GeluErf, "gelu", x);
  const BinaryOp grad_op = tanh_approximation ? BinaryOp::GeluTanhGrad : BinaryOp::GeluErfGrad;
  return record(y, "gelu", {x}, [x, grad_op](const Node&, const Tensor& g) -> std::vector<Tensor> {
    return {grad_product(grad_op, g, x)};
  });
}

Tensor pow(const Tensor& x, double exponent) {
  Tensor y = unary_float(UnaryOp::Pow, "pow", x, exponent);
  // d x^p = p·x^(p−1)
  return record(y, "pow", {x}, [x, exponent](const Node&, const Tensor& g) -> std::vector<Tensor> {
    if (exponent == 0) return {zeros_like(g)};
    if (exponent == 1) return {g};
    return {mul(mul(g, pow(x, exponent - 1)), exponent)};
  });
}

Tensor clamp(const Tensor& x, std::optional<double> min, std::optional<double> max) {
  detail::check_defined("clamp", x);
  VB_CHECK(min || max, "clamp: at least one of min and max must be given");
  VB_CHECK(x.dtype() != DType::Bool, "clamp: not defined for bool tensors");
  Tensor y = x;
  if (min) y = unary_raw(UnaryOp::ClampMin, y, *min);
  if (max) y = unary_raw(UnaryOp::ClampMax, y, *max);
  // The gradient passes where min ≤ x ≤ max.
  return record(y, "clamp", {x}, [x, min, max](const Node&, const Tensor& g) -> std::vector<Tensor> {
    Tensor gx = g;
    if (min) gx = masked_fill(gx, lt(x, *min), 0.0);
    if (max) gx = masked_fill(gx, gt(x, *max), 0.0);
    return {gx};
  });
}

// ---------------------------------------------------------------- comparisons and logic (not recorded)

Tensor eq(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::Eq, "eq", a, b, DType::Bool); }
Tensor ne(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::Ne, "ne", a, b, DType::Bool); }
Tensor lt(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::Lt, "lt", a, b, DType::Bool); }
Tensor le(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::Le, "le", a, b, DType::Bool); }
Tensor gt(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::Gt, "gt", a, b, DType::Bool); }
Tensor ge(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::Ge, "ge", a, b, DType::Bool); }

namespace {
Tensor scalar_like(const Tensor& a, double s, const char* op) {
  detail::check_defined(op, a);
  return Tensor::scalar(s, a.dtype(), a.device());
}
}  // namespace

Tensor eq(const Tensor& a, double s) { return eq(a, scalar_like(a, s, "eq")); }
Tensor gt(const Tensor& a, double s) { return gt(a, scalar_like(a, s, "gt")); }
Tensor lt(const Tensor& a, double s) { return lt(a, scalar_like(a, s, "lt")); }

Tensor logical_not(const Tensor& a) {
  detail::check_defined("logical_not", a);
  return unary_raw(UnaryOp::Not, a, 0, DType::Bool, /*keep_dtype=*/false);
}
Tensor logical_and(const Tensor& a, const Tensor& b) {
  return binary_raw(BinaryOp::And, "logical_and", a, b, DType::Bool);
}
Tensor logical_or(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::Or, "logical_or", a, b, DType::Bool); }

// ---------------------------------------------------------------- selection

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  detail::check_defined("where", cond, "condition");
  check_binary("where", a, b);
  detail::check_same_device("where", {cond, a, b});
  VB_CHECK(cond.dtype() == DType::Bool, "where: condition must be bool, got {}", describe(cond));
  const Shape shape = broadcast_shapes(cond.shape(), broadcast_shapes(a.shape(), b.shape(), "where"), "where");
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  backend(a.device()).where(broadcast_view(cond, shape), broadcast_view(a, shape), broadcast_view(b, shape), out);
  const Shape sa = a.shape(), sb = b.shape();
  // ga = g where cond, else 0;  gb = g where not cond, else 0
  return record(out, "where", {a, b}, [cond, sa, sb](const Node& self, const Tensor& g) -> std::vector<Tensor> {
    Tensor zero = Tensor::scalar(0.0, g.dtype(), g.device());
    Tensor ga, gb;
    if (self.needs(0)) ga = sum_to(where(cond, g, zero), sa);
    if (self.needs(1)) gb = sum_to(where(cond, zero, g), sb);
    return {ga, gb};
  });
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  detail::check_defined("masked_fill", x);
  detail::check_defined("masked_fill", mask, "mask");
  VB_CHECK(mask.dtype() == DType::Bool, "masked_fill: mask must be bool, got {}", describe(mask));
  VB_CHECK(broadcast_shapes(x.shape(), mask.shape(), "masked_fill") == x.shape(),
           "masked_fill: mask {} must broadcast to the input's shape {}", shape_str(mask.shape()),
           shape_str(x.shape()));
  return where(mask, Tensor::scalar(value, x.dtype(), x.device()), x);
}

}  // namespace vb
