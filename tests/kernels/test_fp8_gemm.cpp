// The FP8 GEMMs (kernels/fp8_ops.hpp): forward, data gradient and weight gradient, dense and
// grouped over experts (ragged segments, an empty expert, partial tiles everywhere), against
// (1) float64 products of the unquantized operands with DeepGEMM's metric (< 1e-3), and
// (2) float64 products of the dequantized operands, which the emulation must match up to FP32
// accumulation; plus a case small enough to work out by hand, beta / accumulate semantics and
// the argument checks.
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "common/gradcheck.hpp"
#include "core/error.hpp"
#include "fp8_testing.hpp"
#include "kernels/fp8_ops.hpp"

using namespace fp8_testing;

namespace {

using Vec = std::vector<float>;

// Random operand with rows of different magnitudes (activations have outlier tokens).
Vec operand(int64_t rows, int64_t cols, uint64_t seed, double amp = 1.0) {
  Vec v = testing::random_vector<float>(size_t(rows * cols), seed, amp);
  for (int64_t r = 0; r < rows; r += 7)
    for (int64_t c = 0; c < cols; ++c) v[r * cols + c] *= 8.0f;
  return v;
}

Vec dequantized(const QBuf& b, const std::vector<int32_t>& offsets = {}) {
  core::Context ctx;
  Vec x(b.codes.size());
  Tensor t = b.q.codes;
  t.data = x.data();
  t.dtype = DType::f32;
  if (offsets.empty()) {
    kernels::fp8_dequantize(ctx, b.q, t);
  } else {
    kernels::fp8_dequantize_segments(ctx, b.q,
                                     Tensor::of(offsets.data(), {int64_t(offsets.size())}), t);
  }
  return x;
}

// got must match the float64 product of the dequantized operands up to FP32 accumulation.
void check_emulation(const Vec& got, const std::vector<double>& want) {
  double peak = 0, worst = 0;
  for (size_t i = 0; i < want.size(); ++i) peak = std::max(peak, std::fabs(want[i]));
  for (size_t i = 0; i < want.size(); ++i) {
    const double e = std::fabs(double(got[i]) - want[i]);
    if (!(e <= worst)) worst = e;
  }
  INFO("worst |emulation - fp64(dequantized)| " << worst << " of peak " << peak);
  CHECK(worst <= 1e-5 * peak);
}

void check_accuracy(const char* what, const Vec& got, const std::vector<double>& want) {
  const double diff = gemm_diff(want, got);
  INFO(what << ": DeepGEMM diff " << diff);
  CHECK(diff < 1e-3);
  CHECK(diff >= 0.0);
}

std::vector<int32_t> offsets_of(const std::vector<int32_t>& counts) {
  std::vector<int32_t> o(counts.size() + 1, 0);
  for (size_t e = 0; e < counts.size(); ++e) o[e + 1] = o[e] + counts[e];
  return o;
}

}  // namespace

TEST_CASE("fp8 dense GEMMs match float64 within DeepGEMM's bound and emulate exactly", "[fp8]") {
  const int64_t M = 300, N = 200, K = 520;
  const Vec x = operand(M, K, 1), w = operand(N, K, 2, 0.05), dy = operand(M, N, 3);
  core::Context ctx;
  std::vector<Vec> results;  // per thread count: y, dx, dw
  for (int threads : {1, 2}) {
    INFO("threads " << threads);
    ctx.threads = threads;
    QBuf xq(DType::e4m3, Fp8Tiling::row_1x128, M, K),
        wq(DType::e4m3, Fp8Tiling::block_128x128, N, K);
    QBuf dyq(DType::e4m3, Fp8Tiling::row_1x128, M, N);
    kernels::fp8_quantize(ctx, Tensor::of(x.data(), {M, K}), xq.q);
    kernels::fp8_quantize(ctx, Tensor::of(w.data(), {N, K}), wq.q);
    kernels::fp8_quantize(ctx, Tensor::of(dy.data(), {M, N}), dyq.q);
    const Vec xd = dequantized(xq), wd = dequantized(wq), dyd = dequantized(dyq);

    Vec y(M * N, std::numeric_limits<float>::quiet_NaN());  // beta = 0 must not read it
    kernels::fp8_gemm_forward(ctx, xq.q, wq.q, Tensor::of(y.data(), {M, N}));
    check_accuracy("forward", y, ref_gemm(x, false, w, true, M, N, K));
    check_emulation(y, ref_gemm(xd, false, wd, true, M, N, K));

    Vec dx(M * K, std::numeric_limits<float>::quiet_NaN());
    kernels::fp8_gemm_dgrad(ctx, dyq.q, wq.q, Tensor::of(dx.data(), {M, K}));
    check_accuracy("dgrad", dx, ref_gemm(dy, false, w, false, M, K, N));
    check_emulation(dx, ref_gemm(dyd, false, wd, false, M, K, N));

    QBuf dyc(DType::e4m3, Fp8Tiling::col_128x1, M, N), xc(DType::e4m3, Fp8Tiling::col_128x1, M, K);
    kernels::fp8_quantize(ctx, Tensor::of(dy.data(), {M, N}), dyc.q);
    kernels::fp8_quantize(ctx, Tensor::of(x.data(), {M, K}), xc.q);
    const Vec g0 = testing::random_vector<float>(size_t(N * K), 4);
    Vec dw = g0;
    kernels::fp8_gemm_wgrad(ctx, dyc.q, xc.q, Tensor::of(dw.data(), {N, K}));
    Vec added(N * K);
    for (int64_t i = 0; i < N * K; ++i) added[i] = dw[i] - g0[i];
    check_accuracy("wgrad", added, ref_gemm(dy, true, x, false, N, K, M));
    auto want = ref_gemm(dequantized(dyc), true, dequantized(xc), false, N, K, M);
    for (int64_t i = 0; i < N * K; ++i) want[i] += g0[i];
    check_emulation(dw, want);
    results.insert(results.end(), {y, dx, dw});
  }
  // Tiles, not threads, fix every summation: the results do not depend on the thread count.
  for (size_t i = 0; i < 3; ++i) CHECK(results[i] == results[i + 3]);
}

TEST_CASE("fp8 forward and dgrad honour beta", "[fp8]") {
  const int64_t M = 130, N = 140, K = 150;
  const Vec x = operand(M, K, 5), w = operand(N, K, 6), dy = operand(M, N, 8);
  core::Context ctx;
  QBuf xq(DType::e4m3, Fp8Tiling::row_1x128, M, K), wq(DType::e4m3, Fp8Tiling::block_128x128, N, K);
  QBuf dyq(DType::e4m3, Fp8Tiling::row_1x128, M, N);
  kernels::fp8_quantize(ctx, Tensor::of(x.data(), {M, K}), xq.q);
  kernels::fp8_quantize(ctx, Tensor::of(w.data(), {N, K}), wq.q);
  kernels::fp8_quantize(ctx, Tensor::of(dy.data(), {M, N}), dyq.q);
  // out = acc + beta * out, against the same product written with beta = 0
  const Vec y0 = testing::random_vector<float>(size_t(M * N), 7);
  Vec y = y0, fresh_y(M * N);
  kernels::fp8_gemm_forward(ctx, xq.q, wq.q, Tensor::of(y.data(), {M, N}), 0.5);
  kernels::fp8_gemm_forward(ctx, xq.q, wq.q, Tensor::of(fresh_y.data(), {M, N}));
  const Vec dx0 = testing::random_vector<float>(size_t(M * K), 9);
  Vec dx = dx0, fresh_dx(M * K);
  kernels::fp8_gemm_dgrad(ctx, dyq.q, wq.q, Tensor::of(dx.data(), {M, K}), 1.0);
  kernels::fp8_gemm_dgrad(ctx, dyq.q, wq.q, Tensor::of(fresh_dx.data(), {M, K}));
  size_t wrong = 0;
  for (int64_t i = 0; i < M * N; ++i) wrong += !(y[i] == fresh_y[i] + 0.5f * y0[i]);
  for (int64_t i = 0; i < M * K; ++i) wrong += !(dx[i] == fresh_dx[i] + dx0[i]);
  CHECK(wrong == 0);
}

TEST_CASE("fp8 GEMMs: a case worked out by hand", "[fp8]") {
  // X [2, 256]: row 0 is 2 on columns 0-127 and 1 on 128-255; row 1 is 0.5 then -0.5.
  // W [3, 256]: row 0 all 0.5; row 1 is 1 then -1; row 2 is 3 at column 0, else 0.
  // With power-of-two scales every value is exact in E4M3 (e.g. X row 0, first tile: amax 2,
  // 2 / 448 rounds up to 2^-7, code 2 / 2^-7 = 256; W's first block: amax 3 -> 2^-7, 3 -> 384),
  // so the emulation must give the exact products: first block of Y[0, 0]: codes 256 * 64
  // summed 128 times = 2^21, times 2^-7 * 2^-7 = 128; second block 64; total 192.
  const int64_t M = 2, N = 3, K = 256;
  Vec x(M * K), w(N * K, 0.0f);
  for (int64_t k = 0; k < K; ++k) {
    x[k] = k < 128 ? 2.0f : 1.0f;
    x[K + k] = k < 128 ? 0.5f : -0.5f;
    w[k] = 0.5f;
    w[K + k] = k < 128 ? 1.0f : -1.0f;
  }
  w[2 * K] = 3.0f;
  core::Context ctx;
  QBuf xq(DType::e4m3, Fp8Tiling::row_1x128, M, K), wq(DType::e4m3, Fp8Tiling::block_128x128, N, K);
  kernels::fp8_quantize(ctx, Tensor::of(x.data(), {M, K}), xq.q, true);
  kernels::fp8_quantize(ctx, Tensor::of(w.data(), {N, K}), wq.q, true);
  CHECK(xq.scales == Vec{0x1p-7f, 0x1p-8f, 0x1p-9f, 0x1p-9f});
  CHECK(wq.scales == Vec{0x1p-7f, 0x1p-8f});
  Vec y(M * N);
  kernels::fp8_gemm_forward(ctx, xq.q, wq.q, Tensor::of(y.data(), {M, N}));
  // Y[0] = {128*2*0.5 + 128*1*0.5, 128*2 - 128*1, 2*3}; Y[1] = {32 - 32, 64 + 64, 0.5*3}
  CHECK(y == Vec{192.0f, 128.0f, 6.0f, 0.0f, 128.0f, 1.5f});

  // dY [2, 3] = {{1, 0, 0.5}, {0, -1, 2}}: dX = dY W. dX[0] = W0 + 0.5 W2 = 2 at column 0, else
  // 0.5; dX[1] = -W1 + 2 W2 = 5 at column 0, -1 on 1-127, 1 on 128-255.
  const Vec dy = {1.0f, 0.0f, 0.5f, 0.0f, -1.0f, 2.0f};
  QBuf dyq(DType::e4m3, Fp8Tiling::row_1x128, M, N);
  kernels::fp8_quantize(ctx, Tensor::of(dy.data(), {M, N}), dyq.q, true);
  Vec dx(M * K);
  kernels::fp8_gemm_dgrad(ctx, dyq.q, wq.q, Tensor::of(dx.data(), {M, K}));
  size_t wrong = 0;
  for (int64_t k = 0; k < K; ++k) {
    wrong += dx[k] != (k == 0 ? 2.0f : 0.5f);
    wrong += dx[K + k] != (k == 0 ? 5.0f : k < 128 ? -1.0f : 1.0f);
  }
  CHECK(wrong == 0);

  // dW [3, 256] += dY^T X (one 128x1 tile of 2 rows per column): dW[0] = X0 = 2 | 1,
  // dW[1] = -X1 = -0.5 | 0.5, dW[2] = 0.5 X0 + 2 X1 = 2 | -0.5; on top of the 1 already there.
  QBuf dyc(DType::e4m3, Fp8Tiling::col_128x1, M, N), xc(DType::e4m3, Fp8Tiling::col_128x1, M, K);
  kernels::fp8_quantize(ctx, Tensor::of(dy.data(), {M, N}), dyc.q, true);
  kernels::fp8_quantize(ctx, Tensor::of(x.data(), {M, K}), xc.q, true);
  Vec dw(N * K, 1.0f);
  kernels::fp8_gemm_wgrad(ctx, dyc.q, xc.q, Tensor::of(dw.data(), {N, K}));
  wrong = 0;
  for (int64_t k = 0; k < K; ++k) {
    const bool lo = k < 128;
    wrong += dw[k] != 1.0f + (lo ? 2.0f : 1.0f);
    wrong += dw[K + k] != 1.0f + (lo ? -0.5f : 0.5f);
    wrong += dw[2 * K + k] != 1.0f + (lo ? 2.0f : -0.5f);
  }
  CHECK(wrong == 0);
}

TEST_CASE("fp8 grouped GEMMs: ragged experts, an empty one, both scheduling paths", "[fp8]") {
  // 428 rows: one segment above half of all rows (runs alone on all threads), the rest in the
  // expert-parallel loop; segment tiles of the weight gradient restart at 0, 130, 131, 388.
  const std::vector<int32_t> counts = {130, 0, 1, 257, 40}, off = offsets_of(counts);
  const int64_t E = 5, M = off.back(), N = 200, K = 300;
  const Vec x = operand(M, K, 11), w = operand(E * N, K, 12, 0.05), dy = operand(M, N, 13);
  const Tensor offsets = Tensor::of(off.data(), {E + 1});
  core::Context ctx;
  std::vector<Vec> results;  // per thread count: y, dx, dw
  for (int threads : {1, 2}) {
    INFO("threads " << threads);
    ctx.threads = threads;
    QBuf xq(DType::e4m3, Fp8Tiling::row_1x128, M, K), dyq(DType::e4m3, Fp8Tiling::row_1x128, M, N);
    QBuf wq = QBuf::experts(DType::e4m3, E, N, K);
    kernels::fp8_quantize(ctx, Tensor::of(x.data(), {M, K}), xq.q);
    kernels::fp8_quantize(ctx, Tensor::of(dy.data(), {M, N}), dyq.q);
    kernels::fp8_quantize(ctx, Tensor::of(w.data(), {E, N, K}), wq.q);
    QBuf dyc = QBuf::segments(DType::e4m3, M, N, E), xc = QBuf::segments(DType::e4m3, M, K, E);
    kernels::fp8_quantize_segments(ctx, Tensor::of(dy.data(), {M, N}), offsets, dyc.q);
    kernels::fp8_quantize_segments(ctx, Tensor::of(x.data(), {M, K}), offsets, xc.q);
    const Vec xd = dequantized(xq), dyd = dequantized(dyq), wd = dequantized(wq);
    const Vec dycd = dequantized(dyc, off), xcd = dequantized(xc, off);

    Vec y(M * N, std::numeric_limits<float>::quiet_NaN()), dx(M * K, 0.0f);
    const Vec g0 = testing::random_vector<float>(size_t(E * N * K), 14);
    Vec dw = g0;
    kernels::fp8_grouped_gemm_forward(ctx, xq.q, wq.q, offsets, Tensor::of(y.data(), {M, N}));
    kernels::fp8_grouped_gemm_dgrad(ctx, dyq.q, wq.q, offsets, Tensor::of(dx.data(), {M, K}));
    kernels::fp8_grouped_gemm_wgrad(ctx, dyc.q, xc.q, offsets, Tensor::of(dw.data(), {E, N, K}));

    for (int64_t e = 0; e < E; ++e) {
      INFO("expert " << e << " with " << counts[e] << " rows");
      const int64_t r0 = off[e], m = counts[e];
      auto rows = [&](const Vec& v, int64_t cols) {
        return Vec(v.begin() + r0 * cols, v.begin() + (r0 + m) * cols);
      };
      auto expert = [&](const Vec& v) {
        return Vec(v.begin() + e * N * K, v.begin() + (e + 1) * N * K);
      };
      Vec dwe = expert(dw);
      const Vec g0e = expert(g0);
      if (m == 0) {
        CHECK(dwe == g0e);  // skipped: nothing added
        continue;
      }
      if (m > 1) {  // one row is too few for a meaningful relative error
        check_accuracy("grouped forward", rows(y, N),
                       ref_gemm(rows(x, K), false, expert(w), true, m, N, K));
        check_accuracy("grouped dgrad", rows(dx, K),
                       ref_gemm(rows(dy, N), false, expert(w), false, m, K, N));
        Vec added(N * K);
        for (int64_t i = 0; i < N * K; ++i) added[i] = dwe[i] - g0e[i];
        check_accuracy("grouped wgrad", added,
                       ref_gemm(rows(dy, N), true, rows(x, K), false, N, K, m));
      }
      check_emulation(rows(y, N), ref_gemm(rows(xd, K), false, expert(wd), true, m, N, K));
      check_emulation(rows(dx, K), ref_gemm(rows(dyd, N), false, expert(wd), false, m, K, N));
      auto want = ref_gemm(rows(dycd, N), true, rows(xcd, K), false, N, K, m);
      for (int64_t i = 0; i < N * K; ++i) want[i] += g0e[i];
      check_emulation(dwe, want);
    }
    results.insert(results.end(), {y, dx, dw});
  }
  for (size_t i = 0; i < 3; ++i) CHECK(results[i] == results[i + 3]);
}

TEST_CASE("fp8 GEMMs reject wrong tilings, shapes and offsets", "[fp8]") {
  const int64_t M = 4, N = 3, K = 130;
  core::Context ctx;
  Vec x(M * K, 1.0f), w(N * K, 1.0f), y(M * N), dx(M * K), dw(N * K);
  QBuf xq(DType::e4m3, Fp8Tiling::row_1x128, M, K), wq(DType::e4m3, Fp8Tiling::block_128x128, N, K);
  QBuf xc(DType::e4m3, Fp8Tiling::col_128x1, M, K);
  kernels::fp8_quantize(ctx, Tensor::of(x.data(), {M, K}), xq.q);
  kernels::fp8_quantize(ctx, Tensor::of(w.data(), {N, K}), wq.q);
  kernels::fp8_quantize(ctx, Tensor::of(x.data(), {M, K}), xc.q);
  const Tensor ty = Tensor::of(y.data(), {M, N});
  kernels::fp8_gemm_forward(ctx, xq.q, wq.q, ty);  // the good call
  CHECK(y[0] == Approx(130.0).epsilon(1e-6));
  CHECK_THROWS_AS(kernels::fp8_gemm_forward(ctx, xc.q, wq.q, ty), core::InternalError);  // 128x1 x
  CHECK_THROWS_AS(kernels::fp8_gemm_forward(ctx, xq.q, xq.q, ty),
                  core::InternalError);  // w not blocks
  CHECK_THROWS_AS(kernels::fp8_gemm_forward(ctx, xq.q, wq.q, Tensor::of(y.data(), {N, M})),
                  core::InternalError);
  CHECK_THROWS_AS(kernels::fp8_gemm_dgrad(ctx, xq.q, wq.q, Tensor::of(dx.data(), {M, K})),
                  core::InternalError);  // dy would need N = 3 columns, has 130
  CHECK_THROWS_AS(kernels::fp8_gemm_wgrad(ctx, xq.q, xc.q, Tensor::of(dw.data(), {N, K})),
                  core::InternalError);        // dy must be 128x1-tiled
  const std::vector<int32_t> off = {0, 2, 5};  // ends past M = 4
  QBuf we = QBuf::experts(DType::e4m3, 2, N, K);
  kernels::fp8_quantize(ctx, Tensor::of(std::vector<float>(2 * N * K, 1.0f).data(), {2, N, K}),
                        we.q);
  CHECK_THROWS_AS(
      kernels::fp8_grouped_gemm_forward(ctx, xq.q, we.q, Tensor::of(off.data(), {3}), ty),
      core::InternalError);
  const std::vector<int32_t> good = {0, 2, 4};
  CHECK_THROWS_AS(
      kernels::fp8_grouped_gemm_forward(ctx, xq.q, wq.q, Tensor::of(good.data(), {3}), ty),
      core::InternalError);  // a 2-D weight is not stacked experts
  Vec dwe(2 * K * K);
  CHECK_THROWS_AS(kernels::fp8_grouped_gemm_wgrad(ctx, xc.q, xc.q, Tensor::of(good.data(), {3}),
                                                  Tensor::of(dwe.data(), {2, K, K})),
                  core::InternalError);  // dense 128x1 scales instead of per-segment ones
}

TEST_CASE("fp8 GEMMs on empty work: K = 0, M = 0, only empty experts", "[fp8]") {
  core::Context ctx;
  const int64_t M = 3, N = 2;
  // K = 0: the sum is empty, so y = 0 (beta = 0) or beta * y
  QBuf x0(DType::e4m3, Fp8Tiling::row_1x128, M, 0), w0(DType::e4m3, Fp8Tiling::block_128x128, N, 0);
  Vec y(M * N, std::numeric_limits<float>::quiet_NaN());
  kernels::fp8_gemm_forward(ctx, x0.q, w0.q, Tensor::of(y.data(), {M, N}));
  CHECK(y == Vec(M * N, 0.0f));
  Vec y2(M * N, 4.0f);
  kernels::fp8_gemm_forward(ctx, x0.q, w0.q, Tensor::of(y2.data(), {M, N}), 0.5);
  CHECK(y2 == Vec(M * N, 2.0f));
  // M = 0: nothing to write, nothing to add
  QBuf dy0(DType::e4m3, Fp8Tiling::col_128x1, 0, N), xc0(DType::e4m3, Fp8Tiling::col_128x1, 0, 5);
  Vec dw(N * 5, 1.0f);
  kernels::fp8_gemm_wgrad(ctx, dy0.q, xc0.q, Tensor::of(dw.data(), {N, 5}));
  CHECK(dw == Vec(N * 5, 1.0f));
  // experts that all have no rows
  const std::vector<int32_t> off = {0, 0, 0};
  QBuf xe(DType::e4m3, Fp8Tiling::row_1x128, 0, 5), we = QBuf::experts(DType::e4m3, 2, N, 5);
  QBuf dys = QBuf::segments(DType::e4m3, 0, N, 2), xs = QBuf::segments(DType::e4m3, 0, 5, 2);
  Vec ye(1), dwe(2 * N * 5, 1.0f);
  kernels::fp8_grouped_gemm_forward(ctx, xe.q, we.q, Tensor::of(off.data(), {3}),
                                    Tensor::of(ye.data(), {0, N}));
  kernels::fp8_grouped_gemm_wgrad(ctx, dys.q, xs.q, Tensor::of(off.data(), {3}),
                                  Tensor::of(dwe.data(), {2, N, 5}));
  CHECK(dwe == Vec(2 * N * 5, 1.0f));
}
