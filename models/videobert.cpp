#include "models/videobert.h"

#include <cmath>

#include "nn/init.h"

namespace vb::models {

Tensor l2_normalize(const Tensor& x, double eps) {
  return div(x, sqrt(add(sum(mul(x, x), {-1}, true), eps)));
}

Tensor masked_mean(const Tensor& h, const Tensor& attention_mask) {
  if (!attention_mask.defined()) return mean(h, {1});
  Tensor m = vb::to(attention_mask, h.dtype());
  return div(sum(mul(h, unsqueeze(m, -1)), {1}), unsqueeze(sum(m, {1}), -1));
}

// ---------------------------------------------------------------- contrastive head

ContrastiveHead::ContrastiveHead(int64_t text_dim, int64_t video_dim, int64_t embed_dim) {
  text_projection = register_module("text_projection", std::make_shared<nn::Linear>(text_dim, embed_dim));
  video_projection = register_module("video_projection", std::make_shared<nn::Linear>(video_dim, embed_dim));
  logit_scale = register_parameter("logit_scale", full({}, std::log(1 / 0.07)));
}

Tensor ContrastiveHead::embed_text(const Tensor& pooled) { return l2_normalize((*text_projection)(pooled)); }
Tensor ContrastiveHead::embed_video(const Tensor& pooled) { return l2_normalize((*video_projection)(pooled)); }

Tensor ContrastiveHead::similarity(const Tensor& t, const Tensor& v) {
  Tensor scale = exp(clamp(logit_scale, std::nullopt, std::log(100.0)));
  return mul(matmul(t, transpose(v, 0, 1)), scale);
}

Tensor ContrastiveHead::loss(const Tensor& t, const Tensor& v) {
  VB_CHECK(t.size(0) == v.size(0), "contrastive_loss: {} texts against {} videos; pairs must align", t.size(0), v.size(0));
  Tensor logits = similarity(t, v);  // (B, B)
  Tensor targets = arange(t.size(0), DType::Int64, t.device());
  return mul(add(cross_entropy(logits, targets), cross_entropy(transpose(logits, 0, 1), targets)), 0.5);
}

// ---------------------------------------------------------------- late fusion

LateFusion::LateFusion(const VideoBertConfig& c) {
  text = register_module("text", std::make_shared<BertModel>(c.text));
  video = register_module(
      "video", std::make_shared<FrameEncoder>(c.vision, c.temporal_transformer, 64, c.frame_differences));
  fusion = register_module("fusion", std::make_shared<nn::Sequential>(std::vector<std::shared_ptr<nn::UnaryModule>>{
                                          std::make_shared<nn::Linear>(c.text.hidden_size + c.vision.feature_dim(),
                                                                       c.fusion_hidden),
                                          std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(c.fusion_hidden, 1)}));
}

Tensor LateFusion::text_embedding(const Tensor& ids, const Tensor& attention_mask) {
  return select(text->forward(ids, {}, attention_mask).last_hidden_state, 1, 0);
}

Tensor LateFusion::video_embedding(const Tensor& frames) { return video->forward(frames); }

Tensor LateFusion::score(const Tensor& t, const Tensor& v) {
  VB_CHECK(t.dim() == 2 && v.dim() == 2 && t.size(0) == v.size(0),
           "LateFusion.score: expected text (B, H) and video (B, C) with one B, got {} and {}", shape_str(t.shape()),
           shape_str(v.shape()));
  return squeeze((*fusion)(cat({t, v}, 1)), 1);
}

Tensor LateFusion::score_all(const Tensor& t, const Tensor& v) {
  const int64_t bt = t.size(0), bv = v.size(0);
  Tensor te = reshape(expand(unsqueeze(t, 1), {bt, bv, t.size(1)}), {bt * bv, t.size(1)});
  Tensor ve = reshape(expand(unsqueeze(v, 0), {bt, bv, v.size(1)}), {bt * bv, v.size(1)});
  return reshape(score(te, ve), {bt, bv});
}

Tensor LateFusion::forward(const Tensor& ids, const Tensor& attention_mask, const Tensor& frames) {
  return score(text_embedding(ids, attention_mask), video_embedding(frames));
}

Tensor LateFusion::loss(const Tensor& logits, const Tensor& labels) {
  return binary_cross_entropy_with_logits(logits, labels);
}

// ---------------------------------------------------------------- single stream

SingleStream::SingleStream(const VideoBertConfig& c) : config(c) {
  VB_CHECK(c.text.type_vocab_size >= 2, "SingleStream: the text config needs type_vocab_size ≥ 2 (text and video "
           "segments), got {}", c.text.type_vocab_size);
  bert = register_module("bert", std::make_shared<BertModel>(c.text));
  video = register_module("video", std::make_shared<FrameEncoder>(c.vision, false, 64, c.frame_differences));
  visual_projection = register_module("visual_projection",
                                      std::make_shared<nn::Linear>(c.vision.feature_dim(), c.text.hidden_size));
  mask_frame = register_parameter("mask_frame", zeros({c.text.hidden_size}));
  nn::init::normal_(mask_frame, 0.0, c.text.initializer_range);
  cls = register_module("cls", std::make_shared<BertPreTrainingHeads>(c.text, bert->embeddings->word_embeddings->weight));
  frame_head = register_module("frame_head", std::make_shared<nn::Linear>(c.text.hidden_size, c.vision.feature_dim()));
  contrast = register_module("contrast", std::make_shared<ContrastiveHead>(c.text.hidden_size, c.vision.feature_dim(),
                                                                           c.embed_dim));
  if (c.visual_levels > 0) {
    const int64_t dim = c.vision.feature_dim();
    visual_vocab = register_module("visual_vocab", std::make_shared<VisualTokenizer>(c.visual_levels, c.visual_k, dim));
    visual_words = register_module("visual_words", std::make_shared<nn::Embedding>(visual_vocab->vocab.words(), dim));
    visual_word_bias = register_parameter("visual_word_bias", zeros({visual_vocab->vocab.words()}));
  }
}

Tensor SingleStream::frame_features(const Tensor& frames) {
  if (!visual_tokens()) return video->frame_features(frames);
  NoGradGuard no_grad;
  const bool training = video->is_training();
  video->eval();
  Tensor f;
  try {
    f = video->frame_features(frames);
  } catch (...) {
    video->train(training);
    throw;
  }
  video->train(training);
  return f;
}

void SingleStream::init_visual_words(const VisualVocab& v) {
  VB_CHECK(visual_tokens(), "SingleStream: init_visual_words on a model made without visual words");
  visual_vocab->load(v);
  NoGradGuard no_grad;
  copy_(visual_words->weight,
        vb::to(vb::to(v.centroids(), visual_words->weight.dtype()), visual_words->weight.device()));
}

Tensor SingleStream::visual_word_logits(const Tensor& video_hidden) {
  VB_CHECK(visual_tokens(), "SingleStream: visual_word_logits on a model made without visual words");
  Tensor h = (*frame_head)(video_hidden);  // (…, C)
  return add(matmul(h, transpose(visual_words->weight, 0, 1)), visual_word_bias);
}

Tensor SingleStream::text_embedding(const Tensor& ids, const Tensor& attention_mask) {
  return contrast->embed_text(masked_mean(bert->forward(ids, {}, attention_mask).last_hidden_state, attention_mask));
}

Tensor SingleStream::video_embedding(const Tensor& features) { return contrast->embed_video(mean(features, {1})); }

Tensor seq2seq_attention_mask(const Tensor& text_mask, int64_t frames) {
  VB_CHECK(text_mask.defined() && text_mask.dim() == 2 && frames >= 0,
           "seq2seq_attention_mask: expected text_mask (B, Tt) and frames ≥ 0, got {} and {}",
           text_mask.defined() ? shape_str(text_mask.shape()) : "an undefined text_mask", frames);
  const int64_t batch = text_mask.size(0), text_len = text_mask.size(1);
  const Device device = text_mask.device();
  const int64_t video = frames + 1;  // the frames and the closing [SEP]
  Tensor pos = arange(text_len, DType::Int64, device);
  Tensor causal = le(unsqueeze(pos, 0), unsqueeze(pos, 1));  // (Tt, Tt): [i, j] = j ≤ i
  // (B, Tt, Tt): [b, i, j] = j ≤ i and j is a token
  Tensor text_text = logical_and(unsqueeze(causal, 0), unsqueeze(vb::to(text_mask, DType::Bool), 1));
  Tensor text_rows = cat({text_text, full({batch, text_len, video}, 1.0, DType::Bool, device)}, 2);  // (B, Tt, N)
  Tensor video_rows = cat({full({batch, video, text_len}, 0.0, DType::Bool, device),
                           full({batch, video, video}, 1.0, DType::Bool, device)}, 2);             // (B, Tv+1, N)
  return cat({text_rows, video_rows}, 1);                                                          // (B, N, N)
}

SingleStreamOutput SingleStream::forward(const Tensor& ids, const Tensor& text_mask, const Tensor& features,
                                         const Tensor& frame_mask, StreamAttention attention) {
  VB_CHECK(ids.dim() == 2 && features.dim() == 3 && ids.size(0) == features.size(0),
           "SingleStream: expected ids (B, Tt) and frame features (B, Tv, C), got {} and {}", shape_str(ids.shape()),
           shape_str(features.shape()));
  const int64_t b = ids.size(0), tt = ids.size(1), tv = features.size(1);
  const int64_t total = tt + tv + 1;
  VB_CHECK(total <= config.text.max_position_embeddings,
           "SingleStream: {} text tokens + {} frames + [SEP] exceed max_position_embeddings {}", tt, tv,
           config.text.max_position_embeddings);
  auto& emb = *bert->embeddings;
  Tensor text_embeds = (*emb.word_embeddings)(ids);                       // (B, Tt, H)
  Tensor words;
  if (visual_tokens()) words = visual_vocab->words(features);              // (B, Tv) int64, no gradient
  Tensor visual = (*visual_projection)(visual_tokens() ? (*visual_words)(words) : features);  // (B, Tv, H)
  if (frame_mask.defined()) {
    Tensor m = unsqueeze(frame_mask, -1);                                 // (B, Tv, 1)
    visual = where(m, expand(mask_frame, visual.shape()), visual);
  }
  Tensor sep_ids = full({b, 1}, double(config.sep_token_id), DType::Int64, ids.device());
  Tensor sep = (*emb.word_embeddings)(sep_ids);                           // (B, 1, H)
  Tensor embeds = cat({text_embeds, visual, sep}, 1);                     // (B, T, H)
  Tensor types = cat({zeros({b, tt}, DType::Int64, ids.device()), ones({b, tv + 1}, DType::Int64, ids.device())}, 1);
  Tensor hidden_in = emb.forward_embeds(embeds, types);
  Tensor mask;
  if (attention == StreamAttention::Seq2Seq) {
    const Tensor tm = text_mask.defined() ? text_mask : full({b, tt}, 1.0, DType::Bool, ids.device());
    mask = seq2seq_attention_mask(tm, tv);
  } else if (text_mask.defined()) {
    Tensor tm = vb::to(text_mask, DType::Bool);
    mask = cat({tm, full({b, tv + 1}, 1.0, DType::Bool, ids.device())}, 1);
  }
  BertOutput out = bert->forward_embedded(hidden_in, mask);
  SingleStreamOutput r;
  r.hidden = out.last_hidden_state;
  r.text_hidden = narrow(r.hidden, 1, 0, tt);
  r.video_hidden = narrow(r.hidden, 1, tt, tv);
  r.pooled = out.pooler_output;
  r.visual_words = words;
  return r;
}

Tensor SingleStream::mlm_logits(const Tensor& text_hidden) { return cls->predictions->forward(text_hidden); }
Tensor SingleStream::frame_prediction(const Tensor& video_hidden) { return (*frame_head)(video_hidden); }
Tensor SingleStream::alignment_logits(const Tensor& pooled) { return (*cls->seq_relationship)(pooled); }

// ---------------------------------------------------------------- dual encoder

DualEncoder::DualEncoder(const VideoBertConfig& c) {
  text = register_module("text", std::make_shared<BertModel>(c.text));
  video = register_module(
      "video", std::make_shared<FrameEncoder>(c.vision, c.temporal_transformer, 64, c.frame_differences));
  contrast = register_module("contrast", std::make_shared<ContrastiveHead>(c.text.hidden_size, c.vision.feature_dim(),
                                                                           c.embed_dim));
}

Tensor DualEncoder::text_embedding(const Tensor& ids, const Tensor& attention_mask) {
  // The mean of the token states (padding excluded) rather than [CLS] alone: every word reaches the
  // embedding from the first step, which small models trained briefly need (as in VideoCLIP's pooling).
  return contrast->embed_text(masked_mean(text->forward(ids, {}, attention_mask).last_hidden_state, attention_mask));
}

Tensor DualEncoder::video_embedding(const Tensor& frames) { return contrast->embed_video(video->forward(frames)); }

}  // namespace vb::models
