// Launchers for SwiGLU: h [N, 2F] (higher ranks fold to rows), y and dy [N, F], dh like h.
#include "kernels/cpu/swiglu.hpp"

#include "kernels/cpu/dispatch.hpp"
#include "kernels/cuda_ops.hpp"
#include "kernels/ops.hpp"

namespace kernels {

namespace {

// Returns F after checking h [N, 2F] against y [N, F].
int64_t check_swiglu(const char* op, const Tensor& h, const Tensor& y) {
  FLOT_CHECK(h.ndim >= 1 && y.ndim >= 1 && h.cols() % 2 == 0 &&
                 detail::fold_rows(y) == detail::fold_rows(h) && y.cols() * 2 == h.cols(),
             "{}: h {} must be [N, 2F] and y/dy {} [N, F]", op, h.shape_str(), y.shape_str());
  return y.cols();
}

}  // namespace

void swiglu_forward(Context& ctx, const Tensor& h, const Tensor& y) {
  const char* op = "swiglu_forward";
  const bool gpu = detail::on_cuda(op, {&h, &y});
  core::DType dt = detail::float_dtype(op, {&h, &y});
  const int64_t F = check_swiglu(op, h, y), N = detail::fold_rows(h);
  if (N == 0 || F == 0) return;
  if (gpu) {
    detail::require_f32_on_cuda(op, dt);
    return cuda::swiglu_forward(ctx, h, y);
  }
  detail::dispatch_float(dt, op, [&](auto tag) {
    using T = decltype(tag);
    cpu::swiglu_forward<T>(h.ptr<T>(), N, F, y.ptr<T>());
  });
}

void swiglu_backward(Context& ctx, const Tensor& dy, const Tensor& h, const Tensor& dh) {
  const char* op = "swiglu_backward";
  const bool gpu = detail::on_cuda(op, {&dy, &h, &dh});
  core::DType dt = detail::float_dtype(op, {&dy, &h, &dh});
  const int64_t F = check_swiglu(op, h, dy), N = detail::fold_rows(h);
  FLOT_CHECK(dh.ndim >= 1 && detail::fold_rows(dh) == N && dh.cols() == 2 * F,
             "{}: dh {} must match h {}", op, dh.shape_str(), h.shape_str());
  if (N == 0 || F == 0) return;
  if (gpu) {
    detail::require_f32_on_cuda(op, dt);
    return cuda::swiglu_backward(ctx, dy, h, dh);
  }
  detail::dispatch_float(dt, op, [&](auto tag) {
    using T = decltype(tag);
    cpu::swiglu_backward<T>(dy.ptr<T>(), h.ptr<T>(), N, F, dh.ptr<T>());
  });
}

}  // namespace kernels
