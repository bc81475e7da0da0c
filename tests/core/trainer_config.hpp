// The small trainer config that the trainer and checkpoint tests share: the tiny layer-test
// model (tiny_model) with a 32-token vocabulary, 8-token sequences, 4 micro-batches of 2 per step.
#pragma once

#include "core/config.hpp"
#include "layer_harness.hpp"

namespace testing {

inline core::Config small_trainer_config() {
  core::Config c;
  c.model = testing::tiny_model();
  c.model.vocab_size = 32;
  c.model.init_std = 0.05;
  c.train.seq_len = 8;
  c.train.micro_batch_size = 2;
  c.train.global_batch_size = 8;
  c.train.steps = 4;
  c.train.eval_every = 0;
  c.optim.warmup_steps = 1;
  c.data.synthetic.branching = 4;
  return c;
}

}  // namespace testing
