// Caption generation with the single-stream model, as UniLM and Oscar do it with one encoder: the caption
// is the text segment, the clip's frames the video segment, and the sequence-to-sequence attention mask
// (models::seq2seq_attention_mask) lets a caption position see the clip and the caption tokens up to
// itself, never after. Training masks caption tokens at random and predicts them with the masked-LM head;
// decoding starts from [CLS] [MASK], predicts the [MASK], writes the prediction in its place and appends
// the next [MASK], left to right, greedily or by beam search, until [SEP] or a maximum length.
//
// Everything runs through the op library on the features' device (cpu, emu, cuda); only the small integer
// bookkeeping (which token goes where, the beams) happens on the host.
#pragma once
#include <vector>

#include "models/videobert.h"
#include "train/objectives.h"

namespace vb::train {

// ---------------------------------------------------------------- training

// The masking rate of caption tokens by default: Oscar's 15% (and BERT's, and this project's
// mlm_probability). UniLM's sequence-to-sequence fine-tuning uses higher rates (up to 70%) on long targets;
// on captions of a few words 15% with at least one token per caption keeps the contexts close to what
// decoding sees (real tokens before the one predicted).
inline constexpr double kCaptionMaskProbability = 0.15;

// Which tokens a training step predicts. In ids (B, Tt) = [CLS] caption [SEP] [PAD]…, every position that
// holds an ordinary token or the caption's [SEP] (anything but [PAD], [CLS], [MASK], [UNK]) is chosen with
// probability p, and a row where none was chosen gets one of its candidates chosen uniformly, so that every
// caption teaches something each step. [SEP] is a candidate so that the model learns when a caption ends.
// Every chosen token becomes [MASK] (no random or kept tokens as BERT's 80/10/10 does: at decoding time
// the predicted position always holds [MASK]). labels are the original ids at chosen positions, −100
// elsewhere. The draws are per row (rand_rows: a row is masked alike whichever data-parallel rank holds it),
// made on the host; ids and labels come back on ids' device.
MaskedTokens mask_caption_tokens(const Tensor& ids, const SpecialTokens& special, double p, Generator& gen);

struct CaptionLossOptions {
  SpecialTokens special;  // the vocabulary's [PAD] [CLS] [SEP] [MASK] [UNK]
  double mask_probability = kCaptionMaskProbability;
  Reduction reduction = Reduction::Mean;  // Sum: the sum over masked tokens (data parallel's share_of_mean)
};

struct CaptionLoss {
  Tensor loss;          // () cross-entropy of the masked-LM head over the masked caption tokens
  Tensor logits;        // (M, V) the head's logits at the M = masked.count masked positions, row-major order
  Tensor targets;       // (M) their true tokens: mlm_correct(logits, targets) counts the right predictions
  MaskedTokens masked;  // the model's input ids (B, Tt), the labels (B, Tt; −100 where not masked), M
};

// The captioning loss of one batch: mask_caption_tokens, the single stream under StreamAttention::Seq2Seq,
// the masked-LM head, cross-entropy on the masked positions. ids (B, Tt) int64 = [CLS] caption [SEP]
// [PAD]…, text_mask (B, Tt) 1 on tokens, features (B, Tv, C) the clips' frame features
// (model.frame_features(frames)). A batch with no token to predict (every caption empty) has loss 0, still
// connected to the weights it would have trained (so that backward gives them zero gradients).
CaptionLoss caption_loss(models::SingleStream& model, const Tensor& ids, const Tensor& text_mask,
                         const Tensor& features, Generator& gen, const CaptionLossOptions& options = {});
// The same on tokens already masked by mask_caption_tokens, for a training step that needs masked.count
// before the forward pass (data parallelism's totals, as tasks.cpp prepares masked LM).
CaptionLoss caption_loss(models::SingleStream& model, const MaskedTokens& masked, const Tensor& text_mask,
                         const Tensor& features, Reduction reduction = Reduction::Mean);

// ---------------------------------------------------------------- decoding

struct DecodeOptions {
  SpecialTokens special;    // the vocabulary's [PAD] [CLS] [SEP] [MASK] [UNK]
  // The padded text length Tt the model was trained with (the configuration's max_text_len). Required: the
  // frames take the positions after the text, so decoding must lay the text out as training did.
  int64_t text_len = 0;
  int64_t max_length = 0;   // at most this many caption tokens ([SEP] not counted); 0: text_len − 2
  int64_t min_length = 1;   // [SEP] is not allowed before this many caption tokens
  int64_t beam_width = 4;   // beam_search only
  // Beam search ranks by log P(caption) / (tokens emitted, [SEP] included)^α. α = 0 (the default): no length
  // normalisation, the sequence's probability itself; α = 1: the mean log-probability per token, which
  // counters beam search's preference for short captions.
  double length_penalty = 0;
};

struct Caption {
  std::vector<int64_t> ids;  // the caption's tokens, without [CLS] and [SEP]
  double log_prob = 0;       // Σ log p of the tokens emitted, the final [SEP] included when it was emitted
  double score = 0;          // log_prob / (tokens emitted)^length_penalty: what beam search ranks by
  bool finished = false;     // ended by [SEP]; false when max_length stopped it
};

// log p is the log-softmax of the masked-LM logits over the tokens allowed at that step: never [PAD],
// [CLS], [MASK] or [UNK], and not [SEP] before min_length tokens. Both decoders run the model in eval mode
// (restoring its mode after) without recording gradients; features (B, Tv, C) on the model's device.
// They return one caption per clip, in the features' order.

// Greedy: at each step every unfinished clip takes its most probable token.
std::vector<Caption> greedy_decode(models::SingleStream& model, const Tensor& features, const DecodeOptions& options);

// Beam search with beam_width beams per clip. At each step every unfinished beam proposes its beam_width
// most probable tokens; the beam_width best candidates by score — the beams already finished (by [SEP])
// compete with their score unchanged — become the next beams. A clip stops when all its beams are finished,
// or, with length_penalty 0, as soon as its best beam is finished (unfinished beams can only lose
// probability), or at max_length; its caption is its best beam. With beam_width 1 this is greedy_decode.
std::vector<Caption> beam_search(models::SingleStream& model, const Tensor& features, const DecodeOptions& options);

}  // namespace vb::train
