// `videobert tokenize` (text → WordPiece ids, one line in, one line out) and `videobert vocab build`.
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "models/tokenizer.h"
#include "models/vocab_builder.h"
#include "tensor/error.h"
#include "train/cli/commands.h"

namespace vb::cli {

void add_tokenize(CLI::App& app) {
  struct Args {
    std::string vocab;
    bool cased = false;
    bool special = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("tokenize", "Read lines from stdin, write each line's WordPiece token ids");
  cmd->add_option("--vocab", args->vocab, "vocab.txt, one token per line")->required();
  cmd->add_flag("--cased", args->cased, "The vocabulary is cased: no lower-casing or accent stripping");
  cmd->add_flag("--special", args->special, "Wrap each line in [CLS] ... [SEP]");
  cmd->callback([args] {
    WordPieceTokenizer tok = WordPieceTokenizer::load(args->vocab, !args->cased);
    std::string line, out;
    for (int64_t line_no = 1; std::getline(std::cin, line); ++line_no) {
      std::vector<int64_t> ids;
      try {
        ids = tok.encode(line, args->special);
      } catch (const Error& e) {
        fail("tokenize: stdin line {}: {}", line_no, e.what());
      }
      out.clear();
      for (size_t i = 0; i < ids.size(); ++i) {
        if (i > 0) out += ' ';
        out += std::to_string(ids[i]);
      }
      out += '\n';
      std::fwrite(out.data(), 1, out.size(), stdout);
    }
    VB_CHECK(!std::cin.bad(), "tokenize: error while reading stdin");
    VB_CHECK(std::fflush(stdout) == 0, "tokenize: error while writing stdout");
  });
}

void add_vocab(CLI::App& app) {
  struct Args {
    std::vector<std::string> corpus;
    std::string out;
    VocabBuildOptions options;
    bool cased = false;
  };
  auto args = std::make_shared<Args>();
  auto* vocab = app.add_subcommand("vocab", "WordPiece vocabularies");
  vocab->require_subcommand(1);
  auto* build = vocab->add_subcommand("build", "Train a WordPiece vocabulary (vocab.txt) from text files");
  build->add_option("--corpus", args->corpus, "UTF-8 text file (repeat for several)")->required();
  build->add_option("--out", args->out, "Where to write vocab.txt")->required();
  build->add_option("--size", args->options.vocab_size, "Vocabulary size, specials and alphabet included")
      ->check(CLI::PositiveNumber);
  build->add_option("--min-frequency", args->options.min_frequency, "Merge only pairs seen at least this often")
      ->check(CLI::NonNegativeNumber);
  build->add_flag("--cased", args->cased, "Keep case and accents");
  build->callback([args] {
    args->options.lower_case = !args->cased;
    std::vector<std::string> tokens = build_wordpiece_vocab(args->corpus, args->options);
    write_vocab(tokens, args->out);
    std::printf("wrote %zu tokens to %s\n", tokens.size(), args->out.c_str());
  });
}

}  // namespace vb::cli
