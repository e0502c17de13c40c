// WordPiece vocabulary training (see vocab_builder.h for the procedure).
//
// Cost: each merge rescans the pair table (P distinct pairs) to find the best score and rewrites only the
// words that contain the merged pair, so training is O(merges · P) plus the rewrites — fine for corpora of
// a few million words.
#include "models/vocab_builder.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <tuple>

#include "models/tokenizer.h"
#include "tensor/atomic_file.h"
#include "tensor/error.h"

namespace vb {
namespace {

constexpr std::string_view kContinuation = "##";
const std::vector<std::string> kSpecials = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

bool is_special(const std::string& w) { return std::find(kSpecials.begin(), kSpecials.end(), w) != kSpecials.end(); }

// The code points of a valid UTF-8 word, each as its UTF-8 bytes.
std::vector<std::string> split_chars(const std::string& word) {
  std::vector<std::string> chars;
  for (size_t i = 0; i < word.size(); ++i) {
    if ((static_cast<unsigned char>(word[i]) & 0xC0) != 0x80)
      chars.emplace_back(1, word[i]);
    else
      chars.back().push_back(word[i]);
  }
  return chars;
}

// The first code point of a UTF-8 character, for sorting the alphabet by code point.
char32_t code_point(const std::string& c) {
  auto b = static_cast<unsigned char>(c[0]);
  int extra = b < 0x80 ? 0 : b < 0xE0 ? 1 : b < 0xF0 ? 2 : 3;
  char32_t cp = extra == 0 ? b : b & (0x3F >> extra);
  for (int k = 1; k <= extra; ++k) cp = (cp << 6) | (static_cast<unsigned char>(c[static_cast<size_t>(k)]) & 0x3F);
  return cp;
}

using PairKey = uint64_t;
PairKey key(int32_t a, int32_t b) { return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b); }
int32_t first_of(PairKey k) { return static_cast<int32_t>(k >> 32); }
int32_t second_of(PairKey k) { return static_cast<int32_t>(k & 0xFFFFFFFFu); }

struct Word {
  std::vector<int32_t> symbols;
  int64_t count = 0;
};

class Trainer {
 public:
  explicit Trainer(const VocabBuildOptions& options) : options_(options) {
    for (const std::string& s : kSpecials) add_token(s);
  }

  std::vector<std::string> run(const WordCounts& counts) {
    // Words in byte order, so that nothing depends on hash-table order.
    std::vector<std::pair<std::string, int64_t>> sorted;
    for (const auto& [w, c] : counts)
      if (c > 0 && !is_special(w) && !w.empty()) sorted.emplace_back(w, c);
    std::sort(sorted.begin(), sorted.end());

    std::vector<std::vector<std::string>> chars;
    std::map<char32_t, std::string> initial, continuation;
    for (const auto& [w, c] : sorted) {
      auto cs = split_chars(w);
      if (static_cast<int64_t>(cs.size()) > WordPieceTokenizer::kMaxCharsPerWord) continue;
      for (size_t i = 0; i < cs.size(); ++i) {
        initial.emplace(code_point(cs[i]), cs[i]);
        if (i > 0) continuation.emplace(code_point(cs[i]), std::string(kContinuation) + cs[i]);
      }
      chars.push_back(std::move(cs));
      words_.push_back(Word{{}, c});
    }
    for (const auto& [cp, s] : initial) add_token(s);
    for (const auto& [cp, s] : continuation) add_token(s);

    token_count_.assign(tokens_.size(), 0);
    for (size_t w = 0; w < words_.size(); ++w) {
      for (size_t i = 0; i < chars[w].size(); ++i) {
        int32_t id = ids_.at(i == 0 ? chars[w][i] : std::string(kContinuation) + chars[w][i]);
        words_[w].symbols.push_back(id);
        token_count_[static_cast<size_t>(id)] += words_[w].count;
      }
      add_pairs(static_cast<int32_t>(w), /*index_all=*/true);
    }

    const int64_t min_count = std::max<int64_t>(options_.min_frequency, 1);
    while (static_cast<int64_t>(tokens_.size()) < options_.vocab_size) {
      PairKey best = 0;
      int64_t best_count = 0;
      for (const auto& [k, c] : pair_count_)
        if (c >= min_count && (best_count == 0 || better(k, c, best, best_count))) {
          best = k;
          best_count = c;
        }
      if (best_count == 0) break;
      merge(best);
    }
    return tokens_;
  }

 private:
  int32_t add_token(const std::string& s) {
    auto [it, inserted] = ids_.emplace(s, static_cast<int32_t>(tokens_.size()));
    if (inserted) {
      tokens_.push_back(s);
      token_count_.push_back(0);
    }
    return it->second;
  }

  // Is pair k (count c) better than pair k2 (count c2)? Scores compared exactly by cross-multiplying.
  bool better(PairKey k, int64_t c, PairKey k2, int64_t c2) const {
    using u128 = unsigned __int128;
    auto count = [&](int32_t id) { return static_cast<u128>(token_count_[static_cast<size_t>(id)]); };
    u128 lhs = static_cast<u128>(c) * count(first_of(k2)) * count(second_of(k2));
    u128 rhs = static_cast<u128>(c2) * count(first_of(k)) * count(second_of(k));
    if (lhs != rhs) return lhs > rhs;
    if (c != c2) return c > c2;
    const std::string &a = tokens_[static_cast<size_t>(first_of(k))], &b = tokens_[static_cast<size_t>(second_of(k))];
    const std::string &a2 = tokens_[static_cast<size_t>(first_of(k2))],
                      &b2 = tokens_[static_cast<size_t>(second_of(k2))];
    return std::tie(a, b) < std::tie(a2, b2);
  }

  // Adds word w's adjacent pairs to the counts; indexes w under each pair (all of them, or only the pairs
  // that contain `only` — the others already list w).
  void add_pairs(int32_t w, bool index_all, int32_t only = -1) {
    const Word& word = words_[static_cast<size_t>(w)];
    for (size_t i = 0; i + 1 < word.symbols.size(); ++i) {
      PairKey k = key(word.symbols[i], word.symbols[i + 1]);
      pair_count_[k] += word.count;
      if (index_all || word.symbols[i] == only || word.symbols[i + 1] == only) pair_words_[k].push_back(w);
    }
  }

  void remove_pairs(int32_t w) {
    const Word& word = words_[static_cast<size_t>(w)];
    for (size_t i = 0; i + 1 < word.symbols.size(); ++i) {
      auto it = pair_count_.find(key(word.symbols[i], word.symbols[i + 1]));
      it->second -= word.count;
      if (it->second == 0) pair_count_.erase(it);
    }
  }

  void merge(PairKey best) {
    const int32_t a = first_of(best), b = second_of(best);
    std::string merged = tokens_[static_cast<size_t>(a)];
    const std::string& tail = tokens_[static_cast<size_t>(b)];
    merged += tail.substr(tail.rfind(kContinuation, 0) == 0 ? kContinuation.size() : 0);
    const int32_t ab = add_token(merged);  // may exist already, reached through another pair

    std::vector<int32_t> touched = std::move(pair_words_[best]);
    pair_words_.erase(best);
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    for (int32_t w : touched) {
      Word& word = words_[static_cast<size_t>(w)];
      bool has = false;
      for (size_t i = 0; i + 1 < word.symbols.size() && !has; ++i) has = word.symbols[i] == a && word.symbols[i + 1] == b;
      if (!has) continue;  // an index entry left over from before an earlier merge
      remove_pairs(w);
      std::vector<int32_t> out;
      out.reserve(word.symbols.size());
      for (size_t i = 0; i < word.symbols.size(); ++i) {
        if (i + 1 < word.symbols.size() && word.symbols[i] == a && word.symbols[i + 1] == b) {
          out.push_back(ab);
          token_count_[static_cast<size_t>(a)] -= word.count;
          token_count_[static_cast<size_t>(b)] -= word.count;
          token_count_[static_cast<size_t>(ab)] += word.count;
          ++i;
        } else {
          out.push_back(word.symbols[i]);
        }
      }
      word.symbols = std::move(out);
      add_pairs(w, /*index_all=*/false, ab);
    }
    pair_count_.erase(best);  // already gone from every word; this only guards the loop's termination
  }

  VocabBuildOptions options_;
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int32_t> ids_;
  std::vector<int64_t> token_count_;
  std::vector<Word> words_;
  std::unordered_map<PairKey, int64_t> pair_count_;
  std::unordered_map<PairKey, std::vector<int32_t>> pair_words_;
};

}  // namespace

void count_words(std::string_view text, bool lower_case, WordCounts& counts) {
  for (std::string& w : bert_pre_tokenize(text, lower_case))
    if (!is_special(w)) ++counts[std::move(w)];
}

std::vector<std::string> train_wordpiece_vocab(const WordCounts& counts, const VocabBuildOptions& options) {
  VB_CHECK(options.vocab_size > 0, "vocab build: the vocabulary size must be positive, got {}", options.vocab_size);
  VB_CHECK(options.min_frequency >= 0, "vocab build: min_frequency must be non-negative, got {}",
           options.min_frequency);
  return Trainer(options).run(counts);
}

std::vector<std::string> build_wordpiece_vocab(const std::vector<std::string>& corpus_paths,
                                               const VocabBuildOptions& options) {
  VB_CHECK(!corpus_paths.empty(), "vocab build: no corpus file given");
  WordCounts counts;
  for (const std::string& path : corpus_paths) {
    std::ifstream in(path, std::ios::binary);
    VB_CHECK(in, "vocab build: cannot open the corpus file '{}'", path);
    std::string line;
    for (int64_t line_no = 1; std::getline(in, line); ++line_no) {
      try {
        count_words(line, options.lower_case, counts);
      } catch (const Error& e) {
        fail("vocab build: {} line {}: {}", path, line_no, e.what());
      }
    }
    VB_CHECK(!in.bad(), "vocab build: error while reading the corpus file '{}'", path);
  }
  return train_wordpiece_vocab(counts, options);
}

void write_vocab(const std::vector<std::string>& vocab, const std::string& path) {
  for (size_t i = 0; i < vocab.size(); ++i)
    VB_CHECK(!vocab[i].empty() && vocab[i].find_first_of("\r\n") == std::string::npos,
             "write_vocab: token {} is empty or holds a line break; vocab.txt has one token per line", i);
  std::string text;
  for (const std::string& t : vocab) {
    text += t;
    text += '\n';
  }
  write_text_atomic(path, text);
}

}  // namespace vb
