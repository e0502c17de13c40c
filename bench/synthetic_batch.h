// Synthetic training inputs for the training benchmarks (bench/train_cpu.cpp, bench/dist_train.cpp):
// batches of a preset's shapes as the loader delivers them, and a filler vocabulary of any size, so that
// data loading is out of the timings.
#pragma once
#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "models/tokenizer.h"
#include "train/data/loader.h"

namespace vb::bench {

// A WordPiece vocabulary of `size` tokens: the five specials in the synthetic dataset's order, then filler.
inline WordPieceTokenizer filler_tokenizer(int64_t size) {
  std::vector<std::string> vocab = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  for (int64_t i = int64_t(vocab.size()); i < size; ++i) vocab.push_back("tok" + std::to_string(i));
  return WordPieceTokenizer(std::move(vocab), true, "bench vocabulary");
}

// Caption lengths ([CLS] … [SEP]) of the rows: from the full length down to about half, so that the
// attention masks carry padding as real batches do.
inline std::vector<int64_t> caption_lengths(int64_t batch, int64_t max_len) {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < batch; ++i) out.push_back(std::max<int64_t>(3, max_len - (i * 5) % (max_len / 2 + 1)));
  return out;
}

// A batch as the loader delivers it: ImageNet-normalised frames (about N(0, 1)) and [CLS] words [SEP] [PAD]….
inline data::Batch synthetic_batch(const nlohmann::json& c, const WordPieceTokenizer& tok, Generator& gen) {
  const int64_t b = c["batch_size"], t = c["frames"], s = c["image_size"], l = c["max_text_len"];
  data::Batch batch;
  batch.frames = randn({b, t, s, s, 3}, &gen);
  const std::vector<double> words = randint(5, tok.vocab_size(), {b, l}, &gen).to_vector();  // ordinary tokens
  std::vector<int64_t> ids(size_t(b * l), tok.pad_id()), mask(size_t(b * l), 0);
  const std::vector<int64_t> lengths = caption_lengths(b, l);
  for (int64_t i = 0; i < b; ++i) {
    const int64_t n = lengths[size_t(i)];
    for (int64_t j = 0; j < n; ++j) {
      const size_t at = size_t(i * l + j);
      ids[at] = j == 0 ? tok.cls_id() : j == n - 1 ? tok.sep_id() : int64_t(words[at]);
      mask[at] = 1;
    }
  }
  batch.input_ids = Tensor::from_vector(ids, {b, l});
  batch.attention_mask = Tensor::from_vector(mask, {b, l});
  batch.token_type_ids = zeros({b, l}, DType::Int64);
  batch.clip_index = arange(b, DType::Int64);
  batch.caption_index = zeros({b}, DType::Int64);
  batch.captions.assign(size_t(b), "synthetic");
  return batch;
}

}  // namespace vb::bench
