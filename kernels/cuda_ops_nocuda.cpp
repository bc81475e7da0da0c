// kernels/cuda_ops.hpp in a build without the CUDA backend. No tensor can live on a GPU there
// (CudaRuntime refuses to start), so reaching one of these is a bug; each says so.
#include "core/error.hpp"
#include "kernels/cuda_ops.hpp"

namespace kernels::cuda {

namespace {
[[noreturn]] void unavailable(const char* op) {
  FLOT_THROW(core::InternalError,
             "{}: a tensor claims to live on a GPU but this binary was built without the CUDA "
             "backend",
             op);
}
}  // namespace

#define FLOT_NO_CUDA(name, params) \
  void name params {               \
    unavailable(#name);            \
  }

FLOT_NO_CUDA(fill, (const Tensor&, double))
FLOT_NO_CUDA(copy, (const Tensor&, const Tensor&))
FLOT_NO_CUDA(axpy, (double, const Tensor&, const Tensor&))
FLOT_NO_CUDA(scale, (const Tensor&, double))
double sum_squares(const Tensor&) {
  unavailable("sum_squares");
}
FLOT_NO_CUDA(cast, (Context&, const Tensor&, const Tensor&))
FLOT_NO_CUDA(gemm, (Context&, int64_t, int64_t, int64_t, const Tensor&, bool, const Tensor&, bool,
                    const Tensor&, double, double, bool))
FLOT_NO_CUDA(grouped_gemm, (Context&, const Tensor&, const Tensor&, bool, const Tensor&,
                            const Tensor&, double, double, bool))
FLOT_NO_CUDA(grouped_gemm_wgrad,
             (Context&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, bool))
FLOT_NO_CUDA(embedding_forward, (Context&, const Tensor&, const Tensor&, const Tensor&))
FLOT_NO_CUDA(embedding_backward, (Context&, const Tensor&, const Tensor&, const Tensor&))
FLOT_NO_CUDA(rmsnorm_forward,
             (Context&, const Tensor&, const Tensor&, double, const Tensor&, const Tensor&))
FLOT_NO_CUDA(rmsnorm_backward_input,
             (Context&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&))
FLOT_NO_CUDA(rmsnorm_backward_weight,
             (Context&, const Tensor&, const Tensor&, const Tensor&, const Tensor&))
FLOT_NO_CUDA(rope, (Context&, const Tensor&, int64_t, int64_t, int64_t, double, bool))
FLOT_NO_CUDA(swiglu_forward, (Context&, const Tensor&, const Tensor&))
FLOT_NO_CUDA(swiglu_backward, (Context&, const Tensor&, const Tensor&, const Tensor&))
FLOT_NO_CUDA(attention_forward, (Context&, const Tensor&, const Tensor&, const Tensor&, int64_t,
                                 double, const Tensor&, const Tensor&))
FLOT_NO_CUDA(attention_backward,
             (Context&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
              const Tensor&, int64_t, double, const Tensor&, const Tensor&, const Tensor&))
FLOT_NO_CUDA(head_ce_forward,
             (Context&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&))
FLOT_NO_CUDA(head_ce_backward, (Context&, const Tensor&, const Tensor&, const Tensor&,
                                const Tensor&, double, const Tensor&, const Tensor&))
FLOT_NO_CUDA(gate_forward, (Context&, const GateShape&, const Tensor&, const Tensor&, const Tensor&,
                            const Tensor&, const Tensor&))
FLOT_NO_CUDA(gate_backward, (Context&, const GateShape&, const Tensor&, const Tensor&,
                             const Tensor&, const Tensor&, const Tensor&))
double balance_loss_forward(Context&, const Tensor&, int, int64_t, double) {
  unavailable("balance_loss_forward");
}
FLOT_NO_CUDA(balance_loss_backward,
             (Context&, const Tensor&, int, int64_t, double, double, const Tensor&))
FLOT_NO_CUDA(moe_plan, (Context&, const Tensor&, int, const Tensor&, const Tensor&, const Tensor&))
FLOT_NO_CUDA(moe_permute, (Context&, const Tensor&, const Tensor&, int, const Tensor&))
FLOT_NO_CUDA(moe_permute_backward, (Context&, const Tensor&, const Tensor&, int, const Tensor&))
FLOT_NO_CUDA(moe_combine, (Context&, const Tensor&, const Tensor&, const Tensor&, const Tensor&))
FLOT_NO_CUDA(moe_combine_backward, (Context&, const Tensor&, const Tensor&, const Tensor&,
                                    const Tensor&, const Tensor&, const Tensor&))
FLOT_NO_CUDA(fp8_quantize, (Context&, const Tensor&, const Fp8Tensor&, bool))
FLOT_NO_CUDA(fp8_quantize_segments,
             (Context&, const Tensor&, const Tensor&, const Fp8Tensor&, bool))
FLOT_NO_CUDA(fp8_dequantize, (Context&, const Fp8Tensor&, const Tensor&))
FLOT_NO_CUDA(fp8_dequantize_segments, (Context&, const Fp8Tensor&, const Tensor&, const Tensor&))
FLOT_NO_CUDA(fp8_gemm,
             (Context&, Fp8Kind, const Fp8Tensor&, const Fp8Tensor&, const Tensor&, double))
FLOT_NO_CUDA(fp8_grouped_gemm, (Context&, Fp8Kind, const Fp8Tensor&, const Fp8Tensor&,
                                const Tensor&, int, const Tensor&, double))
FLOT_NO_CUDA(adamw_step, (const Tensor&, const Tensor&, const Tensor&, const Tensor&, double,
                          double, double, double, int64_t, double, double, bool))

#undef FLOT_NO_CUDA

}  // namespace kernels::cuda
