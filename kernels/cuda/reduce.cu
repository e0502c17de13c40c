// Row reductions: out[r] = reduce over x[r, 0..cols) of a contiguous (rows, cols) matrix. The backend
// brings any reduction to this form by permuting the reduced dims innermost (a copy when they are not
// already there).
//
// Math: sum Σ_c x[r, c]; mean = sum / cols; amax / amin (NaN if any element is NaN, as in PyTorch);
// argmax = the first c with x[r, c] maximal (NaN counts as maximal). Backwards are elementwise ops of
// the autograd layer (sum: broadcast g; amax: g·[x = y] / #ties).
// Cost: rows·cols − rows FLOPs; reads every element once (4 bytes per float32 element), writes rows
// outputs. Floating sums accumulate in float32, integer sums in int64.
//
// Launch: one block per row (grid-stride over rows), 256 threads, fewer (a multiple of 32) for short
// rows. Thread t folds elements t, t + blockDim, ... in order; each warp folds its 32 partials by
// __shfl_down_sync (offsets 16, 8, 4, 2, 1); warp 0 folds the warps' results from shared memory. The
// order of every addition is fixed by the layout alone: deterministic, no atomics.
#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/launch.h"
#include "kernels/cuda/core_device.h"

namespace vb::VB_KERNEL_NS {
namespace {

using namespace core;

constexpr unsigned full_mask = 0xffffffffu;

template <class T>
__device__ __forceinline__ bool is_nan(T v) {
  return v != v;
}

template <class T, class A>
struct SumReducer {
  using Acc = A;
  __device__ Acc init() const { return Acc(0); }
  __device__ Acc load(T v, int64_t) const { return Acc(convert<compute_t<T>>(v)); }
  __device__ Acc combine(Acc a, Acc b) const { return a + b; }
  __device__ Acc shuffle_down(Acc a, unsigned delta) const { return __shfl_down_sync(full_mask, a, delta); }
};

// Max (Sign = 1) or min (Sign = −1); a NaN wins.
template <class T, int Sign>
struct ExtremumReducer {
  using Acc = compute_t<T>;
  __device__ Acc init() const {
    if constexpr (std::is_floating_point_v<Acc>) return Sign > 0 ? -INFINITY : INFINITY;
    else return Sign > 0 ? std::numeric_limits<Acc>::lowest() : std::numeric_limits<Acc>::max();
  }
  __device__ Acc load(T v, int64_t) const { return convert<Acc>(v); }
  __device__ Acc combine(Acc a, Acc b) const {
    if (is_nan(a)) return a;
    if (is_nan(b)) return b;
    return (Sign > 0 ? b > a : b < a) ? b : a;
  }
  __device__ Acc shuffle_down(Acc a, unsigned delta) const { return __shfl_down_sync(full_mask, a, delta); }
};

template <class C>
struct ArgAcc {
  C value;
  int64_t index;  // −1: nothing seen yet
};

template <class T>
struct ArgmaxReducer {
  using C = std::conditional_t<std::is_same_v<compute_t<T>, bool>, int, compute_t<T>>;
  using Acc = ArgAcc<C>;
  __device__ Acc init() const { return {C(0), -1}; }
  __device__ Acc load(T v, int64_t index) const { return {convert<C>(v), index}; }
  // b wins when a is empty, b is larger, b is NaN and a is not, or they tie and b comes first.
  __device__ Acc combine(Acc a, Acc b) const {
    if (b.index < 0) return a;
    if (a.index < 0) return b;
    const bool a_nan = is_nan(a.value), b_nan = is_nan(b.value);
    if (a_nan != b_nan) return a_nan ? a : b;
    if (!a_nan && b.value != a.value) return b.value > a.value ? b : a;
    return b.index < a.index ? b : a;
  }
  __device__ Acc shuffle_down(Acc a, unsigned delta) const {
    return {__shfl_down_sync(full_mask, a.value, delta), __shfl_down_sync(full_mask, a.index, delta)};
  }
};

template <class R, class Acc>
__device__ Acc block_reduce(const R& r, Acc v, Acc* warp_results) {
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  for (unsigned delta = 16; delta > 0; delta /= 2) v = r.combine(v, r.shuffle_down(v, delta));
  if (lane == 0) warp_results[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < warps ? warp_results[lane] : r.init();
    for (unsigned delta = 16; delta > 0; delta /= 2) v = r.combine(v, r.shuffle_down(v, delta));
  }
  return v;  // the row's result in thread 0
}

// blockDim.x is a multiple of 32. Finish maps (Acc, cols) to the output type.
template <class T, class O, class R, class Finish>
__global__ void reduce_rows_kernel(const T* x, O* out, int64_t rows, int64_t cols, R r, Finish finish) {
  using Acc = typename R::Acc;
  __shared__ Acc warp_results[32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* p = x + row * cols;
    Acc v = r.init();
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) v = r.combine(v, r.load(p[c], c));
    v = block_reduce(r, v, warp_results);
    if (threadIdx.x == 0) out[row] = finish(v, cols);
    __syncthreads();  // warp_results is reused by the next row
  }
}

template <class O>
struct FinishSum {
  double scale;  // 1 for sums, 1/cols for means
  template <class Acc>
  __device__ O operator()(Acc a, int64_t) const {
    if constexpr (std::is_integral_v<Acc>) return convert<O>(a);
    else return convert<O>(static_cast<float>(double(a) * scale));
  }
};
template <class O>
struct FinishValue {
  template <class Acc>
  __device__ O operator()(Acc a, int64_t) const { return convert<O>(a); }
};
struct FinishIndex {
  template <class Acc>
  __device__ int64_t operator()(Acc a, int64_t) const { return a.index; }
};

template <class T, class O>
void reduce_typed(ReduceOp op, const T* x, O* out, int64_t rows, int64_t cols, rt::Stream stream) {
  const unsigned threads =
      cols >= int64_t(kThreads) ? kThreads : static_cast<unsigned>(cols <= 32 ? 32 : (cols + 31) / 32 * 32);
#if defined(VB_EMULATOR)
  const unsigned blocks = static_cast<unsigned>(rows < 16 ? rows : 16);
#else
  const unsigned blocks = static_cast<unsigned>(rows < 65535 ? rows : 65535);
#endif
  const LaunchConfig config{blocks, threads, 0, stream};
  using C = compute_t<T>;
  switch (op) {
    case ReduceOp::Sum:
    case ReduceOp::Mean: {
      using A = std::conditional_t<std::is_floating_point_v<C>, float, int64_t>;
      const double scale = op == ReduceOp::Mean ? 1.0 / double(cols) : 1.0;
      return launch(reduce_rows_kernel<T, O, SumReducer<T, A>, FinishSum<O>>, config, x, out, rows, cols,
                    SumReducer<T, A>{}, FinishSum<O>{scale});
    }
    case ReduceOp::Amax:
      return launch(reduce_rows_kernel<T, O, ExtremumReducer<T, 1>, FinishValue<O>>, config, x, out, rows, cols,
                    ExtremumReducer<T, 1>{}, FinishValue<O>{});
    case ReduceOp::Amin:
      return launch(reduce_rows_kernel<T, O, ExtremumReducer<T, -1>, FinishValue<O>>, config, x, out, rows, cols,
                    ExtremumReducer<T, -1>{}, FinishValue<O>{});
    case ReduceOp::Argmax:
      if constexpr (std::is_same_v<O, int64_t>) {
        return launch(reduce_rows_kernel<T, O, ArgmaxReducer<T>, FinishIndex>, config, x, out, rows, cols,
                      ArgmaxReducer<T>{}, FinishIndex{});
      }
      break;
  }
  throw std::invalid_argument("reduce_rows: argmax writes int64");
}

}  // namespace

void reduce_rows(ReduceOp op, const void* x, DType x_dtype, void* out, DType out_dtype, int64_t rows, int64_t cols,
                 rt::Stream stream) {
  if (rows == 0) return;
  VB_CORE_DISPATCH(x_dtype, {
    using X = T;
    if (out_dtype == DType::Int64) {
      reduce_typed(op, static_cast<const X*>(x), static_cast<int64_t*>(out), rows, cols, stream);
    } else {
      reduce_typed(op, static_cast<const X*>(x), static_cast<X*>(out), rows, cols, stream);
    }
  });
}

}  // namespace vb::VB_KERNEL_NS
