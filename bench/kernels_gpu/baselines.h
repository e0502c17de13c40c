// The vendor libraries that bench_kernels_gpu measures beside our kernels, loaded at run time: the benchmark
// links only libvideobert, and cuDNN may be missing from a machine (or live in PyTorch's wheel: point
// $VB_CUDNN_LIB at it). cublaslt.cpp: the GEMM baseline (and the GEMM ceiling); cudnn.cpp: the conv baseline.
// Only a build with the CUDA backend has them; cuDNN's also needs cudnn.h at build time (VB_BENCH_CUDNN).
#pragma once

#include "bench/kernels_gpu/cases.h"

#if defined(VB_HAVE_CUDA)
#include <dlfcn.h>

#include <memory>
#include <string>
#include <vector>

#if __has_include(<cudnn.h>)
#define VB_BENCH_CUDNN 1
#endif

namespace vb::bench::kernels_gpu {

// cuBLASLt on a GEMM set [a, b, out] (gemm_set), float32 accumulation; null when cuBLASLt cannot be loaded.
std::unique_ptr<Baseline> make_lt_gemm(const GemmShape& g, DType t, const std::vector<Set>& sets);

#if defined(VB_BENCH_CUDNN)
enum class ConvPass { Forward, Data, Filter };
// cuDNN on a conv2d set (conv.cpp's: fwd [x, w, y], dgrad [gy, w, gx], wgrad [gy, x, gw]); null when cuDNN
// cannot be loaded.
std::unique_ptr<Baseline> make_cudnn_conv(ConvPass pass, const ConvShape& s, DType t, const std::vector<Set>& sets);
#endif

// Why a library could not be loaded (printed under the table).
inline std::vector<std::string> library_notes;

// ---- loading, for cublaslt.cpp and cudnn.cpp ----

inline void* open_library(const std::vector<std::string>& names, std::string& tried) {
  for (const std::string& n : names) {
    if (n.empty()) continue;
    if (void* h = dlopen(n.c_str(), RTLD_NOW | RTLD_GLOBAL)) return h;
    tried += (tried.empty() ? "" : "; ") + n + ": " + dlerror();
  }
  return nullptr;
}

template <class F>
F symbol(void* library, const char* library_name, const char* name) {
  void* p = dlsym(library, name);
  VB_CHECK(p != nullptr, "{} has no symbol {}", library_name, name);
  return reinterpret_cast<F>(p);
}

// A member holding the entry point `fn`, typed from the library's header, and its loading.
#define VB_BENCH_SYMBOL(fn) decltype(&::fn) fn = nullptr
#define VB_BENCH_LOAD(fn) fn = symbol<decltype(&::fn)>(library, library_name, #fn)

}  // namespace vb::bench::kernels_gpu

#endif  // VB_HAVE_CUDA
