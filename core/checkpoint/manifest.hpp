// The checkpoint directory and its manifest: names, the commit record, and discovery.
//
// A checkpoint is the directory <checkpoint.dir>/step-<9 digits>/ holding
//   manifest.json              written last: the training progress and every file's size and hash
//   config.yaml                the resolved config of the run that wrote it
//   rank-<5 digits>.safetensors each writing rank's share, keyed by global names
// It is written under a hidden name (.tmp-step-...) and renamed when complete, so a directory
// named step-* that holds a manifest is complete; anything else (.tmp-*, .del-*, a step-* without
// a manifest) is ignored by discovery and removed by the next save.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace core::checkpoint {

inline constexpr const char* kManifestFile = "manifest.json";
inline constexpr const char* kConfigFile = "config.yaml";
inline constexpr int kFormatVersion = 1;

// Where training stands. The data position and the learning rate are functions of `step` (the
// loader maps step -> global sequence indices), so they need no state of their own.
struct Progress {
  int64_t step = 0;            // optimizer steps taken; the next step trains on batch `step`
  int64_t tokens = 0;          // tokens trained on (skipped steps included)
  int64_t skipped_total = 0;   // steps skipped for a non-finite loss or gradient
  int64_t skipped_in_row = 0;  // the latest run of consecutive skipped steps
  // AdamW's step count (its bias correction): steps whose update was applied.
  int64_t adamw_steps() const { return step - skipped_total; }
};

struct FileEntry {
  std::string name;  // relative to the checkpoint directory
  int64_t bytes = 0;
  uint64_t xxh3 = 0;
};

struct Manifest {
  int version = kFormatVersion;
  std::string source = "train";  // "train" or "import" (HF weights, no optimizer state)
  Progress progress;
  bool has_optimizer = true;  // AdamW moments are present
  std::string moment_dtype = "fp32";
  nlohmann::json data;           // the data position, spelled out for people and checks
  nlohmann::json rng;            // random generator state (none today; see docs)
  nlohmann::json layout;         // the layout that wrote it (information only)
  std::vector<FileEntry> files;  // every file but the manifest
};

std::string manifest_json(const Manifest& m);
// Throws DataError naming `path` for malformed or unsupported manifests.
Manifest parse_manifest(const std::string& text, const std::string& path);

// "step-000000100"
std::string checkpoint_name(int64_t step);
// The rank file name: "rank-00003.safetensors".
std::string rank_file_name(int rank);

struct Found {
  int64_t step = 0;
  std::string path;
};
// Complete checkpoints under `root`, ascending by step (empty when root does not exist).
std::vector<Found> list_checkpoints(const std::string& root);
// A user-given path: a checkpoint directory (holds a manifest) or a directory of checkpoints
// (its latest complete one). Throws DataError saying what was found instead.
std::string resolve_checkpoint_path(const std::string& path);

}  // namespace core::checkpoint
