// Config: the plain structs behind the YAML keys of docs/configuration.md, with their defaults.
//
// Filled by load_config() from a YAML file plus `--set a.b=v` overrides. Every key has a default
// here (the built-in default is the tiny CI model); unknown keys, wrong types, impossible values
// and inconsistent combinations throw core::ConfigError naming file:line:column and the key path.
// validate() checks everything that does not depend on the world size; validate_layout() adds the
// rules that do, before any collective starts.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace core {

struct RunConfig {
  std::string name = "tiny";
  uint64_t seed = 1234;
  bool tensorboard = true;  // also write <run dir>/tb/events.out.tfevents.*
};

struct AttentionConfig {
  int num_heads = 4;
  int q_lora_rank = 0;  // 0 = plain query projection
  int kv_lora_rank = 64;
  int qk_nope_head_dim = 32;
  int qk_rope_head_dim = 16;
  int v_head_dim = 32;
  double rope_theta = 10000.0;
};

struct MoeConfig {
  int num_experts = 8;
  int experts_per_token = 2;
  int num_shared_experts = 1;
  int expert_intermediate_size = 96;
  int num_groups = 1;  // 1 = no group limiting
  int groups_per_token = 1;
  double route_scale = 1.0;
  std::string balancer = "aux_free";  // aux_free | aux_loss | none
  double bias_update_rate = 0.003;  // the recipe uses 0.001 over ~1e5 steps; short runs need more
  double aux_loss_weight = 0.01;
  double sequence_aux_loss_weight = 0.0001;
};

struct MtpConfig {
  int depth = 1;  // 0 = no multi-token prediction
  double loss_weight = 0.3;
};

struct ModelConfig {
  int vocab_size = 256;
  int hidden_size = 128;
  int num_layers = 4;
  int first_dense_layers = 1;
  int dense_intermediate_size = 384;
  double rms_norm_eps = 1e-6;
  double init_std = 0.02;
  AttentionConfig attention;
  MoeConfig moe;
  MtpConfig mtp;
};

// Pass/fail thresholds on the final evaluation for CI smoke runs; 0 = off. A missed one ends
// `flotilla train` with exit code 3.
struct ExpectConfig {
  double eval_loss_below = 0;
  double gap_closed_above = 0;  // percent of the gap from ln V down to the entropy floor
};

struct TrainConfig {
  int64_t steps = 300;
  int seq_len = 128;
  int micro_batch_size = 4;
  int global_batch_size = 32;
  std::string precision = "fp32";  // fp32 | bf16 | fp8
  int64_t eval_every = 50;         // 0 = never
  int eval_batches = 4;            // micro-batches per evaluation
  int64_t log_every = 1;
  int threads = 0;                 // 0 = this node's cores shared among its local ranks
  std::string resume = "auto";     // auto | never | <checkpoint path>
  int max_skipped_steps = 5;       // consecutive non-finite steps skipped before the run stops
  ExpectConfig expect;
};

struct OptimConfig {
  double lr = 3e-3;
  double min_lr = 3e-4;
  int64_t warmup_steps = 20;
  std::string schedule = "cosine";  // cosine | wsd | constant
  double decay_fraction = 0.2;      // wsd: share of the steps spent in the final decay
  double weight_decay = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double grad_clip = 1.0;           // 0 = no clipping
  std::string moment_dtype = "fp32";  // fp32 | bf16
};

struct LinkConfig {
  double bandwidth_gbps = 0;  // 0 = no emulation
  double latency_us = 0;
  std::string traffic = "all";  // which Traffic takes the link: all, or e.g. expert_a2a
};

struct ParallelConfig {
  int pp = 1;
  int ep = 1;
  std::string schedule = "dualpipev";  // dualpipe | dualpipev | 1f1b (sequential when pp = 1)
  int chunks = 0;
  bool zero1 = true;
  bool overlap = true;
  // Transformer blocks per pipeline stage (pp entries, 2 pp for dualpipev); empty = split
  // automatically by estimated cost (embedding, head and MTP included).
  std::vector<int> pipeline_layers;
  double bucket_mb = 4;  // gradient reduction bucket size
  LinkConfig link;
};

struct SyntheticConfig {
  int branching = 16;  // successors of each token in the Markov chain (uniform)
  int period = 16;     // the sequence repeats itself after this many tokens; 0 = seq_len / 2
};

struct DataConfig {
  std::string kind = "synthetic";  // synthetic | text | tokens
  std::string path;
  double val_fraction = 0.01;
  SyntheticConfig synthetic;
};

struct CheckpointConfig {
  std::string dir;  // "" = runs/<name>/checkpoints
  int64_t every = 100;
  int keep = 3;
};

struct RuntimeConfig {
  std::string device = "cpu";  // cpu | cuda
  double comm_timeout_s = 300;
  // auto | realtime | normal: the scheduling class of each rank's communication thread (see
  // parallel::mpi::Engine; auto: launch::comm_thread_class)
  std::string comm_thread_priority = "auto";
  double stop_grace_s = 120;  // after a first SIGINT/SIGTERM; 0 = no limit
  double memory_limit_gb = 0;  // memory per node for the pre-flight plan; 0 = what the machine has
};

struct Config {
  RunConfig run;
  ModelConfig model;
  TrainConfig train;
  OptimConfig optim;
  ParallelConfig parallel;
  DataConfig data;
  CheckpointConfig checkpoint;
  RuntimeConfig runtime;
  // Where each key's value came from ("configs/x.yaml:12:5" or "--set a.b=v"), so that
  // validate() can point at the line to fix. Not a setting: to_yaml() and == ignore it.
  std::map<std::string, std::string> origins;
};

// Loads `path` (empty = the built-in defaults above) and applies `overrides` ("a.b=value", in
// order; values are parsed as YAML scalars), then validate(). Throws ConfigError.
Config load_config(const std::string& path, const std::vector<std::string>& overrides);
// Parses YAML text (`source` names it in messages) on top of `base`; no validation.
Config parse_config(const std::string& yaml_text, const std::string& source, Config base = {});
// Checks values and cross-field rules that do not depend on the number of processes.
void validate(const Config& c);
// Checks the rules that involve the world size (pp x dp grid, ep divides dp, batch divisibility).
void validate_layout(const Config& c, int world_size);
// The resolved config as YAML with every key (what is printed at start and saved in the run dir).
std::string to_yaml(const Config& c);
// Every key path ("model.moe.num_experts", ...) in the order to_yaml() prints them.
std::vector<std::string> config_keys();
// Compares every key (not origins); what a resumed run checks against its checkpoint.
bool operator==(const Config& a, const Config& b);
inline bool operator!=(const Config& a, const Config& b) { return !(a == b); }
// A key whose value differs between two configs, with both values as printed by to_yaml().
struct KeyDiff {
  std::string key, a, b;
};
std::vector<KeyDiff> diff_configs(const Config& a, const Config& b);

}  // namespace core
