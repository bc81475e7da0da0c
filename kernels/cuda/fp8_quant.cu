// FP8 quantization and dequantization on the GPU, bit for bit the CPU's
// (kernels/cpu/fp8_quant.cpp): amax as the integer max of |x|'s bits (NaN kept), scale = max(amax,
// 1e-4) / fmt_max by IEEE division (optionally rounded up to a power of two), code = satfinite RNE
// of x / scale by IEEE division (__nv_cvt_float_to_fp8, which the CPU encoder reproduces bit for
// bit; see docs/precision.md). Two kernel shapes cover every tiling:
//  - tiles: one block per 128-column group of a panel of rows (1 row: 1x128; up to 128 rows of
//    one matrix: 128x128), a thread per column, block-wide amax;
//  - columns: one thread per column of a panel of up to 128 rows (128x1), panels dense or per
//    segment (device offsets, as kernels/fp8_ops.hpp lays out the segment scale rows).
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cfloat>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda_ops.hpp"
#include "kernels/fp8_format.hpp"

namespace kernels::cuda {

namespace {

constexpr int kT = 128;

struct QuantArgs {
  const float* x = nullptr;  // quantize: input; dequantize: null
  float* out = nullptr;      // dequantize: output
  uint8_t* codes = nullptr;
  float* scales = nullptr;
  int64_t rows = 0, cols = 0;  // of one matrix (stacked matrices for 128x128)
  int64_t matrices = 1;
  bool e4m3 = true;
  bool pow2 = false;
  float fmt_max = 448.0f;
  const int32_t* offsets = nullptr;  // columns kernel over segments
  int segments = 0;
  core::DeviceErrorWord* errors = nullptr;
};

__device__ inline uint32_t abs_bits(float x) {
  return __float_as_uint(x) & 0x7fffffffu;
}

__device__ float tile_scale(uint32_t amax_bits, const QuantArgs& a) {
  const float m = __uint_as_float(amax_bits);
  const float amax = m < kFp8AmaxFloor ? kFp8AmaxFloor : m;  // std::max: a NaN amax stays NaN
  float s = __fdiv_rn(amax, a.fmt_max);
  if (a.pow2 && s <= FLT_MAX) {
    uint32_t u = __float_as_uint(s);
    if (u & 0x7fffffu) u = (u & 0xff800000u) + 0x800000u;
    s = __uint_as_float(u);
  }
  return s;
}

__device__ inline uint8_t encode(float v, const QuantArgs& a) {
  return a.e4m3 ? __nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3)
                : __nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E5M2);
}

__device__ inline float decode(uint8_t c, const QuantArgs& a) {
  const __half h(__nv_cvt_fp8_to_halfraw(c, a.e4m3 ? __NV_E4M3 : __NV_E5M2));
  return __half2float(h);
}

// Tiles: blockIdx.x = panel, blockIdx.y = 128-column group; rows_per_panel 1 (1x128) or 128.
template <bool kQuant>
__global__ void tiles_kernel(QuantArgs a, int64_t rows_per_panel) {
  __shared__ uint32_t red[kT / 32];
  const int64_t groups = (a.cols + kT - 1) / kT, g = blockIdx.y, panel = blockIdx.x;
  const int64_t c = g * kT + threadIdx.x;
  int64_t r0, r1;
  if (rows_per_panel == 1) {
    r0 = panel;
    r1 = panel + 1;
  } else {
    const int64_t blocks = (a.rows + kT - 1) / kT, m = panel / blocks, b = panel % blocks;
    r0 = m * a.rows + b * kT;
    r1 = m * a.rows + min(a.rows, (b + 1) * kT);
  }
  float* sp = a.scales + panel * groups + g;
  const bool live = c < a.cols;
  if (!kQuant) {
    const float s = *sp;
    if (live)
      for (int64_t r = r0; r < r1; ++r)
        a.out[r * a.cols + c] = decode(a.codes[r * a.cols + c], a) * s;
    return;
  }
  uint32_t m = 0;
  if (live)
    for (int64_t r = r0; r < r1; ++r) m = max(m, abs_bits(a.x[r * a.cols + c]));
  m = __reduce_max_sync(0xffffffffu, m);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = m;
  __syncthreads();
  m = max(max(red[0], red[1]), max(red[2], red[3]));
  const float s = tile_scale(m, a);
  if (threadIdx.x == 0) *sp = s;
  if (live)
    for (int64_t r = r0; r < r1; ++r)
      a.codes[r * a.cols + c] = encode(__fdiv_rn(a.x[r * a.cols + c], s), a);
}

// Columns: blockIdx.x = panel slot (dense: panel; segments: the segments' panels in order,
// ceil(len / 128) each, extra slots idle), blockIdx.y = 128-column group.
template <bool kQuant>
__global__ void columns_kernel(QuantArgs a) {
  __shared__ int64_t panel[3];  // row0, row1, scale row
  if (threadIdx.x == 0) {
    int64_t r0 = 0, r1 = 0, srow = 0;
    if (!a.offsets) {
      r0 = int64_t(blockIdx.x) * kT;
      r1 = min(a.rows, r0 + kT);
      srow = blockIdx.x;
    } else {
      bool ok = a.offsets[0] == 0 && a.offsets[a.segments] == a.rows;
      for (int e = 0; e < a.segments && ok; ++e) ok = a.offsets[e + 1] >= a.offsets[e];
      if (!ok) {
        if (blockIdx.x == 0 && blockIdx.y == 0)
          record_error(a.errors, core::DeviceError::bad_offsets, 0, a.rows);
      } else {
        int64_t slot = blockIdx.x;
        for (int e = 0; e < a.segments; ++e) {
          const int64_t len = a.offsets[e + 1] - a.offsets[e], n = (len + kT - 1) / kT;
          if (slot < n) {
            r0 = a.offsets[e] + slot * kT;
            r1 = min(int64_t(a.offsets[e + 1]), r0 + kT);
            srow = a.offsets[e] / kT + e + slot;
            break;
          }
          slot -= n;
        }
      }
    }
    panel[0] = r0;
    panel[1] = r1;
    panel[2] = srow;
  }
  __syncthreads();
  const int64_t r0 = panel[0], r1 = panel[1], c = int64_t(blockIdx.y) * kT + threadIdx.x;
  if (r0 >= r1 || c >= a.cols) return;
  float* sp = a.scales + panel[2] * a.cols + c;
  if (!kQuant) {
    const float s = *sp;
    for (int64_t r = r0; r < r1; ++r)
      a.out[r * a.cols + c] = decode(a.codes[r * a.cols + c], a) * s;
    return;
  }
  uint32_t m = 0;
  for (int64_t r = r0; r < r1; ++r) m = max(m, abs_bits(a.x[r * a.cols + c]));
  const float s = tile_scale(m, a);
  *sp = s;
  for (int64_t r = r0; r < r1; ++r)
    a.codes[r * a.cols + c] = encode(__fdiv_rn(a.x[r * a.cols + c], s), a);
}

QuantArgs args_of(Context& ctx, const Fp8Tensor& q, bool pow2) {
  QuantArgs a;
  a.codes = static_cast<uint8_t*>(q.codes.data);
  a.scales = q.scales.ptr<float>();
  a.e4m3 = q.codes.dtype == core::DType::e4m3;
  a.fmt_max = a.e4m3 ? kE4m3Max : kE5m2Max;
  a.pow2 = pow2;
  a.errors = core::cuda_state(ctx).errors;
  const Tensor& c = q.codes;
  if (q.tiling == Fp8Tiling::block_128x128 && c.ndim == 3) {
    a.matrices = c.shape[0];
    a.rows = c.shape[1];
  } else {
    a.rows = c.rows();
  }
  a.cols = c.cols();
  return a;
}

template <bool kQuant>
void run_dense(Context& ctx, const Fp8Tensor& q, QuantArgs a) {
  cudaStream_t st = core::compute_stream(ctx);
  const unsigned groups = static_cast<unsigned>((a.cols + kT - 1) / kT);
  switch (q.tiling) {
    case Fp8Tiling::row_1x128:
      tiles_kernel<kQuant><<<dim3(static_cast<unsigned>(a.rows), groups), kT, 0, st>>>(a, 1);
      break;
    case Fp8Tiling::block_128x128: {
      const int64_t panels = a.matrices * ((a.rows + kT - 1) / kT);
      tiles_kernel<kQuant><<<dim3(static_cast<unsigned>(panels), groups), kT, 0, st>>>(a, kT);
      break;
    }
    case Fp8Tiling::col_128x1:
      columns_kernel<kQuant>
          <<<dim3(static_cast<unsigned>((a.rows + kT - 1) / kT), groups), kT, 0, st>>>(a);
      break;
  }
  FLOT_CUDA_LAUNCH();
}

template <bool kQuant>
void run_segments(Context& ctx, const Tensor& offsets, QuantArgs a) {
  a.offsets = offsets.ptr<int32_t>();
  a.segments = static_cast<int>(offsets.shape[0] - 1);
  const unsigned groups = static_cast<unsigned>((a.cols + kT - 1) / kT);
  const unsigned slots = static_cast<unsigned>(a.rows / kT + a.segments);
  columns_kernel<kQuant><<<dim3(slots, groups), kT, 0, core::compute_stream(ctx)>>>(a);
  FLOT_CUDA_LAUNCH();
}

}  // namespace

void fp8_quantize(Context& ctx, const Tensor& x, const Fp8Tensor& q, bool pow2_scales) {
  QuantArgs a = args_of(ctx, q, pow2_scales);
  a.x = x.ptr<float>();
  run_dense<true>(ctx, q, a);
}

void fp8_quantize_segments(Context& ctx, const Tensor& x, const Tensor& offsets, const Fp8Tensor& q,
                           bool pow2_scales) {
  // Scale rows between segments belong to no tile: zero, as on the CPU.
  FLOT_CUDA(cudaMemsetAsync(q.scales.data, 0, q.scales.bytes(), core::compute_stream(ctx)));
  QuantArgs a = args_of(ctx, q, pow2_scales);
  a.x = x.ptr<float>();
  run_segments<true>(ctx, offsets, a);
}

void fp8_dequantize(Context& ctx, const Fp8Tensor& q, const Tensor& x) {
  QuantArgs a = args_of(ctx, q, false);
  a.out = x.ptr<float>();
  run_dense<false>(ctx, q, a);
}

void fp8_dequantize_segments(Context& ctx, const Fp8Tensor& q, const Tensor& offsets,
                             const Tensor& x) {
  QuantArgs a = args_of(ctx, q, false);
  a.out = x.ptr<float>();
  run_segments<false>(ctx, offsets, a);
}

}  // namespace kernels::cuda
