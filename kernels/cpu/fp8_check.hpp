// Validation shared by the FP8 launchers (kernels/fp8_quant.cpp, kernels/fp8_gemm.cpp): an
// Fp8Tensor's codes are FP8, its scales f32 in the layout of its tiling. Failed checks throw
// core::InternalError naming the tensor and printing the offending shapes.
#pragma once

#include <cstdint>

#include "core/tensor.hpp"
#include "kernels/cpu/moe_check.hpp"
#include "kernels/fp8_format.hpp"
#include "kernels/fp8_ops.hpp"

namespace kernels::fp8_check {

inline int64_t tiles(int64_t n) {
  return (n + kFp8Tile - 1) / kFp8Tile;
}

// Codes FP8 on the CPU with `tiling`; scales f32 on the CPU (shape checked by the callers below).
inline void formats(const Fp8Tensor& q, Fp8Tiling tiling, const char* what) {
  FLOT_CHECK(is_fp8(q.codes.dtype), "{} codes are {}, expected e4m3 or e5m2", what,
             core::dtype_name(q.codes.dtype));
  FLOT_CHECK(q.tiling == tiling, "{} is tiled {}, expected {}", what, fp8_tiling_name(q.tiling),
             fp8_tiling_name(tiling));
  core::check_dtype(q.scales, core::DType::f32, what);
  FLOT_CHECK(q.codes.device == core::Device::cpu && q.scales.device == core::Device::cpu,
             "{} is a CUDA tensor; the FP8 ops run on the CPU", what);
}

// A dense tiling: codes [R, C] (row and col tilings fold leading dims; block takes [N, K] or
// stacked experts [E, N, K]) and scales of the shape fp8_ops.hpp gives for it.
inline void dense(const Fp8Tensor& q, Fp8Tiling tiling, const char* what) {
  formats(q, tiling, what);
  const Tensor& c = q.codes;
  const Tensor& s = q.scales;
  bool ok;
  if (tiling == Fp8Tiling::block_128x128) {
    FLOT_CHECK(c.ndim == 2 || c.ndim == 3, "{} codes {}: block tiling takes [N, K] or [E, N, K]",
               what, c.shape_str());
    const int64_t e = c.ndim == 3 ? c.shape[0] : 1;
    const int64_t rb = tiles(c.size(-2)), cb = tiles(c.cols());
    ok = c.ndim == 3 ? s.ndim == 3 && s.shape[0] == e && s.shape[1] == rb && s.shape[2] == cb
                     : s.ndim == 2 && s.shape[0] == rb && s.shape[1] == cb;
  } else {
    const auto want = fp8_scale_shape(tiling, c.rows(), c.cols());
    ok = s.ndim == 2 && s.shape[0] == want[0] && s.shape[1] == want[1];
  }
  FLOT_CHECK(ok, "{}: scales {} do not fit codes {} tiled {}", what, s.shape_str(), c.shape_str(),
             fp8_tiling_name(tiling));
}

// col_128x1 over `segments` segments: scales [R / 128 + segments, C].
inline void segments(const Fp8Tensor& q, int64_t segments, const char* what) {
  formats(q, Fp8Tiling::col_128x1, what);
  const Tensor& c = q.codes;
  const Tensor& s = q.scales;
  FLOT_CHECK(s.ndim == 2 && s.shape[0] == fp8_segment_scale_rows(c.rows(), segments) &&
                 s.shape[1] == c.cols(),
             "{}: scales {} do not fit codes {} in {} segments (expected [{}, {}])", what,
             s.shape_str(), c.shape_str(), segments, fp8_segment_scale_rows(c.rows(), segments),
             c.cols());
}

// offsets: i32 [E + 1] on the CPU, starting at 0, never decreasing, ending at `rows`.
inline void offsets(const Tensor& offsets, int64_t rows, const char* what) {
  core::check_dtype(offsets, core::DType::i32, what);
  FLOT_CHECK(offsets.ndim == 1 && offsets.shape[0] >= 1, "{} has shape {}, expected [E + 1]", what,
             offsets.shape_str());
  moe_check::on_cpu(offsets, what);
  moe_check::segment_offsets(offsets, rows, what);
}

inline uint8_t* codes(const Fp8Tensor& q) {
  return static_cast<uint8_t*>(q.codes.data);
}

}  // namespace kernels::fp8_check
