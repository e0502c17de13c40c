// Trains a WordPiece vocabulary from text, so that a user without a vocab.txt can make one.
//
// The corpus goes through BERT's pre-tokenisation (bert_pre_tokenize: cleaning, CJK split, NFC, lower-casing
// and accent stripping when uncased, punctuation split). Then, as WordPiece training does it:
//   - the vocabulary starts with [PAD] [UNK] [CLS] [SEP] [MASK], every character of the corpus (word-initial
//     form, by code point) and the "##"-prefixed form of every character that occurs inside a word;
//   - each word is a sequence of those symbols; the pair (a, b) of adjacent symbols with the highest score
//         count(ab) / (count(a) · count(b))
//     (counts over the corpus, each word weighted by its frequency) is merged into one symbol "a" + "b" without
//     b's "##", repeatedly, until the vocabulary has vocab_size tokens or no pair occurs min_frequency times.
//   Ties go to the higher count(ab), then to the byte-wise smaller (a, b), so the result is deterministic.
// The alphabet is always kept whole (even past vocab_size): without it some word of the corpus would be [UNK].
// Words longer than WordPieceTokenizer::kMaxCharsPerWord are skipped: the tokenizer makes them [UNK] anyway.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace vb {

struct VocabBuildOptions {
  int64_t vocab_size = 30000;
  int64_t min_frequency = 2;  // a pair must occur at least this often to be merged
  bool lower_case = true;     // an uncased vocabulary (lower-cased, accents stripped)
};

using WordCounts = std::unordered_map<std::string, int64_t>;

// Adds the words of `text` (BERT pre-tokenisation; special tokens left out) to `counts`.
void count_words(std::string_view text, bool lower_case, WordCounts& counts);

// The vocabulary trained on `counts`, specials first, ids in order.
std::vector<std::string> train_wordpiece_vocab(const WordCounts& counts, const VocabBuildOptions& options);

// Reads each corpus file (UTF-8 text, any line structure) and trains on all of them.
std::vector<std::string> build_wordpiece_vocab(const std::vector<std::string>& corpus_paths,
                                               const VocabBuildOptions& options);

// Writes one token per line, atomically: a temporary file beside `path`, fsync, then rename over `path`.
void write_vocab(const std::vector<std::string>& vocab, const std::string& path);

}  // namespace vb
