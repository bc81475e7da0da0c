// CPU GEMM: the one dense matrix-multiply entry point of the CPU backend (Eigen).
#pragma once

#include <cstdint>

namespace kernels::cpu {

// C[M, N] = alpha * op(A) op(B) + beta * C, all row-major and contiguous. A is stored [M, K]
// (or [K, M] when trans_a), B is stored [K, N] (or [N, K] when trans_b). beta == 0 never reads C.
// Outside an OpenMP parallel region Eigen splits the product over the OpenMP threads; inside one
// (per-head attention, per-expert loops) it runs on the calling thread only.
template <class T>
void gemm(int64_t M, int64_t N, int64_t K, const T* A, bool trans_a, const T* B, bool trans_b, T* C,
          T alpha, T beta);

}  // namespace kernels::cpu
