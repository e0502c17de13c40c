#include "autograd/autocast.h"

#include "tensor/error.h"

namespace vb {

namespace {
thread_local std::optional<DType> g_autocast;
}

AutocastGuard::AutocastGuard(DType low) : previous_(g_autocast) {
  VB_CHECK(low == DType::BFloat16 || low == DType::Float16, "autocast: the low dtype must be bfloat16 or float16, got {}",
           low);
  g_autocast = low;
}

AutocastGuard::~AutocastGuard() { g_autocast = previous_; }

std::optional<DType> autocast_dtype(std::initializer_list<const Tensor*> inputs) {
  if (!g_autocast) return std::nullopt;
  bool any = false;
  for (const Tensor* t : inputs) {
    if (!t->defined()) continue;
    if (t->dtype() != DType::Float32) return std::nullopt;
    if (t->device().is_cpu() && *g_autocast != DType::BFloat16) return std::nullopt;
    any = true;
  }
  return any ? g_autocast : std::nullopt;
}

}  // namespace vb
