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
#include "core/trainer.hpp"
#include "kernels/ops.hpp"
#include "launch/commands.hpp"
#include "launch/environment.hpp"
#include "parallel/communicator.hpp"

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

}  // namespace

int run_bench(const BenchArgs& args) {
  core::Config cfg = core::load_config(args.config, args.overrides);
  auto rt = start_runtime(cfg);
  core::Context& ctx = rt->ctx;

  core::Trainer trainer(cfg, ctx, /*run_dir=*/"", /*log=*/false);
  for (int i = 0; i < args.warmup; ++i) trainer.step();
  std::vector<double> times, fwd, bwd, opt;
  double last_loss = 0;
  for (int i = 0; i < args.steps; ++i) {
    core::StepMetrics m = trainer.step();
    times.push_back(m.step_time_s);
    fwd.push_back(m.forward_s);
    bwd.push_back(m.backward_s);
    opt.push_back(m.optimizer_s);
    last_loss = m.loss;
  }
  const double step_time = median(times);
  const double tokens_per_s = trainer.tokens_per_step() / step_time;
  const double flops_per_token = trainer.model().flops_per_token();
  const double peak = measure_gemm_peak_gflops(ctx);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);

  nlohmann::json j;
  j["config"] = cfg.run.name;
  j["threads"] = ctx.threads;
  j["steps"] = args.steps;
  j["tokens_per_step"] = trainer.tokens_per_step();
  j["tokens_per_s"] = tokens_per_s;
  j["step_time_s"] = step_time;
  j["step_time_min_s"] = *std::min_element(times.begin(), times.end());
  j["step_time_max_s"] = *std::max_element(times.begin(), times.end());
  j["forward_s"] = median(fwd);
  j["backward_s"] = median(bwd);
  j["optimizer_s"] = median(opt);
  j["model_flops_per_token"] = flops_per_token;
  j["achieved_gflops"] = tokens_per_s * flops_per_token / 1e9;
  j["gemm_peak_gflops"] = peak;
  j["mfu"] = tokens_per_s * flops_per_token / (peak * 1e9);
  j["peak_rss_mb"] = ru.ru_maxrss / 1024.0;
  j["loss"] = last_loss;
  fmt::print("{}\n", j.dump());
  return 0;
}

}  // namespace launch
