// Checkpoints under mpirun: exact resume in a multi-rank layout (bitwise), and resharding: a
// checkpoint written by one layout (data parallel with ZeRO-1 shards that cut through tensors,
// experts spread over ep ranks) resumed by other layouts and by one process, giving the
// uninterrupted single-process run's next-step loss to float32 rounding. Every element is
// stored once whatever the layout.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/checkpoint/collective.hpp"
#include "core/checkpoint/reader.hpp"
#include "core/trainer.hpp"
#include "mpi_env.hpp"

namespace {

constexpr int kSteps = 3;  // steps before the save

core::Config tiny() {
  core::Config c;  // the built-in defaults are configs/tiny.yaml
  c.train.steps = 2 * kSteps;
  c.train.seq_len = 32;
  c.train.eval_every = 0;
  c.train.threads = 1;
  c.data.synthetic.period = 0;
  c.checkpoint.every = 0;
  return c;
}

// A directory every rank names alike (rank 0's pid), emptied first.
std::string shared_dir(parallel::Communicator& world, const std::string& name) {
  const double pid = core::checkpoint::from_rank0(&world, static_cast<double>(::getpid()));
  const std::string d = "/tmp/flotilla-mpi-" + name + "-" + std::to_string(static_cast<long>(pid));
  if (world.rank() == 0) std::filesystem::remove_all(d);
  world.barrier();
  return d;
}

std::string describe(const core::Config& c, int world) {
  return "pp " + std::to_string(c.parallel.pp) + " dp " + std::to_string(world / c.parallel.pp) +
         " ep " + std::to_string(c.parallel.ep) + " zero1 " + std::to_string(c.parallel.zero1) +
         (c.parallel.pp > 1 ? " " + c.parallel.schedule : std::string());
}

std::vector<std::byte> state_of(core::Trainer& t) {
  std::vector<std::byte> out;
  const auto& ps = t.model().params();
  std::vector<core::Tensor> parts{ps.flat_params(), t.optimizer().moment1(),
                                  t.optimizer().moment2()};
  for (int b = 0; b < ps.num_buffers(); ++b) parts.push_back(ps.buffer(b));
  for (const core::Tensor& x : parts) {
    const auto* p = static_cast<const std::byte*>(x.data);
    out.insert(out.end(), p, p + x.bytes());
  }
  return out;
}

double rel(double a, double b) {
  return std::fabs(a - b) / std::max(std::fabs(b), 1e-12);
}

// The single-process run of the same config: its losses of steps 1..2 kSteps.
const std::vector<core::StepMetrics>& reference() {
  static const std::vector<core::StepMetrics> ref = [] {
    core::Context ctx = testing::context_on(nullptr);
    core::Trainer t(tiny(), ctx, "", false);
    std::vector<core::StepMetrics> m;
    for (int s = 0; s < 2 * kSteps; ++s) m.push_back(t.step());
    return m;
  }();
  return ref;
}

core::Config layout(int pp, const char* schedule, int ep, bool zero1) {
  core::Config c = tiny();
  c.parallel.pp = pp;
  c.parallel.schedule = schedule;
  c.parallel.ep = ep;
  c.parallel.zero1 = zero1;
  return c;
}

}  // namespace

TEST_CASE("exact resume under mpirun: N steps, save, resume, N steps equals 2N steps bitwise",
          "[checkpoint]") {
  parallel::Communicator& world = testing::mpi().world();
  const int n = world.size();
  for (const core::Config& c : {layout(1, "dualpipev", 1, true), layout(1, "dualpipev", n, true),
                                layout(2, "dualpipe", n / 2, true)}) {
    INFO(describe(c, n));
    core::Context ctx = testing::context_on(&world);
    core::Trainer whole(c, ctx, "", false);
    std::vector<core::StepMetrics> ref;
    for (int s = 0; s < 2 * kSteps; ++s) ref.push_back(whole.step());
    const std::string root = shared_dir(world, "exact");
    std::string saved;
    {
      core::Trainer first(c, ctx, "", false);
      for (int s = 0; s < kSteps; ++s) first.step();
      saved = first.save_checkpoint(root).path;
    }
    core::Trainer second(c, ctx, "", false);
    second.resume_from(saved);
    int64_t bad = 0;
    for (int s = kSteps; s < 2 * kSteps; ++s) {
      const core::StepMetrics m = second.step();
      bad +=
          m.loss != ref[s].loss || m.grad_norm != ref[s].grad_norm || m.aux_loss != ref[s].aux_loss;
    }
    bad += state_of(second) != state_of(whole);  // parameters, moments, biases of this rank
    CHECK(testing::sum_over(world, bad) == 0);
    world.barrier();
    if (world.rank() == 0) std::filesystem::remove_all(root);
  }
}

namespace {

// Writes a checkpoint after kSteps with `written` on the whole job, then resumes it with every
// layout of `readers` and in one process: the next step must match the single-process run.
void reshard_from(const core::Config& written, const std::vector<core::Config>& readers) {
  parallel::Communicator& world = testing::mpi().world();
  const int n = world.size();
  const auto& ref = reference();
  const std::string root = shared_dir(world, "reshard");
  std::string path;
  {
    core::Context ctx = testing::context_on(&world);
    core::Trainer t(written, ctx, "", false);
    for (int s = 0; s < kSteps; ++s) t.step();
    path = t.save_checkpoint(root).path;
  }
  // Each element once: the checkpoint stores as many elements as the model has, whichever ranks
  // held copies (data-parallel replicas, DualPipe's mirrored stages, 1F1B's two embeddings).
  int64_t bad = 0;
  {
    core::checkpoint::CheckpointReader r(path);
    core::Context ctx = testing::context_on(nullptr);
    core::Trainer single(tiny(), ctx, "", false);
    const int64_t model = single.model().params().numel_unpadded();
    for (const char* kind :
         {core::checkpoint::kParam, core::checkpoint::kExpAvg, core::checkpoint::kExpAvgSq})
      if (r.stored_elements(kind) != model) {
        ++bad;
        WARN(describe(written, n) << ": " << r.stored_elements(kind) << " elements of " << kind
                                  << " stored, the model has " << model);
      }
    bad += r.manifest().files.size() != static_cast<size_t>(n) + 1;
  }
  double worst = 0;
  auto check_next = [&](const std::string& what, const core::StepMetrics& m) {
    const double d =
        std::max({rel(m.lm_loss, ref[kSteps].lm_loss), rel(m.mtp_loss, ref[kSteps].mtp_loss),
                  rel(m.grad_norm, ref[kSteps].grad_norm)});
    worst = std::max(worst, d);
    if (d > 1e-5 || m.step != kSteps + 1) {
      ++bad;
      WARN(describe(written, n) << " -> " << what << ": step " << m.step << " lm loss " << m.lm_loss
                                << " vs " << ref[kSteps].lm_loss);
    }
  };
  for (const core::Config& c : readers) {
    core::Context ctx = testing::context_on(&world);
    core::Trainer t(c, ctx, "", false);
    t.resume_from(path);
    check_next(describe(c, n), t.step());
  }
  {  // one process (every rank on its own)
    core::Context ctx = testing::context_on(nullptr);
    core::Trainer t(tiny(), ctx, "", false);
    t.resume_from(path);
    check_next("one process", t.step());
  }
  world.all_reduce(core::Tensor::of(&worst, {1}), parallel::ReduceOp::max)->wait();
  if (world.rank() == 0)
    std::printf(
        "reshard from %s on %d ranks: largest relative difference of the next step's "
        "losses and gradient norm %.2e\n",
        describe(written, n).c_str(), n, worst);
  CHECK(testing::sum_over(world, bad) == 0);
  world.barrier();
  if (world.rank() == 0) std::filesystem::remove_all(root);
}

}  // namespace

TEST_CASE("a checkpoint of a data and expert parallel layout resumes under other layouts",
          "[checkpoint]") {
  const int n = testing::mpi().world().size();
  reshard_from(layout(1, "dualpipev", 2, true),
               {layout(1, "dualpipev", 1, false), layout(1, "dualpipev", n, false),
                layout(1, "dualpipev", n, true), layout(2, "dualpipev", n / 2, true),
                layout(2, "1f1b", 1, false)});
}

TEST_CASE("a checkpoint of a pipeline layout resumes without the pipeline and in another one",
          "[checkpoint]") {
  const int n = testing::mpi().world().size();
  for (const char* kind : {"dualpipe", "1f1b"})
    reshard_from(layout(2, kind, n / 2, true),
                 {layout(1, "dualpipev", n, true), layout(1, "dualpipev", 1, false),
                  layout(2, "dualpipev", 1, true)});
}
