#include "train/kernel_lab.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

#include "autograd/ops.h"
#include "kernels/backend.h"
#include "kernels/cuda/gemm_ladder.h"
#include "tensor/atomic_file.h"
#include "tensor/error.h"
#include "train/pretrain.h"
#if defined(VB_HAVE_EMU)
#include "kernels/emu/insight.h"
#endif

namespace vb::train {

namespace {

struct GemmShape {
  int64_t m = 0, n = 0, k = 0;
};

// "MxNxK" → the three sizes; an Error names the text.
GemmShape parse_gemm_shape(const std::string& text) {
  GemmShape s;
  int64_t* parts[3] = {&s.m, &s.n, &s.k};
  size_t at = 0;
  for (int i = 0; i < 3; ++i) {
    const size_t end = i < 2 ? text.find('x', at) : text.size();
    VB_CHECK(end != std::string::npos && end > at, "kernels: --shape {}: expected MxNxK (e.g. 256x256x256)", text);
    const std::string part = text.substr(at, end - at);
    size_t used = 0;
    int64_t v = -1;
    try {
      v = std::stoll(part, &used);
    } catch (const std::exception&) {
    }
    VB_CHECK(used == part.size() && v >= 0 && v < (int64_t(1) << 31),
             "kernels: --shape {}: '{}' is not a size in [0, 2^31) (expected MxNxK)", text, part);
    *parts[i] = v;
    at = end + 1;
  }
  return s;
}

// Runs the rung on the device's copy of a, b into c (all on `device`).
void run_gemm_rung(int rung, Device device, const Tensor& a, const Tensor& b, Tensor& c, [[maybe_unused]] bool insight) {
  const int64_t m = a.size(0), k = a.size(1), n = b.size(1);
  [[maybe_unused]] const auto* pa = static_cast<const float*>(a.data_ptr());
  [[maybe_unused]] const auto* pb = static_cast<const float*>(b.data_ptr());
  [[maybe_unused]] auto* pc = static_cast<float*>(c.data_ptr());
  try {
    switch (device.type) {
#if defined(VB_HAVE_EMU)
      case DeviceType::EMU:
        if (insight) vb::emu_insight::gemm_ladder(rung, pa, pb, pc, m, n, k);
        else vb::emu::gemm_ladder(rung, pa, pb, pc, m, n, k);
        return;
#endif
#if defined(VB_HAVE_CUDA)
      case DeviceType::CUDA: vb::cuda::gemm_ladder(rung, pa, pb, pc, m, n, k); return;
#endif
      default: fail("kernels: the GEMM ladder has no kernels for device {}", device);
    }
  } catch (const std::invalid_argument& e) {
    fail("kernels: {}", e.what());
  }
}

// The CPU backend's product, the reference: (M, N).
Tensor cpu_product(const Tensor& a, const Tensor& b) { return matmul(a, b); }

}  // namespace

std::string kernel_list() {
  std::string out = "op     rung  dtype  name                     adds\n";
  for (const ladder::Rung& r : ladder::kGemmRungTable)
    out += fmt::format("gemm   {:>4}  f32    {:<24} {}\n", r.number, r.name, r.adds);
  out += "\ngemm: C (M, N) = A (M, K) · B (K, N), row-major (kernels/cuda/gemm_ladder.cu; docs/KERNELS.md).\n"
         "Devices: cpu runs the CPU backend's GEMM (the reference every rung is checked against); emu runs a rung\n"
         "under the kernel emulator (--insight counts its memory accesses); cuda runs it on a GPU, timed beside\n"
         "cuBLASLt.\n";
  return out;
}

KernelRunResult run_kernel(const KernelRunOptions& o) {
  VB_CHECK(o.op == "gemm", "kernels: no ladder for op '{}' (ops: gemm)", o.op);
  VB_CHECK(o.rung >= 1 && o.rung <= ladder::kGemmRungs, "kernels: gemm has no rung {} (rungs 1 … {})", o.rung,
           ladder::kGemmRungs);
  VB_CHECK(o.repeat >= 1, "kernels: --repeat {} (expected ≥ 1)", o.repeat);
  const GemmShape s = parse_gemm_shape(o.shape);
  const std::string need = ladder::gemm_shape_requirement(o.rung, s.m, s.n, s.k);
  VB_CHECK(need.empty(), "kernels: {}; got --shape {}", need, o.shape);
  const Device device = resolve_device(o.device);
  VB_CHECK(!o.insight || device.type == DeviceType::EMU, "kernels: --insight runs under the emulator (--device emu)");
  VB_CHECK(o.svg.empty() || o.insight, "kernels: --svg draws what --insight records; add --insight");

  Generator g{o.seed, 0};
  const Tensor a = randn({s.m, s.k}, &g), b = mul(randn({s.k, s.n}, &g), 1.0 / std::sqrt(double(std::max<int64_t>(s.k, 1))));
  const ladder::Rung& rung = ladder::kGemmRungTable[o.rung - 1];
  KernelRunResult r;
  r.text = device.is_cpu() ? fmt::format("gemm {}x{}x{} f32 on cpu\n", s.m, s.n, s.k)
                           : fmt::format("gemm rung {} ({}) {}x{}x{} f32 on {}: {}\n", rung.number, rung.name, s.m, s.n,
                                         s.k, device, rung.adds);
  const double flops = 2.0 * double(s.m) * double(s.n) * double(s.k);

  if (device.is_cpu()) {
    // The reference itself: the CPU backend's GEMM, timed.
    const auto start = std::chrono::steady_clock::now();
    Tensor c;
    for (int i = 0; i < o.repeat; ++i) c = cpu_product(a, b);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / double(o.repeat);
    r.ok = true;
    r.text += fmt::format("cpu: the CPU backend's GEMM (the reference; rungs are device kernels): {:.3f} ms, {:.1f} "
                          "GFLOP/s (mean of {})\n", seconds * 1e3, flops / seconds * 1e-9, o.repeat);
    return r;
  }

  const Tensor da = contiguous(to(a, device)), db = contiguous(to(b, device));
  Tensor dc = zeros({s.m, s.n}, DType::Float32, device);
#if defined(VB_HAVE_EMU)
  std::string insight_text;
  if (o.insight) {
#if !defined(VB_HAVE_INSIGHT)
    fail("kernels: --insight needs a build without AddressSanitizer (this one was built with VIDEOBERT_SANITIZE)");
#else
    emulator::insight::Recorder recorder;
    run_gemm_rung(o.rung, device, da, db, dc, true);
    const emulator::insight::Report report = recorder.report();
    insight_text = emulator::insight::format_report(report);
    if (!o.svg.empty() && !report.kernels.empty()) {
      write_text_atomic(o.svg, emulator::insight::format_svg(report.kernels.front()));
      insight_text += fmt::format("one warp's access pattern per line: {}\n", o.svg);
    }
#endif
  } else {
    run_gemm_rung(o.rung, device, da, db, dc, false);
  }
#else
  run_gemm_rung(o.rung, device, da, db, dc, false);
#endif

  // Against the CPU backend: |ours − cpu| ≤ 2·K·2⁻²⁴·Σ|a||b| per element (two float32 sums in different
  // orders; tests/support/gemm_ladder_cases.h).
  const std::vector<double> got = to(dc, Device()).to_vector(), want = cpu_product(a, b).to_vector(),
                            bound = matmul(abs(a), abs(b)).to_vector();
  double worst_error = 0, excess = -INFINITY;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::abs(got[i] - want[i]);
    const double e = std::isfinite(got[i]) ? err - 2.0 * double(s.k) * std::ldexp(1.0, -24) * bound[i] : INFINITY;
    worst_error = std::max(worst_error, std::isfinite(got[i]) ? err : INFINITY);
    excess = std::max(excess, e);
  }
  r.max_excess = got.empty() ? 0.0 : excess;
  r.ok = r.max_excess <= 0;
  r.text += fmt::format("check against the CPU backend: max |error| {:.3g}, {} the bound 2·K·2^-24·Σ|a||b| {}\n",
                        worst_error, r.ok ? "within" : "OUTSIDE", r.ok ? "" : "(FAILED)");
#if defined(VB_HAVE_EMU)
  if (device.type == DeviceType::EMU) {
    r.text += "emu: no timing (the emulator runs a block's threads one after another)\n";
    r.text += insight_text;
  }
#endif
#if defined(VB_HAVE_CUDA)
  if (device.type == DeviceType::CUDA) {
    // Median of `repeat` single runs, each between two events; the same for the backend's matmul
    // (cuBLASLt), on the same matrices.
    auto median_ms = [&](const std::function<void()>& run) {
      run();  // warm-up
      std::vector<float> times;
      rt::Event start = rt::cuda::event_create(), end = rt::cuda::event_create();
      for (int i = 0; i < o.repeat; ++i) {
        rt::cuda::event_record(start, {});
        run();
        rt::cuda::event_record(end, {});
        rt::cuda::event_synchronize(end);
        times.push_back(rt::cuda::elapsed_ms(start, end));
      }
      rt::cuda::event_destroy(start);
      rt::cuda::event_destroy(end);
      std::sort(times.begin(), times.end());
      return double(times[times.size() / 2]);
    };
    const double ours = median_ms([&] { run_gemm_rung(o.rung, device, da, db, dc, false); });
    Tensor out3 = unsqueeze(dc, 0);
    const Tensor a3 = unsqueeze(da, 0), b3 = unsqueeze(db, 0);
    const double lib = median_ms([&] { backend(device).matmul(a3, b3, out3); });
    r.text += fmt::format("cuda: {:.3f} ms, {:.1f} GFLOP/s; cuBLASLt {:.3f} ms, {:.1f} GFLOP/s; ours/cuBLASLt {:.2f} "
                          "(median of {})\n",
                          ours, flops / ours * 1e-6, lib, flops / lib * 1e-6, lib / ours, o.repeat);
  }
#endif
  return r;
}

}  // namespace vb::train
