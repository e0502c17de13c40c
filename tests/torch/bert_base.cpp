// A bert-base-sized BERT (12 layers, hidden 768, vocab 30522) with random weights: our forward against
// PyTorch's (tests/torch/full_size.py bert, Hugging Face's semantics) on a short padded batch, float32,
// within 1e-4 of the output's scale (|ours − torch| ≤ 1e-4 · max|torch|).
#include "models/bert.h"
#include "models/weights.h"
#include "tensor/safetensors.h"
#include "tests/torch/torch_support.h"

using namespace vb;
using namespace vb::test;

TEST_CASE("bert-base-sized BertModel matches PyTorch") {
  require_python(torch_python(), "torch");
  TempDir dir("bert_base");
  REQUIRE(run_command(torch_python() + " " + source_path("tests/torch/full_size.py") + " bert " + dir.path.string()) == 0);

  models::BertConfig config = models::BertConfig::from_file(dir / "config.json");
  CHECK(config.hidden_size == 768);
  CHECK(config.num_hidden_layers == 12);
  models::BertModel model(config);
  models::load_hf_bert(model, dir / "model.safetensors");  // BertModel names, position_ids present
  model.eval();
  const SafetensorsFile io = load_safetensors(dir / "io.safetensors");
  NoGradGuard no_grad;
  models::BertOutput out = model.forward(io.at("input_ids"), io.at("token_type_ids"), io.at("attention_mask"));
  for (const char* name : {"last_hidden_state", "pooler_output"}) {
    const Tensor& want = io.at(name);
    const Tensor& got = std::string(name) == "pooler_output" ? out.pooler_output : out.last_hidden_state;
    check_close(got, want, 1e-4 * max_abs(want), 0, name);
  }
}
