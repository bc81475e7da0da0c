// The Linear GEMMs under the precision policy: operand forms and the dispatch to the FP32, BF16
// and FP8 kernels.
#include "core/layers/linear.hpp"

#include "kernels/bf16_ops.hpp"
#include "kernels/moe_ops.hpp"
#include "kernels/ops.hpp"

namespace core {
namespace {

using kernels::Fp8Tensor;
using kernels::Fp8Tiling;
constexpr DType kFp8 = DType::e4m3;  // the recipe uses E4M3 for every operand

void require_f32(const Tensor& t, Precision p, const char* what) {
  FLOT_CHECK(t.dtype == DType::f32, "{} is {}: train.precision {} runs on f32 tensors", what,
             dtype_name(t.dtype), precision_name(p));
}

// The activation-side operand of a forward or data-gradient FP8 GEMM ([rows, cols] in 1x128
// tiles): the kept codes, or a quantization into the scratch arena.
Fp8Tensor row_tiles(LayerEnv& env, const LinearOperand& a, int64_t cols) {
  if (a.quantized()) {
    FLOT_CHECK(a.q.codes.cols() == cols, "FP8 operand {} used with {} columns",
               a.q.codes.shape_str(), cols);
    return a.q;
  }
  require_f32(a.x, env.precision, "linear operand");
  const Tensor x = a.x.matrix(cols);
  Fp8Tensor q = kernels::fp8_alloc(env.acts.scratch(), kFp8, Fp8Tiling::row_1x128, x.rows(), cols);
  kernels::fp8_quantize(env.ctx, x, q);
  return q;
}

// A weight (or stacked expert weights) in 128x128 blocks, in the scratch arena.
Fp8Tensor weight_blocks(LayerEnv& env, const Tensor& W) {
  require_f32(W, env.precision, "weight");
  Fp8Tensor q = W.ndim == 3 ? kernels::fp8_alloc_experts(env.acts.scratch(), kFp8, W.shape[0],
                                                         W.shape[1], W.shape[2])
                            : kernels::fp8_alloc(env.acts.scratch(), kFp8, Fp8Tiling::block_128x128,
                                                 W.rows(), W.cols());
  kernels::fp8_quantize(env.ctx, W, q);
  return q;
}

// An operand of the weight-gradient FP8 GEMM: 128x1 tiles along the rows (re-quantized from the
// kept 1x128 codes, or quantized from floats), in the scratch arena.
Fp8Tensor col_tiles(LayerEnv& env, const LinearOperand& a, int64_t cols) {
  BumpArena& ar = env.acts.scratch();
  const int64_t rows = a.rows();
  Fp8Tensor q = kernels::fp8_alloc(ar, kFp8, Fp8Tiling::col_128x1, rows, cols);
  if (a.quantized())
    kernels::fp8_requantize(env.ctx, a.q, q);
  else
    kernels::fp8_quantize(env.ctx, a.x.matrix(cols), q);
  return q;
}

// An operand in 128x1 tiles over the segments `offsets`, in the scratch arena.
Fp8Tensor segment_tiles(LayerEnv& env, const LinearOperand& a, int64_t cols,
                        const Tensor& offsets) {
  Fp8Tensor q =
      kernels::fp8_alloc_segments(env.acts.scratch(), kFp8, a.rows(), cols, offsets.numel() - 1);
  if (a.quantized()) {
    kernels::fp8_requantize_segments(env.ctx, a.q, offsets, q);
  } else {
    require_f32(a.x, env.precision, "expert operand");
    kernels::fp8_quantize_segments(env.ctx, a.x.matrix(cols), offsets, q);
  }
  return q;
}

// Row i of the result is row order[i] of `a` (any form), in the scratch arena.
LinearOperand reorder_rows(LayerEnv& env, const LinearOperand& a, int64_t cols,
                           const Tensor& order) {
  BumpArena& ar = env.acts.scratch();
  if (a.quantized()) {
    Fp8Tensor q = kernels::fp8_alloc(ar, kFp8, Fp8Tiling::row_1x128, a.rows(), cols);
    kernels::moe_permute(env.ctx, a.q.codes, order, 1, q.codes);
    kernels::moe_permute(env.ctx, a.q.scales, order, 1, q.scales);
    return LinearOperand(q);
  }
  const Tensor x = a.x.matrix(cols);
  Tensor out = ar.alloc(x.dtype, {x.rows(), cols});
  kernels::moe_permute(env.ctx, x, order, 1, out);
  return out;
}

// Rows [begin, end) of an operand.
LinearOperand slice_rows(const LinearOperand& a, int64_t cols, int64_t begin, int64_t end) {
  if (!a.quantized()) return a.x.matrix(cols).slice(begin, end);
  Fp8Tensor q = a.q;
  q.codes = q.codes.slice(begin, end);
  q.scales = q.scales.slice(begin, end);
  return LinearOperand(q);
}

// The FP32 and BF16 forms: a tensor (f32, f64 or bf16) as a [rows, cols] matrix.
Tensor plain(const LinearOperand& a, int64_t cols) {
  FLOT_CHECK(!a.quantized(), "an FP8 operand reached a {}-column FP32 / BF16 GEMM", cols);
  return a.x.matrix(cols);
}

}  // namespace

int64_t LinearOperand::rows() const {
  return quantized() ? q.codes.rows() : x.rows();
}

LinearOperand keep_linear_input(LayerEnv& env, const Tensor& x, BumpArena& arena) {
  switch (env.precision) {
    case Precision::fp32:
      return x;
    case Precision::bf16: {
      require_f32(x, env.precision, "linear input");
      Tensor b = arena.alloc(DType::bf16, {x.rows(), x.cols()});
      kernels::cast(env.ctx, x.matrix(x.cols()), b);
      return b;
    }
    case Precision::fp8: {
      require_f32(x, env.precision, "linear input");
      Fp8Tensor q = kernels::fp8_alloc(arena, kFp8, Fp8Tiling::row_1x128, x.rows(), x.cols());
      kernels::fp8_quantize(env.ctx, x.matrix(x.cols()), q);
      return LinearOperand(q);
    }
  }
  return x;
}

Tensor pack_operand(LayerEnv& env, const LinearOperand& op, BumpArena& arena) {
  if (!op.quantized()) return op.x.matrix(op.x.cols());
  const int64_t rows = op.q.codes.rows(), cols = op.q.codes.cols();
  Tensor packed = arena.alloc(DType::u8, {rows, kernels::fp8_row_bytes(cols)});
  kernels::fp8_pack_rows(env.ctx, op.q, packed);
  return packed;
}

LinearOperand unpack_operand(LayerEnv& env, const Tensor& rows, int64_t cols, BumpArena& arena) {
  if (rows.dtype != DType::u8) return rows;
  Fp8Tensor q = kernels::fp8_alloc(arena, kFp8, Fp8Tiling::row_1x128, rows.rows(), cols);
  kernels::fp8_unpack_rows(env.ctx, rows, q);
  return LinearOperand(q);
}

void linear_forward(LayerEnv& env, const LinearOperand& x, const Tensor& W, const Tensor& y,
                    bool accumulate) {
  const int64_t out = W.size(0), in = W.size(1);
  const double beta = accumulate ? 1.0 : 0.0;
  switch (env.precision) {
    case Precision::fp32:
      kernels::gemm(env.ctx, plain(x, in), false, W, true, y.matrix(out), 1.0, beta);
      return;
    case Precision::bf16:
      kernels::gemm_bf16(env.ctx, plain(x, in), false, W, true, y.matrix(out), 1.0, beta);
      return;
    case Precision::fp8: {
      ScratchScope scope(env.acts.scratch());
      kernels::fp8_gemm_forward(env.ctx, row_tiles(env, x, in), weight_blocks(env, W),
                                y.matrix(out), beta);
      return;
    }
  }
}

void linear_backward_input(LayerEnv& env, const LinearOperand& dy, const Tensor& W,
                           const Tensor& dx, bool accumulate) {
  const int64_t out = W.size(0), in = W.size(1);
  const double beta = accumulate ? 1.0 : 0.0;
  switch (env.precision) {
    case Precision::fp32:
      kernels::gemm(env.ctx, plain(dy, out), false, W, false, dx.matrix(in), 1.0, beta);
      return;
    case Precision::bf16:
      kernels::gemm_bf16(env.ctx, plain(dy, out), false, W, false, dx.matrix(in), 1.0, beta);
      return;
    case Precision::fp8: {
      ScratchScope scope(env.acts.scratch());
      kernels::fp8_gemm_dgrad(env.ctx, row_tiles(env, dy, out), weight_blocks(env, W),
                              dx.matrix(in), beta);
      return;
    }
  }
}

void linear_backward_weight(LayerEnv& env, const LinearOperand& dy, const LinearOperand& x,
                            const Tensor& dW) {
  const int64_t out = dW.size(0), in = dW.size(1);
  switch (env.precision) {
    case Precision::fp32:
      kernels::gemm(env.ctx, plain(dy, out), true, plain(x, in), false, dW, 1.0, 1.0);
      return;
    case Precision::bf16:
      kernels::gemm_bf16(env.ctx, plain(dy, out), true, plain(x, in), false, dW, 1.0, 1.0);
      return;
    case Precision::fp8: {
      ScratchScope scope(env.acts.scratch());
      kernels::fp8_gemm_wgrad(env.ctx, col_tiles(env, dy, out), col_tiles(env, x, in), dW);
      return;
    }
  }
}

void experts_forward(LayerEnv& env, const LinearOperand& x, const Tensor& W, const Tensor& offsets,
                     const Tensor& y) {
  const int64_t in = W.size(2);
  switch (env.precision) {
    case Precision::fp32:
      kernels::grouped_gemm(env.ctx, plain(x, in), W, true, offsets, y);
      return;
    case Precision::bf16:
      kernels::grouped_gemm_bf16(env.ctx, plain(x, in), W, true, offsets, y);
      return;
    case Precision::fp8: {
      ScratchScope scope(env.acts.scratch());
      kernels::fp8_grouped_gemm_forward(env.ctx, row_tiles(env, x, in), weight_blocks(env, W),
                                        offsets, y);
      return;
    }
  }
}

void experts_backward_input(LayerEnv& env, const LinearOperand& dy, const Tensor& W,
                            const Tensor& offsets, const Tensor& dx) {
  const int64_t out = W.size(1);
  switch (env.precision) {
    case Precision::fp32:
      kernels::grouped_gemm(env.ctx, plain(dy, out), W, false, offsets, dx);
      return;
    case Precision::bf16:
      kernels::grouped_gemm_bf16(env.ctx, plain(dy, out), W, false, offsets, dx);
      return;
    case Precision::fp8: {
      ScratchScope scope(env.acts.scratch());
      kernels::fp8_grouped_gemm_dgrad(env.ctx, row_tiles(env, dy, out), weight_blocks(env, W),
                                      offsets, dx);
      return;
    }
  }
}

void experts_backward_weight(LayerEnv& env, const LinearOperand& dy, const LinearOperand& x,
                             const ExpertRows& rows, const Tensor& dW) {
  const int64_t out = dW.size(1), in = dW.size(2);
  switch (env.precision) {
    case Precision::fp32:
      kernels::grouped_gemm_wgrad(env.ctx, plain(dy, out), plain(x, in), rows.offsets, dW);
      return;
    case Precision::bf16:
      kernels::grouped_gemm_wgrad_bf16(env.ctx, plain(dy, out), plain(x, in), rows.offsets, dW);
      return;
    case Precision::fp8: {
      ScratchScope scope(env.acts.scratch());
      if (rows.source_order.empty()) {
        kernels::fp8_grouped_gemm_wgrad(env.ctx, segment_tiles(env, dy, out, rows.offsets),
                                        segment_tiles(env, x, in, rows.offsets), rows.offsets, dW);
        return;
      }
      // One grouped GEMM per source rank over its rows, their tiles restarting at each expert.
      const LinearOperand dys = reorder_rows(env, dy, out, rows.source_order);
      const LinearOperand xs = reorder_rows(env, x, in, rows.source_order);
      for (size_t s = 0; s + 1 < rows.source_begin.size(); ++s) {
        ScratchScope per_source(env.acts.scratch());
        const int64_t b = rows.source_begin[s], e = rows.source_begin[s + 1];
        const Tensor& offsets = rows.source_offsets[s];
        kernels::fp8_grouped_gemm_wgrad(
            env.ctx, segment_tiles(env, slice_rows(dys, out, b, e), out, offsets),
            segment_tiles(env, slice_rows(xs, in, b, e), in, offsets), offsets, dW);
      }
      return;
    }
  }
}

}  // namespace core
