// Manifest JSON and checkpoint discovery.
#include "core/checkpoint/manifest.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>

#include "core/checkpoint/safetensors.hpp"
#include "core/error.hpp"

namespace core::checkpoint {
namespace fs = std::filesystem;

std::string manifest_json(const Manifest& m) {
  nlohmann::json j;
  j["format"] = "flotilla-checkpoint";
  j["version"] = m.version;
  j["source"] = m.source;
  j["step"] = m.progress.step;
  j["tokens"] = m.progress.tokens;
  j["skipped_steps"] = {{"total", m.progress.skipped_total},
                        {"in_a_row", m.progress.skipped_in_row}};
  j["optimizer"] = {{"kind", "adamw"},
                    {"state", m.has_optimizer},
                    {"moment_dtype", m.moment_dtype},
                    {"adamw_steps", m.progress.adamw_steps()}};
  j["data"] = m.data;
  j["rng"] = m.rng;
  j["layout"] = m.layout;
  j["config"] = kConfigFile;
  nlohmann::json files = nlohmann::json::array();
  for (const auto& f : m.files)
    files.push_back({{"name", f.name}, {"bytes", f.bytes}, {"xxh3_64", hex64(f.xxh3)}});
  j["files"] = files;
  return j.dump(2) + "\n";
}

Manifest parse_manifest(const std::string& text, const std::string& path) {
  Manifest m;
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    if (j.at("format").get<std::string>() != "flotilla-checkpoint")
      FLOT_THROW(DataError, "{} is not a Flotilla checkpoint manifest (format '{}')", path,
                 j.at("format").get<std::string>());
    m.version = j.at("version").get<int>();
    if (m.version != kFormatVersion)
      FLOT_THROW(DataError,
                 "{}: checkpoint format version {}, this build reads version {}; use the "
                 "Flotilla version that wrote it (or its `flotilla export`)",
                 path, m.version, kFormatVersion);
    m.source = j.at("source").get<std::string>();
    m.progress.step = j.at("step").get<int64_t>();
    m.progress.tokens = j.at("tokens").get<int64_t>();
    m.progress.skipped_total = j.at("skipped_steps").at("total").get<int64_t>();
    m.progress.skipped_in_row = j.at("skipped_steps").at("in_a_row").get<int64_t>();
    m.has_optimizer = j.at("optimizer").at("state").get<bool>();
    m.moment_dtype = j.at("optimizer").at("moment_dtype").get<std::string>();
    m.data = j.at("data");
    m.rng = j.at("rng");
    m.layout = j.at("layout");
    for (const auto& f : j.at("files")) {
      FileEntry e;
      e.name = f.at("name").get<std::string>();
      e.bytes = f.at("bytes").get<int64_t>();
      const std::string h = f.at("xxh3_64").get<std::string>();
      size_t used = 0;
      e.xxh3 = std::stoull(h, &used, 16);
      if (used != h.size() || h.size() != 16) throw std::invalid_argument("xxh3_64 '" + h + "'");
      if (e.name.empty() || e.name.find('/') != std::string::npos || e.name[0] == '.')
        throw std::invalid_argument("file name '" + e.name + "'");
      m.files.push_back(std::move(e));
    }
  } catch (const DataError&) {
    throw;
  } catch (const std::exception& e) {
    FLOT_THROW(DataError, "{}: malformed checkpoint manifest ({}); the checkpoint is corrupt", path,
               e.what());
  }
  return m;
}

std::string checkpoint_name(int64_t step) {
  return fmt::format("step-{:09d}", step);
}

std::string rank_file_name(int rank) {
  return fmt::format("rank-{:05d}.safetensors", rank);
}

std::vector<Found> list_checkpoints(const std::string& root) {
  std::vector<Found> out;
  std::error_code ec;
  if (root.empty() || !fs::is_directory(root, ec)) return out;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() != 14 || name.compare(0, 5, "step-") != 0) continue;
    if (!std::all_of(name.begin() + 5, name.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    if (!fs::is_regular_file(entry.path() / kManifestFile, ec)) continue;
    out.push_back({std::stoll(name.substr(5)), entry.path().string()});
  }
  std::sort(out.begin(), out.end(), [](const Found& a, const Found& b) { return a.step < b.step; });
  return out;
}

std::string resolve_checkpoint_path(const std::string& path) {
  std::error_code ec;
  if (fs::is_regular_file(fs::path(path) / kManifestFile, ec)) return path;
  if (!fs::is_directory(path, ec))
    FLOT_THROW(DataError,
               "checkpoint '{}' does not exist (give a checkpoint directory, the one "
               "holding manifest.json, or a directory of step-* checkpoints)",
               path);
  auto found = list_checkpoints(path);
  if (found.empty())
    FLOT_THROW(DataError,
               "'{}' is neither a checkpoint (no manifest.json) nor a directory holding complete "
               "step-* checkpoints; incomplete saves (.tmp-*, or step-* without a manifest) are "
               "never loaded",
               path);
  return found.back().path;
}

}  // namespace core::checkpoint
