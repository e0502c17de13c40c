// ResNet against torchvision (tests/golden/make_model_fixtures.py: torchvision's BasicBlock and Bottleneck
// in a narrower ResNet, random weights and BatchNorm statistics), in eval and in train mode: features,
// logits, the input's and every parameter's gradient, and the running statistics a training forward
// leaves; on cpu and (when its kernels are built) on the emulated device. Then the torchvision loader and
// exporter, and the sizes of resnet18/50 as torchvision counts them.
//
// Tolerance: tests/support/model_fixtures.h (scaled to the largest |value| of each fixture tensor). The
// fixture stores convolution gradients as torchvision does (OIHW); they are permuted to ours (OHWI) here.
#include <unistd.h>

#include <filesystem>
#include <string>

#include "kernels/backend.h"
#include "models/resnet.h"
#include "models/weights.h"
#include "tensor/safetensors.h"
#include "tests/support/check.h"
#include "tests/support/model_fixtures.h"

using namespace vb;
using namespace vb::models;
using namespace vb::model_test;
namespace fs = std::filesystem;

namespace {

Tensor oihw_to_ohwi(const Tensor& t) { return t.dim() == 4 ? contiguous(permute(t, {0, 2, 3, 1})) : t; }

struct Variant {
  std::string name;
  ResNetConfig config;
};

std::vector<Variant> variants() {
  return {{"basic", {false, {1, 1, 1, 1}, 8, 10}}, {"bottleneck", {true, {1, 1, 1, 1}, 4, 10}}};
}

void golden_resnet(const Variant& v, const std::string& mode, Device device) {
  const SafetensorsFile io = load_safetensors(golden("models_resnet_" + v.name + "_io.safetensors"));
  ResNet model(v.config);
  load_torchvision_resnet(model, golden("models_resnet_" + v.name + ".safetensors"));
  model.train(mode == "train");
  model.to(device);
  const std::string what = v.name + " " + mode + " " + device.str() + " ";

  Tensor x = to(io.at("x"), device);
  x.set_requires_grad(true);
  Tensor features = model.features(x);
  Tensor logits = (*model.fc)(features);
  check_scaled(features, io.at(mode + ".features"), what + "features");
  check_scaled(logits, io.at(mode + ".logits"), what + "logits");
  backward(add(sum(mul(features, to(io.at(mode + ".w.features"), device))),
               sum(mul(logits, to(io.at(mode + ".w.logits"), device)))));
  check_scaled(x.grad(), io.at(mode + ".grad.x"), what + "d loss / d x");
  int compared = 0;
  for (const auto& [name, p] : model.named_parameters()) {
    REQUIRE_MESSAGE(p.grad().defined(), name, " got no gradient");
    check_scaled(p.grad(), oihw_to_ohwi(io.at(mode + ".grad." + name)), what + "d loss / d " + name);
    ++compared;
  }
  int in_fixture = 0;
  for (const auto& [name, _] : io.tensors) in_fixture += name.rfind(mode + ".grad.", 0) == 0;
  CHECK(compared + 1 == in_fixture);  // + x
  if (mode == "train") {
    for (const auto& [name, b] : model.named_buffers()) {
      const Tensor& want = io.at("train.state." + name);
      if (b.dtype() == DType::Int64) CHECK_MESSAGE(to(b, Device()).item() == want.item(), what, name);
      else check_scaled(b, want, what + "updated " + name);
    }
  }
}

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("vb_models_resnet_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

}  // namespace

TEST_CASE("ResNet matches torchvision (eval and train): features, logits, gradients, running statistics, cpu") {
  for (const Variant& v : variants())
    for (const char* mode : {"eval", "train"}) golden_resnet(v, mode, Device());
}

TEST_CASE("ResNet matches torchvision on the emulated device") {
  const Device emu(DeviceType::EMU);
  if (!device_ready(emu)) return;
  // Every op of the model runs through the CUDA backend's kernels under the emulator.
  for (const Variant& v : variants())
    for (const char* mode : {"eval", "train"}) golden_resnet(v, mode, emu);
}

TEST_CASE("ResNet sizes as torchvision counts them") {
  struct Want {
    const char* arch;
    int64_t parameters;
    size_t entries;
  };
  for (const Want& w : {Want{"resnet18", 11689512, 122}, Want{"resnet50", 25557032, 320}}) {
    ResNet model(ResNetConfig::preset(w.arch));
    CHECK_MESSAGE(model.parameter_count() == w.parameters, w.arch);
    nn::NamedTensors state = model.state_dict();
    CHECK_MESSAGE(state.size() == w.entries, w.arch);
    int tracked = 0;
    for (const auto& [name, t] : state)
      if (name.size() > 19 && name.compare(name.size() - 19, 19, "num_batches_tracked") == 0) {
        ++tracked;
        CHECK(t.dtype() == DType::Int64);
        CHECK(t.dim() == 0);
      }
    CHECK(tracked > 0);
  }
  ResNet r50(ResNetConfig::preset("resnet50"));
  CHECK(r50.layers[1]->operator[](0).conv2->params.stride_h == 2);  // v1.5: the stride in the 3×3
  CHECK(r50.layers[1]->operator[](0).conv1->params.stride_h == 1);
  CHECK(r50.config.feature_dim() == 2048);
}

TEST_CASE("export_torchvision_resnet gives back torchvision's own state_dict, and loads back") {
  for (const Variant& v : variants()) {
    const std::string src = golden("models_resnet_" + v.name + ".safetensors");
    ResNet model(v.config);
    load_torchvision_resnet(model, src);
    fs::path dir = temp_dir("export");
    const std::string out = (dir / "resnet.safetensors").string();
    export_torchvision_resnet(model, out);
    const SafetensorsFile want = load_safetensors(src), got = load_safetensors(out);
    REQUIRE(got.tensors.size() == want.tensors.size());
    for (size_t i = 0; i < got.tensors.size(); ++i) {
      CHECK(got.tensors[i].first == want.tensors[i].first);  // torchvision's names, in its order
      CHECK(got.tensors[i].second.dtype() == want.tensors[i].second.dtype());
      test::check_close(got.tensors[i].second, want.tensors[i].second, 0, 0, v.name + " " + got.tensors[i].first);
    }
    ResNet back(v.config);
    load_torchvision_resnet(back, out);
    for (const auto& [name, t] : back.state_dict()) {
      bool found = false;
      for (const auto& [n2, t2] : model.state_dict())
        if (n2 == name) test::check_close(t, t2, 0, 0, "reloaded " + name), found = true;
      CHECK(found);
    }
    fs::remove_all(dir);
  }
}

TEST_CASE("torchvision loading: the classifier skipped without one, mismatches listed") {
  const std::string src = golden("models_resnet_basic.safetensors");
  ResNetConfig no_fc{false, {1, 1, 1, 1}, 8, 0};
  ResNet features_only(no_fc);
  CHECK_NOTHROW(load_torchvision_resnet(features_only, src));
  CHECK(features_only.fc == nullptr);
  CHECK_THROWS_WITH_AS(features_only.forward(zeros({1, 32, 32, 3})), doctest::Contains("without a classifier"), Error);

  ResNet wider({false, {1, 1, 1, 1}, 16, 10});
  try {
    load_torchvision_resnet(wider, src);
    FAIL("no error");
  } catch (const Error& e) {
    const std::string m = e.what();
    CHECK(m.find(src) != std::string::npos);
    CHECK(m.find("shape mismatch") != std::string::npos);
    CHECK(m.find("conv1.weight (checkpoint (8, 7, 7, 3), model (16, 7, 7, 3))") != std::string::npos);
  }
  ResNet deeper({false, {2, 1, 1, 1}, 8, 10});
  CHECK_THROWS_WITH_AS(load_torchvision_resnet(deeper, src), doctest::Contains("missing (12): layer1.1.conv1.weight"), Error);

  CHECK_THROWS_WITH_AS(ResNet(ResNetConfig::preset("resnet19")), doctest::Contains("resnet19"), Error);
  ResNet small(ResNetConfig::preset("resnet-tiny"));
  CHECK_THROWS_WITH_AS(small.features(zeros({1, 3, 32, 32})), doctest::Contains("channels-last"), Error);
}
