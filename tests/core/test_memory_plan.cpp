// The pre-flight memory plan against what the trainer really holds after steps: parameters,
// gradients and optimizer state exactly, activations within 30% (the plan mirrors every slot
// allocation; measured differences are about 1%), and the refusal of a plan that cannot fit.
#include <catch2/catch.hpp>

#include <string>

#include "core/error.hpp"
#include "core/memory_plan.hpp"
#include "core/trainer.hpp"
#include "trainer_config.hpp"

using Catch::Matchers::Contains;

namespace {

// The tiny config's model and batch shapes (configs/tiny.yaml), a few steps.
core::Config tiny_shapes(const std::string& precision) {
  core::Config c;  // the defaults are configs/tiny.yaml's model
  c.train.steps = 2;
  c.train.eval_every = 0;
  c.train.global_batch_size = 8;
  c.train.precision = precision;
  c.optim.warmup_steps = 1;
  c.run.tensorboard = false;
  return c;
}

void check_plan_against_use(const core::Config& c) {
  core::Context ctx;
  core::Trainer t(c, ctx, "", false);
  for (int s = 0; s < c.train.steps; ++s) t.step();
  const core::MemoryPlan plan = t.memory_plan(), used = t.memory_used();
  INFO("plan: " << core::describe_memory(plan) << "\nused: " << core::describe_memory(used));
  CHECK(plan.param_elements == used.param_elements);
  CHECK(plan.params == used.params);
  CHECK(plan.grads == used.grads);
  CHECK(plan.optimizer == used.optimizer);
  CHECK(plan.exchange == 0);
  CHECK(static_cast<double>(plan.activations) == Approx(used.activations).epsilon(0.3));
  CHECK(static_cast<double>(plan.total()) == Approx(used.total()).epsilon(0.3));
  // the table of every pipeline rank holds this rank's plan
  CHECK(t.memory_plans().at(0).total() == plan.total());
}

}  // namespace

TEST_CASE("the memory plan of the tiny model matches its measured memory (fp32, bf16, fp8)", "[memory]") {
  for (const char* p : {"fp32", "bf16", "fp8"}) {
    INFO("precision " << p);
    check_plan_against_use(tiny_shapes(p));
  }
}

TEST_CASE("the memory plan follows the model's shapes: MLA with a query rank, bf16 moments, no MTP", "[memory]") {
  core::Config c = tiny_shapes("fp32");
  c.model.attention.q_lora_rank = 48;
  c.model.mtp.depth = 0;
  c.optim.moment_dtype = "bf16";
  check_plan_against_use(c);
  core::Config d = testing::small_trainer_config();  // one dense layer only
  d.model.first_dense_layers = d.model.num_layers;
  check_plan_against_use(d);
}

TEST_CASE("a plan larger than the available memory is refused with the keys to change", "[memory]") {
  core::Config c = tiny_shapes("fp32");
  core::MemoryPlan acts;
  acts.params = acts.grads = 1 << 20;
  acts.optimizer = 2 << 20;
  acts.activations = 100 << 20;
  CHECK_NOTHROW(core::check_memory_plan(c, acts, 1, int64_t{1} << 30));
  CHECK_NOTHROW(core::check_memory_plan(c, acts, 1, 0));  // unknown: not checked
  try {
    core::check_memory_plan(c, acts, 4, 300 << 20);  // fits once, not four times on one node
    FAIL("a plan of 4 x 104 MiB fitted in 300 MiB");
  } catch (const core::ConfigError& e) {
    CHECK_THAT(e.what(), Contains("4 rank(s)") && Contains("train.micro_batch_size") &&
                             Contains("train.seq_len") && Contains("runtime.memory_limit_gb") &&
                             Contains("parallel.schedule"));
  }
  // Without a pipeline, expert parallelism with overlap is what keeps 4 micro-batches in flight.
  core::Config ep = c;
  ep.parallel.ep = 2;
  CHECK_THROWS_WITH(core::check_memory_plan(ep, acts, 4, 300 << 20),
                    Contains("parallel.overlap=false") && !Contains("parallel.schedule"));
  core::MemoryPlan state = acts;
  state.params = state.grads = 200 << 20;
  state.activations = 1 << 20;
  try {
    core::check_memory_plan(c, state, 1, 300 << 20);
    FAIL("a plan of 404 MiB fitted in 300 MiB");
  } catch (const core::ConfigError& e) {
    CHECK_THAT(e.what(), Contains("parallel.pp") && Contains("parallel.zero1") &&
                             !Contains("train.micro_batch_size"));
  }
}

TEST_CASE("a trainer whose plan exceeds runtime.memory_limit_gb stops before allocating", "[memory]") {
  core::Config c = tiny_shapes("fp32");
  c.runtime.memory_limit_gb = 0.01;  // 10 MiB for a plan of about 80
  core::Context ctx;
  CHECK_THROWS_AS(core::Trainer(c, ctx, "", false), core::ConfigError);
  CHECK(core::available_memory(0.5) == int64_t{1} << 29);
  CHECK(core::available_memory(0) > 0);  // /proc/meminfo on Linux
}
