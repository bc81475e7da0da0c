// `flotilla bench`: warm-up, timed training steps, and one JSON line with throughput and MFU
// against a GEMM peak measured on the spot with the same threads.
#include <fmt/format.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/config.hpp"
#include "core/context.hpp"
#include "core/error.hpp"
#include "core/trainer.hpp"
#include "kernels/ops.hpp"
#include "launch/commands.hpp"
#include "launch/environment.hpp"
#include "parallel/communicator.hpp"
#include "parallel/link_model.hpp"

namespace launch {
namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Best of several runs of a square FP32 GEMM large enough to reach the machine's sustained rate.
double measure_gemm_peak_gflops(core::Context& ctx) {
  const int64_t n = 2048;
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
  auto A = core::Tensor::of(a.data(), {n, n}), B = core::Tensor::of(b.data(), {n, n}),
       C = core::Tensor::of(c.data(), {n, n});
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    kernels::gemm(ctx, A, false, B, true, C);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 2.0 * n * n * n / s / 1e9);
  }
  return best;
}

// The step --trace records: the last timed step over the link. The first timed steps can still
// grow an activation slot (routing sends a rank more rows than ever before): hundreds of
// thousands of page faults and seconds of kernel time that a trace would show as slower
// compute, which the steady state does not have.
int64_t traced_step(const BenchArgs& args) {
  const int64_t last = args.steps - 1;  // timed step index i of the last pair or step
  if (!args.against_free_link) return args.warmup + args.steps;
  // Pair i takes steps warmup + 2i + 1 and + 2; the link step comes first when i is even.
  return args.warmup + 2 * last + (last % 2 == 0 ? 1 : 2);
}

}  // namespace

int bench_body(const BenchArgs& args, const core::Config& cfg, Runtime& rt);

int run_bench(const BenchArgs& given) {
  BenchArgs args = given;
  if (args.a2a_ratio > 0) args.against_free_link = true;
  core::Config cfg = core::load_config(args.config, args.overrides);
  auto rt = start_runtime(cfg);
  return guarded(*rt, [&] { return bench_body(args, cfg, *rt); });
}

int bench_body(const BenchArgs& args, const core::Config& cfg, Runtime& rt) {
  core::Context& ctx = rt.ctx;

  const bool a2a_on_link =
      parallel::LinkModel::parse_traffic(cfg.parallel.link.traffic) &
      (1u << static_cast<unsigned>(parallel::Traffic::expert_a2a));
  if (args.a2a_ratio > 0 && (ctx.world_size < 2 || cfg.parallel.ep < 2 || !a2a_on_link ||
                             args.warmup < 1))
    FLOT_THROW(core::ConfigError,
               "bench --a2a-ratio sets the emulated link from the all-to-all and computation of "
               "the warm-up steps, and this run cannot measure them ({} rank(s), parallel.ep = {}, "
               "parallel.link.traffic = '{}', --warmup {}); launch more than one rank with "
               "mpirun, set parallel.ep > 1, let the link carry expert_a2a and warm up for at "
               "least one step",
               ctx.world_size, cfg.parallel.ep, cfg.parallel.link.traffic, args.warmup);
  if (args.a2a_ratio <= 0 && args.against_free_link &&
      (cfg.parallel.link.bandwidth_gbps <= 0 || ctx.world_size < 2))
    FLOT_THROW(core::ConfigError,
               "bench --against-free-link compares steps over an emulated link with steps without "
               "it, and this run has none (parallel.link.bandwidth_gbps = {}, {} rank(s)); set "
               "parallel.link.bandwidth_gbps > 0 (or use --a2a-ratio) and launch more than one "
               "rank with mpirun",
               cfg.parallel.link.bandwidth_gbps, ctx.world_size);
  core::Trainer trainer(cfg, ctx, /*run_dir=*/"", /*log=*/false);
  if (!args.trace.empty()) trainer.trace_step(traced_step(args), args.trace);
  // --a2a-ratio: every link step gets the bandwidth at which the exchanges of the latest step
  // without the link, each paced by its larger side, would last a2a_ratio times that step's
  // computation. The machine's speed drifts and the routing evens out over the first steps, so
  // the link follows them pair by pair; the first link step is set from the warm-up (run without
  // the link): its last step's bytes over the least compute of the steps after the first (the
  // first grows activation slots). The metrics are the slowest rank's, the same on every rank,
  // so every rank sets the same link.
  double gbps = cfg.parallel.link.bandwidth_gbps, ref_paced = 0, ref_cpu = 0;
  std::vector<double> gbps_used;
  auto set_link = [&] {
    if (args.a2a_ratio <= 0) return;
    if (ref_paced <= 0 || ref_cpu <= 0)
      FLOT_THROW(core::ConfigError,
                 "bench --a2a-ratio: a step without the link exchanged {} bytes in {} s of "
                 "computation, nothing to set a link from",
                 ref_paced, ref_cpu);
    gbps = ref_paced * 8 / (args.a2a_ratio * ref_cpu) / 1e9;
    ctx.comm->set_link_bandwidth(gbps);
    gbps_used.push_back(gbps);
  };
  if (args.a2a_ratio > 0) ctx.comm->set_link_suspended(true);
  for (int i = 0; i < args.warmup; ++i) {
    const core::StepMetrics m = trainer.step();
    ref_paced = static_cast<double>(m.a2a_paced_bytes.value_or(0));
    if (i <= 1 || m.compute_cpu_s < ref_cpu) ref_cpu = m.compute_cpu_s;
  }
  if (args.a2a_ratio > 0) ctx.comm->set_link_suspended(false);
  std::vector<double> times, fwd, bwd, opt, a2a, comm, exposed, bubble, a2a_s, a2a_exposed, paced,
      comm_cpu;
  double last_loss = 0;
  int peak_act = 0;
  // CPU time of the timed steps (every thread of this process): unlike wall time, barely moved
  // by other processes sharing the cores.
  const double cpu0 = core::process_cpu_seconds();
  // With --against-free-link: the free-link step of each pair, and link step / free step per pair.
  std::vector<double> free_times, slowdowns;
  // The compute's CPU seconds of the steps without a link (all of them without
  // --against-free-link): the "computation time" the 1:1 ratio is set against.
  std::vector<double> compute_cpu, link_compute_cpu;
  // The free steps' waits: what the compute waits for without a link (peers reaching an exchange
  // late, pipeline neighbours, ranks sharing cores), which the link steps' waits include too.
  std::vector<double> free_exposed, free_a2a_exposed, free_comm_cpu;
  auto free_step = [&] {
    ctx.comm->set_link_suspended(true);
    const core::StepMetrics m = trainer.step();
    free_times.push_back(m.step_time_s);
    compute_cpu.push_back(m.compute_cpu_s);
    if (m.exposed_comm_s) free_exposed.push_back(*m.exposed_comm_s);
    if (m.a2a_exposed_s) free_a2a_exposed.push_back(*m.a2a_exposed_s);
    if (m.comm_cpu_s) free_comm_cpu.push_back(*m.comm_cpu_s);
    ref_paced = static_cast<double>(m.a2a_paced_bytes.value_or(0));
    ref_cpu = m.compute_cpu_s;
    ctx.comm->set_link_suspended(false);
  };
  // Per link step: its all-to-all on the link alone, its paced bytes over the bandwidth it had.
  std::vector<double> a2a_link;
  for (int i = 0; i < args.steps; ++i) {
    // Free step first in every other pair, so that a drifting machine favours neither.
    if (args.against_free_link && i % 2 == 1) free_step();
    set_link();
    core::StepMetrics m = trainer.step();
    if (args.against_free_link) {
      if (i % 2 == 0) free_step();
      slowdowns.push_back(m.step_time_s / free_times.back());
    }
    times.push_back(m.step_time_s);
    (args.against_free_link ? link_compute_cpu : compute_cpu).push_back(m.compute_cpu_s);
    fwd.push_back(m.forward_s);
    bwd.push_back(m.backward_s);
    opt.push_back(m.optimizer_s);
    if (m.a2a_bytes) a2a.push_back(static_cast<double>(*m.a2a_bytes));
    if (m.comm_s) comm.push_back(*m.comm_s);
    if (m.comm_cpu_s) comm_cpu.push_back(*m.comm_cpu_s);
    if (m.exposed_comm_s) exposed.push_back(*m.exposed_comm_s);
    if (m.bubble_fraction) bubble.push_back(*m.bubble_fraction);
    if (m.a2a_s) a2a_s.push_back(*m.a2a_s);
    if (m.a2a_exposed_s) a2a_exposed.push_back(*m.a2a_exposed_s);
    if (m.a2a_paced_bytes) paced.push_back(static_cast<double>(*m.a2a_paced_bytes));
    if (m.a2a_paced_bytes && gbps > 0)
      a2a_link.push_back(static_cast<double>(*m.a2a_paced_bytes) * 8 / (gbps * 1e9));
    peak_act = std::max(peak_act, m.peak_activations);
    last_loss = m.loss;
  }
  const double cpu_per_step =
      (core::process_cpu_seconds() - cpu0) / (args.steps * (args.against_free_link ? 2 : 1));
  const double step_time = median(times);
  const double tokens_per_s = trainer.tokens_per_step() / step_time;
  const double flops_per_token = trainer.model().flops_per_token();
  const double peak = measure_gemm_peak_gflops(ctx);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);

  nlohmann::json j;
  j["config"] = cfg.run.name;
  j["ranks"] = ctx.world_size;
  j["layout"] = trainer.grid().describe();
  j["schedule"] = parallel::schedule_kind_name(trainer.schedule().kind);
  j["threads"] = ctx.threads;
  j["steps"] = args.steps;
  j["tokens_per_step"] = trainer.tokens_per_step();
  j["tokens_per_s"] = tokens_per_s;
  j["step_time_s"] = step_time;
  j["step_time_min_s"] = *std::min_element(times.begin(), times.end());
  j["step_time_max_s"] = *std::max_element(times.begin(), times.end());
  j["cpu_time_per_step_s"] = cpu_per_step;
  j["forward_s"] = median(fwd);
  j["backward_s"] = median(bwd);
  j["optimizer_s"] = median(opt);
  j["model_flops_per_token"] = flops_per_token;
  j["achieved_gflops"] = tokens_per_s * flops_per_token / 1e9;
  // The peak is one rank's (its threads); the job's is every rank's together.
  j["gemm_peak_gflops"] = peak;
  j["mfu"] = tokens_per_s * flops_per_token / (peak * 1e9 * ctx.world_size);
  j["peak_rss_mb"] = ru.ru_maxrss / 1024.0;
  j["peak_activations"] = peak_act;
  j["params_mb"] = trainer.model().params().bytes_params() / 1048576.0;
  j["optimizer_mb"] = trainer.optimizer().bytes() / 1048576.0;  // this rank's (a ZeRO-1 shard)
  j["activations_mb"] = trainer.model().activation_bytes() / 1048576.0;
  // The pre-flight plan of this rank beside what it measured (docs/usage.md, "Memory").
  j["memory_plan_mb"] = trainer.memory_plan().total() / 1048576.0;
  j["memory_used_mb"] = trainer.memory_used().total() / 1048576.0;
  if (!a2a.empty()) j["a2a_bytes"] = median(a2a);
  if (!comm.empty()) j["comm_s"] = median(comm);
  if (!comm_cpu.empty()) j["comm_cpu_s"] = median(comm_cpu);
  if (!exposed.empty()) j["exposed_comm_s"] = median(exposed);
  if (!bubble.empty()) j["bubble_fraction"] = median(bubble);
  if (!a2a_s.empty()) j["a2a_s"] = median(a2a_s);
  if (!a2a_exposed.empty()) j["a2a_exposed_s"] = median(a2a_exposed);
  if (!paced.empty()) j["a2a_paced_bytes"] = median(paced);
  j["link_gbps"] = gbps_used.empty() ? gbps : median(gbps_used);
  if (!gbps_used.empty()) {
    j["a2a_ratio_target"] = args.a2a_ratio;
    j["link_gbps_min"] = *std::min_element(gbps_used.begin(), gbps_used.end());
    j["link_gbps_max"] = *std::max_element(gbps_used.begin(), gbps_used.end());
  }
  // The step's all-to-all on the emulated link with nothing else on it: each exchange as long as
  // its larger side takes (the 1:1 ratio of docs/performance.md sets this against the compute).
  j["compute_cpu_s"] = median(compute_cpu);
  if (!a2a_link.empty() && a2a_on_link) {
    j["a2a_link_s"] = median(a2a_link);
    // Against the compute's CPU time rather than the free step's wall time: with more ranks than
    // cores a rank computes for only part of each step, and the wall time would set the link
    // against every rank sharing its core.
    j["a2a_compute_ratio"] = j["a2a_link_s"].get<double>() / median(compute_cpu);
  }
  if (args.against_free_link) {
    // step_time_s and the communication figures above are the link steps'.
    j["free_link_step_time_s"] = median(free_times);
    j["link_slowdown"] = median(slowdowns);
    // The same computation's CPU time over the link: above compute_cpu_s when the communication
    // threads' wake-ups (sharing the cores) or page faults slow the compute itself.
    j["link_compute_cpu_s"] = median(link_compute_cpu);
    if (!free_exposed.empty()) j["free_link_exposed_comm_s"] = median(free_exposed);
    if (!free_a2a_exposed.empty()) j["free_link_a2a_exposed_s"] = median(free_a2a_exposed);
    if (!free_comm_cpu.empty()) j["free_link_comm_cpu_s"] = median(free_comm_cpu);
    if (j.contains("a2a_link_s"))
      j["a2a_link_ratio"] = j["a2a_link_s"].get<double>() / median(free_times);
  }
  j["overlap"] = cfg.parallel.overlap;
  j["loss"] = last_loss;
  if (ctx.rank == 0) fmt::print("{}\n", j.dump());
  return 0;
}

}  // namespace launch
