// The command line as users meet it: help, exit codes and messages for bad input.
#include <catch2/catch.hpp>
#include <unistd.h>

#include <fstream>

#include "run_binary.hpp"

using namespace testing;
using Catch::Matchers::Contains;

TEST_CASE("help is available for the binary and every subcommand", "[cli]") {
  for (std::string args : {"--help", "train --help", "bench --help"}) {
    auto r = run_flotilla(args);
    INFO(args << "\n" << r.output);
    CHECK(r.code == 0);
    CHECK_THAT(r.output, Contains("--config"));
  }
  auto r = run_flotilla("");
  CHECK(r.code == 2);
  auto v = run_flotilla("--version");
  CHECK(v.code == 0);
  CHECK_THAT(v.output, Contains("flotilla"));
}

TEST_CASE("an unknown key in a config file fails with file:line:column and exit code 2", "[cli]") {
  std::string dir = temp_dir("cli-unknown");
  std::ofstream(dir + "/bad.yaml") << "run:\n  name: x\nmodel:\n  hidden_sise: 64\n";
  auto r = run_flotilla("train --config " + dir + "/bad.yaml --run-dir " + dir + "/run");
  INFO(r.output);
  CHECK(r.code == 2);
  CHECK_THAT(r.output, Contains("bad.yaml:4:3") && Contains("model.hidden_sise"));
  CHECK_THAT(r.output, Contains("hidden_size"));  // the suggestion
}

TEST_CASE("a wrong type or an impossible combination fails with exit code 2 before training", "[cli]") {
  std::string dir = temp_dir("cli-bad");
  auto r = run_flotilla("train --set train.steps=many --run-dir " + dir);
  INFO(r.output);
  CHECK(r.code == 2);
  CHECK_THAT(r.output, Contains("train.steps"));
  auto c = run_flotilla("train --set model.moe.experts_per_token=9 --run-dir " + dir);
  INFO(c.output);
  CHECK(c.code == 2);
  CHECK_THAT(c.output, Contains("experts_per_token"));
  CHECK_THAT(c.output, !Contains("step 1/"));
}

TEST_CASE("settings this build cannot run yet are refused with the key and exit code 2", "[cli]") {
  std::string dir = temp_dir("cli-unsupported");
  auto d = run_flotilla("train --set runtime.device=cuda --set train.precision=fp8 --run-dir " + dir);
  INFO(d.output);
  CHECK(d.code == 2);
  CHECK_THAT(d.output, Contains("runtime.device"));
  CHECK_THAT(d.output, !Contains("train.precision"));  // fp8 runs on the CPU now
}

TEST_CASE("a run whose memory plan does not fit stops with exit code 2 and the keys to change", "[cli]") {
  std::string dir = temp_dir("cli-memory");
  auto r = run_flotilla("train --set runtime.memory_limit_gb=0.01 --set train.steps=2 --run-dir " + dir);
  INFO(r.output);
  CHECK(r.code == 2);
  CHECK_THAT(r.output, Contains("memory plan does not fit") && Contains("train.micro_batch_size"));
  CHECK_THAT(r.output, !Contains("step 1/"));
  // a plan that fits is printed before the first step, and the measured memory after the run
  auto ok = run_flotilla("train --set train.steps=1 --set train.eval_every=0 --set run.tensorboard=false --run-dir " + dir + "/ok");
  INFO(ok.output);
  CHECK(ok.code == 0);
  CHECK_THAT(ok.output, Contains("memory plan: params") && Contains("memory available:") &&
                            Contains("memory measured: params") && Contains("planned"));
}

TEST_CASE("a missing data file fails with a data error and exit code 2", "[cli]") {
  std::string dir = temp_dir("cli-data");
  auto r = run_flotilla("train --set data.kind=tokens --set data.path=" + dir +
                        "/nope.bin --run-dir " + dir + "/run");
  INFO(r.output);
  CHECK(r.code == 2);
  CHECK_THAT(r.output, Contains("nope.bin"));
}

TEST_CASE("Ctrl-C stops training cleanly after the current step with exit code 130", "[cli]") {
  std::string dir = temp_dir("cli-sigint");
  auto r = run_flotilla("train --set train.steps=100000 --set train.eval_every=0 --run-dir " + dir +
                        " & pid=$!; sleep 4; kill -INT $pid; wait $pid");
  INFO(r.output);
  CHECK(r.code == 130);
  CHECK_THAT(r.output, Contains("stopped by signal after step"));
  CHECK_THAT(r.output, Contains("final: step"));
  // every completed step was logged and the file is intact (each line a whole JSON object)
  std::string metrics = read_text(dir + "/metrics.jsonl");
  CHECK(!metrics.empty());
  CHECK(metrics.back() == '\n');
}

TEST_CASE("training again into a run directory keeps the previous run's files", "[cli]") {
  std::string dir = temp_dir("cli-rerun");
  // train.resume=never: a new run (the default, auto, would resume from the checkpoint)
  std::string args = "train --set train.steps=1 --set optim.warmup_steps=0 --set train.eval_every=0 "
                     "--set train.resume=never --run-dir " + dir;
  auto first = run_flotilla(args);
  REQUIRE(first.code == 0);
  std::string metrics = read_text(dir + "/metrics.jsonl");
  REQUIRE(!metrics.empty());
  auto second = run_flotilla(args);
  INFO(second.output);
  REQUIRE(second.code == 0);
  CHECK_THAT(second.output, Contains("previous run's files moved to"));
  std::string moved = second.output.substr(second.output.find("moved to ") + 9);
  moved = moved.substr(0, moved.find('\n'));
  CHECK(read_text(moved + "/metrics.jsonl") == metrics);
  CHECK(!read_text(dir + "/metrics.jsonl").empty());
  CHECK(!read_text(moved + "/checkpoints/step-000000001/manifest.json").empty());
}
