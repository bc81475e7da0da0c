// Helpers shared by the core/data tests: a small synthetic config, window reads, and the
// message of an expected typed error.
#pragma once

#include <catch2/catch.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/data/dataset.hpp"

namespace data_test {

inline core::Config small_config() {
  core::Config c;
  c.run.seed = 42;
  c.model.vocab_size = 64;
  c.model.mtp.depth = 1;
  c.train.seq_len = 32;
  c.train.micro_batch_size = 2;
  c.train.global_batch_size = 8;
  c.data.kind = "synthetic";
  c.data.synthetic.branching = 4;
  c.data.synthetic.period = 0;
  return c;
}

inline std::vector<int32_t> window_of(const core::data::Dataset& ds, core::data::Split s,
                                      int64_t i) {
  std::vector<int32_t> w(static_cast<size_t>(ds.window_len()));
  ds.window(s, i, w.data());
  return w;
}

// The message of the E thrown by f (fails the test if none is thrown).
template <class E>
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  FAIL("expected an exception, none was thrown");
  return {};
}

}  // namespace data_test
