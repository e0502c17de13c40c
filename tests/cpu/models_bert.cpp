// BERT against Hugging Face's semantics (tests/golden/make_model_fixtures.py: a plain-PyTorch
// BertForPreTraining with Hugging Face's names and random weights): outputs and the gradient of every
// parameter, on cpu and (when its kernels are built) on the emulated device; then the checkpoint
// loader's name handling, strict-load errors and the Hugging Face export round trip.
//
// Tolerance: tests/support/model_fixtures.h (scaled to the largest |value| of each fixture tensor).
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "kernels/backend.h"
#include "models/bert.h"
#include "models/weights.h"
#include "tensor/atomic_file.h"
#include "tensor/safetensors.h"
#include "tests/support/check.h"
#include "tests/support/model_fixtures.h"

using namespace vb;
using namespace vb::models;
using namespace vb::model_test;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("vb_models_bert_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

BertConfig fixture_config() { return BertConfig::from_file(golden("models_bert_config.json")); }

// The fixture's checkpoint with its tensors changed by `edit`, written to a temporary file.
std::string edited_checkpoint(const std::string& name,
                              const std::function<void(std::vector<std::pair<std::string, Tensor>>&)>& edit) {
  auto tensors = load_safetensors(golden("models_bert.safetensors")).tensors;
  edit(tensors);
  fs::path path = temp_dir("edit") / (name + ".safetensors");
  save_safetensors(path.string(), tensors);
  return path.string();
}

BertOutput run_encoder(BertModel& model, const SafetensorsFile& io) {
  NoGradGuard no_grad;
  return model.forward(io.at("input_ids"), io.at("token_type_ids"), io.at("attention_mask"));
}

void golden_pretraining(Device device) {
  const SafetensorsFile io = load_safetensors(golden("models_bert_io.safetensors"));
  BertForPreTraining model(fixture_config());
  load_hf_bert(model, golden("models_bert.safetensors"));
  model.eval();
  model.to(device);

  BertOutput out = model.bert->forward(to(io.at("input_ids"), device), to(io.at("token_type_ids"), device),
                                       to(io.at("attention_mask"), device));
  Tensor mlm = model.cls->predictions->forward(out.last_hidden_state);
  Tensor nsp = (*model.cls->seq_relationship)(out.pooler_output);
  const std::vector<std::pair<std::string, Tensor>> outputs = {{"last_hidden_state", out.last_hidden_state},
                                                               {"pooler_output", out.pooler_output},
                                                               {"prediction_logits", mlm},
                                                               {"seq_relationship_logits", nsp}};
  Tensor loss;
  for (const auto& [name, y] : outputs) {
    check_scaled(y, io.at(name), device.str() + " " + name);
    Tensor term = sum(mul(y, to(io.at("w." + name), device)));
    loss = loss.defined() ? add(loss, term) : term;
  }
  backward(loss);

  int compared = 0;
  for (const auto& [name, p] : model.named_parameters()) {
    REQUIRE_MESSAGE(p.grad().defined(), name, " got no gradient");
    const std::string what = device.str() + " d loss / d " + name;
    const std::string key_bias = "attention.self.key.bias";
    if (name.size() > key_bias.size() && name.compare(name.size() - key_bias.size(), key_bias.size(), key_bias) == 0) {
      // Softmax ignores what is added to a whole row of scores, and q·b_k is one constant per row: this
      // gradient is zero, and both sides hold only rounding noise, small against the key weights' gradient.
      const std::string key_weight = name.substr(0, name.size() - 4) + "weight";
      const double scale = max_abs(io.at("grad." + key_weight));
      test::check_close(to(p.grad(), Device()), zeros(p.shape()), 1e-5 * scale, 0, what);
      CHECK(max_abs(io.at("grad." + name)) <= 1e-5 * scale);
    } else {
      check_scaled(p.grad(), io.at("grad." + name), what);
    }
    ++compared;
  }
  // The fixture has one gradient per PyTorch parameter (the tied decoder counted once): all compared.
  int in_fixture = 0;
  for (const auto& [name, _] : io.tensors) in_fixture += name.rfind("grad.", 0) == 0;
  CHECK(compared == in_fixture);
}

}  // namespace

TEST_CASE("BERT config.json from the fixture") {
  BertConfig c = fixture_config();
  CHECK(c.vocab_size == 50);
  CHECK(c.hidden_size == 16);
  CHECK(c.num_hidden_layers == 2);
  CHECK(c.layer_norm_eps == 1e-12);
  CHECK(c.hidden_act == "gelu");
}

TEST_CASE("BertForPreTraining matches Hugging Face (PyTorch): outputs and every parameter's gradient, cpu") {
  golden_pretraining(Device());
}

TEST_CASE("BertForPreTraining matches Hugging Face (PyTorch) on the emulated device") {
  const Device emu(DeviceType::EMU);
  if (!device_ready(emu)) return;
  // Every op of the model runs through the CUDA backend's kernels under the emulator.
  golden_pretraining(emu);
}

TEST_CASE("BertModel loads a BertForPreTraining checkpoint (heads skipped) and gives the same outputs") {
  const SafetensorsFile io = load_safetensors(golden("models_bert_io.safetensors"));
  BertModel model(fixture_config());
  load_hf_bert(model, golden("models_bert.safetensors"));
  model.eval();
  BertOutput out = run_encoder(model, io);
  check_scaled(out.last_hidden_state, io.at("last_hidden_state"), "last_hidden_state");
  check_scaled(out.pooler_output, io.at("pooler_output"), "pooler_output");
}

TEST_CASE("Hugging Face checkpoint names: without bert., old gamma/beta, tied decoder present") {
  const SafetensorsFile io = load_safetensors(golden("models_bert_io.safetensors"));
  BertModel reference(fixture_config());
  load_hf_bert(reference, golden("models_bert.safetensors"));
  reference.eval();
  const BertOutput want = run_encoder(reference, io);

  auto same_outputs = [&](const std::string& path, const std::string& what) {
    BertModel model(fixture_config());
    load_hf_bert(model, path);
    model.eval();
    BertOutput got = run_encoder(model, io);
    test::check_close(got.last_hidden_state, want.last_hidden_state, 0, 0, what);
    test::check_close(got.pooler_output, want.pooler_output, 0, 0, what);
  };

  SUBCASE("a BertModel file: no prefix, no heads, no position_ids") {
    same_outputs(edited_checkpoint("bare", [](auto& ts) {
                   std::vector<std::pair<std::string, Tensor>> out;
                   for (auto& [n, t] : ts)
                     if (n.rfind("bert.", 0) == 0 && n != "bert.embeddings.position_ids") out.emplace_back(n.substr(5), t);
                   ts = out;
                 }),
                 "no prefix");
  }
  SUBCASE("LayerNorm gamma/beta as in the bert-base-uncased hub file") {
    int renamed = 0;
    std::string path = edited_checkpoint("gamma", [&](auto& ts) {
      for (auto& [n, t] : ts) {
        if (n.find("LayerNorm.weight") != std::string::npos) n = n.substr(0, n.size() - 6) + "gamma", ++renamed;
        else if (n.find("LayerNorm.bias") != std::string::npos) n = n.substr(0, n.size() - 4) + "beta", ++renamed;
      }
    });
    CHECK(renamed == 2 * (1 + 2 * 2 + 1));  // embeddings, 2 per layer, the MLM transform
    same_outputs(path, "gamma/beta");
    BertForPreTraining full(fixture_config());
    load_hf_bert(full, path);  // the head's LayerNorm too
    test::check_close(full.cls->predictions->transform->LayerNorm->weight,
                      load_safetensors(golden("models_bert.safetensors")).at("cls.predictions.transform.LayerNorm.weight"),
                      0, 0, "head LayerNorm from gamma");
  }
  SUBCASE("the tied decoder weight and its bias present (older save formats)") {
    std::string path = edited_checkpoint("tied", [](auto& ts) {
      Tensor word, bias;
      for (auto& [n, t] : ts) {
        if (n == "bert.embeddings.word_embeddings.weight") word = t;
        if (n == "cls.predictions.bias") bias = t;
      }
      ts.emplace_back("cls.predictions.decoder.weight", word);
      ts.emplace_back("cls.predictions.decoder.bias", bias);
    });
    same_outputs(path, "tied decoder present");
    BertForPreTraining full(fixture_config());
    load_hf_bert(full, path);
    CHECK(full.cls->predictions->decoder_weight.same(full.bert->embeddings->word_embeddings->weight));
  }
}

TEST_CASE("a checkpoint naming one tensor two ways is rejected") {
  SUBCASE("with and without the bert. prefix") {
    std::string path = edited_checkpoint("both_prefix", [](auto& ts) {
      Tensor w;
      for (auto& [n, t] : ts)
        if (n == "bert.pooler.dense.weight") w = t;
      ts.emplace_back("pooler.dense.weight", w);
    });
    BertModel model(fixture_config());
    try {
      load_hf_bert(model, path);
      FAIL("no error");
    } catch (const Error& e) {
      const std::string m = e.what();
      CHECK(m.find("bert.pooler.dense.weight") != std::string::npos);
      CHECK(m.find("\"pooler.dense.weight\"") != std::string::npos);
      CHECK(m.find("one way") != std::string::npos);
    }
  }
  SUBCASE("gamma and weight") {
    std::string path = edited_checkpoint("both_gamma", [](auto& ts) {
      Tensor w;
      for (auto& [n, t] : ts)
        if (n == "bert.embeddings.LayerNorm.weight") w = t;
      ts.emplace_back("bert.embeddings.LayerNorm.gamma", w);
    });
    BertForPreTraining model(fixture_config());
    CHECK_THROWS_WITH_AS(load_hf_bert(model, path), doctest::Contains("embeddings.LayerNorm.gamma"), Error);
  }
}

TEST_CASE("strict loading lists every missing, unexpected and shape-mismatched name") {
  std::string path = edited_checkpoint("broken", [](auto& ts) {
    std::vector<std::pair<std::string, Tensor>> out;
    for (auto& [n, t] : ts) {
      if (n == "bert.encoder.layer.1.output.dense.bias") continue;  // missing
      if (n == "bert.pooler.dense.bias") {
        out.emplace_back(n, zeros({7}));  // mismatched
        continue;
      }
      out.emplace_back(n, t);
    }
    out.emplace_back("bert.encoder.layer.9.output.dense.bias", zeros({16}));  // unexpected
    ts = out;
  });
  BertModel model(fixture_config());
  try {
    load_hf_bert(model, path);
    FAIL("no error");
  } catch (const Error& e) {
    const std::string m = e.what();
    CHECK(m.find(path) != std::string::npos);
    CHECK(m.find("missing (1): encoder.layer.1.output.dense.bias") != std::string::npos);
    CHECK(m.find("unexpected (1): encoder.layer.9.output.dense.bias") != std::string::npos);
    CHECK(m.find("shape mismatch (1): pooler.dense.bias (checkpoint (7), model (16))") != std::string::npos);
  }
  SUBCASE("non-strict loads what matches and reports the rest") {
    BertModel loose(fixture_config());
    CHECK_NOTHROW(load_hf_bert(loose, path, false));
    Tensor want = load_safetensors(golden("models_bert.safetensors")).at("bert.encoder.layer.0.output.dense.weight");
    test::check_close(loose.encoder->layer->operator[](0).output->dense->weight, want, 0, 0, "loaded");
  }
  SUBCASE("a BertForPreTraining from a file without heads: an error when strict, fine otherwise") {
    std::string bare = edited_checkpoint("no_heads", [](auto& ts) {
      std::vector<std::pair<std::string, Tensor>> out;
      for (auto& [n, t] : ts)
        if (n.rfind("cls.", 0) != 0) out.emplace_back(n, t);
      ts = out;
    });
    BertForPreTraining full(fixture_config());
    CHECK_THROWS_WITH_AS(load_hf_bert(full, bare), doctest::Contains("cls.seq_relationship.weight"), Error);
    CHECK_NOTHROW(load_hf_bert(full, bare, false));
  }
}

TEST_CASE("export_hf_bert writes a folder that loads back to the same model") {
  const SafetensorsFile io = load_safetensors(golden("models_bert_io.safetensors"));
  BertModel model(fixture_config());
  load_hf_bert(model, golden("models_bert.safetensors"));
  model.eval();
  fs::path dir = temp_dir("export");
  fs::path vocab = dir / "src_vocab.txt";
  {
    std::ofstream v(vocab);
    v << "[PAD]\n[UNK]\n[CLS]\n";
  }
  export_hf_bert(model, (dir / "hf").string(), vocab.string());

  BertConfig back_config = BertConfig::from_file((dir / "hf" / "config.json").string());
  CHECK(back_config.to_json() == model.config.to_json());
  SafetensorsFile file = load_safetensors((dir / "hf" / "model.safetensors").string());
  CHECK(file.metadata.at("format") == "pt");
  CHECK(file.contains("embeddings.word_embeddings.weight"));  // BertModel names: no prefix
  CHECK(!file.contains("bert.embeddings.word_embeddings.weight"));
  CHECK(read_text_file((dir / "hf" / "vocab.txt").string()) == "[PAD]\n[UNK]\n[CLS]\n");

  BertModel back(back_config);
  load_hf_bert(back, (dir / "hf" / "model.safetensors").string());
  back.eval();
  const BertOutput a = run_encoder(model, io), b = run_encoder(back, io);
  test::check_close(b.last_hidden_state, a.last_hidden_state, 0, 0, "round trip");
  test::check_close(b.pooler_output, a.pooler_output, 0, 0, "round trip");
  fs::remove_all(dir);
}

TEST_CASE("a malformed config.json names the file and the key") {
  fs::path dir = temp_dir("config");
  auto write = [&](const std::string& text) {
    std::ofstream((dir / "config.json").string()) << text;
    return (dir / "config.json").string();
  };
  CHECK_THROWS_WITH_AS(BertConfig::from_file(write("{\"hidden_size\": \"big\"}")), doctest::Contains("hidden_size"), Error);
  CHECK_THROWS_WITH_AS(BertConfig::from_file(write("{\"hidden_size\": 10, \"num_attention_heads\": 3}")),
                       doctest::Contains("multiple"), Error);
  CHECK_THROWS_WITH_AS(BertConfig::from_file(write("{nope")), doctest::Contains("not valid JSON"), Error);
  fs::remove_all(dir);
}
