#include "train/kernel_lab.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <vector>

#include <cuda_bf16.h>

#include "autograd/ops.h"
#include "kernels/backend.h"
#include "kernels/cuda/attention_ladder.h"
#include "kernels/cuda/conv_ladder.h"
#include "kernels/cuda/gemm_ladder.h"
#include "kernels/cuda/layer_norm_ladder.h"
#include "kernels/cuda/occupancy.h"
#include "tensor/atomic_file.h"
#include "tensor/error.h"
#include "train/pretrain.h"
#if defined(VB_HAVE_EMU)
#include "kernels/emu/insight.h"
#endif

namespace vb::train {

namespace {

// "MxNxK" (form "MxNxK") or "NxC" → the sizes, each in [0, 2^31); an Error names the text and the form.
std::vector<int64_t> parse_shape(const std::string& text, const std::string& form, const std::string& example) {
  const size_t count = size_t(std::count(form.begin(), form.end(), 'x')) + 1;
  std::vector<int64_t> sizes;
  size_t at = 0;
  for (size_t i = 0; i < count; ++i) {
    const size_t end = i + 1 < count ? text.find('x', at) : text.size();
    VB_CHECK(end != std::string::npos && end > at, "kernels: --shape {}: expected {} (e.g. {})", text, form, example);
    const std::string part = text.substr(at, end - at);
    size_t used = 0;
    int64_t v = -1;
    try {
      v = std::stoll(part, &used);
    } catch (const std::exception&) {
    }
    VB_CHECK(used == part.size() && v >= 0 && v < (int64_t(1) << 31),
             "kernels: --shape {}: '{}' is not a size in [0, 2^31) (expected {})", text, part, form);
    sizes.push_back(v);
    at = end + 1;
  }
  return sizes;
}

// The CPU backend's product, the reference: (M, N).
Tensor cpu_product(const Tensor& a, const Tensor& b) { return matmul(a, b); }

}  // namespace

// Runs a ladder's launcher call on the tensors' device: `...` names the launcher as NS::…, NS being vb::emu
// (vb::emu_insight under --insight) or vb::cuda; the launchers' std::invalid_argument becomes an Error.
#if defined(VB_HAVE_EMU)
#define VB_LADDER_ON_EMU(insight, ...)     \
  case DeviceType::EMU:                    \
    if (insight) {                         \
      namespace NS = vb::emu_insight;      \
      __VA_ARGS__;                         \
    } else {                               \
      namespace NS = vb::emu;              \
      __VA_ARGS__;                         \
    }                                      \
    return;
#else
#define VB_LADDER_ON_EMU(insight, ...)
#endif
#if defined(VB_HAVE_CUDA)
#define VB_LADDER_ON_CUDA(...) \
  case DeviceType::CUDA: {     \
    namespace NS = vb::cuda;   \
    __VA_ARGS__;               \
  }                            \
    return;
#else
#define VB_LADDER_ON_CUDA(...)
#endif
#define VB_RUN_LADDER(ladder, device, insight, ...)                                         \
  try {                                                                                     \
    switch ((device).type) {                                                                \
      VB_LADDER_ON_EMU(insight, __VA_ARGS__)                                                \
      VB_LADDER_ON_CUDA(__VA_ARGS__)                                                        \
      default: fail("kernels: the {} ladder has no kernels for device {}", ladder, device); \
    }                                                                                       \
  } catch (const std::invalid_argument& e) {                                                \
    fail("kernels: {}", e.what());                                                          \
  }

void run_gemm_rung(int rung, const Tensor& a, const Tensor& b, Tensor& c, [[maybe_unused]] bool insight) {
  const Device device = a.device();
  const int64_t m = a.size(0), k = a.size(1), n = b.size(1);
  [[maybe_unused]] const DType t = a.dtype();
  [[maybe_unused]] const auto* pa = static_cast<const float*>(a.data_ptr());
  [[maybe_unused]] const auto* pb = static_cast<const float*>(b.data_ptr());
  [[maybe_unused]] const auto* ha = static_cast<const __nv_bfloat16*>(a.data_ptr());
  [[maybe_unused]] const auto* hb = static_cast<const __nv_bfloat16*>(b.data_ptr());
  [[maybe_unused]] const auto* fa = static_cast<const __half*>(a.data_ptr());
  [[maybe_unused]] const auto* fb = static_cast<const __half*>(b.data_ptr());
  [[maybe_unused]] auto* pc = static_cast<float*>(c.data_ptr());
  VB_RUN_LADDER("GEMM", device, insight,
                t == DType::BFloat16  ? NS::gemm_ladder_bf16(rung, ha, hb, pc, m, n, k)
                : t == DType::Float16 ? NS::gemm_ladder_f16(rung, fa, fb, pc, m, n, k)
                                      : NS::gemm_ladder(rung, pa, pb, pc, m, n, k));
}

void run_layer_norm_rung(int rung, const Tensor& x, const Tensor& w, const Tensor& b, double eps, Tensor& y,
                         Tensor& mean, Tensor& rstd, [[maybe_unused]] bool insight) {
  const Device device = x.device();
  const float e = float(eps);
  const int64_t n = x.size(0), c = x.size(1);
  [[maybe_unused]] const auto *px = static_cast<const float*>(x.data_ptr()), *pw = static_cast<const float*>(w.data_ptr()),
                              *pb = static_cast<const float*>(b.data_ptr());
  [[maybe_unused]] auto *py = static_cast<float*>(y.data_ptr()), *pm = static_cast<float*>(mean.data_ptr()),
                        *pr = static_cast<float*>(rstd.data_ptr());
  VB_RUN_LADDER("layer_norm", device, insight, NS::layer_norm_ladder(rung, px, pw, pb, e, py, pm, pr, n, c));
}

Tensor attention_rung_workspace(int rung, const Tensor& q) {
  const int64_t floats = ladder::attention_ladder_workspace(rung, q.size(0), q.size(1));
  return floats > 0 ? Tensor::empty({floats}, DType::Float32, q.device()) : Tensor();
}

void run_attention_rung(int rung, const Tensor& q, const Tensor& k, const Tensor& v, double scale, Tensor& out,
                        Tensor& lse, const Tensor& workspace, [[maybe_unused]] bool insight) {
  const Device device = q.device();
  const int64_t bh = q.size(0), t = q.size(1), d = q.size(2);
  const float s = float(scale);
  [[maybe_unused]] const bool bf16 = q.dtype() == DType::BFloat16;
  const int64_t floats = ladder::attention_ladder_workspace(rung, bh, t);
  VB_CHECK(floats == 0 || (workspace.defined() && workspace.dtype() == DType::Float32 &&
                           workspace.device() == device && workspace.numel() >= floats),
           "kernels: attention rung {} needs a float32 workspace of {} floats on {} (attention_rung_workspace)", rung,
           floats, device);
  [[maybe_unused]] auto* ps = floats > 0 ? static_cast<float*>(workspace.data_ptr()) : nullptr;
  [[maybe_unused]] auto* pl = static_cast<float*>(lse.data_ptr());
  [[maybe_unused]] const auto *fq = static_cast<const float*>(q.data_ptr()), *fk = static_cast<const float*>(k.data_ptr()),
                              *fv = static_cast<const float*>(v.data_ptr());
  [[maybe_unused]] auto* fo = static_cast<float*>(out.data_ptr());
  [[maybe_unused]] const auto *hq = static_cast<const __nv_bfloat16*>(q.data_ptr()),
                              *hk = static_cast<const __nv_bfloat16*>(k.data_ptr()),
                              *hv = static_cast<const __nv_bfloat16*>(v.data_ptr());
  [[maybe_unused]] auto* ho = static_cast<__nv_bfloat16*>(out.data_ptr());
  VB_RUN_LADDER("attention", device, insight,
                bf16 ? NS::attention_ladder_bf16(rung, hq, hk, hv, ho, pl, bh, t, d, s)
                     : NS::attention_ladder(rung, fq, fk, fv, fo, pl, ps, bh, t, d, s));
}

void run_conv_rung(int rung, const Tensor& x, const Tensor& w, const Conv2dParams& p, Tensor& y,
                   [[maybe_unused]] bool insight) {
  const Device device = x.device();
  [[maybe_unused]] const ConvShape s =
      conv_shape(x.size(0), x.size(1), x.size(2), x.size(3), w.size(0), w.size(1), w.size(2), p);
  [[maybe_unused]] const bool bf16 = x.dtype() == DType::BFloat16;
  [[maybe_unused]] const auto *fx = static_cast<const float*>(x.data_ptr()), *fw = static_cast<const float*>(w.data_ptr());
  [[maybe_unused]] auto* fy = static_cast<float*>(y.data_ptr());
  [[maybe_unused]] const auto *hx = static_cast<const __nv_bfloat16*>(x.data_ptr()),
                              *hw = static_cast<const __nv_bfloat16*>(w.data_ptr());
  [[maybe_unused]] auto* hy = static_cast<__nv_bfloat16*>(y.data_ptr());
  VB_RUN_LADDER("conv", device, insight,
                bf16 ? NS::conv_ladder_bf16(rung, hx, hw, hy, s) : NS::conv_ladder(rung, fx, fw, fy, s));
}

std::string kernel_list() {
  std::string out = "op          rung  dtype     name                       adds\n";
  auto rows = [&](const char* op, const auto& table) {
    for (const ladder::Rung& r : table)
      out += fmt::format("{:<10}  {:>4}  {:<8}  {:<26} {}\n", op, r.number,
                         std::string(r.dtype) + (r.f16_too ? ",f16" : ""), r.name, r.adds);
  };
  rows("gemm", ladder::kGemmRungTable);
  rows("layer_norm", ladder::kLayerNormRungTable);
  rows("attention", ladder::kAttentionRungTable);
  rows("conv", ladder::kConvRungTable);
  out += "\ngemm: C (M, N) = A (M, K) · B (K, N), row-major, --shape MxNxK (kernels/cuda/gemm_ladder.cu); baseline on\n"
         "a GPU: cuBLASLt. layer_norm: the forward over the last dim of (N, C), --shape NxC\n"
         "(kernels/cuda/layer_norm_ladder.cu); baseline: the framework's own kernel (nn_layer_norm.cu).\n"
         "attention: out = softmax(Q·Kᵀ/√D)·V per head, the forward, --shape BxHxTxD (kernels/cuda/attention_ladder.cu);\n"
         "rungs 2 and 3 are the framework's own kernels; baseline on a GPU: the framework's kernel for the dtype.\n"
         "conv: the forward, channels-last, one group, --shape NxHxWxCxOxKxS (K×K kernel, stride S, padding K/2;\n"
         "kernels/cuda/conv_ladder.cu); rungs 2 and 3 are the framework's own kernels; baseline on a GPU: the\n"
         "backend's conv2d (cuDNN where the build has it).\n"
         "Devices: cpu runs the CPU backend (the reference every rung is checked against); emu runs a rung under\n"
         "the kernel emulator (--insight counts its memory accesses); cuda runs it on a GPU, timed. docs/KERNELS.md.\n";
  return out;
}

namespace {

// Median milliseconds of `repeat` runs on the GPU, each between two events, after one warm-up run.
[[maybe_unused]] double median_gpu_ms(int repeat, const std::function<void()>& run) {
#if defined(VB_HAVE_CUDA)
  run();
  std::vector<float> times;
  rt::Event start = rt::cuda::event_create(), end = rt::cuda::event_create();
  for (int i = 0; i < repeat; ++i) {
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
#else
  (void)repeat;
  (void)run;
  fail("kernels: this build has no CUDA backend");
#endif
}

// The GPU's measured ceilings, once per process: copy bandwidth (a 256 MiB device-to-device copy, bytes
// read and written) and the float32 GEMM rate (the backend's matmul, cuBLASLt without TF32, at 4096³).
[[maybe_unused]] std::pair<double, double> gpu_ceilings(int repeat) {
#if defined(VB_HAVE_CUDA)
  static const std::pair<double, double> measured = [&] {
    const Device d(DeviceType::CUDA);
    const int64_t bytes = int64_t(256) << 20;
    Tensor src = zeros({bytes / 4}, DType::Float32, d), dst = zeros({bytes / 4}, DType::Float32, d);
    const double copy_ms = median_gpu_ms(repeat, [&] { rt::cuda::copy(dst.data_ptr(), src.data_ptr(), size_t(bytes)); });
    const int64_t n = 4096;
    Tensor a = zeros({1, n, n}, DType::Float32, d), b = zeros({1, n, n}, DType::Float32, d),
           c = zeros({1, n, n}, DType::Float32, d);
    const double gemm_ms = median_gpu_ms(std::min(repeat, 5), [&] { backend(d).matmul(a, b, c); });
    return std::make_pair(2.0 * double(bytes) / copy_ms * 1e-6, 2.0 * double(n) * n * n / gemm_ms * 1e-6);
  }();
  return measured;
#else
  (void)repeat;
  return {0.0, 0.0};
#endif
}

// Runs `run(insight)` on the device: under --insight through a Recorder, returning its table (and
// writing the SVG of the first kernel).
std::string run_observed(const KernelRunOptions& o, const std::function<void(bool)>& run) {
  if (!o.insight) {
    run(false);
    return "";
  }
#if defined(VB_HAVE_EMU) && defined(VB_HAVE_INSIGHT)
  emulator::insight::Recorder recorder;
  run(true);
  const emulator::insight::Report report = recorder.report();
  std::string text = emulator::insight::format_report(report);
  // Occupancy on the GPUs, from the launch shape and ptxas's registers and shared memory.
  for (const emulator::insight::KernelStats& k : report.kernels) {
    const ladder::KernelResources* res = ladder::ladder_resources(k.kernel);
    if (!res) continue;
    const int threads = int(k.block.x * k.block.y * k.block.z);
    const int64_t shared = res->static_shared_bytes + int64_t(k.dynamic_shared_bytes);
    const ladder::Occupancy a = ladder::occupancy(80, threads, res->registers_sm80, shared),
                            h = ladder::occupancy(90, threads, res->registers_sm90, shared);
    // The kernel's name as the report prints it, with its template arguments: "gemm_mma<__half>".
    const size_t at = k.kernel.find(std::string("::") + res->kernel) + 2;
    const std::string name = k.kernel.substr(at, k.kernel.find('(', at) - at);
    text += fmt::format("occupancy of {}: {} threads, {} B shared; sm_80 {} registers: {} blocks/SM, {:.0f}% ({}); "
                        "sm_90 {} registers: {} blocks/SM, {:.0f}% ({})\n",
                        name, threads, shared, res->registers_sm80, a.blocks,
                        100 * a.fraction, a.limit, res->registers_sm90, h.blocks, 100 * h.fraction, h.limit);
  }
  if (!o.svg.empty() && !report.kernels.empty()) {
    write_text_atomic(o.svg, emulator::insight::format_svg(report.kernels.front()));
    text += fmt::format("one warp's access pattern per line: {}\n", o.svg);
  }
  return text;
#else
  fail("kernels: --insight needs the emulator built without AddressSanitizer (this build: {})",
#if defined(VB_HAVE_EMU)
       "VIDEOBERT_SANITIZE"
#else
       "no emulator"
#endif
  );
#endif
}

// Judges a rung's output against the CPU backend's, element by element: |got − want| ≤ bound(i) (a
// non-finite value fails). Sets r.ok and r.max_excess and adds the check line, naming the bound.
void judge(const std::vector<double>& got, const std::vector<double>& want, const std::function<double(size_t)>& bound,
           const std::string& bound_text, KernelRunResult& r) {
  double worst_error = 0, excess = got.empty() ? 0.0 : -INFINITY;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::isfinite(got[i]) ? std::abs(got[i] - want[i]) : INFINITY;
    worst_error = std::max(worst_error, err);
    excess = std::max(excess, err - bound(i));
  }
  r.max_excess = excess;
  r.ok = excess <= 0;
  r.text += fmt::format("check against the CPU backend: max |error| {:.3g}, {} the bound {}\n", worst_error,
                        r.ok ? "within" : "OUTSIDE (FAILED)", bound_text);
}

// --device cpu: the reference itself, timed (the mean of o.repeat runs of `run`): the title line, then the rate
// of `work` (FLOPs → GFLOP/s, or bytes → GB/s, as `unit` says) on the CPU backend's `what`.
KernelRunResult cpu_reference(const KernelRunOptions& o, const std::string& title, const std::string& what,
                              double work, const char* unit, const std::function<void()>& run) {
  KernelRunResult r;
  r.text = title + "\n";
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < o.repeat; ++i) run();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / o.repeat;
  r.ok = true;
  r.text += fmt::format("cpu: the CPU backend's {}: {:.3f} ms, {:.1f} {} (mean of {})\n", what, seconds * 1e3,
                        work / seconds * 1e-9, unit, o.repeat);
  return r;
}

std::string device_note(Device device) {
  return device.type == DeviceType::EMU ? "emu: no timing (the emulator runs a block's threads one after another)\n"
                                        : "";
}

KernelRunResult run_gemm(const KernelRunOptions& o, Device device) {
  VB_CHECK(o.rung >= 1 && o.rung <= ladder::kGemmRungs, "kernels: gemm has no rung {} (rungs 1 … {})", o.rung,
           ladder::kGemmRungs);
  const std::vector<int64_t> sizes = parse_shape(o.shape, "MxNxK", "256x256x256");
  const struct {
    int64_t m, n, k;
  } s{sizes[0], sizes[1], sizes[2]};
  const std::string need = ladder::gemm_shape_requirement(o.rung, s.m, s.n, s.k);
  VB_CHECK(need.empty(), "kernels: {}; got --shape {}", need, o.shape);
  const ladder::Rung& rung = ladder::kGemmRungTable[o.rung - 1];
  // The rung's own dtype, or f16 where the rung also takes it (--dtype f16).
  const bool f16 = o.dtype == "f16" && rung.f16_too;
  const std::string dtype = f16 ? "f16" : rung.dtype;
  VB_CHECK(o.dtype.empty() || o.dtype == dtype, "kernels: --dtype {}: gemm rung {} takes {} inputs", o.dtype, o.rung,
           std::string(rung.dtype) + (rung.f16_too ? " or f16" : ""));
  const DType input_type = f16 ? DType::Float16 : dtype == "bf16" ? DType::BFloat16 : DType::Float32;
  Generator g{o.seed, 0};
  // The inputs as the rung sees them (rounded to bf16 or f16 for those rungs), in float32 for the reference.
  Tensor a = randn({s.m, s.k}, &g), b = mul(randn({s.k, s.n}, &g), 1.0 / std::sqrt(double(std::max<int64_t>(s.k, 1))));
  a = to(to(a, input_type), DType::Float32);
  b = to(to(b, input_type), DType::Float32);
  KernelRunResult r;
  const double flops = 2.0 * double(s.m) * double(s.n) * double(s.k);
  if (device.is_cpu())  // the CPU backend's float32 GEMM
    return cpu_reference(o, fmt::format("gemm {}x{}x{} f32 on cpu", s.m, s.n, s.k),
                         "GEMM (the reference; rungs are device kernels)", flops, "GFLOP/s",
                         [&] { (void)cpu_product(a, b); });
  r.text = fmt::format("gemm rung {} ({}) {}x{}x{} {} on {}: {}\n", rung.number, rung.name, s.m, s.n, s.k, dtype, device,
                       rung.adds);
  const Tensor da = contiguous(to(to(a, input_type), device)), db = contiguous(to(to(b, input_type), device));
  Tensor dc = zeros({s.m, s.n}, DType::Float32, device);
  const std::string observed = run_observed(o, [&](bool insight) { run_gemm_rung(o.rung, da, db, dc, insight); });
  // |ours − cpu| ≤ 2·K·2⁻²⁴·Σ|a||b| per element (two float32 sums in different orders).
  const std::vector<double> got = to(dc, Device()).to_vector(), want = cpu_product(a, b).to_vector(),
                            bound = matmul(abs(a), abs(b)).to_vector();
  judge(got, want, [&](size_t i) { return 2.0 * double(s.k) * std::ldexp(1.0, -24) * bound[i]; },
        "2·K·2^-24·Σ|a||b|", r);
  r.text += device_note(device) + observed;
  if (device.type == DeviceType::CUDA && o.time) {
    const double ours = median_gpu_ms(o.repeat, [&] { run_gemm_rung(o.rung, da, db, dc, false); });
    Tensor out3 = zeros({1, s.m, s.n}, input_type, device);  // cuBLASLt writes the inputs' type
    const Tensor a3 = unsqueeze(da, 0), b3 = unsqueeze(db, 0);
    const double lib = median_gpu_ms(o.repeat, [&] { backend(device).matmul(a3, b3, out3); });
    const double ceiling = gpu_ceilings(o.repeat).second;  // GFLOP/s
    r.text += fmt::format("cuda: {:.3f} ms, {:.1f} GFLOP/s ({:.0f}% of the measured f32 GEMM ceiling {:.0f} GFLOP/s, "
                          "cuBLASLt 4096³); cuBLASLt at this shape {:.3f} ms, {:.1f} GFLOP/s; ours/cuBLASLt {:.2f} "
                          "(median of {})\n", ours, flops / ours * 1e-6, 100.0 * flops / ours * 1e-6 / ceiling, ceiling,
                          lib, flops / lib * 1e-6, lib / ours, o.repeat);
  }
  return r;
}

KernelRunResult run_layer_norm(const KernelRunOptions& o, Device device) {
  VB_CHECK(o.rung >= 1 && o.rung <= ladder::kLayerNormRungs, "kernels: layer_norm has no rung {} (rungs 1 … {})",
           o.rung, ladder::kLayerNormRungs);
  const std::vector<int64_t> sizes = parse_shape(o.shape, "NxC", "4096x768");
  const int64_t n = sizes[0], c = sizes[1];
  VB_CHECK(c >= 1, "kernels: --shape {}: C = 0 (expected NxC with C ≥ 1)", o.shape);
  const std::string need = ladder::layer_norm_shape_requirement(o.rung, n, c);
  VB_CHECK(need.empty(), "kernels: {}; got --shape {}", need, o.shape);
  Generator g{o.seed, 0};
  const Tensor x = randn({n, c}, &g), w = add(mul(randn({c}, &g), 0.1), 1.0), b = mul(randn({c}, &g), 0.1);
  Tensor y = empty({n, c}), mean = empty({n}), rstd = empty({n});
  const double bytes = 8.0 * double(n * c) + 8.0 * double(c) + 8.0 * double(n);
  KernelRunResult r;
  if (device.is_cpu())
    return cpu_reference(o, fmt::format("layer_norm {}x{} f32 on cpu", n, c), "layer_norm (the reference)", bytes,
                         "GB/s", [&] { backend(device).layer_norm(x, w, b, 1e-5, y, mean, rstd); });
  const ladder::Rung& rung = ladder::kLayerNormRungTable[o.rung - 1];
  r.text = fmt::format("layer_norm rung {} ({}) {}x{} f32 on {}: {}\n", rung.number, rung.name, n, c, device, rung.adds);
  const Tensor dx = contiguous(to(x, device)), dw = contiguous(to(w, device)), db = contiguous(to(b, device));
  Tensor dy = zeros({n, c}, DType::Float32, device), dm = zeros({n}, DType::Float32, device),
         dr = zeros({n}, DType::Float32, device);
  const std::string observed =
      run_observed(o, [&](bool insight) { run_layer_norm_rung(o.rung, dx, dw, db, 1e-5, dy, dm, dr, insight); });
  backend(Device()).layer_norm(x, w, b, 1e-5, y, mean, rstd);
  // |ours − cpu| ≤ 4·C·2⁻²⁴·(1 + |cpu|) per value (sums of C float32 terms in different orders).
  const double tol = 4.0 * double(c) * std::ldexp(1.0, -24);
  double worst = 0;
  r.ok = true;
  for (auto [ours, cpu] : {std::pair{dy, y}, std::pair{dm, mean}, std::pair{dr, rstd}}) {
    const std::vector<double> u = to(ours, Device()).to_vector(), v = cpu.to_vector();
    for (size_t i = 0; i < u.size(); ++i) {
      const double err = std::isfinite(u[i]) ? std::abs(u[i] - v[i]) : INFINITY;
      worst = std::max(worst, err);
      if (!(err <= tol * (1 + std::abs(v[i])))) r.ok = false;
    }
  }
  r.text += fmt::format("check against the CPU backend: max |error| {:.3g}, {} 4·C·2^-24·(1 + |cpu|)\n", worst,
                        r.ok ? "within" : "OUTSIDE (FAILED)");
  r.text += device_note(device) + observed;
  if (device.type == DeviceType::CUDA && o.time) {
    const double ours = median_gpu_ms(o.repeat, [&] { run_layer_norm_rung(o.rung, dx, dw, db, 1e-5, dy, dm, dr, false); });
    const double fw = median_gpu_ms(o.repeat, [&] { backend(device).layer_norm(dx, dw, db, 1e-5, dy, dm, dr); });
    const double ceiling = gpu_ceilings(o.repeat).first;  // GB/s
    r.text += fmt::format("cuda: {:.3f} ms, {:.1f} GB/s ({:.0f}% of the measured copy bandwidth {:.0f} GB/s); the "
                          "framework's kernel {:.3f} ms, {:.1f} GB/s; ours/framework {:.2f} (median of {})\n", ours,
                          bytes / ours * 1e-6, 100.0 * bytes / ours * 1e-6 / ceiling, ceiling, fw, bytes / fw * 1e-6,
                          fw / ours, o.repeat);
  }
  return r;
}

KernelRunResult run_attention(const KernelRunOptions& o, Device device) {
  VB_CHECK(o.rung >= 1 && o.rung <= ladder::kAttentionRungs, "kernels: attention has no rung {} (rungs 1 … {})",
           o.rung, ladder::kAttentionRungs);
  const std::vector<int64_t> sizes = parse_shape(o.shape, "BxHxTxD", "2x4x128x64");
  const int64_t bh = sizes[0] * sizes[1], t = sizes[2], d = sizes[3];
  VB_CHECK(bh < (int64_t(1) << 31), "kernels: --shape {}: B·H = {} (expected < 2^31)", o.shape, bh);
  const std::string need = ladder::attention_shape_requirement(o.rung, bh, t, d);
  VB_CHECK(need.empty(), "kernels: {}; got --shape {}", need, o.shape);
  const ladder::Rung& rung = ladder::kAttentionRungTable[o.rung - 1];
  const std::string dtype = rung.dtype;
  VB_CHECK(o.dtype.empty() || o.dtype == dtype, "kernels: --dtype {}: attention rung {} takes {} inputs", o.dtype,
           o.rung, dtype);
  const DType input_type = dtype == "bf16" ? DType::BFloat16 : DType::Float32;
  const double scale = 1.0 / std::sqrt(double(std::max<int64_t>(d, 1)));
  Generator g{o.seed, 0};
  // The inputs as the rung sees them (bf16-rounded for rung 3), in float32 for the reference.
  Tensor q = to(to(randn({bh, t, d}, &g), input_type), DType::Float32), k = to(to(randn({bh, t, d}, &g), input_type), DType::Float32),
         v = to(to(randn({bh, t, d}, &g), input_type), DType::Float32);
  const double flops = 4.0 * double(bh) * double(t) * double(t) * double(d);
  KernelRunResult r;
  if (device.is_cpu()) {
    const Tensor q4 = unsqueeze(q, 0), k4 = unsqueeze(k, 0), v4 = unsqueeze(v, 0);  // (1, B·H, T, D)
    return cpu_reference(o, fmt::format("attention {} f32 on cpu", o.shape), "attention (the reference)", flops,
                         "GFLOP/s", [&] { (void)scaled_dot_product_attention(q4, k4, v4, {}, 0.0, scale); });
  }
  r.text = fmt::format("attention rung {} ({}) {} {} on {}: {}\n", rung.number, rung.name, o.shape, dtype, device,
                       rung.adds);
  const Tensor dq = contiguous(to(to(q, input_type), device)), dk = contiguous(to(to(k, input_type), device)),
               dv = contiguous(to(to(v, input_type), device));
  Tensor dout = zeros({bh, t, d}, input_type, device), dlse = zeros({bh, t}, DType::Float32, device);
  const Tensor work = attention_rung_workspace(o.rung, dq);
  const std::string observed =
      run_observed(o, [&](bool insight) { run_attention_rung(o.rung, dq, dk, dv, scale, dout, dlse, work, insight); });
  // The reference: the CPU backend's attention on the same (rounded) values, as (1, B·H, T, D).
  const Tensor want = reshape(scaled_dot_product_attention(unsqueeze(q, 0), unsqueeze(k, 0), unsqueeze(v, 0), {}, 0.0,
                                                           scale), {bh, t, d});
  // Bound per element: float32 rungs 8·(T + D)·2⁻²⁴·(1 + |cpu|) (sums of T and D terms in other orders, exp);
  // the bf16 rung also rounds P to bf16 before P·V and out to bf16: 2⁻⁸·(max|v| + |cpu|) more.
  const std::vector<double> got = to(to(dout, Device()), DType::Float32).to_vector(), ref = want.to_vector();
  const double vmax = amax(abs(v), {0, 1, 2}).item();
  const double u = std::ldexp(1.0, -24), f32 = 8.0 * double(t + d) * u;
  const bool bf16 = input_type == DType::BFloat16;
  judge(got, ref,
        [&](size_t i) {
          return f32 * (1 + std::abs(ref[i])) + (bf16 ? std::ldexp(1.0, -8) * (vmax + std::abs(ref[i])) : 0.0);
        },
        bf16 ? "8·(T+D)·2^-24·(1 + |cpu|) + 2^-8·(max|v| + |cpu|)" : "8·(T+D)·2^-24·(1 + |cpu|)", r);
  r.text += device_note(device) + observed;
  if (device.type == DeviceType::CUDA && o.time) {
    const double ours =
        median_gpu_ms(o.repeat, [&] { run_attention_rung(o.rung, dq, dk, dv, scale, dout, dlse, work, false); });
    // The framework's kernel for this dtype (rung 2 or 3 itself): what the ladder climbs to.
    const int top = input_type == DType::BFloat16 ? 3 : 2;
    const double fw =
        median_gpu_ms(o.repeat, [&] { run_attention_rung(top, dq, dk, dv, scale, dout, dlse, Tensor(), false); });
    const double ceiling = gpu_ceilings(o.repeat).second;  // GFLOP/s, float32 GEMM
    r.text += fmt::format("cuda: {:.3f} ms, {:.1f} GFLOP/s ({:.0f}% of the measured f32 GEMM ceiling {:.0f} GFLOP/s); "
                          "the framework's {} kernel {:.3f} ms; ours/framework {:.2f} (median of {})\n", ours,
                          flops / ours * 1e-6, 100.0 * flops / ours * 1e-6 / ceiling, ceiling, dtype, fw, fw / ours,
                          o.repeat);
  }
  return r;
}

KernelRunResult run_conv(const KernelRunOptions& o, Device device) {
  VB_CHECK(o.rung >= 1 && o.rung <= ladder::kConvRungs, "kernels: conv has no rung {} (rungs 1 … {})", o.rung,
           ladder::kConvRungs);
  const std::vector<int64_t> z = parse_shape(o.shape, "NxHxWxCxOxKxS", "8x14x14x256x256x3x1");
  VB_CHECK(z[3] >= 1 && z[5] >= 1 && z[6] >= 1 && z[5] < 64 && z[6] < 64,
           "kernels: --shape {}: C, K and S must be at least 1 (K and S below 64)", o.shape);
  Conv2dParams p;
  p.stride_h = p.stride_w = int(z[6]);
  p.pad_h = p.pad_w = int(z[5] / 2);
  const ConvShape s = conv_shape(z[0], z[1], z[2], z[3], z[4], z[5], z[5], p);
  const std::string need = ladder::conv_shape_requirement(o.rung, s);
  VB_CHECK(need.empty(), "kernels: {}; got --shape {}", need, o.shape);
  const ladder::Rung& rung = ladder::kConvRungTable[o.rung - 1];
  const std::string dtype = rung.dtype;
  VB_CHECK(o.dtype.empty() || o.dtype == dtype, "kernels: --dtype {}: conv rung {} takes {} inputs", o.dtype, o.rung,
           dtype);
  const DType input_type = dtype == "bf16" ? DType::BFloat16 : DType::Float32;
  const int64_t taps = s.KH * s.KW * s.C;
  Generator g{o.seed, 0};
  // The inputs as the rung sees them (bf16-rounded for rung 3), in float32 for the reference.
  const Tensor x = to(to(randn({s.N, s.H, s.W, s.C}, &g), input_type), DType::Float32);
  const Tensor w = to(to(mul(randn({s.O, s.KH, s.KW, s.C}, &g), 1.0 / std::sqrt(double(taps))), input_type), DType::Float32);
  const double flops = 2.0 * double(s.N * s.OH * s.OW) * double(s.O) * double(taps);
  KernelRunResult r;
  if (device.is_cpu())
    return cpu_reference(o, fmt::format("conv {} f32 on cpu", o.shape), "conv2d (the reference)", flops, "GFLOP/s",
                         [&] { (void)conv2d(x, w, {}, p); });
  r.text = fmt::format("conv rung {} ({}) {} {} on {}: {}\n", rung.number, rung.name, o.shape, dtype, device, rung.adds);
  const Tensor dx = contiguous(to(to(x, input_type), device)), dw = contiguous(to(to(w, input_type), device));
  Tensor dy = zeros({s.N, s.OH, s.OW, s.O}, input_type, device);
  const std::string observed = run_observed(o, [&](bool insight) { run_conv_rung(o.rung, dx, dw, p, dy, insight); });
  // |ours − cpu| ≤ 2·K·2⁻²⁴·Σ|x||w| per element (K = KH·KW·C taps: two float32 sums in different orders), and for
  // the bf16 rung the rounding of y to bf16, 2⁻⁸·|cpu| more.
  const std::vector<double> got = to(to(dy, Device()), DType::Float32).to_vector(), want = conv2d(x, w, {}, p).to_vector(),
                            mag = conv2d(abs(x), abs(w), {}, p).to_vector();
  const bool bf16 = input_type == DType::BFloat16;
  judge(got, want,
        [&](size_t i) {
          return 2.0 * double(taps) * std::ldexp(1.0, -24) * mag[i] + (bf16 ? std::ldexp(1.0, -8) * std::abs(want[i]) : 0.0);
        },
        bf16 ? "2·K·2^-24·Σ|x||w| + 2^-8·|cpu|" : "2·K·2^-24·Σ|x||w|", r);
  r.text += device_note(device) + observed;
  if (device.type == DeviceType::CUDA && o.time) {
    const double ours = median_gpu_ms(o.repeat, [&] { run_conv_rung(o.rung, dx, dw, p, dy, false); });
    const double lib = median_gpu_ms(o.repeat, [&] { backend(device).conv2d(dx, dw, Tensor(), p, dy); });
    const double ceiling = gpu_ceilings(o.repeat).second;  // GFLOP/s, float32 GEMM
    r.text += fmt::format("cuda: {:.3f} ms, {:.1f} GFLOP/s ({:.0f}% of the measured f32 GEMM ceiling {:.0f} GFLOP/s); "
                          "the backend's conv2d (cuDNN where the build has it) {:.3f} ms; ours/backend {:.2f} (median "
                          "of {})\n", ours, flops / ours * 1e-6, 100.0 * flops / ours * 1e-6 / ceiling, ceiling, lib,
                          lib / ours, o.repeat);
  }
  return r;
}

}  // namespace

KernelRunResult run_kernel(const KernelRunOptions& o) {
  VB_CHECK(o.op == "gemm" || o.op == "layer_norm" || o.op == "attention" || o.op == "conv",
           "kernels: no ladder for op '{}' (ops: gemm, layer_norm, attention, conv)", o.op);
  VB_CHECK(o.dtype.empty() || o.dtype == "f32" || o.dtype == "bf16" || (o.dtype == "f16" && o.op == "gemm"),
           "kernels: --dtype {}: expected f32 or bf16 (or f16, for the GEMM's tensor-core rungs)", o.dtype);
  VB_CHECK(o.op != "layer_norm" || o.dtype.empty() || o.dtype == "f32", "kernels: --dtype {}: the layer_norm ladder "
           "is float32 (f32)", o.dtype);
  VB_CHECK(o.repeat >= 1, "kernels: --repeat {} (expected ≥ 1)", o.repeat);
  VB_CHECK(o.svg.empty() || o.insight, "kernels: --svg draws what --insight records; add --insight");
  const Device device = resolve_device(o.device);
  VB_CHECK(!o.insight || device.type == DeviceType::EMU, "kernels: --insight runs under the emulator (--device emu)");
  if (o.op == "attention") return run_attention(o, device);
  if (o.op == "conv") return run_conv(o, device);
  return o.op == "gemm" ? run_gemm(o, device) : run_layer_norm(o, device);
}

}  // namespace vb::train

