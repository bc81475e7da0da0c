// CPU elementwise kernels: OpenMP over the flat range, SIMD within each thread's part.
#include "kernels/cpu/elementwise.hpp"

#include <algorithm>
#include <cstring>

#include "kernels/cpu/eigen_maps.hpp"

namespace kernels::cpu {

template <class T>
void fill(T* x, int64_t n, T value) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMinElems)
  for (int64_t i = 0; i < n; ++i) x[i] = value;
}

void copy_bytes(const void* src, void* dst, size_t bytes) {
  // Large copies are split so that both cores' load/store ports are used.
  constexpr size_t kBlock = size_t(1) << 20;
  const int64_t blocks = static_cast<int64_t>((bytes + kBlock - 1) / kBlock);
#pragma omp parallel for schedule(static) if (blocks > 1)
  for (int64_t b = 0; b < blocks; ++b) {
    size_t begin = static_cast<size_t>(b) * kBlock;
    size_t len = std::min(kBlock, bytes - begin);
    std::memcpy(static_cast<char*>(dst) + begin, static_cast<const char*>(src) + begin, len);
  }
}

template <class T>
void axpy(T alpha, const T* x, T* y, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMinElems)
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

template <class T>
void scale(T* x, int64_t n, T alpha) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMinElems)
  for (int64_t i = 0; i < n; ++i) x[i] *= alpha;
}

template <class T>
double sum_squares(const T* x, int64_t n) {
  double s = 0;
  // The simd reduction permits reassociation, which plain -O3 forbids for floating point.
#pragma omp parallel for simd schedule(static) reduction(+ : s) if (n > kParallelMinElems)
  for (int64_t i = 0; i < n; ++i) {
    double v = static_cast<double>(x[i]);
    s += v * v;
  }
  return s;
}

#define FLOT_INSTANTIATE(T)                        \
  template void fill<T>(T*, int64_t, T);           \
  template void axpy<T>(T, const T*, T*, int64_t); \
  template void scale<T>(T*, int64_t, T);          \
  template double sum_squares<T>(const T*, int64_t);
FLOT_INSTANTIATE(float)
FLOT_INSTANTIATE(double)
#undef FLOT_INSTANTIATE

}  // namespace kernels::cpu
