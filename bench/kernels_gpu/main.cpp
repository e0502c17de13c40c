// Kernel benchmarks on the GPU: our CUDA kernels (kernels/cuda/) at the shapes BERT-base and ResNet-50
// train with, beside the measured ceilings of the machine and the vendor library that does the same
// work, in the same run. Under the emulator (--device emu --smoke) the same cases run at tiny shapes and
// are checked against the CPU backend: a smoke test, with no timing at all.
//
// Usage (on a machine with a GPU and a build with the CUDA backend: cmake -S . -B build -G Ninja
// -DVIDEOBERT_CUDA=ON && cmake --build build --target bench_kernels_gpu; scripts/gpu-check.sh builds it and
// runs it beside torch_kernels_gpu.py on a lent GPU machine, see docs/GPU.md):
//   build/bench_kernels_gpu                         every case at full size; prints a markdown table
//   build/bench_kernels_gpu --json out.jsonl        ... and writes one JSON line per measurement (the file
//                                                   is rewritten after every case: a run cut short keeps
//                                                   what it measured)
//   build/bench_kernels_gpu --filter attention      only cases whose name contains the text
//   build/bench_kernels_gpu --device emu --smoke    tiny shapes under the emulator, checked (CI; ~seconds)
//   build/bench_kernels_gpu --device cuda --smoke   tiny shapes on the GPU, checked against the CPU
// Options: --samples N (timed batches, median reported; default 25), --warmup N (default 3),
//   --batch-ms X (length of one timed batch; default 2), --max-seconds X (a case stops sampling after X
//   seconds of timed batches, with at least 5 taken; default 1), --list (each case's name, FLOPs and
//   bytes, as torch_kernels_gpu.py --list prints them: the two must agree), --help.
// Exit status: 0 when every case ran (and, with --smoke, matched the CPU; without, our output agreed with
//   the baseline's: a baseline that cannot run is a note in the table, not a failure), 1 otherwise, 2 for a
//   bad argument, 77 when there is nothing to run here (no CUDA backend built, or no GPU; no emulator for
//   --device emu).
// PyTorch's side: python3 bench/torch_kernels_gpu.py --json torch.jsonl (same case names, same timing);
// python3 bench/compare_gpu.py ours.jsonl torch.jsonl joins both into one table.
//
// Timing (bench/gpu_timing.h): CUDA events around batches of back-to-back runs after a warm-up, the
// median of --samples batches, inputs and outputs rotated among enough sets to exceed twice the L2
// cache. Ours is timed through the Backend interface (kernels/backend.h) with preallocated outputs:
// exactly the kernels an op launches, plus its host-side checks and workspace allocations from the
// caching allocator, but without the op's output allocation and autograd recording. AdamW's case calls
// the fused multi-tensor launcher (kernels/cuda/nn.h) directly: the kernel Backend::adamw (train::AdamW's
// step) launches, without that method's per-tensor checks.
//
// Ceilings, measured at start-up: copy bandwidth = one 1 GiB device-to-device cudaMemcpy, counting the
// bytes read and written (2 GiB); GEMM = one cuBLASLt 8192³ GEMM, bf16 with float32 accumulation (the
// ceiling of bf16 and f16 cases) and float32 (CUBLAS_COMPUTE_32F, no TF32: the ceiling of f32 cases).
// "% of ceiling" is achieved FLOP/s over the GEMM ceiling of the case's dtype for compute-bound cases,
// achieved bytes/s over the copy bandwidth for memory-bound ones. "ours/baseline" is the baseline's time
// over ours: 1.0 = as fast, 0.5 = half as fast.
//
// Cases, in the order of all_cases() below, each family in its own file under bench/kernels_gpu/, whose top
// comment gives its shapes, FLOPs and bytes per run (s = bytes per element of the case's dtype) and its
// baseline:
//   gemm MxKxN, linear MxK->N                          gemm.cpp               compute-bound; cuBLASLt
//   conv2d fwd / dgrad / wgrad (ResNet-50's layers)    conv.cpp               compute-bound; cuDNN
//   attention fwd / bwd                                attention.cpp          compute-bound
//   layer_norm, softmax, cross_entropy fwd / bwd       rows.cpp               memory-bound
//   nearest_centroid N×D kK                            nearest_centroid.cpp   memory- or compute-bound by K
//   gemm_ladder, layer_norm_ladder, attention_ladder,  ladders.cpp            as the op; cuBLASLt for the
//   conv_ladder rung N (the kernel ladders)                                   f32 GEMM rungs
//   adamw bert-base                                    adamw.cpp              memory-bound
// cases.h holds what they share (the Case a family adds; how inputs are drawn); baselines.h, cublaslt.cpp and
// cudnn.cpp the vendor libraries, loaded at run time; this file the smoke test, the GPU run and the options.
// A new op's benchmark is an add_<op>_cases in a file of its own (or its family's), declared in cases.h and
// called from all_cases(), with its side in bench/torch_kernels_gpu.py where PyTorch has the op.
//
// With --smoke every case runs once at a tiny shape that takes the same kernel paths (the same
// warp-per-row or block-per-row forms, odd sizes, more AdamW tensors than one launch carries) on the
// device, with outputs poisoned first, and the same case once on the CPU backend; every output must
// match within |ours − cpu| ≤ atol + rtol·|cpu| (f32 1e-4 + 1e-4; bf16 and f16 1e-2 + 1.6e-2, about two
// ulps). Full-size GPU runs check the baseline instead: our output and the baseline's must agree within
// max|ours − baseline| ≤ tol · max|baseline| (f32 1e-4, f16 2e-3, bf16 1e-2).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bench/kernels_gpu/baselines.h"
#include "bench/kernels_gpu/cases.h"
#include "tensor/atomic_file.h"
#if defined(VB_HAVE_EMU)
#include "kernels/cuda/allocator.h"  // poisoned allocations (smoke), empty_cache
#endif

#if defined(VB_HAVE_CUDA)
#include <cuda_runtime.h>

#include <nlohmann/json.hpp>

#include "bench/gpu_timing.h"
#include "kernels/runtime.h"
#endif

namespace vb::bench::kernels_gpu {

namespace {

// Every case, in the order of the table and of --list (bench/torch_kernels_gpu.py lists the same cases in the
// same order).
std::vector<Case> all_cases(bool smoke) {
  std::vector<Case> cases;
  add_gemm_cases(cases, smoke);
  add_conv_cases(cases, smoke);
  add_attention_cases(cases, smoke);
  add_row_cases(cases, smoke);
  add_nearest_centroid_cases(cases, smoke);
  add_gemm_ladder_cases(cases, smoke);
  add_layer_norm_ladder_cases(cases, smoke);
  add_attention_ladder_cases(cases, smoke);
  add_conv_ladder_cases(cases, smoke);
  add_adamw_cases(cases, smoke);
  return cases;
}

// ---- comparison ----

struct Tolerance {
  double atol, rtol;  // elementwise, against the CPU (smoke)
  double normwise;    // max|a − b| ≤ normwise · max|b|, against a baseline
};

Tolerance tolerance(DType t) {
  switch (t) {
    case DType::Float32: return {1e-4, 1e-4, 1e-4};
    case DType::Float16: return {1e-2, 1.6e-2, 2e-3};
    default: return {1e-2, 1.6e-2, 1e-2};
  }
}

// The worst elementwise excess over atol + rtol·|expected| (≤ 0 when every element passes; NaN counts as
// failing unless both are NaN), with a description of the worst element.
struct Mismatch {
  int64_t bad = 0;
  std::string worst;
};

Mismatch compare_elementwise(const Tensor& actual, const Tensor& expected, double atol, double rtol) {
  const std::vector<double> a = actual.to_vector(), e = expected.to_vector();
  Mismatch m;
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) && std::isnan(e[i])) continue;
    const double excess = std::abs(a[i] - e[i]) - (atol + rtol * std::abs(e[i]));
    if (!(excess <= 0)) {
      ++m.bad;
      if (!(excess <= worst)) {
        worst = std::isnan(excess) ? INFINITY : excess;
        m.worst = fmt::format("element {}: {} vs {}", i, a[i], e[i]);
      }
    }
  }
  return m;
}

// ---- the smoke test: every case once on the device and once on the CPU ----

[[maybe_unused]] int run_smoke(const std::vector<Case>& cases, Device device) {
#if defined(VB_HAVE_EMU)
  set_poison_allocations(true);  // an output element a kernel leaves unwritten reads as NaN
#endif
  std::printf("## Kernel benchmark smoke test on %s (tiny shapes, checked against the CPU backend; no timing)\n\n",
              device.str().c_str());
  std::printf("| case | outputs | result |\n|---|---:|---|\n");
  int failures = 0;
  for (const Case& c : cases) {
    std::string result = "ok";
    try {
      Set ours = c.make(device), ref = c.make(Device());
      c.run(ours);
      c.run(ref);
      const Tolerance tol = tolerance(c.dtype);
      for (size_t i : c.outputs) {
        const Mismatch m = compare_elementwise(ours[i], ref[i], tol.atol, tol.rtol);
        if (m.bad > 0) {
          result = fmt::format("MISMATCH in output {} {}: {} elements outside atol {} rtol {}; worst {}", i,
                               shape_str(ours[i].shape()), m.bad, tol.atol, tol.rtol, m.worst);
          break;
        }
      }
    } catch (const std::exception& e) {
      result = std::string("ERROR: ") + e.what();
    }
    if (result != "ok") ++failures;
    std::printf("| %s | %zu | %s |\n", c.name.c_str(), c.outputs.size(), result.c_str());
    std::fflush(stdout);
  }
  std::printf("\n%zu cases, %d failed\n", cases.size(), failures);
  return failures == 0 ? 0 : 1;
}

#if defined(VB_HAVE_CUDA)
namespace rtc = vb::rt::cuda;

// ---- the GPU run ----

// max|a − b| / max|b| over the tensors.
double normwise_difference(const std::vector<Tensor>& actual, const std::vector<Tensor>& expected) {
  double diff = 0, scale = 0;
  for (size_t k = 0; k < actual.size(); ++k) {
    const std::vector<double> a = actual[k].to_vector(), e = expected[k].to_vector();
    for (size_t i = 0; i < a.size(); ++i) {
      const double d = std::abs(a[i] - e[i]);
      diff = std::isnan(d) ? INFINITY : std::max(diff, d);
      scale = std::max(scale, std::abs(e[i]));
    }
  }
  return scale > 0 ? diff / scale : diff;
}

std::vector<Tensor> outputs_on_cpu(const Case& c, const Set& s) {
  std::vector<Tensor> out;
  for (size_t i : c.outputs) out.push_back(to(s[i], Device()));
  return out;
}

struct Ceilings {
  double copy_bytes_per_s = 0;
  double gemm_bf16_flops = 0, gemm_f32_flops = 0;  // per second
};

int64_t set_bytes(const Set& s) {
  int64_t b = 0;
  for (const Tensor& t : s)
    if (t.defined()) b += t.numel() * t.element_size();
  return b;
}

std::string rate(double amount, double seconds, bool flops) {
  char buf[64];
  if (flops)
    std::snprintf(buf, sizeof buf, "%.1f TFLOP/s", amount / seconds / 1e12);
  else
    std::snprintf(buf, sizeof buf, "%.0f GB/s", amount / seconds / 1e9);
  return buf;
}

nlohmann::json json_line(const std::string& name, const std::string& impl, const std::string& device, DType t,
                         bool compute, double seconds, double flops, double bytes) {
  return {{"name", name},
          {"impl", impl},
          {"device", device},
          {"dtype", short_name(t)},
          {"bound", compute ? "compute" : "memory"},
          {"seconds", seconds},
          {"flops", flops},
          {"bytes", bytes}};
}

struct GpuOptions {
  bench::TimingOptions timing;
  std::string json_path;
};

// The copy bandwidth (one 1 GiB device-to-device copy, counting the bytes read and written) and the
// GEMM ceilings (one cuBLASLt 8192³ GEMM in bf16 and in f32).
Ceilings measure_ceilings(const GpuOptions& o, std::vector<nlohmann::json>& lines, const std::string& device_name) {
  const Device cuda(DeviceType::CUDA);
  Ceilings c;
  {
    const int64_t n = int64_t(1) << 28;  // float32 elements: 1 GiB
    Tensor src = zeros({n}, DType::Float32, cuda), dst = Tensor::empty({n}, DType::Float32, cuda);
    const size_t bytes = size_t(n) * 4;
    const double s = bench::median_seconds(
        [&](int) { rtc::copy_async(dst.data_ptr(), src.data_ptr(), bytes, rt::Stream{}); }, 1, o.timing);
    c.copy_bytes_per_s = 2.0 * double(bytes) / s;
    lines.push_back(
        json_line("ceiling copy 1GiB", "cudaMemcpy", device_name, DType::Float32, false, s, 0, 2.0 * double(bytes)));
  }
  empty_cache(DeviceType::CUDA);
  for (DType t : {DType::BFloat16, DType::Float32}) {
    const GemmShape g{8192, 8192, 8192, false};
    std::vector<Set> sets = {gemm_set(g, t, cuda)};
    std::unique_ptr<Baseline> lt;
    try {
      lt = make_lt_gemm(g, t, sets);
    } catch (const std::exception& e) {
      library_notes.push_back(std::string("the GEMM ceiling ran through our matmul: ") + e.what());
    }
    std::string impl = "cuBLASLt";
    std::function<void(int)> run = [&](int) { lt->run(sets[0]); };
    if (!lt) {  // our matmul is cuBLASLt too, with the heuristic's first algorithm
      impl = "videobert matmul (cuBLASLt)";
      run = [&](int) { backend(cuda).matmul(sets[0][0], sets[0][1], sets[0][2]); };
    }
    const double s = bench::median_seconds(run, 1, o.timing), flops = 2.0 * 8192.0 * 8192.0 * 8192.0;
    (t == DType::BFloat16 ? c.gemm_bf16_flops : c.gemm_f32_flops) = flops / s;
    lines.push_back(json_line(gemm_name(g, t).replace(0, 4, "ceiling gemm"), impl, device_name, t, true, s, flops,
                              elem(t) * 3.0 * 8192.0 * 8192.0));
    sets.clear();
    lt.reset();
    empty_cache(DeviceType::CUDA);
  }
  return c;
}

struct Row {
  std::string name;
  double ours_s = NAN, baseline_s = NAN, fraction = NAN;
  std::string ours_rate, baseline, note;
  bool failed = false;
};

std::string ms(double s) {
  if (std::isnan(s)) return "—";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", s * 1e3);
  return buf;
}

void print_row(const Row& r) {
  char fraction[32] = "—", ratio[32] = "—";
  if (!std::isnan(r.fraction)) std::snprintf(fraction, sizeof fraction, "%.0f%%", 100 * r.fraction);
  if (!std::isnan(r.baseline_s) && !std::isnan(r.ours_s))
    std::snprintf(ratio, sizeof ratio, "%.2f", r.baseline_s / r.ours_s);
  std::printf("| %s | %s | %s | %s | %s | %s | %s | %s |\n", r.name.c_str(), ms(r.ours_s).c_str(),
              r.ours_rate.empty() ? "—" : r.ours_rate.c_str(), fraction, r.baseline.empty() ? "—" : r.baseline.c_str(),
              ms(r.baseline_s).c_str(), ratio, r.note.c_str());
  std::fflush(stdout);
}

int run_gpu(const std::vector<Case>& cases, const GpuOptions& o) {
  const Device cuda(DeviceType::CUDA);
  cudaDeviceProp prop{};
  rtc::check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  int runtime_version = 0, driver_version = 0;
  rtc::check(cudaRuntimeGetVersion(&runtime_version), "cudaRuntimeGetVersion");
  rtc::check(cudaDriverGetVersion(&driver_version), "cudaDriverGetVersion");
  const std::string device_name = prop.name;
  const size_t l2 = size_t(prop.l2CacheSize);
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&now));

  std::vector<nlohmann::json> lines;
  std::printf("## Kernel benchmarks: videobert CUDA kernels vs vendor libraries\n\n");
  std::printf("Device: %s, %d SMs, %.0f GiB, L2 %.0f MiB, compute capability %d.%d; CUDA runtime %d, driver %d; %s.\n",
              prop.name, prop.multiProcessorCount, double(prop.totalGlobalMem) / (1 << 30), double(l2) / (1 << 20),
              prop.major, prop.minor, runtime_version, driver_version, date);
  std::printf(
      "Timing: median of %d batches of back-to-back runs (CUDA events), inputs rotated over at least 2x L2.\n\n",
      o.timing.samples);
  // The JSON lines so far, rewritten (atomically) after every case: a run cut short keeps what it measured.
  auto write_json = [&] {
    if (o.json_path.empty()) return;
    std::string text;
    for (const nlohmann::json& l : lines) text += l.dump() + "\n";
    write_text_atomic(o.json_path, text);
  };
  const Ceilings ceil = measure_ceilings(o, lines, device_name);
  write_json();
  std::printf(
      "Ceilings: copy %.0f GB/s (1 GiB device-to-device, read + write); GEMM 8192^3 bf16 %.1f TFLOP/s, "
      "f32 %.1f TFLOP/s (cuBLASLt).\n\n",
      ceil.copy_bytes_per_s / 1e9, ceil.gemm_bf16_flops / 1e12, ceil.gemm_f32_flops / 1e12);
  std::printf("| case | ours ms | ours | %% of ceiling | baseline | baseline ms | ours/baseline | note |\n");
  std::printf("|---|---:|---:|---:|---|---:|---:|---|\n");

  int failures = 0;
  for (const Case& c : cases) {
    Row r;
    r.name = c.name;
    try {
      std::vector<Set> sets;
      sets.push_back(c.make(cuda));
      const int count = bench::rotation_sets(size_t(set_bytes(sets[0])), l2);
      while (int(sets.size()) < count) sets.push_back(c.make(cuda));
      r.ours_s = bench::median_seconds([&](int i) { c.run(sets[size_t(i)]); }, count, o.timing);
      const double amount = c.compute_bound ? c.flops : c.bytes;
      r.ours_rate = rate(amount, r.ours_s, c.compute_bound);
      const double ceiling = c.compute_bound ? (c.dtype == DType::Float32 ? ceil.gemm_f32_flops : ceil.gemm_bf16_flops)
                                             : ceil.copy_bytes_per_s;
      r.fraction = amount / r.ours_s / ceiling;
      lines.push_back(
          json_line(c.name, "videobert", device_name, c.dtype, c.compute_bound, r.ours_s, c.flops, c.bytes));
      if (c.baseline) {
        // A baseline that cannot run leaves its columns empty with a note; it does not fail our case.
        std::unique_ptr<Baseline> b;
        try {
          b = c.baseline(sets);
          if (b) r.baseline_s = bench::median_seconds([&](int i) { b->run(sets[size_t(i)]); }, count, o.timing);
        } catch (const std::exception& e) {
          r.note = std::string("baseline not measured: ") + e.what();
          b.reset();
        }
        if (b) {
          r.baseline = b->name();
          lines.push_back(
              json_line(c.name, b->name(), device_name, c.dtype, c.compute_bound, r.baseline_s, c.flops, c.bytes));
          // Both compute the same thing: ours and the baseline's outputs on the first set agree.
          c.run(sets[0]);
          const std::vector<Tensor> ours = outputs_on_cpu(c, sets[0]);
          b->run(sets[0]);
          const double d = normwise_difference(ours, outputs_on_cpu(c, sets[0]));
          if (!(d <= tolerance(c.dtype).normwise)) {
            r.note = fmt::format("DISAGREES with {0}: max abs(ours − {0}) / max abs({0}) = {1:.2e}", b->name(), d);
            r.failed = true;
          }
        }
      }
    } catch (const std::exception& e) {
      r.note = std::string("ERROR: ") + e.what();
      r.failed = true;
    }
    failures += r.failed;
    std::replace(r.note.begin(), r.note.end(), '\n', ' ');  // one table row
    std::replace(r.note.begin(), r.note.end(), '|', '/');
    print_row(r);
    write_json();
    empty_cache(DeviceType::CUDA);
  }
#if !defined(VB_BENCH_CUDNN)
  library_notes.push_back(
      "this build found no cudnn.h, so it has no cuDNN conv baseline; PyTorch's conv rows "
      "(torch_kernels_gpu.py) are the conv baseline");
#endif
  for (const std::string& note : library_notes) std::printf("\nNote: %s.\n", note.c_str());
  std::printf(
      "\nNot measured: cuDNN's fused attention (it needs the cuDNN frontend's graph API); PyTorch's "
      "scaled_dot_product_attention is the attention baseline (bench/torch_kernels_gpu.py).\n");
  if (!o.json_path.empty())
    std::fprintf(stderr, "bench_kernels_gpu: %zu JSON lines written to %s\n", lines.size(), o.json_path.c_str());
  if (failures > 0) std::printf("\n%d cases failed.\n", failures);
  return failures == 0 ? 0 : 1;
}

#endif  // VB_HAVE_CUDA

}  // namespace

}  // namespace vb::bench::kernels_gpu

int main(int argc, char** argv) {
  using namespace vb::bench::kernels_gpu;
  using vb::Device;
  using vb::DeviceType;
  std::string device_arg = "cuda", filter;
  bool smoke = false, list = false;
#if defined(VB_HAVE_CUDA)
  GpuOptions gpu;
#endif
  auto usage = [&](int code) {
    std::fprintf(
        code == 0 ? stdout : stderr,
        "usage: %s [--device cuda|emu] [--smoke] [--json FILE] [--filter TEXT] [--samples N] [--warmup N]\n"
        "          [--batch-ms X] [--max-seconds X] [--list]\n"
        "(see the comment at the top of bench/kernels_gpu/main.cpp)\n",
        argv[0]);
    return code;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_kernels_gpu: %s needs a value\n", a.c_str());
        std::exit(usage(2));
      }
      return argv[++i];
    };
    if (a == "--device")
      device_arg = value();
    else if (a == "--smoke")
      smoke = true;
    else if (a == "--filter")
      filter = value();
    else if (a == "--list")
      list = true;
    else if (a == "--help" || a == "-h")
      return usage(0);
#if defined(VB_HAVE_CUDA)
    else if (a == "--json")
      gpu.json_path = value();
    else if (a == "--samples")
      gpu.timing.samples = std::stoi(value());
    else if (a == "--warmup")
      gpu.timing.warmup = std::stoi(value());
    else if (a == "--batch-ms")
      gpu.timing.batch_ms = std::stod(value());
    else if (a == "--max-seconds")
      gpu.timing.max_seconds = std::stod(value());
#else
    else if (a == "--json" || a == "--samples" || a == "--warmup" || a == "--batch-ms" || a == "--max-seconds")
      value();
#endif
    else {
      std::fprintf(stderr, "bench_kernels_gpu: unknown argument %s\n", a.c_str());
      return usage(2);
    }
  }
  try {
    const Device device = Device::parse(device_arg);
    std::vector<Case> cases = all_cases(smoke);
    if (!filter.empty()) std::erase_if(cases, [&](const Case& c) { return c.name.find(filter) == std::string::npos; });
    if (list) {
      for (const Case& c : cases) std::printf("%s\t%.17g\t%.17g\n", c.name.c_str(), c.flops, c.bytes);
      return 0;
    }
    if (device.type == DeviceType::EMU) {
#if defined(VB_HAVE_EMU)
      if (!smoke) {
        std::fprintf(stderr, "bench_kernels_gpu: the emulator cannot time kernels; run it with --smoke\n");
        return 2;
      }
      return run_smoke(cases, device);
#else
      std::printf(
          "bench_kernels_gpu: this build has no kernel emulator (CUDA's headers were not found); nothing to run\n");
      return 77;
#endif
    }
    if (device.type != DeviceType::CUDA) {
      std::fprintf(stderr, "bench_kernels_gpu: --device %s: expected cuda or emu\n", device_arg.c_str());
      return 2;
    }
#if defined(VB_HAVE_CUDA)
    if (vb::rt::cuda::device_count() == 0) {
      std::printf(
          "bench_kernels_gpu: no GPU on this machine; nothing to time (the emulator smoke test: --device emu "
          "--smoke)\n");
      return 77;
    }
    return smoke ? run_smoke(cases, device) : run_gpu(cases, gpu);
#else
    std::printf(
        "bench_kernels_gpu: this build has no CUDA backend (VIDEOBERT_CUDA=OFF, or nvcc was not found), so "
        "there is no GPU kernel to time; the emulator smoke test: --device emu --smoke\n");
    return 77;
#endif
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_kernels_gpu: %s\n", e.what());
    return 1;
  }
}
