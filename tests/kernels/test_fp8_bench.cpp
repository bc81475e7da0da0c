// Hidden micro-benchmark of the low-precision GEMMs: the three GEMMs of a Linear (and of the
// experts' grouped GEMM) in FP32, FP8 and BF16 at bench-cpu's shapes, with GFLOP/s and the
// ratio to FP32. FP8 is timed with the quantization a layer pays per call (its activation-side
// operands; the weight once per step) and without it. Run with `test_kernels "[fp8_bench]"`
// (also part of "[bench]"); it checks only finiteness.
#include <cmath>
#include <cstdio>
#include <functional>
#include <vector>

#include "bench_timing.hpp"
#include "common/gradcheck.hpp"
#include "kernels/bf16_ops.hpp"
#include "kernels/fp8_ops.hpp"
#include "kernels/moe_ops.hpp"
#include "kernels/ops.hpp"

using core::DType;
using core::Tensor;
using kernels::Fp8Tiling;

namespace {

// Buffers of one quantized operand.
struct Q {
  std::vector<uint8_t> codes;
  std::vector<float> scales;
  kernels::Fp8Tensor t;
  Q(Fp8Tiling tiling, std::initializer_list<int64_t> shape, int64_t scale_rows, int64_t scale_cols,
    int64_t scale_batch = 0) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    codes.resize(n);
    const int64_t b = scale_batch > 0 ? scale_batch : 1;
    scales.resize(b * scale_rows * scale_cols);
    t.codes = Tensor(codes.data(), DType::e4m3, shape);
    t.scales = scale_batch > 0 ? Tensor::of(scales.data(), {scale_batch, scale_rows, scale_cols})
                               : Tensor::of(scales.data(), {scale_rows, scale_cols});
    t.tiling = tiling;
  }
};

int64_t tiles(int64_t n) {
  return (n + 127) / 128;
}

// Wall and CPU seconds of the three GEMMs.
struct Times {
  bench::Timing fwd, dgrad, wgrad;
  double wall() const { return fwd.best_wall + dgrad.best_wall + wgrad.best_wall; }
  double cpu() const { return fwd.mean_cpu + dgrad.mean_cpu + wgrad.mean_cpu; }
};

// The three GEMMs of a Linear (or of the experts) in one precision.
struct Calls {
  std::function<void()> fwd, dgrad, wgrad;
};

Times time_calls(const Calls& c) {
  const int reps = 5;
  return {bench::best_timing(reps, c.fwd), bench::best_timing(reps, c.dgrad),
          bench::best_timing(reps, c.wgrad)};
}

// Per GEMM: best wall ms; then GFLOP/s of the three by wall time, and the ratios to FP32 by wall
// time and by CPU time (the steadier one on a shared machine).
void report(const char* what, const Times& t, const Times& base, double flops) {
  std::printf(
      "  %-21s fwd %7.2f  dgrad %7.2f  wgrad %7.2f ms | %6.1f GFLOP/s | %.2fx wall, "
      "%.2fx CPU\n",
      what, t.fwd.best_wall * 1e3, t.dgrad.best_wall * 1e3, t.wgrad.best_wall * 1e3,
      3 * flops / t.wall() * 1e-9, t.wall() / base.wall(), t.cpu() / base.cpu());
}

// Times and reports FP32, FP8 with and without the quantization of its operands (quant), BF16.
void compare(const Calls& fp32, const Calls& quant, const Calls& fp8, const Calls& bf16,
             double flops) {
  quant.fwd(), quant.dgrad(), quant.wgrad();  // fp8's operands exist before it is timed alone
  auto then = [](const std::function<void()>& a, const std::function<void()>& b) {
    return [a, b] { a(), b(); };
  };
  const Times t32 = time_calls(fp32), t8 = time_calls(fp8);
  const Times t8q = time_calls(
      {then(quant.fwd, fp8.fwd), then(quant.dgrad, fp8.dgrad), then(quant.wgrad, fp8.wgrad)});
  const Times t16 = time_calls(bf16);
  report("fp32", t32, t32, flops);
  report("fp8 (gemm only)", t8, t32, flops);
  report("fp8 (with quantize)", t8q, t32, flops);
  report("bf16 (with rounding)", t16, t32, flops);
}

// Linear y = x W^T with x [M, K], W [N, K].
void bench_linear(int64_t M, int64_t N, int64_t K, int threads) {
  kernels::Context ctx = bench::bench_context(threads);
  std::printf("Linear M %ld N %ld K %ld (%d threads)\n", long(M), long(N), long(K), threads);
  const auto x = testing::random_vector<float>(M * K, 1),
             w = testing::random_vector<float>(N * K, 2, 0.05);
  const auto dy = testing::random_vector<float>(M * N, 3);
  std::vector<float> y(M * N), dx(M * K), dw(N * K, 0.0f);
  const Tensor tx = Tensor::of(x.data(), {M, K}), tw = Tensor::of(w.data(), {N, K});
  const Tensor tdy = Tensor::of(dy.data(), {M, N}), ty = Tensor::of(y.data(), {M, N});
  const Tensor tdx = Tensor::of(dx.data(), {M, K}), tdw = Tensor::of(dw.data(), {N, K});
  Q xq(Fp8Tiling::row_1x128, {M, K}, M, tiles(K)),
      wq(Fp8Tiling::block_128x128, {N, K}, tiles(N), tiles(K));
  Q dyq(Fp8Tiling::row_1x128, {M, N}, M, tiles(N));
  Q dyc(Fp8Tiling::col_128x1, {M, N}, tiles(M), N), xc(Fp8Tiling::col_128x1, {M, K}, tiles(M), K);
  auto q_fwd = [&] {
    kernels::fp8_quantize(ctx, tw, wq.t);  // once per step: one micro-batch per step on bench-cpu
    kernels::fp8_quantize(ctx, tx, xq.t);
  };
  auto q_dgrad = [&] { kernels::fp8_quantize(ctx, tdy, dyq.t); };
  auto q_wgrad = [&] {
    kernels::fp8_quantize(ctx, tdy, dyc.t);
    kernels::fp8_requantize(ctx, xq.t, xc.t);  // x is cached as its 1x128 FP8 forward operand
  };
  const Calls fp8{[&] { kernels::fp8_gemm_forward(ctx, xq.t, wq.t, ty); },
                  [&] { kernels::fp8_gemm_dgrad(ctx, dyq.t, wq.t, tdx); },
                  [&] { kernels::fp8_gemm_wgrad(ctx, dyc.t, xc.t, tdw); }};
  const Calls fp32{[&] { kernels::gemm(ctx, tx, false, tw, true, ty); },
                   [&] { kernels::gemm(ctx, tdy, false, tw, false, tdx); },
                   [&] { kernels::gemm(ctx, tdy, true, tx, false, tdw, 1.0, 1.0); }};
  const Calls bf16{[&] { kernels::gemm_bf16(ctx, tx, false, tw, true, ty); },
                   [&] { kernels::gemm_bf16(ctx, tdy, false, tw, false, tdx); },
                   [&] { kernels::gemm_bf16(ctx, tdy, true, tx, false, tdw, 1.0, 1.0); }};
  compare(fp32, {q_fwd, q_dgrad, q_wgrad}, fp8, bf16, 2.0 * M * N * K);
  CHECK(std::isfinite(y[0] + dx[0] + dw[0]));
}

// Experts: rows ragged around rows / experts, weight [E, N, K].
void bench_grouped(int64_t rows, int64_t E, int64_t N, int64_t K, int threads) {
  kernels::Context ctx = bench::bench_context(threads);
  std::printf("Grouped M %ld over %ld experts, N %ld K %ld (%d threads)\n", long(rows), long(E),
              long(N), long(K), threads);
  std::vector<int32_t> off(E + 1, 0);
  for (int64_t e = 0; e < E; ++e) {
    const int64_t c = rows / E + ((e * 37) % 11) - 5;  // ragged; the last expert takes the rest
    off[e + 1] = int32_t(off[e] + (e == E - 1 ? rows - off[e] : c));
  }
  const int64_t M = off[E];
  const Tensor offsets = Tensor::of(off.data(), {E + 1});
  const auto x = testing::random_vector<float>(M * K, 4),
             w = testing::random_vector<float>(E * N * K, 5, 0.05);
  const auto dy = testing::random_vector<float>(M * N, 6);
  std::vector<float> y(M * N), dx(M * K), dw(E * N * K, 0.0f);
  const Tensor tx = Tensor::of(x.data(), {M, K}), tw = Tensor::of(w.data(), {E, N, K});
  const Tensor tdy = Tensor::of(dy.data(), {M, N}), ty = Tensor::of(y.data(), {M, N});
  const Tensor tdx = Tensor::of(dx.data(), {M, K}), tdw = Tensor::of(dw.data(), {E, N, K});
  Q xq(Fp8Tiling::row_1x128, {M, K}, M, tiles(K)),
      wq(Fp8Tiling::block_128x128, {E, N, K}, tiles(N), tiles(K), E);
  Q dyq(Fp8Tiling::row_1x128, {M, N}, M, tiles(N));
  const int64_t srows = kernels::fp8_segment_scale_rows(M, E);
  Q dyc(Fp8Tiling::col_128x1, {M, N}, srows, N), xc(Fp8Tiling::col_128x1, {M, K}, srows, K);
  auto q_fwd = [&] {
    kernels::fp8_quantize(ctx, tw, wq.t);
    kernels::fp8_quantize(ctx, tx, xq.t);
  };
  auto q_dgrad = [&] { kernels::fp8_quantize(ctx, tdy, dyq.t); };
  auto q_wgrad = [&] {
    kernels::fp8_quantize_segments(ctx, tdy, offsets, dyc.t);
    kernels::fp8_requantize_segments(ctx, xq.t, offsets, xc.t);
  };
  const Calls fp8{[&] { kernels::fp8_grouped_gemm_forward(ctx, xq.t, wq.t, offsets, ty); },
                  [&] { kernels::fp8_grouped_gemm_dgrad(ctx, dyq.t, wq.t, offsets, tdx); },
                  [&] { kernels::fp8_grouped_gemm_wgrad(ctx, dyc.t, xc.t, offsets, tdw); }};
  const Calls fp32{[&] { kernels::grouped_gemm(ctx, tx, tw, true, offsets, ty); },
                   [&] { kernels::grouped_gemm(ctx, tdy, tw, false, offsets, tdx); },
                   [&] { kernels::grouped_gemm_wgrad(ctx, tdy, tx, offsets, tdw); }};
  const Calls bf16{[&] { kernels::grouped_gemm_bf16(ctx, tx, tw, true, offsets, ty); },
                   [&] { kernels::grouped_gemm_bf16(ctx, tdy, tw, false, offsets, tdx); },
                   [&] { kernels::grouped_gemm_wgrad_bf16(ctx, tdy, tx, offsets, tdw); }};
  compare(fp32, {q_fwd, q_dgrad, q_wgrad}, fp8, bf16, 2.0 * M * N * K);
  CHECK(std::isfinite(y[0] + dx[0] + dw[0]));
}

}  // namespace

TEST_CASE("bench fp8 and bf16 GEMMs against fp32", "[.][bench][fp8_bench]") {
  // configs/bench-cpu.yaml: 2048 tokens, hidden 512, dense FFN 1536, 32 experts of 128 (w13 is
  // [2 * 128, 512]), 4 experts per token. One thread too: its CPU-time ratios are the steadiest
  // figures on a shared machine.
  for (int threads : {2, 1}) {
    bench_linear(2048, 512, 512, threads);
    bench_linear(2048, 1536, 512, threads);
    bench_linear(2048, 512, 1536, threads);
    bench_grouped(2048 * 4, 32, 256, 512, threads);
    bench_grouped(2048 * 4, 32, 512, 128, threads);
  }
}
