// Small device kernels used by the host-side CUDA code (kernels/cuda/*.cpp, compiled without
// nvcc): conversions, byte transposes and scale repacks. Implemented in kernels/cuda/utils.cu.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/lt_plan.hpp"

namespace kernels::cuda::detail {

// y = bf16 bits of x (round to nearest even, as core::f32_to_bf16).
void launch_f32_to_bf16(const float* x, uint16_t* y, int64_t n, cudaStream_t stream);
// dst [cols, rows] = src [rows, cols] transposed, one byte per element (FP8 codes).
void launch_transpose_bytes(const uint8_t* src, int64_t rows, int64_t cols, uint8_t* dst,
                            cudaStream_t stream);
// *out = the sum of count doubles (one block: the second pass of a deterministic reduction).
void launch_sum_doubles(const double* partial, int count, double* out, cudaStream_t stream);
// dst = the scale repack r of src (kernels::lt::apply_repack on the device; padding zeroed).
void launch_repack(const lt::ScaleRepack& r, const float* src, float* dst, cudaStream_t stream);

}  // namespace kernels::cuda::detail
