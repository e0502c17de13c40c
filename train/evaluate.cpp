#include "train/evaluate.h"

#include <set>

#include "train/data/synth.h"

namespace vb::train {

namespace {

// The prompt for one attribute value: the synthetic grammar's canonical words inside a neutral template.
std::string attribute_prompt(const std::string& attribute, const std::string& value) {
  const data::SynthGrammar& g = data::synth_grammar();
  auto first = [&](const std::map<std::string, std::vector<std::string>>& words) {
    auto it = words.find(value);
    return it == words.end() || it->second.empty() ? value : it->second.front();
  };
  if (attribute == "color") return "a " + value + " shape";
  if (attribute == "shape") return "a " + first(g.shape_words);
  if (attribute == "size") return "a " + first(g.size_words) + " shape";
  if (attribute == "motion") return "a shape that " + first(g.motion_phrases);
  return value;
}

// Zero-shot classification by filling a template's [MASK] slots, as VideoBERT does ("now let me show you
// how to [MASK] the [MASK]"): "[CLS] a [MASK] [MASK] [MASK] [SEP]" read with each clip, the canonical
// caption's order of size, colour and shape (train/data/synth.h), and each slot's word taken from the
// masked-LM head. fill_<attribute>: the slot's most probable word among the attribute's values (their
// words, one token each); fill_<attribute>_open: the most probable word of the whole vocabulary (the
// special tokens aside), right only when it is the value's own word. The single stream only.
void fill_template(Task& task, const WordPieceTokenizer& tok, const VideoSide& video,
                   const std::vector<std::map<std::string, std::string>>& attrs,
                   const std::map<std::string, std::set<std::string>>& values, const EvalOptions& o, nlohmann::json& m) {
  const std::vector<std::string> slots = {"size", "color", "shape"};  // template positions 2, 3, 4
  const int64_t t = std::max<int64_t>(o.max_length, 6);
  std::vector<int64_t> ids = {tok.cls_id(), tok.token_to_id("a"), tok.mask_id(), tok.mask_id(), tok.mask_id(), tok.sep_id()};
  std::vector<int64_t> mask(ids.size(), 1);
  ids.resize(size_t(t), tok.pad_id());
  mask.resize(size_t(t), 0);
  const int64_t n = int64_t(attrs.size());
  if (!video.features.defined() || n == 0 || !tok.contains("a")) return;
  // Per clip, per slot: the logits over the vocabulary, in chunks of 64 clips.
  std::vector<std::vector<std::vector<double>>> logits(static_cast<size_t>(n));  // [clip][slot] → V
  for (int64_t s = 0; s < n; s += 64) {
    const int64_t rows = std::min<int64_t>(64, n - s);
    std::vector<int64_t> rid, rmask;
    for (int64_t r = 0; r < rows; ++r) {
      rid.insert(rid.end(), ids.begin(), ids.end());
      rmask.insert(rmask.end(), mask.begin(), mask.end());
    }
    VideoSide part;
    part.features = narrow(video.features, 0, s, rows);
    auto l = task.text_mlm_logits(to(Tensor::from_vector(rid, {rows, t}), o.device),
                                  to(Tensor::from_vector(rmask, {rows, t}), o.device), part);
    if (!l) return;
    for (size_t k = 0; k < slots.size(); ++k) {
      const std::vector<double> v = to(select(*l, 1, int64_t(2 + k)), Device()).to_vector();  // (rows, V)
      const auto vocab = int64_t(v.size()) / rows;
      for (int64_t r = 0; r < rows; ++r)
        logits[size_t(s + r)].emplace_back(v.begin() + r * vocab, v.begin() + (r + 1) * vocab);
    }
  }
  const std::set<int64_t> special = {tok.pad_id(), tok.cls_id(), tok.sep_id(), tok.mask_id(), tok.unk_id()};
  for (size_t k = 0; k < slots.size(); ++k) {
    auto vit = values.find(slots[k]);
    if (vit == values.end() || vit->second.size() < 2) continue;
    std::vector<std::pair<std::string, int64_t>> candidates;  // value → its word's id
    for (const std::string& v : vit->second)
      if (tok.contains(v)) candidates.emplace_back(v, tok.token_to_id(v));
    if (candidates.size() != vit->second.size()) continue;  // a value that is not one token: no slot
    int64_t right = 0, open = 0, counted = 0;
    for (int64_t i = 0; i < n; ++i) {
      auto a = attrs[size_t(i)].find(slots[k]);
      if (a == attrs[size_t(i)].end()) continue;
      const std::vector<double>& l = logits[size_t(i)][k];
      size_t best = 0;
      for (size_t c = 1; c < candidates.size(); ++c)
        if (l[size_t(candidates[c].second)] > l[size_t(candidates[best].second)]) best = c;
      int64_t top = -1;
      for (int64_t w = 0; w < int64_t(l.size()); ++w)
        if (!special.count(w) && (top < 0 || l[size_t(w)] > l[size_t(top)])) top = w;
      right += candidates[best].first == a->second;
      open += top == tok.token_to_id(a->second);
      ++counted;
    }
    if (counted) {
      m["fill_" + slots[k]] = double(right) / double(counted);
      m["fill_" + slots[k] + "_chance"] = 1.0 / double(candidates.size());
      m["fill_" + slots[k] + "_open"] = double(open) / double(counted);
    }
  }
}

}  // namespace

nlohmann::json evaluate(Task& task, const data::Manifest& manifest, const WordPieceTokenizer& tokenizer,
                        const EvalOptions& o) {
  NoGradGuard no_grad;
  nn::Module& model = task.module();
  const bool was_training = model.is_training();
  model.eval();
  data::LoaderOptions lo;
  lo.split = o.split;
  lo.train = false;
  lo.shuffle = false;
  lo.frames = o.frames;
  lo.size = o.size;
  lo.max_length = o.max_length;
  lo.batch_size = o.batch_size;
  lo.workers = o.workers;
  lo.seed = o.seed;
  lo.quiet = true;
  data::DataLoader loader(manifest, tokenizer, lo);
  VB_CHECK(!loader.clips().empty(), "eval: the {} split of {} has no clips", data::split_name(o.split), manifest.path);

  // One caption (the first) and one clip per row, encoded once.
  std::vector<Tensor> text_emb, ids, masks, video_emb, features;
  std::vector<int64_t> clip_of_row;
  while (auto b = loader.next()) {
    data::Batch batch = data::to_device(*b, o.device);
    TextSide t = task.encode_text(batch.input_ids, batch.attention_mask);
    VideoSide v = task.encode_video(batch.frames);
    if (t.embedding.defined()) text_emb.push_back(t.embedding);
    if (t.ids.defined()) {
      ids.push_back(t.ids);
      masks.push_back(t.mask);
    }
    if (v.embedding.defined()) video_emb.push_back(v.embedding);
    if (v.features.defined()) features.push_back(v.features);
    for (double c : b->clip_index.to_vector()) clip_of_row.push_back(int64_t(c));
  }
  const int64_t n = int64_t(clip_of_row.size());
  VB_CHECK(n >= 2, "eval: {} readable clips in the {} split; retrieval needs at least 2", n, data::split_name(o.split));
  TextSide text;
  VideoSide video;
  if (!text_emb.empty()) text.embedding = cat(text_emb, 0);
  if (!ids.empty()) {
    text.ids = cat(ids, 0);
    text.mask = cat(masks, 0);
  }
  if (!video_emb.empty()) video.embedding = cat(video_emb, 0);
  if (!features.empty()) video.features = cat(features, 0);

  Tensor scores = to(task.score(text, video), Device());  // (N, N): caption i ↔ clip i
  nlohmann::json m;
  m["clips"] = n;
  m["chance_r1"] = 1.0 / double(n);
  const Retrieval t2v = retrieval_metrics(scores), v2t = retrieval_metrics(transpose(scores, 0, 1));
  m["t2v_r1"] = t2v.r1;
  m["t2v_r5"] = t2v.r5;
  m["t2v_r10"] = t2v.r10;
  m["t2v_medr"] = t2v.median_rank;
  m["v2t_r1"] = v2t.r1;
  m["v2t_r5"] = v2t.r5;
  m["v2t_r10"] = v2t.r10;
  m["v2t_medr"] = v2t.median_rank;

  if (auto first = task.first_stage_score(text, video)) {  // the contrastive first stage on its own
    const Retrieval f = retrieval_metrics(to(*first, Device()));
    const Retrieval fv = retrieval_metrics(transpose(to(*first, Device()), 0, 1));
    m["first_stage_t2v_r1"] = f.r1;
    m["first_stage_v2t_r1"] = fv.r1;
  }
  // Matching accuracy: each caption with its clip should score > 0, with the next clip ≤ 0.
  std::vector<int64_t> tr, vr;
  for (int64_t i = 0; i < n; ++i) {
    tr.insert(tr.end(), {i, i});
    vr.insert(vr.end(), {i, (i + 1) % n});
  }
  if (auto logits = task.pair_logits(text, video, tr, vr)) {
    const std::vector<double> s = to(*logits, Device()).to_vector();
    int64_t right = 0;
    for (int64_t i = 0; i < n; ++i) right += (s[size_t(2 * i)] > 0) + (s[size_t(2 * i + 1)] <= 0);
    m["matching_acc"] = double(right) / double(2 * n);
  }
  Generator gen{o.seed + 17, 0};
  if (auto acc = task.mlm_accuracy(text.ids.defined() ? text.ids : Tensor(), text.mask, video, gen)) m["mlm_acc"] = *acc;
  if (auto w = task.visual_word_accuracy(text.ids, text.mask, video, gen)) {
    m["visual_word_acc"] = w->accuracy;
    m["visual_word_acc_chance"] = w->majority;  // the most frequent word
    m["visual_word_acc_neighbour"] = w->neighbour;
    m["visual_word_masked"] = w->masked;
  }

  // Zero-shot classification: each clip's attribute is the value whose prompt scores highest.
  std::map<std::string, std::set<std::string>> values;
  std::vector<std::map<std::string, std::string>> attrs;
  for (int64_t c : clip_of_row) {
    attrs.push_back(loader.clips()[size_t(c)].attributes);
    for (auto& [k, v] : attrs.back()) values[k].insert(v);
  }
  for (auto& [attribute, set] : values) {
    if (set.size() < 2) continue;
    std::vector<std::string> vals(set.begin(), set.end());
    std::vector<std::vector<int64_t>> enc_ids;
    std::vector<Encoding> encs;
    EncodeOptions eo;
    eo.max_length = o.max_length;
    int64_t longest = 0;
    for (auto& v : vals) {
      encs.push_back(tokenizer.encode(attribute_prompt(attribute, v), eo));
      longest = std::max<int64_t>(longest, int64_t(encs.back().ids.size()));
    }
    std::vector<int64_t> pid, pmask;
    for (auto& e : encs) {
      tokenizer.pad(e, longest);
      pid.insert(pid.end(), e.ids.begin(), e.ids.end());
      pmask.insert(pmask.end(), e.attention_mask.begin(), e.attention_mask.end());
    }
    const int64_t k = int64_t(vals.size());
    Tensor p_ids = to(Tensor::from_vector(pid, {k, longest}), o.device);
    Tensor p_mask = to(Tensor::from_vector(pmask, {k, longest}), o.device);
    const std::vector<double> s = to(task.score(task.encode_text(p_ids, p_mask), video), Device()).to_vector();  // (K, N)
    int64_t right = 0, counted = 0;
    for (int64_t i = 0; i < n; ++i) {
      auto it = attrs[size_t(i)].find(attribute);
      if (it == attrs[size_t(i)].end()) continue;
      int64_t best = 0;
      for (int64_t j = 1; j < k; ++j)
        if (s[size_t(j * n + i)] > s[size_t(best * n + i)]) best = j;
      right += vals[size_t(best)] == it->second;
      ++counted;
    }
    if (counted) {
      m["zeroshot_" + attribute] = double(right) / double(counted);
      m["zeroshot_" + attribute + "_chance"] = 1.0 / double(k);
    }
  }
  fill_template(task, tokenizer, video, attrs, values, o, m);
  model.train(was_training);
  return m;
}

std::string format_eval_table(const nlohmann::json& m) {
  std::string out = fmt::format("{:<12}{:>8}{:>8}{:>8}{:>8}\n", "retrieval", "R@1", "R@5", "R@10", "MedR");
  for (const char* dir : {"t2v", "v2t"}) {
    const std::string d = dir;
    out += fmt::format("{:<12}{:>8.3f}{:>8.3f}{:>8.3f}{:>8.1f}\n", d == "t2v" ? "text→video" : "video→text",
                       m[d + "_r1"].get<double>(), m[d + "_r5"].get<double>(), m[d + "_r10"].get<double>(),
                       m[d + "_medr"].get<double>());
  }
  out += fmt::format("{} clips; chance R@1 = {:.3f}\n", m["clips"].get<int64_t>(), m["chance_r1"].get<double>());
  for (auto it = m.begin(); it != m.end(); ++it) {
    const std::string k = it.key();
    if (k == "matching_acc" || k == "mlm_acc" || k == "visual_word_acc" || k == "visual_word_acc_neighbour" ||
        k.rfind("first_stage_", 0) == 0 ||
        ((k.rfind("zeroshot_", 0) == 0 || k.rfind("fill_", 0) == 0) && k.find("_chance") == std::string::npos)) {
      std::string line = fmt::format("{:<26}{:>8.3f}", k, it.value().get<double>());
      if (m.contains(k + "_chance")) line += fmt::format("   (chance {:.3f})", m[k + "_chance"].get<double>());
      out += line + "\n";
    }
  }
  return out;
}

}  // namespace vb::train
