// CPU embedding: row gather forward, column-blocked scatter-add backward.
#include "kernels/cpu/embedding.hpp"

#include <omp.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/eigen_maps.hpp"

namespace kernels::cpu {

template <class T>
void embedding_forward(const T* table, const int32_t* tokens, int64_t N, int64_t D, T* out) {
#pragma omp parallel for schedule(static) if (N * D > kParallelMinElems)
  for (int64_t n = 0; n < N; ++n)
    std::memcpy(out + n * D, table + static_cast<int64_t>(tokens[n]) * D, sizeof(T) * D);
}

template <class T>
void embedding_backward(const T* dout, const int32_t* tokens, int64_t N, int64_t D, T* dtable) {
#pragma omp parallel if (N * D > kParallelMinElems)
  {
    // Column blocks rounded to 16 elements keep each thread's stores on its own cache lines.
    const int64_t threads = omp_get_num_threads();
    const int64_t per = ((D + threads - 1) / threads + 15) / 16 * 16;
    const int64_t c0 = std::min(D, per * omp_get_thread_num());
    const int64_t c1 = std::min(D, c0 + per);
    for (int64_t n = 0; n < N && c0 < c1; ++n) {
      T* dst = dtable + static_cast<int64_t>(tokens[n]) * D;
      const T* src = dout + n * D;
#pragma omp simd
      for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
    }
  }
}

#define FLOT_INSTANTIATE(T)                                                           \
  template void embedding_forward<T>(const T*, const int32_t*, int64_t, int64_t, T*); \
  template void embedding_backward<T>(const T*, const int32_t*, int64_t, int64_t, T*);
FLOT_INSTANTIATE(float)
FLOT_INSTANTIATE(double)
#undef FLOT_INSTANTIATE

}  // namespace kernels::cpu
