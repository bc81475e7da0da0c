// CPU causal attention (flash-style tiling over queries) with a recomputing backward.
//
// Layout: q, k [B*T, H, Dqk], v, out, dout [B*T, H, Dv], lse [B, H, T]. One head of one sequence
// is addressed in place through strided Eigen maps (row stride H * D), so nothing is gathered.
// Queries are processed in tiles of kAttnTile rows; a tile only multiplies against the key prefix
// it can see, so causality halves the work. Scratch is at most two [kAttnTile, T] blocks per
// thread.
#pragma once

#include <cstdint>

namespace kernels::cpu {

constexpr int64_t kAttnTile = 64;

struct AttnShape {
  int64_t B = 0, T = 0, H = 0, Dqk = 0, Dv = 0;
};

template <class T>
void attention_forward(const AttnShape& s, const T* q, const T* k, const T* v, T scale, T* out,
                       T* lse);
// dq, dk, dv written.
template <class T>
void attention_backward(const AttnShape& s, const T* dout, const T* q, const T* k, const T* v,
                        const T* out, const T* lse, T scale, T* dq, T* dk, T* dv);

}  // namespace kernels::cpu
