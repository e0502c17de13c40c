// WordPiece tokenizer and vocabulary builder: every rule on vocabularies written by the test, plus the outputs of
// Hugging Face's slow BertTokenizer on tricky strings (tests/golden/tokenizer_cases.json, made by
// tests/golden/make_tokenizer_fixtures.py).
#include "models/tokenizer.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "models/vocab_builder.h"
#include "tests/support/check.h"

namespace fs = std::filesystem;
using vb::Encoding;
using vb::EncodeOptions;
using vb::WordPieceTokenizer;
using Strings = std::vector<std::string>;
using Ids = std::vector<int64_t>;

namespace {

// A fresh folder under the system temp folder, removed with the object.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() / ("vb_tokenizer_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

std::string write_file(const TempDir& dir, const std::string& name, const std::string& text) {
  std::string p = dir.file(name);
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

std::string vocab_text(const Strings& tokens) {
  std::string text;
  for (const auto& t : tokens) text += t + "\n";
  return text;
}

// ids 0..4 are the specials; then a few letters, continuations and words.
const Strings kVocab = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
                        "a", "b", "c", "e", "h", "l", "o", "w", "r", "d", "x", "y", "z", "s", "t", "n",
                        "##a", "##b", "##c", "##e", "##l", "##o", "##r", "##d", "##s", "##t", "##n",
                        "hello", "world", "un", "##aff", "##able", "play", "##ing", "the", "Hello", "é", "##é",
                        ",", "!", ".", "?", "'", "¿", "—", "。", "中", "国", "café", "cafe", "naive", "ο", "δ", "##ο",
                        "##δ", "##ς", "##σ", "[", "]"};

WordPieceTokenizer make(bool lower_case = true) { return WordPieceTokenizer(kVocab, lower_case, "test vocab"); }

Strings tok(const WordPieceTokenizer& t, std::string_view text) { return t.tokenize(text); }

void check_throws_with(const std::function<void()>& f, const Strings& words) {
  try {
    f();
    FAIL("expected vb::Error mentioning " << words.front());
  } catch (const vb::Error& e) {
    std::string msg = e.what();
    for (const auto& w : words) CHECK_MESSAGE(msg.find(w) != std::string::npos, msg, " lacks '", w, "'");
  }
}

}  // namespace

TEST_CASE("tokenizer: text cleaning drops NUL, U+FFFD and control characters; tabs and newlines split") {
  auto t = make();
  CHECK(tok(t, std::string("he\0llo", 6)) == Strings{"hello"});
  CHECK(tok(t, "he\xEF\xBF\xBDllo") == Strings{"hello"});        // U+FFFD
  CHECK(tok(t, "he\x07ll\xC2\xADo") == Strings{"hello"});        // BEL (Cc), soft hyphen (Cf)
  CHECK(tok(t, "hello\tworld\nthe\rhello") == Strings{"hello", "world", "the", "hello"});
  CHECK(tok(t, "hello\xC2\xA0world\xE3\x80\x80the") == Strings{"hello", "world", "the"});  // NBSP, ideographic space
  CHECK(tok(t, "hello\xE2\x80\xA8world") == Strings{"hello", "world"});                     // U+2028 splits as well
  CHECK(tok(t, "").empty());
  CHECK(tok(t, " \t\n ").empty());
}

TEST_CASE("tokenizer: CJK ideographs are split out, punctuation split (ASCII and Unicode)") {
  auto t = make();
  CHECK(tok(t, "中国hello") == Strings{"中", "国", "hello"});
  CHECK(tok(t, "hello,world!") == Strings{"hello", ",", "world", "!"});
  CHECK(tok(t, "¿hello—world。") == Strings{"¿", "hello", "—", "world", "。"});
  CHECK(tok(t, "[hello]") == Strings{"[", "hello", "]"});
  CHECK(tok(t, "$") == Strings{"[UNK]"});  // punctuation by the ASCII rule, but not in this vocabulary
}

TEST_CASE("tokenizer: uncased lower-cases and strips accents, cased keeps both") {
  auto uncased = make(true), cased = make(false);
  CHECK(tok(uncased, "Héllo WORLD") == Strings{"hello", "world"});
  CHECK(tok(uncased, "Cafe\xCC\x81 NAÏVE") == Strings{"cafe", "naive"});  // combining acute, then Ï
  CHECK(tok(cased, "Hello") == Strings{"Hello"});
  CHECK(tok(cased, "café") == Strings{"café"});
  CHECK(tok(cased, "cafe\xCC\x81") == Strings{"café"});  // NFC composes e + U+0301 first
  CHECK(tok(cased, "Héllo") == Strings{"[UNK]"});         // no "H" in this vocabulary
  CHECK(tok(uncased, "ΟΔΟΣ") == Strings{"ο", "##δ", "##ο", "##ς"});  // final sigma, as Python's str.lower
  CHECK(tok(uncased, "ΟΔΟΣΟ") == Strings{"ο", "##δ", "##ο", "##σ", "##ο"});
}

TEST_CASE("tokenizer: WordPiece continuations, [UNK] for unmatchable and over-long words") {
  auto t = make();
  CHECK(tok(t, "unaffable playing") == Strings{"un", "##aff", "##able", "play", "##ing"});
  CHECK(tok(t, "helloworld") == Strings{"[UNK]"});  // "hello" matches, then nothing starts "##w"
  CHECK(tok(t, "hellos") == Strings{"hello", "##s"});
  CHECK(tok(t, "qhello") == Strings{"[UNK]"});  // no piece starts with q: the whole word is [UNK]
  CHECK(tok(t, "hellq world") == Strings{"[UNK]", "world"});
  std::string a100(100, 'a'), a101(101, 'a');
  CHECK(tok(t, a100).size() == 100);
  CHECK(tok(t, a101) == Strings{"[UNK]"});
  std::string e101;  // 101 code points but 202 bytes: the limit counts characters
  for (int i = 0; i < 101; ++i) e101 += "é";
  CHECK(tok(make(false), e101) == Strings{"[UNK]"});
  CHECK(tok(make(false), e101.substr(2)).size() == 100);
}

TEST_CASE("tokenizer: special tokens in the text are kept whole, never lower-cased or split") {
  auto t = make();
  CHECK(tok(t, "[CLS] hello [SEP] world [MASK]") == Strings{"[CLS]", "hello", "[SEP]", "world", "[MASK]"});
  CHECK(tok(t, "hello[SEP]world[PAD][UNK]") == Strings{"hello", "[SEP]", "world", "[PAD]", "[UNK]"});
  CHECK(tok(t, "[cls]") == Strings{"[", "c", "##l", "##s", "]"});  // case matters: "[cls]" is ordinary text
  CHECK(t.encode("[MASK]", false) == Ids{4});
}

TEST_CASE("tokenizer: encode, pairs with token types, truncation longest first, padding with masks") {
  auto t = make();
  CHECK(t.encode("hello world") == Ids{2, 32, 33, 3});
  CHECK(t.encode("hello world", false) == Ids{32, 33});

  Encoding e = t.encode_pair("hello", "world the");
  CHECK(e.ids == Ids{2, 32, 3, 33, 39, 3});
  CHECK(e.token_type_ids == Ids{0, 0, 0, 1, 1, 1});
  CHECK(e.attention_mask == Ids{1, 1, 1, 1, 1, 1});

  // 4 + 2 tokens + 3 specials = 9 → 7: the longer first loses 2 (even), then none left.
  e = t.encode_pair("a b c d", "x y", {.max_length = 7});
  CHECK(e.ids == Ids{2, 5, 6, 3, 15, 16, 3});
  // 3 + 3 + 3 = 9 → 6: equal lengths, the second gives the odd one: first keeps 2, second 1.
  e = t.encode_pair("a b c", "x y z", {.max_length = 6});
  CHECK(e.ids == Ids{2, 5, 6, 3, 15, 3});
  CHECK(e.token_type_ids == Ids{0, 0, 0, 0, 1, 1});

  e = t.encode("a b c d", {.max_length = 4, .pad_to = 6});
  CHECK(e.ids == Ids{2, 5, 6, 3, 0, 0});
  CHECK(e.attention_mask == Ids{1, 1, 1, 1, 0, 0});
  CHECK(e.token_type_ids == Ids{0, 0, 0, 0, 0, 0});

  e = t.encode_pair("a", "b", {.pad_to = 7});
  CHECK(e.ids == Ids{2, 5, 3, 6, 3, 0, 0});
  CHECK(e.token_type_ids == Ids{0, 0, 0, 1, 1, 0, 0});
  CHECK(e.attention_mask == Ids{1, 1, 1, 1, 1, 0, 0});
  t.pad(e, 3);  // longer already: unchanged
  CHECK(e.ids.size() == 7);

  e = t.encode("a b", {.add_special = false});
  CHECK(e.ids == Ids{5, 6});

  check_throws_with([&] { t.encode_pair("a", "b", {.max_length = 2}); }, {"max_length", "special"});
}

TEST_CASE("tokenizer: decode joins pieces back and cleans up spaces as Hugging Face does") {
  auto t = make();
  Ids ids = t.encode("unaffable playing, hello!");
  CHECK(t.decode(ids) == "[CLS] unaffable playing, hello! [SEP]");
  CHECK(t.decode(ids, /*skip_special=*/true) == "unaffable playing, hello!");
  CHECK(t.decode(ids, true, /*clean_up_spaces=*/false) == "unaffable playing , hello !");
  CHECK(t.decode(t.encode("hello world", false)) == "hello world");
  CHECK(t.decode({}) == "");
  check_throws_with([&] { t.decode({5, 9999}); }, {"9999", "outside the vocabulary"});
  check_throws_with([&] { t.decode({-1}); }, {"-1"});
}

TEST_CASE("tokenizer: vocab.txt loading and its errors") {
  TempDir dir;
  auto t = WordPieceTokenizer::load(write_file(dir, "vocab.txt", vocab_text(kVocab)));
  CHECK(t.vocab_size() == static_cast<int64_t>(kVocab.size()));
  CHECK(t.pad_id() == 0);
  CHECK(t.unk_id() == 1);
  CHECK(t.cls_id() == 2);
  CHECK(t.sep_id() == 3);
  CHECK(t.mask_id() == 4);
  CHECK(t.token_to_id("hello") == 32);
  CHECK(t.token_to_id("nope") == t.unk_id());
  CHECK(t.id_to_token(33) == "world");
  CHECK(t.lower_case());

  // Specials anywhere, CRLF line ends.
  auto crlf = WordPieceTokenizer::load(write_file(dir, "crlf.txt", "a\r\n[UNK]\r\n[SEP]\r\n[PAD]\r\n[MASK]\r\n[CLS]\r\n"));
  CHECK(crlf.unk_id() == 1);
  CHECK(crlf.cls_id() == 5);
  CHECK(crlf.encode("a") == Ids{5, 0, 2});

  check_throws_with([&] { WordPieceTokenizer::load(dir.file("missing.txt")); }, {"missing.txt", "cannot open"});
  std::string empty_line = write_file(dir, "empty.txt", "[PAD]\n[UNK]\n\n[CLS]\n[SEP]\n[MASK]\n");
  check_throws_with([&] { WordPieceTokenizer::load(empty_line); }, {"empty.txt", "line 3", "empty"});
  std::string dup = write_file(dir, "dup.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nab\nc\nab\n");
  check_throws_with([&] { WordPieceTokenizer::load(dup); }, {"dup.txt", "line 8", "duplicate", "'ab'", "line 6"});
  std::string no_mask = write_file(dir, "nomask.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\na\n");
  check_throws_with([&] { WordPieceTokenizer::load(no_mask); }, {"nomask.txt", "[MASK]"});
  check_throws_with([&] { WordPieceTokenizer::load(write_file(dir, "zero.txt", "")); }, {"zero.txt", "empty"});
}

TEST_CASE("tokenizer: invalid UTF-8 is an error naming the byte") {
  auto t = make();
  check_throws_with([&] { t.tokenize("ab\xFF"); }, {"invalid UTF-8", "byte 2"});
  check_throws_with([&] { t.tokenize("\xED\xA0\x80"); }, {"invalid UTF-8"});  // an encoded surrogate
}

TEST_CASE("tokenizer: matches Hugging Face's slow BertTokenizer on tricky strings") {
  std::ifstream in(std::string(VB_SOURCE_DIR) + "/tests/golden/tokenizer_cases.json");
  REQUIRE_MESSAGE(in, "tests/golden/tokenizer_cases.json is missing");
  nlohmann::json golden = nlohmann::json::parse(in);
  TempDir dir;
  std::string path = write_file(dir, "vocab.txt", vocab_text(golden["vocab"].get<Strings>()));
  int checked = 0;
  for (const auto& mode : golden["modes"]) {
    bool lower = mode["lower_case"].get<bool>();
    auto t = WordPieceTokenizer::load(path, lower);
    for (const auto& c : mode["cases"]) {
      std::string text = c["text"].get<std::string>();
      INFO("lower_case=" << lower << " text=" << nlohmann::json(text).dump());
      CHECK(t.tokenize(text) == c["tokens"].get<Strings>());
      Ids ids = t.encode(text);
      CHECK(ids == c["ids"].get<Ids>());
      CHECK(t.decode(ids) == c["decoded"].get<std::string>());
      CHECK(t.decode(ids, true) == c["decoded_skip_special"].get<std::string>());
      ++checked;
    }
    for (const auto& p : mode["pairs"]) {
      INFO("lower_case=" << lower << " pair=" << p["first"].dump() << " / " << p["second"].dump());
      EncodeOptions opt{.max_length = p["max_length"].get<int64_t>(), .pad_to = p["pad_to"].get<int64_t>()};
      Encoding e = t.encode_pair(p["first"].get<std::string>(), p["second"].get<std::string>(), opt);
      CHECK(e.ids == p["ids"].get<Ids>());
      CHECK(e.token_type_ids == p["token_type_ids"].get<Ids>());
      CHECK(e.attention_mask == p["attention_mask"].get<Ids>());
      ++checked;
    }
  }
  CHECK(checked >= 60);
}

// ---- vocabulary builder ----

namespace {
const std::string kCorpus =
    "The cat sat on the mat. The cat ate the rat!\n"
    "A dog sat on the log; the dog ate the frog.\n"
    "Cats and dogs, rats and frogs: the cat, the dog.\n"
    "Über café naïve 中文 ¿qué?\n";
}

TEST_CASE("vocab builder: specials first, every character, frequent words whole, no [UNK] on its corpus") {
  TempDir dir;
  std::string corpus = write_file(dir, "corpus.txt", kCorpus);
  vb::VocabBuildOptions opt{.vocab_size = 120, .min_frequency = 2, .lower_case = true};
  Strings vocab = vb::build_wordpiece_vocab({corpus}, opt);
  REQUIRE(vocab.size() >= 5);
  CHECK(Strings(vocab.begin(), vocab.begin() + 5) == Strings{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"});
  CHECK(vocab.size() <= 120);
  std::set<std::string> all(vocab.begin(), vocab.end());
  CHECK(all.size() == vocab.size());  // no duplicates
  for (const char* c : {"t", "h", "e", "c", "a", "##h", "##e", "##t", ".", ";", ":", "!", ",", "?", "¿", "中", "文",
                        "u", "##b", "##e"})
    CHECK_MESSAGE(all.count(c), "missing ", c);
  CHECK_FALSE(all.count("Ü"));  // uncased: lower-cased and accents stripped
  for (const char* w : {"the", "cat", "dog"}) CHECK_MESSAGE(all.count(w), "frequent word missing: ", w);

  // Deterministic: the same corpus gives the same vocabulary, also when counted in another order.
  CHECK(vb::build_wordpiece_vocab({corpus}, opt) == vocab);
  vb::WordCounts counts;
  std::istringstream lines(kCorpus);
  Strings ls;
  for (std::string l; std::getline(lines, l);) ls.push_back(l);
  for (auto it = ls.rbegin(); it != ls.rend(); ++it) vb::count_words(*it, true, counts);
  CHECK(vb::train_wordpiece_vocab(counts, opt) == vocab);

  // Written atomically and loadable; the corpus tokenizes without [UNK].
  std::string out = dir.file("vocab.txt");
  vb::write_vocab(vocab, out);
  vb::write_vocab(vocab, out);  // over an existing file
  int leftovers = 0;
  for (const auto& entry : fs::directory_iterator(dir.path))
    if (entry.path().filename().string().find(".tmp") != std::string::npos) ++leftovers;
  CHECK(leftovers == 0);
  auto t = WordPieceTokenizer::load(out, true);
  CHECK(t.vocab_size() == static_cast<int64_t>(vocab.size()));
  std::istringstream again(kCorpus);
  for (std::string l; std::getline(again, l);) {
    for (int64_t id : t.encode(l, false)) CHECK_MESSAGE(id != t.unk_id(), l);
    CHECK(t.decode(t.encode(l, false)).size() > 0);
  }
}

TEST_CASE("vocab builder: merges by score count(ab)/(count(a)·count(b)), cased keeps case, limits hold") {
  // "ab" ×10 and "ac" ×3, "xy" ×2: score(x,##y) = 2/(2·2) = 0.5 beats score(a,##b) = 10/(13·10) ≈ 0.077.
  vb::WordCounts counts{{"ab", 10}, {"ac", 3}, {"xy", 2}};
  vb::VocabBuildOptions opt{.vocab_size = 14, .min_frequency = 2, .lower_case = true};
  Strings vocab = vb::train_wordpiece_vocab(counts, opt);
  Strings expected_start = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "x", "y", "##b", "##c", "##y"};
  REQUIRE(vocab.size() == 14);
  CHECK(Strings(vocab.begin(), vocab.begin() + 13) == expected_start);
  CHECK(vocab[13] == "xy");
  opt.vocab_size = 100;
  vocab = vb::train_wordpiece_vocab(counts, opt);
  CHECK(vocab == [&] {
    Strings v = expected_start;
    // After xy: score(a,##b) = 10/(13·10), score(a,##c) = 3/(13·3): equal, the higher count wins; then a##c.
    v.insert(v.end(), {"xy", "ab", "ac"});
    return v;
  }());
  // min_frequency: a pair seen once is never merged.
  opt.min_frequency = 3;
  vocab = vb::train_wordpiece_vocab(counts, opt);
  CHECK(std::find(vocab.begin(), vocab.end(), "xy") == vocab.end());
  // The alphabet is kept even when it alone exceeds the size.
  opt.vocab_size = 3;
  CHECK(vb::train_wordpiece_vocab(counts, opt).size() == 13);

  vb::WordCounts cased;
  vb::count_words("Über Über über", false, cased);
  CHECK(cased.at("Über") == 2);
  CHECK(cased.at("über") == 1);
  vb::WordCounts uncased;
  vb::count_words("Über Über über [CLS] [MASK]", true, uncased);
  CHECK(uncased.at("uber") == 3);
  CHECK(uncased.count("[CLS]") == 0);  // specials are in every vocabulary already

  check_throws_with([] { vb::build_wordpiece_vocab({"/nonexistent/corpus.txt"}, {}); },
                    {"/nonexistent/corpus.txt", "cannot open"});
  TempDir dir;
  std::string bad = write_file(dir, "bad.txt", "fine\nbad \xC3\x28 byte\n");
  check_throws_with([&] { vb::build_wordpiece_vocab({bad}, {}); }, {"bad.txt", "line 2", "invalid UTF-8"});
  check_throws_with([&] { vb::write_vocab({"a", "b\nc"}, dir.file("v.txt")); }, {"line break"});
  check_throws_with([&] { vb::write_vocab({"a"}, "/nonexistent/dir/v.txt"); }, {"/nonexistent/dir"});
}
