#include "train/report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include "tensor/atomic_file.h"
#include "tensor/error.h"
#include "train/evaluate.h"

namespace vb::train {

std::vector<nlohmann::json> read_metrics(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    try {
      out.push_back(nlohmann::json::parse(line));
    } catch (const nlohmann::json::parse_error&) {
    }
  }
  return out;
}

std::string loss_curves_svg(const std::vector<nlohmann::json>& metrics) {
  // Series: every numeric key that names a loss ("loss" or an objective).
  const std::vector<std::string> names = {"loss", "matching", "mlm", "mfm", "contrastive"};
  std::map<std::string, std::vector<std::pair<double, double>>> series;
  for (const auto& row : metrics) {
    if (!row.contains("step") || row.contains("eval")) continue;
    for (const auto& n : names)
      if (row.contains(n) && row[n].is_number()) series[n].emplace_back(row["step"].get<double>(), row[n].get<double>());
  }
  const double w = 640, h = 360, left = 60, right = 130, top = 20, bottom = 40;
  double xmax = 1, ymax = 0;
  for (auto& [_, pts] : series)
    for (auto& [x, y] : pts) {
      xmax = std::max(xmax, x);
      if (std::isfinite(y)) ymax = std::max(ymax, y);
    }
  if (ymax <= 0) ymax = 1;
  auto px = [&](double x) { return left + (w - left - right) * x / xmax; };
  auto py = [&](double y) { return top + (h - top - bottom) * (1 - std::clamp(y, 0.0, ymax) / ymax); };
  const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"};
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n"
      "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n"
      "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">step</text>\n"
      "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.3g}</text>\n<text x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>\n"
      "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n",
      w, h, left, h - bottom, w - right, h - bottom, left, top, left, h - bottom, (left + w - right) / 2, h - 8,
      left - 4, top + 4, ymax, left - 4, h - bottom, w - right, h - bottom + 16, int64_t(xmax));
  int i = 0;
  for (const auto& n : names) {
    auto it = series.find(n);
    if (it == series.end()) continue;
    std::string points;
    for (auto& [x, y] : it->second)
      if (std::isfinite(y)) points += fmt::format("{:.1f},{:.1f} ", px(x), py(y));
    const char* color = colors[i % 5];
    svg += fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/>\n", color, points);
    svg += fmt::format("<text x=\"{}\" y=\"{}\" fill=\"{}\">{}</text>\n", w - right + 10, top + 16 * (i + 1), color, n);
    ++i;
  }
  return svg + "</svg>\n";
}

void write_report(const std::string& run_dir, const nlohmann::json& config, const std::vector<nlohmann::json>& metrics,
                  const nlohmann::json& eval) {
  namespace fs = std::filesystem;
  write_text_atomic((fs::path(run_dir) / "loss.svg").string(), loss_curves_svg(metrics));
  std::string md = "# Pretraining report\n\n";
  int64_t last_step = 0;
  double first = NAN, last = NAN;
  for (const auto& row : metrics) {
    if (!row.contains("loss")) continue;
    if (std::isnan(first)) first = row["loss"];
    last = row["loss"];
    last_step = row["step"];
  }
  md += fmt::format("Model `{}`, {} steps; loss {:.4f} → {:.4f}.\n\n", config["model"].get<std::string>(), last_step,
                    first, last);
  md += "## Loss curves\n\n![loss curves](loss.svg)\n\n";
  if (!eval.is_null() && !eval.empty()) md += "## Evaluation\n\n```\n" + format_eval_table(eval) + "```\n\n";
  md += "## Configuration\n\n```json\n" + config.dump(2) + "\n```\n";
  write_text_atomic((fs::path(run_dir) / "report.md").string(), md);
}

}  // namespace vb::train
