// Cost estimates per block and the min-max contiguous split of blocks over stages.
#include "core/stage_plan.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <limits>

#include "core/error.hpp"

namespace core {
namespace {

// Forward matmul FLOPs per token of the parts of a block (x3 for forward + backward).
double attention_flops(const ModelConfig& m, int seq_len) {
  const auto& a = m.attention;
  const double D = m.hidden_size, H = a.num_heads, qk = a.qk_nope_head_dim + a.qk_rope_head_dim;
  double p = a.q_lora_rank > 0 ? D * a.q_lora_rank + a.q_lora_rank * H * qk : D * H * qk;
  p += D * (a.kv_lora_rank + a.qk_rope_head_dim) +
       a.kv_lora_rank * H * (a.qk_nope_head_dim + a.v_head_dim) + H * a.v_head_dim * D;
  const double core = 2.0 * (seq_len + 1) / 2.0 * H * (qk + a.v_head_dim);
  return 2.0 * p + core;
}

double ffn_flops(const ModelConfig& m, bool moe) {
  const double D = m.hidden_size;
  if (!moe) return 2.0 * 3 * D * m.dense_intermediate_size;
  const auto& e = m.moe;
  return 2.0 * (e.num_experts * D +
                3 * D * e.expert_intermediate_size * (e.experts_per_token + e.num_shared_experts));
}

}  // namespace

StageCosts stage_costs(const Config& c) {
  const ModelConfig& m = c.model;
  StageCosts s;
  for (int l = 0; l < m.num_layers; ++l)
    s.blocks.push_back(3.0 * (attention_flops(m, c.train.seq_len) +
                              ffn_flops(m, l >= m.first_dense_layers)));
  s.embedding = 3.0 * m.hidden_size;
  const double head = 2.0 * m.vocab_size * m.hidden_size;
  const bool mtp_moe = m.first_dense_layers < m.num_layers;
  const double mtp_block = attention_flops(m, c.train.seq_len) + ffn_flops(m, mtp_moe) +
                           2.0 * 2 * m.hidden_size * m.hidden_size;
  s.head_end = 3.0 * (head * (1 + m.mtp.depth) + mtp_block * m.mtp.depth);
  return s;
}

std::vector<StagePlan> plan_stages(const Config& c, int num_stages) {
  const int L = c.model.num_layers;
  FLOT_CHECK(num_stages >= 1 && num_stages <= L, "{} stages for {} blocks", num_stages, L);
  std::vector<int> sizes = c.parallel.pipeline_layers;
  if (sizes.empty()) {
    const StageCosts cost = stage_costs(c);
    // best[s][i]: the smallest possible largest-stage cost splitting blocks [0, i) over stages
    // [0, s); cut[s][i] the start of stage s-1 in that split.
    const double inf = std::numeric_limits<double>::infinity();
    std::vector<double> prefix(L + 1, 0);
    for (int i = 0; i < L; ++i) prefix[i + 1] = prefix[i] + cost.blocks[i];
    auto stage_cost = [&](int s, int b, int e) {
      double v = prefix[e] - prefix[b];
      if (s == 0) v += cost.embedding;
      if (s == num_stages - 1) v += cost.head_end;
      return v;
    };
    std::vector<std::vector<double>> best(num_stages + 1, std::vector<double>(L + 1, inf));
    std::vector<std::vector<int>> cut(num_stages + 1, std::vector<int>(L + 1, 0));
    best[0][0] = 0;
    for (int s = 1; s <= num_stages; ++s)
      for (int i = s; i <= L; ++i)
        for (int j = s - 1; j < i; ++j) {
          double v = std::max(best[s - 1][j], stage_cost(s - 1, j, i));
          if (v < best[s][i]) {
            best[s][i] = v;
            cut[s][i] = j;
          }
        }
    sizes.assign(num_stages, 0);
    for (int s = num_stages, i = L; s >= 1; --s) {
      sizes[s - 1] = i - cut[s][i];
      i = cut[s][i];
    }
  }
  FLOT_CHECK(static_cast<int>(sizes.size()) == num_stages, "{} stage sizes for {} stages",
             sizes.size(), num_stages);
  std::vector<StagePlan> plans;
  int first = 0;
  for (int s = 0; s < num_stages; ++s) {
    plans.push_back({s, num_stages, first, sizes[s]});
    first += sizes[s];
  }
  FLOT_CHECK(first == L, "stage sizes add up to {}, the model has {} blocks", first, L);
  return plans;
}

std::string describe_plans(const Config& c, const std::vector<StagePlan>& plans) {
  const StageCosts cost = stage_costs(c);
  double total = cost.embedding + cost.head_end;
  for (double b : cost.blocks) total += b;
  std::string out;
  for (const auto& p : plans) {
    double v = 0;
    for (int i = p.first_block; i < p.first_block + p.num_blocks; ++i) v += cost.blocks[i];
    if (p.has_embedding()) v += cost.embedding;
    if (p.has_head()) v += cost.head_end;
    out += fmt::format("{}stage {}: blocks {}-{}{}{} ({:.0f}%)", out.empty() ? "" : ", ", p.stage,
                       p.first_block, p.first_block + p.num_blocks - 1,
                       p.has_embedding() ? " + embedding" : "", p.has_head() ? " + head, MTP" : "",
                       100.0 * v / total);
  }
  return out;
}

}  // namespace core
