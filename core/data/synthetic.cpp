// Synthetic data with an exactly known entropy floor that only attention can approach.
//
// A first-order Markov chain over the vocabulary where each token has `branching` distinct,
// equally likely successors (a fixed table drawn from the seed), and a window that repeats itself
// with period P: token j = token j - P for j >= P. Next-token targets j < P carry ln(branching)
// nats; targets j >= P are copies at a fixed relative offset, zero nats for a model that can look
// back P tokens, while a model that only sees the current token still pays about ln(branching).
// See docs/data-formats.md for the floor and why it separates attention from bigram statistics.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/data/sources.hpp"
#include "core/error.hpp"

namespace core::data::detail {
namespace {

constexpr uint64_t kTableTag = 0x737563635f746162ull;  // "succ_tab": the successor table's stream
// The table holds V * branching int32; above this it would be a memory hazard for no benefit.
constexpr int64_t kMaxTableEntries = int64_t{1} << 28;

class SyntheticDataset final : public Dataset {
 public:
  explicit SyntheticDataset(const Config& c);
  void window(Split split, int64_t index, int32_t* out) const override;
  int64_t window_len() const override { return L_; }
  double entropy_floor() const override { return floor_; }
  std::string describe() const override;

 private:
  uint64_t seed_;
  int64_t V_, b_, P_, T_, L_;
  std::vector<int32_t> succ_;  // [V, b]: the successors of token v, ascending
  double floor_;
};

SyntheticDataset::SyntheticDataset(const Config& c)
    : seed_(c.run.seed),
      V_(c.model.vocab_size),
      b_(c.data.synthetic.branching),
      P_(c.data.synthetic.period > 0 ? c.data.synthetic.period : c.train.seq_len / 2),
      T_(c.train.seq_len),
      L_(static_cast<int64_t>(c.train.seq_len) + 1 + c.model.mtp.depth) {
  if (V_ < 1) FLOT_THROW(ConfigError, "model.vocab_size = {} must be positive", V_);
  if (b_ < 1 || b_ > V_)
    FLOT_THROW(ConfigError,
               "data.synthetic.branching = {} must be in [1, model.vocab_size = {}]: each token "
               "needs that many distinct successors",
               b_, V_);
  if (c.data.synthetic.period < 0)
    FLOT_THROW(ConfigError, "data.synthetic.period = {} must be >= 0 (0 = train.seq_len / 2)",
               c.data.synthetic.period);
  if (P_ < 1)
    FLOT_THROW(ConfigError,
               "data.synthetic.period = 0 means train.seq_len / 2, which is 0 for train.seq_len "
               "= {}; set data.synthetic.period >= 1",
               T_);
  if (V_ * b_ > kMaxTableEntries)
    FLOT_THROW(ConfigError,
               "data.synthetic.branching = {} with model.vocab_size = {} needs a successor table "
               "of {} entries (limit {}); lower data.synthetic.branching",
               b_, V_, V_ * b_, kMaxTableEntries);

  // Floyd's algorithm draws a uniform b-subset in O(b) per token; the marks are cleared entry by
  // entry so the whole table costs O(V b), not O(V^2).
  succ_.resize(static_cast<size_t>(V_ * b_));
  std::vector<uint8_t> marked(static_cast<size_t>(V_), 0);
  for (int64_t v = 0; v < V_; ++v) {
    int32_t* row = succ_.data() + v * b_;
    int64_t n = 0;
    for (int64_t j = V_ - b_; j < V_; ++j) {
      const uint64_t h = counter_hash(seed_, kTableTag, static_cast<uint64_t>(v),
                                      static_cast<uint64_t>(j));
      int64_t t = static_cast<int64_t>(uniform_below(h, static_cast<uint64_t>(j + 1)));
      if (marked[t]) t = j;
      marked[t] = 1;
      row[n++] = static_cast<int32_t>(t);
    }
    std::sort(row, row + b_);
    for (int64_t k = 0; k < b_; ++k) marked[row[k]] = 0;
  }

  // Targets j = 1..T: the min(P - 1, T) with j < P are fresh draws worth ln b each; the rest
  // are copies of visible tokens.
  floor_ = static_cast<double>(std::min(P_ - 1, T_)) * std::log(static_cast<double>(b_)) /
           static_cast<double>(T_);
}

void SyntheticDataset::window(Split split, int64_t index, int32_t* out) const {
  FLOT_CHECK(index >= 0, "window index {} must be non-negative", index);
  const uint64_t tag = split_tag(split), idx = static_cast<uint64_t>(index);
  out[0] = static_cast<int32_t>(
      uniform_below(counter_hash(seed_, tag, idx, 0), static_cast<uint64_t>(V_)));
  const int64_t fresh = std::min(P_, L_);
  for (int64_t j = 1; j < fresh; ++j) {
    const uint64_t h = counter_hash(seed_, tag, idx, static_cast<uint64_t>(j));
    out[j] = succ_[out[j - 1] * b_ + static_cast<int64_t>(uniform_below(h, b_))];
  }
  for (int64_t j = fresh; j < L_; ++j) out[j] = out[j - P_];
}

std::string SyntheticDataset::describe() const {
  return fmt::format(
      "synthetic: V={} branching={} period={} window={} floor={:.4f} nats (uniform: ln V = "
      "{:.4f})",
      V_, b_, P_, L_, floor_, std::log(static_cast<double>(V_)));
}

}  // namespace

std::unique_ptr<Dataset> make_synthetic(const Config& c) {
  return std::make_unique<SyntheticDataset>(c);
}

}  // namespace core::data::detail
