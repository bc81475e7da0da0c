// The memory plan, from the shapes. Each term mirrors an allocation of a layer's forward or
// backward (core/layers/*.cpp, core/stage.cpp); when a layer changes what it keeps, change it here
// too: tests/core/test_memory_plan.cpp compares the plan with the arenas after real steps.
#include "core/memory_plan.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "core/error.hpp"

namespace core {
namespace {

constexpr int64_t kF = 4;                 // f32 bytes: parameters, gradients, activations
constexpr int64_t kI = 4;                 // i32 bytes: token ids, routing indices
constexpr int64_t kMinArena = 1 << 20;    // a BumpArena's smallest block (core/arena.cpp)

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t pad_to(int64_t a, int64_t m) { return m > 1 ? ceil_div(a, m) * m : a; }

// Parameter elements, as counted and as laid out (every tensor starts on a 64-byte line,
// core/params.cpp).
struct Count {
  static constexpr int64_t kAlignElems = 16;
  int64_t raw = 0, aligned = 0;
  std::vector<int64_t> sizes;  // in registration order
  void add(int64_t n) {
    raw += n;
    aligned += ceil_div(n, kAlignElems) * kAlignElems;
    sizes.push_back(n);
  }
  // Elements of real tensors inside [begin, end) of this group's region: the AdamW moments of
  // a shard (optim/sharded_adamw.cpp skips the alignment gaps).
  int64_t inside(int64_t begin, int64_t end) const {
    int64_t at = 0, n = 0;
    for (int64_t sz : sizes) {
      n += std::max<int64_t>(0, std::min(at + sz, end) - std::max(at, begin));
      at += ceil_div(sz, kAlignElems) * kAlignElems;
    }
    return n;
  }
};

// What one layer keeps, per micro-batch of N rows, in the three precisions.
class Shapes {
 public:
  Shapes(const Config& c, int ep)
      : m_(c.model), a_(c.model.attention), N_(int64_t{c.train.micro_batch_size} * c.train.seq_len),
        D_(c.model.hidden_size), ep_(ep), fp32_(c.train.precision == "fp32"),
        fp8_(c.train.precision == "fp8") {}

  int64_t rows() const { return N_; }

  // ---- parameters: each tensor as the store registers it (elements) ----
  void attention_params(Count& n) const {
    const int64_t H = a_.num_heads, qk = a_.qk_nope_head_dim + a_.qk_rope_head_dim;
    const int64_t qr = a_.q_lora_rank, kvr = a_.kv_lora_rank;
    if (qr > 0) {
      n.add(qr * D_);
      n.add(qr);
      n.add(H * qk * qr);
    } else {
      n.add(H * qk * D_);
    }
    n.add((kvr + a_.qk_rope_head_dim) * D_);
    n.add(kvr);
    n.add(H * (a_.qk_nope_head_dim + a_.v_head_dim) * kvr);
    n.add(D_ * H * a_.v_head_dim);
    n.add(D_);  // input_layernorm
  }
  void mlp_params(Count& n, int64_t inter) const {
    n.add(2 * inter * D_);
    n.add(D_ * inter);
  }
  void dense_params(Count& n) const {
    mlp_params(n, m_.dense_intermediate_size);
    n.add(D_);  // post_attention_layernorm
  }
  // The gate, shared experts and norm (replicated over dp) and this rank's routed experts
  // (stacked, one tensor per projection).
  void moe_params(Count& dense, Count& expert) const {
    const int64_t F = m_.moe.expert_intermediate_size, local = m_.moe.num_experts / ep_;
    dense.add(int64_t{m_.moe.num_experts} * D_);
    expert.add(local * 2 * F * D_);
    expert.add(local * D_ * F);
    if (m_.moe.num_shared_experts > 0) mlp_params(dense, F * m_.moe.num_shared_experts);
    dense.add(D_);
  }
  bool has_moe() const { return m_.first_dense_layers < m_.num_layers; }

  // ---- activations kept in a slot (bytes) ----
  // A Linear input's own copy in low precision (BF16, or FP8 codes with 1x128 scales); FP32
  // keeps the tensor itself, counted where it is made.
  int64_t kept(int64_t r, int64_t c) const {
    if (fp32_) return 0;
    return fp8_ ? r * c + r * ceil_div(c, 128) * kF : 2 * r * c;
  }
  // A tensor that only feeds a Linear: in the slot in FP32, in the scratch otherwise.
  int64_t linear_only(int64_t r, int64_t c) const { return fp32_ ? r * c * kF : 0; }
  // A dispatched row's width on the wire (FP8: codes and scales packed side by side).
  int64_t wire(int64_t c) const { return fp32_ ? c * kF : fp8_ ? c + ceil_div(c, 128) * kF : 2 * c; }
  int64_t combine_width() const { return fp32_ ? kF : 2; }  // BF16 combine in low precision

  // The residual wrapper (norm statistics, normed input unless the inside copies it, input
  // gradient) around attention.
  int64_t attention_slot() const {
    const int64_t N = N_, H = a_.num_heads, qk = a_.qk_nope_head_dim + a_.qk_rope_head_dim;
    const int64_t dv = a_.v_head_dim, dr = a_.qk_rope_head_dim, qr = a_.q_lora_rank, kvr = a_.kv_lora_rank;
    int64_t b = N * kF + (fp32_ ? N * D_ * kF : 0) + N * D_ * kF;        // rstd, a, da
    b += kept(N, D_) + N * H * qk * kF;                                   // a copy, q
    if (qr > 0) b += N * qr * kF + N * kF + linear_only(N, qr) + kept(N, qr);
    b += N * kvr * kF + N * kF + linear_only(N, kvr) + kept(N, kvr);     // ckv, rstd, ckvn
    b += N * H * (qk + 2 * dv) * kF + N * H * kF;                         // k, v, o, lse
    // backward: dq, dkvb, dkpe, dckvn, dckv (and dcqn, dcq)
    b += N * H * qk * kF + N * H * (a_.qk_nope_head_dim + dv) * kF + N * dr * kF + 2 * N * kvr * kF;
    if (qr > 0) b += 2 * N * qr * kF;
    return b;
  }
  int64_t mlp_slot(int64_t rows, int64_t inter, bool copies_input) const {
    int64_t b = (copies_input ? kept(rows, D_) : 0) + rows * 2 * inter * kF;  // h
    b += fp32_ ? rows * inter * kF : kept(rows, inter);                      // g
    return b + rows * 2 * inter * kF;                                        // dh
  }
  // rstd, a, da around the dense MLP
  int64_t dense_slot() const { return N_ * kF + 2 * N_ * D_ * kF + mlp_slot(N_, m_.dense_intermediate_size, true); }
  int64_t moe_slot(bool parallel) const {
    const int64_t N = N_, E = m_.moe.num_experts, k = m_.moe.experts_per_token;
    const int64_t F = m_.moe.expert_intermediate_size, R = N * k;  // R: balanced routed rows
    int64_t b = N * kF + 2 * N * D_ * kF;                              // rstd, a, da
    b += N * E * kF + N * k * (kI + kF) + (E + 1) * kI + 2 * N * k * kI + kept(N, D_);  // gate, plan
    // dispatch: permuted rows, and (parallel) the reordered arrivals with their maps
    if (parallel) {
      b += N * k * wire(D_) + 2 * R * kI + (fp8_ ? kept(R, D_) : R * wire(D_));
    } else {
      b += fp8_ ? kept(R, D_) : R * wire(D_);
    }
    b += R * 2 * F * kF + (fp32_ ? R * F * kF : kept(R, F)) + R * D_ * combine_width();  // he, ge, ye
    if (parallel) b += R * D_ * combine_width() + N * k * D_ * combine_width();          // back, ys
    if (m_.moe.num_shared_experts > 0) b += mlp_slot(N, F * m_.moe.num_shared_experts, false);
    // backward: dys, dweights, the gradient's trip to the experts, dhe, dxe, its trip back, dlogits
    b += (fp32_ ? N * k * D_ * kF : 0) + N * k * kF;
    if (parallel) {
      b += fp32_ ? 0 : N * k * wire(D_);                   // dys converted (and packed) to travel
      b += R * wire(D_) + (fp8_ ? kept(R, D_) : R * wire(D_));  // dye_in, reordered
    } else {
      b += kept(R, D_);
    }
    b += R * 2 * F * kF + (fp32_ ? R * D_ * kF : 0);
    if (parallel)
      b += R * D_ * combine_width() + N * k * D_ * combine_width();
    else if (!fp32_)
      b += R * D_ * combine_width();
    return b + N * E * kF;
  }
  int64_t head_slot() const { return 2 * N_ * kF + N_ * D_ * kF + N_ * D_ * kF; }  // rstd, lse, hn, dh
  int64_t mtp_slot(bool parallel) const {
    const int64_t N = N_;
    int64_t b = 2 * N * D_ * kF;                                          // embedding, output
    b += 2 * N * kF + N * D_ * kF + linear_only(N, 2 * D_) + kept(N, 2 * D_) + N * D_ * kF;  // norms, hp, cat, a1
    b += attention_slot() + (has_moe() ? moe_slot(parallel) : dense_slot());
    b += head_slot() - N * D_ * kF;                                      // its head (dh is dout)
    b += 3 * N * D_ * kF + N * D_ * kF + N * D_ * kF + 2 * N * D_ * kF;  // dout, de, dh carry, da1, dhp, dcat
    return b;
  }

  // The largest within-call scratch (temporaries of one layer call), roughly.
  int64_t scratch() const {
    const int64_t N = N_, H = a_.num_heads, qk = a_.qk_nope_head_dim + a_.qk_rope_head_dim;
    const int64_t dv = a_.v_head_dim, F = m_.moe.expert_intermediate_size, k = m_.moe.experts_per_token;
    const int64_t lp_a = fp32_ ? 0 : N * D_ * kF;
    int64_t s = std::max(lp_a + N * H * (a_.qk_nope_head_dim + dv) * kF + N * a_.qk_rope_head_dim * kF +
                             (fp32_ ? 0 : N * (a_.q_lora_rank + a_.kv_lora_rank) * kF),
                         N * H * (qk + 2 * dv) * kF);
    s = std::max(s, N * m_.dense_intermediate_size * kF);
    if (has_moe()) {
      const int64_t R = N * k;
      s = std::max(s, N * int64_t{m_.moe.num_experts} * kF);
      s = std::max(s, R * F * kF + (fp32_ ? 0 : R * D_ * kF + N * k * D_ * kF));
    }
    s = std::max(s, 2 * N * D_ * kF + (fp32_ ? 0 : 2 * N * D_ * kF));
    return std::max(s, kMinArena);
  }

 private:
  const ModelConfig& m_;
  const AttentionConfig& a_;
  int64_t N_, D_;
  int ep_;
  bool fp32_, fp8_;
};

}  // namespace

MemoryPlan plan_memory(const Config& c, const std::vector<PlannedStage>& stages, int dp, int ep,
                       int dp_rank) {
  const ModelConfig& m = c.model;
  Shapes sh(c, ep);
  const int64_t D = m.hidden_size, V = m.vocab_size, N = sh.rows();
  const int depth = m.mtp.depth;
  const bool parallel = ep > 1;

  Count dense, expert;
  bool embedding = false;
  for (const PlannedStage& ps : stages) {
    const StagePlan& p = ps.plan;
    if (!embedding && (p.has_embedding() || (p.has_head() && depth > 0))) {
      dense.add(V * D);  // one table per rank, registered by its first stage that needs it
      embedding = true;
    }
    for (int l = p.first_block; l < p.first_block + p.num_blocks; ++l) {
      sh.attention_params(dense);
      if (l < m.first_dense_layers)
        sh.dense_params(dense);
      else
        sh.moe_params(dense, expert);
    }
    if (p.has_head()) {
      dense.add(D);      // model.norm
      dense.add(V * D);  // lm_head (the MTP heads share it)
      for (int k = 0; k < depth; ++k) {
        dense.add(D);  // enorm
        dense.add(D);  // hnorm
        dense.add(2 * D * D);
        sh.attention_params(dense);
        if (sh.has_moe())
          sh.moe_params(dense, expert);
        else
          sh.dense_params(dense);
        dense.add(D);  // shared_head.norm
      }
    }
  }
  MemoryPlan plan;
  plan.param_elements = dense.raw + expert.raw;
  // Each reduction group's region is padded so that ZeRO-1 shards it evenly in whole lines.
  const int edp = dp / ep;
  const int64_t padded_dense = pad_to(dense.aligned, dp * Count::kAlignElems);
  const int64_t padded_expert = pad_to(expert.aligned, edp * Count::kAlignElems);
  plan.params = (padded_dense + padded_expert) * kF;
  plan.grads = plan.params;
  const int64_t moment = c.optim.moment_dtype == "bf16" ? 2 : 4;
  int64_t owned = dense.raw + expert.raw;
  if (c.parallel.zero1) {
    const int64_t dl = padded_dense / dp, el = padded_expert / edp, er = dp_rank / ep;
    owned = dense.inside(dp_rank * dl, (dp_rank + 1) * dl) + expert.inside(er * el, (er + 1) * el);
  }
  plan.optimizer = 2 * owned * moment;

  for (const PlannedStage& ps : stages) {
    const StagePlan& p = ps.plan;
    int64_t slot = 0;
    if (p.has_embedding()) slot += N * kI + N * D * kF;  // tokens, embedded rows
    else slot += N * D * kF;                             // the received input
    if (!p.has_head()) slot += N * D * kF;               // the received output gradient
    int moe_layers = 0;
    for (int l = p.first_block; l < p.first_block + p.num_blocks; ++l) {
      slot += 4 * N * D * kF;  // two layers' outputs and input gradients
      slot += sh.attention_slot();
      if (l < m.first_dense_layers) {
        slot += sh.dense_slot();
      } else {
        slot += sh.moe_slot(parallel);
        ++moe_layers;
      }
    }
    if (p.has_head()) {
      slot += (depth + 1) * N * kI + sh.head_slot();
      for (int k = 0; k < depth; ++k) slot += sh.mtp_slot(parallel);
      if (sh.has_moe()) moe_layers += depth;
    }
    plan.activations += ps.slots * std::max(slot, kMinArena) + sh.scratch();
    // Each MoE layer keeps one receive buffer per slot for the dispatched rows.
    if (parallel)
      plan.exchange += int64_t{ps.slots} * moe_layers * N * m.moe.experts_per_token * sh.wire(D);
  }
  return plan;
}

int64_t available_memory(double limit_gb) {
  if (limit_gb > 0) return static_cast<int64_t>(limit_gb * (1ull << 30));
  int64_t avail = -1;
  std::ifstream mi("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (mi >> key >> kb >> unit)
    if (key == "MemAvailable:") avail = kb * 1024;
  // A cgroup (v2) limit below the machine's: a container or a batch allocation.
  auto read_int = [](const char* path, int64_t* v) {
    std::ifstream f(path);
    std::string s;
    if (!(f >> s) || s == "max") return false;
    try {
      *v = std::stoll(s);
    } catch (...) {
      return false;
    }
    return true;
  };
  int64_t limit = 0, usage = 0;
  if (read_int("/sys/fs/cgroup/memory.max", &limit) && read_int("/sys/fs/cgroup/memory.current", &usage)) {
    const int64_t left = std::max<int64_t>(0, limit - usage);
    avail = avail < 0 ? left : std::min(avail, left);
  }
  return avail;
}

int64_t peak_resident_bytes() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<int64_t>(ru.ru_maxrss) * 1024;  // Linux reports KiB
}

std::string describe_memory(const MemoryPlan& p) {
  auto mib = [](int64_t b) { return b / 1048576.0; };
  std::string s = fmt::format("params {:.1f} MiB, grads {:.1f} MiB, optimizer {:.1f} MiB, activations {:.1f} MiB",
                              mib(p.params), mib(p.grads), mib(p.optimizer), mib(p.activations));
  if (p.exchange > 0) s += fmt::format(", expert receive buffers {:.1f} MiB", mib(p.exchange));
  return s + fmt::format(" = {:.1f} MiB", mib(p.total()));
}

void check_memory_plan(const Config& c, const MemoryPlan& plan, int local_ranks, int64_t available) {
  if (available <= 0) return;  // unknown: nothing to check against
  const int64_t need = plan.total() * std::max(1, local_ranks);
  if (need <= available) return;
  const int64_t state = plan.params + plan.grads + plan.optimizer;
  // Without a pipeline, expert parallelism with overlap keeps up to 4 micro-batches in flight
  // (the sequential schedule's paired ends), without overlap 2.
  const bool paired = c.parallel.pp == 1 && c.parallel.ep > 1 && c.parallel.overlap;
  const std::string keys =
      plan.activations + plan.exchange > state
          ? std::string("train.micro_batch_size, train.seq_len, parallel.pp (fewer layers per rank), or ") +
                (paired ? "parallel.overlap=false (2 micro-batches in flight instead of 4)"
                        : "parallel.schedule (1f1b keeps fewer micro-batches in flight than dualpipe)")
          : "parallel.pp, parallel.ep (fewer experts per rank), parallel.zero1=true, "
            "optim.moment_dtype=bf16, or the model's sizes";
  FLOT_THROW(ConfigError,
             "the memory plan does not fit: {} rank(s) on this node need {:.2f} GiB ({} each) but "
             "{:.2f} GiB is available{}. Change {} (or set runtime.memory_limit_gb if the "
             "available memory is misjudged)",
             std::max(1, local_ranks), need / 1073741824.0, describe_memory(plan),
             available / 1073741824.0,
             c.runtime.memory_limit_gb > 0 ? " (runtime.memory_limit_gb)" : "", keys);
}

}  // namespace core
