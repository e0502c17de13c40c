// The kernel interface: every primitive computation, declared once. Each backend (kernels/cpu/; the CUDA
// kernels of kernels/cuda/, run on a GPU or under the emulator) implements it; autograd/ops_*.cpp choose
// the backend from the inputs' device, allocate outputs and record gradients. The methods and their
// semantics are listed in kernels/backend_methods.def; this file holds the types they take.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace vb {

// ---- the elementwise and reduction ops: one list each ----
//
// Each list (an X-macro) names every op once: its enumerator, the name errors, tests and benchmarks print,
// and the dtypes it takes (its OpDomain). The enum, op_name() and op_domain() are generated from it, and
// so is the dtype check every backend runs (check_unary / check_binary below). Adding an op here is one
// line, and the case table tests it at once on every backend at every dtype of its domain
// (tests/support/cases/core.h walks these lists): a backend whose switch over the math lacks the op fails
// there, naming it. The math itself is written out in each backend (kernels/cpu/elementwise.cpp,
// kernels/cuda/elementwise.cu): the CPU's is the reference the CUDA kernels are tested against, so the
// two are not generated from one source.

// Which input dtypes an elementwise op takes, and what it writes:
enum class OpDomain : uint8_t {
  Numeric,   // every dtype but bool; same dtype out (the half types computed in float32)
  Floating,  // float32, bfloat16, float16, float64; same dtype out
  Compare,   // every dtype, bool out
  Logical,   // every dtype read as bool (x != 0), bool out
};

#define VB_UNARY_OPS(X)                                                                            \
  X(Neg, "neg", Numeric)                  /* −x */                                                 \
  X(Exp, "exp", Floating)                                                                          \
  X(Log, "log", Floating)                                                                          \
  X(Log1p, "log1p", Floating)                                                                      \
  X(Sqrt, "sqrt", Floating)                                                                        \
  X(Rsqrt, "rsqrt", Floating)                                                                      \
  X(Abs, "abs", Numeric)                                                                           \
  X(Sign, "sign", Numeric)                /* −1, 0 or 1 (NaN stays NaN) */                         \
  X(Tanh, "tanh", Floating)                                                                        \
  X(Sigmoid, "sigmoid", Floating)                                                                  \
  X(Relu, "relu", Numeric)                                                                         \
  X(GeluErf, "gelu", Floating)            /* x·Φ(x) = x/2·(1 + erf(x/√2))  (BERT) */               \
  X(GeluTanh, "gelu(tanh)", Floating)     /* x/2·(1 + tanh(√(2/π)(x + 0.044715x³))) */             \
  X(Pow, "pow", Floating)                 /* x^alpha */                                            \
  X(AddScalar, "add(scalar)", Numeric)    /* x + alpha */                                          \
  X(MulScalar, "mul(scalar)", Numeric)    /* x · alpha */                                          \
  X(RSubScalar, "rsub(scalar)", Numeric)  /* alpha − x */                                          \
  X(ClampMin, "clamp(min)", Numeric)      /* max(x, alpha) */                                      \
  X(ClampMax, "clamp(max)", Numeric)      /* min(x, alpha) */                                      \
  X(Not, "logical_not", Logical)

#define VB_BINARY_OPS(X)                                                                           \
  X(Add, "add", Numeric)                                                                           \
  X(Sub, "sub", Numeric)                                                                           \
  X(Mul, "mul", Numeric)                                                                           \
  X(Div, "div", Floating)                                                                          \
  X(Maximum, "maximum", Numeric)          /* NaN in either operand wins, as in PyTorch */          \
  X(Minimum, "minimum", Numeric)                                                                   \
  X(Eq, "eq", Compare)                                                                             \
  X(Ne, "ne", Compare)                                                                             \
  X(Lt, "lt", Compare)                                                                             \
  X(Le, "le", Compare)                                                                             \
  X(Gt, "gt", Compare)                                                                             \
  X(Ge, "ge", Compare)                                                                             \
  X(And, "logical_and", Logical)                                                                   \
  X(Or, "logical_or", Logical)                                                                     \
  /* Fused gradient products, out = g · f'(x) (a = g, b = x or the forward output y): */           \
  X(ReluGrad, "relu_grad", Floating)          /* g · [x > 0] */                                    \
  X(GeluErfGrad, "gelu_grad", Floating)       /* g · (Φ(x) + x·φ(x)) */                            \
  X(GeluTanhGrad, "gelu_tanh_grad", Floating) /* g · d/dx gelu_tanh(x) */                          \
  X(SigmoidGrad, "sigmoid_grad", Floating)    /* g · y(1 − y), b = y */                            \
  X(TanhGrad, "tanh_grad", Floating)          /* g · (1 − y²), b = y */

// Argmax takes one dim and writes int64 (the first maximal index); the others keep x's dtype.
#define VB_REDUCE_OPS(X) X(Sum, "sum") X(Mean, "mean") X(Amax, "amax") X(Amin, "amin") X(Argmax, "argmax")

#define VB_ENUMERATOR(op, ...) op,
enum class UnaryOp : uint8_t { VB_UNARY_OPS(VB_ENUMERATOR) };
enum class BinaryOp : uint8_t { VB_BINARY_OPS(VB_ENUMERATOR) };
enum class ReduceOp : uint8_t { VB_REDUCE_OPS(VB_ENUMERATOR) };
#undef VB_ENUMERATOR

// Every op of each list, in order (for the tests and benchmarks that walk them).
#define VB_UNARY_ENTRY(op, ...) UnaryOp::op,
#define VB_BINARY_ENTRY(op, ...) BinaryOp::op,
#define VB_REDUCE_ENTRY(op, ...) ReduceOp::op,
inline constexpr UnaryOp kUnaryOps[] = {VB_UNARY_OPS(VB_UNARY_ENTRY)};
inline constexpr BinaryOp kBinaryOps[] = {VB_BINARY_OPS(VB_BINARY_ENTRY)};
inline constexpr ReduceOp kReduceOps[] = {VB_REDUCE_OPS(VB_REDUCE_ENTRY)};
#undef VB_UNARY_ENTRY
#undef VB_BINARY_ENTRY
#undef VB_REDUCE_ENTRY

const char* op_name(UnaryOp op);
const char* op_name(BinaryOp op);
const char* op_name(ReduceOp op);
OpDomain op_domain(UnaryOp op);
OpDomain op_domain(BinaryOp op);

enum class RandomKind : uint8_t { Uniform, Normal, Randint };

struct Conv2dParams {
  int stride_h = 1, stride_w = 1;
  int pad_h = 0, pad_w = 0;
  int dilation_h = 1, dilation_w = 1;
  int groups = 1;
};

struct Pool2dParams {
  int kernel_h = 1, kernel_w = 1;
  int stride_h = 1, stride_w = 1;
  int pad_h = 0, pad_w = 0;
  bool count_include_pad = true;  // avg_pool2d only
};

// One tensor of a fused AdamW step: param and grad of the same shape and floating dtype, exp_avg and
// exp_avg_sq float32 of that shape, all contiguous; decay: decoupled weight decay applies to it.
struct AdamWSlot {
  Tensor param, grad, exp_avg, exp_avg_sq;
  bool decay = true;
};

// The step's scalars (train/optim.h's formula, torch.optim.AdamW's):
//   p ← p·(1 − lr·λ) (decay slots);  m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²;
//   p ← p − (lr / c1) · m / (√v / √c2 + ε),   c1 = 1 − β1ᵗ, c2 = 1 − β2ᵗ.
// Arithmetic in float32 with the scalars rounded once to float32, as the CUDA kernel does.
// grad_scale ≠ 1: each gradient is first multiplied by it (g ← g·s in float32, rounded to the gradient's dtype:
// the bits of scaling the gradients in place before the step) — gradient clipping's factor without a pass of
// its own over the gradients. The gradients in memory are left as they were.
struct AdamWStep {
  double lr = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  double bias_correction1 = 1, bias_correction2 = 1;  // c1, c2
  double grad_scale = 1;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // Every kernel method, with its semantics and the conventions all share: kernels/backend_methods.def.
#define VB_BACKEND_METHOD(method, params, args) virtual void method params = 0;
#include "kernels/backend_methods.def"
#undef VB_BACKEND_METHOD
};

// The backend that runs kernels for tensors on `device`.
Backend& backend(Device device);
void register_backend(DeviceType type, Backend* b);

// The checks every backend runs on an elementwise call, from the op lists above: inputs arrive expanded to
// out's shape, with one dtype; out is bool for Compare and Logical ops and the input's dtype otherwise;
// the input dtype lies in the op's domain. `device` names the backend in the message ("cpu", "cuda:0").
void check_unary(const std::string& device, UnaryOp op, const Tensor& x, const Tensor& out);
void check_binary(const std::string& device, BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out);

}  // namespace vb
