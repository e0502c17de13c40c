// The three VideoBERT-style models over a BERT text encoder and a ResNet frame encoder.
//
// 1. LateFusion (the founding document's model): [CLS] vector ⊕ pooled video vector → Linear(·, 512) →
//    ReLU → Linear(512, 1): one matching logit, trained with binary cross-entropy.
// 2. SingleStream (VideoBERT, ClipBERT): [CLS] text [SEP] visual tokens [SEP] through one BERT encoder.
//    Visual tokens are projected frame features with their own segment (token type 1) and continuing
//    positions. Heads: masked LM on the text, masked frame modelling on the video, alignment on [CLS].
//    With visual words (VideoBERT proper), each frame's feature is first turned into a discrete word of a
//    hierarchical k-means vocabulary by a frozen frame encoder, and masked frames are predicted as words.
// 3. DualEncoder (MIL-NCE, VideoCLIP): text and video each projected into one normalised space and
//    compared by cosine similarity times a learned temperature.
//
// Frames are channels-last (B, T, H, W, 3), ImageNet-normalised.
#pragma once
#include "models/bert.h"
#include "models/resnet.h"
#include "models/visual_words.h"

namespace vb::models {

struct VideoBertConfig {
  BertConfig text = BertConfig::preset("tiny");
  ResNetConfig vision = ResNetConfig::preset("resnet-tiny");
  bool temporal_transformer = false;  // pooling over frames: mean, or a small transformer
  bool frame_differences = false;     // each frame with its difference to the previous one (FrameEncoder)
  int64_t fusion_hidden = 512;        // late fusion MLP width
  int64_t embed_dim = 128;            // dual encoder's joint space
  int64_t max_frames = 32;            // single stream: visual positions available after the text
  int64_t sep_token_id = 102;         // single stream: the [SEP] that closes the visual segment
  // Single stream with VideoBERT's visual words (visual_tokens=true): a tree of visual_levels levels of
  // visual_k children; 0 = the model reads continuous frame features.
  int64_t visual_levels = 0, visual_k = 0;
};

// Rows scaled to unit L2 norm: x / √(Σx² + ε).
Tensor l2_normalize(const Tensor& x, double eps = 1e-12);

// The masked mean of token states (B, T, H) over the positions where attention_mask is 1: (B, H).
Tensor masked_mean(const Tensor& hidden, const Tensor& attention_mask);

// A shared text–video embedding space (MIL-NCE, VideoCLIP, ALBEF's "align before fuse"): pooled text
// and video vectors projected to embed_dim and L2-normalised, compared by cosine times a learned
// temperature. The dual encoder is this head over two encoders; the single-stream model carries one as
// its first stage for retrieval and its source of hard negatives.
class ContrastiveHead : public nn::Module {
 public:
  ContrastiveHead(int64_t text_dim, int64_t video_dim, int64_t embed_dim);
  Tensor embed_text(const Tensor& pooled_text);    // (B, text_dim) → (B, D), unit norm
  Tensor embed_video(const Tensor& pooled_video);  // (B, video_dim) → (B, D), unit norm
  // exp(logit_scale) · text · videoᵀ: (Bt, Bv).
  Tensor similarity(const Tensor& text, const Tensor& video);
  // Symmetric InfoNCE: the matched pair of each row is on the diagonal.
  Tensor loss(const Tensor& text, const Tensor& video);
  std::shared_ptr<nn::Linear> text_projection, video_projection;
  Tensor logit_scale;  // () initialised to log(1/0.07), clamped to ≤ log(100) when used
};

class LateFusion : public nn::Module {
 public:
  explicit LateFusion(const VideoBertConfig& c);
  Tensor text_embedding(const Tensor& ids, const Tensor& attention_mask);  // [CLS] vector (B, H)
  Tensor video_embedding(const Tensor& frames);                            // pooled (B, C)
  // Matching logits (B) for aligned rows of text and video embeddings.
  Tensor score(const Tensor& text, const Tensor& video);
  // Every pair: (Bt, Bv) logits, for retrieval.
  Tensor score_all(const Tensor& text, const Tensor& video);
  Tensor forward(const Tensor& ids, const Tensor& attention_mask, const Tensor& frames);
  // BCE over logits against 0/1 labels of the same shape.
  static Tensor loss(const Tensor& logits, const Tensor& labels);
  std::shared_ptr<BertModel> text;
  std::shared_ptr<FrameEncoder> video;
  std::shared_ptr<nn::Sequential> fusion;
};

// Who attends to whom in the single stream's sequence.
enum class StreamAttention {
  Bidirectional,  // every position sees every position that is not padding (pretraining, retrieval)
  Seq2Seq,        // caption generation (UniLM, Oscar): seq2seq_attention_mask below
};

// The sequence-to-sequence mask over the single stream's sequence
//   positions 0 … Tt−1: [CLS] caption [SEP] [PAD]… (the text, text_mask (B, Tt) 1 on tokens, 0 on padding)
//   positions Tt … Tt+Tv: the Tv frames and the closing [SEP] (the video)
// as (B, N, N) bool, N = Tt + Tv + 1, [b, i, j] true when position i may attend to position j:
//   - a text position i (the [CLS], a caption token or [MASK], the caption's [SEP], and padding rows too)
//     sees the text positions j ≤ i that are tokens (text_mask[b, j] = 1) and every video position;
//   - a video position sees every video position and no text position.
// So a caption position's output depends on the clip and on the tokens at and before it, never on those
// after it (nor on padding), and the video's states do not depend on the caption at all: appending a token
// leaves every earlier output unchanged, which is what left-to-right decoding needs. Every row sees at
// least the video, so no position is left with nothing to attend to. Built on text_mask's device.
Tensor seq2seq_attention_mask(const Tensor& text_mask, int64_t frames);

struct SingleStreamOutput {
  Tensor hidden;        // (B, Tt + Tv + 1, H)
  Tensor text_hidden;   // (B, Tt, H)
  Tensor video_hidden;  // (B, Tv, H)
  Tensor pooled;        // (B, H)
  Tensor visual_words;  // (B, Tv) int64: the words read in place of the features (visual words only)
};

class SingleStream : public nn::Module {
 public:
  explicit SingleStream(const VideoBertConfig& c);
  // Frame features (B, Tv, C) from the frame encoder. With visual words the encoder is the tokenizer's:
  // frozen, in evaluation mode (BatchNorm's running statistics) and without gradient, so that a frame gets
  // the word its feature got when the vocabulary was built.
  Tensor frame_features(const Tensor& frames);
  // ids (B, Tt) = [CLS] text [SEP] (padded), text_mask (B, Tt); features (B, Tv, C); frame_mask (B, Tv)
  // true where a frame is replaced by the learned [MASK] frame (masked frame modelling), may be undefined.
  // With visual words, frame t enters as visual_projection(visual_words[w_t]), w_t its feature's word
  // (visual_vocab's tree descent), instead of visual_projection(features_t).
  // attention: Bidirectional (padding masked only) or Seq2Seq (seq2seq_attention_mask, for captioning).
  SingleStreamOutput forward(const Tensor& ids, const Tensor& text_mask, const Tensor& features,
                             const Tensor& frame_mask = {},
                             StreamAttention attention = StreamAttention::Bidirectional);
  Tensor mlm_logits(const Tensor& text_hidden);        // (…, vocab)
  Tensor frame_prediction(const Tensor& video_hidden);  // (…, C): the predicted features of masked frames
  // Visual words only: logits over the K = k^L words, tied to the word embeddings as BERT's masked-LM
  // decoder is to its token embeddings: frame_head(h) · visual_wordsᵀ + visual_word_bias. (…, K).
  Tensor visual_word_logits(const Tensor& video_hidden);
  bool visual_tokens() const { return visual_vocab != nullptr; }
  // Visual words only: the vocabulary's tables into visual_vocab, its word centroids into visual_words
  // (the word embeddings start at the centroids, as in the paper).
  void init_visual_words(const VisualVocab& v);
  Tensor alignment_logits(const Tensor& pooled);        // (B, 2): aligned / not
  // The first stage: the text alone through the same BERT (segment 0, masked mean of its states) and
  // the mean frame feature, each in the contrastive head's space: (B, D), unit norm.
  Tensor text_embedding(const Tensor& ids, const Tensor& attention_mask);
  Tensor video_embedding(const Tensor& features);
  VideoBertConfig config;
  std::shared_ptr<BertModel> bert;
  std::shared_ptr<FrameEncoder> video;
  std::shared_ptr<nn::Linear> visual_projection;     // C → H
  Tensor mask_frame;                                 // (H): the embedding of a masked frame
  std::shared_ptr<BertPreTrainingHeads> cls;         // masked LM and alignment heads
  std::shared_ptr<nn::Linear> frame_head;            // H → C
  std::shared_ptr<ContrastiveHead> contrast;         // H and C → embed_dim
  std::shared_ptr<VisualTokenizer> visual_vocab;     // visual words only: the tree (buffers)
  std::shared_ptr<nn::Embedding> visual_words;       // visual words only: (K, C), a row per word
  Tensor visual_word_bias;                           // visual words only: (K)
};

class DualEncoder : public nn::Module {
 public:
  explicit DualEncoder(const VideoBertConfig& c);
  // Masked mean of the token states, projected: (B, D), unit norm.
  Tensor text_embedding(const Tensor& ids, const Tensor& attention_mask);
  Tensor video_embedding(const Tensor& frames);  // (B, D), unit norm
  Tensor similarity(const Tensor& text, const Tensor& video) { return contrast->similarity(text, video); }
  Tensor contrastive_loss(const Tensor& text, const Tensor& video) { return contrast->loss(text, video); }
  std::shared_ptr<BertModel> text;
  std::shared_ptr<FrameEncoder> video;
  std::shared_ptr<ContrastiveHead> contrast;
};

}  // namespace vb::models
