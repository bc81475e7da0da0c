// CPU implementations behind kernels/fp8_ops.hpp and kernels/bf16_ops.hpp: element conversions,
// tile-wise quantization and the block-scaled GEMM core.
//
// The launchers (kernels/fp8_*.cpp, kernels/bf16_gemm.cpp) have validated shapes, dtypes and
// offsets and returned on empty work; these functions trust raw pointers and sizes. `threads` is
// the OpenMP thread count to use (>= 1); inside a parallel region everything runs serially.
#pragma once

#include <cstdint>
#include <vector>

#include "core/dtype.hpp"
#include "kernels/fp8_ops.hpp"

namespace kernels::cpu {

// ---- element conversions -------------------------------------------------------------------
void bf16_round(const float* x, float* y, int64_t n, int threads);  // y = round_bf16(x)
void bf16_narrow(const float* x, uint16_t* y, int64_t n, int threads);
void bf16_widen(const uint16_t* x, float* y, int64_t n, int threads);
// y = table[q]: FP8 codes to float through the format's 256-entry table.
void fp8_decode(const uint8_t* q, const float* table, float* y, int64_t n, int threads);

// ---- quantization --------------------------------------------------------------------------
// A run of consecutive rows of a row-major [rows, cols] matrix that shares one row of scales:
// one row (row_1x128), one 128-row block of one expert (block_128x128), or up to 128 rows of one
// segment (col_128x1). Scales in that row cover 128 columns each, or one column each (col tiling).
struct Fp8Panel {
  int64_t row0 = 0, rows = 0, scale_row = 0;
};

// First scale row of segment e in a col_128x1 quantization over segments (see fp8_ops.hpp).
inline int64_t segment_scale_row0(const int32_t* offsets, int e) {
  return offsets[e] / kFp8Tile + e;
}

// The panels of `matrices` stacked [rows, cols] matrices under a dense tiling, or of the segments
// of `offsets` ([segments + 1], col tiling) when offsets is not null.
std::vector<Fp8Panel> fp8_panels(Fp8Tiling tiling, int64_t rows, int64_t matrices,
                                 const int32_t* offsets, int segments);

// Quantizes x [*, cols] panel by panel into codes q (same layout) and scales [*, scale_cols]
// with scale_cols = cols (per_column) or ceil(cols / 128).
void fp8_quantize(const float* x, int64_t cols, const std::vector<Fp8Panel>& panels,
                  bool per_column, core::DType format, bool pow2_scales, uint8_t* q, float* scales,
                  int threads);
// x = table[q] * scale, panel by panel.
void fp8_dequantize(const uint8_t* q, const float* scales, int64_t cols,
                    const std::vector<Fp8Panel>& panels, bool per_column, const float* table,
                    float* x, int threads);

// ---- wire rows: codes [rows, cols] + scales [rows, scale_cols] <-> packed byte rows ---------
void fp8_pack_rows(const uint8_t* codes, const float* scales, int64_t rows, int64_t cols,
                   int64_t scale_cols, uint8_t* packed, int threads);
void fp8_unpack_rows(const uint8_t* packed, int64_t rows, int64_t cols, int64_t scale_cols,
                     uint8_t* codes, float* scales, int threads);

// ---- block-scaled GEMM ---------------------------------------------------------------------
// C[m, n] (=, or + beta C) sum over reduction blocks kb of 128 of (sa(i, kb) * sb(kb, j)) *
// (A[i, kb-block] B[kb-block, j]) on decoded (exact) FP8 values, as fp8_ops.hpp describes.
// A[i, k] = a[i * lda + k] (a_trans: a[k * lda + i]); B[k, j] = b[k * ldb + j] (b_trans:
// b[j * ldb + k]); sa(i, kb) = sa[i * sa_i + kb * sa_k]; sb(kb, j) = sb[kb * sb_k +
// (j >> sb_shift) * sb_j] (sb_shift 7: one scale per 128 columns, 0: per column).
struct BlockScaledGemm {
  int64_t m = 0, n = 0, kd = 0;
  const float* a = nullptr;
  int64_t lda = 0;
  bool a_trans = false;
  const float* b = nullptr;
  int64_t ldb = 0;
  bool b_trans = false;
  const float* sa = nullptr;
  int64_t sa_i = 0, sa_k = 0;
  const float* sb = nullptr;
  int64_t sb_k = 0, sb_j = 0;
  int sb_shift = 0;
  float* c = nullptr;
  int64_t ldc = 0;
  float beta = 0.0f;
  bool accumulate = false;  // C += result (beta ignored)
};
void block_scaled_gemm(const BlockScaledGemm& g, int threads);

// The three GEMMs of a Linear, as kernels/fp8_ops.hpp defines them; a is the activation-side
// operand (x or dy), b the weight (forward, dgrad) or x (wgrad). c is f32, beta as the launchers.
enum class Fp8GemmKind { forward, dgrad, wgrad };
void fp8_gemm(Fp8GemmKind kind, const Fp8Tensor& a, const Fp8Tensor& b, float* c, float beta,
              int threads);
// Grouped over `experts` row segments of offsets [experts + 1]; b is [experts, n, k] (forward,
// dgrad) or the segment-tiled x (wgrad, c = dW [experts, n, k]).
void fp8_grouped_gemm(Fp8GemmKind kind, const Fp8Tensor& a, const Fp8Tensor& b,
                      const int32_t* offsets, int experts, float* c, float beta, int threads);

}  // namespace kernels::cpu
