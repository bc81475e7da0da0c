// cuBLASLt matmuls of kernels/lt_plan.hpp plans, and the dense FP32 / BF16 GEMMs of the CUDA
// backend (kernels::gemm and kernels::gemm_bf16 on GPU tensors).
#include "kernels/cuda/lt_gemm.hpp"

#include "core/cuda/cuda_check.hpp"
#include "kernels/cuda/device_utils.hpp"
#include "kernels/cuda_ops.hpp"

namespace kernels::cuda {

namespace detail {

namespace {

cudaDataType_t cuda_type(lt::LtType t) {
  switch (t) {
    case lt::LtType::f32:
      return CUDA_R_32F;
    case lt::LtType::bf16:
      return CUDA_R_16BF;
    case lt::LtType::e4m3:
      return CUDA_R_8F_E4M3;
    case lt::LtType::e5m2:
      return CUDA_R_8F_E5M2;
  }
  return CUDA_R_32F;
}

int32_t scale_mode(lt::ScaleMode m) {
  return m == lt::ScaleMode::vec128 ? CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F
                                    : CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F;
}

// The descriptors of one call, destroyed on scope exit (statuses ignored: destructors never throw).
struct Descriptors {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~Descriptors() {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

template <class T>
void set_desc(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const T& value) {
  FLOT_CUBLAS(cublasLtMatmulDescSetAttribute(d, attr, &value, sizeof(value)));
}

template <class T>
void set_pref(cublasLtMatmulPreference_t p, cublasLtMatmulPreferenceAttributes_t attr,
              const T& value) {
  FLOT_CUBLAS(cublasLtMatmulPreferenceSetAttribute(p, attr, &value, sizeof(value)));
}

void layout(cublasLtMatrixLayout_t* l, const lt::LtMatrix& m) {
  FLOT_CUBLAS(cublasLtMatrixLayoutCreate(l, cuda_type(m.type), static_cast<uint64_t>(m.rows),
                                         static_cast<uint64_t>(m.cols), m.ld));
}

}  // namespace

bool lt_matmul(core::CudaState& s, const lt::LtPlan& p, const void* a, const void* b,
               const float* sa, const float* sb, float* c, float alpha, float beta) {
  const int align = lt::pointer_alignment({a, b, c, sa, sb});
  const std::string key = p.key(beta != 0.0f, align);
  auto cached = s.algos.find(key);
  if (cached != s.algos.end() && !cached->second.found) return false;

  Descriptors d;
  FLOT_CUBLAS(cublasLtMatmulDescCreate(&d.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = p.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t tb = p.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  set_desc(d.op, CUBLASLT_MATMUL_DESC_TRANSA, ta);
  set_desc(d.op, CUBLASLT_MATMUL_DESC_TRANSB, tb);
  if (p.scale_a.mode != lt::ScaleMode::none) {
    set_desc(d.op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, scale_mode(p.scale_a.mode));
    set_desc(d.op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, scale_mode(p.scale_b.mode));
    const void* sap = sa;
    const void* sbp = sb;
    set_desc(d.op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, sap);
    set_desc(d.op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, sbp);
  }
  layout(&d.a, p.a);
  layout(&d.b, p.b);
  layout(&d.c, p.c);

  if (cached == s.algos.end()) {
    FLOT_CUBLAS(cublasLtMatmulPreferenceCreate(&d.pref));
    const uint64_t ws = s.workspace_bytes;
    const uint32_t al = static_cast<uint32_t>(align);
    set_pref(d.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, ws);
    set_pref(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, al);
    set_pref(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, al);
    set_pref(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, al);
    set_pref(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, al);
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(s.lt, d.op, d.a, d.b, d.c, d.c, d.pref, 1, &result, &found);
    // NOT_SUPPORTED means no algorithm for this combination: the SIMT GEMM takes it.
    if (st != CUBLAS_STATUS_NOT_SUPPORTED) FLOT_CUBLAS(st);
    core::LtAlgo entry;
    entry.found = st == CUBLAS_STATUS_SUCCESS && found > 0;
    if (entry.found) entry.algo = result.algo;
    cached = s.algos.emplace(key, entry).first;
    if (!entry.found) return false;
  }
  FLOT_CUBLAS(cublasLtMatmul(s.lt, d.op, &alpha, a, d.a, b, d.b, &beta, c, d.c, c, d.c,
                             &cached->second.algo, s.workspace, s.workspace_bytes, s.compute));
  return true;
}

void gemm_rowmajor(core::CudaState& s, int64_t M, int64_t N, int64_t K, const void* A,
                   OperandKind a_kind, bool trans_a, const void* B, OperandKind b_kind,
                   bool trans_b, float* C, float alpha, float beta) {
  if (M == 0 || N == 0) return;
  SimtGemm g;
  g.m = M;
  g.n = N;
  g.k = K;
  g.a = {A, a_kind, trans_a ? M : K, trans_a, 0};
  g.b = {B, b_kind, trans_b ? K : N, trans_b, 0};
  g.c = C;
  g.ldc = N;
  g.alpha = alpha;
  g.beta = beta;
  g.errors = s.errors;
  if (K > 0) {
    const bool bf16 = a_kind != OperandKind::f32 || b_kind != OperandKind::f32;
    core::ScratchScope scope(*s.scratch);
    // BF16 tensor cores take bf16 operands: round f32 ones into scratch first.
    auto as_bf16 = [&](const void* p, OperandKind kind, int64_t n) -> const void* {
      if (kind == OperandKind::bf16) return p;
      auto t = s.scratch->alloc(core::DType::bf16, {n});
      launch_f32_to_bf16(static_cast<const float*>(p), static_cast<uint16_t*>(t.data), n,
                         s.compute);
      return t.data;
    };
    const void* a = bf16 ? as_bf16(A, a_kind, M * K) : A;
    const void* b = bf16 ? as_bf16(B, b_kind, K * N) : B;
    const auto type = bf16 ? lt::LtType::bf16 : lt::LtType::f32;
    const lt::LtPlan plan = lt::plan_rowmajor(type, lt::LtType::f32, M, N, K, trans_a, trans_b);
    if (lt_matmul(s, plan, b, a, nullptr, nullptr, C, alpha, beta)) return;
    ++s.lt_fallbacks;
  }
  simt_gemm(g, s.compute);  // also K = 0: C = beta C
}

}  // namespace detail

namespace {

OperandKind kind_of(const Tensor& t, bool bf16) {
  if (t.dtype == core::DType::bf16) return OperandKind::bf16;
  return bf16 ? OperandKind::f32_as_bf16 : OperandKind::f32;
}

}  // namespace

void gemm(Context& ctx, int64_t m, int64_t n, int64_t k, const Tensor& A, bool trans_a,
          const Tensor& B, bool trans_b, const Tensor& C, double alpha, double beta, bool bf16) {
  detail::gemm_rowmajor(core::cuda_state(ctx), m, n, k, A.data, kind_of(A, bf16), trans_a, B.data,
                        kind_of(B, bf16), trans_b, C.ptr<float>(), static_cast<float>(alpha),
                        static_cast<float>(beta));
}

}  // namespace kernels::cuda
