#include "train/config.h"

#include <filesystem>
#include <fstream>
#include <set>

#include "tensor/error.h"

namespace vb::train {

nlohmann::json default_config() {
  return {
      {"model", "single_stream"},       // single_stream, late_fusion or dual_encoder
      {"text", "tiny"},                 // a BERT preset (tiny, base, large) or a path to a config.json
      {"vision", "resnet-tiny"},        // resnet-tiny, resnet18, resnet34, resnet50, resnet101, resnet152
      // A Hugging Face BERT folder (config.json, vocab.txt, model.safetensors, as save_pretrained writes
      // them) whose architecture, vocabulary and weights the text side starts from; "" = `text` and random
      // weights. A torchvision ResNet state dict (safetensors) the frame encoder's ResNet starts from.
      {"text_init", ""},
      {"vision_init", ""},
      // Single stream with VideoBERT's visual words (docs/VISUAL-WORDS.md): each frame is read as the word
      // its feature gets in visual_vocab (a file `videobert visual-vocab build` wrote), through the frozen
      // frame encoder the vocabulary was built from; objectives.mfm then predicts masked words.
      {"visual_tokens", false},
      {"visual_vocab", ""},
      {"temporal_transformer", false},  // temporal pooling: mean (false) or a small transformer
      // Each frame enters the ResNet with its difference to the previous frame (6 channels; TSN's RGB
      // difference): what makes motion visible to the model. Off by default so that a run saved without
      // the key loads as it was trained; the tiny presets turn it on.
      {"frame_differences", false},
      {"embed_dim", 128},               // dual encoder: joint space
      {"fusion_hidden", 512},           // late fusion: MLP width
      {"frames", 4},                    // frames sampled per clip
      {"image_size", 64},               // frames are resized and cropped to image_size²
      {"max_text_len", 24},             // tokens per caption, [CLS] and [SEP] included
      // The single stream's contrastive weight trains its first stage (retrieval, hard negatives).
      {"objectives", {{"matching", 1.0}, {"mlm", 1.0}, {"mfm", 0.5}, {"contrastive", 1.0}}},
      // Single stream with the contrastive first stage: evaluation scores jointly only the rerank_k best
      // candidates of each query by the first stage (0: every pair).
      {"rerank_k", 16},
      // Matching negatives drawn ∝ the first stage's similarity (ALBEF) instead of at random. Off by default:
      // from scratch, the tiny model's matching head never left the prior with them (docs/TRAINING.md).
      {"hard_negatives", false},
      {"mlm_probability", 0.15},
      {"mfm_probability", 0.15},
      {"optimizer", "adamw"},  // adamw or sgd
      {"lr", 1e-3},
      {"weight_decay", 0.01},
      {"momentum", 0.9},
      {"beta1", 0.9},
      {"beta2", 0.999},
      {"eps", 1e-8},
      {"schedule", "cosine"},  // linear or cosine, after warm-up
      {"warmup_steps", 20},
      {"min_lr_ratio", 0.0},
      {"steps", 1000},  // the tiny presets: about 70 s on the 2-core dev VM
      {"batch_size", 16},
      {"grad_accum", 1},
      {"clip_grad_norm", 1.0},  // 0 turns clipping off
      {"precision", "float32"},  // float32, bfloat16 or float16 (the GPU's mixed precision)
      {"seed", 0},
      {"log_every", 1},
      {"eval_every", 100},
      {"checkpoint_every", 100},
      {"keep_checkpoints", 3},
      {"workers", 2},
      {"prefetch", 4},
      // Data parallelism (docs/DISTRIBUTED.md). batch_size is per rank: a step's batch is batch_size × world
      // size × grad_accum. auto: data parallel when a launcher (mpirun, srun, torchrun-style variables)
      // started several ranks; none: one process.
      {"dist", "auto"},
      {"dist_timeout", 600.0},  // seconds any collective may wait before the rank fails (PyTorch's default)
      {"bucket_cap_mb", 25.0},  // gradient bucket size (the first bucket: 1 MB at most)
      {"zero", 0},              // 1: ZeRO stage 1, AdamW's moments sharded across ranks
      {"sync_bn", false},       // BatchNorm statistics over every rank's batch (else each rank's own)
      // BatchNorm normalises with its running statistics in training too, and keeps them: a sample's result
      // does not depend on the rest of its batch (fine-tuning with small batches; exact accumulation).
      {"freeze_bn", false},
      // Horizontal flips are off by default. On, a flipped clip's caption has the words of mirror_words
      // swapped ("moves to the left" becomes "moves to the right"), so that it still describes the frames.
      {"augment",
       {{"random_resized_crop", true}, {"crop_scale_min", 0.6}, {"flip", false}, {"rotation_degrees", 5.0},
        {"scale_jitter", 0.1}, {"mirror_words", "left:right"}}},
  };
}

std::vector<std::string> preset_names() { return {"tiny", "tiny-late", "tiny-dual", "base"}; }

namespace {

nlohmann::json preset(const std::string& name) {
  nlohmann::json c = default_config();
  if (name != "base") c["frame_differences"] = true;  // the tiny presets (docs/TRAINING.md)
  if (name == "tiny") return c;
  if (name == "tiny-late") {
    c["model"] = "late_fusion";
    c["objectives"] = {{"matching", 1.0}, {"mlm", 0.0}, {"mfm", 0.0}, {"contrastive", 0.0}};
    return c;
  }
  if (name == "tiny-dual") {
    c["model"] = "dual_encoder";
    c["objectives"] = {{"matching", 0.0}, {"mlm", 0.0}, {"mfm", 0.0}, {"contrastive", 1.0}};
    return c;
  }
  if (name == "base") {
    c["text"] = "base";
    c["vision"] = "resnet50";
    c["frames"] = 8;
    c["image_size"] = 224;
    c["max_text_len"] = 64;
    c["batch_size"] = 64;
    c["lr"] = 1e-4;
    c["warmup_steps"] = 1000;
    c["steps"] = 100000;
    c["precision"] = "bfloat16";
    c["log_every"] = 50;
    c["eval_every"] = 5000;
    c["checkpoint_every"] = 2000;
    c["workers"] = 8;
    return c;
  }
  fail("config: no preset named '{}' (presets: {}), and no such file", name, fmt::join(preset_names(), ", "));
}

// Merges `over` into `base`, key by key; every key of `over` must exist in `base`.
void merge(nlohmann::json& base, const nlohmann::json& over, const std::string& prefix, const std::string& source) {
  for (auto it = over.begin(); it != over.end(); ++it) {
    const std::string key = prefix.empty() ? it.key() : prefix + "." + it.key();
    VB_CHECK(base.contains(it.key()), "{}: unknown key '{}'", source, key);
    if (base[it.key()].is_object() && it.value().is_object()) merge(base[it.key()], it.value(), key, source);
    else base[it.key()] = it.value();
  }
}

nlohmann::json* find_key(nlohmann::json& config, const std::string& dotted) {
  nlohmann::json* node = &config;
  size_t start = 0;
  while (true) {
    const size_t dot = dotted.find('.', start);
    const std::string part = dotted.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!node->is_object() || !node->contains(part)) return nullptr;
    node = &(*node)[part];
    if (dot == std::string::npos) return node;
    start = dot + 1;
  }
}

}  // namespace

// A configuration file's JSON object; errors name the file.
nlohmann::json read_json_object(const std::string& path) {
  std::ifstream in(path);
  VB_CHECK(in.good(), "{}: cannot read the configuration", path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
  VB_CHECK(j.is_object(), "{}: expected a JSON object", path);
  return j;
}

nlohmann::json merge_config(nlohmann::json base, const nlohmann::json& over, const std::string& source) {
  merge(base, over, "", source);
  return base;
}

nlohmann::json load_config(const std::string& preset_or_file) {
  const auto names = preset_names();
  if (std::find(names.begin(), names.end(), preset_or_file) != names.end()) return preset(preset_or_file);
  VB_CHECK(std::filesystem::exists(preset_or_file), "config: '{}' is neither a preset ({}) nor a file",
           preset_or_file, fmt::join(names, ", "));
  nlohmann::json user = read_json_object(preset_or_file);
  nlohmann::json c = default_config();
  if (user.contains("preset")) {
    VB_CHECK(user["preset"].is_string(), "{}: 'preset' must be a string", preset_or_file);
    c = preset(user["preset"].get<std::string>());
    user.erase("preset");
  }
  merge(c, user, "", preset_or_file);
  validate_config(c, preset_or_file);
  return c;
}

nlohmann::json read_run_config(const std::string& path) {
  nlohmann::json c = default_config();
  merge(c, read_json_object(path), "", path);
  validate_config(c, path);
  return c;
}

void apply_overrides(nlohmann::json& config, const std::vector<std::string>& overrides) {
  for (const std::string& o : overrides) {
    const size_t eq = o.find('=');
    VB_CHECK(eq != std::string::npos && eq > 0, "override '{}': expected key=value", o);
    const std::string key = o.substr(0, eq), text = o.substr(eq + 1);
    nlohmann::json* slot = find_key(config, key);
    VB_CHECK(slot != nullptr, "override '{}': unknown key '{}'", o, key);
    VB_CHECK(!slot->is_object(), "override '{}': '{}' is a group; set one of its keys ({}.…)", o, key, key);
    try {
      if (slot->is_boolean()) {
        VB_CHECK(text == "true" || text == "false", "override '{}': '{}' expects true or false", o, key);
        *slot = text == "true";
      } else if (slot->is_number_integer()) {
        size_t used = 0;
        const long long v = std::stoll(text, &used);
        VB_CHECK(used == text.size(), "override '{}': '{}' expects an integer", o, key);
        *slot = v;
      } else if (slot->is_number()) {
        size_t used = 0;
        const double v = std::stod(text, &used);
        VB_CHECK(used == text.size(), "override '{}': '{}' expects a number", o, key);
        *slot = v;
      } else {
        *slot = text;
      }
    } catch (const std::logic_error&) {  // stoll/stod: invalid_argument or out_of_range
      fail("override '{}': '{}' expects {}", o, key, slot->is_number_integer() ? "an integer" : "a number");
    }
  }
  validate_config(config, "command line");
}

void validate_config(const nlohmann::json& c, const std::string& source) {
  auto number = [&](const char* key, double lo, double hi, bool integer = false) {
    const nlohmann::json* v = find_key(const_cast<nlohmann::json&>(c), key);
    VB_CHECK(v && v->is_number() && (!integer || v->is_number_integer()), "{}: '{}' must be {}", source, key,
             integer ? "an integer" : "a number");
    const double x = v->get<double>();
    VB_CHECK(x >= lo && x <= hi, "{}: '{}' = {} is out of range [{}, {}]", source, key, x, lo, hi);
  };
  auto choice = [&](const char* key, std::set<std::string> allowed) {
    const nlohmann::json* v = find_key(const_cast<nlohmann::json&>(c), key);
    VB_CHECK(v && v->is_string() && allowed.count(v->get<std::string>()), "{}: '{}' must be one of {}, got {}",
             source, key, fmt::join(allowed, ", "), v ? v->dump() : "nothing");
  };
  auto boolean = [&](const char* key) {
    const nlohmann::json* v = find_key(const_cast<nlohmann::json&>(c), key);
    VB_CHECK(v && v->is_boolean(), "{}: '{}' must be true or false", source, key);
  };
  choice("model", {"single_stream", "late_fusion", "dual_encoder"});
  VB_CHECK(c["text"].is_string(), "{}: 'text' must be a BERT preset name or a config.json path", source);
  VB_CHECK(c["text_init"].is_string(), "{}: 'text_init' must be a Hugging Face BERT folder (or \"\")", source);
  VB_CHECK(c["vision_init"].is_string(), "{}: 'vision_init' must be a torchvision ResNet .safetensors file (or \"\")",
           source);
  boolean("visual_tokens");
  VB_CHECK(c["visual_vocab"].is_string(), "{}: 'visual_vocab' must be a visual vocabulary .safetensors file (or \"\")",
           source);
  if (c["visual_tokens"].get<bool>()) {
    VB_CHECK(c["model"] == "single_stream", "{}: visual_tokens=true needs model single_stream (got {})", source,
             c["model"].get<std::string>());
    VB_CHECK(!c["visual_vocab"].get<std::string>().empty(), "{}: visual_tokens=true needs visual_vocab=FILE (a file "
             "`videobert visual-vocab build` wrote)", source);
    VB_CHECK(c["vision_init"].get<std::string>().empty(), "{}: visual_tokens=true takes its frame encoder from the "
             "run visual_vocab was built from; drop vision_init", source);
  }
  choice("vision", {"resnet-tiny", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152"});
  boolean("temporal_transformer");
  boolean("frame_differences");
  number("embed_dim", 1, 65536, true);
  number("fusion_hidden", 1, 65536, true);
  number("frames", 1, 256, true);
  number("image_size", 16, 1024, true);
  number("max_text_len", 4, 512, true);
  for (const char* k : {"objectives.matching", "objectives.mlm", "objectives.mfm", "objectives.contrastive"})
    number(k, 0, 1e6);
  number("rerank_k", 0, 1e9, true);
  boolean("hard_negatives");
  number("mlm_probability", 0, 1);
  number("mfm_probability", 0, 1);
  choice("optimizer", {"adamw", "sgd"});
  number("lr", 0, 10);
  number("weight_decay", 0, 10);
  number("momentum", 0, 1);
  number("beta1", 0, 0.999999);
  number("beta2", 0, 0.999999999);
  number("eps", 0, 1);
  choice("schedule", {"linear", "cosine"});
  number("warmup_steps", 0, 1e12, true);
  number("min_lr_ratio", 0, 1);
  number("steps", 1, 1e12, true);
  number("batch_size", 1, 1e6, true);
  number("grad_accum", 1, 1e6, true);
  number("clip_grad_norm", 0, 1e12);
  choice("precision", {"float32", "bfloat16", "float16"});
  number("seed", 0, 9.2e18, true);
  number("log_every", 1, 1e12, true);
  number("eval_every", 0, 1e12, true);
  number("checkpoint_every", 0, 1e12, true);
  number("keep_checkpoints", 1, 1e6, true);
  number("workers", 0, 256, true);
  number("prefetch", 1, 1024, true);
  choice("dist", {"auto", "none"});
  number("dist_timeout", 0.1, 1e7);
  number("bucket_cap_mb", 0.001, 1e5);
  number("zero", 0, 1, true);
  boolean("sync_bn");
  boolean("freeze_bn");
  boolean("augment.random_resized_crop");
  boolean("augment.flip");
  number("augment.crop_scale_min", 0.01, 1);
  number("augment.rotation_degrees", 0, 180);
  number("augment.scale_jitter", 0, 1);
  VB_CHECK(c["augment"]["mirror_words"].is_string(), "{}: 'augment.mirror_words' must be a string of word pairs "
           "\"a:b,c:d\"", source);
  mirror_word_pairs(c["augment"]["mirror_words"], source + ": augment.mirror_words");
  const auto& obj = c["objectives"];
  double total = 0;
  for (auto it = obj.begin(); it != obj.end(); ++it) total += it.value().get<double>();
  VB_CHECK(total > 0, "{}: every objective weight is 0: enable at least one of objectives.{{matching, mlm, mfm, contrastive}}", source);
  const std::string model = c["model"];
  if (model == "dual_encoder") {
    VB_CHECK(obj["matching"].get<double>() == 0 && obj["mlm"].get<double>() == 0 && obj["mfm"].get<double>() == 0,
             "{}: model dual_encoder trains only objectives.contrastive; set the others to 0", source);
  }
  if (model == "late_fusion") {
    VB_CHECK(obj["mlm"].get<double>() == 0 && obj["mfm"].get<double>() == 0 && obj["contrastive"].get<double>() == 0,
             "{}: model late_fusion has no masked-LM, masked-frame or contrastive head; set objectives.mlm, "
             "objectives.mfm and objectives.contrastive to 0",
             source);
  }
}

std::string text_vocab_path(const nlohmann::json& config, const std::string& data_dir) {
  const std::string init = config.value("text_init", std::string());
  return (std::filesystem::path(init.empty() ? data_dir : init) / "vocab.txt").string();
}

std::vector<std::string> comma_list(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> mirror_word_pairs(const nlohmann::json& value, const std::string& key) {
  VB_CHECK(value.is_string(), "{}: expected a string of word pairs \"a:b,c:d\", got {}", key, value.dump());
  const std::string text = value.get<std::string>();
  std::vector<std::pair<std::string, std::string>> out;
  for (const std::string& pair : comma_list(text)) {
    const size_t colon = pair.find(':');
    VB_CHECK(colon != std::string::npos && colon > 0 && colon + 1 < pair.size() &&
                 pair.find(':', colon + 1) == std::string::npos,
             "{}: '{}' is not a word pair 'a:b' (in \"{}\")", key, pair, text);
    out.emplace_back(pair.substr(0, colon), pair.substr(colon + 1));
  }
  return out;
}

}  // namespace vb::train
