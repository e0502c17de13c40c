// ResNet as torchvision builds it (v1.5: the stride sits in the bottleneck's 3×3), with torchvision's
// state_dict names, channels-last activations (N, H, W, C), and width/depth knobs for tiny CPU variants.
#pragma once
#include <string>
#include <vector>

#include "nn/layers.h"

namespace vb::models {

struct ResNetConfig {
  bool bottleneck = false;              // Bottleneck (50/101/152) or BasicBlock (18/34)
  std::vector<int> blocks = {2, 2, 2, 2};  // blocks per stage
  int64_t width = 64;                   // channels of the stem and the first stage (doubling per stage)
  int64_t num_classes = 1000;           // 0: no classifier (features only)
  bool zero_init_residual = false;      // start each block's last BatchNorm at zero
  int64_t in_channels = 3;              // input channels of the stem (3: RGB; the frame encoder may add more)

  // resnet18, resnet34, resnet50, resnet101, resnet152, and "resnet-tiny" (BasicBlock, [1, 1, 1, 1], width 8).
  static ResNetConfig preset(const std::string& arch);
  int64_t feature_dim() const { return width * 8 * (bottleneck ? 4 : 1); }
};

class ResNetBlock : public nn::Module {
 public:
  ResNetBlock(bool bottleneck, int64_t in_channels, int64_t planes, int stride);
  Tensor forward(const Tensor& x);
  bool bottleneck;
  std::shared_ptr<nn::Conv2d> conv1, conv2, conv3;
  std::shared_ptr<nn::BatchNorm2d> bn1, bn2, bn3;
  std::shared_ptr<nn::Sequential> downsample;  // null when the shape is kept
};

class ResNet : public nn::Module {
 public:
  explicit ResNet(const ResNetConfig& c);
  // x (N, H, W, in_channels) → pooled features (N, feature_dim)
  Tensor features(const Tensor& x);
  // → logits (N, num_classes); an error when built without a classifier.
  Tensor forward(const Tensor& x);
  ResNetConfig config;
  std::shared_ptr<nn::Conv2d> conv1;
  std::shared_ptr<nn::BatchNorm2d> bn1;
  std::vector<std::shared_ptr<nn::ModuleList<ResNetBlock>>> layers;  // layer1 … layer4
  std::shared_ptr<nn::Linear> fc;                                    // null without a classifier
};

// Frames (B, T, H, W, 3) → per-frame ResNet features (B, T, C) → a clip vector (B, C) by temporal
// pooling: the mean, or a small transformer over time whose [CLS]-free mean is taken.
//
// frame_differences (TSN's "RGB difference", Wang et al. 2016): each frame enters the ResNet with its
// difference to the previous frame as three more channels, x_t ⊕ (x_t − x_{t−1}), the first frame's
// difference zero; the stem then has 6 input channels. A globally pooled ResNet vector of one frame keeps
// little of where a shape is, so without them a clip's motion is nearly invisible to the model
// (docs/TRAINING.md, "Frame differences: what makes motion visible").
class FrameEncoder : public nn::Module {
 public:
  FrameEncoder(const ResNetConfig& c, bool temporal_transformer = false, int64_t max_frames = 64,
               bool frame_differences = false);
  Tensor frame_features(const Tensor& frames);  // (B, T, C)
  Tensor pool(const Tensor& features);          // (B, T, C) → (B, C)
  Tensor forward(const Tensor& frames) { return pool(frame_features(frames)); }
  std::shared_ptr<ResNet> backbone;
  std::shared_ptr<nn::Embedding> time_embeddings;          // temporal transformer only
  std::shared_ptr<nn::MultiheadSelfAttention> temporal;    // temporal transformer only
  std::shared_ptr<nn::LayerNorm> temporal_norm;
  bool frame_differences = false;
};

}  // namespace vb::models
