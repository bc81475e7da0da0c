// Checkpoints in one process: the directory a save leaves, exact resume (2N steps == N + resume
// + N, bitwise), keep, incomplete and damaged checkpoints, refused resumes, unwritable
// directories, and skipped non-finite steps.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "core/checkpoint/files.hpp"
#include "core/checkpoint/manifest.hpp"
#include "core/checkpoint/reader.hpp"
#include "core/checkpoint/resume.hpp"
#include "core/trainer.hpp"
#include "trainer_config.hpp"

using Catch::Matchers::Contains;
namespace fs = std::filesystem;
namespace ck = core::checkpoint;

namespace {

core::Config small_config() {
  core::Config c = testing::small_trainer_config();
  c.train.steps = 6;
  c.optim.warmup_steps = 2;
  c.data.synthetic.period = 0;
  return c;
}

std::string fresh_dir(const std::string& name) {
  const std::string d = "/tmp/flotilla-ckpt-" + name + "-" + std::to_string(::getpid());
  fs::remove_all(d);
  return d;
}

// A checkpoint of one step of `c` in a fresh directory; returns the checkpoint's path.
std::string one_step_checkpoint(const core::Config& c, const std::string& name) {
  core::Context ctx;
  core::Trainer t(c, ctx, "", false);
  t.step();
  return t.save_checkpoint(fresh_dir(name)).path;
}

std::vector<float> params_of(core::Trainer& t) {
  const core::Tensor p = t.model().params().flat_params();
  return std::vector<float>(p.ptr<float>(), p.ptr<float>() + p.numel());
}

std::vector<std::byte> moments_of(core::Trainer& t) {
  std::vector<std::byte> out;
  for (const core::Tensor m : {t.optimizer().moment1(), t.optimizer().moment2()}) {
    const auto* b = static_cast<const std::byte*>(m.data);
    out.insert(out.end(), b, b + m.bytes());
  }
  return out;
}

std::vector<float> biases_of(core::Trainer& t) {
  std::vector<float> out;
  const auto& ps = t.model().params();
  for (int b = 0; b < ps.num_buffers(); ++b) {
    const core::Tensor x = ps.buffer(b);
    out.insert(out.end(), x.ptr<float>(), x.ptr<float>() + x.numel());
  }
  return out;
}

// The uninterrupted run's losses of steps n+1..2n compared with a run saved at n and resumed.
void exact_resume(core::Config c) {
  const int n = 3;
  c.train.steps = 2 * n;
  core::Context ctx;
  core::Trainer whole(c, ctx, "", false);
  std::vector<core::StepMetrics> ref;
  for (int s = 0; s < 2 * n; ++s) ref.push_back(whole.step());

  const std::string dir = fresh_dir("exact");
  std::string saved;
  {
    core::Trainer first(c, ctx, "", false);
    for (int s = 0; s < n; ++s) CHECK(first.step().loss == ref[s].loss);
    saved = first.save_checkpoint(dir).path;
  }
  core::Trainer second(c, ctx, "", false);
  CHECK(second.resume_from(saved).empty());  // same settings: nothing to note
  CHECK(second.progress().step == n);
  for (int s = n; s < 2 * n; ++s) {
    const core::StepMetrics m = second.step();
    CHECK(m.step == s + 1);
    CHECK(m.loss == ref[s].loss);
    CHECK(m.lm_loss == ref[s].lm_loss);
    CHECK(m.grad_norm == ref[s].grad_norm);
    CHECK(m.lr == ref[s].lr);
    CHECK(m.tokens == ref[s].tokens);
  }
  CHECK(params_of(second) == params_of(whole));
  CHECK(moments_of(second) == moments_of(whole));
  CHECK(biases_of(second) == biases_of(whole));
  fs::remove_all(dir);
}

}  // namespace

TEST_CASE("a save leaves one complete step directory with a manifest of every file",
          "[checkpoint]") {
  core::Config c = small_config();
  core::Context ctx;
  core::Trainer t(c, ctx, "", false);
  t.step();
  t.step();
  const std::string root = fresh_dir("layout");
  const ck::SaveResult res = t.save_checkpoint(root);
  CHECK(res.path == root + "/step-000000002");
  std::vector<std::string> entries;
  for (const auto& e : fs::directory_iterator(root))
    entries.push_back(e.path().filename().string());
  CHECK(entries == std::vector<std::string>{"step-000000002"});  // no temporary left behind
  ck::CheckpointReader r(res.path);
  const ck::Manifest& m = r.manifest();
  CHECK(m.progress.step == 2);
  CHECK(m.progress.tokens == 2 * 8 * 8);
  CHECK(m.has_optimizer);
  REQUIRE(m.files.size() == 2);  // config.yaml and the one rank's file
  CHECK(m.files[0].name == "config.yaml");
  CHECK(m.files[1].name == "rank-00000.safetensors");
  int64_t total = 0;
  for (const auto& f : m.files) {
    const ck::FileDigest d = ck::digest_file(res.path + "/" + f.name);
    CHECK(d.bytes == f.bytes);
    CHECK(d.xxh3 == f.xxh3);
    total += f.bytes;
  }
  CHECK(total == res.bytes + m.files[0].bytes);
  CHECK(r.config() == c);
  // Every tensor under its global name, experts one by one, moments beside them, biases.
  const auto params = r.names(ck::kParam);
  CHECK(std::count(params.begin(), params.end(),
                   "model.layers.1.mlp.experts.3.gate_up_proj.weight") == 1);
  CHECK(std::count(params.begin(), params.end(), "model.layers.0.self_attn.q_a_proj.weight") == 1);
  CHECK(params.size() == static_cast<size_t>(r.names(ck::kExpAvg).size()));
  CHECK(r.names(ck::kBuffer) ==
        std::vector<std::string>{"model.layers.1.mlp.gate.e_score_correction_bias",
                                 "model.layers.2.mlp.gate.e_score_correction_bias"});
  CHECK(r.shape("model.layers.1.mlp.experts.3.gate_up_proj.weight") == std::vector<int64_t>{6, 8});
  CHECK(r.manifest().rng.contains("note"));
  CHECK(ck::list_checkpoints(root).size() == 1);
  CHECK(ck::resolve_checkpoint_path(root) == res.path);
  fs::remove_all(root);
}

TEST_CASE("exact resume: N steps, save, resume, N steps equals 2N steps bitwise", "[checkpoint]") {
  exact_resume(small_config());
}

TEST_CASE("exact resume with bf16 moments and the aux-loss balancer", "[checkpoint]") {
  core::Config c = small_config();
  c.optim.moment_dtype = "bf16";
  c.model.moe.balancer = "aux_loss";
  c.model.attention.q_lora_rank = 0;
  exact_resume(c);
}

TEST_CASE("checkpoint.keep removes the oldest complete checkpoints, never the newest",
          "[checkpoint]") {
  core::Config c = small_config();
  c.checkpoint.keep = 2;
  core::Context ctx;
  core::Trainer t(c, ctx, "", false);
  const std::string root = fresh_dir("keep");
  for (int s = 0; s < 4; ++s) {
    t.step();
    t.save_checkpoint(root);
  }
  auto found = ck::list_checkpoints(root);
  REQUIRE(found.size() == 2);
  CHECK(found[0].step == 3);
  CHECK(found[1].step == 4);
  // keep never deletes the checkpoint just written, even below a later one of another run
  fs::rename(root + "/step-000000003", root + "/step-000000099");
  c.checkpoint.keep = 1;
  core::Trainer u(c, ctx, "", false);
  u.step();
  u.save_checkpoint(root);
  found = ck::list_checkpoints(root);
  REQUIRE(found.size() == 2);
  CHECK(found[0].step == 1);
  CHECK(found[1].step == 99);
  fs::remove_all(root);
}

TEST_CASE("incomplete checkpoints are ignored and resume picks the latest complete one",
          "[checkpoint]") {
  core::Config c = small_config();
  core::Context ctx;
  core::Trainer t(c, ctx, "", false);
  const std::string root = fresh_dir("incomplete");
  t.step();
  const std::string good = t.save_checkpoint(root).path;
  // What a save killed before its commit leaves, and a step directory without a manifest.
  fs::create_directories(root + "/.tmp-step-000000005");
  fs::copy(good + "/rank-00000.safetensors", root + "/.tmp-step-000000005/");
  fs::create_directories(root + "/step-000000007");
  fs::copy(good + "/rank-00000.safetensors", root + "/step-000000007/");
  CHECK(ck::resolve_resume("auto", root, nullptr) == good);
  CHECK(ck::resolve_resume("never", root, nullptr).empty());
  CHECK(ck::resolve_resume(root, "", nullptr) == good);
  CHECK(ck::resolve_resume("auto", root + "/nothing-here", nullptr).empty());
  CHECK_THROWS_WITH(ck::resolve_resume(root + "/step-000000007", "", nullptr),
                    Contains("neither a checkpoint"));
  CHECK_THROWS_AS(ck::resolve_resume(root + "/missing", "", nullptr), core::DataError);
  // the next save clears the leftovers
  t.step();
  t.save_checkpoint(root);
  CHECK(!fs::exists(root + "/.tmp-step-000000005"));
  fs::remove_all(root);
}

TEST_CASE("a corrupt or truncated checkpoint file is reported by name and never loaded",
          "[checkpoint]") {
  core::Config c = small_config();
  core::Context ctx;
  const std::string dir = one_step_checkpoint(c, "corrupt");
  const std::string file = dir + "/rank-00000.safetensors";
  const int64_t size = static_cast<int64_t>(fs::file_size(file));
  {  // one flipped bit in the data (the header stays valid)
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(size - 5);
    char ch = 0;
    f.read(&ch, 1);
    ch ^= 0x10;
    f.seekp(size - 5);
    f.write(&ch, 1);
  }
  core::Trainer u(c, ctx, "", false);
  const std::vector<float> before = params_of(u);
  CHECK_THROWS_AS(u.resume_from(dir), core::DataError);
  CHECK_THROWS_WITH(u.resume_from(dir),
                    Contains("rank-00000.safetensors is corrupt") && Contains("checksum"));
  CHECK(u.progress().step == 0);
  CHECK(params_of(u) == before);  // the file was verified before any byte of it was used
  fs::resize_file(file, size - 100);
  CHECK_THROWS_WITH(u.resume_from(dir),
                    Contains("rank-00000.safetensors is") && Contains("truncated"));
  fs::remove(file);
  CHECK_THROWS_WITH(u.resume_from(dir),
                    Contains("rank-00000.safetensors listed in the manifest is missing"));
  std::ofstream(dir + "/manifest.json") << "{\"format\": \"flotilla-checkpoint\", \"version\": 1";
  CHECK_THROWS_WITH(u.resume_from(dir), Contains("malformed checkpoint manifest"));
  fs::remove_all(fs::path(dir).parent_path());
}

TEST_CASE("resuming with another model shape is refused naming the keys, other changes are noted",
          "[checkpoint]") {
  core::Config c = small_config();
  core::Context ctx;
  const std::string dir = one_step_checkpoint(c, "shape");
  core::Config wider = c;
  wider.model.hidden_size = 12;
  core::Trainer w(wider, ctx, "", false);
  CHECK_THROWS_AS(w.resume_from(dir), core::ConfigError);
  CHECK_THROWS_WITH(w.resume_from(dir), Contains("model.hidden_size: 8 -> 12"));
  core::Config slower = c;
  slower.optim.lr = 1e-3;
  slower.parallel.zero1 = false;
  core::Trainer s(slower, ctx, "", false);
  const auto notes = s.resume_from(dir);
  CHECK(notes ==
        std::vector<std::string>{"optim.lr: 0.003 -> 0.001", "parallel.zero1: true -> false"});
  CHECK(s.progress().step == 1);
  fs::remove_all(fs::path(dir).parent_path());
}

TEST_CASE("an unwritable checkpoint directory is an error before training and leaves nothing",
          "[checkpoint]") {
  const std::string root = fresh_dir("unwritable");
  fs::create_directories(root);
  std::ofstream(root + "/file") << "x";  // a directory cannot be created below a file
  CHECK_THROWS_AS(ck::check_writable(root + "/file/ckpt", nullptr), core::ConfigError);
  CHECK_THROWS_WITH(ck::check_writable(root + "/file/ckpt", nullptr),
                    Contains("cannot be created") && Contains("checkpoint.dir"));
  ck::check_writable(root + "/ok", nullptr);
  CHECK(fs::is_empty(root + "/ok"));  // the probe is gone
  core::Config c = small_config();
  core::Context ctx;
  core::Trainer t(c, ctx, "", false);
  t.step();
  CHECK_THROWS_WITH(t.save_checkpoint(root + "/file/ckpt"),
                    Contains("saving checkpoint") && Contains("Not a directory"));
  fs::remove_all(root);
}

TEST_CASE(
    "a step with a non-finite loss is skipped: no update, no bias move, then training goes on",
    "[checkpoint][recovery]") {
  core::Config c = small_config();
  core::Context ctx;
  core::Trainer t(c, ctx, "", false);
  CHECK(!t.step().skipped);
  core::ParamStore& ps = t.model().params();
  float* head = ps.param(ps.find("lm_head.weight")).ptr<float>();
  const float saved = head[3];
  head[3] = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> params = params_of(t);
  const std::vector<float> biases = biases_of(t);
  const std::vector<std::byte> moments = moments_of(t);
  const core::StepMetrics m = t.step();
  CHECK(m.skipped);
  CHECK(m.step == 2);
  CHECK(!std::isfinite(m.loss));
  const std::vector<float> after = params_of(t);
  CHECK(std::memcmp(after.data(), params.data(), after.size() * sizeof(float)) == 0);  // NaN too
  CHECK(biases_of(t) == biases);
  CHECK(moments_of(t) == moments);
  CHECK(t.progress().skipped_total == 1);
  CHECK(t.progress().skipped_in_row == 1);
  head[3] = saved;
  const core::StepMetrics next = t.step();
  CHECK(!next.skipped);
  CHECK(std::isfinite(next.loss));
  CHECK(t.progress().skipped_in_row == 0);
  CHECK(t.progress().adamw_steps() == 2);
}

TEST_CASE("the run stops after more than train.max_skipped_steps non-finite steps in a row",
          "[checkpoint][recovery]") {
  core::Config c = small_config();
  c.train.max_skipped_steps = 2;
  c.train.steps = 10;
  core::Context ctx;
  core::Trainer t(c, ctx, "", false);
  core::ParamStore& ps = t.model().params();
  ps.param(ps.find("lm_head.weight")).ptr<float>()[0] = std::numeric_limits<float>::infinity();
  CHECK_THROWS_WITH(t.run(),
                    Contains("3 steps in a row") && Contains("train.max_skipped_steps = 2"));
  CHECK(t.progress().step == 3);
  CHECK(t.progress().skipped_total == 3);
}
