#include "kernels/profiler.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <tuple>
#include <type_traits>

#include "kernels/backend.h"
#include "tensor/error.h"

namespace vb {

namespace detail {
std::atomic<Backend*> g_profiling_cpu{nullptr};
}  // namespace detail

namespace {

using Clock = std::chrono::steady_clock;

struct Totals {
  int64_t calls = 0;
  double self = 0, total = 0;
};

std::mutex g_mutex;
std::map<std::string, Totals> g_rows;  // guarded by g_mutex
std::atomic<bool> g_shapes{false};     // rows split by the tensors' shapes (kernel_profile_start's argument)

// The time the kernel methods called from inside each open call on this thread have taken so far: a call's
// self time is its own time less that.
thread_local std::vector<double> t_children;

// Times one kernel call from construction to destruction (an exception leaving the kernel included).
class Scope {
 public:
  explicit Scope(std::string key) : key_(std::move(key)), start_(Clock::now()) { t_children.push_back(0.0); }
  ~Scope() {
    const double total = std::chrono::duration<double>(Clock::now() - start_).count();
    const double children = t_children.back();
    t_children.pop_back();
    if (!t_children.empty()) t_children.back() += total;
    const std::lock_guard<std::mutex> lock(g_mutex);
    Totals& t = g_rows[key_];
    ++t.calls;
    t.self += total - children;
    t.total += total;
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  std::string key_;
  Clock::time_point start_;
};

// A row's name: the method, its elementwise or reduction op if it has one (always its first argument), and
// the dtype of its first defined tensor argument — both dtypes for a copy, whose conversions are the point.
// With shapes on, then every tensor argument's shape, in order, and the strides of those that are not
// contiguous (a transposed operand): "matmul float32 · 1×768×134 (strides 102912, 1, 768), 1×134×768, 1×768×768".
const Tensor* as_tensor(const Tensor& t) { return t.defined() ? &t : nullptr; }
template <typename T>
const Tensor* as_tensor(const T&) {
  return nullptr;
}

template <typename First, typename... Rest>
std::string op_part(const First& first, const Rest&...) {
  using F = std::decay_t<First>;
  if constexpr (std::is_same_v<F, UnaryOp> || std::is_same_v<F, BinaryOp> || std::is_same_v<F, ReduceOp>)
    return std::string(" ") + op_name(first);
  else
    return {};
}

template <typename... A>
std::string label(std::string_view method, const std::tuple<A&...>& args) {
  std::string s(method);
  std::apply(
      [&](const auto&... a) {
        s += op_part(a...);
        std::vector<const Tensor*> tensors;
        (..., (as_tensor(a) ? tensors.push_back(as_tensor(a)) : void()));
        if (method == "copy" && tensors.size() == 2) {
          s += fmt::format(" {} → {}", tensors[0]->dtype(), tensors[1]->dtype());
        } else if (!tensors.empty()) {
          s += fmt::format(" {}", tensors[0]->dtype());
        }
        if (g_shapes.load(std::memory_order_relaxed))
          for (size_t i = 0; i < tensors.size(); ++i) {
            const Tensor& t = *tensors[i];
            s += fmt::format("{}{}", i == 0 ? " · " : ", ",
                             t.dim() == 0 ? "scalar" : fmt::format("{}", fmt::join(t.shape(), "×")));
            if (!t.is_contiguous()) s += fmt::format(" (strides {})", fmt::join(t.strides(), ", "));
          }
      },
      args);
  return s;
}

// The CPU backend with a clock around every method.
class ProfilingBackend final : public Backend {
 public:
  explicit ProfilingBackend(Backend& inner) : inner_(inner) {}
  std::string name() const override { return inner_.name(); }

#define VB_BACKEND_METHOD(method, params, args)                     \
  void method params override {                                     \
    const Scope scope(label(#method, std::forward_as_tuple args)); \
    inner_.method args;                                             \
  }
#include "kernels/backend_methods.def"
#undef VB_BACKEND_METHOD

 private:
  Backend& inner_;
};

}  // namespace

void kernel_profile_start(bool shapes) {
  static ProfilingBackend profiler(backend(Device{}));  // (constructed before any recording: the CPU backend)
  VB_CHECK(!kernel_profiling(), "kernel_profile_start: the kernel profiler is already recording");
  {
    const std::lock_guard<std::mutex> lock(g_mutex);
    g_rows.clear();
  }
  g_shapes = shapes;
  detail::g_profiling_cpu.store(&profiler, std::memory_order_release);
}

bool kernel_profiling() { return detail::g_profiling_cpu.load(std::memory_order_acquire) != nullptr; }

std::vector<KernelTime> kernel_profile_stop() {
  VB_CHECK(kernel_profiling(), "kernel_profile_stop: the kernel profiler is not recording");
  detail::g_profiling_cpu.store(nullptr, std::memory_order_release);
  std::vector<KernelTime> rows;
  {
    const std::lock_guard<std::mutex> lock(g_mutex);
    for (const auto& [name, t] : g_rows) rows.push_back({name, t.calls, t.self, t.total});
    g_rows.clear();
  }
  std::stable_sort(rows.begin(), rows.end(),
                   [](const KernelTime& a, const KernelTime& b) { return a.self_seconds > b.self_seconds; });
  return rows;
}

std::string kernel_profile_table(const std::vector<KernelTime>& rows, double wall_seconds, int64_t steps,
                                 size_t top) {
  VB_CHECK(steps > 0 && wall_seconds > 0, "kernel_profile_table: steps ({}) and wall time ({} s) must be positive",
           steps, wall_seconds);
  const double per = 1.0 / double(steps), ms = 1e3 * per;
  std::string s = fmt::format(
      "| kernel | calls per step | self ms per step | share of the step | mean µs per call |\n"
      "|---|---:|---:|---:|---:|\n");
  double self = 0;
  for (const KernelTime& r : rows) self += r.self_seconds;
  for (size_t i = 0; i < rows.size() && i < top; ++i) {
    const KernelTime& r = rows[i];
    s += fmt::format("| {} | {:.4g} | {:.2f} | {:.1f}% | {:.1f} |\n", r.kernel, double(r.calls) * per,
                     r.self_seconds * ms, 100.0 * r.self_seconds / wall_seconds,
                     1e6 * r.self_seconds / double(std::max<int64_t>(r.calls, 1)));
  }
  if (rows.size() > top) {
    double rest = 0;
    int64_t calls = 0;
    for (size_t i = top; i < rows.size(); ++i) rest += rows[i].self_seconds, calls += rows[i].calls;
    s += fmt::format("| the other {} kernels | {:.4g} | {:.2f} | {:.1f}% | |\n", rows.size() - top,
                     double(calls) * per, rest * ms, 100.0 * rest / wall_seconds);
  }
  s += fmt::format("| all kernels | | {:.2f} | {:.1f}% | |\n", self * ms, 100.0 * self / wall_seconds);
  s += fmt::format("| outside the kernels (autograd, allocation, the framework) | | {:.2f} | {:.1f}% | |\n",
                   (wall_seconds - self) * ms, 100.0 * (wall_seconds - self) / wall_seconds);
  return s;
}

}  // namespace vb
