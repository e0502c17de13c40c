// The end-of-run report: report.md (configuration, loss curves, evaluation table) and loss.svg.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace vb::train {

// Every JSON object of a metrics.jsonl file (a line cut short at the end is ignored).
std::vector<nlohmann::json> read_metrics(const std::string& path);

// An SVG line plot of every loss term ("loss" and the per-objective terms) against the step.
std::string loss_curves_svg(const std::vector<nlohmann::json>& metrics);

// Writes report.md and loss.svg into run_dir.
void write_report(const std::string& run_dir, const nlohmann::json& config, const std::vector<nlohmann::json>& metrics,
                  const nlohmann::json& eval);

}  // namespace vb::train
