// Elementwise kernels: unary maps, binary maps (arithmetic, comparisons, logic and the fused gradient
// products of the activations' backwards) and where.
//
// Math (Φ, φ: standard normal cdf and pdf; k = √(2/π), c = 0.044715), as the CPU backend:
//   gelu_erf(x)  = x·Φ(x), Φ(x) = ½·erfc(−x/√2)           d/dx = Φ(x) + x·φ(x)
//   gelu_tanh(x) = x/2·(1 + tanh(u)), u = k(x + c·x³)      d/dx = (1 + t)/2 + x/2·(1 − t²)·k(1 + 3c·x²), t = tanh(u)
//   sigmoid: y = 1/(1 + e^−x), dy/dx = y(1 − y);  tanh: dy/dx = 1 − y²;  relu: dy/dx = [x > 0]
// NaN propagates through maximum/minimum, clamp and relu as in PyTorch. Half types load as float32,
// compute in float32 and round once on the store; integer types compute in their own type.
//
// Cost: memory bound — one read per input element and one write per output element (8 bytes per
// float32 element for unary, 12 for binary, 13 for where; half that for bf16/f16); 1 FLOP for the
// arithmetic, ~20 for erf/tanh/exp-based ops.
//
// Launch: grid-stride loops of 256 threads per block (core::grid_for). Two paths:
// - contiguous: every operand has stride 1 and every pointer is aligned to its pack: each thread
//   handles V = 16 / sizeof(input) elements as one 16-byte load per input and one store per output
//   (V bools for comparisons); the last n mod V elements go element by element;
// - strided: any strides, including 0 for broadcast operands; each element's offsets come from the
//   layout (an N-d index).
#include <cmath>
#include <cstdint>

#include "kernels/launch.h"
#include "kernels/cuda/core_device.h"

namespace vb::VB_KERNEL_NS {
namespace {

using namespace core;

// ---- the maps: F works on compute types (float for half storage) ----

template <class X, class O, int V, class F>
__global__ void map1_contiguous_kernel(const X* x, O* out, int64_t n, F f) {
  const int64_t packs = n / V;
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  const int64_t first = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t p = first; p < packs; p += step) {
    const Pack<X, V> in = reinterpret_cast<const Pack<X, V>*>(x)[p];
    Pack<O, V> result;
    for (int j = 0; j < V; ++j) result.v[j] = f(in.v[j]);
    reinterpret_cast<Pack<O, V>*>(out)[p] = result;
  }
  for (int64_t i = packs * V + first; i < n; i += step) out[i] = f(x[i]);
}

template <class X, class O, class F>
__global__ void map1_strided_kernel(const X* x, O* out, StridedLayout layout, int64_t n, F f) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    int64_t offset[2];
    layout_offsets<2>(layout, i, offset);
    out[offset[0]] = f(x[offset[1]]);
  }
}

template <class X, class O, int V, class F>
__global__ void map2_contiguous_kernel(const X* a, const X* b, O* out, int64_t n, F f) {
  const int64_t packs = n / V;
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  const int64_t first = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t p = first; p < packs; p += step) {
    const Pack<X, V> pa = reinterpret_cast<const Pack<X, V>*>(a)[p];
    const Pack<X, V> pb = reinterpret_cast<const Pack<X, V>*>(b)[p];
    Pack<O, V> result;
    for (int j = 0; j < V; ++j) result.v[j] = f(pa.v[j], pb.v[j]);
    reinterpret_cast<Pack<O, V>*>(out)[p] = result;
  }
  for (int64_t i = packs * V + first; i < n; i += step) out[i] = f(a[i], b[i]);
}

template <class X, class O, class F>
__global__ void map2_strided_kernel(const X* a, const X* b, O* out, StridedLayout layout, int64_t n, F f) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    int64_t offset[3];
    layout_offsets<3>(layout, i, offset);
    out[offset[0]] = f(a[offset[1]], b[offset[2]]);
  }
}

template <class T>
__global__ void where_kernel(const bool* cond, const T* a, const T* b, T* out, StridedLayout layout, int64_t n) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    int64_t offset[4];
    layout_offsets<4>(layout, i, offset);
    out[offset[0]] = cond[offset[1]] ? a[offset[2]] : b[offset[3]];
  }
}

bool aligned(const void* p, std::size_t bytes) { return reinterpret_cast<std::uintptr_t>(p) % bytes == 0; }

// The layout is contiguous when it is one dim (or none) of stride 1 for every operand.
bool contiguous(const StridedLayout& layout, int operands) {
  if (layout.ndim == 0) return true;
  if (layout.ndim != 1) return false;
  for (int k = 0; k < operands; ++k)
    if (layout.strides[k][0] != 1) return false;
  return true;
}

// Wraps a compute-type functor into storage types: loads as C, stores as O.
template <class X, class O, class G>
struct Storage1 {
  G g;
  __host__ __device__ __forceinline__ O operator()(X x) const { return convert<O>(g(convert<compute_t<X>>(x))); }
};
template <class X, class O, class G>
struct Storage2 {
  G g;
  __host__ __device__ __forceinline__ O operator()(X a, X b) const {
    return convert<O>(g(convert<compute_t<X>>(a), convert<compute_t<X>>(b)));
  }
};

template <class X, class O, class G>
void run1(const void* x, void* out, const StridedLayout& layout, int64_t n, rt::Stream stream, G g) {
  constexpr int V = 16 / sizeof(X);
  const Storage1<X, O, G> f{g};
  const X* px = static_cast<const X*>(x);
  O* po = static_cast<O*>(out);
  if (contiguous(layout, 2) && aligned(x, sizeof(X) * V) && aligned(out, sizeof(O) * V)) {
    launch(map1_contiguous_kernel<X, O, V, Storage1<X, O, G>>, {grid_for((n + V - 1) / V), kThreads, 0, stream}, px,
           po, n, f);
  } else {
    launch(map1_strided_kernel<X, O, Storage1<X, O, G>>, {grid_for(n), kThreads, 0, stream}, px, po, layout, n, f);
  }
}

template <class X, class O, class G>
void run2(const void* a, const void* b, void* out, const StridedLayout& layout, int64_t n, rt::Stream stream, G g) {
  constexpr int V = 16 / sizeof(X);
  const Storage2<X, O, G> f{g};
  const X* pa = static_cast<const X*>(a);
  const X* pb = static_cast<const X*>(b);
  O* po = static_cast<O*>(out);
  if (contiguous(layout, 3) && aligned(a, sizeof(X) * V) && aligned(b, sizeof(X) * V) && aligned(out, sizeof(O) * V)) {
    launch(map2_contiguous_kernel<X, O, V, Storage2<X, O, G>>, {grid_for((n + V - 1) / V), kThreads, 0, stream}, pa,
           pb, po, n, f);
  } else {
    launch(map2_strided_kernel<X, O, Storage2<X, O, G>>, {grid_for(n), kThreads, 0, stream}, pa, pb, po, layout, n,
           f);
  }
}

// ---- the math, on compute types ----

constexpr float kSqrtHalf = 0.70710678118654752f;  // 1/√2
constexpr float kInvSqrt2Pi = 0.3989422804014327f;  // 1/√(2π)
constexpr float kGeluK = 0.7978845608028654f;       // √(2/π)
constexpr float kGeluC = 0.044715f;

__host__ __device__ __forceinline__ float normal_cdf(float x) { return 0.5f * erfcf(-x * kSqrtHalf); }
__host__ __device__ __forceinline__ float gelu_tanh_grad(float x) {
  const float t = tanhf(kGeluK * (x + kGeluC * x * x * x));
  return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * kGeluK * (1.0f + 3.0f * kGeluC * x * x);
}

// One functor per op; `s` is the scalar operand in the compute type.
template <class C> struct NegOp { __host__ __device__ C operator()(C v) const { return C(-v); } };
template <class C> struct AbsOp { __host__ __device__ C operator()(C v) const { return v < C(0) ? C(-v) : v; } };
template <class C> struct SignOp {
  __host__ __device__ C operator()(C v) const { return v > C(0) ? C(1) : v < C(0) ? C(-1) : v; }
};
template <class C> struct ReluOp { __host__ __device__ C operator()(C v) const { return v < C(0) ? C(0) : v; } };
template <class C> struct AddScalarOp { C s; __host__ __device__ C operator()(C v) const { return C(v + s); } };
template <class C> struct MulScalarOp { C s; __host__ __device__ C operator()(C v) const { return C(v * s); } };
template <class C> struct RSubScalarOp { C s; __host__ __device__ C operator()(C v) const { return C(s - v); } };
template <class C> struct ClampMinOp { C s; __host__ __device__ C operator()(C v) const { return v < s ? s : v; } };
template <class C> struct ClampMaxOp { C s; __host__ __device__ C operator()(C v) const { return v > s ? s : v; } };
struct ExpOp { __host__ __device__ float operator()(float v) const { return expf(v); } };
struct LogOp { __host__ __device__ float operator()(float v) const { return logf(v); } };
struct Log1pOp { __host__ __device__ float operator()(float v) const { return log1pf(v); } };
struct SqrtOp { __host__ __device__ float operator()(float v) const { return sqrtf(v); } };
struct RsqrtOp { __host__ __device__ float operator()(float v) const { return 1.0f / sqrtf(v); } };
struct TanhOp { __host__ __device__ float operator()(float v) const { return tanhf(v); } };
struct SigmoidOp { __host__ __device__ float operator()(float v) const { return 1.0f / (1.0f + expf(-v)); } };
struct GeluErfOp { __host__ __device__ float operator()(float v) const { return v * normal_cdf(v); } };
struct GeluTanhOp {
  __host__ __device__ float operator()(float v) const {
    return 0.5f * v * (1.0f + tanhf(kGeluK * (v + kGeluC * v * v * v)));
  }
};
struct SquareOp { __host__ __device__ float operator()(float v) const { return v * v; } };
struct PowOp { float s; __host__ __device__ float operator()(float v) const { return powf(v, s); } };
template <class X> struct NotOp { __host__ __device__ bool operator()(X v) const { return !convert<bool>(v); } };

template <class C> struct AddOp { __host__ __device__ C operator()(C x, C y) const { return C(x + y); } };
template <class C> struct SubOp { __host__ __device__ C operator()(C x, C y) const { return C(x - y); } };
template <class C> struct MulOp { __host__ __device__ C operator()(C x, C y) const { return C(x * y); } };
template <class C> struct MaximumOp {
  __host__ __device__ C operator()(C x, C y) const { return (x > y || x != x) ? x : y; }
};
template <class C> struct MinimumOp {
  __host__ __device__ C operator()(C x, C y) const { return (x < y || x != x) ? x : y; }
};
template <class C> struct EqOp { __host__ __device__ bool operator()(C x, C y) const { return x == y; } };
template <class C> struct NeOp { __host__ __device__ bool operator()(C x, C y) const { return x != y; } };
template <class C> struct LtOp { __host__ __device__ bool operator()(C x, C y) const { return x < y; } };
template <class C> struct LeOp { __host__ __device__ bool operator()(C x, C y) const { return x <= y; } };
template <class C> struct GtOp { __host__ __device__ bool operator()(C x, C y) const { return x > y; } };
template <class C> struct GeOp { __host__ __device__ bool operator()(C x, C y) const { return x >= y; } };
template <class C> struct AndOp {
  __host__ __device__ bool operator()(C x, C y) const { return x != C(0) && y != C(0); }
};
template <class C> struct OrOp {
  __host__ __device__ bool operator()(C x, C y) const { return x != C(0) || y != C(0); }
};
struct DivOp { __host__ __device__ float operator()(float x, float y) const { return x / y; } };
struct ReluGradOp { __host__ __device__ float operator()(float g, float x) const { return x > 0.0f ? g : 0.0f; } };
struct GeluErfGradOp {
  __host__ __device__ float operator()(float g, float x) const {
    return g * (normal_cdf(x) + x * expf(-0.5f * x * x) * kInvSqrt2Pi);
  }
};
struct GeluTanhGradOp { __host__ __device__ float operator()(float g, float x) const { return g * gelu_tanh_grad(x); } };
struct SigmoidGradOp { __host__ __device__ float operator()(float g, float y) const { return g * y * (1.0f - y); } };
struct TanhGradOp { __host__ __device__ float operator()(float g, float y) const { return g * (1.0f - y * y); } };

template <class T>
void unary_typed(UnaryOp op, const void* x, void* out, double alpha, const StridedLayout& layout, int64_t n,
                 rt::Stream stream) {
  using C = compute_t<T>;
  if (op == UnaryOp::Not) return run1<T, bool>(x, out, layout, n, stream, NotOp<C>{});
  if constexpr (!std::is_same_v<T, bool>) {
    const C s = C(alpha);  // as scalar_cast: integers truncate
    auto run = [&](auto g) { run1<T, T>(x, out, layout, n, stream, g); };
    switch (op) {
      case UnaryOp::Neg: return run(NegOp<C>{});
      case UnaryOp::Abs: return run(AbsOp<C>{});
      case UnaryOp::Sign: return run(SignOp<C>{});
      case UnaryOp::Relu: return run(ReluOp<C>{});
      case UnaryOp::AddScalar: return run(AddScalarOp<C>{s});
      case UnaryOp::MulScalar: return run(MulScalarOp<C>{s});
      case UnaryOp::RSubScalar: return run(RSubScalarOp<C>{s});
      case UnaryOp::ClampMin: return run(ClampMinOp<C>{s});
      case UnaryOp::ClampMax: return run(ClampMaxOp<C>{s});
      default: break;
    }
    if constexpr (std::is_same_v<C, float>) {
      switch (op) {
        case UnaryOp::Exp: return run(ExpOp{});
        case UnaryOp::Log: return run(LogOp{});
        case UnaryOp::Log1p: return run(Log1pOp{});
        case UnaryOp::Sqrt: return run(SqrtOp{});
        case UnaryOp::Rsqrt: return run(RsqrtOp{});
        case UnaryOp::Tanh: return run(TanhOp{});
        case UnaryOp::Sigmoid: return run(SigmoidOp{});
        case UnaryOp::GeluErf: return run(GeluErfOp{});
        case UnaryOp::GeluTanh: return run(GeluTanhOp{});
        case UnaryOp::Pow:
          if (alpha == 2) return run(SquareOp{});
          return run(PowOp{s});
        default: break;
      }
    }
  }
  throw std::invalid_argument("unary_map: op not defined for this dtype");
}

template <class T>
void binary_typed(BinaryOp op, const void* a, const void* b, void* out, const StridedLayout& layout, int64_t n,
                  rt::Stream stream) {
  using C = compute_t<T>;
  auto test = [&](auto g) { run2<T, bool>(a, b, out, layout, n, stream, g); };
  switch (op) {
    case BinaryOp::Eq: return test(EqOp<C>{});
    case BinaryOp::Ne: return test(NeOp<C>{});
    case BinaryOp::Lt: return test(LtOp<C>{});
    case BinaryOp::Le: return test(LeOp<C>{});
    case BinaryOp::Gt: return test(GtOp<C>{});
    case BinaryOp::Ge: return test(GeOp<C>{});
    case BinaryOp::And: return test(AndOp<C>{});
    case BinaryOp::Or: return test(OrOp<C>{});
    default: break;
  }
  if constexpr (!std::is_same_v<T, bool>) {
    auto arith = [&](auto g) { run2<T, T>(a, b, out, layout, n, stream, g); };
    switch (op) {
      case BinaryOp::Add: return arith(AddOp<C>{});
      case BinaryOp::Sub: return arith(SubOp<C>{});
      case BinaryOp::Mul: return arith(MulOp<C>{});
      case BinaryOp::Maximum: return arith(MaximumOp<C>{});
      case BinaryOp::Minimum: return arith(MinimumOp<C>{});
      default: break;
    }
    if constexpr (std::is_same_v<C, float>) {
      switch (op) {
        case BinaryOp::Div: return arith(DivOp{});
        case BinaryOp::ReluGrad: return arith(ReluGradOp{});
        case BinaryOp::GeluErfGrad: return arith(GeluErfGradOp{});
        case BinaryOp::GeluTanhGrad: return arith(GeluTanhGradOp{});
        case BinaryOp::SigmoidGrad: return arith(SigmoidGradOp{});
        case BinaryOp::TanhGrad: return arith(TanhGradOp{});
        default: break;
      }
    }
  }
  throw std::invalid_argument("binary_map: op not defined for this dtype");
}

}  // namespace

void unary_map(UnaryOp op, const void* x, void* out, DType dtype, double alpha, const StridedLayout& layout,
               int64_t n, rt::Stream stream) {
  if (n == 0) return;
  VB_CORE_DISPATCH(dtype, unary_typed<T>(op, x, out, alpha, layout, n, stream));
}

void binary_map(BinaryOp op, const void* a, const void* b, void* out, DType dtype, const StridedLayout& layout,
                int64_t n, rt::Stream stream) {
  if (n == 0) return;
  VB_CORE_DISPATCH(dtype, binary_typed<T>(op, a, b, out, layout, n, stream));
}

void where_map(const bool* cond, const void* a, const void* b, void* out, DType dtype, const StridedLayout& layout,
               int64_t n, rt::Stream stream) {
  if (n == 0) return;
  VB_CORE_DISPATCH(dtype, {
    launch(where_kernel<T>, {grid_for(n), kThreads, 0, stream}, cond, static_cast<const T*>(a),
           static_cast<const T*>(b), static_cast<T*>(out), layout, n);
  });
}

}  // namespace vb::VB_KERNEL_NS
