// BERT's WordPiece tokenizer; the rules are listed in tokenizer.h. utf8proc gives the Unicode categories,
// NFC/NFD and lower-casing. Text is handled as UTF-32 between the steps, UTF-8 at the edges.
#include "models/tokenizer.h"

#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <fstream>
#include <memory>

#include "tensor/error.h"

namespace vb {
namespace {

constexpr std::array<std::string_view, 5> kSpecialTokens = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

std::u32string decode_utf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
  size_t i = 0;
  while (i < s.size()) {
    utf8proc_int32_t cp = 0;
    utf8proc_ssize_t n = utf8proc_iterate(p + i, static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
    if (n <= 0 || cp < 0) fail("tokenizer: invalid UTF-8 at byte {} of the text", i);
    out.push_back(static_cast<char32_t>(cp));
    i += static_cast<size_t>(n);
  }
  return out;
}

void append_utf8(std::string& out, char32_t c) {
  utf8proc_uint8_t buf[4];
  utf8proc_ssize_t n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(c), buf);
  out.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
}

std::string encode_utf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) append_utf8(out, c);
  return out;
}

// NFC or NFD of valid code points (never fails on them; a failure is a bug in the caller).
std::u32string normalize(std::u32string_view s, bool compose) {
  if (s.empty()) return {};
  std::string utf8 = encode_utf8(s);
  utf8proc_uint8_t* dst = nullptr;
  auto options = static_cast<utf8proc_option_t>(UTF8PROC_STABLE | (compose ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE));
  utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(utf8.data()),
                                    static_cast<utf8proc_ssize_t>(utf8.size()), &dst, options);
  if (n < 0) fail("tokenizer: Unicode normalisation failed: {}", utf8proc_errmsg(n));
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owned(dst, &std::free);
  return decode_utf8(std::string_view(reinterpret_cast<const char*>(dst), static_cast<size_t>(n)));
}

utf8proc_category_t category(char32_t c) { return utf8proc_category(static_cast<utf8proc_int32_t>(c)); }

// Python's _is_control: every category C* (Cc, Cf, Cs, Co, Cn) except \t \n \r.
bool is_control(char32_t c) {
  if (c == U'\t' || c == U'\n' || c == U'\r') return false;
  switch (category(c)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
      return true;
    default:
      return false;
  }
}

bool is_bert_whitespace(char32_t c) {
  return c == U' ' || c == U'\t' || c == U'\n' || c == U'\r' || category(c) == UTF8PROC_CATEGORY_ZS;
}

// Python's str.isspace, which str.split() splits on: after cleaning only ' ', U+2028 and U+2029 can remain.
bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0x2028 || c == 0x2029 ||
         category(c) == UTF8PROC_CATEGORY_ZS;
}

bool is_punctuation(char32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) return true;
  switch (category(c)) {
    case UTF8PROC_CATEGORY_PC:
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
      return true;
    default:
      return false;
  }
}

bool is_cjk(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

// Unicode's Cased and Case_Ignorable properties, as Python's final-sigma rule uses them.
bool is_cased(char32_t c) {
  auto cat = category(c);
  auto cp = static_cast<utf8proc_int32_t>(c);
  return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT ||
         utf8proc_islower(cp) || utf8proc_isupper(cp);
}

bool is_case_ignorable(char32_t c) {
  switch (c) {  // Word_Break MidLetter, MidNumLet and Single_Quote
    case 0x27: case 0x2E: case 0x3A: case 0xB7: case 0x387: case 0x55F: case 0x5F4: case 0x2018: case 0x2019:
    case 0x2024: case 0x2027: case 0xFE13: case 0xFE52: case 0xFE55: case 0xFF07: case 0xFF0E: case 0xFF1A:
      return true;
    default:
      break;
  }
  auto cat = category(c);
  return cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_ME || cat == UTF8PROC_CATEGORY_CF ||
         cat == UTF8PROC_CATEGORY_LM || cat == UTF8PROC_CATEGORY_SK;
}

// Python's str.lower: the full mapping (U+0130 → "i̇") and the final-sigma context for U+03A3.
std::u32string python_lower(const std::u32string& s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char32_t c = s[i];
    if (c == 0x130) {
      out += U"i\u0307";
    } else if (c == 0x3A3) {
      // Final when a cased letter precedes it and none follows (case-ignorable characters skipped both ways).
      size_t j = i;
      while (j > 0 && is_case_ignorable(s[j - 1])) --j;
      bool final_sigma = j > 0 && is_cased(s[j - 1]);
      size_t k = i + 1;
      while (k < s.size() && is_case_ignorable(s[k])) ++k;
      if (k < s.size() && is_cased(s[k])) final_sigma = false;
      out.push_back(final_sigma ? char32_t{0x3C2} : char32_t{0x3C3});
    } else {
      out.push_back(static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))));
    }
  }
  return out;
}

std::u32string strip_accents(const std::u32string& s) {
  std::u32string out;
  for (char32_t c : normalize(s, /*compose=*/false))
    if (category(c) != UTF8PROC_CATEGORY_MN) out.push_back(c);
  return out;
}

bool is_special_token(std::string_view s) {
  for (auto t : kSpecialTokens)
    if (s == t) return true;
  return false;
}

// Splits `text` around the special tokens written in it (leftmost match), as Hugging Face's added-token trie does.
// Each piece is {text, is_special}.
std::vector<std::pair<std::string_view, bool>> split_special(std::string_view text) {
  std::vector<std::pair<std::string_view, bool>> pieces;
  size_t start = 0, i = 0;
  while ((i = text.find('[', i)) != std::string_view::npos) {
    std::string_view found;
    for (auto t : kSpecialTokens)
      if (text.substr(i, t.size()) == t) found = t;
    if (found.empty()) {
      ++i;
      continue;
    }
    if (i > start) pieces.emplace_back(text.substr(start, i - start), false);
    pieces.emplace_back(found, true);
    i += found.size();
    start = i;
  }
  if (start < text.size()) pieces.emplace_back(text.substr(start), false);
  return pieces;
}

// BasicTokenizer.tokenize on text without special tokens in it (they were split out already); appends the words.
void basic_tokenize(std::string_view text, bool lower_case, std::vector<std::string>& words) {
  std::u32string cleaned;
  cleaned.reserve(text.size());
  for (char32_t c : decode_utf8(text)) {
    if (c == 0 || c == 0xFFFD || is_control(c)) continue;
    if (is_bert_whitespace(c)) {
      cleaned.push_back(U' ');
    } else if (is_cjk(c)) {
      cleaned.push_back(U' ');
      cleaned.push_back(c);
      cleaned.push_back(U' ');
    } else {
      cleaned.push_back(c);
    }
  }
  std::u32string nfc = normalize(cleaned, /*compose=*/true);

  auto emit = [&](std::u32string_view word) {
    if (!word.empty()) words.push_back(encode_utf8(word));
  };
  size_t i = 0;
  while (i < nfc.size()) {
    while (i < nfc.size() && is_python_space(nfc[i])) ++i;
    size_t end = i;
    while (end < nfc.size() && !is_python_space(nfc[end])) ++end;
    if (end == i) break;
    std::u32string token = nfc.substr(i, end - i);
    i = end;
    // A special token that only appears after cleaning (e.g. "[CL\0S]") is kept whole, as never_split does.
    if (is_special_token(encode_utf8(token))) {
      emit(token);
      continue;
    }
    if (lower_case) token = strip_accents(python_lower(token));
    // Punctuation split; the final whitespace split of BasicTokenizer also runs here.
    size_t word_start = 0;
    for (size_t k = 0; k <= token.size(); ++k) {
      if (k == token.size() || is_python_space(token[k])) {
        emit(std::u32string_view(token).substr(word_start, k - word_start));
        word_start = k + 1;
      } else if (is_punctuation(token[k])) {
        emit(std::u32string_view(token).substr(word_start, k - word_start));
        emit(std::u32string_view(token).substr(k, 1));
        word_start = k + 1;
      }
    }
  }
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  std::string out;
  size_t pos = 0, hit;
  while ((hit = s.find(from, pos)) != std::string::npos) {
    out.append(s, pos, hit - pos);
    out.append(to);
    pos = hit + from.size();
  }
  out.append(s, pos, std::string::npos);
  s = std::move(out);
}

}  // namespace

std::vector<std::string> bert_pre_tokenize(std::string_view text, bool lower_case) {
  std::vector<std::string> words;
  for (auto [piece, special] : split_special(text)) {
    if (special)
      words.emplace_back(piece);
    else
      basic_tokenize(piece, lower_case, words);
  }
  return words;
}

WordPieceTokenizer WordPieceTokenizer::load(const std::string& vocab_path, bool lower_case) {
  std::ifstream in(vocab_path, std::ios::binary);
  VB_CHECK(in, "tokenizer: cannot open the vocabulary file '{}'", vocab_path);
  std::vector<std::string> vocab;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();  // a vocabulary saved with CRLF line ends
    vocab.push_back(std::move(line));
  }
  VB_CHECK(!in.bad(), "tokenizer: error while reading the vocabulary file '{}'", vocab_path);
  return WordPieceTokenizer(std::move(vocab), lower_case, vocab_path);
}

WordPieceTokenizer::WordPieceTokenizer(std::vector<std::string> vocab, bool lower_case, std::string source)
    : vocab_(std::move(vocab)), lower_case_(lower_case) {
  VB_CHECK(!vocab_.empty(), "tokenizer: the vocabulary '{}' is empty", source);
  ids_.reserve(vocab_.size());
  for (size_t i = 0; i < vocab_.size(); ++i) {
    const std::string& token = vocab_[i];
    VB_CHECK(!token.empty(), "tokenizer: {} line {}: empty token (one token per line, no blank lines)", source, i + 1);
    VB_CHECK(token.find('\n') == std::string::npos, "tokenizer: {} entry {}: a token cannot contain a newline",
             source, i + 1);
    auto [it, inserted] = ids_.emplace(token, static_cast<int64_t>(i));
    VB_CHECK(inserted, "tokenizer: {} line {}: duplicate token '{}' (first on line {})", source, i + 1, token,
             it->second + 1);
  }
  auto require = [&](std::string_view t) {
    auto it = ids_.find(std::string(t));
    VB_CHECK(it != ids_.end(), "tokenizer: the vocabulary '{}' has no {} token (a BERT vocabulary needs {})", source,
             t, fmt::join(kSpecialTokens, " "));
    return it->second;
  };
  pad_id_ = require("[PAD]");
  unk_id_ = require("[UNK]");
  cls_id_ = require("[CLS]");
  sep_id_ = require("[SEP]");
  mask_id_ = require("[MASK]");
}

// WordpieceTokenizer.tokenize on one word: greedy longest match first.
void WordPieceTokenizer::wordpiece(const std::string& word, std::vector<std::string>& out) const {
  if (is_special_token(word)) {  // in every vocabulary (the constructor checks)
    out.push_back(word);
    return;
  }
  // Byte offset of each code point, plus the end.
  std::vector<size_t> offsets;
  for (size_t i = 0; i < word.size(); ++i)
    if ((static_cast<unsigned char>(word[i]) & 0xC0) != 0x80) offsets.push_back(i);
  size_t n = offsets.size();
  offsets.push_back(word.size());
  if (static_cast<int64_t>(n) > kMaxCharsPerWord) {
    out.push_back(vocab_[unk_id_]);
    return;
  }
  size_t first = out.size();
  std::string piece;
  for (size_t start = 0; start < n;) {
    size_t end = n;
    bool found = false;
    for (; end > start; --end) {
      piece.assign(start > 0 ? "##" : "");
      piece.append(word, offsets[start], offsets[end] - offsets[start]);
      if (ids_.count(piece)) {
        found = true;
        break;
      }
    }
    if (!found) {
      out.resize(first);
      out.push_back(vocab_[unk_id_]);
      return;
    }
    out.push_back(piece);
    start = end;
  }
}

std::vector<std::string> WordPieceTokenizer::tokenize(std::string_view text) const {
  std::vector<std::string> tokens;
  for (const std::string& word : bert_pre_tokenize(text, lower_case_)) wordpiece(word, tokens);
  return tokens;
}

std::vector<int64_t> WordPieceTokenizer::ids_of(std::string_view text) const {
  std::vector<int64_t> ids;
  for (const std::string& t : tokenize(text)) ids.push_back(token_to_id(t));
  return ids;
}

std::vector<int64_t> WordPieceTokenizer::encode(std::string_view text, bool add_special) const {
  std::vector<int64_t> ids = ids_of(text);
  if (add_special) {
    ids.insert(ids.begin(), cls_id_);
    ids.push_back(sep_id_);
  }
  return ids;
}

Encoding WordPieceTokenizer::encode(std::string_view text, const EncodeOptions& options) const {
  return assemble(ids_of(text), nullptr, options);
}

Encoding WordPieceTokenizer::encode_pair(std::string_view first, std::string_view second,
                                         const EncodeOptions& options) const {
  std::vector<int64_t> b = ids_of(second);
  return assemble(ids_of(first), &b, options);
}

Encoding WordPieceTokenizer::assemble(std::vector<int64_t> a, const std::vector<int64_t>* b_in,
                                      const EncodeOptions& options) const {
  std::vector<int64_t> b = b_in ? *b_in : std::vector<int64_t>{};
  const int64_t num_special = options.add_special ? (b_in ? 3 : 2) : 0;
  VB_CHECK(options.max_length >= 0 && options.pad_to >= 0,
           "tokenizer: max_length ({}) and pad_to ({}) must be non-negative", options.max_length, options.pad_to);
  if (options.max_length > 0) {
    VB_CHECK(options.max_length >= num_special,
             "tokenizer: max_length {} leaves no room for the {} special tokens of a {}", options.max_length,
             num_special, b_in ? "pair" : "sequence");
    auto len_a = static_cast<int64_t>(a.size()), len_b = static_cast<int64_t>(b.size());
    int64_t remove = len_a + len_b + num_special - options.max_length;
    if (remove > 0) {
      // Longest first, as Hugging Face: even out the two lengths, then take the rest alternately (the second
      // sequence gives the odd one).
      int64_t first_remove = std::min(std::abs(len_b - len_a), remove);
      int64_t second_remove = remove - first_remove;
      int64_t from_a = 0, from_b = 0;
      if (!b_in) {
        from_a = remove;
      } else if (len_a > len_b) {
        from_a = first_remove + second_remove / 2;
        from_b = second_remove - second_remove / 2;
      } else {
        from_a = second_remove / 2;
        from_b = first_remove + second_remove - second_remove / 2;
      }
      a.resize(static_cast<size_t>(std::max<int64_t>(0, len_a - from_a)));
      b.resize(static_cast<size_t>(std::max<int64_t>(0, len_b - from_b)));
    }
  }
  Encoding e;
  if (options.add_special) e.ids.push_back(cls_id_);
  e.ids.insert(e.ids.end(), a.begin(), a.end());
  if (options.add_special) e.ids.push_back(sep_id_);
  e.token_type_ids.assign(e.ids.size(), 0);
  if (b_in) {
    e.ids.insert(e.ids.end(), b.begin(), b.end());
    if (options.add_special) e.ids.push_back(sep_id_);
    e.token_type_ids.resize(e.ids.size(), 1);
  }
  e.attention_mask.assign(e.ids.size(), 1);
  if (options.pad_to > 0) pad(e, options.pad_to);
  return e;
}

void WordPieceTokenizer::pad(Encoding& e, int64_t length) const {
  VB_CHECK(e.ids.size() == e.token_type_ids.size() && e.ids.size() == e.attention_mask.size(),
           "tokenizer: pad: ids, token_type_ids and attention_mask have different lengths ({}, {}, {})", e.ids.size(),
           e.token_type_ids.size(), e.attention_mask.size());
  auto n = static_cast<size_t>(std::max<int64_t>(length, 0));
  if (e.ids.size() >= n) return;
  e.ids.resize(n, pad_id_);
  e.token_type_ids.resize(n, 0);
  e.attention_mask.resize(n, 0);
}

std::string WordPieceTokenizer::decode(const std::vector<int64_t>& ids, bool skip_special,
                                       bool clean_up_spaces) const {
  std::string text;
  bool first = true;
  for (int64_t id : ids) {
    const std::string& token = id_to_token(id);
    if (skip_special && is_special(id)) continue;
    if (!first) text += ' ';
    text += token;
    first = false;
  }
  replace_all(text, " ##", "");
  // Python's str.strip(): every whitespace code point at both ends.
  std::u32string u = decode_utf8(text);
  size_t b = 0, e = u.size();
  while (b < e && is_python_space(u[b])) ++b;
  while (e > b && is_python_space(u[e - 1])) --e;
  text = encode_utf8(std::u32string_view(u).substr(b, e - b));
  if (clean_up_spaces) {
    for (auto [from, to] : {std::pair<std::string_view, std::string_view>{" .", "."}, {" ?", "?"}, {" !", "!"},
                            {" ,", ","}, {" ' ", "'"}, {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"},
                            {" 've", "'ve"}, {" 're", "'re"}})
      replace_all(text, from, to);
  }
  return text;
}

int64_t WordPieceTokenizer::token_to_id(std::string_view token) const {
  auto it = ids_.find(std::string(token));
  return it == ids_.end() ? unk_id_ : it->second;
}

bool WordPieceTokenizer::contains(std::string_view token) const { return ids_.count(std::string(token)) > 0; }

const std::string& WordPieceTokenizer::id_to_token(int64_t id) const {
  VB_CHECK(id >= 0 && id < vocab_size(), "tokenizer: token id {} is outside the vocabulary (size {})", id,
           vocab_size());
  return vocab_[static_cast<size_t>(id)];
}

bool WordPieceTokenizer::is_special(int64_t id) const {
  return id == pad_id_ || id == unk_id_ || id == cls_id_ || id == sep_id_ || id == mask_id_;
}

}  // namespace vb
