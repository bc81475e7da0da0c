// CPU SwiGLU: y = silu(gate) * up with h = [gate | up] per row.
#pragma once

#include <cstdint>

namespace kernels::cpu {

// h [N, 2F], y [N, F].
template <class T>
void swiglu_forward(const T* h, int64_t N, int64_t F, T* y);
// dh [N, 2F] written: d gate = dy up s (1 + g (1 - s)), d up = dy g s, s = sigmoid(g).
template <class T>
void swiglu_backward(const T* dy, const T* h, int64_t N, int64_t F, T* dh);

}  // namespace kernels::cpu
