// Copies, conversions, fills and random draws on the CPU.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <string_view>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"
#include "tensor/philox.h"

namespace vb {

namespace cpu {

int64_t parallel_grain_for(const char* wait_policy) {
  constexpr int64_t kSpinning = 32768, kPassive = 8 * kSpinning;
  if (!wait_policy) return kSpinning;
  // As libgomp reads it: surrounding white space ignored, the case too.
  std::string_view v(wait_policy);
  while (!v.empty() && std::isspace(static_cast<unsigned char>(v.front()))) v.remove_prefix(1);
  while (!v.empty() && std::isspace(static_cast<unsigned char>(v.back()))) v.remove_suffix(1);
  constexpr std::string_view kWord = "passive";
  const bool passive = v.size() == kWord.size() && std::equal(v.begin(), v.end(), kWord.begin(), [](char a, char b) {
                         return std::tolower(static_cast<unsigned char>(a)) == b;
                       });
  return passive ? kPassive : kSpinning;
}

Tensor contiguous(const Tensor& t) {
  if (t.is_contiguous()) return t;
  Tensor out = Tensor::empty(t.shape(), t.dtype(), t.device());
  cpu_backend().copy(t, out);
  return out;
}

Tensor float32_contiguous(const Tensor& t) {
  if (t.dtype() == DType::Float32) return contiguous(t);
  Tensor out = Tensor::empty(t.shape(), DType::Float32, t.device());
  cpu_backend().copy(t, out);
  return out;
}

void copy_into(Tensor& dst, const Tensor& src) { cpu_backend().copy(src, dst); }

}  // namespace cpu

CpuBackend& cpu_backend() {
  static CpuBackend b;
  return b;
}

void CpuBackend::copy(const Tensor& src, Tensor& dst) {
  VB_CHECK(src.shape() == dst.shape(), "copy: source shape {} differs from destination shape {}",
           shape_str(src.shape()), shape_str(dst.shape()));
  char* dbase = static_cast<char*>(dst.data_ptr());
  const char* sbase = static_cast<const char*>(src.data_ptr());
  VB_DISPATCH(src.dtype(), "copy", {
    using S = T;
    VB_DISPATCH(dst.dtype(), "copy", {
      using D = T;
      cpu::for_each_strided<2>(dst.shape(), {dst.strides(), src.strides()}, [&](auto off, int64_t n, auto st) {
        D* d = reinterpret_cast<D*>(dbase) + off[0];
        const S* s = reinterpret_cast<const S*>(sbase) + off[1];
        if constexpr (std::is_same_v<S, D>) {
          if (st[0] == 1 && st[1] == 1) {
            if (n >= 16) {
              std::memcpy(d, s, size_t(n) * sizeof(D));
            } else {
              for (int64_t i = 0; i < n; ++i) d[i] = s[i];  // a few values: no call to memcpy
            }
            return;
          }
        }
        for (int64_t i = 0; i < n; ++i) d[i * st[0]] = scalar_cast<D>(s[i * st[1]]);
      });
    });
  });
}

namespace {

template <typename T>
void fill_typed(T* p, int64_t n, T v) {
#pragma omp parallel for if (n >= cpu::kParallelGrain)
  for (int64_t i = 0; i < n; ++i) p[i] = v;
}

template <typename T>
void random_typed(T* p, int64_t n, RandomKind kind, double a, double b, uint64_t seed, uint64_t offset) {
#pragma omp parallel for if (n >= cpu::kParallelGrain / 8)
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t c = offset + uint64_t(i);
    switch (kind) {
      case RandomKind::Randint: p[i] = scalar_cast<T>(philox_randint(seed, c, int64_t(a), int64_t(b))); break;
      case RandomKind::Uniform: p[i] = scalar_cast<T>(a + (b - a) * double(philox_uniform(seed, c))); break;
      case RandomKind::Normal: p[i] = scalar_cast<T>(a + b * double(philox_normal(seed, c))); break;
    }
  }
}

}  // namespace

void CpuBackend::fill(Tensor& dst, double value) {
  VB_DISPATCH(dst.dtype(), "fill", fill_typed(static_cast<T*>(dst.data_ptr()), dst.numel(), scalar_cast<T>(value)));
}

void CpuBackend::arange(Tensor& dst, double start, double step) {
  VB_DISPATCH(dst.dtype(), "arange", {
    T* p = static_cast<T*>(dst.data_ptr());
    for (int64_t i = 0; i < dst.numel(); ++i) {
      if constexpr (std::is_integral_v<T>) p[i] = T(int64_t(start) + i * int64_t(step));
      else p[i] = scalar_cast<T>(start + double(i) * step);
    }
  });
}

void CpuBackend::random(Tensor& dst, RandomKind kind, double a, double b, uint64_t seed, uint64_t offset) {
  VB_DISPATCH(dst.dtype(), "random",
              random_typed(static_cast<T*>(dst.data_ptr()), dst.numel(), kind, a, b, seed, offset));
}

}  // namespace vb
