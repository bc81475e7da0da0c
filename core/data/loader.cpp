// Loader: maps (step, micro-batch, dp rank) to global window indices and cuts windows into
// inputs and shifted targets. The mapping is the whole determinism contract: sequence i of step s
// is train window s * G + i wherever it is computed, so any dp / micro-batch layout of the same
// global batch trains on the same tokens.
#include <algorithm>
#include <vector>

#include "core/data/dataset.hpp"
#include "core/error.hpp"

namespace core::data {

Loader::Loader(const Dataset& ds, const Config& c, int dp_rank, int dp_size)
    : ds_(ds),
      seq_len_(c.train.seq_len),
      micro_batch_(c.train.micro_batch_size),
      global_batch_(c.train.global_batch_size),
      per_rank_(0),
      mtp_depth_(c.model.mtp.depth),
      dp_rank_(dp_rank),
      micro_per_step_(0) {
  FLOT_CHECK(dp_size >= 1 && dp_rank >= 0 && dp_rank < dp_size, "dp rank {} of dp size {}",
             dp_rank, dp_size);
  if (micro_batch_ < 1)
    FLOT_THROW(ConfigError, "train.micro_batch_size = {} must be at least 1", micro_batch_);
  if (global_batch_ < 1)
    FLOT_THROW(ConfigError, "train.global_batch_size = {} must be at least 1", global_batch_);
  if (global_batch_ % dp_size != 0)
    FLOT_THROW(ConfigError,
               "train.global_batch_size = {} is not divisible by the data-parallel size {} "
               "(world size / parallel.pp); choose a multiple of {}",
               global_batch_, dp_size, dp_size);
  per_rank_ = global_batch_ / dp_size;
  if (per_rank_ % micro_batch_ != 0)
    FLOT_THROW(ConfigError,
               "train.global_batch_size = {} over {} data-parallel ranks gives {} sequences per "
               "rank, which is not a multiple of train.micro_batch_size = {}; make "
               "global_batch_size a multiple of micro_batch_size * dp = {}",
               global_batch_, dp_size, per_rank_, micro_batch_,
               static_cast<int64_t>(micro_batch_) * dp_size);
  micro_per_step_ = static_cast<int>(per_rank_ / micro_batch_);
  val_windows_ = static_cast<int64_t>(c.train.eval_batches) * micro_batch_;
  val_batches_ = static_cast<int>((val_windows_ + micro_batch_ * dp_size - 1) / (micro_batch_ * dp_size));
  FLOT_CHECK(ds.window_len() >= seq_len_ + 1 + mtp_depth_,
             "dataset windows of {} tokens cannot feed seq_len {} with MTP depth {}",
             ds.window_len(), seq_len_, mtp_depth_);
}

void Loader::train_batch(int64_t step, int micro, MicroBatch& mb) const {
  FLOT_CHECK(step >= 0 && micro >= 0 && micro < micro_per_step_,
             "step {} micro-batch {} (of {} per step)", step, micro, micro_per_step_);
  fill(Split::train,
       step * global_batch_ + dp_rank_ * per_rank_ + static_cast<int64_t>(micro) * micro_batch_,
       mb);
}

void Loader::val_batch(int64_t index, MicroBatch& mb) const {
  FLOT_CHECK(index >= 0 && index < val_batches_, "validation batch {} of {}", index, val_batches_);
  // Validation batch `index` spans micro_batch * dp windows, rank-major, like one training
  // micro-batch taken across all ranks.
  const int64_t dp_size = global_batch_ / per_rank_;
  const int64_t first = index * micro_batch_ * dp_size + dp_rank_ * micro_batch_;
  fill(Split::val, first, mb);
  // Windows past the validation set still run (every rank does the same work) but count nothing.
  for (int64_t b = 0; b < micro_batch_; ++b)
    if (first + b >= val_windows_)
      for (auto& t : mb.targets) std::fill(t.begin() + b * seq_len_, t.begin() + (b + 1) * seq_len_, -1);
}

void Loader::fill(Split split, int64_t first_index, MicroBatch& mb) const {
  const int64_t B = micro_batch_, T = seq_len_;
  mb.batch = B;
  mb.seq_len = T;
  mb.inputs.resize(static_cast<size_t>(B * T));
  mb.targets.resize(static_cast<size_t>(mtp_depth_ + 1));
  for (auto& t : mb.targets) t.resize(static_cast<size_t>(B * T));
  std::vector<int32_t> w(static_cast<size_t>(ds_.window_len()));
  for (int64_t b = 0; b < B; ++b) {
    ds_.window(split, first_index + b, w.data());
    std::copy(w.begin(), w.begin() + T, mb.inputs.begin() + b * T);
    for (int k = 0; k <= mtp_depth_; ++k)
      std::copy(w.begin() + 1 + k, w.begin() + 1 + k + T, mb.targets[k].begin() + b * T);
  }
}

}  // namespace core::data
