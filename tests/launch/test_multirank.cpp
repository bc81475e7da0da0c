// The binary under mpirun as a cluster scheduler runs it: a two-rank training with expert
// parallelism, invalid layouts refused on every rank before any communication, and a rank that
// stops responding or dies ending the whole job instead of hanging it.
#include <catch2/catch.hpp>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "run_binary.hpp"

using namespace testing;
using Catch::Matchers::Contains;

namespace {
const std::string kQuick =
    " --set train.steps=3 --set train.seq_len=32 --set train.eval_every=3 --set checkpoint.every=0 ";
}

TEST_CASE("mpirun -np 2 trains with data and expert parallelism; rank 0 alone prints and writes",
          "[mpi]") {
  std::string dir = temp_dir("mpi-train");
  auto r = run_mpi(2, "train" + kQuick + "--set parallel.ep=2 --run-dir " + dir);
  INFO(r.output);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.output, Contains("pp 1 x dp 2 (ep 2)") && Contains("schedule sequential"));
  // one progress line per step, from rank 0 only, as plain lines (no terminal rewriting)
  size_t lines = 0;
  for (size_t at = r.output.find("step 1/3"); at != std::string::npos; at = r.output.find("step 1/3", at + 1))
    ++lines;
  CHECK(lines == 1);
  CHECK(r.output.find('\r') == std::string::npos);
  std::istringstream in(read_text(dir + "/metrics.jsonl"));
  std::string line;
  int steps = 0;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    ++steps;
    CHECK(j.at("a2a_bytes").get<int64_t>() > 0);
    CHECK(j.at("comm_s").get<double>() > 0);
    CHECK(j.at("exposed_comm_s").get<double>() >= 0);
    CHECK(j.at("compute_cpu_s").get<double>() > 0);
  }
  CHECK(steps == 3);
}

TEST_CASE("bench --against-free-link times each step over the emulated link and without it", "[mpi]") {
  // About 0.4 s of all-to-all per step (1.1 MB at 0.02 Gbit/s) against 0.07 s of computation.
  const std::string args =
      "bench --config " FLOTILLA_SOURCE_DIR "/configs/tiny.yaml --steps 2 --warmup 1 --against-free-link"
      " --set train.seq_len=32 --set train.global_batch_size=8 --set parallel.ep=2"
      " --set parallel.link.bandwidth_gbps=0.02 --set parallel.link.traffic=expert_a2a";
  const std::string trace = temp_dir("bench-free-link") + "/trace.json";
  auto r = run_mpi(2, args + " --trace " + trace);
  INFO(r.output);
  REQUIRE(r.code == 0);
  auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  const double link = j.at("step_time_s"), free = j.at("free_link_step_time_s");
  CHECK(free > 0);
  CHECK(link > free);
  CHECK(j.at("link_slowdown").get<double>() > 1);
  CHECK(j.at("a2a_exposed_s").get<double>() > 0);
  // Exchanges paced by their larger side: at least the bytes sent (exact sums: tests/mpi).
  const double paced = j.at("a2a_paced_bytes"), sent = j.at("a2a_bytes");
  CHECK(paced >= sent);
  CHECK(j.at("a2a_link_s").get<double>() == Approx(paced * 8 / 0.02e9));
  CHECK(j.at("a2a_link_ratio").get<double>() == Approx(j.at("a2a_link_s").get<double>() / free));
  // The same against the free steps' compute CPU time, which leaves out the communication thread.
  const double cpu = j.at("compute_cpu_s");
  CHECK(cpu > 0);
  CHECK(cpu < j.at("cpu_time_per_step_s").get<double>() * 2);
  CHECK(j.at("a2a_compute_ratio").get<double>() == Approx(j.at("a2a_link_s").get<double>() / cpu));
  CHECK(j.at("link_compute_cpu_s").get<double>() > 0);
  // The free steps' waits are reported apart; without the link's 0.4 s the all-to-all waits only
  // for the peer to reach it (tens of ms with two ranks on two cores).
  const double free_a2a_wait = j.at("free_link_a2a_exposed_s");
  CHECK(free_a2a_wait >= 0);
  CHECK(free_a2a_wait < j.at("a2a_exposed_s").get<double>());
  CHECK(j.at("free_link_exposed_comm_s").get<double>() >= free_a2a_wait);
  // The trace is of the last link step (step 5 here: the second pair runs free first), not of
  // the free step after it: rank 0's all-to-all is in flight for most of the link time.
  auto t = nlohmann::json::parse(read_text(trace));
  double a2a_us = 0;
  for (const auto& e : t.at("traceEvents"))
    if (e.value("pid", -1) == 0 && e.value("cat", "") == "expert_a2a")
      a2a_us += (e.at("ph") == "e" ? 1 : -1) * e.at("ts").get<double>();
  CHECK(a2a_us / 1e6 > 0.5 * j.at("a2a_s").get<double>());
  // without a link to compare there is nothing to measure: refused, exit code 2
  auto none = run_flotilla("bench --config " FLOTILLA_SOURCE_DIR "/configs/tiny.yaml --steps 1 --against-free-link");
  CHECK(none.code == 2);
  CHECK_THAT(none.output, Contains("parallel.link.bandwidth_gbps"));
}

TEST_CASE("bench --a2a-ratio sets the link from the all-to-all and computation without it", "[mpi]") {
  // No bandwidth in the config: the warm-up runs without a link and sets the first link step's;
  // each later link step's follows the latest free step (its paced bytes and compute CPU time).
  const std::string args =
      "bench --config " FLOTILLA_SOURCE_DIR "/configs/tiny.yaml --steps 3 --warmup 2 --a2a-ratio 2"
      " --set train.seq_len=32 --set train.global_batch_size=8 --set parallel.ep=2"
      " --set parallel.link.traffic=expert_a2a";
  auto r = run_mpi(2, args);
  INFO(r.output);
  REQUIRE(r.code == 0);
  auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  CHECK(j.at("a2a_ratio_target").get<double>() == 2);
  const double gbps = j.at("link_gbps"), lo = j.at("link_gbps_min"), hi = j.at("link_gbps_max");
  CHECK(lo > 0);
  CHECK(lo <= gbps);
  CHECK(gbps <= hi);
  // Implied --against-free-link; the timed steps' all-to-all on the link against their
  // computation is near the target (each link step's link comes from another step's routing and
  // computation; a wrong unit would be 8x off).
  CHECK(j.at("free_link_step_time_s").get<double>() > 0);
  const double ratio = j.at("a2a_compute_ratio");
  CHECK(ratio > 2 / 2.0);
  CHECK(ratio < 2 * 2.0);
  CHECK(j.at("a2a_exposed_s").get<double>() > j.at("free_link_a2a_exposed_s").get<double>());
  // Nothing to measure a ratio from without expert parallelism: refused, exit code 2.
  auto no_ep = run_mpi(2, "bench --config " FLOTILLA_SOURCE_DIR "/configs/tiny.yaml --steps 1 "
                          "--a2a-ratio 1 --set train.seq_len=32 --set train.global_batch_size=8");
  CHECK(no_ep.code == 2);
  CHECK_THAT(no_ep.output, Contains("--a2a-ratio") && Contains("parallel.ep = 1"));
}

TEST_CASE("invalid layouts are refused on every rank before any communication, exit code 2",
          "[mpi]") {
  std::string dir = temp_dir("mpi-layout");
  struct Case {
    int ranks;
    std::string set, message;
  };
  for (const Case& c : {Case{3, "--set parallel.pp=2", "world size 3 is not divisible by parallel.pp = 2"},
                        Case{2, "--set parallel.ep=4", "parallel.ep = 4 does not divide dp = 2"},
                        Case{3, "--set parallel.ep=3", "model.moe.num_experts = 8 is not divisible by parallel.ep = 3"},
                        Case{3, "", "train.global_batch_size = 32 is not a multiple of train.micro_batch_size 4 x dp 3"}}) {
    auto r = run_mpi(c.ranks, "train " + c.set + " --run-dir " + dir);
    INFO(c.ranks << " ranks " << c.set << "\n" << r.output);
    CHECK(r.code == 2);
    CHECK_THAT(r.output, Contains(c.message));
    CHECK_THAT(r.output, !Contains("step 1/"));
    CHECK_THAT(r.output, !Contains("fatal"));
  }
}

TEST_CASE("bad input found by one rank alone is printed by that rank and ends the job, exit code 2",
          "[mpi]") {
  // Two app contexts: rank 1 alone is given a data file that does not exist.
  std::string dir = temp_dir("mpi-one-rank");
  const std::string args = " train --set train.steps=1 --set train.seq_len=32 --run-dir " + dir;
  auto r = run_shell(mpirun(1) + args + " : -np 1 " FLOTILLA_BINARY + args +
                     " --set data.kind=text --set data.path=" + dir + "/missing.txt 2>&1");
  INFO(r.output);
  CHECK(r.code == 2);
  CHECK_THAT(r.output, Contains("flotilla: rank 1: data error") && Contains("missing.txt"));
  CHECK_THAT(r.output, !Contains("step 1/") && !Contains("stop signal"));
  CHECK_THAT(r.output, !Contains("fatal"));
}

namespace {
// Starts a long two-rank training, waits until it has taken two steps, sends `signal` to rank 1,
// and reports how long mpirun took to end after that and with what code.
RunResult fault(const std::string& name, const char* signal, int timeout_s) {
  std::string dir = temp_dir(name);
  std::ofstream(dir + "/fault.sh")
      << "log=" << dir << "/log\n"
      << mpirun(2) << " train --set train.steps=100000 --set train.seq_len=32"
      << " --set train.eval_every=0 --set checkpoint.every=0 --set parallel.ep=2"
      << " --set runtime.comm_timeout_s=" << timeout_s << " --run-dir " << dir << " > $log 2>&1 &\n"
      << "mp=$!\n"
      // progress lines pad the step to the width of train.steps: "step      2/100000"
      << "for i in $(seq 1 1200); do grep -qE 'step +2/' $log && break; sleep 0.1; done\n"
      << "grep -qE 'step +2/' $log || { echo 'no step 2 within 120 s'; cat $log; kill -9 $mp; exit 99; }\n"
      << "for c in $(pgrep -P $mp); do\n"
      << "  if tr '\\0' '\\n' < /proc/$c/environ | grep -qx OMPI_COMM_WORLD_RANK=1; then kill -"
      << signal << " $c; fi\n"
      << "done\n"
      << "t0=$(date +%s%N); wait $mp; code=$?; t1=$(date +%s%N)\n"
      << "cat $log\n"
      << "echo \"mpirun ended with $code after $(( (t1 - t0) / 1000000 )) ms\"\n"
      << "exit $code\n";
  return run_shell("bash " + dir + "/fault.sh 2>&1");
}

double ended_after_s(const std::string& output) {
  auto at = output.rfind("after ");
  return at == std::string::npos ? 1e9 : std::stod(output.substr(at + 6)) / 1000.0;
}
}  // namespace

TEST_CASE("a rank that stops responding ends the job within the timeout, with the message", "[mpi]") {
  const int timeout_s = 5;
  auto r = fault("mpi-sigstop", "STOP", timeout_s);
  INFO(r.output);
  CHECK(r.code != 0);
  CHECK_THAT(r.output, Contains("no progress for 5 s (runtime.comm_timeout_s)"));
  CHECK_THAT(r.output, Contains("rank 0"));
  CHECK(ended_after_s(r.output) < timeout_s + 20);
}

TEST_CASE("a rank that dies ends the whole job, no hang", "[mpi]") {
  auto r = fault("mpi-sigkill", "KILL", 60);
  INFO(r.output);
  CHECK(r.code != 0);
  CHECK(ended_after_s(r.output) < 30);
}
