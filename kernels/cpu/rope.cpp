// CPU RoPE: a [positions, rope_dim / 2] cos/sin table, then one pass over the rows.
#include "kernels/cpu/rope.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/eigen_maps.hpp"

namespace kernels::cpu {

template <class T>
void rope(T* x, int64_t rows, int64_t H, int64_t Dh, int64_t seq_len, int64_t offset,
          int64_t rope_dim, double theta, bool inverse) {
  const int64_t half = rope_dim / 2;
  const int64_t positions = std::min(seq_len, rows);
  std::vector<double> inv_freq(half);
  for (int64_t i = 0; i < half; ++i)
    inv_freq[i] = std::pow(theta, -static_cast<double>(2 * i) / static_cast<double>(rope_dim));
  std::vector<T> cos_t(positions * half), sin_t(positions * half);
  // Backward turns the other way: only the sign of sin changes.
  const double sign = inverse ? -1.0 : 1.0;
#pragma omp parallel for schedule(static) if (positions * half > 4096)
  for (int64_t p = 0; p < positions; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      const double a = static_cast<double>(p) * inv_freq[i];
      cos_t[p * half + i] = static_cast<T>(std::cos(a));
      sin_t[p * half + i] = static_cast<T>(sign * std::sin(a));
    }
  }
#pragma omp parallel for schedule(static) if (rows * H * rope_dim > kParallelMinElems)
  for (int64_t r = 0; r < rows; ++r) {
    const T* c = cos_t.data() + (r % seq_len) * half;
    const T* s = sin_t.data() + (r % seq_len) * half;
    for (int64_t h = 0; h < H; ++h) {
      T* v = x + (r * H + h) * Dh + offset;
#pragma omp simd
      for (int64_t i = 0; i < half; ++i) {
        const T x0 = v[2 * i], x1 = v[2 * i + 1];
        v[2 * i] = x0 * c[i] - x1 * s[i];
        v[2 * i + 1] = x0 * s[i] + x1 * c[i];
      }
    }
  }
}

template void rope<float>(float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, double,
                          bool);
template void rope<double>(double*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, double,
                           bool);

}  // namespace kernels::cpu
