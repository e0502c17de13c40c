#include "models/resnet.h"

#include "nn/init.h"

namespace vb::models {

ResNetConfig ResNetConfig::preset(const std::string& arch) {
  ResNetConfig c;
  if (arch == "resnet18") c.blocks = {2, 2, 2, 2};
  else if (arch == "resnet34") c.blocks = {3, 4, 6, 3};
  else if (arch == "resnet50") c = {true, {3, 4, 6, 3}};
  else if (arch == "resnet101") c = {true, {3, 4, 23, 3}};
  else if (arch == "resnet152") c = {true, {3, 8, 36, 3}};
  else if (arch == "resnet-tiny") c = {false, {1, 1, 1, 1}, 8, 0};
  else fail("ResNet arch '{}': expected resnet18, resnet34, resnet50, resnet101, resnet152 or resnet-tiny", arch);
  return c;
}

ResNetBlock::ResNetBlock(bool bottleneck, int64_t in_channels, int64_t planes, int stride) : bottleneck(bottleneck) {
  const int64_t out_channels = planes * (bottleneck ? 4 : 1);
  if (bottleneck) {
    conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(in_channels, planes, 1, 1, 0, 1, 1, false));
    bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(planes));
    conv2 = register_module("conv2", std::make_shared<nn::Conv2d>(planes, planes, 3, stride, 1, 1, 1, false));
    bn2 = register_module("bn2", std::make_shared<nn::BatchNorm2d>(planes));
    conv3 = register_module("conv3", std::make_shared<nn::Conv2d>(planes, out_channels, 1, 1, 0, 1, 1, false));
    bn3 = register_module("bn3", std::make_shared<nn::BatchNorm2d>(out_channels));
  } else {
    conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(in_channels, planes, 3, stride, 1, 1, 1, false));
    bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(planes));
    conv2 = register_module("conv2", std::make_shared<nn::Conv2d>(planes, planes, 3, 1, 1, 1, 1, false));
    bn2 = register_module("bn2", std::make_shared<nn::BatchNorm2d>(planes));
  }
  if (stride != 1 || in_channels != out_channels) {
    downsample = register_module(
        "downsample", std::make_shared<nn::Sequential>(std::vector<std::shared_ptr<nn::UnaryModule>>{
                          std::make_shared<nn::Conv2d>(in_channels, out_channels, 1, stride, 0, 1, 1, false),
                          std::make_shared<nn::BatchNorm2d>(out_channels)}));
  }
}

Tensor ResNetBlock::forward(const Tensor& x) {
  Tensor h = relu((*bn1)((*conv1)(x)));
  h = (*bn2)((*conv2)(h));
  if (bottleneck) h = (*bn3)((*conv3)(relu(h)));
  Tensor identity = downsample ? (*downsample)(x) : x;
  return relu(add(h, identity));
}

ResNet::ResNet(const ResNetConfig& c) : config(c) {
  VB_CHECK(c.blocks.size() == 4, "ResNet: expected 4 stages, got {}", c.blocks.size());
  VB_CHECK(c.in_channels >= 1, "ResNet: in_channels must be at least 1, got {}", c.in_channels);
  conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(c.in_channels, c.width, 7, 2, 3, 1, 1, false));
  bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(c.width));
  int64_t channels = c.width;
  for (int stage = 0; stage < 4; ++stage) {
    auto list = std::make_shared<nn::ModuleList<ResNetBlock>>();
    const int64_t planes = c.width << stage;
    for (int b = 0; b < c.blocks[size_t(stage)]; ++b) {
      const int stride = (b == 0 && stage > 0) ? 2 : 1;
      list->push_back(std::make_shared<ResNetBlock>(c.bottleneck, channels, planes, stride));
      channels = planes * (c.bottleneck ? 4 : 1);
    }
    layers.push_back(register_module("layer" + std::to_string(stage + 1), list));
  }
  if (c.num_classes > 0) fc = register_module("fc", std::make_shared<nn::Linear>(channels, c.num_classes));
  // torchvision's initialisation: Kaiming normal (fan_out, ReLU) convolutions, BatchNorm 1/0.
  for (auto& [name, m] : named_modules()) {
    if (auto conv = std::dynamic_pointer_cast<nn::Conv2d>(m)) nn::init::kaiming_normal_(conv->weight, true);
  }
  if (c.zero_init_residual) {
    for (auto& list : layers)
      for (auto& block : *list) nn::init::constant_(block->bottleneck ? block->bn3->weight : block->bn2->weight, 0.0);
  }
}

Tensor ResNet::features(const Tensor& x) {
  VB_CHECK(x.dim() == 4 && x.size(3) == config.in_channels,
           "ResNet: expected images (N, H, W, {}) channels-last, got {}", config.in_channels, shape_str(x.shape()));
  Tensor h = max_pool2d(relu((*bn1)((*conv1)(x))), 3, 2, 1);
  for (auto& list : layers)
    for (auto& block : *list) h = block->forward(h);
  return reshape(adaptive_avg_pool2d(h, 1, 1), {h.size(0), h.size(3)});
}

Tensor ResNet::forward(const Tensor& x) {
  VB_CHECK(fc != nullptr, "ResNet: built without a classifier (num_classes = 0); use features()");
  return (*fc)(features(x));
}

FrameEncoder::FrameEncoder(const ResNetConfig& c, bool temporal_transformer, int64_t max_frames,
                           bool frame_differences)
    : frame_differences(frame_differences) {
  ResNetConfig features_only = c;
  features_only.num_classes = 0;
  features_only.in_channels = frame_differences ? 6 : 3;
  backbone = register_module("backbone", std::make_shared<ResNet>(features_only));
  if (temporal_transformer) {
    const int64_t dim = c.feature_dim();
    const int64_t heads = dim % 8 == 0 ? 8 : 1;
    time_embeddings = register_module("time_embeddings", std::make_shared<nn::Embedding>(max_frames, dim));
    nn::init::normal_(time_embeddings->weight, 0.0, 0.02);
    temporal = register_module("temporal", std::make_shared<nn::MultiheadSelfAttention>(dim, heads));
    temporal_norm = register_module("temporal_norm", std::make_shared<nn::LayerNorm>(dim));
  }
}

Tensor FrameEncoder::frame_features(const Tensor& frames) {
  VB_CHECK(frames.dim() == 5 && frames.size(4) == 3, "FrameEncoder: expected frames (B, T, H, W, 3), got {}",
           shape_str(frames.shape()));
  const int64_t b = frames.size(0), t = frames.size(1), h = frames.size(2), w = frames.size(3);
  Tensor input = frames;
  if (frame_differences) {  // x_t ⊕ (x_t − x_{t−1}), zero difference for the first frame
    Tensor first = zeros({b, 1, h, w, 3}, frames.dtype(), frames.device());
    Tensor diff = t > 1 ? cat({first, sub(narrow(frames, 1, 1, t - 1), narrow(frames, 1, 0, t - 1))}, 1) : first;
    input = cat({frames, diff}, 4);
  }
  Tensor flat = reshape(input, {b * t, h, w, input.size(4)});
  Tensor f = backbone->features(flat);  // (B·T, C)
  return reshape(f, {b, t, f.size(1)});
}

Tensor FrameEncoder::pool(const Tensor& features) {
  if (!temporal) return mean(features, {1});
  const int64_t t = features.size(1);
  VB_CHECK(t <= time_embeddings->weight.size(0), "FrameEncoder: {} frames exceed the temporal transformer's {}", t,
           time_embeddings->weight.size(0));
  Tensor pos = (*time_embeddings)(arange(t, DType::Int64, features.device()));  // (T, C)
  Tensor h = add(features, pos);
  h = (*temporal_norm)(add(h, temporal->forward(h)));
  return mean(h, {1});
}

}  // namespace vb::models
