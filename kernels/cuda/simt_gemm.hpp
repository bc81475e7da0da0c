// The SIMT GEMM: one CUDA-core kernel for every GEMM cuBLASLt does not run. It covers, in one
// launch each, the grouped GEMMs over experts (row segments: forward and dgrad; reduction
// segments: weight gradients), the block-scaled FP8 GEMMs with the CPU emulation's structure
// (per 128-deep reduction block: acc += (sa * sb) * partial), and dense GEMMs cuBLASLt has no
// algorithm for. Operands are read as f32, f32 rounded to BF16, BF16 or FP8 codes (decoded
// exactly), so FP32 accumulation of exact products is what every variant computes.
//
// Groups come from device offsets [groups + 1] (never read on the host): the kernel validates
// them (0 first, ascending, the row count last) and records bad_offsets instead of computing.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/cuda/cuda_state.hpp"

namespace kernels::cuda {

enum class OperandKind : int32_t { f32, f32_as_bf16, bf16, e4m3, e5m2 };

// op(X)(r, kk) of a row-major operand: trans ? data[kk * ld + r] : data[r * ld + kk] for A, and
// op(B)(kk, j) = trans ? data[j * ld + kk] : data[kk * ld + j]. group_stride: elements between
// the matrices of consecutive groups (0: one matrix for all).
struct SimtOperand {
  const void* data = nullptr;
  OperandKind kind = OperandKind::f32;
  int64_t ld = 0;
  bool trans = false;
  int64_t group_stride = 0;
};

enum class Grouping : int32_t { none, rows, reduction };

struct SimtGemm {
  // C[m, n] = alpha op(A)[m, k] op(B)[k, n] (+ beta C, or += with accumulate).
  // rows:      group g owns output rows [off[g], off[g+1]); B is per group.
  // reduction: group g sums over k in [off[g], off[g+1]) into its own C (c_group_stride apart).
  int64_t m = 0, n = 0, k = 0;
  SimtOperand a, b;
  float* c = nullptr;
  int64_t ldc = 0;
  int64_t c_group_stride = 0;
  float alpha = 1.0f, beta = 0.0f;
  bool accumulate = false;
  Grouping grouping = Grouping::none;
  const int32_t* offsets = nullptr;
  int groups = 1;
  // Block scales (FP8): sa(i, kb) = sa[(s0 + kb) * sa_k + i * sa_i],
  // sb(kb, j) = sb[g * sb_group_stride + (s0 + kb) * sb_k + (j >> sb_shift) * sb_j], with kb the
  // 128-block of the reduction counted from the group's start and s0 = off[g] / 128 + g for
  // reduction groups (kernels/fp8_ops.hpp's segment scale rows), else 0.
  bool scaled = false;
  const float* sa = nullptr;
  int64_t sa_i = 0, sa_k = 0;
  const float* sb = nullptr;
  int64_t sb_k = 0, sb_j = 0, sb_group_stride = 0;
  int sb_shift = 0;
  core::DeviceErrorWord* errors = nullptr;
};

void simt_gemm(const SimtGemm& g, cudaStream_t stream);

}  // namespace kernels::cuda
