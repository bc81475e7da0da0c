// FP8 ops of DeepSeek-V3's fine-grained recipe: tile-wise quantization to E4M3 (or E5M2) with
// FP32 scales, its inverse, and the block-scaled FP8 GEMMs (forward, data gradient, weight
// gradient, dense and grouped over experts). Same conventions as kernels/ops.hpp; CPU emulation
// in kernels/cpu/fp8_*.cpp, the interface a CUDA backend implements with cuBLASLt's VEC128 /
// BLK128x128 scale modes. Formats: kernels/fp8_format.hpp; docs: docs/precision.md.
//
// Tiles (T = kFp8Tile = 128). A quantized matrix [R, C] is its codes (dtype e4m3 or e5m2, the
// same row-major [R, C] layout as the float matrix) plus one FP32 scale per tile, row-major:
//   row_1x128      1 row x 128 consecutive columns   scales [R, ceil(C/T)]           activations
//   block_128x128  128 x 128 block                   scales [ceil(R/T), ceil(C/T)]   weights
//                  stacked experts [E, R, C]: blocks per expert, scales [E, ceil(R/T), ceil(C/T)]
//   col_128x1      128 consecutive rows x 1 column   scales [ceil(R/T), C]           wgrad operands
//   col_128x1 over segments (grouped wgrad operands, offsets i32 [E + 1] as kernels::grouped_gemm):
//                  tiles start at each segment's first row and never cross into the next segment;
//                  segment e's tile rows sit at scale rows offsets[e] / T + e, ...; scales
//                  [R / T + E, C] (fp8_segment_scale_rows); rows no segment uses are zero.
// Tiles at the right and bottom edges are partial: only their in-range elements count.
//
// Scale of a tile: amax = max |x| over the tile, clamped below at 1e-4; scale = amax / fmt_max
// (448 for E4M3) in float, or with pow2_scales the power of two at or above it (then no value
// saturates and dequantization is exact). code = encode(x / scale): a true float division, then
// round to nearest even with satfinite saturation. Dequantized value: decode(code) * scale.
// A NaN or infinity in a tile makes its scale non-finite, so it is never silently hidden.
//
// GEMM emulation. The reduction dimension is cut into blocks of T (the tile edges of both
// operands); for every output element, with a and b the decoded codes and sa, sb the scales of
// the two tiles a block reads:
//   acc = 0;  for each block kb in order:  acc += (sa * sb) * P_kb,  P_kb = sum_{k in kb} a_k b_k
// in float: each product of two FP8 values is exact, P_kb is summed in float (order inside a
// block unspecified), sa * sb is rounded once, acc is the FP32 accumulator the recipe promotes
// into every 128 elements. Then out = acc (+ beta * out), or out += acc for the weight gradient.
#pragma once

#include <array>
#include <cstdint>

#include "core/arena.hpp"
#include "core/context.hpp"
#include "core/tensor.hpp"

namespace kernels {

using core::Context;
using core::Tensor;

constexpr int64_t kFp8Tile = 128;
constexpr float kFp8AmaxFloor = 1e-4f;

enum class Fp8Tiling : uint8_t { row_1x128, block_128x128, col_128x1 };
const char* fp8_tiling_name(Fp8Tiling t);

// A quantized tensor: what a layer keeps in its activation slot (codes + scales) or holds for a
// quantized weight. A view, like Tensor: the memory lives in an arena.
struct Fp8Tensor {
  Tensor codes;   // e4m3 or e5m2: [R, C], or [E, R, C] for stacked expert weights (block tiling)
  Tensor scales;  // f32, layout of `tiling` (top of file)
  Fp8Tiling tiling = Fp8Tiling::row_1x128;

  bool empty() const { return codes.empty(); }
  size_t bytes() const { return codes.bytes() + scales.bytes(); }
};

// ---- layout --------------------------------------------------------------------------------
// Scale shape of one [rows, cols] matrix under a dense tiling.
std::array<int64_t, 2> fp8_scale_shape(Fp8Tiling tiling, int64_t rows, int64_t cols);
// Scale rows of a col_128x1 quantization of `rows` rows cut into `segments` segments.
int64_t fp8_segment_scale_rows(int64_t rows, int64_t segments);
// Codes and scales for a [rows, cols] matrix (format e4m3 or e5m2), from an arena.
Fp8Tensor fp8_alloc(core::BumpArena& arena, core::DType format, Fp8Tiling tiling, int64_t rows,
                    int64_t cols);
// Stacked expert weights [experts, rows, cols], block_128x128.
Fp8Tensor fp8_alloc_experts(core::BumpArena& arena, core::DType format, int64_t experts,
                            int64_t rows, int64_t cols);
// col_128x1 over `segments` segments of [rows, cols] (grouped weight-gradient operands).
Fp8Tensor fp8_alloc_segments(core::BumpArena& arena, core::DType format, int64_t rows, int64_t cols,
                             int64_t segments);

// ---- quantization --------------------------------------------------------------------------
// q = quantize(x) with q.tiling. x f32; row and col tilings fold x to [rows, last dim], block
// tiling reads x as one matrix (2-D) or stacked experts (3-D). q.codes has x's shape.
void fp8_quantize(Context& ctx, const Tensor& x, const Fp8Tensor& q, bool pow2_scales = false);
// col_128x1 per segment: rows [offsets[e], offsets[e+1]) are tiled from offsets[e].
void fp8_quantize_segments(Context& ctx, const Tensor& x, const Tensor& offsets, const Fp8Tensor& q,
                           bool pow2_scales = false);
// x (f32, q.codes' shape) = decode(codes) * scale.
void fp8_dequantize(Context& ctx, const Fp8Tensor& q, const Tensor& x);
void fp8_dequantize_segments(Context& ctx, const Fp8Tensor& q, const Tensor& offsets,
                             const Tensor& x);
// dst = quantize(dequantize(src)) under dst's tiling: re-tiles a cached FP8 activation (row_1x128)
// into the col_128x1 tiles of the weight-gradient GEMM, as the recipe's backward does. The two
// roundings are those of dequantize and quantize; the FP32 copy is scratch.
void fp8_requantize(Context& ctx, const Fp8Tensor& src, const Fp8Tensor& dst,
                    bool pow2_scales = false);
// Same into col_128x1 tiles over segments (src row_1x128 or col_128x1 dense).
void fp8_requantize_segments(Context& ctx, const Fp8Tensor& src, const Tensor& offsets,
                             const Fp8Tensor& dst, bool pow2_scales = false);

// ---- wire rows -----------------------------------------------------------------------------
// A row_1x128 matrix [R, C] as R byte rows, u8 [R, fp8_row_bytes(C)]: each row's C codes, then its
// ceil(C/128) FP32 scales (native byte order). A row then moves as one piece with its scales
// through a permutation (kernels::moe_permute) or an exchange: the MoE dispatch's FP8 payload.
int64_t fp8_row_bytes(int64_t cols);
void fp8_pack_rows(Context& ctx, const Fp8Tensor& q, const Tensor& packed);
void fp8_unpack_rows(Context& ctx, const Tensor& packed, const Fp8Tensor& q);

// ---- FP8 GEMMs (output f32; see the emulation at the top) ----------------------------------
// Linear forward Y[M, N] = X[M, K] W[N, K]^T (+ beta Y): x row_1x128, w block_128x128.
void fp8_gemm_forward(Context& ctx, const Fp8Tensor& x, const Fp8Tensor& w, const Tensor& y,
                      double beta = 0.0);
// Data gradient dX[M, K] = dY[M, N] W[N, K] (+ beta dX): dy row_1x128 (tiles along N), w the
// forward's block_128x128 weight.
void fp8_gemm_dgrad(Context& ctx, const Fp8Tensor& dy, const Fp8Tensor& w, const Tensor& dx,
                    double beta = 0.0);
// Weight gradient dW[N, K] += dY[M, N]^T X[M, K]  (accumulate): dy and x col_128x1 (tiles along M).
void fp8_gemm_wgrad(Context& ctx, const Fp8Tensor& dy, const Fp8Tensor& x, const Tensor& dw);

// Grouped over contiguous per-expert row segments (offsets i32 [E + 1], offsets[E] = M, as
// kernels::grouped_gemm); experts without rows are skipped.
// Y[rows of e] = X[rows of e] W[e]^T (+ beta Y): x row_1x128 [M, K], w block_128x128 [E, N, K].
void fp8_grouped_gemm_forward(Context& ctx, const Fp8Tensor& x, const Fp8Tensor& w,
                              const Tensor& offsets, const Tensor& y, double beta = 0.0);
// dX[rows of e] = dY[rows of e] W[e] (+ beta dX): dy row_1x128 [M, N], w [E, N, K].
void fp8_grouped_gemm_dgrad(Context& ctx, const Fp8Tensor& dy, const Fp8Tensor& w,
                            const Tensor& offsets, const Tensor& dx, double beta = 0.0);
// dW[e] [N, K] += dY[rows of e]^T X[rows of e]  (accumulate): dy [M, N] and x [M, K] both
// col_128x1 over the same segments (fp8_quantize_segments with these offsets).
void fp8_grouped_gemm_wgrad(Context& ctx, const Fp8Tensor& dy, const Fp8Tensor& x,
                            const Tensor& offsets, const Tensor& dw);

}  // namespace kernels
