// BERT as Hugging Face's BertModel builds it (post-LN encoder), with the masked-LM and two-way heads.
// Module names match Hugging Face's state_dict names, so its checkpoints load without renaming beyond
// the prefix and the old LayerNorm gamma/beta (models/weights.h).
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "nn/layers.h"

namespace vb::models {

struct BertConfig {
  int64_t vocab_size = 30522;
  int64_t hidden_size = 768;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  int64_t intermediate_size = 3072;
  std::string hidden_act = "gelu";  // gelu (erf), gelu_new / gelu_pytorch_tanh (tanh form), relu
  int64_t max_position_embeddings = 512;
  int64_t type_vocab_size = 2;
  double layer_norm_eps = 1e-12;
  double hidden_dropout_prob = 0.1;
  double attention_probs_dropout_prob = 0.1;
  int64_t pad_token_id = 0;
  double initializer_range = 0.02;

  // "tiny" (CPU demos and tests), "base" (bert-base-uncased), "large".
  static BertConfig preset(const std::string& name);
  // Reads the keys above from a Hugging Face config.json object; unknown keys are ignored (HF files carry
  // many), wrong types or out-of-range values are errors naming the key.
  static BertConfig from_json(const nlohmann::json& j, const std::string& source = "config.json");
  static BertConfig from_file(const std::string& path);
  nlohmann::json to_json() const;  // a config.json that transformers' BertConfig reads
  void validate(const std::string& source) const;
};

class BertEmbeddings : public nn::Module {
 public:
  explicit BertEmbeddings(const BertConfig& c);
  // ids, token_types (B, T) int64 → (B, T, H). Positions start at `position_offset`.
  Tensor forward(const Tensor& ids, const Tensor& token_types, int64_t position_offset = 0);
  // Adds position and token-type embeddings to given input embeddings (B, T, H), then LayerNorm, dropout.
  Tensor forward_embeds(const Tensor& embeds, const Tensor& token_types, int64_t position_offset = 0);
  std::shared_ptr<nn::Embedding> word_embeddings, position_embeddings, token_type_embeddings;
  std::shared_ptr<nn::LayerNorm> LayerNorm;
  std::shared_ptr<nn::Dropout> dropout;
};

class BertSelfAttention : public nn::Module {
 public:
  explicit BertSelfAttention(const BertConfig& c);
  Tensor forward(const Tensor& x, const Tensor& mask);  // (B, T, H) → (B, T, H) before the output dense
  std::shared_ptr<nn::Linear> query, key, value;
  int64_t heads;
  double dropout_p;
};

// dense → dropout → LayerNorm(· + residual), the post-LN sub-layer output.
class BertSubLayerOutput : public nn::Module {
 public:
  BertSubLayerOutput(int64_t in, int64_t hidden, double eps, double dropout);
  Tensor forward(const Tensor& h, const Tensor& residual);
  std::shared_ptr<nn::Linear> dense;
  std::shared_ptr<nn::LayerNorm> LayerNorm;
  std::shared_ptr<nn::Dropout> dropout;
};

class BertAttention : public nn::Module {
 public:
  explicit BertAttention(const BertConfig& c);
  Tensor forward(const Tensor& x, const Tensor& mask);
  std::shared_ptr<BertSelfAttention> self;
  std::shared_ptr<BertSubLayerOutput> output;
};

class BertIntermediate : public nn::Module {
 public:
  explicit BertIntermediate(const BertConfig& c);
  Tensor forward(const Tensor& x);
  std::shared_ptr<nn::Linear> dense;
  std::string act;
};

class BertLayer : public nn::Module {
 public:
  explicit BertLayer(const BertConfig& c);
  Tensor forward(const Tensor& x, const Tensor& mask);
  std::shared_ptr<BertAttention> attention;
  std::shared_ptr<BertIntermediate> intermediate;
  std::shared_ptr<BertSubLayerOutput> output;
};

class BertEncoder : public nn::Module {
 public:
  explicit BertEncoder(const BertConfig& c);
  Tensor forward(const Tensor& x, const Tensor& mask);
  std::shared_ptr<nn::ModuleList<BertLayer>> layer;
};

class BertPooler : public nn::Module {
 public:
  explicit BertPooler(const BertConfig& c);
  Tensor forward(const Tensor& hidden);  // tanh(dense(h[:, 0]))
  std::shared_ptr<nn::Linear> dense;
};

struct BertOutput {
  Tensor last_hidden_state;  // (B, T, H)
  Tensor pooler_output;      // (B, H)
};

// An attention_mask (B, T) of 0/1 (any dtype) as the bool (B, 1, 1, T) key mask the attention op takes.
Tensor key_padding_mask(const Tensor& attention_mask);

// The mask every encoder layer applies, from a model's attention_mask of 0/1 (any dtype) or bool, 1 = may
// attend (Hugging Face's convention):
//   (B, T)    which positions are tokens: every position attends to every token  → (B, 1, 1, T);
//   (B, T, T) per example and query: [b, i, j] = 1 when position i may attend to position j → (B, 1, T, T)
//             (sequence-to-sequence or causal masks). A row with no 1 at all leaves that position with
//             nothing to attend to (NaN states); the caller's mask must give every row at least one key.
Tensor encoder_attention_mask(const Tensor& attention_mask);

class BertModel : public nn::Module {
 public:
  explicit BertModel(const BertConfig& c, bool with_pooler = true);
  // ids (B, T) int64; token_types (B, T) may be undefined (zeros); attention_mask (B, T) or (B, T, T) as
  // encoder_attention_mask reads it, or undefined (every position sees every position).
  BertOutput forward(const Tensor& ids, const Tensor& token_types = {}, const Tensor& attention_mask = {});
  // The encoder and pooler over already-embedded inputs (B, T, H) (the single-stream model's path); the
  // attention_mask as in forward.
  BertOutput forward_embedded(const Tensor& embedded, const Tensor& attention_mask = {});
  // BERT's initialisation: normal(0, initializer_range) for linear and embedding weights, zero biases,
  // LayerNorm 1/0, padding row zero.
  void init_weights(Generator* gen = nullptr);
  BertConfig config;
  std::shared_ptr<BertEmbeddings> embeddings;
  std::shared_ptr<BertEncoder> encoder;
  std::shared_ptr<BertPooler> pooler;  // null without a pooler
};

// cls.predictions.transform: dense → activation → LayerNorm.
class BertPredictionHeadTransform : public nn::Module {
 public:
  explicit BertPredictionHeadTransform(const BertConfig& c);
  Tensor forward(const Tensor& hidden);
  std::shared_ptr<nn::Linear> dense;
  std::shared_ptr<nn::LayerNorm> LayerNorm;
  std::string act;
};

// cls.predictions: the transform, then the decoder tied to the word embeddings, plus a bias.
class BertLMPredictionHead : public nn::Module {
 public:
  BertLMPredictionHead(const BertConfig& c, Tensor word_embeddings);
  Tensor forward(const Tensor& hidden);  // (…, H) → (…, vocab)
  std::shared_ptr<BertPredictionHeadTransform> transform;
  Tensor decoder_weight;  // the word embedding matrix itself (tied, so not registered a second time)
  Tensor bias;
};

// cls: predictions (masked LM) and seq_relationship (the two-way head on the pooled output: next
// sentence, or text–video alignment).
class BertPreTrainingHeads : public nn::Module {
 public:
  BertPreTrainingHeads(const BertConfig& c, Tensor word_embeddings);
  std::shared_ptr<BertLMPredictionHead> predictions;
  std::shared_ptr<nn::Linear> seq_relationship;
};

// bert + cls, as Hugging Face's BertForPreTraining names them.
class BertForPreTraining : public nn::Module {
 public:
  explicit BertForPreTraining(const BertConfig& c);
  std::shared_ptr<BertModel> bert;
  std::shared_ptr<BertPreTrainingHeads> cls;
};

// The activation named by a config's hidden_act.
Tensor activation(const Tensor& x, const std::string& name);

}  // namespace vb::models
