// CPU RMSNorm over the last dimension: forward (saving rstd) and the two backward halves.
#pragma once

#include <cstdint>

namespace kernels::cpu {

// y[n] = x[n] * rstd[n] * w, rstd[n] = 1 / sqrt(mean(x[n]^2) + eps); x, y [N, D].
template <class T>
void rmsnorm_forward(const T* x, const T* w, int64_t N, int64_t D, T eps, T* y, T* rstd);
// dx[n] = rstd (w dy) - x rstd^3 mean(w dy x), written.
template <class T>
void rmsnorm_backward_input(const T* dy, const T* x, const T* w, const T* rstd, int64_t N,
                            int64_t D, T* dx);
// dw += sum_n dy[n] x[n] rstd[n]. Per-thread partial sums reduced in thread order: deterministic
// for a fixed thread count.
template <class T>
void rmsnorm_backward_weight(const T* dy, const T* x, const T* rstd, int64_t N, int64_t D, T* dw);

}  // namespace kernels::cpu
