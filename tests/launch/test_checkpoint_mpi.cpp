// Checkpoint saves under mpirun with the real binary: one rank killed (SIGKILL) or hung
// (SIGSTOP) in the middle of a save (FLOTILLA_TEST_SAVE_PAUSE_S holds every rank there). The job
// must end non-zero within runtime.comm_timeout_s (mpirun notices a dead rank; a hung one makes
// the others' wait at the save's agreement time out and abort the job), the previous checkpoint
// must stay complete and loadable, the partial one ignored, and the run must resume from it.
#include <signal.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <regex>

#include "core/checkpoint/manifest.hpp"
#include "core/checkpoint/reader.hpp"
#include "run_binary.hpp"
#include "spawn.hpp"

using namespace testing;
using Catch::Matchers::Contains;
namespace ck = core::checkpoint;

namespace {

constexpr double kCommTimeout = 10;  // runtime.comm_timeout_s of these runs
constexpr double kPause = 2;         // the test hook's pause inside the save

// mpirun (run_binary.hpp) with the test hook's pause: local ranks inherit mpirun's environment.
std::string job(double pause_s, const std::string& args) {
  return "env FLOTILLA_TEST_SAVE_PAUSE_S=" + std::to_string(pause_s) + " " + mpirun(2) + " " + args;
}

std::string train_args(const std::string& dir, int steps) {
  return "train --set train.steps=" + std::to_string(steps) +
         " --set checkpoint.every=2 --set train.seq_len=32 --set train.global_batch_size=8"
         " --set train.micro_batch_size=2 --set train.eval_every=0 --set train.threads=1"
         " --set parallel.ep=2 --set runtime.comm_timeout_s=" +
         std::to_string(static_cast<int>(kCommTimeout)) + " --run-dir " + dir;
}

int run_job(const std::string& dir, int steps, const std::string& log) {
  Spawned p(job(0, train_args(dir, steps)), dir + "/" + log);
  const int code = p.wait_exit(300);
  INFO(p.output());
  CHECK(code == 0);
  return code;
}

// Runs to the save of step 4, does `to_rank1` to rank 1 while it pauses there, and returns the
// seconds from then to the job's end (and its exit code).
std::pair<double, int> break_a_save(const std::string& dir, int sig, const std::string& log) {
  Spawned p(job(kPause, train_args(dir, 4)), dir + "/" + log);
  REQUIRE(p.wait_for("test hook: rank 1 (pid ", 300));
  std::smatch m;
  const std::string out = p.output();
  REQUIRE(std::regex_search(out, m, std::regex("rank 1 \\(pid ([0-9]+)\\)")));
  const pid_t rank1 = static_cast<pid_t>(std::stol(m[1]));
  const auto t0 = std::chrono::steady_clock::now();
  ::kill(rank1, sig);
  const int code = p.wait_exit(kCommTimeout + kPause + 60);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ::kill(rank1, SIGKILL);  // a stopped rank that outlived the job
  INFO(p.output());
  return {took, code};
}

void previous_checkpoint_intact(const std::string& dir) {
  const auto found = ck::list_checkpoints(dir + "/checkpoints");
  REQUIRE(!found.empty());
  CHECK(found.back().step == 2);
  ck::CheckpointReader r(found.back().path);  // manifest, sizes and the config verified
  CHECK(r.manifest().files.size() == 3);
  std::vector<float> bias(8);
  r.read(ck::kBuffer, "model.layers.1.mlp.gate.e_score_correction_bias", 0, 8, core::DType::f32,
         bias.data());
}

}  // namespace

TEST_CASE("a rank killed during a save under mpirun ends the job and the previous checkpoint stays",
          "[ckpt-mpi]") {
  const std::string dir = temp_dir("mpi-kill");
  REQUIRE(run_job(dir, 2, "first.log") == 0);
  const auto [took, code] = break_a_save(dir, SIGKILL, "killed.log");
  CHECK(code != 0);
  CHECK(code != Spawned::kRunning);
  CHECK(took < kCommTimeout + kPause + 5);
  std::printf("mpirun, rank 1 killed during a save: job ended with %d after %.1f s\n", code, took);
  previous_checkpoint_intact(dir);
  CHECK(std::filesystem::exists(dir + "/checkpoints/.tmp-step-000000004"));
  run_job(dir, 4, "resumed.log");
  CHECK(ck::list_checkpoints(dir + "/checkpoints").back().step == 4);
  CHECK(!std::filesystem::exists(dir + "/checkpoints/.tmp-step-000000004"));
}

TEST_CASE("a rank hung during a save under mpirun ends the job within the communication timeout",
          "[ckpt-mpi]") {
  const std::string dir = temp_dir("mpi-hang");
  REQUIRE(run_job(dir, 2, "first.log") == 0);
  const auto [took, code] = break_a_save(dir, SIGSTOP, "hung.log");
  CHECK(code != 0);
  CHECK(code != Spawned::kRunning);
  CHECK(took < kCommTimeout + kPause + 15);
  std::printf(
      "mpirun, rank 1 stopped during a save: job ended with %d after %.1f s (timeout %.0f s)\n",
      code, took, kCommTimeout);
  previous_checkpoint_intact(dir);
  run_job(dir, 4, "resumed.log");
  CHECK(ck::list_checkpoints(dir + "/checkpoints").back().step == 4);
}
