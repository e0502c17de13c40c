// BERT's WordPiece tokenizer, behaving as Hugging Face's (slow, Python) BertTokenizer does:
//   1. the special tokens written in the text ([PAD] [UNK] [CLS] [SEP] [MASK]) are split out whole;
//   2. cleaning: U+0000, U+FFFD and control characters (category C*, but not \t \n \r) are dropped,
//      \t \n \r and category Zs become a space;
//   3. CJK ideographs get a space on each side (Hangul and kana do not);
//   4. NFC, then split on whitespace;
//   5. uncased vocabularies: lower-case (Python's str.lower, final sigma included), NFD, drop category Mn;
//   6. every punctuation character (ASCII 33–47, 58–64, 91–96, 123–126 and category P*) becomes its own word;
//   7. WordPiece: greedy longest match first, continuation pieces prefixed "##"; a word of more than 100
//      code points, or one with a position that no piece matches, becomes [UNK].
// Text must be UTF-8; invalid UTF-8 is an error (its byte offset is named).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace vb {

// Steps 1–6: the words WordPiece then splits. Special tokens come out whole and untouched.
std::vector<std::string> bert_pre_tokenize(std::string_view text, bool lower_case);

// One encoded sequence (or pair), ready for BertModel: all three have the same length.
struct Encoding {
  std::vector<int64_t> ids;
  std::vector<int64_t> token_type_ids;  // 0 up to and including the first [SEP], 1 after
  std::vector<int64_t> attention_mask;  // 1 for tokens, 0 for padding
};

struct EncodeOptions {
  bool add_special = true;  // [CLS] A [SEP] (B [SEP])
  int64_t max_length = 0;   // truncate to this many tokens, specials included (0: no limit); pairs longest-first
  int64_t pad_to = 0;       // then pad with [PAD] up to this length (0: no padding)
};

class WordPieceTokenizer {
 public:
  static constexpr int64_t kMaxCharsPerWord = 100;

  // vocab.txt: one token per line, id = line number (0-based). Empty or duplicate tokens, and a missing
  // [PAD]/[UNK]/[CLS]/[SEP]/[MASK], are errors naming the file and line. lower_case: an uncased vocabulary.
  static WordPieceTokenizer load(const std::string& vocab_path, bool lower_case = true);
  // The same checks on an in-memory vocabulary; `source` names it in errors.
  explicit WordPieceTokenizer(std::vector<std::string> vocab, bool lower_case = true,
                              std::string source = "vocabulary");

  std::vector<std::string> tokenize(std::string_view text) const;
  std::vector<int64_t> encode(std::string_view text, bool add_special = true) const;
  Encoding encode(std::string_view text, const EncodeOptions& options) const;
  Encoding encode_pair(std::string_view first, std::string_view second, const EncodeOptions& options = {}) const;
  // Pads `e` on the right with [PAD] (token type 0, mask 0) up to `length`; longer encodings are left alone.
  void pad(Encoding& e, int64_t length) const;

  // As BertTokenizer.decode: tokens joined by spaces, " ##" removed, then (clean_up_spaces, HF's default)
  // " ." " ?" " !" " ," " ' " " n't" " 'm" " 's" " 've" " 're" closed up. An id outside the vocabulary is an error.
  std::string decode(const std::vector<int64_t>& ids, bool skip_special = false, bool clean_up_spaces = true) const;

  int64_t token_to_id(std::string_view token) const;  // [UNK]'s id for a token not in the vocabulary
  bool contains(std::string_view token) const;
  const std::string& id_to_token(int64_t id) const;
  int64_t vocab_size() const { return static_cast<int64_t>(vocab_.size()); }
  bool lower_case() const { return lower_case_; }
  bool is_special(int64_t id) const;

  int64_t pad_id() const { return pad_id_; }
  int64_t unk_id() const { return unk_id_; }
  int64_t cls_id() const { return cls_id_; }
  int64_t sep_id() const { return sep_id_; }
  int64_t mask_id() const { return mask_id_; }

 private:
  void wordpiece(const std::string& word, std::vector<std::string>& out) const;
  std::vector<int64_t> ids_of(std::string_view text) const;
  Encoding assemble(std::vector<int64_t> a, const std::vector<int64_t>* b, const EncodeOptions& options) const;

  std::vector<std::string> vocab_;
  std::unordered_map<std::string, int64_t> ids_;
  bool lower_case_ = true;
  int64_t pad_id_ = 0, unk_id_ = 0, cls_id_ = 0, sep_id_ = 0, mask_id_ = 0;
};

}  // namespace vb
