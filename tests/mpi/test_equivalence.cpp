// Any parallel layout trains exactly what one process trains: 5 steps of the tiny model on the
// same global batch give the same losses (relative 1e-5) and, gathered by global parameter name,
// the same parameters (in bf16 and fp8: over the first update, see the last test). Every rank computes the single-process reference itself (same threads,
// so the same arithmetic), then runs the layout over the whole job and compares its own share.
// Replicas of a parameter (data-parallel copies, DualPipe's mirrored stages) must agree bitwise,
// and so must the balancing biases.
#include <catch2/catch.hpp>
#include <xxhash.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <string>

#include "core/trainer.hpp"
#include "mpi_env.hpp"

namespace {

constexpr int kSteps = 5;

core::Config tiny() {
  core::Config c;  // the built-in defaults are configs/tiny.yaml
  c.train.steps = kSteps;
  c.train.eval_every = 0;
  c.train.threads = 1;
  c.checkpoint.every = 0;
  return c;
}

struct Run {
  std::vector<core::StepMetrics> steps;
  int params_step = 0;  // the step after which eval_loss, parameters and biases were taken
  double eval_loss = 0;
  std::map<std::string, std::vector<float>> params;  // by global name (experts by slice name)
  std::map<std::string, std::vector<float>> biases;
  int filled = 0;  // weight-pass pieces run while the compute waited, over all steps
  int early = 0;   // of those, pieces run while their micro-batch's input pass was under way
  int lone = 0;    // of those, pieces run while a lone forward or backward waited
  int commit = 0;  // of those, pieces run while a commit waited for pipeline messages
};

void collect(core::Trainer& t, Run& r) {
  const core::ParamStore& ps = t.model().params();
  for (int id = 0; id < ps.size(); ++id) {
    const auto& spec = ps.spec(id);
    core::Tensor p = ps.param(id);
    const float* d = p.ptr<float>();
    if (spec.stack_first < 0) {
      r.params[spec.name].assign(d, d + p.numel());
    } else {
      const int64_t per = p.numel() / spec.shape[0];
      for (int64_t e = 0; e < spec.shape[0]; ++e)
        r.params[spec.slice_name(e)].assign(d + e * per, d + (e + 1) * per);
    }
  }
  for (int b = 0; b < ps.num_buffers(); ++b) {
    core::Tensor t2 = ps.buffer(b);
    r.biases[ps.buffer_name(b)].assign(t2.ptr<float>(), t2.ptr<float>() + t2.numel());
  }
}

// c.train.steps steps; the evaluation and the parameters are taken after step params_step
// (0: the last).
Run train(const core::Config& c, parallel::Communicator* world, int params_step = 0) {
  core::Context ctx = testing::context_on(world);
  core::Trainer t(c, ctx, "", false);
  Run r;
  r.params_step = params_step > 0 ? params_step : c.train.steps;
  for (int s = 0; s < c.train.steps; ++s) {
    r.steps.push_back(t.step());
    r.filled += t.last_run().filled_weight_pieces;
    r.early += t.last_run().early_weight_pieces;
    r.lone += t.last_run().lone_weight_pieces;
    r.commit += t.last_run().commit_weight_pieces;
    if (s + 1 == r.params_step) {
      r.eval_loss = t.evaluate();
      collect(t, r);
    }
  }
  // Every layout's pre-flight memory plan: parameters, gradients and optimizer state exactly,
  // the whole within 30% of what the rank holds after its steps.
  const core::MemoryPlan plan = t.memory_plan(), used = t.memory_used();
  INFO("rank " << ctx.rank << " plan: " << core::describe_memory(plan) << "; used: " << core::describe_memory(used));
  CHECK(plan.params == used.params);
  CHECK(plan.optimizer == used.optimizer);
  CHECK(static_cast<double>(plan.total()) == Approx(used.total()).epsilon(0.3));
  return r;
}

// The single-process run of a model (layouts do not change the model, so the parallel keys are
// reset before looking it up).
const Run& reference(core::Config c, int params_step) {
  static std::map<std::string, Run> cache;
  c.parallel = core::ParallelConfig{};
  const std::string key = core::to_yaml(c) + "\nparams_step: " + std::to_string(params_step);
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, train(c, nullptr, params_step)).first;
  return it->second;
}

double rel(double a, double b) { return std::fabs(a - b) / std::max(std::fabs(b), 1e-12); }

// Mismatches of this rank's run against the reference, and of replicas against each other.
// worst[0], worst[1]: the largest relative difference of a loss / of a parameter tensor.
int64_t compare(const Run& run, const Run& ref, parallel::Communicator& world,
                const std::string& what, double worst_seen[2]) {
  int64_t bad = 0;
  worst_seen[0] = std::max(worst_seen[0], rel(run.eval_loss, ref.eval_loss));
  if (rel(run.eval_loss, ref.eval_loss) > 1e-5) {
    ++bad;
    WARN(what << " eval loss " << run.eval_loss << " vs " << ref.eval_loss);
  }
  REQUIRE(run.steps.size() == ref.steps.size());
  for (size_t s = 0; s < run.steps.size(); ++s) {
    const auto &a = run.steps[s], &b = ref.steps[s];
    // The gradient norm is compared up to the parameters' step (its update shapes the next loss).
    const bool norm = static_cast<int>(s) < run.params_step;
    for (auto [name, x, y] :
         {std::tuple{"lm_loss", a.lm_loss, b.lm_loss},
          std::tuple{"mtp_loss", a.mtp_loss, b.mtp_loss},
          std::tuple{"aux_loss", a.aux_loss, b.aux_loss},
          std::tuple{"grad_norm", norm ? a.grad_norm : 0.0, norm ? b.grad_norm : 0.0}}) {
      worst_seen[0] = std::max(worst_seen[0], rel(x, y));
      if (rel(x, y) > 1e-5) {
        ++bad;
        WARN(what << " step " << s + 1 << " " << name << " " << x << " vs " << y);
      }
    }
  }
  for (const auto& [name, v] : run.params) {
    auto it = ref.params.find(name);
    if (it == ref.params.end() || it->second.size() != v.size()) {
      ++bad;
      WARN(what << ": " << name << " missing from the reference");
      continue;
    }
    // Relative difference of the tensor as a whole: sqrt(sum (a-b)^2 / sum b^2).
    double diff = 0, norm = 0, worst = 0;
    for (size_t i = 0; i < v.size(); ++i) {
      const double d = static_cast<double>(v[i]) - it->second[i];
      diff += d * d;
      norm += static_cast<double>(it->second[i]) * it->second[i];
      worst = std::max(worst, std::fabs(d));
    }
    const double r = std::sqrt(diff / std::max(norm, 1e-300));
    worst_seen[1] = std::max(worst_seen[1], r);
    if (r > 1e-5) {
      ++bad;
      WARN(what << ": " << name << " differs by " << r << " relative (largest element difference "
                << worst << ")");
    }
  }
  for (const auto& [name, v] : run.biases)
    if (ref.biases.at(name) != v) {
      ++bad;
      WARN(what << ": bias " << name << " differs");
    }
  // Replicas: every rank hashes each tensor it holds; equal names must hash equally everywhere.
  std::vector<double> mine;
  std::vector<std::string> names;
  for (const auto& [name, v] : run.params) {
    names.push_back(name);
    mine.push_back(static_cast<double>(XXH3_64bits(v.data(), v.size() * sizeof(float)) >> 12));
  }
  const int n = world.size();
  std::vector<double> counts(n);
  double count = static_cast<double>(mine.size());
  world.all_gather(core::Tensor::of(&count, {1}), core::Tensor::of(counts.data(), {n}))->wait();
  // Compare by sending (name hash, value hash) pairs around: every rank gathers all pairs.
  std::vector<double> pairs;
  for (size_t i = 0; i < names.size(); ++i) {
    pairs.push_back(static_cast<double>(XXH3_64bits(names[i].data(), names[i].size()) >> 12));
    pairs.push_back(mine[i]);
  }
  int64_t longest = 0;
  for (double c : counts) longest = std::max<int64_t>(longest, static_cast<int64_t>(c));
  pairs.resize(2 * longest, -1.0);
  std::vector<double> all(pairs.size() * n);
  world.all_gather(core::Tensor::of(pairs.data(), {static_cast<int64_t>(pairs.size())}),
                   core::Tensor::of(all.data(), {static_cast<int64_t>(all.size())}))->wait();
  std::map<double, double> seen;
  for (size_t i = 0; i + 1 < all.size(); i += 2) {
    if (all[i] < 0) continue;
    auto [it, fresh] = seen.emplace(all[i], all[i + 1]);
    if (!fresh && it->second != all[i + 1]) ++bad;
  }
  return bad;
}

// on: the communicator to train on (default the world; a copy with an emulated link).
Run check_layout(const std::string& what, core::Config c, int params_step = 0,
                 parallel::Communicator* on = nullptr) {
  parallel::Communicator& world = testing::mpi().world();
  // computed before the layout's run, the same on every rank
  const Run& ref = reference(c, params_step);
  Run run = train(c, on ? on : &world, params_step);
  INFO(what);
  double worst[2] = {0, 0};
  const int64_t bad = testing::sum_over(world, compare(run, ref, world, what, worst));
  world.all_reduce(core::Tensor::of(worst, {2}), parallel::ReduceOp::max)->wait();
  if (world.rank() == 0)
    std::printf("equivalence, %s: largest relative difference of a loss %.2e, of a parameter "
                "tensor %.2e\n", what.c_str(), worst[0], worst[1]);
  CHECK(bad == 0);
  return run;
}

}  // namespace

TEST_CASE("data and expert parallel layouts train exactly what one process trains", "[equivalence][dp]") {
  const int n = testing::mpi().world().size();
  for (int ep = 1; ep <= n; ep *= 2) {
    if (n % ep) continue;
    for (bool zero1 : {true, false}) {
      core::Config c = tiny();
      c.parallel.ep = ep;
      c.parallel.zero1 = zero1;
      check_layout("dp " + std::to_string(n) + " ep " + std::to_string(ep) + " zero1 " +
                       std::to_string(zero1),
                   c);
    }
  }
}

TEST_CASE("expert parallelism without overlap trains the same as with it", "[equivalence][dp]") {
  const int n = testing::mpi().world().size();
  core::Config c = tiny();
  c.parallel.ep = n;
  c.parallel.overlap = false;
  check_layout("dp " + std::to_string(n) + " ep " + std::to_string(n) + " overlap off", c);
}

TEST_CASE("over a slow link, weight passes run while pairs wait, and the training is the same",
          "[equivalence][dp]") {
  // Expert parallelism with overlap runs the sequential schedule with paired ends and deferred
  // weight passes; on an emulated 0.2 Gbit/s link every exchange is still travelling when the
  // next piece wants it, so the executor runs weight pieces meanwhile, including those of a
  // backward whose input pass is still running.
  const int n = testing::mpi().world().size();
  auto slow = testing::mpi().make_world("slow", 0.2, 20.0);
  core::Config c = tiny();
  c.parallel.ep = n;
  Run run = check_layout("dp " + std::to_string(n) + " ep " + std::to_string(n) + " on a slow link",
                         c, 0, slow.get());
  const int chunks = c.train.global_batch_size / (c.train.micro_batch_size * n);
  const int64_t filled = testing::sum_over(testing::mpi().world(), run.filled);
  const int64_t early = testing::sum_over(testing::mpi().world(), run.early);
  INFO("chunks " << chunks << ": " << filled << " weight pieces filled waits, " << early
                 << " of them during their own input pass");
  if (chunks >= 3) {
    // The pair (F2 & I0) waits while I0's layers finish one by one: their weight pieces run
    // before I0's input pass has ended.
    CHECK(filled > 0);
    CHECK(early > 0);
  }
}

TEST_CASE("pipeline layouts (dualpipe, dualpipev, 1f1b) train exactly what one process trains",
          "[equivalence][pp]") {
  const int n = testing::mpi().world().size();
  for (int pp = 2; pp <= n; pp *= 2) {
    if (n % pp) continue;
    const int dp = n / pp;
    for (const char* kind : {"dualpipe", "dualpipev", "1f1b"}) {
      core::Config c = tiny();
      c.parallel.pp = pp;
      c.parallel.schedule = kind;
      c.parallel.ep = dp;  // expert parallelism across the data-parallel ranks when there are some
      const int stages = std::string(kind) == "dualpipev" ? 2 * pp : pp;
      if (stages > c.model.num_layers) c.model.num_layers = stages;
      check_layout("pp " + std::to_string(pp) + " dp " + std::to_string(dp) + " ep " +
                       std::to_string(dp) + " " + kind,
                   c);
    }
  }
}

TEST_CASE("over a slow link, DualPipeV's pairs run deferred weight passes while they wait",
          "[equivalence][pp]") {
  // pp 2 x ep 2: the pairs of DualPipeV's main loop defer their backwards' weight passes by one
  // pair (the expert-parallel form of the schedule), and on an emulated 0.2 Gbit/s link the next
  // pair runs their pieces while its exchanges travel; so do the lone backwards of the drain
  // (with an older weight pass or their own finished layers) and the commits that wait for a
  // neighbour while weight passes are queued. The training stays the same.
  const int n = testing::mpi().world().size();
  if (n < 4) return;
  auto slow = testing::mpi().make_world("slow-pp", 0.2, 20.0);
  core::Config c = tiny();
  c.parallel.pp = 2;
  c.parallel.schedule = "dualpipev";
  c.parallel.ep = n / 2;
  if (c.model.num_layers < 4) c.model.num_layers = 4;
  Run run = check_layout("pp 2 dp " + std::to_string(n / 2) + " ep " + std::to_string(n / 2) +
                             " dualpipev on a slow link",
                         c, 0, slow.get());
  const int64_t filled = testing::sum_over(testing::mpi().world(), run.filled);
  const int64_t lone = testing::sum_over(testing::mpi().world(), run.lone);
  const int64_t commit = testing::sum_over(testing::mpi().world(), run.commit);
  INFO(filled << " weight pieces filled waits, " << lone << " in lone passes, " << commit
              << " in commits");
  CHECK(filled > 0);
  CHECK(lone > 0);
  CHECK(commit > 0);
  CHECK(lone + commit < filled);  // the rest ran inside pairs
}

TEST_CASE("bf16 and fp8 layouts train exactly what one process trains", "[equivalence][precision]") {
  // The dispatch payload is converted (FP8 with its scales, or BF16) before it leaves and the
  // combine rounded to BF16 in every layout, and the experts' FP8 weight-gradient tiles restart
  // at each source rank's rows: expert parallelism computes on the same values as one process.
  // Checked over the first update: the losses of steps 1 and 2 (computed with the updated
  // weights), the gradient norm, the parameters and the evaluation after step 1. Later steps part
  // at the precision's noise level, as much with ep 1 as with ep 2: a layout sums the
  // data-parallel gradients in another order, so its weights and activations differ from one
  // process's in the last FP32 bits, and a value that falls on the other side of a BF16 / FP8
  // rounding boundary moves by a whole BF16 / FP8 step (measured on the tiny model: gradient
  // norms 1e-5 apart from step 2 in bf16 and step 3 in fp8, losses about 1e-4 apart by step 5).
  const int n = testing::mpi().world().size();
  for (std::string precision : {"bf16", "fp8"})
    for (int ep = 1; ep <= n; ep *= 2) {
      if (n % ep) continue;
      core::Config c = tiny();
      c.train.steps = 2;
      c.train.precision = precision;
      c.parallel.ep = ep;
      check_layout(precision + " dp " + std::to_string(n) + " ep " + std::to_string(ep), c, 1);
    }
}
