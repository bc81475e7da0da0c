// Launchers for RMSNorm: x and y are [N, D] views (higher ranks fold to rows), w [D], rstd [N].
#include "kernels/cpu/norm.hpp"

#include "kernels/cpu/dispatch.hpp"
#include "kernels/cuda_ops.hpp"
#include "kernels/ops.hpp"

namespace kernels {

namespace {

// x folds to [N, D]; `other` (y, dy or dx) must fold to the same [N, D] ([B, T, D] against
// [B*T, D] is fine, a different row length is not).
void check_rows(const char* what, const Tensor& x, const Tensor& other) {
  FLOT_CHECK(x.ndim >= 1 && other.ndim >= 1 && detail::fold_rows(x) == detail::fold_rows(other) &&
                 x.cols() == other.cols(),
             "{} has shape {}, expected x's {}", what, other.shape_str(), x.shape_str());
}

}  // namespace

void rmsnorm_forward(Context& ctx, const Tensor& x, const Tensor& w, double eps, const Tensor& y,
                     const Tensor& rstd) {
  const char* op = "rmsnorm_forward";
  const bool gpu = detail::on_cuda(op, {&x, &w, &y, &rstd});
  core::DType dt = detail::float_dtype(op, {&x, &w, &y, &rstd});
  check_rows("rmsnorm_forward: y", x, y);
  const int64_t N = detail::fold_rows(x), D = x.cols();
  core::check_shape(w, {D}, "rmsnorm_forward: w");
  core::check_shape(rstd, {N}, "rmsnorm_forward: rstd");
  FLOT_CHECK(eps >= 0, "rmsnorm_forward: eps {} < 0", eps);
  if (N == 0 || D == 0) return;
  if (gpu) {
    detail::require_f32_on_cuda(op, dt);
    return cuda::rmsnorm_forward(ctx, x, w, eps, y, rstd);
  }
  detail::dispatch_float(dt, op, [&](auto tag) {
    using T = decltype(tag);
    cpu::rmsnorm_forward<T>(x.ptr<T>(), w.ptr<T>(), N, D, static_cast<T>(eps), y.ptr<T>(),
                            rstd.ptr<T>());
  });
}

void rmsnorm_backward_input(Context& ctx, const Tensor& dy, const Tensor& x, const Tensor& w,
                            const Tensor& rstd, const Tensor& dx) {
  const char* op = "rmsnorm_backward_input";
  const bool gpu = detail::on_cuda(op, {&dy, &x, &w, &rstd, &dx});
  core::DType dt = detail::float_dtype(op, {&dy, &x, &w, &rstd, &dx});
  check_rows("rmsnorm_backward_input: dy", x, dy);
  check_rows("rmsnorm_backward_input: dx", x, dx);
  const int64_t N = detail::fold_rows(x), D = x.cols();
  core::check_shape(w, {D}, "rmsnorm_backward_input: w");
  core::check_shape(rstd, {N}, "rmsnorm_backward_input: rstd");
  if (N == 0 || D == 0) return;
  if (gpu) {
    detail::require_f32_on_cuda(op, dt);
    return cuda::rmsnorm_backward_input(ctx, dy, x, w, rstd, dx);
  }
  detail::dispatch_float(dt, op, [&](auto tag) {
    using T = decltype(tag);
    cpu::rmsnorm_backward_input<T>(dy.ptr<T>(), x.ptr<T>(), w.ptr<T>(), rstd.ptr<T>(), N, D,
                                   dx.ptr<T>());
  });
}

void rmsnorm_backward_weight(Context& ctx, const Tensor& dy, const Tensor& x, const Tensor& rstd,
                             const Tensor& dw) {
  const char* op = "rmsnorm_backward_weight";
  const bool gpu = detail::on_cuda(op, {&dy, &x, &rstd, &dw});
  core::DType dt = detail::float_dtype(op, {&dy, &x, &rstd, &dw});
  check_rows("rmsnorm_backward_weight: dy", x, dy);
  const int64_t N = detail::fold_rows(x), D = x.cols();
  core::check_shape(dw, {D}, "rmsnorm_backward_weight: dw");
  core::check_shape(rstd, {N}, "rmsnorm_backward_weight: rstd");
  if (N == 0 || D == 0) return;
  if (gpu) {
    detail::require_f32_on_cuda(op, dt);
    return cuda::rmsnorm_backward_weight(ctx, dy, x, rstd, dw);
  }
  detail::dispatch_float(dt, op, [&](auto tag) {
    using T = decltype(tag);
    cpu::rmsnorm_backward_weight<T>(dy.ptr<T>(), x.ptr<T>(), rstd.ptr<T>(), N, D, dw.ptr<T>());
  });
}

}  // namespace kernels
