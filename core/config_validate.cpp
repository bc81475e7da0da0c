// validate() and validate_layout(): the value ranges and cross-field rules of the config, checked
// before any collective starts so that a bad config ends the run with a message, not a hang.
//
// Every problem is collected (not just the first) and each names its key path(s), the values,
// what to do, and where the value was set (file:line:col or the --set argument).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <initializer_list>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/error.hpp"
#include "parallel/link_model.hpp"

namespace core {
namespace {

class Problems {
 public:
  explicit Problems(const Config& c) : c_(c) {}

  // `keys` are the keys the problem is about, the one to change first; the first one set
  // explicitly is the position cited, the others set elsewhere are listed after the message.
  void add(std::initializer_list<const char*> keys, const std::string& message) {
    std::string where, also;
    for (const char* k : keys) {
      auto it = c_.origins.find(k);
      if (it == c_.origins.end()) continue;
      if (where.empty())
        where = it->second;
      else if (it->second != where)
        also += fmt::format(" ({} is set at {})", k, it->second);
    }
    list_.push_back((where.empty() ? "" : where + ": ") + message + also);
  }

  void throw_if_any(const std::string& what) const {
    if (list_.empty()) return;
    if (list_.size() == 1) throw ConfigError(list_[0]);
    std::string msg = fmt::format("{} problems in the {}:", list_.size(), what);
    for (const auto& p : list_) msg += "\n  " + p;
    throw ConfigError(msg);
  }

 private:
  const Config& c_;
  std::vector<std::string> list_;
};

template <class T>
void at_least(Problems& p, const char* key, T value, T min, const char* why = "") {
  if (value < min) p.add({key}, fmt::format("{} = {} must be at least {}{}", key, value, min, why));
}

void positive(Problems& p, const char* key, double value) {
  if (!(value > 0)) p.add({key}, fmt::format("{} = {} must be greater than 0", key, value));
}

void one_of(Problems& p, const char* key, const std::string& value,
            std::initializer_list<const char*> allowed) {
  std::string choices;
  for (const char* a : allowed) {
    if (value == a) return;
    choices += (choices.empty() ? "" : " | ") + std::string(a);
  }
  p.add({key}, fmt::format("{} = '{}' is not one of: {}", key, value, choices));
}

void check_model(Problems& p, const ModelConfig& m) {
  at_least(p, "model.vocab_size", m.vocab_size, 2);
  at_least(p, "model.hidden_size", m.hidden_size, 1);
  at_least(p, "model.num_layers", m.num_layers, 1);
  at_least(p, "model.first_dense_layers", m.first_dense_layers, 0);
  if (m.first_dense_layers > m.num_layers)
    p.add({"model.first_dense_layers", "model.num_layers"},
          fmt::format("model.first_dense_layers = {} is more than model.num_layers = {}; "
                      "at most every layer can be dense",
                      m.first_dense_layers, m.num_layers));
  if (m.first_dense_layers > 0)
    at_least(p, "model.dense_intermediate_size", m.dense_intermediate_size, 1,
             " (the first model.first_dense_layers layers use it)");
  positive(p, "model.rms_norm_eps", m.rms_norm_eps);
  positive(p, "model.init_std", m.init_std);

  const AttentionConfig& a = m.attention;
  at_least(p, "model.attention.num_heads", a.num_heads, 1);
  at_least(p, "model.attention.q_lora_rank", a.q_lora_rank, 0, " (0 = plain query projection)");
  at_least(p, "model.attention.kv_lora_rank", a.kv_lora_rank, 1);
  at_least(p, "model.attention.qk_nope_head_dim", a.qk_nope_head_dim, 0);
  if (a.qk_rope_head_dim <= 0 || a.qk_rope_head_dim % 2 != 0)
    p.add({"model.attention.qk_rope_head_dim"},
          fmt::format("model.attention.qk_rope_head_dim = {} must be even and positive: RoPE "
                      "rotates pairs of dimensions",
                      a.qk_rope_head_dim));
  at_least(p, "model.attention.v_head_dim", a.v_head_dim, 1);
  positive(p, "model.attention.rope_theta", a.rope_theta);

  const MoeConfig& e = m.moe;
  at_least(p, "model.moe.num_experts", e.num_experts, 1);
  at_least(p, "model.moe.experts_per_token", e.experts_per_token, 1);
  at_least(p, "model.moe.num_shared_experts", e.num_shared_experts, 0);
  at_least(p, "model.moe.expert_intermediate_size", e.expert_intermediate_size, 1);
  at_least(p, "model.moe.num_groups", e.num_groups, 1, " (1 = no group-limited routing)");
  if (e.num_experts >= 1 && e.num_groups >= 1) {
    if (e.num_experts % e.num_groups != 0) {
      p.add({"model.moe.num_groups", "model.moe.num_experts"},
            fmt::format("model.moe.num_experts = {} is not divisible by model.moe.num_groups = {}; "
                        "choose a number of groups that divides the number of experts",
                        e.num_experts, e.num_groups));
    } else if (e.groups_per_token < 1 || e.groups_per_token > e.num_groups) {
      p.add({"model.moe.groups_per_token", "model.moe.num_groups"},
            fmt::format("model.moe.groups_per_token = {} must be between 1 and "
                        "model.moe.num_groups = {}",
                        e.groups_per_token, e.num_groups));
    } else {
      int per_group = e.num_experts / e.num_groups;
      int reachable = e.groups_per_token * per_group;
      if (e.experts_per_token > reachable)
        p.add(
            {"model.moe.experts_per_token", "model.moe.groups_per_token", "model.moe.num_groups"},
            fmt::format("model.moe.experts_per_token = {} is more than the {} experts a token can "
                        "reach (groups_per_token {} x {} experts per group = num_experts {} / "
                        "num_groups {}); lower model.moe.experts_per_token or raise "
                        "model.moe.groups_per_token",
                        e.experts_per_token, reachable, e.groups_per_token, per_group,
                        e.num_experts, e.num_groups));
    }
  }
  positive(p, "model.moe.route_scale", e.route_scale);
  one_of(p, "model.moe.balancer", e.balancer, {"aux_free", "aux_loss", "none"});
  at_least(p, "model.moe.bias_update_rate", e.bias_update_rate, 0.0);
  at_least(p, "model.moe.aux_loss_weight", e.aux_loss_weight, 0.0);
  at_least(p, "model.moe.sequence_aux_loss_weight", e.sequence_aux_loss_weight, 0.0);

  at_least(p, "model.mtp.depth", m.mtp.depth, 0, " (0 = no multi-token prediction)");
  at_least(p, "model.mtp.loss_weight", m.mtp.loss_weight, 0.0);
}

void check_train(Problems& p, const Config& c) {
  const TrainConfig& t = c.train;
  at_least<int64_t>(p, "train.steps", t.steps, 1);
  at_least(p, "train.seq_len", t.seq_len, 2, " (a sequence needs an input and a next token)");
  if (c.model.mtp.depth >= 0 && t.seq_len >= 2 && c.model.mtp.depth >= t.seq_len)
    p.add({"model.mtp.depth", "train.seq_len"},
          fmt::format("model.mtp.depth = {} leaves no position with a target in a sequence of "
                      "train.seq_len = {}; lower the depth or raise seq_len",
                      c.model.mtp.depth, t.seq_len));
  at_least(p, "train.micro_batch_size", t.micro_batch_size, 1);
  at_least(p, "train.global_batch_size", t.global_batch_size, 1);
  if (t.micro_batch_size >= 1 && t.global_batch_size >= 1 &&
      t.global_batch_size % t.micro_batch_size != 0)
    p.add({"train.global_batch_size", "train.micro_batch_size"},
          fmt::format("train.global_batch_size = {} is not a multiple of train.micro_batch_size "
                      "= {}; a step is a whole number of micro-batches",
                      t.global_batch_size, t.micro_batch_size));
  one_of(p, "train.precision", t.precision, {"fp32", "bf16", "fp8"});
  at_least<int64_t>(p, "train.eval_every", t.eval_every, 0, " (0 = never)");
  at_least(p, "train.eval_batches", t.eval_batches, 1);
  at_least<int64_t>(p, "train.log_every", t.log_every, 1);
  at_least(p, "train.threads", t.threads, 0, " (0 = share this node's cores)");
  if (t.resume.empty())
    p.add({"train.resume"}, "train.resume is empty; use auto, never or a checkpoint path");
  at_least(p, "train.max_skipped_steps", t.max_skipped_steps, 0,
           " (0 = stop at the first non-finite step)");
  at_least(p, "train.expect.eval_loss_below", t.expect.eval_loss_below, 0.0, " (0 = off)");
  const double gap = t.expect.gap_closed_above;
  if (!(gap >= 0 && gap <= 100))
    p.add({"train.expect.gap_closed_above"},
          fmt::format("train.expect.gap_closed_above = {} must be a percentage in [0, 100] "
                      "(0 = off), like the 'gap closed' figure of the final line",
                      gap));
  for (auto [key, v] : {std::pair{"train.expect.eval_loss_below", t.expect.eval_loss_below},
                        std::pair{"train.expect.gap_closed_above", gap}})
    if (v > 0 && t.eval_every == 0)
      p.add({key, "train.eval_every"},
            fmt::format("{} = {} is checked against the final evaluation, but train.eval_every "
                        "= 0 turns evaluation off; set train.eval_every > 0",
                        key, v));
}

void check_optim(Problems& p, const Config& c) {
  const OptimConfig& o = c.optim;
  positive(p, "optim.lr", o.lr);
  at_least(p, "optim.min_lr", o.min_lr, 0.0);
  if (o.min_lr > o.lr && o.lr > 0)
    p.add({"optim.min_lr", "optim.lr"},
          fmt::format("optim.min_lr = {} is above optim.lr = {}; the schedule decays from lr "
                      "down to min_lr",
                      o.min_lr, o.lr));
  at_least<int64_t>(p, "optim.warmup_steps", o.warmup_steps, 0);
  one_of(p, "optim.schedule", o.schedule, {"cosine", "wsd", "constant"});
  if (!(o.decay_fraction >= 0 && o.decay_fraction <= 1))
    p.add({"optim.decay_fraction"},
          fmt::format("optim.decay_fraction = {} must be in [0, 1]", o.decay_fraction));
  at_least(p, "optim.weight_decay", o.weight_decay, 0.0);
  for (auto [key, beta] : {std::pair{"optim.beta1", o.beta1}, std::pair{"optim.beta2", o.beta2}})
    if (!(beta >= 0 && beta < 1)) p.add({key}, fmt::format("{} = {} must be in [0, 1)", key, beta));
  positive(p, "optim.eps", o.eps);
  at_least(p, "optim.grad_clip", o.grad_clip, 0.0, " (0 = no clipping)");
  one_of(p, "optim.moment_dtype", o.moment_dtype, {"fp32", "bf16"});
}

void check_rest(Problems& p, const Config& c) {
  if (c.run.name.empty() || c.run.name == "." || c.run.name == ".." ||
      c.run.name.find('/') != std::string::npos)
    p.add({"run.name"}, fmt::format("run.name = '{}' must be a plain directory name (non-empty, "
                                    "no '/'): the run directory is runs/<name>",
                                    c.run.name));

  const ParallelConfig& par = c.parallel;
  at_least(p, "parallel.pp", par.pp, 1);
  at_least(p, "parallel.ep", par.ep, 1);
  one_of(p, "parallel.schedule", par.schedule, {"dualpipe", "dualpipev", "1f1b"});
  at_least(p, "parallel.chunks", par.chunks, 0, " (0 = derived from the batch sizes)");
  positive(p, "parallel.bucket_mb", par.bucket_mb);
  for (int n : par.pipeline_layers)
    if (n < 1)
      p.add({"parallel.pipeline_layers"},
            fmt::format("parallel.pipeline_layers = [{}]: every stage needs at least one block",
                        fmt::join(par.pipeline_layers, ", ")));
  at_least(p, "parallel.link.bandwidth_gbps", par.link.bandwidth_gbps, 0.0, " (0 = no emulation)");
  at_least(p, "parallel.link.latency_us", par.link.latency_us, 0.0);
  try {
    parallel::LinkModel::parse_traffic(par.link.traffic);
  } catch (const ConfigError& e) {
    p.add({"parallel.link.traffic"}, e.what());
  }

  const DataConfig& d = c.data;
  one_of(p, "data.kind", d.kind, {"synthetic", "text", "tokens"});
  if ((d.kind == "text" || d.kind == "tokens") && d.path.empty())
    p.add({"data.path", "data.kind"},
          fmt::format("data.kind = {} needs data.path (a {}); set it, e.g. --set data.path=...",
                      d.kind, d.kind == "text" ? "text file" : "llm.c .bin or Megatron prefix"));
  if (!(d.val_fraction >= 0 && d.val_fraction < 1))
    p.add({"data.val_fraction"},
          fmt::format("data.val_fraction = {} must be in [0, 1)", d.val_fraction));
  if (d.synthetic.branching < 2 || d.synthetic.branching > c.model.vocab_size)
    p.add({"data.synthetic.branching", "model.vocab_size"},
          fmt::format("data.synthetic.branching = {} must be between 2 and model.vocab_size = {}",
                      d.synthetic.branching, c.model.vocab_size));
  if (d.synthetic.period < 0 || d.synthetic.period > c.train.seq_len)
    p.add({"data.synthetic.period", "train.seq_len"},
          fmt::format("data.synthetic.period = {} must be 0 (= seq_len / 2) or between 1 and "
                      "train.seq_len = {}",
                      d.synthetic.period, c.train.seq_len));

  at_least<int64_t>(p, "checkpoint.every", c.checkpoint.every, 0, " (0 = never)");
  at_least(p, "checkpoint.keep", c.checkpoint.keep, 1);
  one_of(p, "runtime.device", c.runtime.device, {"cpu", "cuda"});
  positive(p, "runtime.comm_timeout_s", c.runtime.comm_timeout_s);
  one_of(p, "runtime.comm_thread_priority", c.runtime.comm_thread_priority, {"auto", "realtime", "normal"});
  at_least(p, "runtime.stop_grace_s", c.runtime.stop_grace_s, 0.0, " (0 = no limit)");
  at_least(p, "runtime.memory_limit_gb", c.runtime.memory_limit_gb, 0.0, " (0 = the memory the machine has)");
}

}  // namespace

void validate(const Config& c) {
  Problems p(c);
  check_model(p, c.model);
  check_train(p, c);
  check_optim(p, c);
  check_rest(p, c);
  p.throw_if_any("configuration");
}

void validate_layout(const Config& c, int world) {
  Problems p(c);
  const ParallelConfig& par = c.parallel;
  const TrainConfig& t = c.train;
  if (world < 1) FLOT_THROW(ConfigError, "world size {} must be at least 1", world);
  if (par.pp < 1 || par.ep < 1 || t.micro_batch_size < 1)
    FLOT_THROW(ConfigError,
               "parallel.pp = {}, parallel.ep = {} and train.micro_batch_size = {} "
               "must be at least 1 (run validate() first)",
               par.pp, par.ep, t.micro_batch_size);
  if (world % par.pp != 0) {
    p.add({"parallel.pp"},
          fmt::format("world size {} is not divisible by parallel.pp = {} (dp = world / pp); "
                      "launch a multiple of {} processes or change parallel.pp",
                      world, par.pp, par.pp));
    p.throw_if_any("parallel layout");  // everything below depends on dp
  }
  int dp = world / par.pp;
  if (dp % par.ep != 0)
    p.add({"parallel.ep", "parallel.pp"},
          fmt::format("parallel.ep = {} does not divide dp = {} (world size {} / parallel.pp {}); "
                      "choose an ep that divides the data-parallel size",
                      par.ep, dp, world, par.pp));
  if (c.model.moe.num_experts % par.ep != 0)
    p.add({"parallel.ep", "model.moe.num_experts"},
          fmt::format("model.moe.num_experts = {} is not divisible by parallel.ep = {}; each "
                      "expert-parallel rank holds the same number of experts",
                      c.model.moe.num_experts, par.ep));
  int64_t per_step = static_cast<int64_t>(t.micro_batch_size) * dp;
  if (t.global_batch_size % per_step != 0) {
    p.add({"train.global_batch_size", "train.micro_batch_size"},
          fmt::format("train.global_batch_size = {} is not a multiple of train.micro_batch_size "
                      "{} x dp {} = {} (world size {}, parallel.pp {}); change the batch sizes "
                      "or the number of processes",
                      t.global_batch_size, t.micro_batch_size, dp, per_step, world, par.pp));
    p.throw_if_any("parallel layout");  // the number of chunks is undefined
  }
  int64_t derived = t.global_batch_size / per_step;
  int64_t chunks = par.chunks == 0 ? derived : par.chunks;
  std::string chunks_from = par.chunks != 0
                                ? std::string("parallel.chunks")
                                : fmt::format(
                                      "train.global_batch_size {} / (micro_batch_size {} x dp {}, "
                                      "world size {})",
                                      t.global_batch_size, t.micro_batch_size, dp, world);
  if (par.chunks != 0 && par.chunks != derived)
    p.add({"parallel.chunks", "train.global_batch_size"},
          fmt::format("parallel.chunks = {} disagrees with train.global_batch_size {} / "
                      "(micro_batch_size {} x dp {}) = {} micro-batches per step; set chunks to 0 "
                      "or change the batch sizes",
                      par.chunks, t.global_batch_size, t.micro_batch_size, dp, derived));
  if (par.pp > 1) {
    const std::string& s = par.schedule;
    if (s == "dualpipe" && par.pp % 2 != 0)
      p.add({"parallel.schedule", "parallel.pp"},
            fmt::format("parallel.schedule = dualpipe needs an even parallel.pp, got {}; use "
                        "dualpipev or 1f1b, or an even pp",
                        par.pp));
    if ((s == "dualpipe" || s == "dualpipev") && chunks < 2 * par.pp)
      p.add({"parallel.chunks", "train.global_batch_size"},
            fmt::format("parallel.schedule = {} needs at least 2 x parallel.pp = {} micro-batches "
                        "per step, got {} = {}; raise train.global_batch_size or lower "
                        "train.micro_batch_size",
                        s, 2 * par.pp, chunks, chunks_from));
    if (s == "dualpipe" && chunks % 2 != 0)
      p.add({"parallel.chunks", "train.global_batch_size"},
            fmt::format("parallel.schedule = dualpipe needs an even number of micro-batches per "
                        "step (half flow each way), got {} = {}",
                        chunks, chunks_from));
    if (s == "1f1b" && chunks < par.pp)
      p.add({"parallel.chunks", "train.global_batch_size"},
            fmt::format("parallel.schedule = 1f1b needs at least parallel.pp = {} micro-batches "
                        "per step, got {} = {}",
                        par.pp, chunks, chunks_from));
    int stages = s == "dualpipev" ? 2 * par.pp : par.pp;
    if (c.model.num_layers < stages)
      p.add({"model.num_layers", "parallel.pp"},
            fmt::format("model.num_layers = {} cannot be split over the {} pipeline stages of "
                        "parallel.schedule = {} with parallel.pp = {}; lower pp or add layers",
                        c.model.num_layers, stages, s, par.pp));
  }
  if (!par.pipeline_layers.empty()) {
    const int stages = par.pp > 1 && par.schedule == "dualpipev" ? 2 * par.pp : par.pp;
    int sum = 0;
    for (int n : par.pipeline_layers) sum += n;
    if (static_cast<int>(par.pipeline_layers.size()) != stages || sum != c.model.num_layers)
      p.add({"parallel.pipeline_layers", "parallel.pp", "model.num_layers"},
            fmt::format("parallel.pipeline_layers = [{}] must list {} stage sizes (parallel.pp {}"
                        "{}) that add up to model.num_layers = {}; leave it empty ([]) for an "
                        "automatic split",
                        fmt::join(par.pipeline_layers, ", "), stages, par.pp,
                        stages != par.pp ? ", two stages per rank with dualpipev" : "",
                        c.model.num_layers));
  }
  p.throw_if_any("parallel layout");
}

}  // namespace core
