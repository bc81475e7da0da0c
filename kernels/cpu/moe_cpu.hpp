// CPU implementations of the MoE ops of kernels/moe_ops.hpp (Eigen + OpenMP), templated on the
// float type and explicitly instantiated for float and double in kernels/cpu/moe_*.cpp.
//
// The launchers (kernels/moe_*.cpp) have already validated shapes, dtypes and index ranges and
// returned on empty work, so these functions trust their arguments: raw pointers, sizes in
// elements, every index in range. `threads` is the OpenMP thread count to use (>= 1).
#pragma once

#include <omp.h>

#include <cstddef>
#include <cstdint>

#include "kernels/moe_ops.hpp"
#include "kernels/topk.hpp"

namespace kernels::cpu {

// Threads for one op: the context's count, or the OpenMP default when the context leaves it at 0.
inline int moe_threads(const Context& ctx) {
  return ctx.threads > 0 ? ctx.threads : omp_get_max_threads();
}

// The scores of a token can all underflow to 0 (logits below about -100 in float); this guard on
// the normalizer keeps the weights finite and is far below the rounding of any real sum.
constexpr double kNormGuard = 1e-20;

// The largest k TopK holds (kernels/topk.hpp); the launchers check against it.
constexpr int kMaxTopK = kernels::kMaxTopK;

// Index of the first value outside [0, limit), or -1 when all are in range.
int64_t first_out_of_range(const int32_t* v, int64_t n, int64_t limit);

// ---- gate ------------------------------------------------------------------------------------
template <class T>
void gate_forward(const GateShape& g, int64_t n, const T* logits, const T* bias, T* scores,
                  int32_t* expert_idx, T* weights, int threads);
// dscores_extra may be null.
template <class T>
void gate_backward(const GateShape& g, int64_t n, const T* dweights, const T* scores,
                   const int32_t* expert_idx, const T* dscores_extra, T* dlogits, int threads);

// ---- balance loss (n is a multiple of segment_len) -------------------------------------------
template <class T>
double balance_loss_forward(int64_t n, int64_t e, const T* scores, int top_k, int64_t segment_len,
                            double alpha, int threads);
template <class T>
void balance_loss_backward(int64_t n, int64_t e, const T* scores, int top_k, int64_t segment_len,
                           double alpha, double dloss, T* dscores, int threads);

// ---- routing plan, permute, combine ----------------------------------------------------------
void moe_plan(int64_t n, int top_k, const int32_t* expert_idx, int num_experts, int32_t* offsets,
              int32_t* src, int32_t* pos);
// Rows of row_bytes bytes each, whatever they hold (floats, BF16, FP8 codes with their scales).
void moe_permute(int64_t rows, int64_t row_bytes, const std::byte* x, const int32_t* src, int top_k,
                 std::byte* xs, int threads);
template <class T>
void moe_permute_backward(int64_t n, int64_t d, const T* dxs, const int32_t* pos, int top_k, T* dx,
                          int threads);
template <class T>
void moe_combine(int64_t n, int top_k, int64_t d, const T* ys, const T* weights, const int32_t* pos,
                 T* y, int threads);
template <class T>
void moe_combine_backward(int64_t n, int top_k, int64_t d, const T* dy, const T* ys,
                          const T* weights, const int32_t* pos, T* dys, T* dweights, int threads);

// ---- grouped GEMM ----------------------------------------------------------------------------
// A [m, kd], B [e, n, kd] (trans_b) or [e, kd, n], C [m, n]; offsets [e + 1] validated.
template <class T>
void grouped_gemm(int64_t m, int64_t n, int64_t kd, int e, const T* A, const T* B, bool trans_b,
                  const int32_t* offsets, T* C, T alpha, T beta, int threads);
// dB [e, n, kd] += dC[seg]^T A[seg]; dC [m, n], A [m, kd].
template <class T>
void grouped_gemm_wgrad(int64_t m, int64_t n, int64_t kd, int e, const T* dC, const T* A,
                        const int32_t* offsets, T* dB, int threads);

}  // namespace kernels::cpu
