// CPU embedding lookup and its scatter-add backward. Tokens are already range-checked.
#pragma once

#include <cstdint>

namespace kernels::cpu {

// out[n, :] = table[tokens[n], :]; table [V, D], out [N, D].
template <class T>
void embedding_forward(const T* table, const int32_t* tokens, int64_t N, int64_t D, T* out);
// dtable[tokens[n], :] += dout[n, :]. Deterministic: every thread owns a block of columns, so
// repeated tokens are summed in token order without atomics.
template <class T>
void embedding_backward(const T* dout, const int32_t* tokens, int64_t N, int64_t D, T* dtable);

}  // namespace kernels::cpu
