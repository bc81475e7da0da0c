// GEMM plans for cuBLASLt: the pure host arithmetic that turns Flotilla's row-major GEMMs
// (kernels::gemm, gemm_bf16, fp8_gemm_*) into cuBLASLt's column-major problem, and Flotilla's FP8
// scale layouts (kernels/fp8_ops.hpp) into the ones cuBLASLt reads. Everything here runs on the
// CPU and is tested there (tests/kernels/test_lt_plan.cpp) against the CPU ops through
// lt_reference(), an emulation of what cuBLASLt computes from a plan: so a GPU run only has the
// library itself left to get wrong.
//
// cuBLASLt computes D[m, n] = alpha op(A')[m, k] op(B')[k, n] + beta C, column-major. A row-major
// C[M, N] is the column-major C^T [N, M], and C^T = op(B)^T op(A)^T, so A' is the row-major B
// and B' the row-major A, with m = N, n = M: no data moves.
//
// FP8 block-scaled GEMMs on Hopper must be "TN" (A' transposed, B' not: both operands contiguous
// along the reduction) with f32 scales:
//   VEC128_32F      one scale per 128 elements along the reduction; the tensor is outer-dim-major:
//                   scale(inner block ib, outer element o) at o + ib * outer (count blocks*outer).
//   BLK128x128_32F  one scale per 128x128 block; inner-block-major with the leading dimension
//                   rounded up to 4 (16 bytes): scale(ib, outer block ob) at ib + ob * ld.
// (cuBLAS documentation of cublasLtMatmulMatrixScale_t and the FP8 requirements of cublasLtMatmul;
// the layouts are those PyTorch's _scaled_mm checks for its "DeepSeek" recipes.) Flotilla keeps
// 1x128 scales row-major [rows, blocks] and 128x128 scales [row blocks, col blocks], so a plan
// says how to repack each scale tensor (ScaleRepack) and which code matrices to transpose:
//   forward  Y = X W^T     A' = W (BLK), B' = X (VEC)                      repack both scales
//   dgrad    dX = dY W     A' = W^T (BLK, codes transposed), B' = dY (VEC)  repack both scales
//   wgrad    dW += dY^T X  A' = X^T, B' = dY^T (both VEC, codes transposed) scales as they are
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kernels::lt {

enum class LtType : uint8_t { f32, bf16, e4m3, e5m2 };
enum class ScaleMode : uint8_t { none, vec128, blk128x128 };
const char* lt_type_name(LtType t);
int lt_type_size(LtType t);

constexpr int64_t kBlock = 128;
inline int64_t blocks_of(int64_t n) {
  return (n + kBlock - 1) / kBlock;
}
inline int64_t round_up(int64_t n, int64_t m) {
  return (n + m - 1) / m * m;
}

// A column-major matrix as cublasLtMatrixLayoutCreate takes it.
struct LtMatrix {
  LtType type = LtType::f32;
  int64_t rows = 0, cols = 0, ld = 0;
};

// The scale tensor of one FP8 operand, as cuBLASLt reads it (see the top of the file). `inner` is
// the reduction dimension in blocks; `outer` counts elements (vec128) or blocks (blk128x128).
struct ScaleLayout {
  ScaleMode mode = ScaleMode::none;
  int64_t inner = 0, outer = 0, ld = 0;
  int64_t count() const;
  int64_t index(int64_t inner_block, int64_t outer_index) const;
};

// A strided 2-D copy dst[i * dst_i + o * dst_o] = src[i * src_i + o * src_o] for i < inner,
// o < outer; dst has dst_count elements (padding is zero-filled). It moves a Flotilla scale
// tensor into a ScaleLayout; identity() when the layouts already agree.
struct ScaleRepack {
  int64_t inner = 0, outer = 0;
  int64_t src_i = 0, src_o = 0, dst_i = 0, dst_o = 0;
  int64_t dst_count = 0;
  bool identity() const;
};
void apply_repack(const ScaleRepack& r, const float* src, float* dst);

// One cuBLASLt matmul.
struct LtPlan {
  bool trans_a = false, trans_b = false;  // CUBLAS_OP_T on A', B'
  int64_t m = 0, n = 0, k = 0;
  LtMatrix a, b, c;  // D has C's layout
  ScaleLayout scale_a, scale_b;
  // A key for the algorithm cache: types, ops, dims, leading dims, scale modes, whether C is read
  // and the pointers' alignment (an algorithm chosen for aligned buffers may reject others).
  std::string key(bool reads_c, int alignment) const;
};

// Row-major C[M, N] = alpha op(A) op(B) + beta C, A stored [M, K] ([K, M] when trans_a) and B
// stored [K, N] ([N, K] when trans_b), contiguous; operands of type ab, C and D of type c.
LtPlan plan_rowmajor(LtType ab, LtType c, int64_t M, int64_t N, int64_t K, bool trans_a,
                     bool trans_b);

// The three FP8 GEMMs of a Linear, shapes as kernels/fp8_ops.hpp: forward Y[M, N] = X[M, K]
// W[N, K]^T; dgrad dX[M, K] = dY[M, N] W[N, K]; wgrad dW[N, K] += dY[M, N]^T X[M, K].
enum class Fp8Kind : uint8_t { forward, dgrad, wgrad };
const char* fp8_kind_name(Fp8Kind k);

// Where a cuBLASLt operand comes from: the activation side `a` (x or dy) or the weight side `b`
// (w, or x for wgrad) of the fp8 call, as stored ([rows, cols] row-major) or transposed.
struct CodeSource {
  bool from_a = false;
  bool transpose = false;
  int64_t rows = 0, cols = 0;  // of the stored code matrix
};

struct Fp8Plan {
  Fp8Kind kind = Fp8Kind::forward;
  int64_t M = 0, N = 0, K = 0;  // as in the comment above (M activation rows)
  LtPlan gemm;
  CodeSource codes_a, codes_b;  // cuBLASLt's A' and B'
  ScaleRepack repack_a, repack_b;
  bool accumulate = false;  // wgrad: D = C + A'B' (beta 1)
  // Device scratch the call needs: transposed codes and repacked scales, each 256-byte aligned.
  int64_t scratch_bytes() const;
};
// formats: the code types of the activation side and the weight side.
Fp8Plan plan_fp8(Fp8Kind kind, int64_t M, int64_t N, int64_t K, LtType a_format, LtType b_format);

// Whether cuBLASLt's block-scaled FP8 kernels take this plan: TN, e4m3 with e4m3 or e5m2 (e5m2 x
// e5m2 is not offered), every dimension and leading dimension a multiple of 16 and every pointer
// 16-byte aligned (`alignment` = the smallest pointer alignment). Otherwise the SIMT block-scaled
// kernel runs the GEMM.
bool fp8_lt_supported(const LtPlan& p, int alignment);

// What cuBLASLt computes for a plan, on the host, in double: D = alpha sum over the reduction of
// op(A') op(B') (block-scaled: sum over 128-blocks of scale_a * scale_b * block dot product) +
// beta C (C read only when beta != 0). a, b, c hold values (FP8 codes already decoded), laid out
// as the plan's matrices; sa, sb the repacked scales (null when the mode is none).
void lt_reference(const LtPlan& p, const float* a, const float* b, const float* sa, const float* sb,
                  double alpha, double beta, float* c);

// The largest power of two (up to 256) dividing every address.
int pointer_alignment(std::initializer_list<const void*> ptrs);

}  // namespace kernels::lt
