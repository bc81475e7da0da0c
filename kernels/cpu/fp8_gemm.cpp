// CPU emulation of the block-scaled FP8 GEMMs (kernels/fp8_ops.hpp).
//
// Operands are decoded once through the format's table into float (exact), then the output is
// cut into tiles; for each tile and each 128-deep reduction block one Eigen GEMM computes the
// block's partial products P (a product of two FP8 values is exact in float, so P is the sum a
// tensor core forms, up to summation order) and the epilogue promotes (sa * sb) * P into the tile's
// FP32 accumulator. Tiles run in parallel; inside a parallel region (grouped GEMM over many
// experts) everything runs on the calling thread.
#include <omp.h>

#include <algorithm>
#include <memory>

#include "kernels/cpu/eigen_maps.hpp"
#include "kernels/cpu/fp8.hpp"
#include "kernels/cpu/segments.hpp"
#include "kernels/fp8_format.hpp"

namespace kernels::cpu {

namespace {

// Output tile: big enough that Eigen's packing is a small share of each block product, small
// enough that the partial products and the accumulator stay in L2.
constexpr int64_t kTileM = 256, kTileN = 256;

using Strided = ConstStridedMap<float>;

// Calls f with op(M)[r0 : r0 + rows, c0 : c0 + cols] as an Eigen expression, for M stored
// row-major with leading dimension ld, or stored transposed (trans).
template <class F>
void with_block(const float* m, int64_t ld, bool trans, int64_t r0, int64_t rows, int64_t c0,
                int64_t cols, F&& f) {
  if (trans) {
    f(Strided(m + c0 * ld + r0, cols, rows, Eigen::OuterStride<>(ld)).transpose());
  } else {
    f(Strided(m + r0 * ld + c0, rows, cols, Eigen::OuterStride<>(ld)));
  }
}

// One output tile: rows [i0, i0 + mt), columns [j0, j0 + nt). p, acc and sbv are scratch of at
// least kTileM * kTileN, kTileM * kTileN and kTileN floats.
void gemm_tile(const BlockScaledGemm& g, int64_t i0, int64_t mt, int64_t j0, int64_t nt, float* p,
               float* acc, float* sbv) {
  const int64_t blocks = (g.kd + kFp8Tile - 1) / kFp8Tile;
  if (blocks == 0) std::fill(acc, acc + mt * nt, 0.0f);
  for (int64_t kb = 0; kb < blocks; ++kb) {
    const int64_t k0 = kb * kFp8Tile, kl = std::min(kFp8Tile, g.kd - k0);
    MatMap<float> pm(p, mt, nt);
    with_block(g.a, g.lda, g.a_trans, i0, mt, k0, kl, [&](const auto& a) {
      with_block(g.b, g.ldb, g.b_trans, k0, kl, j0, nt,
                 [&](const auto& b) { pm.noalias() = a * b; });
    });
    for (int64_t j = 0; j < nt; ++j) sbv[j] = g.sb[kb * g.sb_k + ((j0 + j) >> g.sb_shift) * g.sb_j];
    for (int64_t i = 0; i < mt; ++i) {
      const float sa = g.sa[(i0 + i) * g.sa_i + kb * g.sa_k];
      const float* pr = p + i * nt;
      float* ar = acc + i * nt;
      if (kb == 0) {
        for (int64_t j = 0; j < nt; ++j) ar[j] = (sa * sbv[j]) * pr[j];
      } else {
        for (int64_t j = 0; j < nt; ++j) ar[j] += (sa * sbv[j]) * pr[j];
      }
    }
  }
  for (int64_t i = 0; i < mt; ++i) {
    const float* ar = acc + i * nt;
    float* cr = g.c + (i0 + i) * g.ldc + j0;
    if (g.accumulate) {
      for (int64_t j = 0; j < nt; ++j) cr[j] += ar[j];
    } else if (g.beta == 0.0f) {  // beta = 0 never reads C: it may hold NaN
      for (int64_t j = 0; j < nt; ++j) cr[j] = ar[j];
    } else {
      for (int64_t j = 0; j < nt; ++j) cr[j] = ar[j] + g.beta * cr[j];
    }
  }
}

std::unique_ptr<float[]> uninitialized(int64_t n) {
  return std::unique_ptr<float[]>(new float[static_cast<size_t>(n)]);
}

// Decoded copy of codes [rows, cols] starting at row r0 (of a tensor of `cols` columns).
std::unique_ptr<float[]> decode_rows(const Tensor& codes, int64_t r0, int64_t rows, int threads) {
  const int64_t cols = codes.cols();
  auto out = uninitialized(rows * cols);
  fp8_decode(static_cast<const uint8_t*>(codes.data) + r0 * cols, fp8_table(codes.dtype), out.get(),
             rows * cols, threads);
  return out;
}

// Pointers of one (sub)problem: decoded activation-side operand a, weight-side operand b, their
// scales, the output.
struct Operands {
  const float *a, *sa, *b, *sb;
  float* c;
};

// The block-scaled GEMM of one problem of `kind` with m activation rows and weight dims [n, k]:
// forward  C[m, n] = A[m, k] B[n, k]^T  (A 1x128 tiles, B 128x128 blocks)
// dgrad    C[m, k] = A[m, n] B[n, k]    (A 1x128 tiles along n, B 128x128 blocks)
// wgrad    C[n, k] += A[m, n]^T B[m, k] (both 128x1 tiles along m)
BlockScaledGemm problem(Fp8GemmKind kind, int64_t m, int64_t n, int64_t k, const Operands& o) {
  const int64_t nb = (n + kFp8Tile - 1) / kFp8Tile, kb = (k + kFp8Tile - 1) / kFp8Tile;
  BlockScaledGemm g;
  g.a = o.a;
  g.b = o.b;
  g.sa = o.sa;
  g.sb = o.sb;
  g.c = o.c;
  switch (kind) {
    case Fp8GemmKind::forward:
      g.m = m, g.n = n, g.kd = k, g.lda = k, g.ldb = k, g.b_trans = true;
      g.sa_i = kb, g.sa_k = 1, g.sb_k = 1, g.sb_j = kb, g.sb_shift = 7, g.ldc = n;
      break;
    case Fp8GemmKind::dgrad:
      g.m = m, g.n = k, g.kd = n, g.lda = n, g.ldb = k;
      g.sa_i = nb, g.sa_k = 1, g.sb_k = kb, g.sb_j = 1, g.sb_shift = 7, g.ldc = k;
      break;
    case Fp8GemmKind::wgrad:
      g.m = n, g.n = k, g.kd = m, g.lda = n, g.a_trans = true, g.ldb = k;
      g.sa_i = 1, g.sa_k = n, g.sb_k = k, g.sb_j = 1, g.sb_shift = 0, g.ldc = k;
      g.accumulate = true;
      break;
  }
  return g;
}

// Weight dims [n, k] of a problem: from the weight (forward, dgrad) or the operands (wgrad).
std::pair<int64_t, int64_t> weight_dims(Fp8GemmKind kind, const Fp8Tensor& a, const Fp8Tensor& b) {
  if (kind == Fp8GemmKind::wgrad) return {a.codes.cols(), b.codes.cols()};
  return {b.codes.size(-2), b.codes.cols()};
}

}  // namespace

void block_scaled_gemm(const BlockScaledGemm& g, int threads) {
  const int64_t tm = (g.m + kTileM - 1) / kTileM, tn = (g.n + kTileN - 1) / kTileN;
  const int64_t tiles = tm * tn;
  const int team = omp_in_parallel() ? 1 : static_cast<int>(std::min<int64_t>(threads, tiles));
  auto run = [&](int64_t t0, int64_t step) {
    auto p = uninitialized(kTileM * kTileN), acc = uninitialized(kTileM * kTileN);
    auto sbv = uninitialized(kTileN);
    for (int64_t t = t0; t < tiles; t += step) {
      const int64_t i0 = (t / tn) * kTileM, j0 = (t % tn) * kTileN;
      gemm_tile(g, i0, std::min(kTileM, g.m - i0), j0, std::min(kTileN, g.n - j0), p.get(),
                acc.get(), sbv.get());
    }
  };
  if (team <= 1) {
    run(0, 1);  // outside a parallel region Eigen may still split each block product
    return;
  }
#pragma omp parallel num_threads(team)
  run(omp_get_thread_num(), omp_get_num_threads());
}

void fp8_gemm(Fp8GemmKind kind, const Fp8Tensor& a, const Fp8Tensor& b, float* c, float beta,
              int threads) {
  const int64_t m = a.codes.rows();
  const auto [n, k] = weight_dims(kind, a, b);
  auto ad = decode_rows(a.codes, 0, m, threads);
  auto bd = decode_rows(b.codes, 0, b.codes.rows(), threads);
  BlockScaledGemm g =
      problem(kind, m, n, k, {ad.get(), a.scales.ptr<float>(), bd.get(), b.scales.ptr<float>(), c});
  g.beta = beta;
  block_scaled_gemm(g, threads);
}

void fp8_grouped_gemm(Fp8GemmKind kind, const Fp8Tensor& a, const Fp8Tensor& b,
                      const int32_t* offsets, int experts, float* c, float beta, int threads) {
  const auto [n, k] = weight_dims(kind, a, b);
  const float* sa = a.scales.ptr<float>();
  const float* sb = b.scales.ptr<float>();
  const int64_t sa_cols = a.scales.cols(), sb_cols = b.scales.cols();
  auto job = [&](int e) {
    const int team = omp_in_parallel() ? 1 : threads;
    const int64_t r0 = offsets[e], rows = offsets[e + 1] - offsets[e];
    auto ad = decode_rows(a.codes, r0, rows, team);
    Operands o{ad.get(), nullptr, nullptr, nullptr, nullptr};
    std::unique_ptr<float[]> bd;
    if (kind == Fp8GemmKind::wgrad) {
      // Both operands are this segment's rows, their scales this segment's tile rows.
      const int64_t s0 = segment_scale_row0(offsets, e);
      bd = decode_rows(b.codes, r0, rows, team);
      o.sa = sa + s0 * sa_cols;
      o.sb = sb + s0 * sb_cols;
      o.c = c + e * n * k;
    } else {
      // Expert e's weight [n, k] and its blocks; the segment's rows of the activation side.
      bd = decode_rows(b.codes, e * n, n, team);
      o.sa = sa + r0 * sa_cols;
      o.sb = sb + e * b.scales.size(-2) * sb_cols;
      o.c = c + r0 * (kind == Fp8GemmKind::forward ? n : k);
    }
    o.b = bd.get();
    BlockScaledGemm g = problem(kind, rows, n, k, o);
    g.beta = beta;
    block_scaled_gemm(g, team);
  };
  schedule_segments(experts, offsets, threads, job);
}

}  // namespace kernels::cpu
