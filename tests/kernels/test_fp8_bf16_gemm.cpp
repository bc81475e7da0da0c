// The BF16 GEMMs (kernels/bf16_ops.hpp): bit-equal to the FP32 GEMM on BF16-rounded operands for
// every layout, bf16-stored operands equal rounded f32 ones, float64 accuracy (DeepGEMM's metric,
// far tighter than FP8's) for the three GEMMs of a Linear and the grouped forms, and cast().
#include <cmath>
#include <cstdint>
#include <vector>

#include "common/gradcheck.hpp"
#include "core/error.hpp"
#include "fp8_testing.hpp"
#include "kernels/bf16_ops.hpp"
#include "kernels/fp8_format.hpp"
#include "kernels/moe_ops.hpp"
#include "kernels/ops.hpp"

using core::DType;
using core::Tensor;
using fp8_testing::gemm_diff;
using fp8_testing::ref_gemm;

namespace {

using Vec = std::vector<float>;

Vec rounded(const Vec& v) {
  Vec r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = kernels::round_bf16(v[i]);
  return r;
}

std::vector<uint16_t> as_bf16(const Vec& v) {
  std::vector<uint16_t> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = core::f32_to_bf16(v[i]);
  return r;
}

}  // namespace

TEST_CASE("bf16 gemm is the fp32 gemm of bf16-rounded operands, for every layout", "[fp8]") {
  const int64_t M = 70, N = 90, K = 130;
  const Vec a = testing::random_vector<float>(M * K, 1),
            b = testing::random_vector<float>(K * N, 2);
  const Vec ar = rounded(a), br = rounded(b);
  const auto a16 = as_bf16(a), b16 = as_bf16(b);
  core::Context ctx;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      INFO("trans_a " << ta << " trans_b " << tb);
      auto shape_a = [&](const void* p, DType t) {
        return ta ? Tensor(const_cast<void*>(p), t, {K, M})
                  : Tensor(const_cast<void*>(p), t, {M, K});
      };
      auto shape_b = [&](const void* p, DType t) {
        return tb ? Tensor(const_cast<void*>(p), t, {N, K})
                  : Tensor(const_cast<void*>(p), t, {K, N});
      };
      const Vec c0 = testing::random_vector<float>(M * N, 3);
      Vec want = c0, got = c0, got16 = c0;
      kernels::gemm(ctx, shape_a(ar.data(), DType::f32), ta, shape_b(br.data(), DType::f32), tb,
                    Tensor::of(want.data(), {M, N}), 0.5, 0.25);
      kernels::gemm_bf16(ctx, shape_a(a.data(), DType::f32), ta, shape_b(b.data(), DType::f32), tb,
                         Tensor::of(got.data(), {M, N}), 0.5, 0.25);
      kernels::gemm_bf16(ctx, shape_a(a16.data(), DType::bf16), ta,
                         shape_b(b16.data(), DType::bf16), tb, Tensor::of(got16.data(), {M, N}),
                         0.5, 0.25);
      CHECK(got == want);
      CHECK(got16 == want);
    }
}

TEST_CASE("bf16 GEMMs of a Linear and of experts are close to float64", "[fp8]") {
  const int64_t M = 300, N = 200, K = 520;
  const Vec x = testing::random_vector<float>(M * K, 4),
            w = testing::random_vector<float>(N * K, 5);
  const Vec dy = testing::random_vector<float>(M * N, 6);
  core::Context ctx;
  ctx.threads = 2;
  Vec y(M * N), dx(M * K), dw(N * K, 0.0f);
  kernels::gemm_bf16(ctx, Tensor::of(x.data(), {M, K}), false, Tensor::of(w.data(), {N, K}), true,
                     Tensor::of(y.data(), {M, N}));
  kernels::gemm_bf16(ctx, Tensor::of(dy.data(), {M, N}), false, Tensor::of(w.data(), {N, K}), false,
                     Tensor::of(dx.data(), {M, K}));
  kernels::gemm_bf16(ctx, Tensor::of(dy.data(), {M, N}), true, Tensor::of(x.data(), {M, K}), false,
                     Tensor::of(dw.data(), {N, K}), 1.0, 1.0);
  const double d_fwd = gemm_diff(ref_gemm(x, false, w, true, M, N, K), y);
  const double d_dgrad = gemm_diff(ref_gemm(dy, false, w, false, M, K, N), dx);
  const double d_wgrad = gemm_diff(ref_gemm(dy, true, x, false, N, K, M), dw);
  INFO("diff forward " << d_fwd << ", dgrad " << d_dgrad << ", wgrad " << d_wgrad);
  CHECK(d_fwd < 2e-5);
  CHECK(d_dgrad < 2e-5);
  CHECK(d_wgrad < 2e-5);
  CHECK(d_fwd > 0.0);  // the operands really were rounded

  // grouped: segments of 130, 0 and 170 rows
  const std::vector<int32_t> off = {0, 130, 130, 300};
  const int64_t E = 3;
  const Vec we = testing::random_vector<float>(E * N * K, 7);
  const Tensor offsets = Tensor::of(off.data(), {E + 1});
  Vec gy(M * N), gdx(M * K), gdw(E * N * K, 0.0f);
  kernels::grouped_gemm_bf16(ctx, Tensor::of(x.data(), {M, K}), Tensor::of(we.data(), {E, N, K}),
                             true, offsets, Tensor::of(gy.data(), {M, N}));
  kernels::grouped_gemm_bf16(ctx, Tensor::of(dy.data(), {M, N}), Tensor::of(we.data(), {E, N, K}),
                             false, offsets, Tensor::of(gdx.data(), {M, K}));
  kernels::grouped_gemm_wgrad_bf16(ctx, Tensor::of(dy.data(), {M, N}), Tensor::of(x.data(), {M, K}),
                                   offsets, Tensor::of(gdw.data(), {E, N, K}));
  for (int64_t e : {0, 2}) {
    const int64_t r0 = off[e], m = off[e + 1] - off[e];
    const Vec xe(x.begin() + r0 * K, x.begin() + (r0 + m) * K);
    const Vec dye(dy.begin() + r0 * N, dy.begin() + (r0 + m) * N);
    const Vec wexp(we.begin() + e * N * K, we.begin() + (e + 1) * N * K);
    CHECK(gemm_diff(ref_gemm(xe, false, wexp, true, m, N, K),
                    Vec(gy.begin() + r0 * N, gy.begin() + (r0 + m) * N)) < 2e-5);
    CHECK(gemm_diff(ref_gemm(dye, false, wexp, false, m, K, N),
                    Vec(gdx.begin() + r0 * K, gdx.begin() + (r0 + m) * K)) < 2e-5);
    CHECK(gemm_diff(ref_gemm(dye, true, xe, false, N, K, m),
                    Vec(gdw.begin() + e * N * K, gdw.begin() + (e + 1) * N * K)) < 2e-5);
  }
  bool untouched = true;  // the empty expert's gradient is skipped
  for (int64_t i = N * K; i < 2 * N * K; ++i) untouched &= gdw[i] == 0.0f;
  CHECK(untouched);
}

TEST_CASE("cast converts f32 <-> bf16 and rejects other pairs", "[fp8]") {
  core::Context ctx;
  const Vec x = {1.0f, 1.00390625f, -3.3f, 1e-3f};  // 1 + 2^-8 ties to 1
  std::vector<uint16_t> h(4);
  Vec back(4);
  kernels::cast(ctx, Tensor::of(x.data(), {4}), Tensor(h.data(), DType::bf16, {4}));
  kernels::cast(ctx, Tensor(h.data(), DType::bf16, {4}), Tensor::of(back.data(), {4}));
  CHECK(back == rounded(x));
  CHECK(back[1] == 1.0f);
  std::vector<double> d(4);
  CHECK_THROWS_AS(kernels::cast(ctx, Tensor::of(x.data(), {4}), Tensor::of(d.data(), {4})),
                  core::InternalError);
  CHECK_THROWS_AS(
      kernels::gemm_bf16(ctx, Tensor::of(d.data(), {2, 2}), false, Tensor::of(x.data(), {2, 2}),
                         false, Tensor::of(back.data(), {2, 2})),
      core::InternalError);
}
