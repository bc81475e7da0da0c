// Launchers of the sequence-wise / batch-wise balance loss (kernels/moe_ops.hpp).
#include <algorithm>

#include "kernels/cpu/moe_check.hpp"
#include "kernels/cpu/moe_cpu.hpp"
#include "kernels/cuda_ops.hpp"
#include "kernels/moe_ops.hpp"

namespace kernels {

namespace {

// Returns the token count N of scores [N, E].
int64_t check_balance(const Tensor& scores, int top_k, int64_t segment_len) {
  core::check_shape(scores, {-1, -1}, "balance scores");
  moe_check::float_dtype(scores, "balance scores");
  if (scores.device == core::Device::cuda) moe_check::f32_on_cuda(scores, "balance scores");
  const int64_t n = scores.shape[0], E = scores.shape[1];
  FLOT_CHECK(top_k >= 1 && top_k <= std::min<int64_t>(E, cpu::kMaxTopK),
             "balance top_k = {} outside [1, min(experts = {}, {})]", top_k, E, cpu::kMaxTopK);
  FLOT_CHECK(segment_len >= 1 && n % segment_len == 0,
             "balance segment_len = {} must be positive and divide the token count {}", segment_len,
             n);
  return n;
}

}  // namespace

double balance_loss_forward(Context& ctx, const Tensor& scores, int top_k, int64_t segment_len,
                            double alpha) {
  const int64_t n = check_balance(scores, top_k, segment_len);
  if (n == 0) return 0.0;  // no segments: the mean over none is taken as 0
  if (scores.device == core::Device::cuda)
    return cuda::balance_loss_forward(ctx, scores, top_k, segment_len, alpha);
  double loss = 0;
  moe_check::dispatch_float(scores.dtype, [&](auto tag) {
    using T = decltype(tag);
    loss = cpu::balance_loss_forward<T>(n, scores.shape[1], scores.ptr<T>(), top_k, segment_len,
                                        alpha, cpu::moe_threads(ctx));
  });
  return loss;
}

void balance_loss_backward(Context& ctx, const Tensor& scores, int top_k, int64_t segment_len,
                           double alpha, double dloss, const Tensor& dscores) {
  const int64_t n = check_balance(scores, top_k, segment_len);
  core::check_shape(dscores, {n, scores.shape[1]}, "balance dscores");
  core::check_dtype(dscores, scores.dtype, "balance dscores");
  const bool gpu = moe_check::on_cuda({{&scores, "balance scores"}, {&dscores, "balance dscores"}});
  if (n == 0) return;
  if (gpu)
    return cuda::balance_loss_backward(ctx, scores, top_k, segment_len, alpha, dloss, dscores);
  moe_check::dispatch_float(scores.dtype, [&](auto tag) {
    using T = decltype(tag);
    cpu::balance_loss_backward<T>(n, scores.shape[1], scores.ptr<T>(), top_k, segment_len, alpha,
                                  dloss, dscores.ptr<T>(), cpu::moe_threads(ctx));
  });
}

}  // namespace kernels
