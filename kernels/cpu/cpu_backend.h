// The CPU backend: the reference every other backend is tested against, and what runs on a machine
// without a GPU. Its methods are defined across kernels/cpu/*.cpp, one file per op family.
#pragma once
#include "kernels/backend.h"

namespace vb {

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }

  // Every method of kernels/backend_methods.def.
#define VB_BACKEND_METHOD(method, params, args) void method params override;
#include "kernels/backend_methods.def"
#undef VB_BACKEND_METHOD
};

CpuBackend& cpu_backend();

}  // namespace vb
