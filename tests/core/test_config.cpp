// Tests of core/config: defaults, the files in configs/, strict keys and types with file:line:col,
// overrides, validation rules, layout rules, to_yaml round trip and the docs covering every key.
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/error.hpp"

using Catch::Contains;
using core::Config;
using core::ConfigError;

namespace {

const std::string kSource = FLOTILLA_SOURCE_DIR;

Config parse(const std::string& text) { return core::parse_config(text, "x.yaml"); }

// Parses and validates, as load_config does for a file.
void parse_and_validate(const std::string& text) { core::validate(parse(text)); }

Config with_overrides(const std::vector<std::string>& overrides) {
  return core::load_config("", overrides);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("config: the built-in defaults are valid and are the tiny model", "[config]") {
  Config c;
  CHECK_NOTHROW(core::validate(c));
  CHECK_NOTHROW(core::validate_layout(c, 1));
  CHECK(c.model.vocab_size == 256);
  CHECK(c.model.moe.num_experts == 8);
  CHECK(c.model.moe.experts_per_token == 2);
  CHECK(c.train.global_batch_size == 32);
  CHECK(core::load_config("", {}) == c);
}

TEST_CASE("config: every file in configs/ loads and validates", "[config]") {
  for (const char* name : {"tiny", "bench-cpu", "small-moe", "deepseek-v3-671b"}) {
    INFO("configs/" << name << ".yaml");
    Config c;
    REQUIRE_NOTHROW(c = core::load_config(kSource + "/configs/" + name + ".yaml", {}));
    CHECK(c.run.name == name);
    CHECK(core::parse_config(core::to_yaml(c), "round trip") == c);
  }
}

TEST_CASE("config: configs/tiny.yaml is exactly the defaults", "[config]") {
  Config c = core::load_config(kSource + "/configs/tiny.yaml", {});
  CHECK(c == Config{});
  CHECK(c.origins.count("model.moe.num_experts") == 1);  // it sets every key explicitly
  CHECK(c.origins.size() == core::config_keys().size());
}

TEST_CASE("config: configs/bench-cpu.yaml has the benchmark shape", "[config]") {
  Config c = core::load_config(kSource + "/configs/bench-cpu.yaml", {});
  const auto& m = c.model;
  CHECK(m.vocab_size == 8192);
  CHECK(m.hidden_size == 512);
  CHECK(m.num_layers == 6);
  CHECK(m.first_dense_layers == 1);
  CHECK(m.dense_intermediate_size == 1536);
  CHECK(m.attention.num_heads == 8);
  CHECK(m.attention.q_lora_rank == 192);
  CHECK(m.attention.kv_lora_rank == 128);
  CHECK(m.attention.qk_nope_head_dim == 32);
  CHECK(m.attention.qk_rope_head_dim == 16);
  CHECK(m.attention.v_head_dim == 32);
  CHECK(m.moe.num_experts == 32);
  CHECK(m.moe.experts_per_token == 4);
  CHECK(m.moe.num_shared_experts == 1);
  CHECK(m.moe.expert_intermediate_size == 128);
  CHECK(m.moe.num_groups == 4);
  CHECK(m.moe.groups_per_token == 2);
  CHECK(m.moe.balancer == "aux_free");
  CHECK(m.moe.sequence_aux_loss_weight == 0.0001);
  CHECK(m.mtp.depth == 1);
  CHECK(m.mtp.loss_weight == 0.3);
  CHECK(c.train.seq_len == 512);
  CHECK(c.train.micro_batch_size == 4);
  CHECK(c.train.global_batch_size == 4);
  CHECK(c.train.precision == "fp32");
  CHECK(c.data.kind == "synthetic");
}

TEST_CASE("config: the 671B shapes validate and lay out on 2048 processes", "[config]") {
  Config c = core::load_config(kSource + "/configs/deepseek-v3-671b.yaml", {});
  CHECK(c.model.num_layers == 61);
  CHECK(c.model.hidden_size == 7168);
  CHECK(c.model.moe.route_scale == 2.5);
  CHECK(c.model.attention.q_lora_rank == 1536);
  CHECK_NOTHROW(core::validate_layout(c, 2048));
  CHECK_THROWS_WITH(core::validate_layout(c, 8), Contains("world size 8"));
  Config small = core::load_config(kSource + "/configs/small-moe.yaml", {});
  CHECK_NOTHROW(core::validate_layout(small, 16));
}

TEST_CASE("config: unknown keys name file:line:col and suggest the right key", "[config]") {
  CHECK_THROWS_AS(parse("model:\n  moe:\n    num_expert: 8\n"), ConfigError);
  CHECK_THROWS_WITH(parse("model:\n  moe:\n    num_expert: 8\n"),
                    Contains("x.yaml:3:5: unknown key 'model.moe.num_expert'") &&
                        Contains("did you mean 'model.moe.num_experts'?"));
  // The right name in the wrong group.
  CHECK_THROWS_WITH(parse("train:\n  lr: 1\n"),
                    Contains("x.yaml:2:3: unknown key 'train.lr'") && Contains("'optim.lr'"));
  CHECK_THROWS_WITH(parse("modle:\n  hidden_size: 8\n"),
                    Contains("x.yaml:1:1: unknown key 'modle'") && Contains("'model'"));
  CHECK_THROWS_WITH(parse("run:\n  completely_unrelated_thing: 1\n"), !Contains("did you mean"));
  CHECK_THROWS_WITH(parse("train:\n  steps: 1\n  steps: 2\n"),
                    Contains("x.yaml:3:3: duplicate key 'train.steps'"));
}

TEST_CASE("config: wrong types are errors with the position and the value", "[config]") {
  CHECK_THROWS_WITH(parse("model:\n  hidden_size: abc\n"),
                    Contains("x.yaml:2:16: model.hidden_size: expected an integer, got 'abc'"));
  CHECK_THROWS_WITH(parse("model:\n  hidden_size: 12.5\n"),
                    Contains("model.hidden_size: expected an integer, got '12.5'"));
  CHECK_THROWS_WITH(parse("train:\n  steps: \"10\"\n"),
                    Contains("train.steps: expected an integer, got the quoted string '10'"));
  CHECK_THROWS_WITH(parse("parallel:\n  zero1: ture\n"),
                    Contains("parallel.zero1: expected true or false, got 'ture'"));
  CHECK_THROWS_WITH(parse("optim:\n  lr: fast\n"),
                    Contains("optim.lr: expected a finite number, got 'fast'"));
  CHECK_THROWS_WITH(parse("model:\n  num_layers:\n    a: 1\n"),
                    Contains("model.num_layers: expected an integer, got a map"));
  CHECK_THROWS_WITH(parse("model:\n  num_layers:\n"),
                    Contains("x.yaml:2:3: model.num_layers: expected an integer, got nothing"));
  CHECK_THROWS_WITH(parse("run:\n  name: [a, b]\n"),
                    Contains("run.name: expected a string, got a list"));
  CHECK_THROWS_WITH(parse("model: 3\n"), Contains("model: expected a map of keys, got '3'"));
  CHECK_THROWS_WITH(parse("model:\n  hidden_size: 99999999999\n"),
                    Contains("model.hidden_size: 99999999999 is out of range"));
  CHECK_THROWS_WITH(parse("run:\n  seed: -1\n"),
                    Contains("run.seed: expected a non-negative integer, got '-1'"));
  CHECK_THROWS_WITH(parse("- a\n- b\n"), Contains("expected a map of keys at the top level"));
}

TEST_CASE("config: values of every type parse", "[config]") {
  Config c = parse(
      "run: {name: exp1, seed: 18446744073709551615}\n"
      "model: {hidden_size: +64, rms_norm_eps: 1e-5}\n"
      "optim: {lr: 2}\n"
      "parallel: {zero1: false, overlap: no}\n"
      "checkpoint: {dir: }\n"
      "train:\n");
  CHECK(c.run.name == "exp1");
  CHECK(c.run.seed == 18446744073709551615ull);
  CHECK(c.model.hidden_size == 64);
  CHECK(c.model.rms_norm_eps == 1e-5);
  CHECK(c.optim.lr == 2.0);
  CHECK(!c.parallel.zero1);
  CHECK(!c.parallel.overlap);
  CHECK(c.checkpoint.dir.empty());
  CHECK(c.origins.at("model.hidden_size") == "x.yaml:2:9");
  CHECK(parse("") == Config{});
}

TEST_CASE("config: impossible values and combinations are rejected", "[config]") {
  CHECK_THROWS_WITH(parse_and_validate("model:\n  moe:\n    experts_per_token: 9\n"),
                    Contains("x.yaml:3:5: model.moe.experts_per_token = 9") &&
                        Contains("8 experts a token can reach"));
  CHECK_THROWS_WITH(
      parse_and_validate("model:\n  moe:\n    num_experts: 8\n    num_groups: 3\n"),
      Contains(
          "x.yaml:4:5: model.moe.num_experts = 8 is not divisible by model.moe.num_groups = 3"));
  CHECK_THROWS_WITH(
      parse_and_validate("model:\n  moe:\n    num_groups: 4\n    groups_per_token: 1\n"
                         "    experts_per_token: 3\n"),
      Contains("model.moe.experts_per_token = 3 is more than the 2 experts"));
  CHECK_NOTHROW(
      parse_and_validate("model:\n  moe:\n    num_groups: 4\n    groups_per_token: 1\n"
                         "    experts_per_token: 2\n"));
  CHECK_THROWS_WITH(
      parse_and_validate("model:\n  moe:\n    num_groups: 4\n    groups_per_token: 5\n"),
      Contains("model.moe.groups_per_token = 5 must be between 1 and"));
  CHECK_THROWS_WITH(parse_and_validate("model:\n  attention:\n    qk_rope_head_dim: 15\n"),
                    Contains("qk_rope_head_dim = 15 must be even"));
  CHECK_THROWS_WITH(parse_and_validate("train:\n  global_batch_size: 30\n"),
                    Contains("train.global_batch_size = 30 is not a multiple of "
                             "train.micro_batch_size = 4"));
  CHECK_THROWS_WITH(parse_and_validate("data:\n  kind: tokens\n"),
                    Contains("data.kind = tokens needs data.path"));
  CHECK_THROWS_WITH(
      parse_and_validate("train:\n  precision: fp16\n"),
      Contains("x.yaml:2:3: train.precision = 'fp16' is not one of: fp32 | bf16 | fp8"));
  CHECK_THROWS_WITH(parse_and_validate("parallel:\n  link:\n    traffic: experts\n"),
                    Contains("parallel.link.traffic") && Contains("'experts' is no traffic class"));
  CHECK_NOTHROW(parse_and_validate("parallel:\n  link:\n    traffic: expert_a2a,pipeline\n"));
  CHECK_THROWS_WITH(
      parse_and_validate("runtime:\n  comm_thread_priority: high\n"),
      Contains("x.yaml:2:3: runtime.comm_thread_priority = 'high' is not one of: auto | realtime | normal"));
  CHECK_NOTHROW(parse_and_validate("runtime:\n  comm_thread_priority: normal\n"));
  CHECK_NOTHROW(parse_and_validate("optim:\n  warmup_steps: 400\n"));  // cut short, with a note
  CHECK_THROWS_WITH(parse_and_validate("optim:\n  min_lr: 0.1\n"),
                    Contains("optim.min_lr = 0.1 is above optim.lr = 0.003"));
  CHECK_THROWS_WITH(parse_and_validate("optim:\n  beta2: 1.0\n"),
                    Contains("optim.beta2 = 1 must be in [0, 1)"));
  CHECK_THROWS_WITH(parse_and_validate("data:\n  val_fraction: 1.0\n"),
                    Contains("data.val_fraction = 1 must be in [0, 1)"));
  CHECK_THROWS_WITH(parse_and_validate("data:\n  synthetic:\n    branching: 300\n"),
                    Contains("data.synthetic.branching = 300 must be between 2 and "
                             "model.vocab_size = 256"));
  CHECK_THROWS_WITH(parse_and_validate("model:\n  first_dense_layers: 5\n"),
                    Contains("model.first_dense_layers = 5 is more than model.num_layers = 4"));
  // Every problem is reported at once, one per line.
  CHECK_THROWS_WITH(parse_and_validate("train:\n  seq_len: 1\ncheckpoint:\n  keep: 0\n"),
                    Contains("problems in the configuration") &&
                        Contains("x.yaml:2:3: train.seq_len = 1 must be at least 2") &&
                        Contains("x.yaml:4:3: checkpoint.keep = 0 must be at least 1"));
}

TEST_CASE("config: --set overrides of every form", "[config]") {
  Config c = with_overrides(
      {"model.moe.balancer=none", "train.steps=10", "optim.lr=1e-3", "parallel.zero1=false",
       "run.name=my-run", "checkpoint.dir=", "data.path=/data/a b.bin", "optim.warmup_steps = 5"});
  CHECK(c.model.moe.balancer == "none");
  CHECK(c.train.steps == 10);
  CHECK(c.optim.lr == 1e-3);
  CHECK(!c.parallel.zero1);
  CHECK(c.run.name == "my-run");
  CHECK(c.checkpoint.dir.empty());
  CHECK(c.data.path == "/data/a b.bin");
  CHECK(c.optim.warmup_steps == 5);
  CHECK(c.origins.at("train.steps") == "--set train.steps=10");
  // A whole group as a flow map, and the last override winning.
  Config g = with_overrides(
      {"model.moe={num_experts: 16, experts_per_token: 4}", "model.moe.experts_per_token=3"});
  CHECK(g.model.moe.num_experts == 16);
  CHECK(g.model.moe.experts_per_token == 3);
  // Literal text for string keys even where it is not valid YAML.
  CHECK(with_overrides({"checkpoint.dir=@ckpt: x"}).checkpoint.dir == "@ckpt: x");
  // Overrides apply after the file.
  Config f = core::load_config(kSource + "/configs/bench-cpu.yaml", {"model.hidden_size=256"});
  CHECK(f.model.hidden_size == 256);
  CHECK(f.model.vocab_size == 8192);
}

TEST_CASE("config: bad --set overrides name the argument", "[config]") {
  CHECK_THROWS_WITH(with_overrides({"model.moe.num_expert=4"}),
                    Contains("--set model.moe.num_expert=4: unknown key 'model.moe.num_expert'") &&
                        Contains("did you mean 'model.moe.num_experts'?"));
  CHECK_THROWS_WITH(with_overrides({"model.hidden_size=abc"}),
                    Contains("--set model.hidden_size=abc: model.hidden_size: expected an "
                             "integer, got 'abc'"));
  CHECK_THROWS_WITH(with_overrides({"train.steps"}), Contains("expected key=value"));
  CHECK_THROWS_WITH(with_overrides({"=3"}), Contains("expected key=value"));
  CHECK_THROWS_WITH(with_overrides({"train.steps=[1"}), Contains("cannot read the value"));
  CHECK_THROWS_WITH(
      with_overrides({"model.moe.experts_per_token=9"}),
      Contains("--set model.moe.experts_per_token=9: model.moe.experts_per_token = 9"));
  CHECK_THROWS_WITH(with_overrides({"model.moe.balancer=aux"}),
                    Contains("--set model.moe.balancer=aux: model.moe.balancer = 'aux' is not one "
                             "of: aux_free | aux_loss | none"));
}

TEST_CASE("config: malformed YAML and missing files", "[config]") {
  CHECK_THROWS_AS(parse("model:\n  hidden_size: [1, 2\ntrain: 3\n"), ConfigError);
  CHECK_THROWS_WITH(parse("model:\n  hidden_size: [1, 2\ntrain: 3\n"),
                    Contains("x.yaml:3:") && Contains("invalid YAML"));
  CHECK_THROWS_WITH(parse("a: 1\n  b: 2\n"), Contains("x.yaml:2:4: invalid YAML"));
  CHECK_THROWS_WITH(parse("run: {}\n---\nrun: {}\n"), Contains("2 YAML documents"));
  CHECK_THROWS_WITH(core::load_config("/nonexistent/dir/x.yaml", {}),
                    Contains("cannot open config file '/nonexistent/dir/x.yaml'"));
}

TEST_CASE("config: to_yaml prints every key and round-trips", "[config]") {
  Config c;
  c.run.name = "a \"quoted\" name: yes\\no";
  c.run.seed = 18446744073709551615ull;
  c.model.rms_norm_eps = 1.0 / 3.0;
  c.optim.lr = 1e-300;
  c.optim.min_lr = 0;
  c.model.attention.rope_theta = 5e5;
  c.train.steps = 1234567890123;
  c.parallel.overlap = false;
  c.data.path = "yes";
  c.checkpoint.dir = "tab\there";
  c.train.resume = "/ckpt/step_100";
  c.parallel.schedule = "1f1b";
  std::string text = core::to_yaml(c);
  Config back = core::parse_config(text, "to_yaml");
  CHECK(back == c);
  CHECK(back.run.name == c.run.name);
  CHECK(back.model.rms_norm_eps == c.model.rms_norm_eps);
  for (const auto& key : core::config_keys()) {
    INFO(key);
    CHECK(back.origins.count(key) == 1);  // every key is present in the text
  }
  CHECK_THAT(text, Contains("model:\n  vocab_size: 256\n") &&
                       Contains("  moe:\n    num_experts: 8\n") && Contains("parallel:\n") &&
                       Contains("  link:\n    bandwidth_gbps: 0.0\n") &&
                       Contains("    balancer: aux_free\n") && Contains("  path: \"yes\"\n") &&
                       Contains("    rope_theta: 500000.0\n") &&
                       Contains("  resume: /ckpt/step_100\n") && Contains("schedule: \"1f1b\""));
  // == sees every key.
  Config d = c;
  d.data.synthetic.period = 7;
  CHECK(d != c);
}

TEST_CASE("config: validate_layout rules name the keys and the world size", "[config]") {
  Config c;
  c.parallel.pp = 4;
  CHECK_THROWS_WITH(core::validate_layout(c, 6),
                    Contains("world size 6 is not divisible by parallel.pp = 4"));
  c = Config{};
  c.parallel.ep = 4;
  CHECK_THROWS_WITH(core::validate_layout(c, 2),
                    Contains("parallel.ep = 4 does not divide dp = 2 (world size 2"));
  c = Config{};
  c.parallel.ep = 3;
  CHECK_THROWS_WITH(core::validate_layout(c, 3),
                    Contains("model.moe.num_experts = 8 is not divisible by parallel.ep = 3"));
  c = Config{};
  CHECK_THROWS_WITH(core::validate_layout(c, 3),
                    Contains("train.global_batch_size = 32 is not a multiple of "
                             "train.micro_batch_size 4 x dp 3 = 12 (world size 3"));
  CHECK_NOTHROW(core::validate_layout(c, 8));  // one micro-batch per rank
  c.parallel.pp = 2;                           // dualpipev on 4 ranks: dp 2, 4 chunks = 2 x pp
  CHECK_NOTHROW(core::validate_layout(c, 4));
  CHECK_THROWS_WITH(core::validate_layout(c, 8),
                    Contains("parallel.schedule = dualpipev needs at least 2 x parallel.pp = 4 "
                             "micro-batches per step, got 2"));
  c.parallel.pp = 3;
  c.parallel.schedule = "dualpipe";
  c.train.global_batch_size = 48;
  CHECK_THROWS_WITH(core::validate_layout(c, 3), Contains("dualpipe needs an even parallel.pp"));
  c.parallel.schedule = "1f1b";
  CHECK_NOTHROW(core::validate_layout(c, 3));
  c.parallel.pp = 4;
  c.parallel.schedule = "dualpipev";  // 8 stages for 4 layers
  c.train.global_batch_size = 32;
  CHECK_THROWS_WITH(core::validate_layout(c, 4),
                    Contains("model.num_layers = 4 cannot be split over the 8 pipeline stages"));
  c = Config{};
  c.parallel.chunks = 4;
  CHECK_THROWS_WITH(core::validate_layout(c, 1),
                    Contains("parallel.chunks = 4 disagrees with train.global_batch_size 32"));
  // Values from the file or --set are cited.
  Config s = core::load_config("", {"parallel.pp=4"});
  CHECK_THROWS_WITH(core::validate_layout(s, 6), Contains("--set parallel.pp=4: world size 6"));
}

TEST_CASE("config: docs/configuration.md documents every key", "[config]") {
  std::string doc = read_file(kSource + "/docs/configuration.md");
  REQUIRE(!doc.empty());
  for (const auto& key : core::config_keys()) {
    INFO(key);
    CHECK(doc.find("`" + key + "`") != std::string::npos);
  }
}
