// CPU routing: the stable counting-sort plan, permute (gather by src) and combine (weighted gather
// by pos), with their backward passes. Every loop over tokens or rows writes rows no other
// iteration writes (pos is a permutation), so they parallelize without atomics.
#include <cstring>
#include <vector>

#include "kernels/cpu/moe_cpu.hpp"

namespace kernels::cpu {

int64_t first_out_of_range(const int32_t* v, int64_t n, int64_t limit) {
  for (int64_t i = 0; i < n; ++i)
    if (v[i] < 0 || v[i] >= limit) return i;
  return -1;
}

// Serial on purpose: N*k counters are a few microseconds, and a serial pass is trivially stable.
void moe_plan(int64_t n, int top_k, const int32_t* expert_idx, int num_experts, int32_t* offsets,
              int32_t* src, int32_t* pos) {
  const int64_t pairs = n * top_k;
  std::vector<int32_t> cursor(num_experts + 1, 0);
  for (int64_t p = 0; p < pairs; ++p) ++cursor[expert_idx[p] + 1];
  for (int e = 0; e < num_experts; ++e) cursor[e + 1] += cursor[e];
  std::memcpy(offsets, cursor.data(), sizeof(int32_t) * (num_experts + 1));
  for (int64_t p = 0; p < pairs; ++p) {
    const int32_t r = cursor[expert_idx[p]]++;
    src[r] = static_cast<int32_t>(p);
    pos[p] = r;
  }
}

void moe_permute(int64_t rows, int64_t row_bytes, const std::byte* x, const int32_t* src, int top_k,
                 std::byte* xs, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(xs + r * row_bytes, x + static_cast<int64_t>(src[r] / top_k) * row_bytes, row_bytes);
}

template <class T>
void moe_permute_backward(int64_t n, int64_t d, const T* dxs, const int32_t* pos, int top_k, T* dx,
                          int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t t = 0; t < n; ++t) {
    T* out = dx + t * d;
    for (int j = 0; j < top_k; ++j) {
      const T* in = dxs + static_cast<int64_t>(pos[t * top_k + j]) * d;
#pragma omp simd
      for (int64_t i = 0; i < d; ++i) out[i] += in[i];
    }
  }
}

template <class T>
void moe_combine(int64_t n, int top_k, int64_t d, const T* ys, const T* weights, const int32_t* pos,
                 T* y, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t t = 0; t < n; ++t) {
    T* out = y + t * d;
    for (int j = 0; j < top_k; ++j) {
      const T w = weights[t * top_k + j];
      const T* in = ys + static_cast<int64_t>(pos[t * top_k + j]) * d;
#pragma omp simd
      for (int64_t i = 0; i < d; ++i) out[i] += w * in[i];
    }
  }
}

template <class T>
void moe_combine_backward(int64_t n, int top_k, int64_t d, const T* dy, const T* ys,
                          const T* weights, const int32_t* pos, T* dys, T* dweights, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t t = 0; t < n; ++t) {
    const T* g = dy + t * d;
    for (int j = 0; j < top_k; ++j) {
      const int64_t r = pos[t * top_k + j];
      const T w = weights[t * top_k + j];
      const T* in = ys + r * d;
      T* out = dys + r * d;
      T acc = 0;
#pragma omp simd reduction(+ : acc)
      for (int64_t i = 0; i < d; ++i) {
        out[i] = w * g[i];
        acc += g[i] * in[i];
      }
      dweights[t * top_k + j] = acc;
    }
  }
}

#define FLOT_INSTANTIATE(T)                                                                     \
  template void moe_permute_backward<T>(int64_t, int64_t, const T*, const int32_t*, int, T*, int); \
  template void moe_combine<T>(int64_t, int, int64_t, const T*, const T*, const int32_t*, T*, int); \
  template void moe_combine_backward<T>(int64_t, int, int64_t, const T*, const T*, const T*,     \
                                        const int32_t*, T*, T*, int);
FLOT_INSTANTIATE(float)
FLOT_INSTANTIATE(double)
#undef FLOT_INSTANTIATE

}  // namespace kernels::cpu
