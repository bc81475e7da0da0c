// DeepSeekMoE, the inside of the MoE blocks' pre-norm residual layer:
//   out = shared(a) + sum_i g_i expert_i(a),  a = RMSNorm(x) (applied by the ResidualLayer).
//
// Stages: gate (sigmoid scores, selection-only bias, group-limited top-k) -> dispatch (permute the
// N*k token copies into contiguous per-expert segments, then under expert parallelism send each
// segment to the rank that owns its expert) -> experts (two grouped GEMMs over the stacked
// [local experts, ...] weights with a SwiGLU between) -> combine (send the results back, weighted
// un-permute). Dropless: every token reaches its k experts whatever the imbalance.
//
// Expert parallelism (LayerEnv::ep of size ep > 1): rank r of the ep group owns the E/ep experts
// [r E/ep, (r+1) E/ep), named by their global ids. Dispatch first exchanges, per destination,
// the row count of each of its experts, then the rows themselves (sized from those counts on the
// communication thread, Communicator::then); the receiver reorders the rows from source-major to
// expert-major for the grouped GEMM. Combine is the reverse exchange. In backward, the gradient
// of combine travels like a dispatch and the gradient of dispatch like a combine, with the
// counts already known. Each exchange starts at the end of one phase and is waited for at the
// start of the next (phases(): 3), so an executor can compute another micro-batch meanwhile;
// the shared experts run while the combine (forward) or the combine gradient (backward, with the
// gate's backward) travels.
//
// Precision (core/layers/linear.hpp): the experts' GEMMs follow the policy; the gate stays FP32.
// In fp8 the tokens are quantized (E4M3, 1x128 tiles) once, before the dispatch, and sent as
// codes with their scales; the experts' first GEMM reads them as they arrive. The combine gradient
// travels the same way (the down projection's data gradient reads it); expert outputs and the
// dispatch gradient travel in BF16. bf16 sends BF16 both ways. Every conversion happens in every
// layout, ep 1 included, so that expert parallelism computes on the same values as one process.
//
// The layer also counts expert loads (tokens per global expert, at the sending side) for the
// aux-loss-free balancer and adds the configured balance loss (sequence-wise for aux_free,
// batch-wise for aux_loss) to the gate.
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/layers/layer.hpp"
#include "core/layers/linear.hpp"
#include "core/layers/mlp.hpp"
#include "core/layers/residual.hpp"
#include "kernels/moe_ops.hpp"
#include "parallel/communicator.hpp"

namespace core {

class Moe : public Sublayer {
 public:
  // prefix: e.g. "model.layers.3." (names are prefix + "mlp.gate.weight" ...). index: this MoE
  // layer's position among all MoE layers of the model (main blocks, then MTP blocks).
  Moe(LayerEnv& env, const ModelConfig& m, const std::string& prefix, int index);
  void forward(int slot, const Tensor& a, const Tensor& out) override;
  void backward_input(int slot, const Tensor& dout, const Tensor& da) override;
  void backward_weight(int slot) override;
  // Phase 0: gate, permute, dispatch start; 1: dispatch wait, experts, combine start; 2: shared
  // experts, combine wait, weighted un-permute. Backward: 0: combine gradient, its dispatch start;
  // 1: shared experts and gate backward, wait, experts backward, return start; 2: wait,
  // un-permute backward.
  int phases() const override { return 3; }
  void forward_phase(int phase, int slot, const Tensor& a, const Tensor& out) override;
  void backward_phase(int phase, int slot, const Tensor& dout, const Tensor& da) override;

  int num_experts() const { return gate_.num_experts; }
  int local_experts() const { return local_; }
  int index() const { return index_; }
  // Tokens routed to each global expert by the training forwards of this rank since the last
  // clear.
  const std::vector<int64_t>& loads() const { return loads_; }
  void clear_loads() { std::fill(loads_.begin(), loads_.end(), 0); }
  // The balance-loss value of this slot's forward (already multiplied by its weight), 0 if none.
  double balance_loss(int slot) const { return saved_.at(slot).aux_loss; }
  // Whether the exchange this slot's last phase started (if any) has completed: the next phase
  // would not wait.
  bool exchange_ready(int slot) const {
    const Saved& s = saved_.at(slot);
    return !s.exchange || s.exchange->done();
  }
  // Bytes of the expert-parallel receive buffers (one per slot, kept at their high-water size).
  size_t exchange_bytes() const {
    size_t b = 0;
    for (const GrowBuffer& g : recv_) b += g.capacity();
    return b;
  }
  int bias_id() const { return bias_; }

 private:
  struct Saved {
    Tensor a, scores, idx, weights, offsets, src, pos;
    // a in the precision's form (keep_linear_input): the dispatch payload's rows and the shared
    // experts' input, converted once.
    LinearOperand qa;
    // Rows on the wire: dispatched (xs: f32, bf16, or u8 FP8 codes packed with their scales),
    // combined (ye expert side, ys source side: f32, or bf16 in low precision), and in backward
    // the combine gradient (dys sent, dye_in received) and the dispatch gradient (dxs).
    Tensor xs, ye, ys, dys, dye_in, dxs;
    Tensor dweights, dlogits;
    // expert side (the same tensors as the source side without expert parallelism)
    LinearOperand xe, ge, dye;  // the experts' Linear operands
    Tensor he, dhe, local_offsets;
    ExpertRows rows;        // local_offsets, and per source rank its rows (FP8 weight gradient)
    Tensor to_src, to_exp;  // i32 row maps: expert-major row i <- source-major row to_src[i]
    std::vector<int64_t> send_rows, recv_rows;  // rows per ep rank
    std::vector<int64_t> send_hdr, recv_hdr;    // [ep][local experts] rows
    parallel::HandlePtr exchange;               // the exchange between two phases
    double aux_loss = 0, aux_grad = 0;
  };
  void gate(int slot, const Tensor& a);
  void dispatch_start(int slot);
  void dispatch_finish(int slot);
  void experts(int slot);
  void combine_start(int slot);
  void combine_finish(int slot, const Tensor& out);
  void combine_backward(int slot, const Tensor& dout);
  void experts_backward(int slot);
  void dispatch_backward(int slot, const Tensor& da);
  void gate_backward(int slot, const Tensor& da);
  bool parallel() const { return ep_size_ > 1; }
  // Rows (source-major `in` -> expert-major out, or back) through a row map.
  void reorder(const Tensor& in, const Tensor& map, const Tensor& out);
  // Expert outputs and the dispatch gradient travel in BF16 in low precision (f32 otherwise),
  // rounded before they leave in every layout: x (f32) as combine rows, in `arena` if converted.
  Tensor combine_rows(const Tensor& x, BumpArena& arena);
  // Combine rows as f32 for the combine kernels (a copy in scratch memory if they are bf16).
  Tensor widen(const Tensor& rows);
  parallel::HandlePtr exchange(const Tensor& in, const std::vector<int64_t>& send,
                               const Tensor& out, const std::vector<int64_t>& recv);

  kernels::GateShape gate_;
  int64_t D_, F_;
  int index_, local_ = 0, ep_size_ = 1, ep_rank_ = 0;
  double balance_weight_ = 0;
  int64_t balance_segment_ = 0;  // -1 = one sequence (sequence-wise), 0 = the micro-batch
  int64_t segment(int64_t rows) const { return balance_segment_ < 0 ? env_.seq_len : rows; }
  LayerEnv& env_;
  int w_gate_ = -1, bias_ = -1, w13_ = -1, w2_ = -1;
  std::unique_ptr<SwigluMlp> shared_;
  std::vector<int64_t> loads_;
  // One per slot, sized up front: the communication thread writes into them during a dispatch.
  std::vector<Saved> saved_;
  std::vector<GrowBuffer> recv_;
};

// The MoE block's layer: y = x + Moe(RMSNorm(x)). *moe receives the inside (for loads and bias).
std::unique_ptr<Layer> make_moe_layer(LayerEnv& env, const ModelConfig& m, const std::string& prefix,
                                      int index, Moe** moe);

}  // namespace core
