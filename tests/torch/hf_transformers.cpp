// export_hf_bert's folder loaded by Hugging Face transformers itself (BertModel.from_pretrained, in the
// .venv-hf that scripts/install-deps.sh makes): its last_hidden_state and pooler_output against ours, for
// the golden tiny BERT (tests/golden/models_bert*). Float32; |theirs − ours| ≤ 1e-5 · scale + 1e-4·|ours|.
// Skipped (77) when .venv-hf or its transformers is missing.
#include "models/bert.h"
#include "models/weights.h"
#include "tensor/safetensors.h"
#include "tests/torch/torch_support.h"

using namespace vb;
using namespace vb::test;

TEST_CASE("transformers' BertModel.from_pretrained loads export_hf_bert's folder and agrees") {
  const std::string python = source_path(".venv-hf/bin/python");
  require_python(python, "transformers");
  TempDir dir("hf");
  models::BertModel model(models::BertConfig::from_file(source_path("tests/golden/models_bert_config.json")));
  models::load_hf_bert(model, source_path("tests/golden/models_bert.safetensors"));
  model.eval();
  models::export_hf_bert(model, dir / "export");

  const std::string io_path = source_path("tests/golden/models_bert_io.safetensors");
  REQUIRE(run_command(python + " " + source_path("tests/torch/full_size.py") + " hf " + (dir / "export") + " " +
                      io_path + " " + (dir / "theirs.safetensors")) == 0);
  const SafetensorsFile io = load_safetensors(io_path);
  const SafetensorsFile theirs = load_safetensors(dir / "theirs.safetensors");
  NoGradGuard no_grad;
  models::BertOutput ours = model.forward(io.at("input_ids"), io.at("token_type_ids"), io.at("attention_mask"));
  check_close(theirs.at("last_hidden_state"), ours.last_hidden_state, 1e-5 * max_abs(ours.last_hidden_state), 1e-4,
              "last_hidden_state");
  check_close(theirs.at("pooler_output"), ours.pooler_output, 1e-5 * max_abs(ours.pooler_output), 1e-4,
              "pooler_output");
}
