// The attention kernels (kernels/cuda/attention.cu) on a real GPU, against the CPU backend: small odd
// shapes with masks and dropout in float32, bfloat16 and float16, and the BERT shapes (B=32, H=12,
// T=128 and 512, D=64) with a padding mask, checked on a slice of (batch, head) pairs. Exits 77
// (skipped) without a GPU or without the CUDA build.
#include "tests/support/gpu_only.h"
#include <doctest/doctest.h>

#include <cstdlib>

#include "kernels/runtime.h"

#if defined(VB_HAVE_CUDA)

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/attention.h"
#include "tensor/tensor.h"

namespace {

namespace rt = vb::rt::cuda;
using vb::DType;
using vb::Shape;
using vb::Tensor;

float to_float(float x) { return x; }
float to_float(__half x) { return __half2float(x); }
float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <class T>
T from_float(float x) {
  if constexpr (std::is_same_v<T, __half>)
    return __float2half_rn(x);
  else if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __float2bfloat16_rn(x);
  else
    return x;
}

template <class T>
DType dtype_of() {
  if constexpr (std::is_same_v<T, __half>)
    return DType::Float16;
  else if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return DType::BFloat16;
  else
    return DType::Float32;
}

// Device memory poisoned with 0xFF bytes (NaN), or a copy of host floats converted to T.
template <class T>
struct DeviceBuffer {
  T* data;
  std::size_t size;
  explicit DeviceBuffer(std::size_t n) : data(static_cast<T*>(rt::malloc(std::max<std::size_t>(n, 1) * sizeof(T)))), size(n) {
    rt::memset(data, 0xFF, n * sizeof(T));
  }
  explicit DeviceBuffer(const std::vector<float>& host) : DeviceBuffer(host.size()) {
    std::vector<T> converted(host.size());
    for (std::size_t i = 0; i < host.size(); ++i) converted[i] = from_float<T>(host[i]);
    rt::copy(data, converted.data(), size * sizeof(T));
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { rt::free(data); }
  std::vector<float> floats() const {
    std::vector<T> host(size);
    rt::copy(host.data(), data, size * sizeof(T));
    std::vector<float> out(size);
    for (std::size_t i = 0; i < size; ++i) out[i] = to_float(host[i]);
    return out;
  }
};

struct Case {
  int64_t B, H, Tq, Tk, D;
  bool padding = false;  // (B, 1, 1, Tk) 0/−inf mask expanded with stride-0 dims
  double dropout_p = 0.0;
  int64_t check_pairs = -1;  // compare only the first pairs (b·H + h) with the CPU; −1: all
};

struct Results {
  std::vector<float> out, lse, gq, gk, gv;
};

template <class T>
std::vector<float> random_values(int64_t n, float amplitude, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-amplitude, amplitude);
  std::vector<float> x(static_cast<std::size_t>(n));
  for (float& e : x) e = to_float(from_float<T>(dist(rng)));  // representable in T
  return x;
}

// |got − want| ≤ atol + rtol·|want| over the first n elements (equal infinities pass).
void check_close(const std::vector<float>& got, const std::vector<float>& want, std::size_t n, double atol,
                 double rtol, const std::string& what) {
  std::size_t bad = 0, worst = 0;
  double worst_excess = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (std::isinf(got[i]) && got[i] == want[i]) continue;
    const double excess = std::abs(double(got[i]) - want[i]) - (atol + rtol * std::abs(double(want[i])));
    if (!(excess <= 0)) {
      ++bad;
      if (!(excess <= worst_excess)) {
        worst_excess = std::isnan(excess) ? INFINITY : excess;
        worst = i;
      }
    }
  }
  CHECK_MESSAGE(bad == 0, what, ": ", bad, " of ", n, " elements outside atol=", atol, " rtol=", rtol,
                "; worst at ", worst, ": ", n ? got[worst] : 0.0f, " vs ", n ? want[worst] : 0.0f);
}

template <class T>
void check_case(const Case& c, double atol, double rtol) {
  INFO("B=", c.B, " H=", c.H, " Tq=", c.Tq, " Tk=", c.Tk, " D=", c.D, " padding=", c.padding, " p=", c.dropout_p,
       " ", dtype_name(dtype_of<T>()));
  std::mt19937 rng(unsigned(c.B * 131 + c.Tq * 7 + c.D));
  const std::vector<float> q = random_values<T>(c.B * c.H * c.Tq * c.D, 2.0f, rng),
                           k = random_values<T>(c.B * c.H * c.Tk * c.D, 2.0f, rng),
                           v = random_values<T>(c.B * c.H * c.Tk * c.D, 1.0f, rng),
                           gout = random_values<T>(c.B * c.H * c.Tq * c.D, 1.0f, rng);
  std::vector<float> mask;
  for (int64_t b = 0; b < c.B && c.padding; ++b) {
    const int64_t valid = std::max<int64_t>(1, c.Tk - (b * 37) % c.Tk);  // various padded lengths
    for (int64_t j = 0; j < c.Tk; ++j) mask.push_back(j < valid ? 0.0f : -INFINITY);
  }
  const double scale = 1.0 / std::sqrt(double(c.D));
  const uint64_t seed = 42, offset = 4096;

  // GPU, every pair.
  DeviceBuffer<T> dq(q), dk(k), dv(v), dgout(gout);
  DeviceBuffer<float> dmask(mask);
  vb::AttentionInputs<T, float> args;
  args.shape = {c.B, c.H, c.Tq, c.Tk, c.D};
  args.q = dq.data;
  args.k = dk.data;
  args.v = dv.data;
  if (c.padding) {
    args.mask = dmask.data;
    args.mask_stride[0] = c.Tk;
    args.mask_stride[3] = 1;
  }
  args.scale = scale;
  args.dropout_p = c.dropout_p;
  args.seed = seed;
  args.offset = offset;
  const std::size_t nq = q.size(), nk = k.size();
  DeviceBuffer<T> out(nq), gq(nq), gk(nk), gv(nk);
  DeviceBuffer<float> lse(std::size_t(c.B * c.H * c.Tq)), delta(vb::attention_backward_workspace(args.shape));
  vb::cuda::attention_forward(args, out.data, lse.data);
  vb::cuda::attention_backward(args, out.data, dgout.data, lse.data, delta.data, gq.data, gk.data, gv.data);
  rt::synchronize();
  const Results gpu{out.floats(), lse.floats(), gq.floats(), gk.floats(), gv.floats()};

  // CPU, on the first pairs (the leading slice of every tensor: without dropout the pairs are
  // independent; with dropout the slice keeps its mask indices, which start at pair 0).
  const int64_t pairs = c.check_pairs < 0 ? c.B * c.H : c.check_pairs;
  REQUIRE((c.dropout_p == 0 || pairs == c.B * c.H || pairs % c.H == 0));
  const int64_t Bs = pairs / c.H;
  REQUIRE(Bs * c.H == pairs);
  const Shape qs{Bs, c.H, c.Tq, c.D}, ks{Bs, c.H, c.Tk, c.D};
  auto head = [](const std::vector<float>& x, int64_t n) { return std::vector<float>(x.begin(), x.begin() + n); };
  const DType dt = DType::Float32;  // the inputs are representable in T: the float32 result is the reference
  const Tensor tq = Tensor::from_vector(head(q, Bs * c.H * c.Tq * c.D), qs, dt),
               tk = Tensor::from_vector(head(k, Bs * c.H * c.Tk * c.D), ks, dt),
               tv = Tensor::from_vector(head(v, Bs * c.H * c.Tk * c.D), ks, dt),
               tg = Tensor::from_vector(head(gout, Bs * c.H * c.Tq * c.D), qs, dt);
  Tensor tmask;
  if (c.padding)
    tmask = Tensor::from_vector(head(mask, Bs * c.Tk), {Bs, 1, 1, c.Tk}).as_strided({Bs, c.H, c.Tq, c.Tk},
                                                                                       {c.Tk, 0, 0, 1}, 0);
  Tensor tout = Tensor::empty(qs, dt), tlse = Tensor::empty({Bs, c.H, c.Tq}), tgq = Tensor::empty(qs, dt),
         tgk = Tensor::empty(ks, dt), tgv = Tensor::empty(ks, dt);
  vb::CpuBackend& cpu = vb::cpu_backend();
  cpu.attention(tq, tk, tv, tmask, scale, c.dropout_p, seed, offset, tout, tlse);
  cpu.attention_backward(tq, tk, tv, tmask, tout, tg, tlse, scale, c.dropout_p, seed, offset, tgq, tgk, tgv);
  auto floats = [](const Tensor& t) {
    const std::vector<double> d = t.to_vector();
    return std::vector<float>(d.begin(), d.end());
  };
  check_close(gpu.out, floats(tout), std::size_t(tout.numel()), atol, rtol, "out");
  check_close(gpu.lse, floats(tlse), std::size_t(tlse.numel()), 1e-4, 1e-5, "lse");
  check_close(gpu.gq, floats(tgq), std::size_t(tgq.numel()), atol, rtol, "gq");
  check_close(gpu.gk, floats(tgk), std::size_t(tgk.numel()), atol, rtol, "gk");
  check_close(gpu.gv, floats(tgv), std::size_t(tgv.numel()), atol, rtol, "gv");
}

}  // namespace

// The reference is the CPU backend in float32 on the same (T-representable) inputs. Tolerances: float32
// differs from the CPU only in summation order: 1e-5 absolute, 1e-4 relative. bf16/f16 round the
// outputs (and out before Δ) to T: under the emulator the kernel's largest error against float64 on
// the small cases was 7.4e-3 (bf16) and 9.3e-4 (f16), so 2e-2 and 4e-3, absolute and relative.
TEST_CASE("attention on the GPU: small odd shapes match the CPU backend") {
  check_case<float>({2, 2, 7, 13, 16}, 1e-5, 1e-4);
  check_case<float>({1, 2, 37, 45, 24, true}, 1e-5, 1e-4);
  check_case<float>({1, 2, 33, 40, 40, true, 0.2}, 1e-5, 1e-4);
  check_case<float>({2, 1, 9, 70, 128, true, 0.1}, 1e-5, 1e-4);
  check_case<__nv_bfloat16>({2, 2, 19, 50, 64, true, 0.1}, 2e-2, 2e-2);
  check_case<__half>({2, 2, 19, 50, 96, true}, 4e-3, 4e-3);
}

TEST_CASE("attention on the GPU: BERT shapes (B=32, H=12, T=128 and 512, D=64), checked on a slice") {
  for (int64_t T : {128, 512}) {
    check_case<float>({32, 12, T, T, 64, true, 0.0, 24}, 5e-5, 1e-4);  // sums over 512 terms
    check_case<__nv_bfloat16>({32, 12, T, T, 64, true, 0.1, 24}, 2e-2, 2e-2);
    check_case<__half>({32, 12, T, T, 64, true, 0.0, 24}, 4e-3, 4e-3);
  }
}

#endif  // VB_HAVE_CUDA
