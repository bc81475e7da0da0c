// GEMM micro-benchmark on one GPU (hidden: run by tests/gpu/device_check.sh with "[.bench]").
// Prints TFLOP/s of the BF16 GEMM (cuBLASLt) and the FP8 block-scaled GEMM (cuBLASLt, VEC128 x
// BLK128x128) at the shape 4096 x 7168 x 16384, and of the SIMT grouped FP8 GEMM over 8
// experts, each timed over repeated launches after a warm-up, the device drained before and
// after (host clock; launch overhead is negligible at these sizes). Inputs are random so that the
// tensor cores see realistic bit patterns.
#include <chrono>
#include <cstdio>

#include "gpu_testing.hpp"
#include "kernels/bf16_ops.hpp"
#include "kernels/fp8_ops.hpp"

using namespace gpu_testing;

namespace {

template <class F>
double seconds_per_call(F&& f, int reps) {
  f();
  runtime().synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) f();
  runtime().synchronize();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
}

}  // namespace

TEST_CASE("gpu GEMM micro-benchmark", "[.bench][gpu]") {
  const int64_t M = 4096, N = 7168, K = 16384;
  const double flops = 2.0 * M * N * K;
  Device dev;
  {
    Tensor A = dev.alloc(DType::bf16, {M, K}), B = dev.alloc(DType::bf16, {N, K});
    kernels::cast(ctx(), dev.upload(random(size_t(M * K), 1), {M, K}), A);
    kernels::cast(ctx(), dev.upload(random(size_t(N * K), 2), {N, K}), B);
    Tensor C = dev.alloc(DType::f32, {M, N});
    const int64_t before = runtime().lt_fallbacks();
    const double s = seconds_per_call([&] { kernels::gemm_bf16(ctx(), A, false, B, true, C); }, 10);
    std::printf("BENCH bf16_gemm %lldx%lldx%lld %.1f TFLOP/s (%.3f ms)%s\n", (long long)M,
                (long long)N, (long long)K, flops / s / 1e12, s * 1e3,
                runtime().lt_fallbacks() != before ? " [SIMT fallback]" : "");
  }
  {
    Tensor x = dev.upload(random(size_t(M * K), 3), {M, K});
    Tensor w = dev.upload(random(size_t(N * K), 4), {N, K});
    kernels::Fp8Tensor xq =
        kernels::fp8_alloc(dev.arena, DType::e4m3, kernels::Fp8Tiling::row_1x128, M, K);
    kernels::Fp8Tensor wq =
        kernels::fp8_alloc(dev.arena, DType::e4m3, kernels::Fp8Tiling::block_128x128, N, K);
    kernels::fp8_quantize(ctx(), x, xq);
    kernels::fp8_quantize(ctx(), w, wq);
    Tensor y = dev.alloc(DType::f32, {M, N});
    const int64_t before = runtime().lt_fallbacks();
    const double s = seconds_per_call([&] { kernels::fp8_gemm_forward(ctx(), xq, wq, y); }, 10);
    std::printf("BENCH fp8_gemm %lldx%lldx%lld %.1f TFLOP/s (%.3f ms)%s\n", (long long)M,
                (long long)N, (long long)K, flops / s / 1e12, s * 1e3,
                runtime().lt_fallbacks() != before ? " [SIMT fallback]" : "");
    const double q = seconds_per_call([&] { kernels::fp8_quantize(ctx(), x, xq); }, 10);
    std::printf("BENCH fp8_quantize_1x128 %lldx%lld %.0f GB/s\n", (long long)M, (long long)K,
                M * K * 5.0 / q / 1e9);
  }
  {
    const int64_t E = 8, T = 8192, D = 2048, F = 1536;
    std::vector<int32_t> off(E + 1);
    for (int64_t e = 0; e <= E; ++e) off[e] = int32_t(e * T / E);
    Tensor offd = dev.upload(off, {E + 1});
    Tensor x = dev.upload(random(size_t(T * D), 5), {T, D});
    Tensor w = dev.upload(random(size_t(E * F * D), 6), {E, F, D});
    kernels::Fp8Tensor xq =
        kernels::fp8_alloc(dev.arena, DType::e4m3, kernels::Fp8Tiling::row_1x128, T, D);
    kernels::Fp8Tensor wq = kernels::fp8_alloc_experts(dev.arena, DType::e4m3, E, F, D);
    kernels::fp8_quantize(ctx(), x, xq);
    kernels::fp8_quantize(ctx(), w, wq);
    Tensor y = dev.alloc(DType::f32, {T, F});
    const double s =
        seconds_per_call([&] { kernels::fp8_grouped_gemm_forward(ctx(), xq, wq, offd, y); }, 5);
    std::printf("BENCH fp8_grouped_gemm E=%lld %lldx%lldx%lld %.1f TFLOP/s (SIMT)\n", (long long)E,
                (long long)T, (long long)F, (long long)D, 2.0 * T * F * D / s / 1e12);
  }
  SUCCEED();
}
