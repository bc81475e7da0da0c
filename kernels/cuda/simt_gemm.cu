// The SIMT GEMM kernel (kernels/cuda/simt_gemm.hpp): 64 x 64 output tiles, 16-deep reduction
// steps through shared memory, 4 x 4 outputs per thread; FP32 accumulation.
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/simt_gemm.hpp"

namespace kernels::cuda {

namespace {

constexpr int kBM = 64, kBN = 64, kBK = 16, kScaleBlock = 128;

__device__ inline float decode(const SimtOperand& o, int64_t idx) {
  switch (o.kind) {
    case OperandKind::f32:
      return static_cast<const float*>(o.data)[idx];
    case OperandKind::f32_as_bf16:
      return round_bf16(static_cast<const float*>(o.data)[idx]);
    case OperandKind::bf16:
      return bf16_value(static_cast<const uint16_t*>(o.data)[idx]);
    case OperandKind::e4m3: {
      const __half h(
          __nv_cvt_fp8_to_halfraw(static_cast<const __nv_fp8_storage_t*>(o.data)[idx], __NV_E4M3));
      return __half2float(h);
    }
    case OperandKind::e5m2: {
      const __half h(
          __nv_cvt_fp8_to_halfraw(static_cast<const __nv_fp8_storage_t*>(o.data)[idx], __NV_E5M2));
      return __half2float(h);
    }
  }
  return 0.0f;
}

// Offsets start at 0, never decrease and end at `total`.
__device__ bool offsets_valid(const int32_t* off, int groups, int64_t total) {
  if (off[0] != 0 || off[groups] != total) return false;
  for (int g = 0; g < groups; ++g)
    if (off[g + 1] < off[g]) return false;
  return true;
}

template <bool kScaled>
__global__ void __launch_bounds__(256) simt_gemm_kernel(SimtGemm g) {
  __shared__ float As[kBK][kBM + 4];
  __shared__ float Bs[kBK][kBN + 4];
  __shared__ int64_t range[5];  // row0, row1, red0, red1, group
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;

  if (tid == 0) {
    int64_t row0 = int64_t(blockIdx.y) * kBM, row1 = min(g.m, row0 + kBM), red0 = 0, red1 = g.k;
    int64_t group = 0;
    if (g.grouping != Grouping::none) {
      const int64_t total = g.grouping == Grouping::rows ? g.m : g.k;
      if (!offsets_valid(g.offsets, g.groups, total)) {
        if (blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0)
          record_error(g.errors, core::DeviceError::bad_offsets, 0, total);
        row0 = row1 = 0;
      } else if (g.grouping == Grouping::rows) {
        // Tile slot blockIdx.y: the groups' tiles in order, ceil(rows / kBM) per group.
        int64_t slot = blockIdx.y;
        row0 = row1 = 0;
        for (int e = 0; e < g.groups; ++e) {
          const int64_t len = g.offsets[e + 1] - g.offsets[e], tiles = (len + kBM - 1) / kBM;
          if (slot < tiles) {
            row0 = g.offsets[e] + slot * kBM;
            row1 = min(int64_t(g.offsets[e + 1]), row0 + kBM);
            group = e;
            break;
          }
          slot -= tiles;
        }
      } else {
        group = blockIdx.z;
        red0 = g.offsets[group];
        red1 = g.offsets[group + 1];
      }
    }
    range[0] = row0;
    range[1] = row1;
    range[2] = red0;
    range[3] = red1;
    range[4] = group;
  }
  __syncthreads();
  const int64_t row0 = range[0], row1 = range[1], red0 = range[2], red1 = range[3];
  const int64_t group = range[4];
  const int64_t col0 = int64_t(blockIdx.x) * kBN;
  if (row0 >= row1) return;
  // Empty reduction (an expert without rows in a weight gradient): nothing to add.
  if (red0 >= red1 && g.accumulate) return;

  const int64_t b_base = group * g.b.group_stride;
  float* c = g.c + group * g.c_group_stride;
  const int64_t s0 = g.grouping == Grouping::reduction ? red0 / kScaleBlock + group : 0;

  float acc[4][4], part[4][4];
#pragma unroll
  for (int r = 0; r < 4; ++r)
#pragma unroll
    for (int q = 0; q < 4; ++q) acc[r][q] = part[r][q] = 0.0f;

  for (int64_t k0 = red0; k0 < red1; k0 += kBK) {
    // Stage op(A)[row0 : +kBM, k0 : +kBK] and op(B)[k0 : +kBK, col0 : +kBN], zeros outside.
    for (int e = tid; e < kBM * kBK; e += blockDim.x) {
      int ii, kk;
      if (g.a.trans) {
        ii = e % kBM, kk = e / kBM;  // contiguous along the rows of op(A)
      } else {
        ii = e / kBK, kk = e % kBK;
      }
      const int64_t r = row0 + ii, q = k0 + kk;
      As[kk][ii] =
          r < row1 && q < red1 ? decode(g.a, g.a.trans ? q * g.a.ld + r : r * g.a.ld + q) : 0.0f;
    }
    for (int e = tid; e < kBK * kBN; e += blockDim.x) {
      int jj, kk;
      if (g.b.trans) {
        jj = e / kBK, kk = e % kBK;
      } else {
        jj = e % kBN, kk = e / kBN;
      }
      const int64_t j = col0 + jj, q = k0 + kk;
      Bs[kk][jj] = j < g.n && q < red1
                       ? decode(g.b, b_base + (g.b.trans ? j * g.b.ld + q : q * g.b.ld + j))
                       : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kBK; ++kk) {
      float a[4], b[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) a[r] = As[kk][ty + 16 * r];
#pragma unroll
      for (int q = 0; q < 4; ++q) b[q] = Bs[kk][tx + 16 * q];
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          if (kScaled) {
            part[r][q] += a[r] * b[q];
          } else {
            acc[r][q] += a[r] * b[q];
          }
        }
    }
    __syncthreads();
    if (kScaled) {
      // End of a 128-deep block (or of the reduction): promote into the FP32 accumulator.
      const int64_t done = k0 + kBK - red0;
      if (done % kScaleBlock == 0 || k0 + kBK >= red1) {
        const int64_t kb = (k0 - red0) / kScaleBlock + s0;
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int64_t i = row0 + ty + 16 * r;
          const float sa = i < row1 ? g.sa[kb * g.sa_k + i * g.sa_i] : 0.0f;
#pragma unroll
          for (int q = 0; q < 4; ++q) {
            const int64_t j = col0 + tx + 16 * q;
            const float sb =
                j < g.n ? g.sb[group * g.sb_group_stride + kb * g.sb_k + (j >> g.sb_shift) * g.sb_j]
                        : 0.0f;
            acc[r][q] = __fadd_rn(acc[r][q], __fmul_rn(sa * sb, part[r][q]));
            part[r][q] = 0.0f;
          }
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const int64_t i = row0 + ty + 16 * r;
    if (i >= row1) continue;
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int64_t j = col0 + tx + 16 * q;
      if (j >= g.n) continue;
      float& out = c[i * g.ldc + j];
      const float v = g.alpha * acc[r][q];
      if (g.accumulate) {
        out += v;
      } else if (g.beta == 0.0f) {  // beta = 0 never reads C: it may hold NaN
        out = v;
      } else {
        out = v + g.beta * out;
      }
    }
  }
}

}  // namespace

void simt_gemm(const SimtGemm& g, cudaStream_t stream) {
  if (g.m == 0 || g.n == 0) return;
  const int64_t row_tiles = (g.m + kBM - 1) / kBM;
  dim3 grid(static_cast<unsigned>((g.n + kBN - 1) / kBN), static_cast<unsigned>(row_tiles), 1);
  if (g.grouping == Grouping::rows) grid.y = static_cast<unsigned>(row_tiles + g.groups);
  if (g.grouping == Grouping::reduction) grid.z = static_cast<unsigned>(g.groups);
  FLOT_CHECK(grid.y <= 65535 && grid.z <= 65535, "SIMT GEMM grid {} x {} x {} too large", grid.x,
             grid.y, grid.z);
  if (g.scaled) {
    simt_gemm_kernel<true><<<grid, 256, 0, stream>>>(g);
  } else {
    simt_gemm_kernel<false><<<grid, 256, 0, stream>>>(g);
  }
  FLOT_CUDA_LAUNCH();
}

}  // namespace kernels::cuda
