// The compute ops behind one interface: dense ops (GEMM, embedding, RMSNorm, RoPE, attention,
// SwiGLU, fused output head + cross-entropy) with their backward passes.
//
// Each op is a host "launcher" (kernels/<op>.cpp) that validates shapes and dtypes, returns early
// on empty work, and dispatches on device and dtype to an implementation: kernels/cpu/ today
// (Eigen + OpenMP, templated on float and double so every gradient is checkable in float64),
// kernels/cuda/ later. The CPU implementation is the oracle for the CUDA one.
//
// Conventions: tensors are row-major views (core::Tensor); inputs come first, outputs last; an
// output is overwritten unless its comment says "accumulate" (+=). All float tensors of one call
// share a dtype (f32 or f64); token and index tensors are int32.
#pragma once

#include "core/context.hpp"
#include "core/tensor.hpp"

namespace kernels {

using core::Context;
using core::Tensor;

// ---- GEMM ------------------------------------------------------------------------------------
// C = alpha * op(A) op(B) + beta * C. Views of rank > 2 are folded to [rows, last dim].
// op(A) is [M, K], op(B) is [K, N], C is [M, N]; beta = 0 never reads C (it may hold NaN).
void gemm(Context& ctx, const Tensor& A, bool trans_a, const Tensor& B, bool trans_b,
          const Tensor& C, double alpha = 1.0, double beta = 0.0);

// ---- elementwise -----------------------------------------------------------------------------
void fill(const Tensor& x, double value);
void copy(const Tensor& src, const Tensor& dst);                  // same numel and dtype
void axpy(double alpha, const Tensor& x, const Tensor& y);        // y += alpha * x
void scale(const Tensor& x, double alpha);                        // x *= alpha
double sum_squares(const Tensor& x);                              // accumulated in double

// ---- embedding -------------------------------------------------------------------------------
// out[n] = table[tokens[n]]; table [V, D], tokens i32 [N], out [N, D]. Out-of-range -> error.
void embedding_forward(Context& ctx, const Tensor& table, const Tensor& tokens, const Tensor& out);
// dtable[tokens[n]] += dout[n]  (accumulate)
void embedding_backward(Context& ctx, const Tensor& dout, const Tensor& tokens, const Tensor& dtable);

// ---- RMSNorm over the last dimension ---------------------------------------------------------
// y = x * rstd * w with rstd = 1 / sqrt(mean(x^2) + eps); x, y [N, D], w [D], rstd [N] (saved).
void rmsnorm_forward(Context& ctx, const Tensor& x, const Tensor& w, double eps, const Tensor& y,
                     const Tensor& rstd);
void rmsnorm_backward_input(Context& ctx, const Tensor& dy, const Tensor& x, const Tensor& w,
                            const Tensor& rstd, const Tensor& dx);
void rmsnorm_backward_weight(Context& ctx, const Tensor& dy, const Tensor& x, const Tensor& rstd,
                             const Tensor& dw);  // accumulate

// ---- RoPE, interleaved pairs, in place -------------------------------------------------------
// x [B*T, H, Dh]; rotates dims [offset, offset + rope_dim) of every head. Pair i = dims
// (offset+2i, offset+2i+1) turns by angle pos * theta^(-2i / rope_dim), pos = row % seq_len.
// inverse = true turns by -angle: that is the backward pass.
void rope(Context& ctx, const Tensor& x, int64_t seq_len, int64_t offset, int64_t rope_dim,
          double theta, bool inverse);

// ---- causal attention ------------------------------------------------------------------------
// Per sequence b and head h: out = softmax(scale * q k^T + causal mask) v.
// q, k [B*T, H, Dqk], v and out [B*T, H, Dv], lse [B, H, T] (log-sum-exp of the scaled scores,
// saved for backward). Never holds more than one head's [T, T] scores per thread.
void attention_forward(Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                       int64_t seq_len, double scale, const Tensor& out, const Tensor& lse);
// dq, dk, dv written.
void attention_backward(Context& ctx, const Tensor& dout, const Tensor& q, const Tensor& k,
                        const Tensor& v, const Tensor& out, const Tensor& lse, int64_t seq_len,
                        double scale, const Tensor& dq, const Tensor& dk, const Tensor& dv);

// ---- SwiGLU ----------------------------------------------------------------------------------
// h [N, 2F] holds [gate | up] per row; y [N, F] = silu(gate) * up.
void swiglu_forward(Context& ctx, const Tensor& h, const Tensor& y);
void swiglu_backward(Context& ctx, const Tensor& dy, const Tensor& h, const Tensor& dh);

// ---- output head + cross-entropy, fused, chunked over the vocabulary -------------------------
// logits = x W^T never exist whole. losses[n] = logsumexp(logits[n]) - logits[n][targets[n]];
// targets[n] < 0 means "ignored": loss 0 and no gradient. x [N, D], W [V, D], targets i32 [N],
// losses and lse [N] (lse saved for backward).
void head_ce_forward(Context& ctx, const Tensor& x, const Tensor& W, const Tensor& targets,
                     const Tensor& losses, const Tensor& lse);
// Gradient of sum_n scale * losses[n]: dx written (skipped if dx is empty), dW accumulated
// (skipped if dW is empty).
void head_ce_backward(Context& ctx, const Tensor& x, const Tensor& W, const Tensor& targets,
                      const Tensor& lse, double scale, const Tensor& dx, const Tensor& dW);

}  // namespace kernels
