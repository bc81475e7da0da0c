// The CUDA implementations behind the launchers of kernels/ops.hpp, moe_ops.hpp, bf16_ops.hpp,
// fp8_ops.hpp and optim/adamw.hpp. The launchers validate shapes and dtypes, return on empty
// work and call these only with every tensor on the GPU and float tensors in f32; these trust
// their arguments. Work is queued on the context's compute stream (the ops without a context
// use the legacy default stream, which is ordered with the compute stream).
//
// Index checks that the CPU path does on the host before reading (tokens, targets, expert
// indices, segment offsets) happen on the device: a bad index is recorded in the device error
// word and its write skipped (core::CudaRuntime::raise_device_errors reports it).
//
// No CUDA header here: the implementations are in kernels/cuda/; a build without the CUDA
// backend links kernels/cuda_ops_nocuda.cpp, whose functions throw.
#pragma once

#include <cstdint>

#include "core/context.hpp"
#include "core/tensor.hpp"
#include "kernels/fp8_ops.hpp"
#include "kernels/lt_plan.hpp"
#include "kernels/moe_ops.hpp"

namespace kernels::cuda {

using core::Context;
using core::Tensor;

// ---- elementwise (legacy default stream) ---------------------------------------------------
void fill(const Tensor& x, double value);
// Byte copy between any two devices (host <-> device included); synchronous for host memory.
void copy(const Tensor& src, const Tensor& dst);
void axpy(double alpha, const Tensor& x, const Tensor& y);
void scale(const Tensor& x, double alpha);
double sum_squares(const Tensor& x);
// f32 <-> bf16
void cast(Context& ctx, const Tensor& src, const Tensor& dst);

// ---- GEMMs (row-major; shapes as kernels::gemm) ----------------------------------------------
// FP32 through cuBLASLt (CUBLAS_COMPUTE_32F); bf16 = true rounds f32 operands to BF16 (or takes
// bf16 operands) and multiplies on BF16 tensor cores with FP32 accumulation.
void gemm(Context& ctx, int64_t m, int64_t n, int64_t k, const Tensor& A, bool trans_a,
          const Tensor& B, bool trans_b, const Tensor& C, double alpha, double beta, bool bf16);
// kernels::grouped_gemm / grouped_gemm_wgrad in one launch over every expert.
void grouped_gemm(Context& ctx, const Tensor& A, const Tensor& B, bool trans_b,
                  const Tensor& offsets, const Tensor& C, double alpha, double beta, bool bf16);
void grouped_gemm_wgrad(Context& ctx, const Tensor& dC, const Tensor& A, const Tensor& offsets,
                        const Tensor& dB, bool bf16);

// ---- dense layers ------------------------------------------------------------------------------
void embedding_forward(Context& ctx, const Tensor& table, const Tensor& tokens, const Tensor& out);
void embedding_backward(Context& ctx, const Tensor& dout, const Tensor& tokens,
                        const Tensor& dtable);
void rmsnorm_forward(Context& ctx, const Tensor& x, const Tensor& w, double eps, const Tensor& y,
                     const Tensor& rstd);
void rmsnorm_backward_input(Context& ctx, const Tensor& dy, const Tensor& x, const Tensor& w,
                            const Tensor& rstd, const Tensor& dx);
void rmsnorm_backward_weight(Context& ctx, const Tensor& dy, const Tensor& x, const Tensor& rstd,
                             const Tensor& dw);
void rope(Context& ctx, const Tensor& x, int64_t seq_len, int64_t offset, int64_t rope_dim,
          double theta, bool inverse);
void swiglu_forward(Context& ctx, const Tensor& h, const Tensor& y);
void swiglu_backward(Context& ctx, const Tensor& dy, const Tensor& h, const Tensor& dh);
void attention_forward(Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                       int64_t seq_len, double scale, const Tensor& out, const Tensor& lse);
void attention_backward(Context& ctx, const Tensor& dout, const Tensor& q, const Tensor& k,
                        const Tensor& v, const Tensor& out, const Tensor& lse, int64_t seq_len,
                        double scale, const Tensor& dq, const Tensor& dk, const Tensor& dv);
void head_ce_forward(Context& ctx, const Tensor& x, const Tensor& W, const Tensor& targets,
                     const Tensor& losses, const Tensor& lse);
void head_ce_backward(Context& ctx, const Tensor& x, const Tensor& W, const Tensor& targets,
                      const Tensor& lse, double scale, const Tensor& dx, const Tensor& dW);

// ---- MoE ---------------------------------------------------------------------------------------
void gate_forward(Context& ctx, const GateShape& g, const Tensor& logits, const Tensor& bias,
                  const Tensor& scores, const Tensor& expert_idx, const Tensor& weights);
void gate_backward(Context& ctx, const GateShape& g, const Tensor& dweights, const Tensor& scores,
                   const Tensor& expert_idx, const Tensor& dscores_extra, const Tensor& dlogits);
double balance_loss_forward(Context& ctx, const Tensor& scores, int top_k, int64_t segment_len,
                            double alpha);
void balance_loss_backward(Context& ctx, const Tensor& scores, int top_k, int64_t segment_len,
                           double alpha, double dloss, const Tensor& dscores);
void moe_plan(Context& ctx, const Tensor& expert_idx, int num_experts, const Tensor& offsets,
              const Tensor& src, const Tensor& pos);
void moe_permute(Context& ctx, const Tensor& x, const Tensor& src, int top_k, const Tensor& xs);
void moe_permute_backward(Context& ctx, const Tensor& dxs, const Tensor& pos, int top_k,
                          const Tensor& dx);
void moe_combine(Context& ctx, const Tensor& ys, const Tensor& weights, const Tensor& pos,
                 const Tensor& y);
void moe_combine_backward(Context& ctx, const Tensor& dy, const Tensor& ys, const Tensor& weights,
                          const Tensor& pos, const Tensor& dys, const Tensor& dweights);

// ---- FP8 ---------------------------------------------------------------------------------------
// Bit-exact with the CPU quantizer (true division by the scale, satfinite round-to-nearest-even).
void fp8_quantize(Context& ctx, const Tensor& x, const Fp8Tensor& q, bool pow2_scales);
void fp8_quantize_segments(Context& ctx, const Tensor& x, const Tensor& offsets, const Fp8Tensor& q,
                           bool pow2_scales);
void fp8_dequantize(Context& ctx, const Fp8Tensor& q, const Tensor& x);
void fp8_dequantize_segments(Context& ctx, const Fp8Tensor& q, const Tensor& offsets,
                             const Tensor& x);
// Forward, data gradient, weight gradient (kernels/lt_plan.hpp).
using lt::Fp8Kind;
// Dense: cuBLASLt with VEC128 / BLK128x128 scales where its alignment rules hold, else the
// block-scaled SIMT kernel. beta as the launchers (wgrad accumulates).
void fp8_gemm(Context& ctx, Fp8Kind kind, const Fp8Tensor& a, const Fp8Tensor& b, const Tensor& c,
              double beta);
void fp8_grouped_gemm(Context& ctx, Fp8Kind kind, const Fp8Tensor& a, const Fp8Tensor& b,
                      const Tensor& offsets, int experts, const Tensor& c, double beta);

// ---- optimizer -----------------------------------------------------------------------------
// optim::adamw_step on the GPU (f32 parameters, f32 or bf16 moments); scalars as optim::AdamWHyper.
void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v,
                double beta1, double beta2, double eps, double weight_decay, int64_t step,
                double lr, double grad_scale, bool decay);

}  // namespace kernels::cuda
