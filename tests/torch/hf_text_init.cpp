// A Hugging Face BERT folder as users bring it (transformers' save_pretrained, in the .venv-hf that
// scripts/install-deps.sh makes) starts the text side of every model (text_init=FOLDER): each of its tensors
// arrives unchanged; a run trained from it and written back by `videobert export` loads in transformers'
// BertModel.from_pretrained with no missing or unexpected key, and transformers' outputs equal ours for the
// trained weights (float32; |theirs − ours| ≤ 1e-5 · scale + 1e-4·|ours|, as tests/torch/hf_transformers).
// Skipped (77) when .venv-hf or its transformers is missing.
#include <algorithm>

#include "models/weights.h"
#include "tensor/atomic_file.h"
#include "tensor/safetensors.h"
#include "tests/support/synth_dataset.h"
#include "tests/torch/torch_support.h"
#include "train/config.h"
#include "train/pretrain.h"
#include "train/tasks.h"

using namespace vb;
using namespace vb::test;
using namespace vb::train;

TEST_CASE("text_init: a transformers BERT folder starts every model's text side; export gives the trained one back") {
  const std::string python = source_path(".venv-hf/bin/python");
  require_python(python, "transformers");
  TempDir dir("text_init");
  const std::filesystem::path data = synth_dataset("vb_torch_text_init_data", 40, 2, 32);
  REQUIRE(run_command(python + " " + source_path("tests/torch/full_size.py") + " hf_new " + (data / "vocab.txt").string() +
                      " " + (dir / "hf")) == 0);
  const SafetensorsFile file = load_safetensors(dir / "hf/model.safetensors");

  auto config = [&](const std::string& preset) {
    nlohmann::json c = load_config(preset);
    apply_overrides(c, {"text_init=" + (dir / "hf"), "frames=2", "image_size=32", "max_text_len=12", "batch_size=8",
                        "steps=3", "workers=1", "eval_every=0", "checkpoint_every=0", "warmup_steps=1"});
    return c;
  };
  for (const std::string preset : {"tiny", "tiny-late", "tiny-dual"}) {
    CAPTURE(preset);
    const nlohmann::json c = config(preset);
    const WordPieceTokenizer tok = WordPieceTokenizer::load(text_vocab_path(c, data.string()));
    std::unique_ptr<Task> task = make_task(c, tok);
    load_initial_weights(task->module(), c);
    models::BertModel& bert = text_encoder(task->module());
    CHECK(bert.config.hidden_size == 32);  // the folder's architecture, not the preset's (64)
    const nn::NamedTensors ours = bert.state_dict();
    int64_t compared = 0;
    for (const auto& [name, theirs] : file.tensors) {
      if (name == "embeddings.position_ids") continue;  // a buffer older transformers save; not a weight
      const auto it = std::find_if(ours.begin(), ours.end(), [&](const auto& p) { return p.first == name; });
      REQUIRE_MESSAGE(it != ours.end(), name);
      CHECK_MESSAGE(max_abs(sub(it->second, theirs)) == 0, name);
      ++compared;
    }
    CHECK(compared == int64_t(ours.size()));  // every tensor of the encoder came from the file
  }

  // Train from it, export, and let transformers judge the export against our trained encoder.
  const std::string run = dir / "run";
  pretrain(PretrainOptions{config("tiny-late"), data.string(), run, "cpu", false, false, true, -1});
  const std::vector<std::string> written = export_run(run, dir / "export");
  CHECK(written.size() == 3);
  CHECK(read_text_file(dir / "export/vocab.txt") == read_text_file((data / "vocab.txt").string()));

  const nlohmann::json c = read_run_config(run + "/config.json");
  const WordPieceTokenizer tok = WordPieceTokenizer::load(run + "/vocab.txt");
  std::unique_ptr<Task> task = make_task(c, tok);
  task->module().load_state_dict(load_safetensors(run + "/model.safetensors").tensors);
  task->module().eval();
  models::BertModel& bert = text_encoder(task->module());
  // Training moved the encoder away from the file (else the comparison below would only repeat the above).
  CHECK(max_abs(sub(bert.state_dict().front().second, file.at(bert.state_dict().front().first))) > 0);

  std::vector<int64_t> ids, mask;
  for (const char* caption : {"a small red circle moves to the left", "the big blue star"}) {
    const Encoding e = tok.encode(caption, EncodeOptions{.add_special = true, .max_length = 10, .pad_to = 10});
    ids.insert(ids.end(), e.ids.begin(), e.ids.end());
    mask.insert(mask.end(), e.attention_mask.begin(), e.attention_mask.end());
  }
  const Tensor input_ids = Tensor::from_vector(ids, {2, 10}), attention = Tensor::from_vector(mask, {2, 10});
  const Tensor types = zeros({2, 10}, DType::Int64);
  save_safetensors(dir / "io.safetensors", {{"input_ids", input_ids}, {"token_type_ids", types}, {"attention_mask", attention}});
  REQUIRE(run_command(python + " " + source_path("tests/torch/full_size.py") + " hf " + (dir / "export") + " " +
                      (dir / "io.safetensors") + " " + (dir / "theirs.safetensors")) == 0);
  const SafetensorsFile theirs = load_safetensors(dir / "theirs.safetensors");
  NoGradGuard no_grad;
  const models::BertOutput out = bert.forward(input_ids, types, attention);
  check_close(theirs.at("last_hidden_state"), out.last_hidden_state, 1e-5 * max_abs(out.last_hidden_state), 1e-4,
              "last_hidden_state");
  check_close(theirs.at("pooler_output"), out.pooler_output, 1e-5 * max_abs(out.pooler_output), 1e-4, "pooler_output");
}
