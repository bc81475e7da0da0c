// Tests of the grouped GEMM and its weight gradient: equality with naive per-expert products for
// every scheduling path (one big segment, many small, mixed, single thread), alpha / beta, both
// layouts of B, float64 finite differences; plus a hidden benchmark at the model's shapes
// (run with: test_kernels "[moe_bench]").
#include <Eigen/Core>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "common/gradcheck.hpp"
#include "core/error.hpp"
#include "kernels/moe_ops.hpp"

using core::Tensor;

namespace {

// Segment boundaries from row counts.
std::vector<int32_t> offsets_of(const std::vector<int32_t>& counts) {
  std::vector<int32_t> o(counts.size() + 1, 0);
  for (size_t e = 0; e < counts.size(); ++e) o[e + 1] = o[e] + counts[e];
  return o;
}

// C[r] = alpha * sum_k A[r, k] op(B[e])[k, c] + beta * C[r], one row at a time, in long double.
template <class T>
std::vector<T> naive(const std::vector<T>& A, const std::vector<T>& B, bool trans_b,
                     const std::vector<int32_t>& off, std::vector<T> C, int64_t N, int64_t K,
                     double alpha, double beta) {
  const int E = static_cast<int>(off.size()) - 1;
  for (int e = 0; e < E; ++e)
    for (int64_t r = off[e]; r < off[e + 1]; ++r)
      for (int64_t c = 0; c < N; ++c) {
        long double acc = 0;
        for (int64_t k = 0; k < K; ++k)
          acc += static_cast<long double>(A[r * K + k]) *
                 (trans_b ? B[(e * N + c) * K + k] : B[(e * K + k) * N + c]);
        const long double old = beta == 0 ? 0.0L : beta * static_cast<long double>(C[r * N + c]);
        C[r * N + c] = static_cast<T>(alpha * acc + old);
      }
  return C;
}

template <class T>
void run(const std::vector<T>& A, const std::vector<T>& B, bool trans_b,
         const std::vector<int32_t>& off, std::vector<T>& C, int64_t N, int64_t K, double alpha,
         double beta, int threads) {
  core::Context ctx;
  ctx.threads = threads;
  const int64_t M = off.back(), E = static_cast<int64_t>(off.size()) - 1;
  kernels::grouped_gemm(ctx, Tensor::of(A.data(), {M, K}),
                        trans_b ? Tensor::of(B.data(), {E, N, K}) : Tensor::of(B.data(), {E, K, N}),
                        trans_b, Tensor::of(off.data(), {E + 1}), Tensor::of(C.data(), {M, N}), alpha,
                        beta);
}

template <class T>
double max_rel_err(const std::vector<T>& got, const std::vector<T>& want) {
  double worst = 0, scale = 1e-30;
  for (size_t i = 0; i < want.size(); ++i) scale = std::max(scale, std::fabs(double(want[i])));
  for (size_t i = 0; i < want.size(); ++i) {
    const double err = std::fabs(double(got[i]) - double(want[i])) / scale;
    if (!(err <= worst)) worst = err;  // NaN sticks
  }
  return worst;
}

template <class T>
void check_layouts(const std::vector<int32_t>& counts, int64_t N, int64_t K, double tol) {
  const auto off = offsets_of(counts);
  const int64_t M = off.back(), E = static_cast<int64_t>(counts.size());
  auto A = testing::random_vector<T>(M * K, 201 + M);
  auto B = testing::random_vector<T>(E * N * K, 202 + E);
  for (bool trans_b : {true, false})
    for (int threads : {1, 2})
      for (auto [alpha, beta] : {std::pair{1.0, 0.0}, {0.5, 0.0}, {1.0, 1.0}, {-2.0, 0.25}}) {
        INFO("trans_b " << trans_b << " threads " << threads << " alpha " << alpha << " beta " << beta
                        << " M " << M << " experts " << E);
        auto C0 = testing::random_vector<T>(M * N, 203);
        if (beta == 0)
          for (T& c : C0) c = NAN;  // beta = 0 must never read C
        auto C = C0;
        run(A, B, trans_b, off, C, N, K, alpha, beta, threads);
        CHECK(max_rel_err(C, naive(A, B, trans_b, off, C0, N, K, alpha, beta)) < tol);
      }
}

}  // namespace

TEST_CASE("grouped_gemm equals per-expert products on every scheduling path", "[moe]") {
  SECTION("many small segments, some empty") {
    check_layouts<double>({5, 0, 9, 1, 0, 7, 3, 12, 0, 4}, 6, 11, 1e-13);
    check_layouts<float>({5, 0, 9, 1, 0, 7, 3, 12, 0, 4}, 6, 11, 1e-5);
  }
  SECTION("all rows in one expert (Eigen's own threads)") {
    check_layouts<double>({0, 0, 300, 0}, 33, 40, 1e-13);
    check_layouts<float>({0, 0, 300, 0}, 33, 40, 1e-5);
  }
  SECTION("one big segment among small ones") {
    check_layouts<double>({3, 200, 1, 0, 5, 2}, 17, 9, 1e-13);
  }
  SECTION("no rows at all") {
    check_layouts<double>({0, 0, 0}, 4, 3, 1e-13);
  }
}

TEST_CASE("grouped_gemm and its wgrad match float64 finite differences", "[moe]") {
  const std::vector<int32_t> counts = {3, 0, 4, 2};
  const auto off = offsets_of(counts);
  const int64_t M = off.back(), E = 4, N = 3, K = 5;
  core::Context ctx;
  ctx.threads = 2;
  const Tensor toff = Tensor::of(off.data(), {E + 1});
  for (bool trans_b : {true, false}) {
    INFO("trans_b " << trans_b);
    auto A = testing::random_vector<double>(M * K, 210);
    auto B = testing::random_vector<double>(E * N * K, 211);
    auto r = testing::random_vector<double>(M * N, 212);
    auto loss = [&] {
      std::vector<double> C(M * N);
      run(A, B, trans_b, off, C, N, K, 1.0, 0.0, 2);
      return testing::dot(r, C);
    };
    // dA = dC op(B)^T: the same grouped GEMM with the other layout flag.
    std::vector<double> dA(M * K);
    kernels::grouped_gemm(ctx, Tensor::of(r.data(), {M, N}),
                          trans_b ? Tensor::of(B.data(), {E, N, K}) : Tensor::of(B.data(), {E, K, N}),
                          !trans_b, toff, Tensor::of(dA.data(), {M, K}));
    testing::check_gradient("dA", A, dA, loss);
    // wgrad gives dB[e] = dC^T A in the [E, N, K] layout; accumulate onto a nonzero start.
    auto init = testing::random_vector<double>(E * N * K, 213);
    auto dB_nk = init;
    kernels::grouped_gemm_wgrad(ctx, Tensor::of(r.data(), {M, N}), Tensor::of(A.data(), {M, K}), toff,
                                Tensor::of(dB_nk.data(), {E, N, K}));
    std::vector<double> dB(E * N * K);
    for (int64_t e = 0; e < E; ++e)
      for (int64_t c = 0; c < N; ++c)
        for (int64_t k = 0; k < K; ++k) {
          const double g = dB_nk[(e * N + c) * K + k] - init[(e * N + c) * K + k];
          dB[trans_b ? (e * N + c) * K + k : (e * K + k) * N + c] = g;
        }
    // Expert 1 has no rows: its gradient is exactly zero (and was left untouched).
    for (int64_t i = N * K; i < 2 * N * K; ++i) CHECK(dB_nk[i] == init[i]);
    testing::check_gradient("dB", B, dB, loss);
  }
}

TEST_CASE("grouped_gemm_wgrad equals per-expert products on every scheduling path", "[moe]") {
  for (const auto& counts : {std::vector<int32_t>{5, 0, 9, 1, 7, 3}, {0, 250, 0}, {2, 150, 3}}) {
    const auto off = offsets_of(counts);
    const int64_t M = off.back(), E = static_cast<int64_t>(counts.size()), N = 7, K = 13;
    auto dC = testing::random_vector<double>(M * N, 220);
    auto A = testing::random_vector<double>(M * K, 221);
    auto init = testing::random_vector<double>(E * N * K, 222);
    // Naive: dB[e][c][k] = init + sum_r dC[r][c] A[r][k].
    auto want = init;
    for (int64_t e = 0; e < E; ++e)
      for (int64_t r = off[e]; r < off[e + 1]; ++r)
        for (int64_t c = 0; c < N; ++c)
          for (int64_t k = 0; k < K; ++k) want[(e * N + c) * K + k] += dC[r * N + c] * A[r * K + k];
    for (int threads : {1, 2}) {
      auto dB = init;
      core::Context ctx;
      ctx.threads = threads;
      kernels::grouped_gemm_wgrad(ctx, Tensor::of(dC.data(), {M, N}), Tensor::of(A.data(), {M, K}),
                                  Tensor::of(off.data(), {E + 1}), Tensor::of(dB.data(), {E, N, K}));
      INFO("M " << M << " threads " << threads);
      CHECK(max_rel_err(dB, want) < 1e-13);
    }
  }
}

TEST_CASE("grouped_gemm rejects inconsistent offsets and shapes", "[moe]") {
  core::Context ctx;
  std::vector<float> A(6 * 4), B(2 * 3 * 4), C(6 * 3);
  auto call = [&](std::vector<int32_t> off, int64_t b_k) {
    kernels::grouped_gemm(ctx, Tensor::of(A.data(), {6, 4}), Tensor::of(B.data(), {2, 3, b_k}), true,
                          Tensor::of(off.data(), {3}), Tensor::of(C.data(), {6, 3}));
  };
  CHECK_NOTHROW(call({0, 2, 6}, 4));
  CHECK_THROWS_AS(call({0, 2, 5}, 4), core::InternalError);  // does not end at M
  CHECK_THROWS_AS(call({0, 4, 2}, 4), core::InternalError);  // decreasing
  CHECK_THROWS_AS(call({1, 2, 6}, 4), core::InternalError);  // does not start at 0
  CHECK_THROWS_AS(call({0, 2, 6}, 2), core::InternalError);  // K mismatch
}

// Hidden on purpose: speed is measured by benchmarks, never asserted by unit tests (shared, noisy
// machines). Run with `test_kernels "[moe_bench]"`.
TEST_CASE("grouped_gemm benchmark at the model's shapes", "[.][moe_bench]") {
  // N = 2048 tokens x k = 4 -> 8192 rows over 32 experts, D = 512, F = 128 (W13 out 2F = 256).
  const int64_t M = 8192, E = 32, D = 512, F2 = 256, F = 128;
  std::vector<int32_t> counts(E);
  for (int64_t e = 0; e < E; ++e) counts[e] = static_cast<int32_t>(M / E + (e % 2 ? 37 : -37));
  const auto balanced = offsets_of(counts);
  std::vector<int32_t> one(E, 0);
  one[5] = static_cast<int32_t>(M);
  const auto skewed = offsets_of(one);
  core::Context ctx;
  auto time_it = [&](const char* what, double flops, auto&& fn) {
    fn();  // warm-up
    const int reps = 5;
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) fn();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
    std::printf("%-44s %8.2f ms  %7.1f GFLOP/s\n", what, s * 1e3, flops / s * 1e-9);
  };
  auto x = testing::random_vector<float>(M * D, 1), h = testing::random_vector<float>(M * F, 2);
  auto w13 = testing::random_vector<float>(E * F2 * D, 3), w2 = testing::random_vector<float>(E * D * F, 4);
  std::vector<float> c13(M * F2), c2(M * D), dw13(E * F2 * D);
  struct Run {
    const std::vector<int32_t>* off;
    int threads;
    const char* tag;
  };
  for (const Run& run : {Run{&balanced, 1, "balanced"}, Run{&balanced, 2, "balanced"},
                         Run{&skewed, 2, "all rows to one expert"}}) {
    ctx.threads = run.threads;
    core::apply_threads(ctx);
    Tensor toff = Tensor::of(run.off->data(), {E + 1});
    std::printf("-- %s, %d thread(s), f32\n", run.tag, run.threads);
    time_it("W13 fwd [8192x512] x [32][256x512]^T", 2.0 * M * F2 * D, [&] {
      kernels::grouped_gemm(ctx, Tensor::of(x.data(), {M, D}), Tensor::of(w13.data(), {E, F2, D}), true,
                            toff, Tensor::of(c13.data(), {M, F2}));
    });
    time_it("W2 fwd [8192x128] x [32][512x128]^T", 2.0 * M * D * F, [&] {
      kernels::grouped_gemm(ctx, Tensor::of(h.data(), {M, F}), Tensor::of(w2.data(), {E, D, F}), true,
                            toff, Tensor::of(c2.data(), {M, D}));
    });
    time_it("W13 wgrad [32][256x512] += dC^T A", 2.0 * M * F2 * D, [&] {
      kernels::grouped_gemm_wgrad(ctx, Tensor::of(c13.data(), {M, F2}), Tensor::of(x.data(), {M, D}), toff,
                                  Tensor::of(dw13.data(), {E, F2, D}));
    });
  }
  std::printf("-- 2 threads\n");
  // Reference: one dense Eigen GEMM of the same size (the best a grouped GEMM can approach).
  using RM = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Eigen::Map<const RM> xa(x.data(), M, D), wb(w13.data(), F2, D);
  Eigen::Map<RM> cc(c13.data(), M, F2);
  time_it("dense Eigen [8192x512] x [256x512]^T", 2.0 * M * F2 * D,
          [&] { cc.noalias() = xa * wb.transpose(); });
}
