// Checkpoints through the real binary: exact resume across processes, a process killed with
// SIGKILL in the middle of a real save (FLOTILLA_TEST_SAVE_PAUSE_S holds it there), SIGTERM and
// second signals, the grace timer on a step too long to finish, corrupt files, an unwritable
// directory and a full disk (a tmpfs too small for two checkpoints), non-finite steps, and the HF
// export / import round trip checked by `flotilla eval` on a fixed token file.
#include <sys/mount.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/checkpoint/manifest.hpp"
#include "core/checkpoint/reader.hpp"
#include "run_binary.hpp"
#include "spawn.hpp"

using namespace testing;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;
namespace ck = core::checkpoint;

namespace {

// A small, quick run of the tiny model (a step takes milliseconds).
const std::string kQuick =
    " --set train.seq_len=32 --set train.global_batch_size=8 --set train.micro_batch_size=4"
    " --set train.eval_every=0 --set optim.warmup_steps=2 --set train.threads=1";

std::vector<nlohmann::json> metrics(const std::string& dir) {
  std::vector<nlohmann::json> out;
  std::istringstream lines(read_text(dir + "/metrics.jsonl"));
  for (std::string line; std::getline(lines, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

// The state hashes of a checkpoint: every rank file's XXH3 (identical bytes = identical state).
std::vector<std::string> state_hashes(const std::string& dir) {
  ck::CheckpointReader r(dir);
  std::vector<std::string> out;
  for (const auto& f : r.manifest().files)
    if (f.name != "config.yaml") out.push_back(f.name + " " + ck::hex64(f.xxh3));
  return out;
}

// An llm.c token file (GPT-2 magic, uint16 tokens) of n pseudo-random tokens below vocab.
void write_tokens(const std::string& path, int n, int vocab) {
  std::vector<int32_t> header(256, 0);
  header[0] = 20240520;
  header[1] = 1;
  header[2] = n;
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(header.data()), 1024);
  uint32_t x = 12345;
  for (int i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    const uint16_t t = static_cast<uint16_t>((x >> 8) % vocab);
    out.write(reinterpret_cast<const char*>(&t), 2);
  }
}

nlohmann::json eval_json(const std::string& args) {
  auto r = run_flotilla("eval " + args);
  INFO(r.output);
  REQUIRE(r.code == 0);
  const size_t brace = r.output.rfind("\n{");
  return nlohmann::json::parse(
      r.output.substr(brace == std::string::npos ? r.output.find('{') : brace + 1));
}

}  // namespace

TEST_CASE("train N steps, resume, train N more: the same losses and state as 2N steps",
          "[ckpt-cli]") {
  const std::string a = temp_dir("resume-whole"), b = temp_dir("resume-split");
  const std::string common = "train --set train.steps=6 --set checkpoint.every=3" + kQuick;
  auto whole = run_flotilla(common + " --run-dir " + a);
  INFO(whole.output);
  REQUIRE(whole.code == 0);
  CHECK_THAT(whole.output, Contains("checkpoint saved: " + a + "/checkpoints/step-000000006"));
  auto first = run_flotilla(common + " --run-dir " + b);
  REQUIRE(first.code == 0);
  fs::remove_all(b + "/checkpoints/step-000000006");  // as if the run had stopped after step 3
  auto second = run_flotilla(common + " --run-dir " + b);
  INFO(second.output);
  REQUIRE(second.code == 0);
  CHECK_THAT(second.output,
             Contains("resuming from " + b + "/checkpoints/step-000000003 at step 3"));
  CHECK_THAT(second.output, !Contains("previous run's files moved"));
  const auto ma = metrics(a), mb = metrics(b);
  REQUIRE(ma.size() == 6);
  REQUIRE(mb.size() == 6);  // the resumed run continued the metrics file after step 3
  for (size_t i = 0; i < 6; ++i) {
    INFO("step " << i + 1);
    CHECK(mb[i]["step"] == ma[i]["step"]);
    CHECK(mb[i]["loss"].get<double>() == ma[i]["loss"].get<double>());
    CHECK(mb[i]["grad_norm"].get<double>() == ma[i]["grad_norm"].get<double>());
  }
  CHECK(state_hashes(b + "/checkpoints/step-000000006") ==
        state_hashes(a + "/checkpoints/step-000000006"));
  // A finished run asked to resume has nothing left to do.
  auto again = run_flotilla(common + " --run-dir " + b);
  CHECK(again.code == 0);
  CHECK_THAT(again.output, Contains("nothing to train"));
}

TEST_CASE(
    "kill -9 during a save leaves the previous checkpoint loadable and the partial one ignored",
    "[ckpt-cli]") {
  const std::string dir = temp_dir("kill-save");
  const std::string common = "train --set checkpoint.every=2" + kQuick + " --run-dir " + dir;
  REQUIRE(run_flotilla(common + " --set train.steps=2").code == 0);
  {
    Spawned p("env FLOTILLA_TEST_SAVE_PAUSE_S=60 " + std::string(FLOTILLA_BINARY) + " " + common +
                  " --set train.steps=4",
              dir + "/killed.log");
    REQUIRE(p.wait_for("pauses", 120));
    CHECK(fs::exists(dir + "/checkpoints/.tmp-step-000000004/rank-00000.safetensors"));
    p.signal(SIGKILL);
    CHECK(p.wait_exit(10) == 128 + SIGKILL);
  }
  CHECK(ck::list_checkpoints(dir + "/checkpoints").back().step == 2);
  ck::CheckpointReader previous(dir + "/checkpoints/step-000000002");  // complete and verified
  CHECK(previous.manifest().progress.step == 2);
  auto resumed = run_flotilla(common + " --set train.steps=4");
  INFO(resumed.output);
  CHECK(resumed.code == 0);
  CHECK_THAT(resumed.output, Contains("resuming from " + dir + "/checkpoints/step-000000002"));
  CHECK(!fs::exists(dir + "/checkpoints/.tmp-step-000000004"));  // cleared by the next save
  CHECK(ck::list_checkpoints(dir + "/checkpoints").back().step == 4);
}

TEST_CASE(
    "SIGTERM finishes the step, saves a checkpoint and exits 130, and the run resumes from it",
    "[ckpt-cli]") {
  const std::string dir = temp_dir("sigterm");
  const std::string common = "train --set train.steps=100000 --set checkpoint.every=1000" + kQuick +
                             " --set train.log_every=1 --run-dir " + dir;
  int stopped_at = 0;
  {
    Spawned p(std::string(FLOTILLA_BINARY) + " " + common, dir + "/first.log");
    REQUIRE(p.wait_for(" 3/100000 |", 120));
    p.signal(SIGTERM);
    CHECK(p.wait_exit(120) == 130);
    const std::string out = p.output();
    INFO(out);
    CHECK_THAT(out, Contains("stop signal: finishing the current step"));
    CHECK_THAT(out, Contains("checkpoint saved"));
    CHECK_THAT(out, Contains("stopped by signal after step"));
    stopped_at = static_cast<int>(ck::list_checkpoints(dir + "/checkpoints").back().step);
  }
  CHECK(stopped_at >= 3);
  CHECK(static_cast<int>(metrics(dir).size()) == stopped_at);
  auto resumed = run_flotilla(common + " --set train.steps=" + std::to_string(stopped_at + 1));
  INFO(resumed.output);
  CHECK(resumed.code == 0);
  CHECK_THAT(resumed.output, Contains("at step " + std::to_string(stopped_at)));
  CHECK(static_cast<int>(metrics(dir).size()) == stopped_at + 1);
}

TEST_CASE("a second signal, or the grace time running out, exits at once with 131", "[ckpt-cli]") {
  // A step of the tiny model at seq_len 4096 takes far longer than the test waits.
  const std::string dir = temp_dir("signal-now");
  const std::string huge =
      "train --set train.seq_len=4096 --set train.global_batch_size=4 "
      "--set train.micro_batch_size=4 --set train.threads=1 "
      "--set data.synthetic.period=0 --set train.eval_every=0 --run-dir " +
      dir;
  {
    Spawned p(std::string(FLOTILLA_BINARY) + " " + huge, dir + "/twice.log");
    REQUIRE(p.wait_for("memory plan", 120));
    p.signal(SIGTERM);
    REQUIRE(p.wait_for("stop signal", 10));
    const auto t0 = std::chrono::steady_clock::now();
    p.signal(SIGTERM);
    CHECK(p.wait_exit(10) == 131);
    CHECK(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 5);
    CHECK_THAT(p.output(), Contains("second stop signal: exiting now"));
  }
  {
    Spawned p(std::string(FLOTILLA_BINARY) + " " + huge + " --set runtime.stop_grace_s=2",
              dir + "/grace.log");
    REQUIRE(p.wait_for("memory plan", 120));
    const auto t0 = std::chrono::steady_clock::now();
    p.signal(SIGINT);
    CHECK(p.wait_exit(30) == 131);
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(took >= 1.5);
    CHECK(took < 10);
    CHECK_THAT(p.output(), Contains("did not finish within runtime.stop_grace_s"));
  }
  CHECK(ck::list_checkpoints(dir + "/checkpoints").empty());
}

TEST_CASE("a corrupt checkpoint is refused by train and eval with its name, exit 2", "[ckpt-cli]") {
  const std::string dir = temp_dir("corrupt-cli");
  const std::string common =
      "train --set train.steps=2 --set checkpoint.every=2" + kQuick + " --run-dir " + dir;
  REQUIRE(run_flotilla(common).code == 0);
  const std::string file = dir + "/checkpoints/step-000000002/rank-00000.safetensors";
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(file)) - 3);
    f.put('\x5a');
  }
  auto r = run_flotilla(common + " --set train.steps=4");
  INFO(r.output);
  CHECK(r.code == 2);
  CHECK_THAT(r.output, Contains("rank-00000.safetensors is corrupt") && Contains("checksum"));
  CHECK_THAT(r.output, !Contains("step 3/"));
  const std::string tokens = dir + "/tokens.bin";
  write_tokens(tokens, 2000, 256);
  auto e = run_flotilla("eval --checkpoint " + dir + "/checkpoints --data " + tokens);
  CHECK(e.code == 2);
  CHECK_THAT(e.output, Contains("is corrupt"));
}

TEST_CASE("an unwritable checkpoint directory stops the run before training, exit 2",
          "[ckpt-cli]") {
  const std::string dir = temp_dir("unwritable-cli");
  std::ofstream(dir + "/blocker") << "a file where a directory should be";
  auto r = run_flotilla("train --set train.steps=2" + kQuick + " --set checkpoint.dir=" + dir +
                        "/blocker/ckpt --run-dir " + dir + "/run");
  INFO(r.output);
  CHECK(r.code == 2);
  CHECK_THAT(r.output, Contains("checkpoint directory " + dir + "/blocker/ckpt cannot be created"));
  CHECK_THAT(r.output, !Contains("step 1/"));
}

TEST_CASE("a full disk fails the save with a clear error and the previous checkpoint stays whole",
          "[ckpt-cli]") {
  // A tmpfs that holds one checkpoint of the tiny model (22 MiB) but not two.
  const std::string dir = temp_dir("full-disk"), mnt = dir + "/small";
  fs::create_directories(mnt);
  REQUIRE(::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=34m") == 0);
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{mnt};
  auto r =
      run_flotilla("train --set train.steps=4 --set checkpoint.every=2 --set checkpoint.keep=2" +
                   kQuick + " --set checkpoint.dir=" + mnt + " --run-dir " + dir + "/run");
  INFO(r.output);
  CHECK(r.code == 1);
  CHECK_THAT(r.output, Contains("checkpoint saved: " + mnt + "/step-000000002"));
  CHECK_THAT(r.output, Contains("saving checkpoint " + mnt + "/step-000000004") &&
                           Contains("No space left on device"));
  const auto found = ck::list_checkpoints(mnt);
  REQUIRE(found.size() == 1);
  CHECK(found[0].step == 2);
  ck::CheckpointReader ok(found[0].path);  // verified against its manifest
  CHECK(ok.manifest().progress.step == 2);
  CHECK(!fs::exists(mnt + "/.tmp-step-000000004"));
  CHECK(metrics(dir + "/run").size() == 4);
}

TEST_CASE("non-finite steps are skipped and logged, and too many in a row stop the run",
          "[ckpt-cli]") {
  const std::string dir = temp_dir("nan");
  auto r = run_flotilla(
      "train --set train.steps=20 --set optim.lr=1e30 --set optim.grad_clip=0 "
      "--set optim.warmup_steps=0 --set train.max_skipped_steps=3" +
      kQuick + " --run-dir " + dir);
  INFO(r.output);
  CHECK(r.code == 1);
  CHECK_THAT(r.output, Contains("skipped: loss") && Contains("no update, no bias move"));
  CHECK_THAT(r.output, Contains("4 steps in a row") && Contains("train.max_skipped_steps = 3"));
  int skipped = 0;
  for (const auto& m : metrics(dir)) skipped += m["skipped"].get<bool>() ? 1 : 0;
  CHECK(skipped == 4);
  CHECK(metrics(dir).front()["skipped"] == false);
}

TEST_CASE("export to the HF layout and import back reproduce the eval loss bitwise", "[ckpt-cli]") {
  const std::string dir = temp_dir("hf");
  REQUIRE(run_flotilla("train --set train.steps=3 --set checkpoint.every=3" + kQuick +
                       " --run-dir " + dir)
              .code == 0);
  const std::string ckpt = dir + "/checkpoints/step-000000003", tokens = dir + "/tokens.bin";
  write_tokens(tokens, 3000, 256);
  const nlohmann::json base =
      eval_json("--checkpoint " + ckpt + " --data " + tokens + " --seq-len 64");
  CHECK(base["tokens"] == 46 * 64);  // (3000 - depth 1) / 65 windows of 64 targets
  CHECK(base["lm_loss"].get<double>() > 0);
  CHECK(base["mtp_loss"].get<double>() > 0);

  auto x = run_flotilla("export --checkpoint " + dir + "/checkpoints --out " + dir +
                        "/hf32 --dtype fp32 --shard-mb 1");
  INFO(x.output);
  REQUIRE(x.code == 0);
  const nlohmann::json index =
      nlohmann::json::parse(read_text(dir + "/hf32/model.safetensors.index.json"));
  const auto& map = index["weight_map"];
  for (const char* name :
       {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight",
        "model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight",
        "model.layers.1.mlp.experts.7.down_proj.weight",
        "model.layers.1.mlp.experts.7.gate_proj.weight",
        "model.layers.1.mlp.shared_experts.up_proj.weight",
        "model.layers.1.mlp.gate.e_score_correction_bias",
        "model.layers.0.self_attn.kv_a_proj_with_mqa.weight", "model.layers.4.eh_proj.weight",
        "model.layers.4.enorm.weight", "model.layers.4.shared_head.norm.weight",
        "model.layers.4.shared_head.head.weight", "model.layers.4.embed_tokens.weight",
        "model.layers.4.mlp.experts.0.up_proj.weight"})
    CHECK(map.contains(name));
  CHECK(!map.contains("model.layers.0.mlp.gate_up_proj.weight"));
  CHECK(fs::exists(dir + "/hf32/model-00002-of-" +
                   std::string(map["lm_head.weight"]).substr(15, 5) +
                   ".safetensors"));  // several shards of at most 1 MiB
  const nlohmann::json config = nlohmann::json::parse(read_text(dir + "/hf32/config.json"));
  CHECK(config["model_type"] == "deepseek_v3");
  CHECK(config["n_routed_experts"] == 8);
  CHECK(config["num_nextn_predict_layers"] == 1);
  CHECK(config["first_k_dense_replace"] == 1);
  CHECK(config["q_lora_rank"].is_null());
  CHECK(config["scoring_func"] == "sigmoid");
  CHECK(config["topk_method"] == "noaux_tc");

  const nlohmann::json hf = eval_json("--hf " + dir + "/hf32 --data " + tokens + " --seq-len 64");
  CHECK(hf["lm_loss"].get<double>() == base["lm_loss"].get<double>());
  CHECK(hf["mtp_loss"].get<double>() == base["mtp_loss"].get<double>());
  CHECK(hf["tokens"] == base["tokens"]);

  auto im = run_flotilla("import --hf " + dir + "/hf32 --out " + dir + "/imported");
  INFO(im.output);
  REQUIRE(im.code == 0);
  const nlohmann::json back =
      eval_json("--checkpoint " + dir + "/imported --data " + tokens + " --seq-len 64");
  CHECK(back["lm_loss"].get<double>() == base["lm_loss"].get<double>());
  CHECK(back["mtp_loss"].get<double>() == base["mtp_loss"].get<double>());
  // the imported checkpoint trains: step 1 from the exported weights
  auto t = run_flotilla("train --config " + dir +
                        "/imported/step-000000000/config.yaml --set train.steps=1" + kQuick +
                        " --set train.resume=" + dir + "/imported --run-dir " + dir + "/tuned");
  INFO(t.output);
  CHECK(t.code == 0);
  CHECK_THAT(t.output, Contains("at step 0"));

  auto b16 = run_flotilla("export --checkpoint " + ckpt + " --out " + dir + "/hf16");
  REQUIRE(b16.code == 0);
  const nlohmann::json l16 = eval_json("--hf " + dir + "/hf16 --data " + tokens + " --seq-len 64");
  CHECK(std::fabs(l16["lm_loss"].get<double>() - base["lm_loss"].get<double>()) < 0.05);
  CHECK(nlohmann::json::parse(read_text(dir + "/hf16/config.json"))["torch_dtype"] == "bfloat16");
}

TEST_CASE(
    "resume settings: a missing path and a fresh start over another run's checkpoints are refused",
    "[ckpt-cli]") {
  const std::string dir = temp_dir("resume-args");
  auto missing = run_flotilla("train --set train.steps=1" + kQuick + " --set train.resume=" + dir +
                              "/nowhere --run-dir " + dir + "/a");
  CHECK(missing.code == 2);
  CHECK_THAT(missing.output, Contains(dir + "/nowhere' does not exist"));
  const std::string shared = " --set checkpoint.dir=" + dir + "/ckpt --set train.steps=1" + kQuick;
  REQUIRE(run_flotilla("train" + shared + " --run-dir " + dir + "/b").code == 0);
  auto fresh = run_flotilla("train" + shared + " --set train.resume=never --run-dir " + dir + "/c");
  CHECK(fresh.code == 2);
  CHECK_THAT(fresh.output, Contains("already holds checkpoints of another run"));
  // auto in another run directory finds them through checkpoint.dir
  auto more = run_flotilla("train" + shared + " --set train.steps=2 --run-dir " + dir + "/d");
  CHECK(more.code == 0);
  CHECK_THAT(more.output, Contains("resuming from " + dir + "/ckpt/step-000000001 at step 1"));
}
