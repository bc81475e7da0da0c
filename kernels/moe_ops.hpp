// The MoE ops: DeepSeek-V3 gate (sigmoid scores, selection-only bias, group-limited top-k),
// balance losses, the routing plan, permute / combine, and the grouped GEMM over contiguous
// per-expert segments. Same conventions as kernels/ops.hpp.
#pragma once

#include "core/context.hpp"
#include "core/tensor.hpp"

namespace kernels {

using core::Context;
using core::Tensor;

struct GateShape {
  int num_experts = 0;
  int top_k = 0;
  int num_groups = 1;        // experts are split into this many equal groups
  int groups_per_token = 1;  // groups kept per token
  double route_scale = 1.0;
};

// logits [N, E] (= x . e_i, computed by the layer), bias [E] (selection only, never trained).
// scores = sigmoid(logits) [N, E]. Selection: biased = scores + bias; group score = sum of the
// top-2 biased scores of each group (the one score if a group has one expert); keep the top
// groups_per_token groups, mask the rest with -inf; take the top_k experts of the masked biased
// scores. Ties go to the lower index. expert_idx i32 [N, k] lists them in descending biased order.
// weights [N, k] = route_scale * s_sel / sum(s_sel) using the UNBIASED scores.
void gate_forward(Context& ctx, const GateShape& g, const Tensor& logits, const Tensor& bias,
                  const Tensor& scores, const Tensor& expert_idx, const Tensor& weights);
// dlogits [N, E] (written) from dweights [N, k] through the normalization and the sigmoid, plus
// dscores_extra [N, E] (gradient arriving directly at the scores, e.g. from a balance loss;
// may be empty).
void gate_backward(Context& ctx, const GateShape& g, const Tensor& dweights, const Tensor& scores,
                   const Tensor& expert_idx, const Tensor& dscores_extra, const Tensor& dlogits);

// Balance loss over segments of `segment_len` consecutive tokens, averaged over segments:
//   L = alpha * mean_seg sum_i f_i P_i,  f_i = E / (k T) * #{t in seg : i in topk(s_t)},
//   P_i = 1/T sum_{t in seg} s_{i,t} / sum_j s_{j,t}; T = segment_len, topk on UNBIASED scores.
// segment_len = seq_len is the recipe's sequence-wise loss; segment_len = N is the batch-wise
// auxiliary loss. f carries no gradient.
double balance_loss_forward(Context& ctx, const Tensor& scores, int top_k, int64_t segment_len,
                            double alpha);
// dscores [N, E] += dloss * dL/dscores
void balance_loss_backward(Context& ctx, const Tensor& scores, int top_k, int64_t segment_len,
                           double alpha, double dloss, const Tensor& dscores);

// Routing plan: a stable counting sort of the N*k (token, slot) pairs by expert.
// offsets i32 [E + 1]: rows of expert e are [offsets[e], offsets[e+1]) of the permuted order.
// src i32 [N*k]: for each permuted row, the pair index token*k + slot it came from.
// pos i32 [N*k]: for each pair index, its permuted row (the inverse of src).
// counts int64 per expert are offsets differences. Rows keep token order within an expert.
void moe_plan(Context& ctx, const Tensor& expert_idx, int num_experts, const Tensor& offsets,
              const Tensor& src, const Tensor& pos);
// xs [N*k, D]: xs[r] = x[src[r] / k]. Rows are copied whole, so x may hold any dtype (floats,
// BF16, FP8 codes, or uint8 rows packing FP8 codes with their scales); xs has x's dtype.
void moe_permute(Context& ctx, const Tensor& x, const Tensor& src, int top_k, const Tensor& xs);
// dx [N, D] += sum_j dxs[pos[t*k + j]]  (accumulate)
void moe_permute_backward(Context& ctx, const Tensor& dxs, const Tensor& pos, int top_k,
                          const Tensor& dx);
// y [N, D] += sum_j weights[t, j] * ys[pos[t*k + j]]  (accumulate)
void moe_combine(Context& ctx, const Tensor& ys, const Tensor& weights, const Tensor& pos,
                 const Tensor& y);
// dys [N*k, D] = weights * dy (written); dweights [N, k] = <dy[t], ys[pos]> (written)
void moe_combine_backward(Context& ctx, const Tensor& dy, const Tensor& ys, const Tensor& weights,
                          const Tensor& pos, const Tensor& dys, const Tensor& dweights);

// Grouped GEMM over contiguous row segments, one expert's weight per segment:
// for each e: C[rows of e] = alpha * A[rows of e] op(B[e]) + beta * C[rows of e].
// A [M, K]; B [E, N, K] when trans_b (the usual [out, in] weight layout) else [E, K, N];
// C [M, N]; offsets i32 [E + 1] with offsets[E] = M. Experts with no rows are skipped.
void grouped_gemm(Context& ctx, const Tensor& A, const Tensor& B, bool trans_b,
                  const Tensor& offsets, const Tensor& C, double alpha = 1.0, double beta = 0.0);
// Weight gradient of the trans_b form: dB[e] [N, K] += dC[rows of e]^T A[rows of e]  (accumulate)
void grouped_gemm_wgrad(Context& ctx, const Tensor& dC, const Tensor& A, const Tensor& offsets,
                        const Tensor& dB);

}  // namespace kernels
