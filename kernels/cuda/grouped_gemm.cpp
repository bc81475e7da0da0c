// kernels::grouped_gemm and grouped_gemm_wgrad (f32 and BF16 operands) on the GPU: one SIMT
// launch over every expert, offsets read on the device. cuBLASLt 13.1 has no grouped matmul (the
// CUBLASLT_BATCH_MODE_GROUPED API arrives in later releases), and a host loop over experts
// would need the offsets on the host, a synchronization per call.
#include "kernels/cuda/simt_gemm.hpp"
#include "kernels/cuda_ops.hpp"

namespace kernels::cuda {

namespace {

OperandKind kind_of(const Tensor& t, bool bf16) {
  if (t.dtype == core::DType::bf16) return OperandKind::bf16;
  return bf16 ? OperandKind::f32_as_bf16 : OperandKind::f32;
}

}  // namespace

void grouped_gemm(Context& ctx, const Tensor& A, const Tensor& B, bool trans_b,
                  const Tensor& offsets, const Tensor& C, double alpha, double beta, bool bf16) {
  core::CudaState& s = core::cuda_state(ctx);
  const int64_t e = B.shape[0], m = A.rows(), kd = A.cols();
  const int64_t n = trans_b ? B.shape[1] : B.shape[2];
  SimtGemm g;
  g.m = m;
  g.n = n;
  g.k = kd;
  g.a = {A.data, kind_of(A, bf16), kd, false, 0};
  // B[e] is [n, k] (trans_b) or [k, n]; op(B)(kk, j) = trans_b ? B[e][j][kk] : B[e][kk][j].
  g.b = {B.data, kind_of(B, bf16), trans_b ? kd : n, trans_b, n * kd};
  g.c = C.ptr<float>();
  g.ldc = n;
  g.alpha = static_cast<float>(alpha);
  g.beta = static_cast<float>(beta);
  g.grouping = Grouping::rows;
  g.offsets = offsets.ptr<int32_t>();
  g.groups = static_cast<int>(e);
  g.errors = s.errors;
  simt_gemm(g, s.compute);
}

void grouped_gemm_wgrad(Context& ctx, const Tensor& dC, const Tensor& A, const Tensor& offsets,
                        const Tensor& dB, bool bf16) {
  core::CudaState& s = core::cuda_state(ctx);
  const int64_t e = dB.shape[0], n = dB.shape[1], kd = dB.shape[2], m = A.rows();
  // dB[e] [n, k] += dC[seg]^T A[seg]: op(A)(i, r) = dC[r][i], op(B)(r, j) = A[r][j].
  SimtGemm g;
  g.m = n;
  g.n = kd;
  g.k = m;
  g.a = {dC.data, kind_of(dC, bf16), n, true, 0};
  g.b = {A.data, kind_of(A, bf16), kd, false, 0};
  g.c = dB.ptr<float>();
  g.ldc = kd;
  g.c_group_stride = n * kd;
  g.accumulate = true;
  g.grouping = Grouping::reduction;
  g.offsets = offsets.ptr<int32_t>();
  g.groups = static_cast<int>(e);
  g.errors = s.errors;
  simt_gemm(g, s.compute);
}

}  // namespace kernels::cuda
