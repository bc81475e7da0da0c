// Smoke training of the tiny CI config through the real binary: it must close at least 80% of
// the gap between the uniform loss ln V and the synthetic data's exact entropy floor, and leave
// the documented files behind. Also the bench subcommand's JSON line.
#include <catch2/catch.hpp>

#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

#include "run_binary.hpp"

using namespace testing;
using Catch::Matchers::Contains;

TEST_CASE("tiny config trains to within 20% of the gap above its entropy floor", "[smoke]") {
  std::string dir = temp_dir("smoke");
  auto r = run_flotilla("train --config " FLOTILLA_SOURCE_DIR "/configs/tiny.yaml --set train.log_every=25 --run-dir " + dir);
  INFO(r.output);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.output, Contains("gap closed"));

  std::istringstream lines(read_text(dir + "/metrics.jsonl"));
  std::string line;
  nlohmann::json last, first;
  int count = 0;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line);
    if (count++ == 0) first = j;
    last = j;
  }
  REQUIRE(count > 0);
  for (const char* key : {"step", "loss", "lm_loss", "mtp_loss", "aux_loss", "lr", "grad_norm",
                          "tokens", "tokens_per_s", "step_time_s", "max_vio", "entropy_floor"})
    CHECK(last.contains(key));
  REQUIRE(last.contains("eval_loss"));
  const double ln_v = std::log(256.0);
  const double floor = last["entropy_floor"].get<double>();
  const double eval = last["eval_loss"].get<double>();
  const double closed = (ln_v - eval) / (ln_v - floor);
  INFO("eval loss " << eval << ", floor " << floor << ", gap closed " << closed);
  CHECK(closed >= 0.8);
  CHECK(last["step"].get<int>() == 300);
  CHECK(std::fabs(first["lm_loss"].get<double>() - ln_v) < 0.3);  // starts near uniform

  // the resolved config is saved and loads again as the same run
  auto again = run_flotilla("train --config " + dir + "/config.yaml --set train.steps=1 --set optim.warmup_steps=0 --set train.eval_every=0 --run-dir " + dir + "/again");
  INFO(again.output);
  CHECK(again.code == 0);
  // one CSV row per MoE layer per logged step: 3 main MoE layers + 1 MTP block, 12 logged steps
  std::istringstream csv(read_text(dir + "/expert_load.csv"));
  int rows = 0;
  while (std::getline(csv, line)) ++rows;
  CHECK(rows == 1 + 4 * 12);
}

TEST_CASE("bench prints one JSON line with throughput, FLOPs and MFU", "[smoke]") {
  auto r = run_flotilla("bench --config " FLOTILLA_SOURCE_DIR "/configs/tiny.yaml --steps 2 --warmup 1");
  INFO(r.output);
  REQUIRE(r.code == 0);
  auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  for (const char* key : {"tokens_per_s", "step_time_s", "model_flops_per_token",
                          "gemm_peak_gflops", "mfu", "peak_rss_mb"})
    CHECK(j.contains(key));
  CHECK(j["tokens_per_s"].get<double>() > 0);
  CHECK(j["mfu"].get<double>() > 0);
  CHECK(j["mfu"].get<double>() < 1);
}
