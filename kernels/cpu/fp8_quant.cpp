// CPU tile-wise FP8 quantization and dequantization (kernels/fp8_ops.hpp). Every tiling is a list
// of panels (consecutive rows sharing one row of scales); a panel is read once for its amax and
// once to encode, so each element is quantized exactly once. OpenMP over panels.
#include <omp.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "kernels/cpu/eigen_maps.hpp"
#include "kernels/cpu/fp8.hpp"
#include "kernels/fp8_format.hpp"

namespace kernels::cpu {

namespace {

// |x| as bits. For non-negative floats the integer order is the value order and NaN patterns
// sort above infinity, so an integer max is an amax that keeps NaN and vectorizes.
inline uint32_t abs_bits(float x) {
  return fp8_detail::bits_of(x) & 0x7fffffffu;
}

float tile_scale(uint32_t amax_bits, float fmt_max, bool pow2) {
  // std::max keeps a NaN first argument: a NaN tile gets a NaN scale.
  const float amax = std::max(fp8_detail::float_of(amax_bits), kFp8AmaxFloor);
  float s = amax / fmt_max;
  if (pow2 && s <= std::numeric_limits<float>::max()) {
    // Round up to a power of two: s is normal and positive (amax >= 1e-4), so clearing the
    // mantissa and stepping the exponent is exact.
    uint32_t u = fp8_detail::bits_of(s);
    if (u & 0x7fffffu) u = (u & 0xff800000u) + 0x800000u;
    s = fp8_detail::float_of(u);
  }
  return s;
}

template <core::DType F>
inline uint8_t encode(float x) {
  if constexpr (F == core::DType::e4m3) {
    return f32_to_e4m3(x);
  } else {
    return f32_to_e5m2(x);
  }
}

int64_t scale_cols(int64_t cols, bool per_column) {
  return per_column ? cols : (cols + kFp8Tile - 1) / kFp8Tile;
}

// Threads for a pass over n elements: none inside a parallel region or for small work.
int pass_threads(int64_t n, int threads) {
  return omp_in_parallel() || n < kParallelMinElems ? 1 : threads;
}

// One panel: column-group amax over its rows, one scale per group, then every element encoded.
// Groups are single columns (kPerColumn) or 128 consecutive columns.
template <core::DType F, bool kPerColumn>
void quantize_panel(const float* x, int64_t cols, const Fp8Panel& p, float fmt_max, bool pow2,
                    uint8_t* q, float* srow, uint32_t* amax) {
  const int64_t groups = scale_cols(cols, kPerColumn);
  std::fill(amax, amax + groups, 0u);
  for (int64_t r = p.row0; r < p.row0 + p.rows; ++r) {
    const float* xr = x + r * cols;
    if constexpr (kPerColumn) {
      for (int64_t c = 0; c < cols; ++c) amax[c] = std::max(amax[c], abs_bits(xr[c]));
    } else {
      for (int64_t g = 0; g < groups; ++g) {
        uint32_t m = amax[g];
        for (int64_t c = g * kFp8Tile; c < std::min(cols, (g + 1) * kFp8Tile); ++c)
          m = std::max(m, abs_bits(xr[c]));
        amax[g] = m;
      }
    }
  }
  for (int64_t g = 0; g < groups; ++g) srow[g] = tile_scale(amax[g], fmt_max, pow2);
  for (int64_t r = p.row0; r < p.row0 + p.rows; ++r) {
    const float* xr = x + r * cols;
    uint8_t* qr = q + r * cols;
    if constexpr (kPerColumn) {
      for (int64_t c = 0; c < cols; ++c) qr[c] = encode<F>(xr[c] / srow[c]);
    } else {
      for (int64_t g = 0; g < groups; ++g) {
        const float s = srow[g];
        for (int64_t c = g * kFp8Tile; c < std::min(cols, (g + 1) * kFp8Tile); ++c)
          qr[c] = encode<F>(xr[c] / s);
      }
    }
  }
}

template <core::DType F, bool kPerColumn>
void quantize_panels(const float* x, int64_t cols, const std::vector<Fp8Panel>& panels, bool pow2,
                     uint8_t* q, float* scales, int threads) {
  const float fmt_max = fp8_max(F);
  const int64_t groups = scale_cols(cols, kPerColumn);
  const int64_t count = static_cast<int64_t>(panels.size());
  const int64_t rows = panels.empty() ? 0 : panels.back().row0 + panels.back().rows;
#pragma omp parallel num_threads(pass_threads(rows* cols, threads))
  {
    std::vector<uint32_t> amax(groups);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < count; ++i)
      quantize_panel<F, kPerColumn>(x, cols, panels[i], fmt_max, pow2, q,
                                    scales + panels[i].scale_row * groups, amax.data());
  }
}

template <bool kPerColumn>
void dequantize_panel(const uint8_t* q, const float* srow, int64_t cols, const Fp8Panel& p,
                      const float* table, float* x) {
  for (int64_t r = p.row0; r < p.row0 + p.rows; ++r) {
    const uint8_t* qr = q + r * cols;
    float* xr = x + r * cols;
    // simd: GCC only vectorizes the table lookup (a gather) when told the loop is safe
    if constexpr (kPerColumn) {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) xr[c] = table[qr[c]] * srow[c];
    } else {
      for (int64_t g = 0; g * kFp8Tile < cols; ++g) {
        const float s = srow[g];
#pragma omp simd
        for (int64_t c = g * kFp8Tile; c < std::min(cols, (g + 1) * kFp8Tile); ++c)
          xr[c] = table[qr[c]] * s;
      }
    }
  }
}

}  // namespace

std::vector<Fp8Panel> fp8_panels(Fp8Tiling tiling, int64_t rows, int64_t matrices,
                                 const int32_t* offsets, int segments) {
  std::vector<Fp8Panel> p;
  if (offsets != nullptr) {
    for (int e = 0; e < segments; ++e) {
      int64_t s = segment_scale_row0(offsets, e);
      for (int64_t r = offsets[e]; r < offsets[e + 1]; r += kFp8Tile)
        p.push_back({r, std::min<int64_t>(kFp8Tile, offsets[e + 1] - r), s++});
    }
    return p;
  }
  if (tiling == Fp8Tiling::row_1x128) {
    p.reserve(rows * matrices);
    for (int64_t r = 0; r < rows * matrices; ++r) p.push_back({r, 1, r});
    return p;
  }
  // block_128x128 per matrix; col_128x1 has one matrix
  const int64_t blocks = (rows + kFp8Tile - 1) / kFp8Tile;
  for (int64_t m = 0; m < matrices; ++m)
    for (int64_t b = 0; b < blocks; ++b)
      p.push_back(
          {m * rows + b * kFp8Tile, std::min(kFp8Tile, rows - b * kFp8Tile), m * blocks + b});
  return p;
}

void fp8_quantize(const float* x, int64_t cols, const std::vector<Fp8Panel>& panels,
                  bool per_column, core::DType format, bool pow2_scales, uint8_t* q, float* scales,
                  int threads) {
  const bool e4m3 = format == core::DType::e4m3;
  if (per_column && e4m3)
    quantize_panels<core::DType::e4m3, true>(x, cols, panels, pow2_scales, q, scales, threads);
  if (per_column && !e4m3)
    quantize_panels<core::DType::e5m2, true>(x, cols, panels, pow2_scales, q, scales, threads);
  if (!per_column && e4m3)
    quantize_panels<core::DType::e4m3, false>(x, cols, panels, pow2_scales, q, scales, threads);
  if (!per_column && !e4m3)
    quantize_panels<core::DType::e5m2, false>(x, cols, panels, pow2_scales, q, scales, threads);
}

void fp8_dequantize(const uint8_t* q, const float* scales, int64_t cols,
                    const std::vector<Fp8Panel>& panels, bool per_column, const float* table,
                    float* x, int threads) {
  const int64_t groups = scale_cols(cols, per_column);
  const int64_t count = static_cast<int64_t>(panels.size());
  const int64_t rows = panels.empty() ? 0 : panels.back().row0 + panels.back().rows;
#pragma omp parallel for schedule(static) num_threads(pass_threads(rows* cols, threads))
  for (int64_t i = 0; i < count; ++i) {
    const float* srow = scales + panels[i].scale_row * groups;
    if (per_column) {
      dequantize_panel<true>(q, srow, cols, panels[i], table, x);
    } else {
      dequantize_panel<false>(q, srow, cols, panels[i], table, x);
    }
  }
}

}  // namespace kernels::cpu
