// CPU element conversions of the low-precision ops: BF16 rounding, narrowing and widening, FP8
// decoding through a table. OpenMP over the flat range, SIMD within each thread's part.
#include "kernels/cpu/eigen_maps.hpp"
#include "kernels/cpu/fp8.hpp"
#include "kernels/fp8_format.hpp"

namespace kernels::cpu {

void bf16_round(const float* x, float* y, int64_t n, int threads) {
#pragma omp parallel for simd schedule(static) num_threads(threads) if (n > kParallelMinElems)
  for (int64_t i = 0; i < n; ++i) y[i] = round_bf16(x[i]);
}

void bf16_narrow(const float* x, uint16_t* y, int64_t n, int threads) {
#pragma omp parallel for simd schedule(static) num_threads(threads) if (n > kParallelMinElems)
  for (int64_t i = 0; i < n; ++i) y[i] = core::f32_to_bf16(x[i]);
}

void bf16_widen(const uint16_t* x, float* y, int64_t n, int threads) {
#pragma omp parallel for simd schedule(static) num_threads(threads) if (n > kParallelMinElems)
  for (int64_t i = 0; i < n; ++i) y[i] = core::bf16_to_f32(x[i]);
}

void fp8_decode(const uint8_t* q, const float* table, float* y, int64_t n, int threads) {
#pragma omp parallel for simd schedule(static) num_threads(threads) if (n > kParallelMinElems)
  for (int64_t i = 0; i < n; ++i) y[i] = table[q[i]];
}

}  // namespace kernels::cpu
