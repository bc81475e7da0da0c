// The FP8 GEMMs on the GPU (kernels/fp8_ops.hpp). Dense: cuBLASLt's block-scaled FP8 matmul
// (VEC128 activations, BLK128x128 weights) through a kernels/lt_plan.hpp plan: transpose the code
// matrices and repack the scales it asks for into device scratch, then one cublasLtMatmul.
// Shapes outside cuBLASLt's alignment rules, E5M2 x E5M2 and plans it has no algorithm for run on
// the SIMT kernel, which follows the CPU emulation's block structure. Grouped: the SIMT kernel in
// one launch over every expert (no grouped cuBLASLt matmul in this CUDA release).
#include "core/cuda/cuda_check.hpp"
#include "kernels/cuda/device_utils.hpp"
#include "kernels/cuda/lt_gemm.hpp"
#include "kernels/cuda/simt_gemm.hpp"
#include "kernels/cuda_ops.hpp"

namespace kernels::cuda {

namespace {

constexpr int64_t kT = 128;
int64_t tiles(int64_t n) {
  return (n + kT - 1) / kT;
}

OperandKind fp8_kind(const Tensor& codes) {
  return codes.dtype == core::DType::e4m3 ? OperandKind::e4m3 : OperandKind::e5m2;
}
lt::LtType lt_format(const Tensor& codes) {
  return codes.dtype == core::DType::e4m3 ? lt::LtType::e4m3 : lt::LtType::e5m2;
}

// The SIMT problem of one FP8 GEMM, as kernels/cpu/fp8_gemm.cpp's problem(): m activation rows,
// weight dims [n, k]; a the activation side, b the weight side (x for wgrad).
SimtGemm simt_problem(Fp8Kind kind, int64_t m, int64_t n, int64_t k, const Fp8Tensor& a,
                      const Fp8Tensor& b, float* c, float beta) {
  const int64_t nb = tiles(n), kb = tiles(k);
  SimtGemm g;
  g.scaled = true;
  g.sa = a.scales.ptr<float>();
  g.sb = b.scales.ptr<float>();
  g.c = c;
  g.beta = beta;
  switch (kind) {
    case Fp8Kind::forward:
      g.m = m, g.n = n, g.k = k;
      g.a = {a.codes.data, fp8_kind(a.codes), k, false, 0};
      g.b = {b.codes.data, fp8_kind(b.codes), k, true, n * k};
      g.sa_i = kb, g.sa_k = 1, g.sb_k = 1, g.sb_j = kb, g.sb_shift = 7, g.ldc = n;
      g.sb_group_stride = nb * kb;
      break;
    case Fp8Kind::dgrad:
      g.m = m, g.n = k, g.k = n;
      g.a = {a.codes.data, fp8_kind(a.codes), n, false, 0};
      g.b = {b.codes.data, fp8_kind(b.codes), k, false, n * k};
      g.sa_i = nb, g.sa_k = 1, g.sb_k = kb, g.sb_j = 1, g.sb_shift = 7, g.ldc = k;
      g.sb_group_stride = nb * kb;
      break;
    case Fp8Kind::wgrad:
      g.m = n, g.n = k, g.k = m;
      g.a = {a.codes.data, fp8_kind(a.codes), n, true, 0};
      g.b = {b.codes.data, fp8_kind(b.codes), k, false, 0};
      g.sa_i = 1, g.sa_k = n, g.sb_k = k, g.sb_j = 1, g.sb_shift = 0, g.ldc = k;
      g.accumulate = true;
      break;
  }
  return g;
}

// Weight dims [n, k]: from the weight (forward, dgrad) or the operands (wgrad).
std::pair<int64_t, int64_t> weight_dims(Fp8Kind kind, const Fp8Tensor& a, const Fp8Tensor& b) {
  if (kind == Fp8Kind::wgrad) return {a.codes.cols(), b.codes.cols()};
  return {b.codes.size(-2), b.codes.cols()};
}

// cuBLASLt path of a dense GEMM; false when the plan is not eligible or has no algorithm.
bool lt_fp8(core::CudaState& s, Fp8Kind kind, int64_t m, int64_t n, int64_t k, const Fp8Tensor& a,
            const Fp8Tensor& b, float* c, float beta) {
  const lt::Fp8Plan plan = lt::plan_fp8(kind, m, n, k, lt_format(a.codes), lt_format(b.codes));
  const int align = lt::pointer_alignment({a.codes.data, b.codes.data, c});
  if (!lt::fp8_lt_supported(plan.gemm, align)) return false;
  core::ScratchScope scope(*s.scratch);
  auto codes = [&](const lt::CodeSource& src) -> const void* {
    const Fp8Tensor& t = src.from_a ? a : b;
    if (!src.transpose) return t.codes.data;
    auto out = s.scratch->alloc(core::DType::e4m3, {src.rows * src.cols});
    detail::launch_transpose_bytes(static_cast<const uint8_t*>(t.codes.data), src.rows, src.cols,
                                   static_cast<uint8_t*>(out.data), s.compute);
    return out.data;
  };
  auto scales = [&](const lt::ScaleRepack& r, bool from_a) -> const float* {
    const Fp8Tensor& t = from_a ? a : b;
    if (r.identity() && lt::pointer_alignment({t.scales.data}) >= 16) return t.scales.ptr<float>();
    auto out = s.scratch->alloc(core::DType::f32, {r.dst_count});
    detail::launch_repack(r, t.scales.ptr<float>(), out.ptr<float>(), s.compute);
    return out.ptr<float>();
  };
  const void* A = codes(plan.codes_a);
  const void* B = codes(plan.codes_b);
  const float* sa = scales(plan.repack_a, plan.codes_a.from_a);
  const float* sb = scales(plan.repack_b, plan.codes_b.from_a);
  if (detail::lt_matmul(s, plan.gemm, A, B, sa, sb, c, 1.0f, plan.accumulate ? 1.0f : beta))
    return true;
  ++s.lt_fallbacks;
  return false;
}

}  // namespace

void fp8_gemm(Context& ctx, Fp8Kind kind, const Fp8Tensor& a, const Fp8Tensor& b, const Tensor& c,
              double beta) {
  core::CudaState& s = core::cuda_state(ctx);
  const int64_t m = a.codes.rows();
  const auto [n, k] = weight_dims(kind, a, b);
  if (lt_fp8(s, kind, m, n, k, a, b, c.ptr<float>(), static_cast<float>(beta))) return;
  SimtGemm g = simt_problem(kind, m, n, k, a, b, c.ptr<float>(), static_cast<float>(beta));
  g.errors = s.errors;
  simt_gemm(g, s.compute);
}

void fp8_grouped_gemm(Context& ctx, Fp8Kind kind, const Fp8Tensor& a, const Fp8Tensor& b,
                      const Tensor& offsets, int experts, const Tensor& c, double beta) {
  core::CudaState& s = core::cuda_state(ctx);
  const int64_t m = a.codes.rows();
  const auto [n, k] = weight_dims(kind, a, b);
  SimtGemm g = simt_problem(kind, m, n, k, a, b, c.ptr<float>(), static_cast<float>(beta));
  g.grouping = kind == Fp8Kind::wgrad ? Grouping::reduction : Grouping::rows;
  g.offsets = offsets.ptr<int32_t>();
  g.groups = experts;
  if (kind == Fp8Kind::wgrad) g.c_group_stride = n * k;
  g.errors = s.errors;
  simt_gemm(g, s.compute);
}

}  // namespace kernels::cuda
