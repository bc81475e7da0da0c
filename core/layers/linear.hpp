// The Linear GEMMs of every layer, through the precision policy of train.precision (LayerEnv::
// precision): one place decides how each of the three GEMMs of a Linear y = x W^T runs.
//   fp32  kernels::gemm / grouped_gemm, float or double (the float64 gradient tests).
//   bf16  BF16 operands, FP32 accumulation (kernels/bf16_ops.hpp).
//   fp8   DeepSeek-V3's recipe (kernels/fp8_ops.hpp): E4M3 operands; activations and output
//         gradients in 1x128 tiles for the forward and data-gradient GEMMs, both operands of the
//         weight gradient in 128x1 tiles along the tokens, weights in 128x128 blocks (quantized
//         from the FP32 master weights at each call).
// Every precision keeps FP32 master weights, FP32 gradients and FP32 GEMM outputs. Which Linears
// use these helpers is the policy: the attention projections, the dense FFN, the routed and shared
// experts and the MTP projection do; the embedding, the output head, the MoE gate, the norms and
// the attention core never call them and stay FP32.
//
// What a Linear keeps of its input for the weight gradient is a LinearOperand in the policy's
// form (keep_linear_input): fp32 a view of the input (the caller keeps it alive), bf16 its BF16
// copy (half the bytes), fp8 the E4M3 codes and 1x128 scales the forward GEMM read (about a
// quarter); the weight gradient re-quantizes those into 128x1 tiles (kernels::fp8_requantize). A
// plain Tensor converts to an operand that the GEMMs round or quantize on the fly, which is how
// output gradients, and inputs kept anyway for another op's backward, are passed.
#pragma once

#include <vector>

#include "core/layers/layer.hpp"
#include "kernels/fp8_ops.hpp"

namespace core {

struct LinearOperand {
  Tensor x;              // f32 / f64 (any precision), or bf16 (a kept BF16 copy)
  kernels::Fp8Tensor q;  // or E4M3 codes with row_1x128 scales (a kept FP8 copy); x empty then
  LinearOperand() = default;
  LinearOperand(const Tensor& t) : x(t) {}  // NOLINT: a tensor is an operand the GEMM converts
  explicit LinearOperand(const kernels::Fp8Tensor& f) : q(f) {}
  bool quantized() const { return !q.empty(); }
  bool empty() const { return x.empty() && q.empty(); }
  int64_t rows() const;  // of the [rows, last dim] matrix
  size_t bytes() const { return quantized() ? q.bytes() : x.bytes(); }
};

// x in the form the policy keeps a Linear input, allocated in `arena` (fp32: a view of x).
LinearOperand keep_linear_input(LayerEnv& env, const Tensor& x, BumpArena& arena);

// An operand as one tensor of rows, as a row permutation (kernels::moe_permute) or an exchange
// moves it: f32 / bf16 the tensor itself (no copy), fp8 the codes packed with their scales
// (kernels::fp8_pack_rows, u8, in `arena`). unpack_operand is the inverse (fp8: into `arena`).
Tensor pack_operand(LayerEnv& env, const LinearOperand& op, BumpArena& arena);
LinearOperand unpack_operand(LayerEnv& env, const Tensor& rows, int64_t cols, BumpArena& arena);

// ---- a Linear, W [out, in] (the checkpoint layout); x, dy: [rows, in] / [rows, out] ----------
// y = x W^T (+ y when accumulate)
void linear_forward(LayerEnv& env, const LinearOperand& x, const Tensor& W, const Tensor& y,
                    bool accumulate = false);
// dx = dy W (+ dx when accumulate)
void linear_backward_input(LayerEnv& env, const LinearOperand& dy, const Tensor& W,
                           const Tensor& dx, bool accumulate = false);
// dW += dy^T x
void linear_backward_weight(LayerEnv& env, const LinearOperand& dy, const LinearOperand& x,
                            const Tensor& dW);

// ---- the routed experts: rows in contiguous per-expert segments, W [experts, out, in] --------
// The rows of the experts of one MoE layer on this rank. Under expert parallelism each expert's
// segment holds the rows of every source rank in rank order; the FP8 weight gradient restarts
// its 128x1 tiles at each source's rows, so that a tile covers the same tokens in any layout (in
// one process the tokens of one micro-batch, whose rows are exactly one source's).
struct ExpertRows {
  Tensor offsets;  // i32 [E + 1]: expert e's rows
  // Under expert parallelism (empty otherwise): source_order i32 [R] lists the rows in
  // source-major order (rank s's rows, expert by expert, then rank s + 1's); source s's rows are
  // [source_begin[s], source_begin[s + 1]) of that order, split by expert by source_offsets[s].
  Tensor source_order;
  std::vector<int64_t> source_begin;
  std::vector<Tensor> source_offsets;  // i32 [E + 1] each
};
// y[rows of e] = x[rows of e] W[e]^T
void experts_forward(LayerEnv& env, const LinearOperand& x, const Tensor& W, const Tensor& offsets,
                     const Tensor& y);
// dx[rows of e] = dy[rows of e] W[e]
void experts_backward_input(LayerEnv& env, const LinearOperand& dy, const Tensor& W,
                            const Tensor& offsets, const Tensor& dx);
// dW[e] += dy[rows of e]^T x[rows of e]
void experts_backward_weight(LayerEnv& env, const LinearOperand& dy, const LinearOperand& x,
                             const ExpertRows& rows, const Tensor& dW);

}  // namespace core
