// Each `videobert` subcommand lives in its own file and registers itself on the app here.
#pragma once
#include <CLI/CLI.hpp>

namespace vb::cli {

void add_info(CLI::App& app);
void add_demo(CLI::App& app);
void add_tokenize(CLI::App& app);
void add_vocab(CLI::App& app);
void add_data(CLI::App& app);
void add_pretrain(CLI::App& app);
void add_eval(CLI::App& app);
void add_finetune(CLI::App& app);
void add_inspect(CLI::App& app);
void add_extract(CLI::App& app);
void add_export(CLI::App& app);
void add_visual_vocab(CLI::App& app);
void add_recommend(CLI::App& app);  // embed, similar
void add_kernels(CLI::App& app);

}  // namespace vb::cli
