// `videobert inspect` and `videobert extract text|video`, run as a user runs them: the built program
// (next to this test's executable), its exit status, its output files compared with the same models run
// in this process, and its errors.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "models/bert.h"
#include "models/resnet.h"
#include "models/tokenizer.h"
#include "models/weights.h"
#include "tensor/safetensors.h"
#include "tests/support/check.h"
#include "train/data/image.h"

using namespace vb;
using namespace vb::models;
namespace fs = std::filesystem;

namespace {

std::string golden(const std::string& name) { return std::string(VB_SOURCE_DIR) + "/tests/golden/" + name; }

fs::path program() { return fs::read_symlink("/proc/self/exe").parent_path() / "videobert"; }

struct Run {
  int status = -1;
  std::string out, err;
};

std::string read_all(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct Scratch {
  fs::path dir = fs::temp_directory_path() / ("vb_models_cli_" + std::to_string(::getpid()));
  Scratch() {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~Scratch() { fs::remove_all(dir); }
  std::string operator/(const std::string& f) const { return (dir / f).string(); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(dir / name) << text;
    return (dir / name).string();
  }
};

// Runs `env videobert args` (env: variable assignments for the program's environment, or "").
Run videobert(const Scratch& s, const std::string& args, const std::string& env = "") {
  REQUIRE_MESSAGE(fs::exists(program()), "build the videobert program first: ", program().string());
  const std::string cmd = env + " " + program().string() + " " + args + " >" + (s / "stdout") + " 2>" + (s / "stderr");
  const int status = std::system(cmd.c_str());
  Run r;
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_all(s / "stdout");
  r.err = read_all(s / "stderr");
  return r;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// The output line that starts with `first`, split into words.
std::vector<std::string> line_words(const std::string& out, const std::string& first) {
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream in(line);
    std::vector<std::string> words;
    for (std::string w; in >> w;) words.push_back(w);
    if (!words.empty() && words[0] == first) return words;
  }
  return {};
}

}  // namespace

TEST_CASE("info names the CPU convolutions' path; VB_CPU_CONV=ours switches it; a bad value is an error naming it") {
  Scratch s;
  const Run plain = videobert(s, "info");
  REQUIRE(plain.status == 0);
  CHECK(contains(plain.out, "CPU conv:"));
  const Run ours = videobert(s, "info", "VB_CPU_CONV=ours");
  REQUIRE(ours.status == 0);
  CHECK(contains(ours.out, "CPU conv:       kernels/cpu/conv.cpp"));
  const Run bad = videobert(s, "info", "VB_CPU_CONV=fastest");
  CHECK(bad.status == 1);
  CHECK(contains(bad.err, "VB_CPU_CONV=fastest: expected 'onednn'"));
}

TEST_CASE("inspect lists names, dtypes, shapes and the parameter count") {
  Scratch s;
  Run r = videobert(s, "inspect " + golden("models_bert.safetensors"));
  REQUIRE_MESSAGE(r.status == 0, r.err);
  CHECK(line_words(r.out, "bert.embeddings.word_embeddings.weight") ==
        std::vector<std::string>{"bert.embeddings.word_embeddings.weight", "F32", "(50,", "16)"});
  CHECK(line_words(r.out, "bert.embeddings.position_ids") ==
        std::vector<std::string>{"bert.embeddings.position_ids", "I64", "(1,", "16)"});
  CHECK(contains(r.out, "metadata format: pt"));
  BertForPreTraining model(BertConfig::from_file(golden("models_bert_config.json")));
  // The file's floating tensors are exactly the model's parameters (the tied decoder stored once).
  CHECK(contains(r.out, fmt::format("{} parameters", model.parameter_count())));
}

TEST_CASE("inspect: a malformed or missing file is a clear error and exit status 1, never a crash") {
  Scratch s;
  std::string bytes = read_all(golden("models_bert.safetensors"));
  std::ofstream(s / "cut.safetensors", std::ios::binary) << bytes.substr(0, bytes.size() - 10);
  Run r = videobert(s, "inspect " + (s / "cut.safetensors"));
  CHECK(r.status == 1);
  CHECK(contains(r.err, "videobert: error:"));
  CHECK(contains(r.err, "cut.safetensors"));
  std::ofstream(s / "tiny.safetensors", std::ios::binary) << "abc";
  r = videobert(s, "inspect " + (s / "tiny.safetensors"));
  CHECK(r.status == 1);
  CHECK(contains(r.err, "tiny.safetensors"));
  r = videobert(s, "inspect " + (s / "absent.safetensors"));
  CHECK(r.status == 1);
  CHECK(contains(r.err, "absent.safetensors"));
}

TEST_CASE("extract text --ids: padded, masked, the same numbers as the model in process") {
  Scratch s;
  const std::string ids = s.write("ids.txt", "2 5 9 11 4\n2 7\r\n2 3 3 8\n");
  Run r = videobert(s, "extract text --config " + golden("models_bert_config.json") + " --weights " +
                           golden("models_bert.safetensors") + " --ids " + ids + " --out " + (s / "text.safetensors"));
  REQUIRE_MESSAGE(r.status == 0, r.err);
  SafetensorsFile f = load_safetensors(s / "text.safetensors");
  CHECK(f.at("last_hidden_state").shape() == Shape{3, 5, 16});
  CHECK(f.at("pooler_output").shape() == Shape{3, 16});
  Tensor mask = Tensor::from_vector(std::vector<int64_t>{1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 0}, {3, 5});
  test::check_close(f.at("attention_mask"), mask, 0, 0, "attention_mask");

  BertModel model(BertConfig::from_file(golden("models_bert_config.json")));
  load_hf_bert(model, golden("models_bert.safetensors"));
  model.eval();
  Tensor in = Tensor::from_vector(std::vector<int64_t>{2, 5, 9, 11, 4, 2, 7, 0, 0, 0, 2, 3, 3, 8, 0}, {3, 5});
  NoGradGuard no_grad;
  BertOutput want = model.forward(in, {}, mask);
  test::check_close(f.at("last_hidden_state"), want.last_hidden_state, 1e-6, 1e-6, "last_hidden_state");
  test::check_close(f.at("pooler_output"), want.pooler_output, 1e-6, 1e-6, "pooler_output");
}

TEST_CASE("extract text --text --vocab tokenizes each line with [CLS] … [SEP]") {
  Scratch s;
  std::string vocab_text = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\ncat\nsat\n##s\non\nmat\n.\n";
  const std::string vocab = s.write("vocab.txt", vocab_text);
  const std::string text = s.write("text.txt", "The cat sat.\ncats on the mat\n");
  Run r = videobert(s, "extract text --config " + golden("models_bert_config.json") + " --weights " +
                           golden("models_bert.safetensors") + " --text " + text + " --vocab " + vocab + " --out " +
                           (s / "t.safetensors"));
  REQUIRE_MESSAGE(r.status == 0, r.err);
  SafetensorsFile f = load_safetensors(s / "t.safetensors");
  // [CLS] the cat sat . [SEP] = 6; [CLS] cat ##s on the mat [SEP] = 7.
  CHECK(f.at("last_hidden_state").shape() == Shape{2, 7, 16});
  Tensor mask = Tensor::from_vector(std::vector<int64_t>{1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1}, {2, 7});
  test::check_close(f.at("attention_mask"), mask, 0, 0, "attention_mask");

  BertModel model(BertConfig::from_file(golden("models_bert_config.json")));
  load_hf_bert(model, golden("models_bert.safetensors"));
  model.eval();
  Tensor in = Tensor::from_vector(std::vector<int64_t>{2, 5, 6, 7, 11, 3, 0, 2, 6, 8, 9, 5, 10, 3}, {2, 7});
  NoGradGuard no_grad;
  test::check_close(f.at("last_hidden_state"), model.forward(in, {}, mask).last_hidden_state, 1e-6, 1e-6,
                    "tokenized the same way");
}

TEST_CASE("extract text: bad inputs are errors naming the line") {
  Scratch s;
  const std::string base = "extract text --config " + golden("models_bert_config.json") + " --weights " +
                           golden("models_bert.safetensors") + " --out " + (s / "o.safetensors");
  Run r = videobert(s, base + " --ids " + s.write("a.txt", "2 5\n2 x7\n"));
  CHECK(r.status == 1);
  CHECK(contains(r.err, "line 2: 'x7' is not a token id"));
  r = videobert(s, base + " --ids " + s.write("b.txt", "2 50\n"));
  CHECK(r.status == 1);
  CHECK(contains(r.err, "token id 50 outside the vocabulary of 50"));
  r = videobert(s, base + " --ids " + s.write("c.txt", "2 5\n\n2 5\n"));
  CHECK(r.status == 1);
  CHECK(contains(r.err, "line 2 is empty"));
  r = videobert(s, base + " --ids " + s.write("d.txt", "2 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5\n"));
  CHECK(r.status == 1);
  CHECK(contains(r.err, "max_position_embeddings 16"));
  r = videobert(s, base);
  CHECK(r.status == 1);
  CHECK(contains(r.err, "--ids FILE or --text FILE"));
  r = videobert(s, base + " --ids " + s.write("e.txt", "2 5\n") + " --device nowhere");
  CHECK(r.status == 1);
  CHECK(contains(r.err, "nowhere"));
  CHECK(!fs::exists(s / "o.safetensors"));
}

TEST_CASE("extract video: frames in name order, resized and cropped, features and logits") {
  Scratch s;
  fs::create_directories(s / "frames");
  // Three frames: two already 32 × 32 (no resampling), one 48 × 40 (resize the shorter side, crop).
  Generator gen{3, 0};
  std::vector<data::Image> images;
  for (auto [w, h] : {std::pair{32, 32}, std::pair{48, 40}, std::pair{32, 32}}) {
    data::Image im(w, h);
    std::vector<double> v = rand({int64_t(im.rgb.size())}, &gen).to_vector();
    for (size_t i = 0; i < v.size(); ++i) im.rgb[i] = uint8_t(v[i] * 255);
    images.push_back(im);
  }
  data::write_png(s / "frames/frame_002.png", images[2]);  // written out of order on purpose
  data::write_png(s / "frames/frame_000.png", images[0]);
  data::write_png(s / "frames/frame_001.png", images[1]);
  s.write("frames/notes.txt", "not a frame");

  Run r = videobert(s, "extract video --arch resnet-tiny --weights " + golden("models_resnet_basic.safetensors") +
                           " --frames " + (s / "frames") + " --size 32 --out " + (s / "v.safetensors"));
  REQUIRE_MESSAGE(r.status == 0, r.err);
  SafetensorsFile f = load_safetensors(s / "v.safetensors");
  CHECK(f.at("features").shape() == Shape{3, 64});
  CHECK(f.at("logits").shape() == Shape{3, 10});

  ResNet model({false, {1, 1, 1, 1}, 8, 10});
  load_torchvision_resnet(model, golden("models_resnet_basic.safetensors"));
  model.eval();
  Tensor x = Tensor::empty({3, 32, 32, 3});
  for (int i = 0; i < 3; ++i) data::eval_transform(images[size_t(i)], 32, x.data<float>() + i * 32 * 32 * 3);
  NoGradGuard no_grad;
  Tensor features = model.features(x);
  test::check_close(f.at("features"), features, 1e-6, 1e-5, "features");
  test::check_close(f.at("logits"), (*model.fc)(features), 1e-6, 1e-5, "logits");

  SUBCASE("weights without a classifier: features only") {
    ResNet no_fc({false, {1, 1, 1, 1}, 8, 0});
    load_torchvision_resnet(no_fc, golden("models_resnet_basic.safetensors"));
    export_torchvision_resnet(no_fc, s / "nofc.safetensors");
    r = videobert(s, "extract video --arch resnet-tiny --weights " + (s / "nofc.safetensors") + " --frames " +
                         (s / "frames") + " --size 32 --out " + (s / "v2.safetensors"));
    REQUIRE_MESSAGE(r.status == 0, r.err);
    SafetensorsFile g = load_safetensors(s / "v2.safetensors");
    CHECK(!g.contains("logits"));
    test::check_close(g.at("features"), features, 1e-6, 1e-5, "features without fc");
  }
  SUBCASE("errors") {
    r = videobert(s, "extract video --arch resnet18 --weights " + golden("models_resnet_basic.safetensors") +
                         " --frames " + (s / "frames") + " --out " + (s / "v3.safetensors"));
    CHECK(r.status == 1);
    CHECK(contains(r.err, "shape mismatch"));
    fs::create_directories(s / "empty");
    r = videobert(s, "extract video --arch resnet-tiny --weights " + golden("models_resnet_basic.safetensors") +
                         " --frames " + (s / "empty") + " --out " + (s / "v3.safetensors"));
    CHECK(r.status == 1);
    CHECK(contains(r.err, "no PNG or JPEG frames"));
    s.write("frames/frame_003.png", "not a png");
    r = videobert(s, "extract video --arch resnet-tiny --weights " + golden("models_resnet_basic.safetensors") +
                         " --frames " + (s / "frames") + " --size 32 --out " + (s / "v3.safetensors"));
    CHECK(r.status == 1);
    CHECK(contains(r.err, "frame_003.png"));
    CHECK(!fs::exists(s / "v3.safetensors"));
  }
}
