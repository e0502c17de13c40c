// The pretraining configuration: one JSON object holding every knob, read from a preset or a file, with
// key=value overrides from the command line. Unknown keys and out-of-range values are errors naming the
// key. Nested keys are written with dots: objectives.mlm=0.5, augment.flip=false.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace vb::train {

// Every key with its default value (the "tiny" preset).
nlohmann::json default_config();
// The names of the presets: tiny, tiny-late, tiny-dual, base.
std::vector<std::string> preset_names();
// A preset's configuration, or a JSON file's merged over the defaults when preset_or_file is a path.
nlohmann::json load_config(const std::string& preset_or_file);
// A run folder's saved config.json, merged over the defaults: a key added after the run was saved takes
// its default, which is chosen to be the behaviour before the key existed (e.g. frame_differences=false),
// so older runs evaluate and resume as they were trained. Validated; errors name the file.
nlohmann::json read_run_config(const std::string& path);
// `over` merged into `base` key by key; every key of `over` must exist in `base` (an Error names it and
// `source`). Nested objects merge recursively.
nlohmann::json merge_config(nlohmann::json base, const nlohmann::json& over, const std::string& source);
// A JSON object read from a file; errors name the file.
nlohmann::json read_json_object(const std::string& path);
// Applies "key=value" overrides; values are parsed as the key's type (bool, integer, number, string).
void apply_overrides(nlohmann::json& config, const std::vector<std::string>& overrides);
// Checks every key's type and range; an Error names the key, the value and what was expected.
void validate_config(const nlohmann::json& config, const std::string& source);

// The word pairs of a "a:b,c:d" string (augment.mirror_words): an Error names `key` when it is malformed.
// The vocabulary a run tokenises with: text_init's vocab.txt when the text side starts from a Hugging Face
// BERT folder, else the dataset's.
std::string text_vocab_path(const nlohmann::json& config, const std::string& data_dir);

// The parts of a comma-separated list: "a,b" → {a, b}; "" → {}; a trailing comma adds nothing, an empty
// part between two commas is kept (for the caller's check to name it).
std::vector<std::string> comma_list(const std::string& text);

std::vector<std::pair<std::string, std::string>> mirror_word_pairs(const nlohmann::json& value, const std::string& key);

}  // namespace vb::train
