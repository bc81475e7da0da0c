// Launchers for the elementwise ops (fill, copy, axpy, scale, sum_squares). copy may cross
// devices (host <-> GPU); the others keep every tensor on one device.
#include "kernels/cpu/elementwise.hpp"

#include "kernels/cpu/dispatch.hpp"
#include "kernels/cuda_ops.hpp"
#include "kernels/ops.hpp"

namespace kernels {

void fill(const Tensor& x, double value) {
  const bool gpu = detail::on_cuda("fill", {&x});
  if (x.numel() == 0 || x.empty()) return;
  if (gpu) {
    detail::require_f32_on_cuda("fill", x.dtype);
    return cuda::fill(x, value);
  }
  detail::dispatch_float(x.dtype, "fill", [&](auto tag) {
    using T = decltype(tag);
    cpu::fill<T>(x.ptr<T>(), x.numel(), static_cast<T>(value));
  });
}

void copy(const Tensor& src, const Tensor& dst) {
  FLOT_CHECK(src.numel() == dst.numel() && src.dtype == dst.dtype, "copy: src {} {} into dst {} {}",
             src.shape_str(), core::dtype_name(src.dtype), dst.shape_str(),
             core::dtype_name(dst.dtype));
  if (src.numel() == 0 || src.data == dst.data) return;
  if (src.device == core::Device::cuda || dst.device == core::Device::cuda)
    return cuda::copy(src, dst);
  // Any dtype: a copy never interprets the bits.
  cpu::copy_bytes(src.data, dst.data, src.bytes());
}

void axpy(double alpha, const Tensor& x, const Tensor& y) {
  const bool gpu = detail::on_cuda("axpy", {&x, &y});
  core::DType dt = detail::float_dtype("axpy", {&x, &y});
  FLOT_CHECK(x.numel() == y.numel(), "axpy: x {} and y {} differ in size", x.shape_str(),
             y.shape_str());
  if (x.numel() == 0) return;
  if (gpu) {
    detail::require_f32_on_cuda("axpy", dt);
    return cuda::axpy(alpha, x, y);
  }
  detail::dispatch_float(dt, "axpy", [&](auto tag) {
    using T = decltype(tag);
    cpu::axpy<T>(static_cast<T>(alpha), x.ptr<T>(), y.ptr<T>(), x.numel());
  });
}

void scale(const Tensor& x, double alpha) {
  const bool gpu = detail::on_cuda("scale", {&x});
  if (x.numel() == 0 || x.empty()) return;
  if (gpu) {
    detail::require_f32_on_cuda("scale", x.dtype);
    return cuda::scale(x, alpha);
  }
  detail::dispatch_float(x.dtype, "scale", [&](auto tag) {
    using T = decltype(tag);
    cpu::scale<T>(x.ptr<T>(), x.numel(), static_cast<T>(alpha));
  });
}

double sum_squares(const Tensor& x) {
  const bool gpu = detail::on_cuda("sum_squares", {&x});
  if (x.numel() == 0 || x.empty()) return 0.0;
  if (gpu) {
    detail::require_f32_on_cuda("sum_squares", x.dtype);
    return cuda::sum_squares(x);
  }
  double s = 0;
  detail::dispatch_float(x.dtype, "sum_squares", [&](auto tag) {
    using T = decltype(tag);
    s = cpu::sum_squares<T>(x.ptr<T>(), x.numel());
  });
  return s;
}

}  // namespace kernels
