// Validation and dtype dispatch shared by the MoE launchers (kernels/moe_*.cpp). Every failed
// check throws core::InternalError naming the tensor and printing the offending values.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <utility>

#include "core/tensor.hpp"
#include "kernels/cpu/moe_cpu.hpp"

namespace kernels::moe_check {

inline void on_cpu(const Tensor& t, const char* what) {
  FLOT_CHECK(t.device == core::Device::cpu, "{} is a CUDA tensor in a CPU call", what);
}

inline void on_cpu(std::initializer_list<std::pair<const Tensor*, const char*>> tensors) {
  for (const auto& [t, what] : tensors) on_cpu(*t, what);
}

// True when every present tensor of the call lives on the GPU (then float tensors must be f32),
// false when all live on the CPU; a mix throws naming the first tensor on the other side.
inline bool on_cuda(std::initializer_list<std::pair<const Tensor*, const char*>> tensors) {
  const Tensor* first = nullptr;
  for (const auto& [t, what] : tensors) {
    if (t->empty()) continue;
    if (!first) first = t;
    FLOT_CHECK(t->device == first->device,
               "{} is on the {} while other tensors of the call are not", what,
               t->device == core::Device::cuda ? "GPU" : "CPU");
  }
  return first && first->device == core::Device::cuda;
}
inline void f32_on_cuda(const Tensor& t, const char* what) {
  FLOT_CHECK(t.dtype == core::DType::f32, "{} is {}: CUDA ops run in f32", what,
             core::dtype_name(t.dtype));
}

inline void float_dtype(const Tensor& t, const char* what) {
  FLOT_CHECK(t.dtype == core::DType::f32 || t.dtype == core::DType::f64, "{} is {}, expected f32 or f64",
             what, core::dtype_name(t.dtype));
}

// t (i32) holds only values in [0, limit).
inline void index_range(const Tensor& t, int64_t limit, const char* what) {
  const int32_t* v = t.ptr<int32_t>();
  const int64_t i = cpu::first_out_of_range(v, t.numel(), limit);
  FLOT_CHECK(i < 0, "{}[{}] = {} is outside [0, {})", what, i, v[i], limit);
}

// offsets (i32 [E + 1]) start at 0, never decrease and end at `rows`.
inline void segment_offsets(const Tensor& offsets, int64_t rows, const char* what) {
  const int32_t* o = offsets.ptr<int32_t>();
  const int64_t e = offsets.numel() - 1;
  FLOT_CHECK(o[0] == 0, "{}[0] = {}, expected 0", what, o[0]);
  for (int64_t i = 0; i < e; ++i)
    FLOT_CHECK(o[i + 1] >= o[i], "{} decrease: [{}] = {} > [{}] = {}", what, i, o[i], i + 1, o[i + 1]);
  FLOT_CHECK(o[e] == rows, "{}[{}] = {}, expected the row count {}", what, e, o[e], rows);
}

// Shapes of a grouped GEMM (kernels::grouped_gemm): A [m, k], B [e, n, k] (trans_b) or
// [e, k, n], C [m, n], offsets [e + 1]. Dtypes and values are checked by the callers.
struct GroupedDims {
  int64_t e, m, n, k;
};
inline GroupedDims grouped_dims(const char* op, const Tensor& A, const Tensor& B, bool trans_b,
                                const Tensor& offsets, const Tensor& C) {
  core::check_shape(B, {-1, -1, -1}, op);
  const int64_t e = B.shape[0], m = A.rows(), kd = A.cols();
  const int64_t n = trans_b ? B.shape[1] : B.shape[2];
  const int64_t b_k = trans_b ? B.shape[2] : B.shape[1];
  FLOT_CHECK(b_k == kd, "{}: A {} and B {} (trans_b = {}) disagree on K ({} vs {})", op,
             A.shape_str(), B.shape_str(), trans_b, kd, b_k);
  FLOT_CHECK(C.rows() == m && C.cols() == n, "{}: C has shape {}, expected [{}, {}]", op,
             C.shape_str(), m, n);
  core::check_shape(offsets, {e + 1}, op);
  core::check_dtype(offsets, core::DType::i32, op);
  return {e, m, n, kd};
}
// Shapes of its weight gradient: dC [m, n], A [m, k], dB [e, n, k], offsets [e + 1].
inline GroupedDims grouped_wgrad_dims(const char* op, const Tensor& dC, const Tensor& A,
                                      const Tensor& offsets, const Tensor& dB) {
  core::check_shape(dB, {-1, -1, -1}, op);
  const int64_t e = dB.shape[0], n = dB.shape[1], kd = dB.shape[2], m = A.rows();
  FLOT_CHECK(A.cols() == kd, "{}: A {} and dB {} disagree on K", op, A.shape_str(), dB.shape_str());
  FLOT_CHECK(dC.rows() == m && dC.cols() == n, "{}: dC has shape {}, expected [{}, {}]", op,
             dC.shape_str(), m, n);
  core::check_shape(offsets, {e + 1}, op);
  core::check_dtype(offsets, core::DType::i32, op);
  return {e, m, n, kd};
}

// Calls f(T{}) with T the C++ type of a float dtype (checked beforehand by float_dtype).
template <class F>
void dispatch_float(core::DType dtype, F&& f) {
  if (dtype == core::DType::f32) {
    f(float{});
  } else {
    f(double{});
  }
}

}  // namespace kernels::moe_check
