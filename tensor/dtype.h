// Element types. bfloat16 and float16 are stored as their IEEE bit patterns (the same bytes the CUDA
// kernels read as __nv_bfloat16 / __half); on the CPU they are converted to float32 for arithmetic.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <string_view>

#include "tensor/error.h"

namespace vb {

// Float64 exists for the CPU backend's float64 gradient checks and for users' data; the CUDA kernels
// take float32, bfloat16 and float16.
enum class DType : uint8_t { Float32, BFloat16, Float16, Int32, Int64, Bool, Float64 };

// bfloat16: the top 16 bits of a float32. Conversion rounds to nearest, ties to even; NaN stays NaN.
struct bf16 {
  uint16_t bits = 0;
  bf16() = default;
  bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
      bits = uint16_t((u >> 16) | 0x40);  // quiet NaN
    } else {
      u += 0x7fffu + ((u >> 16) & 1u);
      bits = uint16_t(u >> 16);
    }
  }
  operator float() const {
    uint32_t u = uint32_t(bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

// float16 (IEEE binary16): 1 sign, 5 exponent, 10 mantissa bits. Round to nearest even, with
// subnormals, overflow to infinity and NaN kept.
struct f16 {
  uint16_t bits = 0;
  f16() = default;
  f16(float f) { bits = from_float(f); }
  operator float() const { return to_float(bits); }

  static uint16_t from_float(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t abs = x & 0x7fffffffu;
    if (abs > 0x7f800000u) return uint16_t(sign | 0x7e00u);             // NaN
    if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);            // rounds to >= 65520: inf
    if (abs < 0x38800000u) {                                            // below 2^-14: subnormal half
      // value = abs as float; half subnormal step is 2^-24. Round |f| * 2^24 to nearest even.
      float a;
      std::memcpy(&a, &abs, 4);
      float scaled = a * 16777216.0f;  // exact: multiplication by a power of two
      uint32_t r = uint32_t(scaled);
      float frac = scaled - float(r);
      if (frac > 0.5f || (frac == 0.5f && (r & 1u))) ++r;
      return uint16_t(sign | r);
    }
    uint32_t mant = abs & 0x7fffffu;
    uint32_t exp = (abs >> 23) - 127 + 15;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // carry may roll into the exponent: correct
    return uint16_t(sign | h);
  }
  static float to_float(uint16_t h) {
    uint32_t sign = uint32_t(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t out;
    if (exp == 0) {
      if (mant == 0) {
        out = sign;
      } else {  // subnormal: mant * 2^-24
        float v = float(mant) * (1.0f / 16777216.0f);
        std::memcpy(&out, &v, 4);
        out |= sign;
      }
    } else if (exp == 31) {
      out = sign | 0x7f800000u | (mant << 13);
    } else {
      out = sign | ((exp - 15 + 127) << 23) | (mant << 13);
    }
    float f;
    std::memcpy(&f, &out, 4);
    return f;
  }
};

constexpr int64_t dtype_size(DType t) {
  switch (t) {
    case DType::Float32: return 4;
    case DType::BFloat16: return 2;
    case DType::Float16: return 2;
    case DType::Int32: return 4;
    case DType::Int64: return 8;
    case DType::Bool: return 1;
    case DType::Float64: return 8;
  }
  return 0;
}

constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::Float32: return "float32";
    case DType::BFloat16: return "bfloat16";
    case DType::Float16: return "float16";
    case DType::Int32: return "int32";
    case DType::Int64: return "int64";
    case DType::Bool: return "bool";
    case DType::Float64: return "float64";
  }
  return "?";
}

constexpr bool is_floating(DType t) {
  return t == DType::Float32 || t == DType::BFloat16 || t == DType::Float16 || t == DType::Float64;
}
constexpr bool is_half(DType t) { return t == DType::BFloat16 || t == DType::Float16; }

template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::Float32; }
template <> constexpr DType dtype_of<bf16>() { return DType::BFloat16; }
template <> constexpr DType dtype_of<f16>() { return DType::Float16; }
template <> constexpr DType dtype_of<int32_t>() { return DType::Int32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::Int64; }
template <> constexpr DType dtype_of<bool>() { return DType::Bool; }
template <> constexpr DType dtype_of<double>() { return DType::Float64; }

// Element conversion with PyTorch's rules: float → integer truncates toward zero, anything → bool is
// "!= 0", half types go through float32, and float64 is never squeezed through float32.
template <typename D, typename S>
inline D scalar_cast(S s) {
  if constexpr (std::is_same_v<D, S>) {
    return s;
  } else if constexpr (std::is_same_v<D, bool>) {
    if constexpr (std::is_same_v<S, bf16> || std::is_same_v<S, f16>) return float(s) != 0.0f;
    else return s != S(0);
  } else if constexpr (std::is_integral_v<D>) {
    if constexpr (std::is_integral_v<S>) return D(s);
    else if constexpr (std::is_same_v<S, double>) return D(std::trunc(s));
    else return D(std::trunc(float(s)));
  } else if constexpr (std::is_same_v<D, double>) {
    if constexpr (std::is_same_v<S, bf16> || std::is_same_v<S, f16>) return double(float(s));
    else return double(s);
  } else if constexpr (std::is_same_v<S, double> && !std::is_same_v<D, float>) {
    return D(float(s));  // double → half via float
  } else if constexpr (std::is_integral_v<S>) {
    return D(float(s));
  } else {
    return D(s);
  }
}

}  // namespace vb

template <>
struct fmt::formatter<vb::DType> : fmt::formatter<std::string_view> {
  auto format(vb::DType t, format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(vb::dtype_name(t), ctx);
  }
};

// VB_DISPATCH(dtype, T, ...): runs the body with T bound to the C++ type of `dtype`.
#define VB_DISPATCH_CASE(enumv, type, ...) \
  case ::vb::DType::enumv: {               \
    using T = type;                        \
    __VA_ARGS__;                           \
    break;                                 \
  }
#define VB_DISPATCH(dtype, opname, ...)                                                   \
  switch (dtype) {                                                                        \
    VB_DISPATCH_CASE(Float32, float, __VA_ARGS__)                                         \
    VB_DISPATCH_CASE(BFloat16, ::vb::bf16, __VA_ARGS__)                                   \
    VB_DISPATCH_CASE(Float16, ::vb::f16, __VA_ARGS__)                                     \
    VB_DISPATCH_CASE(Int32, int32_t, __VA_ARGS__)                                         \
    VB_DISPATCH_CASE(Int64, int64_t, __VA_ARGS__)                                         \
    VB_DISPATCH_CASE(Bool, bool, __VA_ARGS__)                                             \
    VB_DISPATCH_CASE(Float64, double, __VA_ARGS__)                                        \
  }
