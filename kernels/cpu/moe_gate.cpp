// CPU DeepSeek-V3 gate: sigmoid scores, group-limited top-k on the biased scores, weights from the
// unbiased scores; and its backward through the normalization and the sigmoid.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/moe_cpu.hpp"

namespace kernels::cpu {

namespace {

// Group score: the sum of the top-2 biased scores of the group (the one score for a size-1 group).
template <class T>
T group_score(const T* b, int size) {
  if (size == 1) return b[0];
  T m1 = b[0] > b[1] ? b[0] : b[1];
  T m2 = b[0] > b[1] ? b[1] : b[0];
  for (int i = 2; i < size; ++i) {
    if (b[i] > m1) {
      m2 = m1;
      m1 = b[i];
    } else if (b[i] > m2) {
      m2 = b[i];
    }
  }
  return m1 + m2;
}

}  // namespace

template <class T>
void gate_forward(const GateShape& g, int64_t n, const T* logits, const T* bias, T* scores,
                  int32_t* expert_idx, T* weights, int threads) {
  const int E = g.num_experts, k = g.top_k, G = g.num_groups, per = E / G;
  const bool limit_groups = g.groups_per_token < G;
  const T rs = static_cast<T>(g.route_scale);
#pragma omp parallel num_threads(threads)
  {
    std::vector<T> biased(E);
    std::vector<char> keep(G, 1);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < n; ++t) {
      const T* lg = logits + t * E;
      T* s = scores + t * E;
      for (int e = 0; e < E; ++e) {
        s[e] = T(1) / (T(1) + std::exp(-lg[e]));
        biased[e] = s[e] + bias[e];
      }
      if (limit_groups) {
        TopK<T> top_groups(g.groups_per_token);
        for (int gi = 0; gi < G; ++gi) top_groups.push(group_score(&biased[gi * per], per), gi);
        std::fill(keep.begin(), keep.end(), 0);
        for (int j = 0; j < top_groups.n; ++j) keep[top_groups.idx[j]] = 1;
      }
      // Masked experts are simply never candidates: the same as -inf without its arithmetic.
      TopK<T> top(k);
      for (int gi = 0; gi < G; ++gi) {
        if (!keep[gi]) continue;
        for (int e = gi * per; e < (gi + 1) * per; ++e) top.push(biased[e], e);
      }
      T sum = 0;
      for (int j = 0; j < k; ++j) sum += s[top.idx[j]];
      const T inv = T(1) / (sum + static_cast<T>(kNormGuard));
      for (int j = 0; j < k; ++j) {
        expert_idx[t * k + j] = top.idx[j];
        weights[t * k + j] = s[top.idx[j]] * inv * rs;
      }
    }
  }
}

// w_j = rs s_j / S with S = sum of the selected s, so dL/ds_i = rs / S (dw_i - sum_j dw_j s_j / S)
// for a selected i; every score then goes through ds/dlogit = s (1 - s).
template <class T>
void gate_backward(const GateShape& g, int64_t n, const T* dweights, const T* scores,
                   const int32_t* expert_idx, const T* dscores_extra, T* dlogits, int threads) {
  const int E = g.num_experts, k = g.top_k;
  const T rs = static_cast<T>(g.route_scale);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t t = 0; t < n; ++t) {
    const T* s = scores + t * E;
    const T* dw = dweights + t * k;
    const int32_t* idx = expert_idx + t * k;
    T* dl = dlogits + t * E;
    if (dscores_extra) {
      for (int e = 0; e < E; ++e) dl[e] = dscores_extra[t * E + e];
    } else {
      for (int e = 0; e < E; ++e) dl[e] = T(0);
    }
    T sum = 0;
    for (int j = 0; j < k; ++j) sum += s[idx[j]];
    const T inv = T(1) / (sum + static_cast<T>(kNormGuard));
    T c = 0;
    for (int j = 0; j < k; ++j) c += dw[j] * s[idx[j]];
    c *= inv;
    for (int j = 0; j < k; ++j) dl[idx[j]] += rs * inv * (dw[j] - c);
    for (int e = 0; e < E; ++e) dl[e] *= s[e] * (T(1) - s[e]);
  }
}

#define FLOT_INSTANTIATE(T)                                                                    \
  template void gate_forward<T>(const GateShape&, int64_t, const T*, const T*, T*, int32_t*, T*, \
                                int);                                                          \
  template void gate_backward<T>(const GateShape&, int64_t, const T*, const T*, const int32_t*, \
                                 const T*, T*, int);
FLOT_INSTANTIATE(float)
FLOT_INSTANTIATE(double)
#undef FLOT_INSTANTIATE

}  // namespace kernels::cpu
