// The CPU convolutions through oneDNN: when to take that path is in conv_onednn.h; the math and the reference
// are in conv.cpp.
//
// Each call describes the convolution to oneDNN in its own terms: logical dimensions in NCHW order with the
// memory format "nhwc" (our x, y, gx, gy as they lie), the weights as "ohwi" (our OHWI as they lie), and
// `any` for the layout the primitive wants its weights in (a blocked one such as OIhw16i16o). The weights are
// reordered into that layout on every call (one pass over them: 2.4 MB for a 3 × 3 × 256 × 256 kernel, against
// 9 ms of products at batch 8 and 14²), so that no copy of a parameter outlives an optimizer step. The
// primitive, its weight reorder and the descriptors are created once per geometry and kept (creating one
// takes tens of microseconds, a lookup under a mutex less than one).
//
// Cost: the same 2·N·OH·OW·O·KH·KW·C FLOPs as conv.cpp's product; bytes: x, y and w once, plus the weight
// reorder (w read and written once more).
#include "kernels/cpu/conv_onednn.h"

#include <atomic>
#include <cstdlib>

#include "kernels/cpu/gemm_parts.h"
#include "kernels/cpu/loops.h"
#include "tensor/error.h"
#include "tensor/tensor.h"

#ifdef VB_HAVE_ONEDNN
#include <omp.h>

#include <array>
#include <map>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <unordered_map>
#endif

namespace vb::cpu {

namespace {

// -1: not decided yet (VB_CPU_CONV is read on first use, so that a bad value is an error at the first
// convolution, not at load time); 0 off; 1 on.
std::atomic<int> g_on{-1};
std::atomic<int64_t> g_min_flops{int64_t(1) << 21};
std::atomic<uint64_t> g_calls{0};

bool enabled() {
  int on = g_on.load();
  if (on < 0) {
    const char* env = std::getenv("VB_CPU_CONV");
    const std::string v = env ? env : "";
    VB_CHECK(v.empty() || v == "onednn" || v == "ours",
             "VB_CPU_CONV={}: expected 'onednn' (oneDNN's convolutions where it has them, the default) or 'ours' "
             "(kernels/cpu/conv.cpp only)",
             v);
    on = v == "ours" ? 0 : 1;
    int expected = -1;
    g_on.compare_exchange_strong(expected, on);
    on = g_on.load();
  }
  return on == 1 && onednn_built();
}

}  // namespace

bool conv_onednn(bool on) {
  const bool previous = enabled();
  g_on.store(on ? 1 : 0);
  return previous;
}

int64_t conv_onednn_min_flops(int64_t flops) { return g_min_flops.exchange(flops); }

uint64_t conv_onednn_calls() { return g_calls.load(); }

#ifndef VB_HAVE_ONEDNN

bool onednn_built() { return false; }
std::string conv_onednn_info() {
  enabled();  // VB_CPU_CONV is checked in every build
  return "kernels/cpu/conv.cpp (built without oneDNN)";
}
std::string conv_onednn_last_impl() { return ""; }
bool onednn_conv2d(const Tensor&, const Tensor&, const Tensor&, const Conv2dParams&, Tensor&) { return false; }
bool onednn_conv2d_backward_input(const Tensor&, const Tensor&, const Conv2dParams&, Tensor&) { return false; }

#else

bool onednn_built() { return true; }

std::string conv_onednn_info() {
  const dnnl_version_t* v = dnnl_version();
  const std::string version = std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
  return enabled() ? "oneDNN " + version + " for forward and input gradient (VB_CPU_CONV=ours: kernels/cpu/conv.cpp)"
                   : "kernels/cpu/conv.cpp (VB_CPU_CONV=ours; oneDNN " + version + " built)";
}

namespace {

using dnnl::memory;
using Tag = memory::format_tag;

enum class Pass : int64_t { kForward, kBackwardInput };

// One convolution as oneDNN sees it, created once per geometry, dtypes and thread count.
struct Prepared {
  bool usable = false;  // false: oneDNN offers only its reference implementation here
  std::string impl;
  dnnl::primitive conv;
  memory::desc x, y, w_user, w_want, bias;  // x: src or diff_src, y: dst or diff_dst
  bool reorder_w = false;
  dnnl::reorder w_reorder;
};

struct State {
  std::mutex mutex;
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  std::map<std::array<int64_t, 20>, Prepared> cache;
  std::string last_impl;
};

State& state() {
  static State s;
  return s;
}

memory::data_type dnnl_type(DType t) { return t == DType::BFloat16 ? memory::data_type::bf16 : memory::data_type::f32; }

// The geometry of one call: x (N, H, W, C), w (O, KH, KW, C), y (N, OH, OW, O).
struct Call {
  Pass pass;
  const Shape &x, &w, &y;
  const Conv2dParams& p;
  DType in, out;  // operands' dtype (x or gy, and w), result's dtype (y or gx)
  bool bias;
};

Prepared prepare(const Call& c, dnnl::engine& engine) {
  Prepared r;
  const memory::dims xd = {c.x[0], c.x[3], c.x[1], c.x[2]}, wd = {c.w[0], c.w[3], c.w[1], c.w[2]},
                     yd = {c.y[0], c.y[3], c.y[1], c.y[2]};
  const memory::dims strides = {c.p.stride_h, c.p.stride_w}, dilates = {c.p.dilation_h - 1, c.p.dilation_w - 1},
                     pad = {c.p.pad_h, c.p.pad_w};
  const bool fwd = c.pass == Pass::kForward;
  // Forward: x is the input (operand type), y the result. Input gradient: gy the operand, gx the result.
  r.x = memory::desc(xd, dnnl_type(fwd ? c.in : c.out), Tag::nhwc);
  r.y = memory::desc(yd, dnnl_type(fwd ? c.out : c.in), Tag::nhwc);
  r.w_user = memory::desc(wd, dnnl_type(c.in), Tag::ohwi);
  const memory::desc w_any(wd, dnnl_type(c.in), Tag::any);
  if (c.bias) r.bias = memory::desc({c.w[0]}, memory::data_type::f32, Tag::x);
  const auto alg = dnnl::algorithm::convolution_direct;
  try {
    if (fwd) {
      const auto d = c.bias ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, alg, r.x, w_any,
                                                              r.bias, r.y, strides, dilates, pad, pad)
                            : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, alg, r.x, w_any, r.y,
                                                              strides, dilates, pad, pad);
      const dnnl::convolution_forward::primitive_desc pd(d, engine);
      r.impl = pd.impl_info_str();
      r.w_want = pd.weights_desc();
      if (r.impl.rfind("ref", 0) != 0) r.conv = dnnl::convolution_forward(pd);
    } else {
      // The forward it is the gradient of, all in the operands' type (bfloat16 operands with a float32 gx: the
      // forward's x would be bfloat16).
      const memory::desc x_in(xd, dnnl_type(c.in), Tag::nhwc);
      const dnnl::convolution_forward::primitive_desc hint(
          dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, alg, x_in, w_any, r.y, strides, dilates,
                                          pad, pad),
          engine);
      const dnnl::convolution_backward_data::primitive_desc pd(
          dnnl::convolution_backward_data::desc(alg, r.x, w_any, r.y, strides, dilates, pad, pad), engine, hint);
      r.impl = pd.impl_info_str();
      r.w_want = pd.weights_desc();
      if (r.impl.rfind("ref", 0) != 0) r.conv = dnnl::convolution_backward_data(pd);
    }
  } catch (const dnnl::error&) {
    return r;  // oneDNN has no implementation for this case: conv.cpp's path runs it
  }
  r.usable = r.impl.rfind("ref", 0) != 0;
  r.reorder_w = r.usable && r.w_want != r.w_user;
  if (r.reorder_w) r.w_reorder = dnnl::reorder(dnnl::reorder::primitive_desc(engine, r.w_user, engine, r.w_want));
  return r;
}

bool eligible(const Call& c) {
  if (!enabled() || c.p.groups != 1) return false;
  const bool f32 = c.in == DType::Float32 && c.out == DType::Float32;
  const bool b16 = c.in == DType::BFloat16 && (c.out == DType::Float32 || c.out == DType::BFloat16);
  if (!f32 && !b16) return false;
  const double flops = 2.0 * double(c.y[0]) * double(c.y[1]) * double(c.y[2]) * double(c.y[3]) * double(c.w[1]) *
                       double(c.w[2]) * double(c.w[3]);
  return flops >= double(g_min_flops.load());
}

// Runs the prepared convolution on contiguous tensors: x_or_gx, w, y_or_gy, bias (forward only).
bool run(const Call& c, const Tensor& xt, const Tensor& wt, const Tensor& yt, const Tensor& bias) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  std::array<int64_t, 20> key = {int64_t(c.pass), c.x[0],         c.x[1],          c.x[2],
                                 c.x[3],          c.w[0],         c.w[1],          c.w[2],
                                 c.y[1],          c.y[2],         c.p.stride_h,    c.p.stride_w,
                                 c.p.pad_h,       c.p.pad_w,      c.p.dilation_h,  c.p.dilation_w,
                                 int64_t(c.in),   int64_t(c.out), int64_t(c.bias), int64_t(omp_get_max_threads())};
  auto it = s.cache.find(key);
  if (it == s.cache.end()) {
    if (s.cache.size() >= 512) s.cache.clear();  // a bound for programs that see endless shapes
    it = s.cache.emplace(key, prepare(c, s.engine)).first;
  }
  const Prepared& r = it->second;
  if (!r.usable) return false;
  memory w_user(r.w_user, s.engine, wt.data_ptr()), w = w_user;
  Tensor w_buffer;
  if (r.reorder_w) {
    // The reordered weights live in the backend's allocator (64-byte aligned, large blocks cached).
    w_buffer = Tensor::empty({int64_t((r.w_want.get_size() + 3) / 4)}, DType::Float32, wt.device());
    w = memory(r.w_want, s.engine, w_buffer.data_ptr());
    r.w_reorder.execute(s.stream, w_user, w);
  }
  memory x(r.x, s.engine, xt.data_ptr()), y(r.y, s.engine, yt.data_ptr());
  if (c.pass == Pass::kForward) {
    std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, x}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, y}};
    if (c.bias) args.emplace(DNNL_ARG_BIAS, memory(r.bias, s.engine, bias.data_ptr()));
    r.conv.execute(s.stream, args);
  } else {
    r.conv.execute(s.stream, {{DNNL_ARG_DIFF_SRC, x}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DIFF_DST, y}});
  }
  s.stream.wait();
  // The benchmarks' FLOP counter (gemm_count_flops) counts these as conv.cpp's product would be counted.
  gemm_parts::count_flops(c.y[0] * c.y[1] * c.y[2], c.y[3], c.w[1] * c.w[2] * c.w[3]);
  s.last_impl = r.impl;
  g_calls.fetch_add(1);
  return true;
}

}  // namespace

std::string conv_onednn_last_impl() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  return s.last_impl;
}

bool onednn_conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p, Tensor& y) {
  const Call c{Pass::kForward, x.shape(), w.shape(), y.shape(), p, x.dtype(), y.dtype(), bias.defined()};
  if (w.dtype() != x.dtype() || !y.is_contiguous() || !eligible(c)) return false;
  const Tensor xc = contiguous(x), wc = contiguous(w), bc = bias.defined() ? float32_contiguous(bias) : Tensor();
  return run(c, xc, wc, y, bc);
}

bool onednn_conv2d_backward_input(const Tensor& gy, const Tensor& w, const Conv2dParams& p, Tensor& gx) {
  const Call c{Pass::kBackwardInput, gx.shape(), w.shape(), gy.shape(), p, gy.dtype(), gx.dtype(), false};
  if (w.dtype() != gy.dtype() || !gx.is_contiguous() || !eligible(c)) return false;
  const Tensor gyc = contiguous(gy), wc = contiguous(w);
  return run(c, gx, wc, gyc, Tensor());
}

#endif

}  // namespace vb::cpu
