#include "kernels/backend.h"

#include <array>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/profiler.h"

namespace vb {

namespace {
std::array<Backend*, 3>& registry() {
  static std::array<Backend*, 3> r = {&cpu_backend(), nullptr, nullptr};
  return r;
}
}  // namespace

void register_backend(DeviceType type, Backend* b) { registry()[size_t(type)] = b; }

Backend& backend(Device device) {
  if (device.type == DeviceType::CPU)  // the kernel profiler's wrapper while it records (kernels/profiler.h)
    if (Backend* p = detail::g_profiling_cpu.load(std::memory_order_acquire)) return *p;
  Backend* b = registry()[size_t(device.type)];
  if (b == nullptr) fail("device {}: no kernels are built for it in this build", device);
  return *b;
}

#define VB_NAME_CASE(op, name, ...) \
  case Op::op: return name;
#define VB_DOMAIN_CASE(op, name, domain) \
  case Op::op: return OpDomain::domain;

const char* op_name(UnaryOp o) {
  using Op = UnaryOp;
  switch (o) { VB_UNARY_OPS(VB_NAME_CASE) }
  return "unary";
}
const char* op_name(BinaryOp o) {
  using Op = BinaryOp;
  switch (o) { VB_BINARY_OPS(VB_NAME_CASE) }
  return "binary";
}
const char* op_name(ReduceOp o) {
  using Op = ReduceOp;
  switch (o) { VB_REDUCE_OPS(VB_NAME_CASE) }
  return "reduce";
}
OpDomain op_domain(UnaryOp o) {
  using Op = UnaryOp;
  switch (o) { VB_UNARY_OPS(VB_DOMAIN_CASE) }
  return OpDomain::Floating;
}
OpDomain op_domain(BinaryOp o) {
  using Op = BinaryOp;
  switch (o) { VB_BINARY_OPS(VB_DOMAIN_CASE) }
  return OpDomain::Floating;
}
#undef VB_NAME_CASE
#undef VB_DOMAIN_CASE

namespace {
bool writes_bool(OpDomain d) { return d == OpDomain::Compare || d == OpDomain::Logical; }

void check_domain(const char* name, OpDomain domain, DType t, const char* bool_hint) {
  if (domain == OpDomain::Numeric || domain == OpDomain::Floating)
    VB_CHECK(t != DType::Bool, "{}: not defined for bool tensors{}", name, bool_hint);
  if (domain == OpDomain::Floating)
    VB_CHECK(is_floating(t), "{}: not defined for {} tensors (convert to a floating dtype)", name, t);
}
}  // namespace

void check_unary(const std::string& device, UnaryOp op, const Tensor& x, const Tensor& out) {
  const char* name = op_name(op);
  const DType want = writes_bool(op_domain(op)) ? DType::Bool : x.dtype();
  VB_CHECK(x.shape() == out.shape() && out.dtype() == want, "{} {}: input {} {} and output {} {} (expected {} {})",
           device, name, shape_str(x.shape()), x.dtype(), shape_str(out.shape()), out.dtype(), shape_str(x.shape()),
           want);
  check_domain(name, op_domain(op), x.dtype(), "");
}

void check_binary(const std::string& device, BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  const char* name = op_name(op);
  const DType want = writes_bool(op_domain(op)) ? DType::Bool : a.dtype();
  VB_CHECK(a.dtype() == b.dtype() && out.dtype() == want,
           "{} {}: dtypes {} and {} → {} (expected one input dtype, output {})", device, name, a.dtype(), b.dtype(),
           out.dtype(), want);
  VB_CHECK(a.shape() == out.shape() && b.shape() == out.shape(),
           "{} {}: inputs {} and {} must arrive expanded to the output's shape {}", device, name,
           shape_str(a.shape()), shape_str(b.shape()), shape_str(out.shape()));
  check_domain(name, op_domain(op), a.dtype(), " (use logical_and/logical_or)");
}

}  // namespace vb
