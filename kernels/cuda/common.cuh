// Device helpers shared by the kernels of kernels/cuda/: launch sizing, the checked launch, the
// device error word, warp and block reductions, and bit-exact BF16 rounding (the CPU's
// core::f32_to_bf16). Included by .cu files only.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/cuda/cuda_check.hpp"
#include "core/cuda/cuda_state.hpp"

namespace kernels::cuda {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n items: enough to fill the GPU, never more than needed.
inline unsigned grid_for(int64_t n, int threads = kThreads) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65535 * 8 ? 65535 * 8 : b));
}

// Records the first bad index of a kernel: {code, position, value}; later ones are dropped.
__device__ inline void record_error(core::DeviceErrorWord* w, core::DeviceError code,
                                    int64_t position, int64_t value) {
  if (atomicCAS(&w->code, 0, static_cast<int32_t>(code)) == 0) {
    w->position = position;
    w->value = value;
  }
}

__device__ inline float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ inline double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over a block of blockDim.x threads (a multiple of 32, at most 1024); every thread gets it.
template <class T>
__device__ inline T block_sum(T v) {
  __shared__ T partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();  // partial may still be read by a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  T s = lane < warps ? partial[lane] : T(0);
  return warp_sum(s);
}

// core::f32_to_bf16 bit for bit: round to nearest even, NaN kept quiet.
__device__ inline uint16_t bf16_bits(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
__device__ inline float bf16_value(uint16_t h) {
  return __uint_as_float(static_cast<uint32_t>(h) << 16);
}
__device__ inline float round_bf16(float f) {
  return bf16_value(bf16_bits(f));
}

}  // namespace kernels::cuda
