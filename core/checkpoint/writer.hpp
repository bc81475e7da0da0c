// Writing a checkpoint: every rank writes its share, rank 0 commits.
//
// Protocol (collective over the share's world; every step ends with an agreement, so a failure
// on any rank is known to all and nobody waits in a collective):
//   1. rank 0 creates <root>/.tmp-step-N/ (removing leftovers of interrupted saves: .tmp-*,
//      .del-*);
//   2. every rank writes rank-R.safetensors there (its parameter pieces, their AdamW moments,
//      and, on the ranks chosen for them, the balancing biases), hashing while it writes, fsyncs;
//   3. rank 0 gathers the files' sizes and hashes, writes config.yaml and, last, manifest.json,
//      fsyncs them and the directory, renames it to <root>/step-N/ (an existing step-N is moved
//      aside first and removed after), fsyncs <root>, and removes the oldest complete
//      checkpoints beyond `keep` (renamed to .del-* before deletion, so a crash never leaves a
//      half-deleted checkpoint that looks complete).
// A process killed at any point leaves either the previous state or the complete new
// checkpoint visible. A write error (full disk, no permission) throws core::Error on every rank
// with the failing rank's message; the partial directory is removed and older checkpoints are
// untouched.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "core/checkpoint/manifest.hpp"
#include "core/checkpoint/share.hpp"

namespace core::checkpoint {

struct SaveRequest {
  Progress progress;
  std::string config_yaml;  // the resolved config (to_yaml)
  nlohmann::json data;      // data position
  nlohmann::json layout;    // who wrote it
  std::string source = "train";
  int keep = 0;  // complete checkpoints to keep under root; 0 = all
  // Test hook (FLOTILLA_TEST_SAVE_PAUSE_S, read in launch/): each rank sleeps this long after
  // writing its file and before the commit, announcing it, so that a test can kill a process in
  // the middle of a real save. 0 in normal use.
  double pause_s = 0;
};

struct SaveResult {
  std::string path;   // the committed checkpoint
  int64_t bytes = 0;  // all files, all ranks
  double seconds = 0;
};

SaveResult save_checkpoint(const std::string& root, const RankShare& share, const SaveRequest& req);

// Removes the oldest complete checkpoints under root so that `keep` remain, never the newest nor
// `protect` (the one just written). Rank 0's job; not collective.
void prune_checkpoints(const std::string& root, int keep, const std::string& protect);

}  // namespace core::checkpoint
