// Tests of the synthetic generator (determinism, period structure, successor sets, exact and
// empirical entropy) and of the loader's layout-independent mapping of steps to windows.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/data/dataset.hpp"
#include "core/error.hpp"
#include "data_test_helpers.hpp"

using core::Config;
using core::ConfigError;
using namespace core::data;
using namespace data_test;
using Catch::Matchers::Contains;

TEST_CASE("synthetic windows are a pure function of (seed, split, index)", "[data]") {
  Config c = small_config();
  auto a = make_dataset(c), b = make_dataset(c);
  REQUIRE(a->window_len() == 32 + 1 + 1);
  for (int64_t i : {0, 1, 7, 123456789}) {
    CHECK(window_of(*a, Split::train, i) == window_of(*b, Split::train, i));
    CHECK(window_of(*a, Split::val, i) == window_of(*b, Split::val, i));
    CHECK(window_of(*a, Split::train, i) != window_of(*a, Split::val, i));
  }
  CHECK(window_of(*a, Split::train, 0) != window_of(*a, Split::train, 1));
  // Reading windows in another order changes nothing: there is no generator state.
  auto w5 = window_of(*a, Split::train, 5);
  (void)window_of(*a, Split::train, 3);
  CHECK(window_of(*a, Split::train, 5) == w5);
  c.run.seed = 43;
  auto other = make_dataset(c);
  CHECK(window_of(*other, Split::train, 0) != window_of(*a, Split::train, 0));
  CHECK_THAT(a->describe(), Contains("synthetic") && Contains("V=64") &&
                                Contains("branching=4") && Contains("period=16"));
}

TEST_CASE("synthetic tokens are in range and repeat with the period", "[data]") {
  for (int period : {0, 1, 5, 16, 40, 100}) {
    Config c = small_config();
    c.data.synthetic.period = period;
    c.model.mtp.depth = 2;
    auto ds = make_dataset(c);
    const int64_t P = period ? period : c.train.seq_len / 2;
    for (int64_t i = 0; i < 50; ++i)
      for (Split s : {Split::train, Split::val}) {
        auto w = window_of(*ds, s, i);
        for (int32_t t : w) REQUIRE((t >= 0 && t < c.model.vocab_size));
        for (size_t j = static_cast<size_t>(P); j < w.size(); ++j) REQUIRE(w[j] == w[j - P]);
      }
  }
}

TEST_CASE("synthetic successors form a fixed set of exactly `branching` tokens", "[data]") {
  Config c = small_config();  // V = 64, b = 4, P = 16
  auto ds = make_dataset(c);
  std::map<int32_t, std::set<int32_t>> succ;
  std::map<int32_t, int64_t> seen;
  const int64_t P = 16;
  for (int64_t i = 0; i < 3000; ++i)
    for (Split s : {Split::train, Split::val}) {
      auto w = window_of(*ds, s, i);
      // Every transition except the wrap-arounds at multiples of P is a chain step (one past
      // P copies one from the first period).
      for (size_t j = 1; j < w.size(); ++j) {
        if (static_cast<int64_t>(j) % P == 0) continue;
        succ[w[j - 1]].insert(w[j]);
        seen[w[j - 1]]++;
      }
    }
  REQUIRE(succ.size() == 64);
  for (const auto& [tok, set] : succ) {
    INFO("token " << tok << " seen " << seen[tok] << " times");
    CHECK(set.size() == 4);  // never more than b; with ~1000 draws each, all b appear
  }
}

TEST_CASE("synthetic entropy floor matches the hand-computed value", "[data]") {
  Config c;
  c.model.vocab_size = 256;
  c.train.seq_len = 128;
  c.model.mtp.depth = 1;
  c.data.synthetic.branching = 16;
  c.data.synthetic.period = 0;  // 64
  // 63 fresh targets (j = 1..63) of ln 16 nats over 128 targets: 63 * 2.772588722239781 / 128.
  CHECK(make_dataset(c)->entropy_floor() == Approx(1.364633511727392).epsilon(1e-12));
  CHECK_THAT(make_dataset(c)->describe(), Contains("floor=1.3646"));
  c.data.synthetic.period = 16;  // the tiny config: 15 fresh targets of ln 16 over 128
  CHECK(make_dataset(c)->entropy_floor() == Approx(0.32491274088747434).epsilon(1e-12));
  c.data.synthetic.period = 200;  // no repeat inside the targets: every target is ln 16
  CHECK(make_dataset(c)->entropy_floor() == Approx(2.772588722239781).epsilon(1e-12));
  c.data.synthetic.period = 1;  // a constant sequence
  CHECK(make_dataset(c)->entropy_floor() == 0.0);
  c.data.synthetic.period = 0;
  c.data.synthetic.branching = 1;  // a deterministic chain
  CHECK(make_dataset(c)->entropy_floor() == 0.0);
}

TEST_CASE("synthetic empirical conditional entropy is ln(branching)", "[data]") {
  Config c = small_config();
  c.model.vocab_size = 32;
  c.data.synthetic.branching = 8;
  c.train.seq_len = 64;
  c.data.synthetic.period = 64;  // targets 1..63 are fresh chain steps
  auto ds = make_dataset(c);
  std::vector<std::vector<int64_t>> counts(32, std::vector<int64_t>(32, 0));
  std::vector<int64_t> first(32, 0);
  int64_t n = 0;
  for (int64_t i = 0; i < 4000; ++i) {
    auto w = window_of(*ds, Split::train, i);
    first[w[0]]++;
    for (int j = 1; j < 64; ++j, ++n) counts[w[j - 1]][w[j]]++;
  }
  // Plug-in H(next | prev) = sum_prev p(prev) H(next | prev); its bias is about -(b-1)/(2 n_prev).
  double h = 0;
  for (const auto& row : counts) {
    int64_t tot = 0;
    for (int64_t x : row) tot += x;
    for (int64_t x : row)
      if (x) h -= static_cast<double>(x) / n * std::log(static_cast<double>(x) / tot);
  }
  CHECK(h == Approx(std::log(8.0)).margin(0.005));
  // The first token is uniform over V: its plug-in entropy is close to ln 32.
  double h0 = 0;
  for (int64_t x : first)
    if (x) h0 -= x / 4000.0 * std::log(x / 4000.0);
  CHECK(h0 == Approx(std::log(32.0)).margin(0.02));
}

TEST_CASE("synthetic rejects unusable settings", "[data]") {
  Config c = small_config();
  c.data.synthetic.branching = 65;
  CHECK_THAT(error_of<ConfigError>([&] { make_dataset(c); }),
             Contains("data.synthetic.branching = 65"));
  c.data.synthetic.branching = 0;
  CHECK_THAT(error_of<ConfigError>([&] { make_dataset(c); }), Contains("branching"));
  c = small_config();
  c.train.seq_len = 1;
  CHECK_THAT(error_of<ConfigError>([&] { make_dataset(c); }), Contains("data.synthetic.period"));
  c = small_config();
  c.data.kind = "images";
  CHECK_THAT(error_of<ConfigError>([&] { make_dataset(c); }), Contains("data.kind = 'images'"));
  c = small_config();
  c.data.val_fraction = 1.0;
  CHECK_THAT(error_of<ConfigError>([&] { make_dataset(c); }), Contains("data.val_fraction"));
}

TEST_CASE("loader: every dp / micro-batch layout sees the same global batch", "[data]") {
  Config c = small_config();  // G = 8
  auto ds = make_dataset(c);
  auto global_batch = [&](int dp, int mbs, int64_t step) {
    Config cc = c;
    cc.train.micro_batch_size = mbs;
    std::vector<std::vector<int32_t>> rows;  // inputs then targets of each sequence, in order
    for (int r = 0; r < dp; ++r) {
      Loader loader(*ds, cc, r, dp);
      REQUIRE(loader.micro_batches_per_step() == 8 / (dp * mbs));
      MicroBatch mb;
      for (int m = 0; m < loader.micro_batches_per_step(); ++m) {
        loader.train_batch(step, m, mb);
        REQUIRE(mb.batch == mbs);
        for (int64_t b = 0; b < mb.batch; ++b) {
          const auto T = mb.seq_len;
          std::vector<int32_t> row(mb.inputs.begin() + b * T, mb.inputs.begin() + (b + 1) * T);
          for (const auto& t : mb.targets) row.insert(row.end(), t.begin() + b * T, t.begin() + (b + 1) * T);
          rows.push_back(row);
        }
      }
    }
    return rows;
  };
  for (int64_t step : {0, 1, 17}) {
    const auto ref = global_batch(1, 2, step);
    REQUIRE(ref.size() == 8);
    CHECK(global_batch(2, 2, step) == ref);
    CHECK(global_batch(4, 2, step) == ref);
    CHECK(global_batch(4, 1, step) == ref);
    CHECK(global_batch(1, 8, step) == ref);
    CHECK(global_batch(8, 1, step) == ref);
    CHECK(global_batch(1, 2, step + 1) != ref);
  }
}

TEST_CASE("loader: inputs and shifted (MTP) targets come from the right windows", "[data]") {
  Config c = small_config();
  c.model.mtp.depth = 2;
  c.train.eval_batches = 8;
  auto ds = make_dataset(c);
  const int dp = 2;
  for (int r = 0; r < dp; ++r) {
    Loader loader(*ds, c, r, dp);
    MicroBatch mb;
    for (int64_t step : {0, 5})
      for (int m = 0; m < loader.micro_batches_per_step(); ++m) {
        loader.train_batch(step, m, mb);
        REQUIRE(mb.targets.size() == 3);
        const int64_t T = mb.seq_len;
        for (int64_t b = 0; b < mb.batch; ++b) {
          const auto w = window_of(*ds, Split::train, step * 8 + r * 4 + m * 2 + b);
          for (int64_t t = 0; t < T; ++t) {
            REQUIRE(mb.inputs[b * T + t] == w[t]);
            for (int k = 0; k <= 2; ++k) REQUIRE(mb.targets[k][b * T + t] == w[t + 1 + k]);
            if (t + 1 < T) REQUIRE(mb.targets[0][b * T + t] == mb.inputs[b * T + t + 1]);
          }
        }
      }
    // Validation: windows index * mbs * dp + r * mbs + b, the same on every call.
    MicroBatch v1, v2;
    loader.val_batch(3, v1);
    loader.val_batch(3, v2);
    CHECK(v1.inputs == v2.inputs);
    for (int64_t b = 0; b < v1.batch; ++b) {
      const auto w = window_of(*ds, Split::val, 3 * 2 * dp + r * 2 + b);
      CHECK(std::equal(v1.inputs.begin() + b * 32, v1.inputs.begin() + (b + 1) * 32, w.begin()));
      CHECK(std::equal(v1.targets[2].begin() + b * 32, v1.targets[2].begin() + (b + 1) * 32,
                       w.begin() + 3));
    }
  }
  c.model.mtp.depth = 0;
  auto ds0 = make_dataset(c);
  Loader l0(*ds0, c, 0, 1);
  MicroBatch mb;
  l0.train_batch(0, 0, mb);
  CHECK(mb.targets.size() == 1);
}

TEST_CASE("loader: batch sizes must divide over dp ranks and micro-batches", "[data]") {
  Config c = small_config();  // G = 8, mbs = 2
  auto ds = make_dataset(c);
  CHECK_THAT(error_of<ConfigError>([&] { Loader(*ds, c, 0, 3); }),
             Contains("train.global_batch_size = 8") && Contains("data-parallel size 3"));
  c.train.micro_batch_size = 3;
  CHECK_THAT(error_of<ConfigError>([&] { Loader(*ds, c, 0, 2); }),
             Contains("4 sequences per rank") && Contains("train.micro_batch_size = 3"));
}

TEST_CASE("loader: the validation set is the same windows whatever the data-parallel size", "[data]") {
  Config c = small_config();
  c.train.eval_batches = 5;  // 10 windows: 3 micro-batches a rank at dp 2, the last half empty
  auto ds = make_dataset(c);
  auto counted = [&](int dp) {
    std::vector<std::vector<int32_t>> windows;
    for (int r = 0; r < dp; ++r) {
      Loader loader(*ds, c, r, dp);
      MicroBatch mb;
      for (int i = 0; i < loader.val_batches(); ++i) {
        loader.val_batch(i, mb);
        for (int64_t b = 0; b < mb.batch; ++b) {
          std::vector<int32_t> t(mb.targets[0].begin() + b * mb.seq_len,
                                 mb.targets[0].begin() + (b + 1) * mb.seq_len);
          if (t[0] >= 0) windows.push_back(t);  // ignored windows have every target -1
          else CHECK(std::count(t.begin(), t.end(), -1) == mb.seq_len);
        }
      }
    }
    std::sort(windows.begin(), windows.end());
    return windows;
  };
  const auto one = counted(1);
  CHECK(one.size() == 10);
  CHECK(counted(2) == one);
  CHECK(counted(4) == one);
}
