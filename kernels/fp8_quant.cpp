// Launchers of the FP8 quantization ops and the tile layout helpers (kernels/fp8_ops.hpp).
#include <cstring>
#include <memory>

#include "kernels/cpu/dispatch.hpp"
#include "kernels/cpu/fp8.hpp"
#include "kernels/cpu/fp8_check.hpp"
#include "kernels/cpu/moe_cpu.hpp"
#include "kernels/fp8_ops.hpp"

namespace kernels {

namespace {

using fp8_check::tiles;

// Matrices, rows per matrix and columns of codes under a dense tiling.
struct Dims {
  int64_t matrices, rows, cols;
};
Dims dims_of(const Fp8Tensor& q) {
  const Tensor& c = q.codes;
  if (q.tiling == Fp8Tiling::block_128x128 && c.ndim == 3)
    return {c.shape[0], c.shape[1], c.shape[2]};
  return {1, detail::fold_rows(c), c.cols()};
}

void check_float(const Tensor& x, const Fp8Tensor& q, const char* what) {
  detail::require_cpu(what, {&x});
  core::check_dtype(x, core::DType::f32, what);
  FLOT_CHECK(x.same_shape(q.codes), "{} {} and codes {} differ in shape", what, x.shape_str(),
             q.codes.shape_str());
}

int segment_count(const Tensor& offsets) {
  return static_cast<int>(offsets.shape[0] - 1);
}

// A float tensor of q's codes' shape over `buffer` (left uninitialized).
Tensor float_like(const Fp8Tensor& q, std::unique_ptr<float[]>& buffer) {
  buffer.reset(new float[static_cast<size_t>(q.codes.numel())]);
  Tensor t = q.codes;
  t.data = buffer.get();
  t.dtype = core::DType::f32;
  return t;
}

}  // namespace

const char* fp8_tiling_name(Fp8Tiling t) {
  switch (t) {
    case Fp8Tiling::row_1x128:
      return "1x128";
    case Fp8Tiling::block_128x128:
      return "128x128";
    case Fp8Tiling::col_128x1:
      return "128x1";
  }
  return "?";
}

std::array<int64_t, 2> fp8_scale_shape(Fp8Tiling tiling, int64_t rows, int64_t cols) {
  switch (tiling) {
    case Fp8Tiling::row_1x128:
      return {rows, tiles(cols)};
    case Fp8Tiling::block_128x128:
      return {tiles(rows), tiles(cols)};
    case Fp8Tiling::col_128x1:
      return {tiles(rows), cols};
  }
  return {0, 0};
}

int64_t fp8_segment_scale_rows(int64_t rows, int64_t segments) {
  // Segment e's tiles start at offsets[e] / 128 + e and end before offsets[e + 1] / 128 + e + 1,
  // so rows / 128 + segments rows hold every layout of `rows` rows in `segments` segments.
  return rows / kFp8Tile + segments;
}

Fp8Tensor fp8_alloc(core::BumpArena& arena, core::DType format, Fp8Tiling tiling, int64_t rows,
                    int64_t cols) {
  FLOT_CHECK(is_fp8(format), "fp8_alloc: {} is not an FP8 format", core::dtype_name(format));
  const auto s = fp8_scale_shape(tiling, rows, cols);
  return {arena.alloc(format, {rows, cols}), arena.alloc(core::DType::f32, {s[0], s[1]}), tiling};
}

Fp8Tensor fp8_alloc_experts(core::BumpArena& arena, core::DType format, int64_t experts,
                            int64_t rows, int64_t cols) {
  FLOT_CHECK(is_fp8(format), "fp8_alloc_experts: {} is not an FP8 format",
             core::dtype_name(format));
  return {arena.alloc(format, {experts, rows, cols}),
          arena.alloc(core::DType::f32, {experts, tiles(rows), tiles(cols)}),
          Fp8Tiling::block_128x128};
}

Fp8Tensor fp8_alloc_segments(core::BumpArena& arena, core::DType format, int64_t rows, int64_t cols,
                             int64_t segments) {
  FLOT_CHECK(is_fp8(format), "fp8_alloc_segments: {} is not an FP8 format",
             core::dtype_name(format));
  return {arena.alloc(format, {rows, cols}),
          arena.alloc(core::DType::f32, {fp8_segment_scale_rows(rows, segments), cols}),
          Fp8Tiling::col_128x1};
}

void fp8_quantize(Context& ctx, const Tensor& x, const Fp8Tensor& q, bool pow2_scales) {
  fp8_check::dense(q, q.tiling, "fp8_quantize q");
  check_float(x, q, "fp8_quantize x");
  if (x.numel() == 0) return;
  const Dims d = dims_of(q);
  cpu::fp8_quantize(x.ptr<float>(), d.cols,
                    cpu::fp8_panels(q.tiling, d.rows, d.matrices, nullptr, 0),
                    q.tiling == Fp8Tiling::col_128x1, q.codes.dtype, pow2_scales,
                    fp8_check::codes(q), q.scales.ptr<float>(), cpu::moe_threads(ctx));
}

void fp8_quantize_segments(Context& ctx, const Tensor& x, const Tensor& offsets, const Fp8Tensor& q,
                           bool pow2_scales) {
  fp8_check::offsets(offsets, detail::fold_rows(q.codes), "fp8_quantize_segments offsets");
  fp8_check::segments(q, segment_count(offsets), "fp8_quantize_segments q");
  check_float(x, q, "fp8_quantize_segments x");
  if (x.numel() == 0) return;
  // Scale rows between segments belong to no tile; zero them so the tensor is deterministic.
  std::memset(q.scales.data, 0, q.scales.bytes());
  const int e = segment_count(offsets);
  cpu::fp8_quantize(x.ptr<float>(), x.cols(),
                    cpu::fp8_panels(q.tiling, 0, 1, offsets.ptr<int32_t>(), e), true, q.codes.dtype,
                    pow2_scales, fp8_check::codes(q), q.scales.ptr<float>(), cpu::moe_threads(ctx));
}

void fp8_dequantize(Context& ctx, const Fp8Tensor& q, const Tensor& x) {
  fp8_check::dense(q, q.tiling, "fp8_dequantize q");
  check_float(x, q, "fp8_dequantize x");
  if (x.numel() == 0) return;
  const Dims d = dims_of(q);
  cpu::fp8_dequantize(fp8_check::codes(q), q.scales.ptr<float>(), d.cols,
                      cpu::fp8_panels(q.tiling, d.rows, d.matrices, nullptr, 0),
                      q.tiling == Fp8Tiling::col_128x1, fp8_table(q.codes.dtype), x.ptr<float>(),
                      cpu::moe_threads(ctx));
}

void fp8_dequantize_segments(Context& ctx, const Fp8Tensor& q, const Tensor& offsets,
                             const Tensor& x) {
  fp8_check::offsets(offsets, detail::fold_rows(q.codes), "fp8_dequantize_segments offsets");
  fp8_check::segments(q, segment_count(offsets), "fp8_dequantize_segments q");
  check_float(x, q, "fp8_dequantize_segments x");
  if (x.numel() == 0) return;
  cpu::fp8_dequantize(
      fp8_check::codes(q), q.scales.ptr<float>(), x.cols(),
      cpu::fp8_panels(q.tiling, 0, 1, offsets.ptr<int32_t>(), segment_count(offsets)), true,
      fp8_table(q.codes.dtype), x.ptr<float>(), cpu::moe_threads(ctx));
}

void fp8_requantize(Context& ctx, const Fp8Tensor& src, const Fp8Tensor& dst, bool pow2_scales) {
  std::unique_ptr<float[]> buffer;
  const Tensor x = float_like(src, buffer);
  fp8_dequantize(ctx, src, x);
  fp8_quantize(ctx, x, dst, pow2_scales);
}

void fp8_requantize_segments(Context& ctx, const Fp8Tensor& src, const Tensor& offsets,
                             const Fp8Tensor& dst, bool pow2_scales) {
  std::unique_ptr<float[]> buffer;
  const Tensor x = float_like(src, buffer);
  fp8_dequantize(ctx, src, x);
  fp8_quantize_segments(ctx, x, offsets, dst, pow2_scales);
}

}  // namespace kernels
