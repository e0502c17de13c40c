// Batch normalisation over x (M, C): an NHWC tensor flattened, so channel c is column c.
//
// Forward (training): mean_c = Σ_m x[m, c] / M, var_c = Σ_m (x[m, c] − mean_c)² / M   (two passes, not
//   E[x²] − E[x]², which cancels catastrophically), invstd_c = 1/√(var_c + eps),
//   x̂ = (x − mean)·invstd, y = x̂·w + b  — computed as (x − mean)·scale + b with scale = invstd·w. The running statistics move towards the batch ones:
//   running_mean ← (1 − momentum)·running_mean + momentum·mean,
//   running_var  ← (1 − momentum)·running_var  + momentum·var·M/(M − 1)   (unbiased, as PyTorch).
// Forward (eval): mean and var are the running statistics.
// Backward, with sum_gy_c = Σ_m gy and sum_gy_xhat_c = Σ_m gy·x̂:
//   gw = sum_gy_xhat, gb = sum_gy,
//   training: gx = w·invstd/M · (M·gy − sum_gy − x̂·sum_gy_xhat)   (mean and var depend on x)
//   eval:     gx = gy·w·invstd                                      (they do not)
// Cost: forward reads x twice for the statistics and once more for y (3·M·C reads, M·C writes, ~5·M·C
// FLOPs); backward reads x and gy twice and writes gx (~8·M·C FLOPs). Memory-bound.
//
// Determinism: the column sums are taken over fixed blocks of kRowBlock rows, the blocks spread over the
// threads and their partial sums combined in block order, so results do not depend on the thread count.
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"

namespace vb {

namespace {

constexpr int64_t kRowBlock = 256;

// out[c] = Σ_m term(m, c) for c < C, accumulated in double, deterministically. `term(m, acc)` adds row
// m's contribution for every channel into acc (C doubles).
template <typename Term>
std::vector<double> column_sums(int64_t M, int64_t C, Term term) {
  const int64_t blocks = (M + kRowBlock - 1) / kRowBlock;
  std::vector<double> partial(size_t(blocks * C), 0.0);
#pragma omp parallel for schedule(static) if (M * C >= cpu::kParallelGrain)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    double* acc = partial.data() + blk * C;
    for (int64_t m = blk * kRowBlock; m < std::min(M, (blk + 1) * kRowBlock); ++m) term(m, acc);
  }
  std::vector<double> out(size_t(C), 0.0);
  for (int64_t blk = 0; blk < blocks; ++blk)
    for (int64_t c = 0; c < C; ++c) out[size_t(c)] += partial[size_t(blk * C + c)];
  return out;
}

// Per-channel vectors as doubles: read from and written to (C) tensors of any floating dtype.
std::vector<double> read_channels(const Tensor& t, int64_t C, double fallback) {
  if (!t.defined()) return std::vector<double>(size_t(C), fallback);
  std::vector<double> v(static_cast<size_t>(C));
  const Tensor tc = cpu::contiguous(t);
  VB_DISPATCH(tc.dtype(), "batch_norm", {
    const T* p = tc.data<T>();
    for (int64_t c = 0; c < C; ++c) v[size_t(c)] = scalar_cast<double>(p[c]);
  });
  return v;
}

void write_channels(Tensor& t, const std::vector<double>& v) {
  Tensor tmp = Tensor::from_vector(v, t.shape(), DType::Float64);
  cpu::copy_into(t, tmp);
}

// y = (x − mean)·scale + b. Subtracting the mean first keeps y accurate when |mean| ≫ std (the folded
// x·scale + shift would cancel two large numbers), and the mean is subtracted as hi + lo parts so that
// its rounding to T does not shift every x̂ (x − hi is exact when x is near the mean).
template <typename T>
void normalize(const T* x, T* y, int64_t M, int64_t C, const std::vector<double>& mean,
               const std::vector<double>& scale, const std::vector<double>& b) {
  std::vector<T> hi(static_cast<size_t>(C)), lo(static_cast<size_t>(C));
  for (size_t c = 0; c < size_t(C); ++c) {
    hi[c] = T(mean[c]);
    lo[c] = T(mean[c] - double(hi[c]));
  }
  const std::vector<T> sc(scale.begin(), scale.end()), bt(b.begin(), b.end());
#pragma omp parallel for schedule(static) if (M * C >= cpu::kParallelGrain)
  for (int64_t m = 0; m < M; ++m) {
    const T* xr = x + m * C;
    T* yr = y + m * C;
    for (int64_t c = 0; c < C; ++c) yr[c] = ((xr[c] - hi[size_t(c)]) - lo[size_t(c)]) * sc[size_t(c)] + bt[size_t(c)];
  }
}

template <typename T>
void forward(const T* x, T* y, int64_t M, int64_t C, const std::vector<double>& w, const std::vector<double>& b,
             bool training, double momentum, double eps, std::vector<double>& running_mean,
             std::vector<double>& running_var, std::vector<double>& mean, std::vector<double>& invstd) {
  if (training) {
    mean = column_sums(M, C, [&](int64_t m, double* acc) {
      const T* xr = x + m * C;
      for (int64_t c = 0; c < C; ++c) acc[c] += double(xr[c]);
    });
    for (double& v : mean) v /= double(M);
    std::vector<double> var = column_sums(M, C, [&](int64_t m, double* acc) {
      const T* xr = x + m * C;
      for (int64_t c = 0; c < C; ++c) {
        const double d = double(xr[c]) - mean[size_t(c)];
        acc[c] += d * d;
      }
    });
    for (int64_t c = 0; c < C; ++c) {
      const double biased = var[size_t(c)] / double(M);
      invstd[size_t(c)] = 1.0 / std::sqrt(biased + eps);
      if (!running_mean.empty()) {
        running_mean[size_t(c)] = (1 - momentum) * running_mean[size_t(c)] + momentum * mean[size_t(c)];
      }
      if (!running_var.empty()) {
        const double unbiased = M > 1 ? var[size_t(c)] / double(M - 1) : biased;
        running_var[size_t(c)] = (1 - momentum) * running_var[size_t(c)] + momentum * unbiased;
      }
    }
  } else {
    mean = running_mean;
    for (int64_t c = 0; c < C; ++c) invstd[size_t(c)] = 1.0 / std::sqrt(running_var[size_t(c)] + eps);
  }
  std::vector<double> scale(static_cast<size_t>(C));
  for (size_t c = 0; c < size_t(C); ++c) scale[c] = invstd[c] * w[c];
  normalize(x, y, M, C, mean, scale, b);
}

template <typename T>
void backward(const T* gy, const T* x, T* gx, int64_t M, int64_t C, const std::vector<double>& w,
              const std::vector<double>& mean, const std::vector<double>& invstd, bool training,
              std::vector<double>& sum_gy, std::vector<double>& sum_gy_xhat) {
  sum_gy = column_sums(M, C, [&](int64_t m, double* acc) {
    const T* g = gy + m * C;
    for (int64_t c = 0; c < C; ++c) acc[c] += double(g[c]);
  });
  sum_gy_xhat = column_sums(M, C, [&](int64_t m, double* acc) {
    const T* g = gy + m * C;
    const T* xr = x + m * C;
    for (int64_t c = 0; c < C; ++c) acc[c] += double(g[c]) * (double(xr[c]) - mean[size_t(c)]) * invstd[size_t(c)];
  });
  if (!gx) return;
  // gx = a·gy + k·x̂ + d per channel, x̂ = (x − mean)·invstd; eval has k = d = 0.
  std::vector<T> a(static_cast<size_t>(C)), k(static_cast<size_t>(C)), d(static_cast<size_t>(C)), mu(static_cast<size_t>(C)), is(static_cast<size_t>(C));
  for (size_t c = 0; c < size_t(C); ++c) {
    const double wi = w[c] * invstd[c];
    a[c] = T(wi);
    k[c] = training ? T(-wi * sum_gy_xhat[c] / double(M)) : T(0);
    d[c] = training ? T(-wi * sum_gy[c] / double(M)) : T(0);
    mu[c] = T(mean[c]);
    is[c] = T(invstd[c]);
  }
#pragma omp parallel for schedule(static) if (M * C >= cpu::kParallelGrain)
  for (int64_t m = 0; m < M; ++m) {
    const T* g = gy + m * C;
    const T* xr = x + m * C;
    T* o = gx + m * C;
    for (int64_t c = 0; c < C; ++c) o[c] = a[size_t(c)] * g[c] + k[size_t(c)] * ((xr[c] - mu[size_t(c)]) * is[size_t(c)]) + d[size_t(c)];
  }
}

}  // namespace

void CpuBackend::batch_norm(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& running_mean,
                            Tensor& running_var, bool training, double momentum, double eps, Tensor& y,
                            Tensor& save_mean, Tensor& save_invstd) {
  const int64_t M = x.size(0), C = x.size(1);
  const std::vector<double> wv = read_channels(w, C, 1.0), bv = read_channels(b, C, 0.0);
  std::vector<double> rm = running_mean.defined() ? read_channels(running_mean, C, 0.0) : std::vector<double>();
  std::vector<double> rv = running_var.defined() ? read_channels(running_var, C, 1.0) : std::vector<double>();
  std::vector<double> mean(static_cast<size_t>(C)), invstd(static_cast<size_t>(C));
  if (y.dtype() == DType::Float64) {
    const Tensor xc = cpu::contiguous(x);
    forward(xc.data<double>(), y.data<double>(), M, C, wv, bv, training, momentum, eps, rm, rv, mean, invstd);
  } else if (y.dtype() == DType::Float32) {
    const Tensor xc = cpu::contiguous(x);
    forward(xc.data<float>(), y.data<float>(), M, C, wv, bv, training, momentum, eps, rm, rv, mean, invstd);
  } else {
    const Tensor xc = cpu::float32_contiguous(x);
    Tensor tmp = Tensor::empty(y.shape(), DType::Float32, y.device());
    forward(xc.data<float>(), tmp.data<float>(), M, C, wv, bv, training, momentum, eps, rm, rv, mean, invstd);
    cpu::copy_into(y, tmp);
  }
  if (training && running_mean.defined()) write_channels(running_mean, rm);
  if (training && running_var.defined()) write_channels(running_var, rv);
  write_channels(save_mean, mean);
  write_channels(save_invstd, invstd);
}

void CpuBackend::batch_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& w, const Tensor& save_mean,
                                     const Tensor& save_invstd, bool training, Tensor& gx, Tensor& gw, Tensor& gb) {
  const int64_t M = x.size(0), C = x.size(1);
  const std::vector<double> wv = read_channels(w, C, 1.0);
  const std::vector<double> mean = read_channels(save_mean, C, 0.0), invstd = read_channels(save_invstd, C, 1.0);
  std::vector<double> sum_gy, sum_gy_xhat;
  const DType dt = x.dtype();
  if (dt == DType::Float64) {
    const Tensor gyc = cpu::contiguous(gy), xc = cpu::contiguous(x);
    backward(gyc.data<double>(), xc.data<double>(), gx.defined() ? gx.data<double>() : nullptr, M, C, wv, mean,
             invstd, training, sum_gy, sum_gy_xhat);
  } else if (dt == DType::Float32) {
    const Tensor gyc = cpu::contiguous(gy), xc = cpu::contiguous(x);
    backward(gyc.data<float>(), xc.data<float>(), gx.defined() ? gx.data<float>() : nullptr, M, C, wv, mean,
             invstd, training, sum_gy, sum_gy_xhat);
  } else {
    const Tensor gyc = cpu::float32_contiguous(gy), xc = cpu::float32_contiguous(x);
    Tensor tmp = gx.defined() ? Tensor::empty(gx.shape(), DType::Float32, gx.device()) : Tensor();
    backward(gyc.data<float>(), xc.data<float>(), tmp.defined() ? tmp.data<float>() : nullptr, M, C, wv, mean,
             invstd, training, sum_gy, sum_gy_xhat);
    if (gx.defined()) cpu::copy_into(gx, tmp);
  }
  if (gw.defined()) write_channels(gw, sum_gy_xhat);
  if (gb.defined()) write_channels(gb, sum_gy);
}

}  // namespace vb
