// Hidden micro-benchmarks of the dense ops: GEMM GFLOP/s and attention / head_ce timings at
// model-like sizes. Run with `test_kernels "[bench]"`; "[ops]" and CTest skip them. They check
// nothing but finiteness; the numbers are for the reader and for tuning.
#include <cmath>
#include <cstdio>
#include <vector>

#include "bench_timing.hpp"
#include "common/gradcheck.hpp"
#include "kernels/ops.hpp"

using core::Tensor;

TEST_CASE("bench gemm", "[.][bench]") {
  kernels::Context ctx = bench::bench_context();
  const int M = 2048, K = 512, N = 8192;
  auto A = testing::random_vector<float>(size_t(M) * K, 1),
       B = testing::random_vector<float>(size_t(K) * N, 2);
  std::vector<float> C(size_t(M) * N);
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      Tensor tA = ta ? Tensor::of(A.data(), {K, M}) : Tensor::of(A.data(), {M, K});
      Tensor tB = tb ? Tensor::of(B.data(), {N, K}) : Tensor::of(B.data(), {K, N});
      double s = bench::best_seconds("gemm", 5, [&] {
        kernels::gemm(ctx, tA, ta, tB, tb, Tensor::of(C.data(), {M, N}));
      });
      std::printf("gemm f32 [%d x %d] x [%d x %d] ta %d tb %d: %.2f ms, %.1f GFLOP/s\n", M, K, K, N,
                  ta, tb, s * 1e3, 2.0 * M * N * K / s * 1e-9);
    }
  CHECK(std::isfinite(C[0]));
}

TEST_CASE("bench attention", "[.][bench]") {
  kernels::Context ctx = bench::bench_context();
  const int B = 4, T = 512, H = 8, Dqk = 48, Dv = 32;
  const size_t nq = size_t(B) * T * H * Dqk, nv = size_t(B) * T * H * Dv;
  auto q = testing::random_vector<float>(nq, 3), k = testing::random_vector<float>(nq, 4);
  auto v = testing::random_vector<float>(nv, 5), dout = testing::random_vector<float>(nv, 6);
  std::vector<float> out(nv), lse(size_t(B) * H * T), dq(nq), dk(nq), dv(nv);
  auto tq = Tensor::of(q.data(), {B * T, H, Dqk}), tk = Tensor::of(k.data(), {B * T, H, Dqk});
  auto tv = Tensor::of(v.data(), {B * T, H, Dv}), to = Tensor::of(out.data(), {B * T, H, Dv});
  auto tl = Tensor::of(lse.data(), {B, H, T});
  const double scale = 1.0 / std::sqrt(double(Dqk));
  double f = bench::best_seconds("attention_forward", 5,
                          [&] { kernels::attention_forward(ctx, tq, tk, tv, T, scale, to, tl); });
  double b = bench::best_seconds("attention_backward", 5, [&] {
    kernels::attention_backward(ctx, Tensor::of(dout.data(), {B * T, H, Dv}), tq, tk, tv, to, tl, T,
                                scale, Tensor::of(dq.data(), {B * T, H, Dqk}),
                                Tensor::of(dk.data(), {B * T, H, Dqk}),
                                Tensor::of(dv.data(), {B * T, H, Dv}));
  });
  // Useful (causal) flops: forward 2 GEMMs, backward 4 (+ the recomputed scores, not counted).
  const double causal = double(B) * H * T * (T + 1) / 2;
  const double ff = 2 * causal * (Dqk + Dv), bf = 2 * causal * (2 * Dqk + 2 * Dv);
  std::printf(
      "attention f32 B %d T %d H %d Dqk %d Dv %d: forward %.2f ms (%.1f GFLOP/s), backward %.2f ms "
      "(%.1f GFLOP/s), total %.2f ms\n",
      B, T, H, Dqk, Dv, f * 1e3, ff / f * 1e-9, b * 1e3, bf / b * 1e-9, (f + b) * 1e3);
  CHECK(std::isfinite(dq[0]));
}

namespace {

void bench_head_ce(int N, int D, int V) {
  kernels::Context ctx = bench::bench_context();
  auto x = testing::random_vector<float>(size_t(N) * D, 7),
       W = testing::random_vector<float>(size_t(V) * D, 8, 0.05);
  std::vector<int32_t> targets(N);
  for (int n = 0; n < N; ++n) targets[n] = (n * 7919) % V;
  std::vector<float> losses(N), lse(N), dx(size_t(N) * D), dW(size_t(V) * D);
  auto tx = Tensor::of(x.data(), {N, D}), tW = Tensor::of(W.data(), {V, D});
  auto tt = Tensor::of(targets.data(), {N}), tl = Tensor::of(lse.data(), {N});
  double f = bench::best_seconds("head_ce_forward", 3, [&] {
    kernels::head_ce_forward(ctx, tx, tW, tt, Tensor::of(losses.data(), {N}), tl);
  });
  double b = bench::best_seconds("head_ce_backward", 3, [&] {
    kernels::head_ce_backward(ctx, tx, tW, tt, tl, 1.0 / N, Tensor::of(dx.data(), {N, D}),
                              Tensor::of(dW.data(), {V, D}));
  });
  // The backward recomputes the logits: three GEMMs of the forward's size.
  const double g = 2.0 * N * D * V;
  std::printf("head_ce f32 N %d D %d V %d: forward %.1f ms (%.1f GFLOP/s), backward %.1f ms "
              "(%.1f GFLOP/s)\n",
              N, D, V, f * 1e3, g / f * 1e-9, b * 1e3, 3 * g / b * 1e-9);
  CHECK(std::isfinite(losses[0]));
}

}  // namespace

TEST_CASE("bench head_ce", "[.][bench]") {
  bench_head_ce(2048, 512, 8192);  // configs/bench-cpu.yaml
  bench_head_ce(4096, 512, 32768);
}
