// Launchers for the fused output head + cross-entropy: x [N, D], W [V, D], targets i32 [N].
#include "kernels/cpu/head_ce.hpp"

#include <array>

#include "kernels/cpu/dispatch.hpp"
#include "kernels/cuda_ops.hpp"
#include "kernels/ops.hpp"

namespace kernels {

namespace {

// Returns {N, D, V}. A target >= V is a tokenizer / vocab-size mismatch, rejected with its index
// (targets on the GPU are checked by the kernel instead).
std::array<int64_t, 3> check_head_ce(const char* op, const Tensor& x, const Tensor& W,
                                     const Tensor& targets, const Tensor& per_token, bool gpu) {
  core::check_shape(x, {-1, -1}, "head_ce: x");
  const int64_t N = x.shape[0], D = x.shape[1];
  core::check_shape(W, {-1, D}, "head_ce: W");
  const int64_t V = W.shape[0];
  core::check_dtype(targets, core::DType::i32, "head_ce: targets");
  core::check_shape(targets, {N}, "head_ce: targets");
  core::check_shape(per_token, {N}, "head_ce: lse");
  FLOT_CHECK(V > 0 || N == 0, "{}: empty vocabulary (W {})", op, W.shape_str());
  const int32_t* t = N && !gpu ? targets.ptr<int32_t>() : nullptr;
  if (gpu) return {N, D, V};
  for (int64_t n = 0; n < N; ++n)
    FLOT_CHECK(t[n] < V, "{}: target {} at position {} outside the vocabulary of {}", op, t[n], n,
               V);
  return {N, D, V};
}

}  // namespace

void head_ce_forward(Context& ctx, const Tensor& x, const Tensor& W, const Tensor& targets,
                     const Tensor& losses, const Tensor& lse) {
  const char* op = "head_ce_forward";
  const bool gpu = detail::on_cuda(op, {&x, &W, &targets, &losses, &lse});
  core::DType dt = detail::float_dtype(op, {&x, &W, &losses, &lse});
  const auto [N, D, V] = check_head_ce(op, x, W, targets, lse, gpu);
  core::check_shape(losses, {N}, "head_ce_forward: losses");
  if (N == 0) return;
  if (gpu) {
    detail::require_f32_on_cuda(op, dt);
    return cuda::head_ce_forward(ctx, x, W, targets, losses, lse);
  }
  detail::dispatch_float(dt, op, [&](auto tag) {
    using T = decltype(tag);
    cpu::head_ce_forward<T>(x.ptr<T>(), W.ptr<T>(), targets.ptr<int32_t>(), N, D, V,
                            losses.ptr<T>(), lse.ptr<T>());
  });
}

void head_ce_backward(Context& ctx, const Tensor& x, const Tensor& W, const Tensor& targets,
                      const Tensor& lse, double scale, const Tensor& dx, const Tensor& dW) {
  const char* op = "head_ce_backward";
  const bool gpu = detail::on_cuda(op, {&x, &W, &targets, &lse, &dx, &dW});
  core::DType dt = detail::float_dtype(op, {&x, &W, &lse, &dx, &dW});
  const auto [N, D, V] = check_head_ce(op, x, W, targets, lse, gpu);
  if (!dx.empty()) core::check_shape(dx, {N, D}, "head_ce_backward: dx");
  if (!dW.empty()) core::check_shape(dW, {V, D}, "head_ce_backward: dW");
  if (N == 0 || (dx.empty() && dW.empty())) return;
  if (gpu) {
    detail::require_f32_on_cuda(op, dt);
    return cuda::head_ce_backward(ctx, x, W, targets, lse, scale, dx, dW);
  }
  detail::dispatch_float(dt, op, [&](auto tag) {
    using T = decltype(tag);
    cpu::head_ce_backward<T>(x.ptr<T>(), W.ptr<T>(), targets.ptr<int32_t>(), lse.ptr<T>(), N, D, V,
                             static_cast<T>(scale), dx.empty() ? nullptr : dx.ptr<T>(),
                             dW.empty() ? nullptr : dW.ptr<T>());
  });
}

}  // namespace kernels
