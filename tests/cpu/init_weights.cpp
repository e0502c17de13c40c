// The weights a run starts from (text_init, vision_init: train/tasks.h load_initial_weights) and
// `videobert export` (train/pretrain.h export_run), on the CPU with files this test writes itself: a
// torchvision-named ResNet file arrives unchanged in the frame encoder (with frame_differences, the stem's
// difference channels at zero, so the encoder computes the file's ResNet); bad folders, files and runs are
// errors naming them. tests/torch/hf_text_init has transformers itself as the judge of the BERT side.
#include <algorithm>
#include <filesystem>
#include <fstream>

#include "models/weights.h"
#include "tensor/atomic_file.h"
#include "tensor/safetensors.h"
#include "tests/support/check.h"
#include "tests/support/synth_dataset.h"
#include "train/config.h"
#include "train/pretrain.h"
#include "train/tasks.h"

namespace fs = std::filesystem;
using namespace vb;
using namespace vb::train;

namespace {

const fs::path& dataset() {
  static const fs::path dir = test::synth_dataset("vb_init_weights_data", 40, 2, 32);
  return dir;
}

fs::path temp(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("vb_init_weights_" + name);
  fs::remove_all(p);
  return p;
}

nlohmann::json config(const std::string& preset, std::vector<std::string> overrides) {
  nlohmann::json c = load_config(preset);
  overrides.insert(overrides.end(), {"frames=2", "image_size=32", "max_text_len=12", "batch_size=8", "steps=2",
                                     "workers=1", "eval_every=0", "checkpoint_every=0", "warmup_steps=1"});
  apply_overrides(c, overrides);
  return c;
}

const Tensor& named(const nn::NamedTensors& ts, const std::string& name) {
  const auto it = std::find_if(ts.begin(), ts.end(), [&](const auto& p) { return p.first == name; });
  REQUIRE_MESSAGE(it != ts.end(), name);
  return it->second;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  double m = 0;
  const std::vector<double> x = a.to_vector(), y = b.to_vector();
  REQUIRE(x.size() == y.size());
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

}  // namespace

TEST_CASE("vision_init: a torchvision ResNet file starts the frame encoder; the stem's difference channels at zero") {
  // The file: a resnet-tiny without classifier, random weights and statistics, in torchvision's names.
  models::ResNetConfig rc = models::ResNetConfig::preset("resnet-tiny");
  rc.num_classes = 0;
  manual_seed(7);
  models::ResNet source(rc);
  const fs::path file = temp("resnet.safetensors");
  models::export_torchvision_resnet(source, file.string());
  const nn::NamedTensors want = source.state_dict();  // our names, OHWI convolutions
  const WordPieceTokenizer tok = WordPieceTokenizer::load((dataset() / "vocab.txt").string());
  for (const bool differences : {false, true}) {
    CAPTURE(differences);
    const nlohmann::json c = config("tiny-late", {"vision_init=" + file.string(),
                                                  std::string("frame_differences=") + (differences ? "true" : "false")});
    std::unique_ptr<Task> task = make_task(c, tok);
    load_initial_weights(task->module(), c);
    const nn::NamedTensors got = frame_encoder(task->module()).backbone->state_dict();
    CHECK(got.size() == want.size());
    for (const auto& [name, w] : want) {
      CAPTURE(name);
      const Tensor& g = named(got, name);
      if (name == "conv1.weight" && differences) {
        REQUIRE(g.size(3) == 6);  // (O, kh, kw, 6): the frame's 3 channels, then its difference's 3
        CHECK(max_abs_diff(narrow(g, 3, 0, 3), w) == 0);
        CHECK(max_abs_diff(narrow(g, 3, 3, 3), zeros_like(w)) == 0);
      } else {
        CHECK(max_abs_diff(g, w) == 0);
      }
    }
    // With zero difference channels the encoder is the file's ResNet on the RGB frames.
    if (differences) {
      NoGradGuard no_grad;
      frame_encoder(task->module()).eval();
      source.eval();
      const Tensor frames = randn({1, 2, 32, 32, 3});
      const Tensor ours = frame_encoder(task->module()).frame_features(frames);
      const Tensor theirs = source.features(reshape(frames, {2, 32, 32, 3}));
      CHECK(max_abs_diff(reshape(ours, {2, -1}), theirs) < 1e-5);
    }
  }
  // A file of another architecture: the error names the file and the tensors that do not fit.
  models::ResNetConfig r18 = models::ResNetConfig::preset("resnet18");
  r18.num_classes = 0;
  const fs::path other = temp("resnet18.safetensors");
  models::export_torchvision_resnet(models::ResNet(r18), other.string());
  const nlohmann::json bad = config("tiny-late", {"vision_init=" + other.string()});
  std::unique_ptr<Task> task = make_task(bad, tok);
  CHECK_THROWS_WITH_AS(load_initial_weights(task->module(), bad), doctest::Contains(other.string().c_str()), Error);
  const nlohmann::json missing = config("tiny-late", {"vision_init=/nonexistent/resnet.safetensors"});
  CHECK_THROWS_WITH_AS(load_initial_weights(task->module(), missing), doctest::Contains("vision_init /nonexistent"), Error);
}

TEST_CASE("text_init: folders that are not a Hugging Face BERT are errors naming the folder and what is wrong") {
  const WordPieceTokenizer tok = WordPieceTokenizer::load((dataset() / "vocab.txt").string());
  CHECK_THROWS_WITH_AS(make_task(config("tiny-late", {"text_init=/nonexistent/bert"}), tok),
                       doctest::Contains("text_init /nonexistent/bert: not a Hugging Face BERT folder (no config.json)"),
                       Error);
  // A folder whose config.json disagrees with its vocabulary.
  const fs::path folder = temp("hf_bad");
  fs::create_directories(folder);
  write_text_atomic((folder / "config.json").string(),
                    R"({"vocab_size": 5, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                        "intermediate_size": 64, "max_position_embeddings": 64})");
  fs::copy_file(dataset() / "vocab.txt", folder / "vocab.txt");
  const nlohmann::json c = config("tiny-late", {"text_init=" + folder.string()});
  CHECK(text_vocab_path(c, dataset().string()) == (folder / "vocab.txt").string());
  const WordPieceTokenizer folder_tok = WordPieceTokenizer::load(text_vocab_path(c, dataset().string()));
  CHECK_THROWS_WITH_AS(make_task(c, folder_tok), doctest::Contains("config.json says vocab_size 5"), Error);
  // The right size, but no weights.
  write_text_atomic((folder / "config.json").string(),
                    fmt::format(R"({{"vocab_size": {}, "hidden_size": 32, "num_hidden_layers": 1,
                                    "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64}})",
                                folder_tok.vocab_size()));
  std::unique_ptr<Task> task = make_task(c, folder_tok);
  CHECK(text_encoder(task->module()).config.num_hidden_layers == 1);
  CHECK_THROWS_WITH_AS(load_initial_weights(task->module(), c), doctest::Contains("no model.safetensors"), Error);
  // Weights of another size: the strict load lists what does not fit.
  models::BertConfig wide = text_encoder(task->module()).config;
  wide.hidden_size = 64;
  wide.intermediate_size = 128;
  models::export_hf_bert(models::BertModel(wide), (folder / "wide").string());
  fs::copy_file(folder / "wide/model.safetensors", folder / "model.safetensors");
  CHECK_THROWS_AS(load_initial_weights(task->module(), c), Error);
}

TEST_CASE("export: a run's text encoder as a folder; what a run without a vocabulary or with a 6-channel stem needs") {
  const fs::path run = temp("run");
  pretrain(PretrainOptions{config("tiny-late", {}), dataset().string(), run.string(), "cpu", false, false, true, -1});
  CHECK(read_text_file((run / "vocab.txt").string()) == read_text_file((dataset() / "vocab.txt").string()));
  const fs::path out = temp("export");
  const std::vector<std::string> written = export_run(run.string(), out.string());
  CHECK(written.size() == 3);
  // The folder holds the run's text encoder: its tensors are the run's "text." tensors.
  const SafetensorsFile exported = load_safetensors((out / "model.safetensors").string());
  const SafetensorsFile weights = load_safetensors((run / "model.safetensors").string());
  for (const auto& [name, t] : exported.tensors) CHECK_MESSAGE(max_abs_diff(t, weights.at("text." + name)) == 0, name);
  const nlohmann::json hf = nlohmann::json::parse(read_text_file((out / "config.json").string()));
  CHECK(hf["vocab_size"] == WordPieceTokenizer::load((dataset() / "vocab.txt").string()).vocab_size());
  // tiny-late reads frame differences: torchvision's ResNet cannot take its 6-channel stem.
  CHECK_THROWS_WITH_AS(export_run(run.string(), out.string(), "", (out / "resnet.safetensors").string()),
                       doctest::Contains("frame_differences"), Error);
  // A run folder from before pretrain wrote vocab.txt: --data gives it.
  fs::remove(run / "vocab.txt");
  CHECK_THROWS_WITH_AS(export_run(run.string(), out.string()), doctest::Contains("give the dataset with --data"), Error);
  CHECK(export_run(run.string(), out.string(), dataset().string()).size() == 3);
  CHECK_THROWS_WITH_AS(export_run("/nonexistent/run", out.string()), doctest::Contains("not a run folder"), Error);
}
