// Helpers of the FP8 tests (tests/kernels/test_fp8_*.cpp): owned buffers behind an Fp8Tensor,
// the tile -> scale index of every layout written out independently of the kernels' panels, the
// expected scale of a tile, a float64 GEMM and DeepGEMM's GEMM error metric.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/tensor.hpp"
#include "kernels/fp8_ops.hpp"

namespace fp8_testing {

using core::DType;
using core::Tensor;
using kernels::Fp8Tensor;
using kernels::Fp8Tiling;

constexpr int64_t T = kernels::kFp8Tile;
inline int64_t tiles(int64_t n) {
  return (n + T - 1) / T;
}

// Codes and scales owned by the test, viewed as an Fp8Tensor.
struct QBuf {
  std::vector<uint8_t> codes;
  std::vector<float> scales;
  Fp8Tensor q;  // views of the two vectors: moving keeps them valid, copying would not

  QBuf(const QBuf&) = delete;
  QBuf(QBuf&&) = default;
  // One [rows, cols] matrix under a dense tiling.
  QBuf(DType fmt, Fp8Tiling tiling, int64_t rows, int64_t cols) {
    const auto s = kernels::fp8_scale_shape(tiling, rows, cols);
    init(tiling, s[0] * s[1], rows * cols);
    q.codes = Tensor(codes.data(), fmt, {rows, cols});
    q.scales = Tensor(scales.data(), DType::f32, {s[0], s[1]});
  }
  // Stacked expert weights [experts, rows, cols] in 128x128 blocks.
  static QBuf experts(DType fmt, int64_t experts, int64_t rows, int64_t cols) {
    QBuf b;
    b.init(Fp8Tiling::block_128x128, experts * tiles(rows) * tiles(cols), experts * rows * cols);
    b.q.codes = Tensor(b.codes.data(), fmt, {experts, rows, cols});
    b.q.scales = Tensor(b.scales.data(), DType::f32, {experts, tiles(rows), tiles(cols)});
    return b;
  }
  // [rows, cols] in 128x1 tiles over `segments` segments.
  static QBuf segments(DType fmt, int64_t rows, int64_t cols, int64_t segments) {
    QBuf b;
    const int64_t srows = kernels::fp8_segment_scale_rows(rows, segments);
    b.init(Fp8Tiling::col_128x1, srows * cols, rows * cols);
    b.q.codes = Tensor(b.codes.data(), fmt, {rows, cols});
    b.q.scales = Tensor(b.scales.data(), DType::f32, {srows, cols});
    return b;
  }

 private:
  QBuf() = default;
  void init(Fp8Tiling tiling, int64_t nscales, int64_t ncodes) {
    // Garbage that a kernel must overwrite: NaN scales, the NaN code.
    codes.assign(static_cast<size_t>(ncodes), 0x7F);
    scales.assign(static_cast<size_t>(nscales), std::nanf(""));
    q.tiling = tiling;
  }
};

// Index into the scales of element (r, c) of matrix m, written from the layout's definition.
// offsets (segments, col tiling) may be empty.
inline int64_t scale_index(Fp8Tiling tiling, int64_t rows, int64_t cols, int64_t m, int64_t r,
                           int64_t c, const std::vector<int32_t>& offsets = {}) {
  if (!offsets.empty()) {
    int64_t e = 0;
    while (!(offsets[e] <= r && r < offsets[e + 1])) ++e;
    const int64_t tile_row = offsets[e] / T + e + (r - offsets[e]) / T;
    return tile_row * cols + c;
  }
  switch (tiling) {
    case Fp8Tiling::row_1x128:
      return r * tiles(cols) + c / T;
    case Fp8Tiling::block_128x128:
      return (m * tiles(rows) + r / T) * tiles(cols) + c / T;
    case Fp8Tiling::col_128x1:
      return (r / T) * cols + c;
  }
  return -1;
}

// The scale a tile of this amax gets: max(amax, 1e-4) / fmt_max in float, or the smallest power
// of two at or above that.
inline float expected_scale(float amax, float fmt_max, bool pow2) {
  const float s = std::max(amax, 1e-4f) / fmt_max;
  if (!pow2) return s;
  int e;
  const float m = std::frexp(s, &e);  // s = m 2^e, m in [0.5, 1)
  return m == 0.5f ? s : std::ldexp(1.0f, e);
}

// C[i, j] = sum_k op(A)[i, k] op(B)[k, j] in float64; A stored [M, K] or [K, M] (ta), B stored
// [K, N] or [N, K] (tb).
inline std::vector<double> ref_gemm(const std::vector<float>& A, bool ta,
                                    const std::vector<float>& B, bool tb, int64_t M, int64_t N,
                                    int64_t K) {
  std::vector<double> C(M * N, 0.0);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k)
        s += double(ta ? A[k * M + i] : A[i * K + k]) * double(tb ? B[j * K + k] : B[k * N + j]);
      C[i * N + j] = s;
    }
  return C;
}

// DeepGEMM's error metric: 1 - 2 sum(x y) / sum(x^2 + y^2); 0 for equal vectors.
template <class A, class B>
double gemm_diff(const std::vector<A>& x, const std::vector<B>& y) {
  double xy = 0, xx = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    xy += double(x[i]) * double(y[i]);
    xx += double(x[i]) * double(x[i]) + double(y[i]) * double(y[i]);
  }
  return 1.0 - 2.0 * xy / xx;
}

}  // namespace fp8_testing
