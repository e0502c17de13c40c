// Weights in and out of the formats users bring: Hugging Face BERT checkpoints (safetensors) and
// torchvision ResNet state dicts (saved as safetensors), and exports they load back.
#pragma once
#include <string>
#include <vector>

#include "models/bert.h"
#include "models/resnet.h"
#include "nn/module.h"

namespace vb::models {

// Hugging Face BERT names → ours: strips a `bert.` prefix, renames LayerNorm gamma/beta to weight/bias,
// drops embeddings.position_ids (a buffer, not a parameter) and the decoder tied to the word embeddings.
// A file that names one tensor two ways (with and without the prefix, or gamma and weight) is an Error.
nn::NamedTensors hf_bert_names(const std::vector<std::pair<std::string, Tensor>>& tensors, const std::string& source);

// Loads a Hugging Face BERT safetensors file into a BertModel (heads in the file, `cls.*`, are skipped)
// or a BertForPreTraining (heads loaded; the file may lack them only when strict is false). Strict by
// default: an Error lists every missing, unexpected and shape-mismatched name.
void load_hf_bert(BertModel& model, const std::string& path, bool strict = true);
void load_hf_bert(BertForPreTraining& model, const std::string& path, bool strict = true);

// Writes a folder that transformers' BertModel.from_pretrained loads: config.json, model.safetensors
// (BertModel names, no prefix) and vocab.txt (copied from `vocab_path` when given).
void export_hf_bert(const BertModel& model, const std::string& folder, const std::string& vocab_path = "");

// torchvision names are ours; convolution weights go OIHW (torchvision) ↔ OHWI (ours). The classifier
// (fc.*) in a file is skipped when the model has none. num_batches_tracked is loaded as int64.
void load_torchvision_resnet(ResNet& model, const std::string& path, bool strict = true);
void load_torchvision_resnet(ResNet& model, const std::vector<std::pair<std::string, Tensor>>& tensors,
                             const std::string& source, bool strict = true);
void export_torchvision_resnet(const ResNet& model, const std::string& path);

}  // namespace vb::models
