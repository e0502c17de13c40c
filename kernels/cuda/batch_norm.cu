// Batch normalisation over x (M, C): an NHWC tensor flattened, so channel c is column c and the C
// channels of a row are contiguous.
//
// Forward (training): per channel, Welford statistics over the M rows give mean and the biased
//   var = M2 / M; invstd = 1/√(var + eps); y = (x − mean)·(invstd·w) + b. The running statistics move
//   towards the batch's: running_mean ← (1 − momentum)·running_mean + momentum·mean,
//   running_var ← (1 − momentum)·running_var + momentum·M2/(M − 1) (unbiased; M2/M when M = 1).
// Forward (eval): mean and var are the running statistics. Both save mean and invstd (float32).
// Backward, with x̂ = (x − mean)·invstd, sum_gy = Σ_m gy, sum_gy_xhat = Σ_m gy·x̂ per channel:
//   gw = sum_gy_xhat, gb = sum_gy,
//   training: gx = a·gy + k·x̂ + d with a = w·invstd, k = −a·sum_gy_xhat/M, d = −a·sum_gy/M
//   eval:     gx = a·gy
// Cost: forward reads x twice (statistics, then y) and writes y: 3·M·C elements, ~10·M·C FLOPs;
// backward reads gy and x twice and writes gx: 5·M·C elements, ~10·M·C FLOPs. Memory-bound.
//
// Launch shapes. Column statistics: grid (⌈C/32⌉, slabs) of (32, 8) threads: block (cb, s) owns 32
// consecutive channels (one coalesced 128-byte row segment per warp in float32) and slab s of the
// rows (batch_norm_slabs fixed slabs); thread (tx, ty) runs over rows ty, ty + 8, … of the slab,
// the 8 partials are combined in ty order in shared memory and the slab's (count, mean, M2) or sums
// go to the workspace; a per-channel kernel then combines the slabs in slab order (Chan's formula
// for Welford triples). Every reduction has a fixed shape, so the result is the same bits whatever
// the schedule, with no atomics. Elementwise passes: one thread per element.
// Why Welford: E[x²] − E[x]² cancels catastrophically when |mean| ≫ std; the running (mean, M2)
// pairs never subtract two large numbers.
#include "kernels/cuda/conv.h"

#include <stdexcept>
#include <string>

#include "kernels/cuda/load_store.h"
#include "kernels/launch.h"

namespace vb::VB_KERNEL_NS {
namespace {

constexpr int kChannels = 32, kRowLanes = 8, kThreads = 256;

// Running statistics of some values: their count, mean and Σ (v − mean)².
struct Welford {
  float count = 0.0f, mean = 0.0f, m2 = 0.0f;
  __device__ void add(float v) {
    count += 1.0f;
    const float d = v - mean;
    mean += d / count;
    m2 += d * (v - mean);
  }
};

// The statistics of the union of a's and b's values (Chan et al.).
__device__ __forceinline__ Welford merge(Welford a, const Welford& b) {
  if (b.count == 0.0f) return a;
  if (a.count == 0.0f) return b;
  const float n = a.count + b.count, d = b.mean - a.mean;
  a.mean += d * (b.count / n);
  a.m2 += b.m2 + d * d * (a.count * b.count / n);
  a.count = n;
  return a;
}

// Rows [lo, hi) of slab `slab`.
__device__ __forceinline__ void slab_rows(int64_t M, int slabs, int slab, int64_t& lo, int64_t& hi) {
  const int64_t per = (M + slabs - 1) / slabs;
  lo = slab * per;
  hi = lo + per < M ? lo + per : M;
}

// partial[(slab·C + c)·3 ..] = the slab's (count, mean, M2) of channel c. Launch: see the file comment;
// 3·256 floats of dynamic shared memory.
template <class T>
__global__ void statistics_kernel(const T* x, int64_t M, int64_t C, int slabs, float* partial) {
  VB_DYNAMIC_SHARED(float, lanes);  // (3, kRowLanes, kChannels)
  const int tx = static_cast<int>(threadIdx.x), ty = static_cast<int>(threadIdx.y);
  const int64_t c = int64_t(blockIdx.x) * kChannels + tx;
  const int slab = static_cast<int>(blockIdx.y);
  int64_t lo, hi;
  slab_rows(M, slabs, slab, lo, hi);
  Welford w;
  if (c < C)
    for (int64_t m = lo + ty; m < hi; m += kRowLanes) w.add(load(x[m * C + c]));
  const int at = ty * kChannels + tx;
  lanes[at] = w.count;
  lanes[kThreads + at] = w.mean;
  lanes[2 * kThreads + at] = w.m2;
  __syncthreads();
  if (ty != 0 || c >= C) return;
  Welford sum;
  for (int i = 0; i < kRowLanes; ++i) {
    const int j = i * kChannels + tx;
    sum = merge(sum, Welford{lanes[j], lanes[kThreads + j], lanes[2 * kThreads + j]});
  }
  float* out = partial + (slab * C + c) * 3;
  out[0] = sum.count;
  out[1] = sum.mean;
  out[2] = sum.m2;
}

// Per channel: the batch (training) or running (eval) mean and invstd, and the running update.
// Launch: ⌈C/256⌉ × 256.
template <class P>
__global__ void finalize_statistics_kernel(const float* partial, int slabs, int64_t M, int64_t C, bool training,
                                           float momentum, float eps, P* running_mean, P* running_var,
                                           float* save_mean, float* save_invstd) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  if (!training) {
    save_mean[c] = load(running_mean[c]);
    save_invstd[c] = 1.0f / sqrtf(load(running_var[c]) + eps);
    return;
  }
  Welford w;
  for (int s = 0; s < slabs; ++s) {
    const float* p = partial + (s * C + c) * 3;
    w = merge(w, Welford{p[0], p[1], p[2]});
  }
  const float var = w.m2 / static_cast<float>(M);
  save_mean[c] = w.mean;
  save_invstd[c] = 1.0f / sqrtf(var + eps);
  if (running_mean) running_mean[c] = store<P>((1.0f - momentum) * load(running_mean[c]) + momentum * w.mean);
  if (running_var) {
    const float unbiased = M > 1 ? w.m2 / static_cast<float>(M - 1) : var;
    running_var[c] = store<P>((1.0f - momentum) * load(running_var[c]) + momentum * unbiased);
  }
}

// y = (x − mean)·(invstd·w) + b. Launch: one thread per element.
template <class T, class P>
__global__ void normalize_kernel(const T* x, const P* w, const P* b, const float* mean, const float* invstd, T* y,
                                 int64_t M, int64_t C) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= M * C) return;
  const int64_t c = i % C;
  const float scale = invstd[c] * (w ? load(w[c]) : 1.0f);
  y[i] = store<T>((load(x[i]) - mean[c]) * scale + (b ? load(b[c]) : 0.0f));
}

// partial[(slab·C + c)·3 ..] = the slab's (Σ gy, Σ gy·x̂) of channel c. Launch: as statistics_kernel.
template <class T>
__global__ void gradient_sums_kernel(const T* gy, const T* x, const float* mean, const float* invstd, int64_t M,
                                     int64_t C, int slabs, float* partial) {
  VB_DYNAMIC_SHARED(float, lanes);  // (2, kRowLanes, kChannels)
  const int tx = static_cast<int>(threadIdx.x), ty = static_cast<int>(threadIdx.y);
  const int64_t c = int64_t(blockIdx.x) * kChannels + tx;
  const int slab = static_cast<int>(blockIdx.y);
  int64_t lo, hi;
  slab_rows(M, slabs, slab, lo, hi);
  float sum_gy = 0.0f, sum_gy_xhat = 0.0f;
  if (c < C) {
    const float mu = mean[c], is = invstd[c];
    for (int64_t m = lo + ty; m < hi; m += kRowLanes) {
      const float g = load(gy[m * C + c]);
      sum_gy += g;
      sum_gy_xhat += g * ((load(x[m * C + c]) - mu) * is);
    }
  }
  const int at = ty * kChannels + tx;
  lanes[at] = sum_gy;
  lanes[kThreads + at] = sum_gy_xhat;
  __syncthreads();
  if (ty != 0 || c >= C) return;
  float a = 0.0f, b = 0.0f;
  for (int i = 0; i < kRowLanes; ++i) {
    a += lanes[i * kChannels + tx];
    b += lanes[kThreads + i * kChannels + tx];
  }
  float* out = partial + (slab * C + c) * 3;
  out[0] = a;
  out[1] = b;
}

// Per channel: gw, gb (when asked for) and gx's coefficients (a, k, d) into coef (3, C).
// Launch: ⌈C/256⌉ × 256.
template <class P>
__global__ void finalize_gradients_kernel(const float* partial, int slabs, int64_t M, int64_t C, bool training,
                                          const P* w, const float* invstd, P* gw, P* gb, float* coef) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float sum_gy = 0.0f, sum_gy_xhat = 0.0f;
  for (int s = 0; s < slabs; ++s) {
    sum_gy += partial[(s * C + c) * 3];
    sum_gy_xhat += partial[(s * C + c) * 3 + 1];
  }
  if (gw) gw[c] = store<P>(sum_gy_xhat);
  if (gb) gb[c] = store<P>(sum_gy);
  const float a = (w ? load(w[c]) : 1.0f) * invstd[c];
  coef[c] = a;
  coef[C + c] = training ? -a * sum_gy_xhat / static_cast<float>(M) : 0.0f;
  coef[2 * C + c] = training ? -a * sum_gy / static_cast<float>(M) : 0.0f;
}

// gx = a·gy + k·x̂ + d. Launch: one thread per element.
template <class T>
__global__ void input_gradient_kernel(const T* gy, const T* x, const float* mean, const float* invstd,
                                      const float* coef, T* gx, int64_t M, int64_t C) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= M * C) return;
  const int64_t c = i % C;
  const float xhat = (load(x[i]) - mean[c]) * invstd[c];
  gx[i] = store<T>(coef[c] * load(gy[i]) + coef[C + c] * xhat + coef[2 * C + c]);
}

void check(bool ok, const char* op, const std::string& what) {
  if (!ok) throw std::invalid_argument(std::string(op) + ": " + what);
}

unsigned blocks(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

}  // namespace

template <class T, class P>
void batch_norm(const T* x, const P* w, const P* b, P* running_mean, P* running_var, bool training, double momentum,
                double eps, T* y, float* save_mean, float* save_invstd, float* workspace, int64_t M, int64_t C,
                rt::Stream stream) {
  check(M >= 0 && C > 0, "batch_norm", "expected x (M, C) with C > 0, got (" + std::to_string(M) + ", " +
                                           std::to_string(C) + ")");
  check(training || (running_mean && running_var), "batch_norm", "eval mode needs running_mean and running_var");
  check(!training || M > 0, "batch_norm", "training needs at least one row");
  const int slabs = static_cast<int>(batch_norm_slabs(M));
  if (training) {
    const dim3 grid(static_cast<unsigned>((C + kChannels - 1) / kChannels), static_cast<unsigned>(slabs));
    launch(statistics_kernel<T>, {grid, dim3(kChannels, kRowLanes), 3 * kThreads * sizeof(float), stream}, x, M, C,
           slabs, workspace);
  }
  launch(finalize_statistics_kernel<P>, {blocks(C), kThreads, 0, stream}, workspace, slabs, M, C, training,
         static_cast<float>(momentum), static_cast<float>(eps), running_mean, running_var, save_mean, save_invstd);
  if (M > 0)
    launch(normalize_kernel<T, P>, {blocks(M * C), kThreads, 0, stream}, x, w, b, save_mean, save_invstd, y, M, C);
}

template <class T, class P>
void batch_norm_backward(const T* gy, const T* x, const P* w, const float* save_mean, const float* save_invstd,
                         bool training, T* gx, P* gw, P* gb, float* workspace, int64_t M, int64_t C,
                         rt::Stream stream) {
  check(M >= 0 && C > 0, "batch_norm_backward", "expected x (M, C) with C > 0, got (" + std::to_string(M) + ", " +
                                                    std::to_string(C) + ")");
  const int slabs = static_cast<int>(batch_norm_slabs(M));
  float* coef = workspace + 3 * slabs * C;
  const dim3 grid(static_cast<unsigned>((C + kChannels - 1) / kChannels), static_cast<unsigned>(slabs));
  launch(gradient_sums_kernel<T>, {grid, dim3(kChannels, kRowLanes), 2 * kThreads * sizeof(float), stream}, gy, x,
         save_mean, save_invstd, M, C, slabs, workspace);
  launch(finalize_gradients_kernel<P>, {blocks(C), kThreads, 0, stream}, workspace, slabs, M, C, training, w,
         save_invstd, gw, gb, coef);
  if (gx && M > 0)
    launch(input_gradient_kernel<T>, {blocks(M * C), kThreads, 0, stream}, gy, x, save_mean, save_invstd, coef, gx,
           M, C);
}

#define VB_INSTANTIATE(T, P)                                                                                \
  template void batch_norm<T, P>(const T*, const P*, const P*, P*, P*, bool, double, double, T*, float*,   \
                                 float*, float*, int64_t, int64_t, rt::Stream);                             \
  template void batch_norm_backward<T, P>(const T*, const T*, const P*, const float*, const float*, bool,   \
                                          T*, P*, P*, float*, int64_t, int64_t, rt::Stream);
VB_INSTANTIATE(float, float)
VB_INSTANTIATE(__nv_bfloat16, float)
VB_INSTANTIATE(__nv_bfloat16, __nv_bfloat16)
VB_INSTANTIATE(__half, float)
VB_INSTANTIATE(__half, __half)
#undef VB_INSTANTIATE

}  // namespace vb::VB_KERNEL_NS
