// `videobert embed` (a split's clips into an embedding index) and `videobert similar` (the clips nearest to a
// clip or a sentence, or the offline evaluation of video → video recommendations): train/recommend.h.
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>

#include "tensor/atomic_file.h"
#include "train/cli/commands.h"
#include "train/data/manifest.h"
#include "train/pretrain.h"
#include "train/recommend.h"

namespace vb::cli {

namespace {

void add_embed(CLI::App& app) {
  struct Args {
    train::EmbedOptions options;
    std::string out;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("embed", "Embed a split's clips (video, and text where the model has a shared space) "
                                          "into an index for videobert similar");
  cmd->add_option("--run", a->options.run_dir, "The run folder")->required();
  cmd->add_option("--data", a->options.data_dir, "The dataset folder (manifest.jsonl, vocab.txt)")->required();
  cmd->add_option("--out", a->out, "The index file to write (safetensors)")->required();
  cmd->add_option("--split", a->options.split, "test, val, train or all")
      ->check(CLI::IsMember({"test", "val", "train", "all"}));
  cmd->add_option("--device", a->options.device, "auto, cpu, cuda or emu");
  cmd->add_option("--batch-size", a->options.batch_size, "Clips per forward pass")->check(CLI::PositiveNumber);
  cmd->callback([a] {
    const train::EmbeddingIndex index = train::embed_clips(a->options);
    train::save_index(a->out, index);
    const std::string which = a->options.split == "all" ? "of every split" : "of the " + a->options.split + " split";
    std::printf("embedded %lld clips %s: %s (%s, %s), %lld dimensions%s\n", static_cast<long long>(index.size()),
                which.c_str(), a->out.c_str(),
                index.meta("model").c_str(), index.meta("embedding").c_str(),
                static_cast<long long>(index.video.size(1)),
                index.text_search() ? "; video and text: videobert similar --video ID or --text \"…\""
                                    : "; video only (the model has no text–video space): videobert similar --video ID");
  });
}

void add_similar(CLI::App& app) {
  struct Args {
    std::string index, video, text, data, run, device = "auto", json;
    int64_t k = 10;
    int min_shared = 0;
    bool evaluate = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("similar", "The clips of an index nearest to a clip (--video) or a sentence (--text), "
                                            "or an offline evaluation of the recommendations (--evaluate)");
  cmd->add_option("--index", a->index, "The index written by videobert embed")->required();
  auto* video = cmd->add_option("--video", a->video, "Recommend clips like this clip id (the clip itself excluded)");
  auto* text = cmd->add_option("--text", a->text, "Search the clips by this sentence (models with a shared space)");
  auto* evaluate = cmd->add_flag("--evaluate", a->evaluate,
                                 "Every clip as a query: P@K and nDCG@K with relevance derived from the manifest's "
                                 "attributes, beside random and attribute-oracle rankings (needs --data)");
  video->excludes(text)->excludes(evaluate);
  text->excludes(evaluate);
  cmd->add_option("--k", a->k, "How many clips")->check(CLI::PositiveNumber);
  cmd->add_option("--data", a->data,
                  "The dataset folder: captions beside the results, the attributes for --evaluate, and the "
                  "vocabulary for --text when not the one the index recorded");
  cmd->add_option("--run", a->run, "For --text: the run folder, when not the one the index recorded");
  cmd->add_option("--device", a->device, "auto, cpu, cuda or emu");
  cmd->add_option("--min-shared", a->min_shared,
                  "For --evaluate: shared attributes that make a clip relevant for P@K (default: half the "
                  "attribute keys, rounded up)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--json", a->json, "For --evaluate: also write the metrics to this JSON file");
  cmd->callback([a, video, text, evaluate] {
    VB_CHECK(video->count() + text->count() + evaluate->count() == 1,
             "similar: give one of --video ID, --text \"…\" or --evaluate");
    const Device device = train::resolve_device(a->device);
    const train::EmbeddingIndex index = train::load_index(a->index);
    if (a->evaluate) {
      VB_CHECK(!a->data.empty(), "similar --evaluate: needs --data, the dataset whose manifest holds the attributes");
      const train::RecommendationEval e =
          train::evaluate_recommendations(index, data::load_manifest(a->data), a->k, a->min_shared, device);
      std::printf("%s", train::format_recommendation_eval(e).c_str());
      if (!a->json.empty()) write_text_atomic(a->json, e.to_json().dump(2) + "\n");
      return;
    }
    // The query first, so that an unknown clip id fails before the manifest is read.
    const int64_t exclude = a->video.empty() ? -1 : index.row(a->video);
    std::map<std::string, std::string> captions;
    if (!a->data.empty())
      for (const data::Clip& c : data::load_manifest(a->data).clips) captions[c.id] = c.captions.front();
    auto caption = [&](const std::string& id) {
      auto it = captions.find(id);
      return it == captions.end() ? std::string() : it->second;
    };
    const Tensor items = to(index.video, device);
    Tensor query;
    if (exclude >= 0) {
      query = narrow(items, 0, exclude, 1);
      const std::string c = caption(a->video);
      std::printf("clips like %s%s (video → video, %s embedding of a %s run; %lld clips)\n", a->video.c_str(),
                  c.empty() ? "" : (" \"" + c + "\"").c_str(), index.meta("embedding").c_str(),
                  index.meta("model").c_str(), static_cast<long long>(index.size()));
    } else {
      query = train::text_query(index, a->text, a->run, a->data, device);
      std::printf("clips matching \"%s\" (text → video, %s embedding of a %s run; %lld clips)\n", a->text.c_str(),
                  index.meta("embedding").c_str(), index.meta("model").c_str(), static_cast<long long>(index.size()));
    }
    const std::vector<train::Hit> hits = train::search(query, items, a->k, {exclude}).front();
    std::printf("%5s  %-24s %8s  %s\n", "rank", "clip", "score", captions.empty() ? "" : "caption");
    for (size_t r = 0; r < hits.size(); ++r) {
      const std::string& id = index.clip_ids[size_t(hits[r].row)];
      std::printf("%5zu  %-24s %8.4f  %s\n", r + 1, id.c_str(), double(hits[r].score), caption(id).c_str());
    }
  });
}

}  // namespace

void add_recommend(CLI::App& app) {
  add_embed(app);
  add_similar(app);
}

}  // namespace vb::cli
