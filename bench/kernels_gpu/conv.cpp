// bench_kernels_gpu's convolution cases (per run; s = bytes per element of the case's dtype):
//   conv2d fwd / dgrad / wgrad, channels-last, batch 32, ResNet-50's layers       compute-bound
//       FLOPs 2·N·OH·OW·O·KH·KW·C for each pass; bytes: fwd x + w + y, dgrad gy + w + gx, wgrad gy + x + gw.
//       Shapes: conv1 7×7/2 3->64 at 224²; conv2_x 3×3 64->64 and 1×1 256->64 at 56²; conv3_x's strided
//       3×3/2 128->128 56²->28²; conv4_x 3×3 256->256 and 1×1 256->1024 at 14²; conv5_x 3×3 512->512 at
//       7². f32, bf16 (on the tensor cores, kernels/cuda/conv_mma.cu). Baseline: cuDNN
//       (cudnnConvolutionForward / BackwardData / BackwardFilter with NHWC descriptors, float32 compute, the
//       fastest algorithm cudnnFind* reports; f32 with CUDNN_FMA_MATH, no TF32, as our f32 kernels; cudnn.cpp).
//       cuDNN is loaded at run time (libcudnn.so.9, or $VB_CUDNN_LIB): without it the table says so.
//       PyTorch's conv2d on channels-last tensors (cuDNN under PyTorch's autotuning) is measured too, in
//       torch_kernels_gpu.py.
#include <cmath>

#include "bench/kernels_gpu/baselines.h"
#include "bench/kernels_gpu/cases.h"

namespace vb::bench::kernels_gpu {

namespace {

struct ConvLayer {
  int64_t n, h, w, c, o, k;
  int stride;
};

ConvShape conv_shape(const ConvLayer& l) {
  const int pad = int(l.k / 2);
  const int64_t oh = (l.h + 2 * pad - l.k) / l.stride + 1, ow = (l.w + 2 * pad - l.k) / l.stride + 1;
  return {l.n, l.h, l.w, l.c, l.o, l.k, l.k, oh, ow, l.stride, pad};
}

}  // namespace

void add_conv_cases(std::vector<Case>& cases, bool smoke) {
  // ResNet-50 (torchvision's v1.5: the stride sits on the 3×3), batch 32.
  std::vector<ConvLayer> layers = {{32, 224, 224, 3, 64, 7, 2},  {32, 56, 56, 64, 64, 3, 1},
                                   {32, 56, 56, 256, 64, 1, 1},  {32, 56, 56, 128, 128, 3, 2},
                                   {32, 14, 14, 256, 256, 3, 1}, {32, 14, 14, 256, 1024, 1, 1},
                                   {32, 7, 7, 512, 512, 3, 1}};
  if (smoke) {
    // The same kernel sizes, strides and paddings on a small image with fewer channels.
    for (ConvLayer& l : layers) {
      l.n = 2;
      l.h = l.w = l.k == 7 ? 11 : 9;
      l.c = l.c == 3 ? 3 : l.c / 16;
      l.o = l.o / 16;
    }
  }
  for (DType t : {DType::Float32, DType::BFloat16}) {
    for (const ConvLayer& l : layers) {
      const ConvShape s = conv_shape(l);
      Conv2dParams p;
      p.stride_h = p.stride_w = s.stride;
      p.pad_h = p.pad_w = s.pad;
      const std::string shape =
          fmt::format("n{} {}x{}x{}->{} k{} s{} {}", l.n, l.h, l.w, l.c, l.o, l.k, l.stride, short_name(t));
      const double flops = 2.0 * double(s.N * s.OH * s.OW * s.O * s.KH * s.KW * s.C);
      const double x_bytes = elem(t) * double(s.N * s.H * s.W * s.C),
                   w_bytes = elem(t) * double(s.O * s.KH * s.KW * s.C),
                   y_bytes = elem(t) * double(s.N * s.OH * s.OW * s.O);
      const Shape xs = {s.N, s.H, s.W, s.C}, ws = {s.O, s.KH, s.KW, s.C}, ys = {s.N, s.OH, s.OW, s.O};
      const double wscale = 1.0 / std::sqrt(double(s.KH * s.KW * s.C));
      {
        Case c;
        c.name = "conv2d fwd " + shape;
        c.dtype = t;
        c.flops = flops;
        c.bytes = x_bytes + w_bytes + y_bytes;
        c.make = [=](Device d) { return Set{input(xs, t, d, 21), input(ws, t, d, 22, wscale), output(ys, t, d)}; };
        c.run = [p](Set& set) { backend_of(set).conv2d(set[0], set[1], Tensor(), p, set[2]); };
        c.outputs = {2};
#if defined(VB_HAVE_CUDA) && defined(VB_BENCH_CUDNN)
        c.baseline = [s, t](const std::vector<Set>& sets) { return make_cudnn_conv(ConvPass::Forward, s, t, sets); };
#endif
        cases.push_back(std::move(c));
      }
      {
        Case c;
        c.name = "conv2d dgrad " + shape;
        c.dtype = t;
        c.flops = flops;
        c.bytes = y_bytes + w_bytes + x_bytes;
        c.make = [=](Device d) { return Set{input(ys, t, d, 23), input(ws, t, d, 22, wscale), output(xs, t, d)}; };
        c.run = [p](Set& set) { backend_of(set).conv2d_backward_input(set[0], set[1], p, set[2]); };
        c.outputs = {2};
#if defined(VB_HAVE_CUDA) && defined(VB_BENCH_CUDNN)
        c.baseline = [s, t](const std::vector<Set>& sets) { return make_cudnn_conv(ConvPass::Data, s, t, sets); };
#endif
        cases.push_back(std::move(c));
      }
      {
        Case c;
        c.name = "conv2d wgrad " + shape;
        c.dtype = t;
        c.flops = flops;
        c.bytes = y_bytes + x_bytes + w_bytes;
        // gy scaled so that the weight gradient, a sum over N·OH·OW positions, is of order 1.
        const double gscale = 1.0 / std::sqrt(double(s.N * s.OH * s.OW));
        c.make = [=](Device d) { return Set{input(ys, t, d, 23, gscale), input(xs, t, d, 21), output(ws, t, d)}; };
        c.run = [p](Set& set) { backend_of(set).conv2d_backward_weight(set[0], set[1], p, set[2]); };
        c.outputs = {2};
#if defined(VB_HAVE_CUDA) && defined(VB_BENCH_CUDNN)
        c.baseline = [s, t](const std::vector<Set>& sets) { return make_cudnn_conv(ConvPass::Filter, s, t, sets); };
#endif
        cases.push_back(std::move(c));
      }
    }
  }
}

}  // namespace vb::bench::kernels_gpu
