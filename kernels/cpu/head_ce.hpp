// CPU fused output head + cross-entropy, chunked so that the [N, V] logits never exist whole.
//
// Tokens are taken in chunks of `tokens` rows and the vocabulary in chunks of `vocab` rows of W;
// one [tokens, vocab] logits block is the only scratch. The forward keeps an online log-sum-exp
// per token; the backward recomputes each block, turns it into dlogits in place and feeds it to
// two GEMMs. Targets are range-checked by the launcher; a target < 0 is ignored.
#pragma once

#include <cstdint>

namespace kernels::cpu {

struct HeadCeChunks {
  int64_t tokens = 1024;
  int64_t vocab = 2048;
};

// x [N, D], W [V, D], targets [N]; losses and lse [N] written.
template <class T>
void head_ce_forward(const T* x, const T* W, const int32_t* targets, int64_t N, int64_t D,
                     int64_t V, T* losses, T* lse, HeadCeChunks chunks = {});
// Gradient of sum_n scale * losses[n]: dx [N, D] written unless null, dW [V, D] accumulated
// unless null.
template <class T>
void head_ce_backward(const T* x, const T* W, const int32_t* targets, const T* lse, int64_t N,
                      int64_t D, int64_t V, T scale, T* dx, T* dW, HeadCeChunks chunks = {});

}  // namespace kernels::cpu
