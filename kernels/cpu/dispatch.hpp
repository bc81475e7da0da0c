// Launcher helpers shared by the dense-op launchers (kernels/*.cpp): the device check, the
// "all float tensors of one call share a dtype" check, and the f32 / f64 dispatch.
//
// Device dispatch: a call whose tensors all live on the GPU goes to kernels/cuda/ (through
// kernels/cuda_ops.hpp) after the same shape checks; one whose tensors all live on the CPU goes
// to kernels/cpu/. Mixing devices in one call is a bug and throws. CUDA ops run in f32 (f64
// exists for the CPU gradient checks only).
//
// Launchers call these before touching data, so a bad call fails with the op's name and the
// offending dtype or device instead of reaching a kernel.
#pragma once

#include <initializer_list>

#include "core/tensor.hpp"

namespace kernels::detail {

// True when every present tensor lives on the GPU, false when every one lives on the CPU; a mix
// throws. Empty views (optional outputs) are not inspected.
inline bool on_cuda(const char* op, std::initializer_list<const core::Tensor*> tensors) {
  int cpu = 0, gpu = 0;
  for (const core::Tensor* t : tensors) {
    if (t->empty()) continue;
    (t->device == core::Device::cuda ? gpu : cpu) += 1;
  }
  FLOT_CHECK(cpu == 0 || gpu == 0, "{}: {} tensors on the CPU and {} on the GPU in one call", op,
             cpu, gpu);
  return gpu > 0;
}

// Every present tensor lives on the CPU (ops that have no CUDA implementation).
inline void require_cpu(const char* op, std::initializer_list<const core::Tensor*> tensors) {
  FLOT_CHECK(!on_cuda(op, tensors), "{}: this op has no CUDA implementation", op);
}

// The dtype of a CUDA call: kernels/cuda/ implements f32 only.
inline void require_f32_on_cuda(const char* op, core::DType dt) {
  FLOT_CHECK(dt == core::DType::f32, "{}: CUDA ops run in f32, got {}", op, core::dtype_name(dt));
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

// M, N, K of C[M, N] = op(A)[M, K] op(B)[K, N] for views folded to 2-D, checked against C.
struct GemmDims {
  int64_t m, n, k;
};
inline GemmDims gemm_dims(const char* op, const core::Tensor& A, bool trans_a,
                          const core::Tensor& B, bool trans_b, const core::Tensor& C) {
  FLOT_CHECK(A.ndim >= 2 && B.ndim >= 2 && C.ndim >= 2, "{}: A {}, B {}, C {} must be >= 2-D", op,
             A.shape_str(), B.shape_str(), C.shape_str());
  const int64_t M = trans_a ? A.cols() : fold_rows(A);
  const int64_t K = trans_a ? fold_rows(A) : A.cols();
  const int64_t Kb = trans_b ? B.cols() : fold_rows(B);
  const int64_t N = trans_b ? fold_rows(B) : B.cols();
  FLOT_CHECK(K == Kb && fold_rows(C) == M && C.cols() == N,
             "{}: op(A) of A {} (trans {}) times op(B) of B {} (trans {}) into C {}", op,
             A.shape_str(), trans_a, B.shape_str(), trans_b, C.shape_str());
  return {M, N, K};
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
