// CPU SwiGLU through Eigen array expressions, whose exp is vectorized (std::exp in a loop is not).
#include "kernels/cpu/swiglu.hpp"

#include <vector>

#include "kernels/cpu/eigen_maps.hpp"

namespace kernels::cpu {

template <class T>
void swiglu_forward(const T* h, int64_t N, int64_t F, T* y) {
#pragma omp parallel for schedule(static) if (N * F > kParallelMinElems)
  for (int64_t n = 0; n < N; ++n) {
    ConstVecMap<T> g(h + n * 2 * F, F), u(h + n * 2 * F + F, F);
    VecMap<T>(y + n * F, F) = g / (T(1) + (-g).exp()) * u;
  }
}

template <class T>
void swiglu_backward(const T* dy, const T* h, int64_t N, int64_t F, T* dh) {
#pragma omp parallel if (N * F > kParallelMinElems)
  {
    // The sigmoid is used three times; holding one row of it avoids recomputing exp.
    Eigen::Array<T, Eigen::Dynamic, 1> s(F);
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      ConstVecMap<T> g(h + n * 2 * F, F), u(h + n * 2 * F + F, F), d(dy + n * F, F);
      s = T(1) / (T(1) + (-g).exp());
      VecMap<T>(dh + n * 2 * F, F) = d * u * s * (T(1) + g * (T(1) - s));
      VecMap<T>(dh + n * 2 * F + F, F) = d * g * s;
    }
  }
}

#define FLOT_INSTANTIATE(T)                                        \
  template void swiglu_forward<T>(const T*, int64_t, int64_t, T*); \
  template void swiglu_backward<T>(const T*, const T*, int64_t, int64_t, T*);
FLOT_INSTANTIATE(float)
FLOT_INSTANTIATE(double)
#undef FLOT_INSTANTIATE

}  // namespace kernels::cpu
