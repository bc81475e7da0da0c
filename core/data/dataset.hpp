// Datasets and the deterministic micro-batch loader.
//
// A Dataset hands out fixed-length token windows by index for a split (train / val). The loader
// maps (step, micro-batch, data-parallel rank) to global sequence indices so that every parallel
// layout sees exactly the same global batch: sequence i of step s is global index s * G + i
// (G = global batch size); dp rank r owns i in [r G/dp, (r+1) G/dp), cut into micro-batches in
// order. Window contents depend only on (seed, split, global index).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/config.hpp"

namespace core::data {

enum class Split { train, val };

class Dataset {
 public:
  virtual ~Dataset() = default;
  // Writes window `index` of `split`: window_len() tokens, each in [0, vocab_size).
  virtual void window(Split split, int64_t index, int32_t* out) const = 0;
  // Tokens per window: seq_len + 1 + extra (extra = MTP depth, so every MTP target exists).
  virtual int64_t window_len() const = 0;
  // Exact per-token entropy (nats) of the main next-token targets, if the source knows it
  // (synthetic data); negative otherwise.
  virtual double entropy_floor() const { return -1.0; }
  // One line for the start-up log: kind, path, sizes, splits.
  virtual std::string describe() const = 0;
};

// Builds the dataset named by c.data (kind synthetic | text | tokens) for c.train.seq_len and
// c.model.mtp.depth. Throws DataError for missing, truncated or malformed files and for tokens
// outside the model's vocabulary, ConfigError for unusable settings.
std::unique_ptr<Dataset> make_dataset(const Config& c);

// A micro-batch: inputs [B, T] and, for k = 0..depth, targets_k [B, T] where targets_k[b][t]
// is token t + 1 + k of the window (k = 0: the main next-token target).
struct MicroBatch {
  int64_t batch = 0;
  int64_t seq_len = 0;
  std::vector<int32_t> inputs;
  std::vector<std::vector<int32_t>> targets;  // [depth + 1][B * T]
};

class Loader {
 public:
  Loader(const Dataset& ds, const Config& c, int dp_rank, int dp_size);
  // Micro-batches per optimizer step on this dp rank.
  int micro_batches_per_step() const { return micro_per_step_; }
  // Fills mb with micro-batch `micro` of training step `step` for this dp rank.
  void train_batch(int64_t step, int micro, MicroBatch& mb) const;
  // The validation set is train.eval_batches x micro_batch_size windows whatever the layout;
  // each dp rank evaluates val_batches() micro-batches of it (the same count on every rank, as
  // expert parallelism needs), and windows past the set's end have every target ignored (-1).
  int val_batches() const { return val_batches_; }
  // Fills mb with validation micro-batch `index` (< val_batches()) for this dp rank.
  void val_batch(int64_t index, MicroBatch& mb) const;

 private:
  void fill(Split split, int64_t first_index, MicroBatch& mb) const;
  const Dataset& ds_;
  int64_t seq_len_, micro_batch_, global_batch_, per_rank_;
  int mtp_depth_, dp_rank_, micro_per_step_;
  int64_t val_windows_ = 0;
  int val_batches_ = 0;
};

}  // namespace core::data
