// `videobert inspect` (what a safetensors file holds) and `videobert extract text|video` (BERT hidden
// states of text, ResNet features of frames, written as safetensors).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "models/bert.h"
#include "models/resnet.h"
#include "models/tokenizer.h"
#include "models/weights.h"
#include "tensor/error.h"
#include "tensor/safetensors.h"
#include "train/cli/commands.h"
#include "train/data/image.h"

namespace vb::cli {

namespace {

// Rows per forward pass: bounds memory for long inputs without changing any result.
constexpr int64_t kTextChunk = 32;
constexpr int64_t kFrameChunk = 16;

std::vector<std::string> read_lines(const std::string& path, const char* what) {
  std::ifstream in(path);
  VB_CHECK(in.good(), "extract text: cannot open the {} file {}", what, path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  VB_CHECK(!in.bad(), "extract text: error while reading {}", path);
  while (!lines.empty() && lines.back().find_first_not_of(" \t") == std::string::npos) lines.pop_back();
  VB_CHECK(!lines.empty(), "extract text: {} holds no sequences (one per line)", path);
  return lines;
}

std::vector<std::vector<int64_t>> parse_ids(const std::string& path, int64_t vocab_size) {
  std::vector<std::vector<int64_t>> seqs;
  int64_t line_no = 0;
  for (const std::string& line : read_lines(path, "--ids")) {
    ++line_no;
    std::istringstream words(line);
    std::vector<int64_t> ids;
    for (std::string w; words >> w;) {
      size_t used = 0;
      int64_t id = -1;
      try {
        id = std::stoll(w, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      VB_CHECK(used == w.size(), "extract text: {} line {}: '{}' is not a token id (expected integers separated by spaces)",
               path, line_no, w);
      VB_CHECK(id >= 0 && id < vocab_size, "extract text: {} line {}: token id {} outside the vocabulary of {}", path,
               line_no, id, vocab_size);
      ids.push_back(id);
    }
    VB_CHECK(!ids.empty(), "extract text: {} line {} is empty: every line must hold a sequence", path, line_no);
    seqs.push_back(std::move(ids));
  }
  return seqs;
}

void extract_text(const std::string& config_path, const std::string& weights, const std::string& ids_path,
                  const std::string& text_path, const std::string& vocab_path, bool cased, const std::string& out,
                  const std::string& device_name) {
  const Device device = Device::parse(device_name);
  models::BertConfig config = models::BertConfig::from_file(config_path);
  std::vector<std::vector<int64_t>> seqs;
  if (!ids_path.empty()) {
    seqs = parse_ids(ids_path, config.vocab_size);
  } else {
    WordPieceTokenizer tok = WordPieceTokenizer::load(vocab_path, !cased);
    VB_CHECK(tok.vocab_size() <= config.vocab_size, "extract text: the vocabulary {} has {} tokens, the model only {}",
             vocab_path, tok.vocab_size(), config.vocab_size);
    int64_t line_no = 0;
    for (const std::string& line : read_lines(text_path, "--text")) {
      ++line_no;
      try {
        seqs.push_back(tok.encode(line, true));
      } catch (const Error& e) {
        fail("extract text: {} line {}: {}", text_path, line_no, e.what());
      }
    }
  }
  int64_t t = 0;
  for (const auto& s : seqs) t = std::max(t, int64_t(s.size()));
  VB_CHECK(t <= config.max_position_embeddings,
           "extract text: a sequence of {} tokens is longer than the model's max_position_embeddings {}", t,
           config.max_position_embeddings);
  const int64_t n = int64_t(seqs.size());
  std::vector<int64_t> ids(size_t(n * t), config.pad_token_id), mask(size_t(n * t), 0);
  for (int64_t i = 0; i < n; ++i)
    for (size_t j = 0; j < seqs[size_t(i)].size(); ++j) {
      ids[size_t(i * t) + j] = seqs[size_t(i)][j];
      mask[size_t(i * t) + j] = 1;
    }
  Tensor all_ids = Tensor::from_vector(ids, {n, t}), all_mask = Tensor::from_vector(mask, {n, t});  // (N, T)

  models::BertModel model(config);
  models::load_hf_bert(model, weights);
  model.eval();
  model.to(device);
  NoGradGuard no_grad;
  std::vector<Tensor> hidden, pooled;
  for (int64_t i = 0; i < n; i += kTextChunk) {
    const int64_t rows = std::min(kTextChunk, n - i);
    models::BertOutput o = model.forward(to(narrow(all_ids, 0, i, rows), device), {},
                                         to(narrow(all_mask, 0, i, rows), device));
    hidden.push_back(to(o.last_hidden_state, Device()));  // (rows, T, H)
    pooled.push_back(to(o.pooler_output, Device()));      // (rows, H)
  }
  save_safetensors(out, {{"last_hidden_state", cat(hidden, 0)}, {"pooler_output", cat(pooled, 0)}, {"attention_mask", all_mask}},
                   {{"generator", "videobert extract text"}, {"weights", weights}});
  std::printf("wrote %s: %lld sequences of up to %lld tokens, hidden size %lld\n", out.c_str(), (long long)n,
              (long long)t, (long long)config.hidden_size);
}

bool is_frame_file(const std::filesystem::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

void extract_video(const std::string& arch, const std::string& weights, const std::string& frames_dir, int size,
                   const std::string& out, const std::string& device_name) {
  const Device device = Device::parse(device_name);
  VB_CHECK(size >= 32, "extract video: --size {} is too small for a ResNet (at least 32)", size);
  VB_CHECK(std::filesystem::is_directory(frames_dir), "extract video: --frames {} is not a folder", frames_dir);
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(frames_dir))
    if (e.is_regular_file() && is_frame_file(e.path())) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  VB_CHECK(!files.empty(), "extract video: no PNG or JPEG frames in {}", frames_dir);

  SafetensorsFile file = load_safetensors(weights);
  models::ResNetConfig config = models::ResNetConfig::preset(arch);
  config.num_classes = file.contains("fc.weight") ? file.at("fc.weight").size(0) : 0;
  models::ResNet model(config);
  models::load_torchvision_resnet(model, file.tensors, weights);
  model.eval();
  model.to(device);

  const int64_t t = int64_t(files.size()), s = size;
  NoGradGuard no_grad;
  std::vector<Tensor> features, logits;
  for (int64_t i = 0; i < t; i += kFrameChunk) {
    const int64_t rows = std::min(kFrameChunk, t - i);
    Tensor x = Tensor::empty({rows, s, s, 3});  // (rows, S, S, 3)
    for (int64_t r = 0; r < rows; ++r)
      data::eval_transform(data::read_image(files[size_t(i + r)].string()), size, x.data<float>() + r * s * s * 3);
    Tensor f = model.features(to(x, device));  // (rows, C)
    features.push_back(to(f, Device()));
    if (model.fc) logits.push_back(to((*model.fc)(f), Device()));
  }
  std::vector<std::pair<std::string, Tensor>> result = {{"features", cat(features, 0)}};
  if (!logits.empty()) result.emplace_back("logits", cat(logits, 0));
  save_safetensors(out, result, {{"generator", "videobert extract video"}, {"weights", weights}, {"arch", arch}});
  std::printf("wrote %s: %lld frames, %lld features each%s\n", out.c_str(), (long long)t,
              (long long)config.feature_dim(), model.fc ? ", with logits" : "");
}

}  // namespace

void add_inspect(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("inspect", "List the tensors of a safetensors file: names, dtypes, shapes, sizes");
  cmd->add_option("file", *path, "FILE.safetensors")->required();
  cmd->callback([path] {
    SafetensorsHeader h = parse_safetensors_header(*path);
    std::vector<const SafetensorsEntry*> entries;
    for (const auto& e : h.entries) entries.push_back(&e);
    std::sort(entries.begin(), entries.end(), [](auto* a, auto* b) { return a->name < b->name; });
    size_t width = 4;
    for (auto* e : entries) width = std::max(width, e->name.size());
    std::string text;
    for (const auto& [k, v] : h.metadata) text += fmt::format("metadata {}: {}\n", k, v);
    text += fmt::format("{:<{}}  {:<5}  {}\n", "name", width, "dtype", "shape");
    int64_t elements = 0, floating = 0;
    uint64_t bytes = 0;
    for (auto* e : entries) {
      int64_t n = 1;
      for (int64_t d : e->shape) n *= d;
      elements += n;
      if (is_floating(e->dtype)) floating += n;
      bytes += e->end - e->begin;
      text += fmt::format("{:<{}}  {:<5}  {}\n", e->name, width, safetensors_dtype_name(e->dtype), shape_str(e->shape));
    }
    text += fmt::format("{} tensors, {} parameters ({} elements in all), {} bytes of data\n", entries.size(), floating,
                        elements, bytes);
    std::fwrite(text.data(), 1, text.size(), stdout);
  });
}

void add_extract(CLI::App& app) {
  struct Args {
    std::string config, weights, ids, text, vocab, out, device = "cpu", arch, frames;
    bool cased = false;
    int size = 224;
  };
  auto a = std::make_shared<Args>();
  auto* extract = app.add_subcommand("extract", "Run a text or frame encoder over inputs, write its outputs");
  extract->require_subcommand(1);

  auto* text = extract->add_subcommand("text", "BERT hidden states of token-id or text lines");
  text->add_option("--config", a->config, "Hugging Face config.json")->required();
  text->add_option("--weights", a->weights, "Hugging Face BERT safetensors")->required();
  auto* ids = text->add_option("--ids", a->ids, "One sequence per line, token ids separated by spaces");
  auto* txt = text->add_option("--text", a->text, "One text per line, tokenized with --vocab ([CLS] … [SEP] added)");
  ids->excludes(txt);
  text->add_option("--vocab", a->vocab, "vocab.txt for --text")->needs(txt);
  text->add_flag("--cased", a->cased, "The vocabulary is cased: no lower-casing or accent stripping");
  text->add_option("--out", a->out, "Output safetensors: last_hidden_state, pooler_output, attention_mask")->required();
  text->add_option("--device", a->device, "cpu, cuda or emu");
  text->callback([a] {
    VB_CHECK(!a->ids.empty() || !a->text.empty(), "extract text: give --ids FILE or --text FILE --vocab VOCAB");
    VB_CHECK(a->text.empty() || !a->vocab.empty(), "extract text: --text needs --vocab VOCAB");
    extract_text(a->config, a->weights, a->ids, a->text, a->vocab, a->cased, a->out, a->device);
  });

  auto* video = extract->add_subcommand("video", "ResNet features (and logits) of the frames in a folder");
  video->add_option("--arch", a->arch, "resnet18, resnet34, resnet50, resnet101, resnet152 or resnet-tiny")->required();
  video->add_option("--weights", a->weights, "torchvision ResNet state_dict as safetensors")->required();
  video->add_option("--frames", a->frames, "Folder of PNG/JPEG frames, taken in name order")->required();
  video->add_option("--size", a->size, "Resize the shorter side and centre-crop to this size");
  video->add_option("--out", a->out, "Output safetensors: features (T, C), logits (T, classes)")->required();
  video->add_option("--device", a->device, "cpu, cuda or emu");
  video->callback([a] { extract_video(a->arch, a->weights, a->frames, a->size, a->out, a->device); });
}

}  // namespace vb::cli
