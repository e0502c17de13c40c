// torchvision's resnet50 with random weights and BatchNorm statistics, eval mode, one 224×224 image: our
// logits against PyTorch's (tests/torch/full_size.py resnet50), float32, within 1e-4 of the output's scale
// (|ours − torch| ≤ 1e-4 · max|torch|).
#include "models/resnet.h"
#include "models/weights.h"
#include "tensor/safetensors.h"
#include "tests/torch/torch_support.h"

using namespace vb;
using namespace vb::test;

TEST_CASE("torchvision resnet50 matches PyTorch in eval mode") {
  require_python(torch_python(), "torch, torchvision");
  TempDir dir("resnet50");
  REQUIRE(run_command(torch_python() + " " + source_path("tests/torch/full_size.py") + " resnet50 " + dir.path.string()) == 0);

  models::ResNet model(models::ResNetConfig::preset("resnet50"));
  models::load_torchvision_resnet(model, dir / "resnet50.safetensors");
  model.eval();
  const SafetensorsFile io = load_safetensors(dir / "io.safetensors");
  NoGradGuard no_grad;
  Tensor logits = model.forward(io.at("x"));  // (1, 1000)
  const Tensor& want = io.at("logits");
  check_close(logits, want, 1e-4 * max_abs(want), 0, "resnet50 logits");
}
