// BF16 GEMMs for train.precision bf16: operands rounded to BF16 (nearest even), products and sums
// in FP32, output FP32. Same signatures and semantics as kernels::gemm, grouped_gemm and
// grouped_gemm_wgrad, so a caller holding a precision policy swaps the function and nothing else:
//   forward   gemm_bf16(ctx, x, false, W, true, y)              y = x W^T
//   dgrad     gemm_bf16(ctx, dy, false, W, false, dx)           dx = dy W
//   wgrad     gemm_bf16(ctx, dy, true, x, false, dW, 1, 1)      dW += dy^T x
// Each operand may be f32 (rounded on the fly) or bf16 (already rounded, e.g. an activation
// cached in BF16 by cast()); C is f32. The product of two BF16 values is exact in float, so the
// only roundings are the operands' and the FP32 accumulation's (Eigen's order).
#pragma once

#include "core/context.hpp"
#include "core/tensor.hpp"

namespace kernels {

using core::Context;
using core::Tensor;

// dst = src converted: f32 -> bf16 (round to nearest even, NaN stays NaN) or bf16 -> f32 (exact).
void cast(Context& ctx, const Tensor& src, const Tensor& dst);

// C = alpha * op(A) op(B) + beta * C with BF16 operands (see kernels::gemm for shapes).
void gemm_bf16(Context& ctx, const Tensor& A, bool trans_a, const Tensor& B, bool trans_b,
               const Tensor& C, double alpha = 1.0, double beta = 0.0);
// kernels::grouped_gemm with BF16 operands.
void grouped_gemm_bf16(Context& ctx, const Tensor& A, const Tensor& B, bool trans_b,
                       const Tensor& offsets, const Tensor& C, double alpha = 1.0,
                       double beta = 0.0);
// kernels::grouped_gemm_wgrad with BF16 operands: dB[e] += dC[rows of e]^T A[rows of e].
void grouped_gemm_wgrad_bf16(Context& ctx, const Tensor& dC, const Tensor& A, const Tensor& offsets,
                             const Tensor& dB);

}  // namespace kernels
