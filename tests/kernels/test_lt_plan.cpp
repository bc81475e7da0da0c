// GEMM plans for cuBLASLt (kernels/lt_plan.hpp), checked on the CPU: every plan is fed through
// lt_reference (what cuBLASLt computes from a plan, per its documented column-major and scale
// layouts) with operands laid out exactly as the CUDA path hands them to cuBLASLt (codes
// transposed where the plan says, scales repacked), and the result must equal the CPU op's. This
// covers the row-major mapping, leading dimensions, transposes and the VEC128 / BLK128x128 scale
// layouts before any GPU runs them.
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "common/gradcheck.hpp"
#include "core/context.hpp"
#include "fp8_testing.hpp"
#include "kernels/fp8_format.hpp"
#include "kernels/fp8_ops.hpp"
#include "kernels/lt_plan.hpp"
#include "kernels/ops.hpp"

using namespace fp8_testing;
using kernels::lt::Fp8Kind;
using kernels::lt::LtType;
using kernels::lt::ScaleMode;

namespace {

using Vec = std::vector<float>;

// max |got - want| over max |want|.
double rel_error(const Vec& got, const Vec& want) {
  double peak = 0, worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    peak = std::max(peak, std::fabs(double(want[i])));
    worst = std::max(worst, std::fabs(double(got[i]) - double(want[i])));
  }
  return peak > 0 ? worst / peak : worst;
}

Vec decoded(const QBuf& b) {
  Vec v(b.codes.size());
  for (size_t i = 0; i < v.size(); ++i) v[i] = kernels::fp8_table(b.q.codes.dtype)[b.codes[i]];
  return v;
}

// The operand as cuBLASLt gets it: the stored [rows, cols] code matrix, transposed if asked.
Vec as_source(const kernels::lt::CodeSource& s, const Vec& stored) {
  REQUIRE(int64_t(stored.size()) == s.rows * s.cols);
  if (!s.transpose) return stored;
  Vec t(stored.size());
  for (int64_t r = 0; r < s.rows; ++r)
    for (int64_t c = 0; c < s.cols; ++c) t[c * s.rows + r] = stored[r * s.cols + c];
  return t;
}

Vec repacked(const kernels::lt::ScaleRepack& r, const std::vector<float>& src) {
  Vec dst(size_t(r.dst_count));
  kernels::lt::apply_repack(r, src.data(), dst.data());
  return dst;
}

QBuf quantized(Fp8Tiling tiling, int64_t rows, int64_t cols, uint64_t seed) {
  core::Context ctx;
  Vec x = testing::random_vector<float>(size_t(rows * cols), seed, 2.0);
  for (int64_t r = 0; r < rows; r += 5) x[r * cols] *= 50.0f;  // outliers: scales differ by tile
  QBuf b(DType::e4m3, tiling, rows, cols);
  kernels::fp8_quantize(ctx, Tensor::of(x.data(), {rows, cols}), b.q);
  return b;
}

// Runs one FP8 GEMM on the CPU and through plan + lt_reference; returns the relative difference.
double fp8_plan_error(Fp8Kind kind, int64_t M, int64_t N, int64_t K) {
  core::Context ctx;
  const auto plan = kernels::lt::plan_fp8(kind, M, N, K, LtType::e4m3, LtType::e4m3);
  const Fp8Tiling act = kind == Fp8Kind::wgrad ? Fp8Tiling::col_128x1 : Fp8Tiling::row_1x128;
  // The call's operands a (activation side) and b (weight side, x for wgrad).
  const int64_t a_cols = kind == Fp8Kind::forward ? K : N;
  QBuf a = quantized(act, M, a_cols, 11);
  QBuf b = kind == Fp8Kind::wgrad ? quantized(Fp8Tiling::col_128x1, M, K, 12)
                                  : quantized(Fp8Tiling::block_128x128, N, K, 13);
  const int64_t out_rows = kind == Fp8Kind::wgrad ? N : M;
  const int64_t out_cols = kind == Fp8Kind::forward ? N : K;
  Vec start = testing::random_vector<float>(size_t(out_rows * out_cols), 14);
  Vec want = start, got = start;
  Tensor out = Tensor::of(want.data(), {out_rows, out_cols});
  if (kind == Fp8Kind::forward) kernels::fp8_gemm_forward(ctx, a.q, b.q, out);
  if (kind == Fp8Kind::dgrad) kernels::fp8_gemm_dgrad(ctx, a.q, b.q, out);
  if (kind == Fp8Kind::wgrad) kernels::fp8_gemm_wgrad(ctx, a.q, b.q, out);

  const QBuf& src_a = plan.codes_a.from_a ? a : b;
  const QBuf& src_b = plan.codes_b.from_a ? a : b;
  const Vec A = as_source(plan.codes_a, decoded(src_a));
  const Vec B = as_source(plan.codes_b, decoded(src_b));
  const Vec sa = repacked(plan.repack_a, src_a.scales);
  const Vec sb = repacked(plan.repack_b, src_b.scales);
  REQUIRE(int64_t(sa.size()) == plan.gemm.scale_a.count());
  REQUIRE(int64_t(sb.size()) == plan.gemm.scale_b.count());
  kernels::lt::lt_reference(plan.gemm, A.data(), B.data(), sa.data(), sb.data(), 1.0,
                            plan.accumulate ? 1.0 : 0.0, got.data());
  return rel_error(got, want);
}

}  // namespace

TEST_CASE("lt plan: row-major GEMMs map onto cuBLASLt's column-major problem", "[lt_plan]") {
  core::Context ctx;
  const int64_t M = 37, N = 53, K = 29;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      Vec A = testing::random_vector<float>(size_t(M * K), 1);
      Vec B = testing::random_vector<float>(size_t(K * N), 2);
      Vec C0 = testing::random_vector<float>(size_t(M * N), 3);
      Vec want = C0, got = C0;
      const Tensor At = ta ? Tensor::of(A.data(), {K, M}) : Tensor::of(A.data(), {M, K});
      const Tensor Bt = tb ? Tensor::of(B.data(), {N, K}) : Tensor::of(B.data(), {K, N});
      kernels::gemm(ctx, At, ta, Bt, tb, Tensor::of(want.data(), {M, N}), 0.5, 0.25);
      const auto p = kernels::lt::plan_rowmajor(LtType::f32, LtType::f32, M, N, K, ta, tb);
      CHECK(p.m == N);
      CHECK(p.n == M);
      CHECK(p.k == K);
      CHECK(p.c.ld == N);
      kernels::lt::lt_reference(p, B.data(), A.data(), nullptr, nullptr, 0.5, 0.25, got.data());
      INFO("trans_a " << ta << " trans_b " << tb);
      CHECK(rel_error(got, want) < 1e-5);
    }
}

TEST_CASE("lt plan: FP8 forward, dgrad and wgrad plans reproduce the CPU emulation",
          "[lt_plan][fp8]") {
  // Multiples of 128, of 16 only, and ragged sizes (the SIMT fallback's shapes, same layouts).
  const std::vector<std::array<int64_t, 3>> shapes = {
      {256, 256, 384}, {64, 128, 512}, {200, 136, 264}, {1, 16, 130}, {130, 300, 70}};
  for (Fp8Kind kind : {Fp8Kind::forward, Fp8Kind::dgrad, Fp8Kind::wgrad})
    for (const auto& s : shapes) {
      INFO(kernels::lt::fp8_kind_name(kind) << " M " << s[0] << " N " << s[1] << " K " << s[2]);
      CHECK(fp8_plan_error(kind, s[0], s[1], s[2]) < 2e-6);
    }
}

TEST_CASE("lt plan: scale layouts are cuBLASLt's (outer-dim-major VEC128, padded BLK128x128)",
          "[lt_plan][fp8]") {
  // forward with K = 300 (3 reduction blocks) and N = 200 (2 blocks), M = 7 rows.
  const auto f = kernels::lt::plan_fp8(Fp8Kind::forward, 7, 200, 300, LtType::e4m3, LtType::e4m3);
  CHECK(f.gemm.trans_a);
  CHECK_FALSE(f.gemm.trans_b);
  CHECK(f.gemm.scale_a.mode == ScaleMode::blk128x128);
  CHECK(f.gemm.scale_a.ld == 4);  // 3 blocks rounded up to 16 bytes
  CHECK(f.gemm.scale_a.count() == 8);
  CHECK(f.gemm.scale_a.index(2, 1) == 6);
  CHECK(f.gemm.scale_b.mode == ScaleMode::vec128);
  CHECK(f.gemm.scale_b.count() == 21);
  CHECK(f.gemm.scale_b.index(1, 5) == 12);  // row 5, block 1: 5 + 1 * 7
  // W scales [2, 3] -> [2 outer][4], padding zero; X scales [7, 3] -> [3][7].
  std::vector<float> w = {1, 2, 3, 4, 5, 6};
  CHECK(repacked(f.repack_a, w) == Vec{1, 2, 3, 0, 4, 5, 6, 0});
  std::vector<float> x(21);
  for (int i = 0; i < 21; ++i) x[i] = float(i);  // (m, kb) = 3 m + kb
  const Vec xs = repacked(f.repack_b, x);
  CHECK(xs[5 + 1 * 7] == 3 * 5 + 1);
  CHECK_FALSE(f.repack_b.identity());
  // wgrad's 128x1 scales already are cuBLASLt's VEC128 along M.
  const auto w8 = kernels::lt::plan_fp8(Fp8Kind::wgrad, 300, 64, 32, LtType::e4m3, LtType::e4m3);
  CHECK(w8.repack_a.identity());
  CHECK(w8.repack_b.identity());
  CHECK(w8.accumulate);
  CHECK(w8.codes_a.transpose);
  CHECK(w8.codes_b.transpose);
}

TEST_CASE("lt plan: cuBLASLt FP8 eligibility and scratch sizes", "[lt_plan][fp8]") {
  using kernels::lt::fp8_lt_supported;
  using kernels::lt::plan_fp8;
  const auto ok = plan_fp8(Fp8Kind::forward, 256, 512, 384, LtType::e4m3, LtType::e4m3);
  CHECK(fp8_lt_supported(ok.gemm, 256));
  CHECK_FALSE(fp8_lt_supported(ok.gemm, 8));  // a pointer only 8-byte aligned
  CHECK_FALSE(fp8_lt_supported(
      plan_fp8(Fp8Kind::forward, 256, 512, 130, LtType::e4m3, LtType::e4m3).gemm, 256));
  CHECK_FALSE(fp8_lt_supported(
      plan_fp8(Fp8Kind::forward, 256, 512, 384, LtType::e5m2, LtType::e5m2).gemm, 256));
  CHECK(fp8_lt_supported(plan_fp8(Fp8Kind::dgrad, 256, 512, 384, LtType::e5m2, LtType::e4m3).gemm,
                         256));
  // forward: W scales 3 blocks -> ld 4 x 4 outer = 16 floats (256 B), X scales 3 x 256 (3 KiB).
  CHECK(ok.scratch_bytes() == 256 + 3072);
  // dgrad adds W^T (512 x 384 codes).
  const auto dg = plan_fp8(Fp8Kind::dgrad, 256, 512, 384, LtType::e4m3, LtType::e4m3);
  CHECK(dg.scratch_bytes() == 512 * 384 + 256 + 4 * 256 * 4);
  // wgrad transposes both code matrices and keeps the scales.
  const auto wg = plan_fp8(Fp8Kind::wgrad, 256, 512, 384, LtType::e4m3, LtType::e4m3);
  CHECK(wg.scratch_bytes() == 256 * 512 + 256 * 384);
  CHECK(ok.gemm.key(false, 256) != ok.gemm.key(true, 256));
  CHECK(ok.gemm.key(false, 256) != ok.gemm.key(false, 16));
  CHECK(kernels::lt::pointer_alignment(
            {reinterpret_cast<void*>(4096), reinterpret_cast<void*>(4096 + 48)}) == 16);
}
