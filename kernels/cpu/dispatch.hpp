// Launcher helpers shared by the dense-op launchers (kernels/*.cpp): the device check, the
// "all float tensors of one call share a dtype" check, and the f32 / f64 dispatch.
//
// Launchers call these before touching data, so a bad call fails with the op's name and the
// offending dtype or device instead of reaching a kernel.
#pragma once

#include <initializer_list>

#include "core/tensor.hpp"

namespace kernels::detail {

// Every tensor that is present must live on the CPU until kernels/cuda/ exists. Empty views
// (optional outputs) are not inspected.
inline void require_cpu(const char* op, std::initializer_list<const core::Tensor*> tensors) {
  for (const core::Tensor* t : tensors) {
    if (!t->empty() && t->device != core::Device::cpu)
      FLOT_THROW(core::InternalError, "{}: no CUDA implementation yet", op);
  }
}

// The first tensor fixes the dtype (f32 or f64); every other present tensor must match it.
inline core::DType float_dtype(const char* op, std::initializer_list<const core::Tensor*> tensors) {
  const core::Tensor* first = *tensors.begin();
  FLOT_CHECK(first->dtype == core::DType::f32 || first->dtype == core::DType::f64,
             "{}: float tensors must be f32 or f64, got {}", op, core::dtype_name(first->dtype));
  for (const core::Tensor* t : tensors) {
    if (!t->empty())
      FLOT_CHECK(t->dtype == first->dtype, "{}: mixed dtypes {} and {}", op,
                 core::dtype_name(first->dtype), core::dtype_name(t->dtype));
  }
  return first->dtype;
}

// Rows of the 2-D fold [rows, last dim]. Unlike Tensor::rows() (numel / last dim) it is defined
// when the last dimension is 0, which empty GEMM operands (K = 0) have.
inline int64_t fold_rows(const core::Tensor& t) {
  int64_t r = 1;
  for (int i = 0; i + 1 < t.ndim; ++i) r *= t.shape[i];
  return t.ndim == 0 ? 0 : r;
}

// Calls f(T{}) with T = float or double; the body of f is the typed kernel call.
template <class F>
void dispatch_float(core::DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case core::DType::f32:
      f(float{});
      return;
    case core::DType::f64:
      f(double{});
      return;
    default:
      FLOT_THROW(core::InternalError, "{}: no implementation for dtype {}", op,
                 core::dtype_name(dtype));
  }
}

}  // namespace kernels::detail
