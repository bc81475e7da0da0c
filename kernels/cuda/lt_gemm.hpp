// cuBLASLt calls of the CUDA backend: one matmul of a kernels/lt_plan.hpp plan with the algorithm
// cached per plan key, and the row-major FP32 / BF16 GEMM entry points built on it (falling back
// to the SIMT GEMM when cuBLASLt offers no algorithm). Host code; included by kernels/cuda/ only.
#pragma once

#include <cstdint>

#include "core/cuda/cuda_state.hpp"
#include "kernels/cuda/simt_gemm.hpp"
#include "kernels/lt_plan.hpp"

namespace kernels::cuda::detail {

// D = alpha op(A') op(B') + beta C (C = D) on the compute stream; sa / sb are the scale tensors of
// a block-scaled plan (device pointers in the plan's layouts). Returns false, and caches that,
// when cuBLASLt has no algorithm for the plan.
bool lt_matmul(core::CudaState& s, const lt::LtPlan& plan, const void* a, const void* b,
               const float* sa, const float* sb, float* c, float alpha, float beta);

// Row-major C[M, N] = alpha op(A) op(B) + beta C on the compute stream, A and B of `kind` (f32,
// f32_as_bf16 or bf16); K = 0 scales C by beta.
void gemm_rowmajor(core::CudaState& s, int64_t M, int64_t N, int64_t K, const void* A,
                   OperandKind a_kind, bool trans_a, const void* B, OperandKind b_kind,
                   bool trans_b, float* C, float alpha, float beta);

}  // namespace kernels::cuda::detail
