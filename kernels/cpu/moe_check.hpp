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
  FLOT_CHECK(t.device == core::Device::cpu, "{} is a CUDA tensor; the MoE ops run on the CPU", what);
}

inline void on_cpu(std::initializer_list<std::pair<const Tensor*, const char*>> tensors) {
  for (const auto& [t, what] : tensors) on_cpu(*t, what);
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
