#include "models/weights.h"

#include <filesystem>
#include <map>

#include "tensor/atomic_file.h"
#include "tensor/safetensors.h"

namespace vb::models {

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

}  // namespace

nn::NamedTensors hf_bert_names(const std::vector<std::pair<std::string, Tensor>>& tensors, const std::string& source) {
  nn::NamedTensors out;
  std::map<std::string, std::string> origin;  // our name → the file's name
  for (const auto& [file_name, t] : tensors) {
    std::string n = file_name;
    if (starts_with(n, "bert.")) n = n.substr(5);
    if (n == "embeddings.position_ids") continue;
    if (n == "cls.predictions.decoder.weight" || n == "cls.predictions.decoder.bias") continue;  // tied / duplicate
    if (n.find("LayerNorm.") != std::string::npos) {
      if (ends_with(n, ".gamma")) n = n.substr(0, n.size() - 6) + ".weight";
      else if (ends_with(n, ".beta")) n = n.substr(0, n.size() - 5) + ".bias";
    }
    auto [it, fresh] = origin.emplace(n, file_name);
    VB_CHECK(fresh, "{}: tensors \"{}\" and \"{}\" are both {}: a file must name each tensor one way", source,
             it->second, file_name, n);
    out.emplace_back(n, t);
  }
  return out;
}

void load_hf_bert(BertModel& model, const std::string& path, bool strict) {
  nn::NamedTensors named = hf_bert_names(load_safetensors(path).tensors, path);
  nn::NamedTensors encoder;
  for (auto& [n, t] : named)
    if (!starts_with(n, "cls.")) encoder.emplace_back(n, t);
  try {
    model.load_state_dict(encoder, strict);
  } catch (const Error& e) {
    fail("{}: {}", path, e.what());
  }
}

void load_hf_bert(BertForPreTraining& model, const std::string& path, bool strict) {
  nn::NamedTensors named = hf_bert_names(load_safetensors(path).tensors, path);
  for (auto& [n, t] : named)
    if (!starts_with(n, "cls.")) n = "bert." + n;
  try {
    model.load_state_dict(named, strict);
  } catch (const Error& e) {
    fail("{}: {}", path, e.what());
  }
}

void export_hf_bert(const BertModel& model, const std::string& folder, const std::string& vocab_path) {
  std::filesystem::create_directories(folder);
  const std::filesystem::path dir(folder);
  nn::NamedTensors state = model.state_dict();
  save_safetensors((dir / "model.safetensors").string(), state);
  write_text_atomic((dir / "config.json").string(), model.config.to_json().dump(2) + "\n");
  if (!vocab_path.empty()) write_text_atomic((dir / "vocab.txt").string(), read_text_file(vocab_path));
}

namespace {
// OIHW ↔ OHWI for 4-d convolution weights; other tensors unchanged.
Tensor to_ours(const Tensor& t) { return t.dim() == 4 ? contiguous(permute(t, {0, 2, 3, 1})) : t; }
Tensor to_torchvision(const Tensor& t) { return t.dim() == 4 ? contiguous(permute(t, {0, 3, 1, 2})) : t; }
}  // namespace

void load_torchvision_resnet(ResNet& model, const std::vector<std::pair<std::string, Tensor>>& tensors,
                             const std::string& source, bool strict) {
  nn::NamedTensors named;
  for (const auto& [n, t] : tensors) {
    if (!model.fc && starts_with(n, "fc.")) continue;
    named.emplace_back(n, to_ours(t));
  }
  try {
    model.load_state_dict(named, strict);
  } catch (const Error& e) {
    fail("{}: {}", source, e.what());
  }
}

void load_torchvision_resnet(ResNet& model, const std::string& path, bool strict) {
  load_torchvision_resnet(model, load_safetensors(path).tensors, path, strict);
}

void export_torchvision_resnet(const ResNet& model, const std::string& path) {
  nn::NamedTensors out;
  for (auto& [n, t] : model.state_dict()) out.emplace_back(n, to_torchvision(t));
  save_safetensors(path, out);
}

}  // namespace vb::models
