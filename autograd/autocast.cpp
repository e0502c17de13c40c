#include "autograd/autocast.h"

#include <memory>
#include <unordered_map>

#include "autograd/ops.h"
#include "tensor/error.h"

namespace vb {

namespace {
thread_local std::optional<DType> g_autocast;

// The weights cast inside the outermost guard: each entry holds the parameter (so that no other tensor can
// take its address while the entry lives), the storage and offset it had when cast, and the copy.
struct CastEntry {
  std::shared_ptr<TensorImpl> param;
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;
  Tensor copy;
};
thread_local std::unordered_map<const TensorImpl*, CastEntry> g_casts[2];  // bfloat16, float16
}  // namespace

AutocastGuard::AutocastGuard(DType low) : previous_(g_autocast) {
  VB_CHECK(low == DType::BFloat16 || low == DType::Float16, "autocast: the low dtype must be bfloat16 or float16, got {}",
           low);
  g_autocast = low;
}

AutocastGuard::~AutocastGuard() {
  g_autocast = previous_;
  if (!g_autocast)  // the outermost guard: its casts end with it
    for (auto& casts : g_casts) casts.clear();
}

Tensor autocast_weight(const Tensor& w, DType low) {
  if (!g_autocast || !w.requires_grad() || !w.is_leaf() || w.dtype() == low) return to(detach(w), low);
  auto& casts = g_casts[low == DType::BFloat16 ? 0 : 1];
  const TensorImpl* key = w.impl();
  auto it = casts.find(key);
  if (it != casts.end() && it->second.storage == w.impl()->storage && it->second.offset == w.offset() &&
      it->second.copy.shape() == w.shape())
    return it->second.copy;
  CastEntry e{w.impl_ptr(), w.impl()->storage, w.offset(), to(detach(w), low)};
  Tensor copy = e.copy;
  casts[key] = std::move(e);
  return copy;
}

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
