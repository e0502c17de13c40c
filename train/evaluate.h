// Evaluation of a pretrained model on a split: text→video and video→text retrieval (R@1, R@5, R@10,
// median rank), matching accuracy, masked-LM accuracy, and zero-shot classification of the synthetic
// attributes by scoring caption templates.
#pragma once
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "train/data/manifest.h"
#include "train/tasks.h"

namespace vb::train {

struct EvalOptions {
  data::Split split = data::Split::Test;
  int64_t frames = 4, size = 64, max_length = 24, batch_size = 32;
  int workers = 2;
  uint64_t seed = 0;
  Device device;
};

// Keys: t2v_r1, t2v_r5, t2v_r10, t2v_medr, v2t_r1, v2t_r5, v2t_r10, v2t_medr (recalls as fractions),
// clips, chance_r1, matching_acc (models with a matching head), mlm_acc (single stream), and
// zeroshot_<attribute> for each attribute the manifest's clips carry.
nlohmann::json evaluate(Task& task, const data::Manifest& manifest, const WordPieceTokenizer& tokenizer,
                        const EvalOptions& options);

// The table printed on the terminal.
std::string format_eval_table(const nlohmann::json& metrics);

}  // namespace vb::train
