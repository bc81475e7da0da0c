// Launchers of the DeepSeek-V3 gate (kernels/moe_ops.hpp): validation, empty work, dtype dispatch.
#include <cmath>
#include <vector>

#include "kernels/cpu/moe_check.hpp"
#include "kernels/cpu/moe_cpu.hpp"
#include "kernels/cuda_ops.hpp"
#include "kernels/moe_ops.hpp"

namespace kernels {

namespace {

void check_gate_shape(const GateShape& g) {
  FLOT_CHECK(g.num_experts >= 1, "num_experts = {}", g.num_experts);
  FLOT_CHECK(g.num_groups >= 1 && g.num_experts % g.num_groups == 0,
             "num_groups = {} must divide num_experts = {}", g.num_groups, g.num_experts);
  FLOT_CHECK(g.groups_per_token >= 1 && g.groups_per_token <= g.num_groups,
             "groups_per_token = {} outside [1, num_groups = {}]", g.groups_per_token, g.num_groups);
  const int kept = g.groups_per_token * (g.num_experts / g.num_groups);
  FLOT_CHECK(g.top_k >= 1 && g.top_k <= kept,
             "top_k = {} outside [1, {}] (the experts of groups_per_token = {} groups of {})", g.top_k,
             kept, g.groups_per_token, g.num_experts / g.num_groups);
  FLOT_CHECK(g.top_k <= cpu::kMaxTopK && g.groups_per_token <= cpu::kMaxTopK,
             "top_k = {} and groups_per_token = {} must be at most {}", g.top_k, g.groups_per_token,
             cpu::kMaxTopK);
  FLOT_CHECK(std::isfinite(g.route_scale), "route_scale = {}", g.route_scale);
}

}  // namespace

void gate_forward(Context& ctx, const GateShape& g, const Tensor& logits, const Tensor& bias,
                  const Tensor& scores, const Tensor& expert_idx, const Tensor& weights) {
  check_gate_shape(g);
  const int64_t E = g.num_experts, k = g.top_k;
  core::check_shape(logits, {-1, E}, "gate logits");
  const int64_t n = logits.shape[0];
  core::check_shape(bias, {E}, "gate bias");
  core::check_shape(scores, {n, E}, "gate scores");
  core::check_shape(expert_idx, {n, k}, "gate expert_idx");
  core::check_shape(weights, {n, k}, "gate weights");
  moe_check::float_dtype(logits, "gate logits");
  // The recipe keeps the bias in FP32; float64 runs (gradient checks) may pass either.
  FLOT_CHECK(bias.dtype == logits.dtype || bias.dtype == core::DType::f32,
             "gate bias is {}, expected f32 or the logits' {}", core::dtype_name(bias.dtype),
             core::dtype_name(logits.dtype));
  core::check_dtype(scores, logits.dtype, "gate scores");
  core::check_dtype(weights, logits.dtype, "gate weights");
  core::check_dtype(expert_idx, core::DType::i32, "gate expert_idx");
  const bool gpu = moe_check::on_cuda({{&logits, "gate logits"},
                                       {&bias, "gate bias"},
                                       {&scores, "gate scores"},
                                       {&expert_idx, "gate expert_idx"},
                                       {&weights, "gate weights"}});
  if (n == 0) return;
  if (gpu) {
    moe_check::f32_on_cuda(logits, "gate logits");
    moe_check::f32_on_cuda(bias, "gate bias");
    return cuda::gate_forward(ctx, g, logits, bias, scores, expert_idx, weights);
  }
  moe_check::dispatch_float(logits.dtype, [&](auto tag) {
    using T = decltype(tag);
    std::vector<T> converted;
    const T* b;
    if (bias.dtype == logits.dtype) {
      b = bias.ptr<T>();
    } else {
      const float* bf = bias.ptr<float>();
      converted.assign(bf, bf + E);
      b = converted.data();
    }
    cpu::gate_forward<T>(g, n, logits.ptr<T>(), b, scores.ptr<T>(), expert_idx.ptr<int32_t>(),
                         weights.ptr<T>(), cpu::moe_threads(ctx));
  });
}

void gate_backward(Context& ctx, const GateShape& g, const Tensor& dweights, const Tensor& scores,
                   const Tensor& expert_idx, const Tensor& dscores_extra, const Tensor& dlogits) {
  check_gate_shape(g);
  const int64_t E = g.num_experts, k = g.top_k;
  core::check_shape(scores, {-1, E}, "gate scores");
  const int64_t n = scores.shape[0];
  core::check_shape(dweights, {n, k}, "gate dweights");
  core::check_shape(expert_idx, {n, k}, "gate expert_idx");
  core::check_shape(dlogits, {n, E}, "gate dlogits");
  moe_check::float_dtype(scores, "gate scores");
  core::check_dtype(dweights, scores.dtype, "gate dweights");
  core::check_dtype(dlogits, scores.dtype, "gate dlogits");
  core::check_dtype(expert_idx, core::DType::i32, "gate expert_idx");
  const bool extra = !dscores_extra.empty();
  if (extra) {
    core::check_shape(dscores_extra, {n, E}, "gate dscores_extra");
    core::check_dtype(dscores_extra, scores.dtype, "gate dscores_extra");
  }
  const bool gpu = moe_check::on_cuda({{&dweights, "gate dweights"},
                                       {&scores, "gate scores"},
                                       {&expert_idx, "gate expert_idx"},
                                       {&dlogits, "gate dlogits"},
                                       {&dscores_extra, "gate dscores_extra"}});
  if (n == 0) return;
  if (gpu) {
    moe_check::f32_on_cuda(scores, "gate scores");
    return cuda::gate_backward(ctx, g, dweights, scores, expert_idx, dscores_extra, dlogits);
  }
  moe_check::index_range(expert_idx, E, "gate expert_idx");
  moe_check::dispatch_float(scores.dtype, [&](auto tag) {
    using T = decltype(tag);
    cpu::gate_backward<T>(g, n, dweights.ptr<T>(), scores.ptr<T>(), expert_idx.ptr<int32_t>(),
                          extra ? dscores_extra.ptr<T>() : nullptr, dlogits.ptr<T>(),
                          cpu::moe_threads(ctx));
  });
}

}  // namespace kernels
