#include "models/bert.h"

#include <cmath>
#include <fstream>

#include "nn/init.h"

namespace vb::models {

// ---------------------------------------------------------------- configuration

BertConfig BertConfig::preset(const std::string& name) {
  BertConfig c;
  if (name == "base") return c;
  if (name == "large") {
    c.hidden_size = 1024;
    c.num_hidden_layers = 24;
    c.num_attention_heads = 16;
    c.intermediate_size = 4096;
    return c;
  }
  if (name == "tiny") {
    c.vocab_size = 1024;
    c.hidden_size = 64;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 2;
    c.intermediate_size = 256;
    c.max_position_embeddings = 128;
    return c;
  }
  fail("BERT preset '{}': expected tiny, base or large", name);
}

namespace {
template <typename T>
void read_key(const nlohmann::json& j, const char* key, T& out, const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return;
  const auto& v = j[key];
  if constexpr (std::is_same_v<T, std::string>) {
    VB_CHECK(v.is_string(), "{}: key '{}' must be a string, got {}", source, key, v.dump());
    out = v.get<std::string>();
  } else if constexpr (std::is_integral_v<T>) {
    VB_CHECK(v.is_number_integer(), "{}: key '{}' must be an integer, got {}", source, key, v.dump());
    out = v.get<T>();
  } else {
    VB_CHECK(v.is_number(), "{}: key '{}' must be a number, got {}", source, key, v.dump());
    out = v.get<T>();
  }
}
}  // namespace

BertConfig BertConfig::from_json(const nlohmann::json& j, const std::string& source) {
  VB_CHECK(j.is_object(), "{}: expected a JSON object", source);
  BertConfig c;
  read_key(j, "vocab_size", c.vocab_size, source);
  read_key(j, "hidden_size", c.hidden_size, source);
  read_key(j, "num_hidden_layers", c.num_hidden_layers, source);
  read_key(j, "num_attention_heads", c.num_attention_heads, source);
  read_key(j, "intermediate_size", c.intermediate_size, source);
  read_key(j, "hidden_act", c.hidden_act, source);
  read_key(j, "max_position_embeddings", c.max_position_embeddings, source);
  read_key(j, "type_vocab_size", c.type_vocab_size, source);
  read_key(j, "layer_norm_eps", c.layer_norm_eps, source);
  read_key(j, "hidden_dropout_prob", c.hidden_dropout_prob, source);
  read_key(j, "attention_probs_dropout_prob", c.attention_probs_dropout_prob, source);
  read_key(j, "pad_token_id", c.pad_token_id, source);
  read_key(j, "initializer_range", c.initializer_range, source);
  c.validate(source);
  return c;
}

BertConfig BertConfig::from_file(const std::string& path) {
  std::ifstream in(path);
  VB_CHECK(in.good(), "{}: cannot open the BERT config", path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
  return from_json(j, path);
}

void BertConfig::validate(const std::string& source) const {
  auto positive = [&](const char* key, int64_t v) { VB_CHECK(v > 0, "{}: '{}' must be positive, got {}", source, key, v); };
  positive("vocab_size", vocab_size);
  positive("hidden_size", hidden_size);
  positive("num_hidden_layers", num_hidden_layers);
  positive("num_attention_heads", num_attention_heads);
  positive("intermediate_size", intermediate_size);
  positive("max_position_embeddings", max_position_embeddings);
  positive("type_vocab_size", type_vocab_size);
  VB_CHECK(hidden_size % num_attention_heads == 0, "{}: hidden_size {} is not a multiple of num_attention_heads {}",
           source, hidden_size, num_attention_heads);
  VB_CHECK(hidden_act == "gelu" || hidden_act == "gelu_new" || hidden_act == "gelu_pytorch_tanh" || hidden_act == "relu",
           "{}: hidden_act '{}' is not supported (expected gelu, gelu_new, gelu_pytorch_tanh or relu)", source, hidden_act);
  VB_CHECK(layer_norm_eps > 0, "{}: 'layer_norm_eps' must be positive", source);
  VB_CHECK(hidden_dropout_prob >= 0 && hidden_dropout_prob < 1, "{}: 'hidden_dropout_prob' must be in [0, 1)", source);
  VB_CHECK(attention_probs_dropout_prob >= 0 && attention_probs_dropout_prob < 1,
           "{}: 'attention_probs_dropout_prob' must be in [0, 1)", source);
  VB_CHECK(pad_token_id >= 0 && pad_token_id < vocab_size, "{}: 'pad_token_id' {} outside the vocabulary of {}", source,
           pad_token_id, vocab_size);
}

nlohmann::json BertConfig::to_json() const {
  return {{"architectures", {"BertModel"}},
          {"model_type", "bert"},
          {"vocab_size", vocab_size},
          {"hidden_size", hidden_size},
          {"num_hidden_layers", num_hidden_layers},
          {"num_attention_heads", num_attention_heads},
          {"intermediate_size", intermediate_size},
          {"hidden_act", hidden_act},
          {"max_position_embeddings", max_position_embeddings},
          {"type_vocab_size", type_vocab_size},
          {"layer_norm_eps", layer_norm_eps},
          {"hidden_dropout_prob", hidden_dropout_prob},
          {"attention_probs_dropout_prob", attention_probs_dropout_prob},
          {"pad_token_id", pad_token_id},
          {"initializer_range", initializer_range},
          {"position_embedding_type", "absolute"}};
}

Tensor activation(const Tensor& x, const std::string& name) {
  if (name == "gelu") return gelu(x, false);
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return gelu(x, true);
  if (name == "relu") return relu(x);
  fail("activation '{}' is not supported", name);
}

// ---------------------------------------------------------------- modules

BertEmbeddings::BertEmbeddings(const BertConfig& c) {
  word_embeddings = register_module("word_embeddings", std::make_shared<nn::Embedding>(c.vocab_size, c.hidden_size, c.pad_token_id));
  position_embeddings = register_module("position_embeddings", std::make_shared<nn::Embedding>(c.max_position_embeddings, c.hidden_size));
  token_type_embeddings = register_module("token_type_embeddings", std::make_shared<nn::Embedding>(c.type_vocab_size, c.hidden_size));
  LayerNorm = register_module("LayerNorm", std::make_shared<nn::LayerNorm>(c.hidden_size, c.layer_norm_eps));
  dropout = register_module("dropout", std::make_shared<nn::Dropout>(c.hidden_dropout_prob));
}

Tensor BertEmbeddings::forward_embeds(const Tensor& embeds, const Tensor& token_types, int64_t position_offset) {
  const int64_t t = embeds.size(1);
  const int64_t max_pos = position_embeddings->weight.size(0);
  VB_CHECK(position_offset + t <= max_pos, "BERT: sequence of {} tokens (offset {}) exceeds max_position_embeddings {}",
           t, position_offset, max_pos);
  Tensor positions = arange(double(position_offset), double(position_offset + t), 1, DType::Int64, embeds.device());
  Tensor types = token_types.defined() ? token_types : zeros({embeds.size(0), t}, DType::Int64, embeds.device());
  Tensor h = add(add(embeds, (*token_type_embeddings)(types)), (*position_embeddings)(positions));  // (B, T, H)
  return (*dropout)((*LayerNorm)(h));
}

Tensor BertEmbeddings::forward(const Tensor& ids, const Tensor& token_types, int64_t position_offset) {
  VB_CHECK(ids.dim() == 2, "BERT: input ids must be (B, T), got {}", shape_str(ids.shape()));
  return forward_embeds((*word_embeddings)(ids), token_types, position_offset);
}

BertSelfAttention::BertSelfAttention(const BertConfig& c)
    : heads(c.num_attention_heads), dropout_p(c.attention_probs_dropout_prob) {
  query = register_module("query", std::make_shared<nn::Linear>(c.hidden_size, c.hidden_size));
  key = register_module("key", std::make_shared<nn::Linear>(c.hidden_size, c.hidden_size));
  value = register_module("value", std::make_shared<nn::Linear>(c.hidden_size, c.hidden_size));
}

Tensor BertSelfAttention::forward(const Tensor& x, const Tensor& mask) {
  Tensor q = nn::split_heads((*query)(x), heads);  // (B, heads, T, D)
  Tensor k = nn::split_heads((*key)(x), heads);
  Tensor v = nn::split_heads((*value)(x), heads);
  return nn::merge_heads(scaled_dot_product_attention(q, k, v, mask, is_training() ? dropout_p : 0.0));
}

BertSubLayerOutput::BertSubLayerOutput(int64_t in, int64_t hidden, double eps, double p) {
  dense = register_module("dense", std::make_shared<nn::Linear>(in, hidden));
  LayerNorm = register_module("LayerNorm", std::make_shared<nn::LayerNorm>(hidden, eps));
  dropout = register_module("dropout", std::make_shared<nn::Dropout>(p));
}

Tensor BertSubLayerOutput::forward(const Tensor& h, const Tensor& residual) {
  return (*LayerNorm)(add((*dropout)((*dense)(h)), residual));
}

BertAttention::BertAttention(const BertConfig& c) {
  self = register_module("self", std::make_shared<BertSelfAttention>(c));
  output = register_module("output", std::make_shared<BertSubLayerOutput>(c.hidden_size, c.hidden_size,
                                                                          c.layer_norm_eps, c.hidden_dropout_prob));
}

Tensor BertAttention::forward(const Tensor& x, const Tensor& mask) { return output->forward(self->forward(x, mask), x); }

BertIntermediate::BertIntermediate(const BertConfig& c) : act(c.hidden_act) {
  dense = register_module("dense", std::make_shared<nn::Linear>(c.hidden_size, c.intermediate_size));
}

Tensor BertIntermediate::forward(const Tensor& x) { return activation((*dense)(x), act); }

BertLayer::BertLayer(const BertConfig& c) {
  attention = register_module("attention", std::make_shared<BertAttention>(c));
  intermediate = register_module("intermediate", std::make_shared<BertIntermediate>(c));
  output = register_module("output", std::make_shared<BertSubLayerOutput>(c.intermediate_size, c.hidden_size,
                                                                          c.layer_norm_eps, c.hidden_dropout_prob));
}

Tensor BertLayer::forward(const Tensor& x, const Tensor& mask) {
  Tensor a = attention->forward(x, mask);
  return output->forward(intermediate->forward(a), a);
}

BertEncoder::BertEncoder(const BertConfig& c) {
  layer = register_module("layer", std::make_shared<nn::ModuleList<BertLayer>>());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layer->push_back(std::make_shared<BertLayer>(c));
}

Tensor BertEncoder::forward(const Tensor& x, const Tensor& mask) {
  Tensor h = x;
  for (const auto& l : *layer) h = l->forward(h, mask);
  return h;
}

BertPooler::BertPooler(const BertConfig& c) {
  dense = register_module("dense", std::make_shared<nn::Linear>(c.hidden_size, c.hidden_size));
}

Tensor BertPooler::forward(const Tensor& hidden) { return tanh((*dense)(select(hidden, 1, 0))); }

Tensor key_padding_mask(const Tensor& attention_mask) {
  VB_CHECK(attention_mask.dim() == 2, "attention_mask must be (B, T), got {}", shape_str(attention_mask.shape()));
  Tensor m = attention_mask.dtype() == DType::Bool ? attention_mask : ne(attention_mask, zeros({}, attention_mask.dtype(), attention_mask.device()));
  return reshape(m, {m.size(0), 1, 1, m.size(1)});
}

Tensor encoder_attention_mask(const Tensor& attention_mask) {
  if (attention_mask.dim() == 2) return key_padding_mask(attention_mask);
  VB_CHECK(attention_mask.dim() == 3 && attention_mask.size(1) == attention_mask.size(2),
           "attention_mask must be (B, T) or (B, T, T), got {}", shape_str(attention_mask.shape()));
  Tensor m = attention_mask.dtype() == DType::Bool
                 ? attention_mask
                 : ne(attention_mask, zeros({}, attention_mask.dtype(), attention_mask.device()));
  return unsqueeze(m, 1);  // (B, 1, T, T): one mask for every head
}

BertModel::BertModel(const BertConfig& c, bool with_pooler) : config(c) {
  c.validate("BERT config");
  embeddings = register_module("embeddings", std::make_shared<BertEmbeddings>(c));
  encoder = register_module("encoder", std::make_shared<BertEncoder>(c));
  if (with_pooler) pooler = register_module("pooler", std::make_shared<BertPooler>(c));
  init_weights();
}

BertOutput BertModel::forward_embedded(const Tensor& embedded, const Tensor& attention_mask) {
  if (attention_mask.defined() && attention_mask.dim() == 3) {
    VB_CHECK(embedded.dim() == 3 && attention_mask.size(0) == embedded.size(0) &&
                 attention_mask.size(1) == embedded.size(1),
             "BERT: a (B, T, T) attention_mask {} does not fit the inputs {}", shape_str(attention_mask.shape()),
             shape_str(embedded.shape()));
  }
  Tensor mask = attention_mask.defined() ? encoder_attention_mask(attention_mask) : Tensor();
  BertOutput out;
  out.last_hidden_state = encoder->forward(embedded, mask);
  if (pooler) out.pooler_output = pooler->forward(out.last_hidden_state);
  return out;
}

BertOutput BertModel::forward(const Tensor& ids, const Tensor& token_types, const Tensor& attention_mask) {
  return forward_embedded(embeddings->forward(ids, token_types), attention_mask);
}

void BertModel::init_weights(Generator* gen) {
  for (auto& [name, t] : named_parameters()) {
    const bool is_norm = name.find("LayerNorm") != std::string::npos;
    const bool is_bias = name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0;
    if (is_norm) nn::init::constant_(t, is_bias ? 0.0 : 1.0);
    else if (is_bias) nn::init::constant_(t, 0.0);
    else nn::init::normal_(t, 0.0, config.initializer_range, gen);
  }
  Tensor pad_row = select(detach(embeddings->word_embeddings->weight), 0, config.pad_token_id);
  nn::init::constant_(pad_row, 0.0);
}

BertPredictionHeadTransform::BertPredictionHeadTransform(const BertConfig& c) : act(c.hidden_act) {
  dense = register_module("dense", std::make_shared<nn::Linear>(c.hidden_size, c.hidden_size));
  LayerNorm = register_module("LayerNorm", std::make_shared<nn::LayerNorm>(c.hidden_size, c.layer_norm_eps));
  nn::init::normal_(dense->weight, 0.0, c.initializer_range);
  nn::init::constant_(dense->bias, 0.0);
}

Tensor BertPredictionHeadTransform::forward(const Tensor& hidden) {
  return (*LayerNorm)(activation((*dense)(hidden), act));
}

BertLMPredictionHead::BertLMPredictionHead(const BertConfig& c, Tensor word_embeddings)
    : decoder_weight(std::move(word_embeddings)) {
  transform = register_module("transform", std::make_shared<BertPredictionHeadTransform>(c));
  bias = register_parameter("bias", zeros({c.vocab_size}));
}

Tensor BertLMPredictionHead::forward(const Tensor& hidden) {
  return linear(transform->forward(hidden), decoder_weight, bias);
}

BertPreTrainingHeads::BertPreTrainingHeads(const BertConfig& c, Tensor word_embeddings) {
  predictions = register_module("predictions", std::make_shared<BertLMPredictionHead>(c, std::move(word_embeddings)));
  seq_relationship = register_module("seq_relationship", std::make_shared<nn::Linear>(c.hidden_size, 2));
  nn::init::normal_(seq_relationship->weight, 0.0, c.initializer_range);
  nn::init::constant_(seq_relationship->bias, 0.0);
}

BertForPreTraining::BertForPreTraining(const BertConfig& c) {
  bert = register_module("bert", std::make_shared<BertModel>(c));
  cls = register_module("cls", std::make_shared<BertPreTrainingHeads>(c, bert->embeddings->word_embeddings->weight));
}

}  // namespace vb::models
