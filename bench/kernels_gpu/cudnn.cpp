// The conv baseline of bench_kernels_gpu: cuDNN's convolution forward, backward-data and backward-filter
// with NHWC descriptors, loaded at run time (baselines.h: libcudnn.so.<major>, or $VB_CUDNN_LIB, such as the
// one in PyTorch's nvidia.cudnn wheel), on the sets of the conv2d cases (conv.cpp). Built only where
// cudnn.h was found (VB_BENCH_CUDNN); without it, or without the library at run time, the table says so.
#include "bench/kernels_gpu/baselines.h"

#if defined(VB_HAVE_CUDA) && defined(VB_BENCH_CUDNN)
#include <cudnn.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "bench/kernels_gpu/cases.h"

namespace vb::bench::kernels_gpu {

// cuDNN 9 marks its convolution API deprecated in favour of the graph API; it is still supported, and
// it is the direct equivalent of our three kernels.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

namespace {

struct Cudnn {
  VB_BENCH_SYMBOL(cudnnGetVersion);
  VB_BENCH_SYMBOL(cudnnGetErrorString);
  VB_BENCH_SYMBOL(cudnnCreate);
  VB_BENCH_SYMBOL(cudnnCreateTensorDescriptor);
  VB_BENCH_SYMBOL(cudnnSetTensor4dDescriptor);
  VB_BENCH_SYMBOL(cudnnDestroyTensorDescriptor);
  VB_BENCH_SYMBOL(cudnnCreateFilterDescriptor);
  VB_BENCH_SYMBOL(cudnnSetFilter4dDescriptor);
  VB_BENCH_SYMBOL(cudnnDestroyFilterDescriptor);
  VB_BENCH_SYMBOL(cudnnCreateConvolutionDescriptor);
  VB_BENCH_SYMBOL(cudnnSetConvolution2dDescriptor);
  VB_BENCH_SYMBOL(cudnnSetConvolutionMathType);
  VB_BENCH_SYMBOL(cudnnDestroyConvolutionDescriptor);
  VB_BENCH_SYMBOL(cudnnFindConvolutionForwardAlgorithm);
  VB_BENCH_SYMBOL(cudnnFindConvolutionBackwardDataAlgorithm);
  VB_BENCH_SYMBOL(cudnnFindConvolutionBackwardFilterAlgorithm);
  VB_BENCH_SYMBOL(cudnnConvolutionForward);
  VB_BENCH_SYMBOL(cudnnConvolutionBackwardData);
  VB_BENCH_SYMBOL(cudnnConvolutionBackwardFilter);
  cudnnHandle_t handle = nullptr;
  size_t version = 0;

  explicit Cudnn(void* library) {
    const char* library_name = "libcudnn";
    VB_BENCH_LOAD(cudnnGetVersion);
    VB_BENCH_LOAD(cudnnGetErrorString);
    VB_BENCH_LOAD(cudnnCreate);
    VB_BENCH_LOAD(cudnnCreateTensorDescriptor);
    VB_BENCH_LOAD(cudnnSetTensor4dDescriptor);
    VB_BENCH_LOAD(cudnnDestroyTensorDescriptor);
    VB_BENCH_LOAD(cudnnCreateFilterDescriptor);
    VB_BENCH_LOAD(cudnnSetFilter4dDescriptor);
    VB_BENCH_LOAD(cudnnDestroyFilterDescriptor);
    VB_BENCH_LOAD(cudnnCreateConvolutionDescriptor);
    VB_BENCH_LOAD(cudnnSetConvolution2dDescriptor);
    VB_BENCH_LOAD(cudnnSetConvolutionMathType);
    VB_BENCH_LOAD(cudnnDestroyConvolutionDescriptor);
    VB_BENCH_LOAD(cudnnFindConvolutionForwardAlgorithm);
    VB_BENCH_LOAD(cudnnFindConvolutionBackwardDataAlgorithm);
    VB_BENCH_LOAD(cudnnFindConvolutionBackwardFilterAlgorithm);
    VB_BENCH_LOAD(cudnnConvolutionForward);
    VB_BENCH_LOAD(cudnnConvolutionBackwardData);
    VB_BENCH_LOAD(cudnnConvolutionBackwardFilter);
    version = cudnnGetVersion();
    VB_CHECK(version / 10000 == CUDNN_MAJOR, "libcudnn is version {}, this program was built against cuDNN {}", version,
             int(CUDNN_MAJOR));
    check(cudnnCreate(&handle), "cudnnCreate");
  }
  void check(cudnnStatus_t status, const char* what) const {
    VB_CHECK(status == CUDNN_STATUS_SUCCESS, "cuDNN baseline: {} failed: {}", what, cudnnGetErrorString(status));
  }
};

// The process's cuDNN ($VB_CUDNN_LIB, else libcudnn.so.<major> on the loader's path), or null.
Cudnn* cudnn() {
  static Cudnn* dnn = []() -> Cudnn* {
    const char* env = std::getenv("VB_CUDNN_LIB");
    std::string tried;
    void* library = open_library(
        {env ? std::string(env) : std::string(), "libcudnn.so." + std::to_string(CUDNN_MAJOR), "libcudnn.so"}, tried);
    if (library == nullptr) {
      library_notes.push_back("cuDNN could not be loaded (" + tried +
                              "): no conv baseline in this table; set VB_CUDNN_LIB to a libcudnn.so." +
                              std::to_string(CUDNN_MAJOR) + ", or use PyTorch's conv rows (torch_kernels_gpu.py)");
      return nullptr;
    }
    try {
      return new Cudnn(library);
    } catch (const std::exception& e) {
      library_notes.push_back(std::string("cuDNN unusable: ") + e.what());
      return nullptr;
    }
  }();
  return dnn;
}

cudnnDataType_t cudnn_type(DType t) {
  switch (t) {
    case DType::Float32: return CUDNN_DATA_FLOAT;
    case DType::BFloat16: return CUDNN_DATA_BFLOAT16;
    case DType::Float16: return CUDNN_DATA_HALF;
    default: fail("cuDNN baseline: dtype {}", t);
  }
}

// One convolution pass with NHWC descriptors, float32 compute, and the fastest algorithm cudnnFind*
// measures (any workspace it asks for).
class CudnnConv final : public Baseline {
 public:
  CudnnConv(Cudnn& dnn, ConvPass pass, const ConvShape& s, DType t) : dnn_(dnn), pass_(pass) {
    const cudnnDataType_t type = cudnn_type(t);
    dnn.check(dnn.cudnnCreateTensorDescriptor(&x_), "cudnnCreateTensorDescriptor");
    dnn.check(dnn.cudnnCreateTensorDescriptor(&y_), "cudnnCreateTensorDescriptor");
    dnn.check(dnn.cudnnCreateFilterDescriptor(&w_), "cudnnCreateFilterDescriptor");
    dnn.check(dnn.cudnnCreateConvolutionDescriptor(&conv_), "cudnnCreateConvolutionDescriptor");
    dnn.check(dnn.cudnnSetTensor4dDescriptor(x_, CUDNN_TENSOR_NHWC, type, int(s.N), int(s.C), int(s.H), int(s.W)), "x");
    dnn.check(dnn.cudnnSetTensor4dDescriptor(y_, CUDNN_TENSOR_NHWC, type, int(s.N), int(s.O), int(s.OH), int(s.OW)),
              "y");
    dnn.check(dnn.cudnnSetFilter4dDescriptor(w_, type, CUDNN_TENSOR_NHWC, int(s.O), int(s.C), int(s.KH), int(s.KW)),
              "w");
    dnn.check(dnn.cudnnSetConvolution2dDescriptor(conv_, s.pad, s.pad, s.stride, s.stride, 1, 1,
                                                  CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
              "cudnnSetConvolution2dDescriptor");
    dnn.check(dnn.cudnnSetConvolutionMathType(conv_, t == DType::Float32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH),
              "cudnnSetConvolutionMathType");
    size_t workspace = 0;
    int found = 0;
    bool chosen = false;
    switch (pass) {
      case ConvPass::Forward: {
        cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        dnn.check(dnn.cudnnFindConvolutionForwardAlgorithm(dnn.handle, x_, w_, conv_, y_,
                                                           CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &found, perf),
                  "cudnnFindConvolutionForwardAlgorithm");
        for (int i = 0; i < found && !chosen; ++i)
          if (perf[i].status == CUDNN_STATUS_SUCCESS) fwd_ = perf[i].algo, workspace = perf[i].memory, chosen = true;
        break;
      }
      case ConvPass::Data: {
        cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        dnn.check(dnn.cudnnFindConvolutionBackwardDataAlgorithm(dnn.handle, w_, y_, conv_, x_,
                                                                CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &found, perf),
                  "cudnnFindConvolutionBackwardDataAlgorithm");
        for (int i = 0; i < found && !chosen; ++i)
          if (perf[i].status == CUDNN_STATUS_SUCCESS) data_ = perf[i].algo, workspace = perf[i].memory, chosen = true;
        break;
      }
      case ConvPass::Filter: {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
        dnn.check(dnn.cudnnFindConvolutionBackwardFilterAlgorithm(
                      dnn.handle, x_, y_, conv_, w_, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &found, perf),
                  "cudnnFindConvolutionBackwardFilterAlgorithm");
        for (int i = 0; i < found && !chosen; ++i)
          if (perf[i].status == CUDNN_STATUS_SUCCESS) filter_ = perf[i].algo, workspace = perf[i].memory, chosen = true;
        break;
      }
    }
    VB_CHECK(chosen, "cuDNN baseline: no algorithm succeeded for this convolution ({} tried)", found);
    workspace_bytes_ = workspace;
    if (workspace > 0)
      workspace_ = Tensor::empty({int64_t((workspace + 3) / 4)}, DType::Float32, Device(DeviceType::CUDA));
  }
  ~CudnnConv() override {
    dnn_.cudnnDestroyConvolutionDescriptor(conv_);
    dnn_.cudnnDestroyFilterDescriptor(w_);
    dnn_.cudnnDestroyTensorDescriptor(y_);
    dnn_.cudnnDestroyTensorDescriptor(x_);
  }
  std::string name() const override { return "cuDNN"; }
  // The sets are conv2d's: fwd [x, w, y], dgrad [gy, w, gx], wgrad [gy, x, gw].
  void run(const Set& s) override {
    const float alpha = 1.0f, beta = 0.0f;
    void* ws = workspace_.defined() ? workspace_.data_ptr() : nullptr;
    switch (pass_) {
      case ConvPass::Forward:
        dnn_.check(dnn_.cudnnConvolutionForward(dnn_.handle, &alpha, x_, s[0].data_ptr(), w_, s[1].data_ptr(), conv_,
                                                fwd_, ws, workspace_bytes_, &beta, y_, s[2].data_ptr()),
                   "cudnnConvolutionForward");
        break;
      case ConvPass::Data:
        dnn_.check(dnn_.cudnnConvolutionBackwardData(dnn_.handle, &alpha, w_, s[1].data_ptr(), y_, s[0].data_ptr(),
                                                     conv_, data_, ws, workspace_bytes_, &beta, x_, s[2].data_ptr()),
                   "cudnnConvolutionBackwardData");
        break;
      case ConvPass::Filter:
        dnn_.check(
            dnn_.cudnnConvolutionBackwardFilter(dnn_.handle, &alpha, x_, s[1].data_ptr(), y_, s[0].data_ptr(), conv_,
                                                filter_, ws, workspace_bytes_, &beta, w_, s[2].data_ptr()),
            "cudnnConvolutionBackwardFilter");
        break;
    }
  }

 private:
  Cudnn& dnn_;
  ConvPass pass_;
  cudnnTensorDescriptor_t x_ = nullptr, y_ = nullptr;
  cudnnFilterDescriptor_t w_ = nullptr;
  cudnnConvolutionDescriptor_t conv_ = nullptr;
  cudnnConvolutionFwdAlgo_t fwd_{};
  cudnnConvolutionBwdDataAlgo_t data_{};
  cudnnConvolutionBwdFilterAlgo_t filter_{};
  Tensor workspace_;
  size_t workspace_bytes_ = 0;
};

}  // namespace

#pragma GCC diagnostic pop

std::unique_ptr<Baseline> make_cudnn_conv(ConvPass pass, const ConvShape& s, DType t, const std::vector<Set>&) {
  Cudnn* dnn = cudnn();
  if (dnn == nullptr) return nullptr;
  return std::make_unique<CudnnConv>(*dnn, pass, s, t);
}

}  // namespace vb::bench::kernels_gpu

#endif  // VB_HAVE_CUDA && VB_BENCH_CUDNN
