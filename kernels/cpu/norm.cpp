// CPU RMSNorm: one row per iteration, row reductions accumulated in double.
#include "kernels/cpu/norm.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/eigen_maps.hpp"

namespace kernels::cpu {

template <class T>
void rmsnorm_forward(const T* x, const T* w, int64_t N, int64_t D, T eps, T* y, T* rstd) {
#pragma omp parallel for schedule(static) if (N * D > kParallelMinElems)
  for (int64_t n = 0; n < N; ++n) {
    const T* xr = x + n * D;
    T* yr = y + n * D;
    double ss = 0;
#pragma omp simd reduction(+ : ss)
    for (int64_t d = 0; d < D; ++d) ss += static_cast<double>(xr[d]) * xr[d];
    const T r = static_cast<T>(1.0 / std::sqrt(ss / static_cast<double>(D) + eps));
    rstd[n] = r;
#pragma omp simd
    for (int64_t d = 0; d < D; ++d) yr[d] = xr[d] * r * w[d];
  }
}

template <class T>
void rmsnorm_backward_input(const T* dy, const T* x, const T* w, const T* rstd, int64_t N,
                            int64_t D, T* dx) {
#pragma omp parallel for schedule(static) if (N * D > kParallelMinElems)
  for (int64_t n = 0; n < N; ++n) {
    const T* dyr = dy + n * D;
    const T* xr = x + n * D;
    T* dxr = dx + n * D;
    double dot = 0;
#pragma omp simd reduction(+ : dot)
    for (int64_t d = 0; d < D; ++d) dot += static_cast<double>(dyr[d]) * w[d] * xr[d];
    const T r = rstd[n];
    const T c = static_cast<T>(dot / static_cast<double>(D)) * r * r * r;
#pragma omp simd
    for (int64_t d = 0; d < D; ++d) dxr[d] = r * w[d] * dyr[d] - c * xr[d];
  }
}

template <class T>
void rmsnorm_backward_weight(const T* dy, const T* x, const T* rstd, int64_t N, int64_t D, T* dw) {
  const bool par = N * D > kParallelMinElems;
  const int max_threads = par ? omp_get_max_threads() : 1;
  std::vector<T> partial(static_cast<size_t>(max_threads) * D, T(0));
#pragma omp parallel num_threads(max_threads) if (par)
  {
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t n0 = N * t / nt, n1 = N * (t + 1) / nt;
    T* acc = partial.data() + t * D;
    for (int64_t n = n0; n < n1; ++n) {
      const T* dyr = dy + n * D;
      const T* xr = x + n * D;
      const T r = rstd[n];
#pragma omp simd
      for (int64_t d = 0; d < D; ++d) acc[d] += dyr[d] * xr[d] * r;
    }
  }
  for (int t = 0; t < max_threads; ++t) {
    const T* acc = partial.data() + static_cast<int64_t>(t) * D;
#pragma omp simd
    for (int64_t d = 0; d < D; ++d) dw[d] += acc[d];
  }
}

#define FLOT_INSTANTIATE(T)                                                                \
  template void rmsnorm_forward<T>(const T*, const T*, int64_t, int64_t, T, T*, T*);       \
  template void rmsnorm_backward_input<T>(const T*, const T*, const T*, const T*, int64_t, \
                                          int64_t, T*);                                    \
  template void rmsnorm_backward_weight<T>(const T*, const T*, const T*, int64_t, int64_t, T*);
FLOT_INSTANTIATE(float)
FLOT_INSTANTIATE(double)
#undef FLOT_INSTANTIATE

}  // namespace kernels::cpu
