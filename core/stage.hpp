// Stage: one pipeline stage of a DeepSeek-V3 decoder on this rank — a range of transformer
// blocks, plus the embedding on the first stage and the final norm, output head and MTP modules
// on the last. A single process runs one stage holding the whole model.
//
// A stage takes a received tensor (or the micro-batch's tokens on the first stage) and returns
// one to send (or the losses on the last stage); backward takes the received output gradient
// (or starts from the losses) and returns the input gradient to send. Forward and backward are
// cut into pieces at the MoE layers' exchanges: piece p + 1 waits for what piece p started, so
// an executor can run another micro-batch's piece in between (an overlapped forward / backward
// pair). Running the pieces in order is the plain forward or backward.
//
// Gradients: the weight pass (backward_weight) may run later than the input pass (zero-bubble
// schedules). The stage reports, through the grads hook, every time a component's gradients
// have received one micro-batch's contribution; grad_reports() lists those reports for one
// micro-batch, so a gradient bucket knows when it is final. The head's gradients arrive during
// the input pass (the fused head computes both at once).
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "core/config.hpp"
#include "core/data/dataset.hpp"
#include "core/layers/embedding_head.hpp"
#include "core/layers/layer.hpp"
#include "core/layers/moe.hpp"
#include "core/layers/mtp.hpp"
#include "core/stage_plan.hpp"

namespace core {

// How one micro-batch's losses enter the step loss (its gradient scales).
struct LossScales {
  double lm = 0;   // per counted main-head token: 1 / tokens of the global batch
  double mtp = 0;  // per counted token of each MTP head: (mtp.loss_weight / depth) / global tokens
  double aux = 0;  // for the balance losses: sequences of this micro-batch / global batch sequences
};

struct MicroLosses {
  double lm_sum = 0;  // summed cross-entropy of the main head (last stage)
  int64_t lm_tokens = 0;
  std::vector<double> mtp_sum;  // per MTP depth (last stage)
  std::vector<int64_t> mtp_tokens;
  double aux = 0;  // sum over this stage's MoE layers of the weighted balance loss
};

class Stage {
 public:
  using GradsHook = std::function<void(const std::vector<int>& param_ids)>;

  // Registers the stage's parameters in `params`, which the stages of one rank share (a tensor
  // already there under the same name, the embedding used by both ends, is shared). `ep`: the
  // expert-parallel group (null = all experts local).
  Stage(const Config& cfg, Context& ctx, ParamStore& params, const StagePlan& plan, int slots,
        parallel::Communicator* ep);
  Stage(const Stage&) = delete;
  Stage& operator=(const Stage&) = delete;

  const StagePlan& plan() const { return plan_; }
  int slots() const { return acts_.slots(); }
  Activations& activations() { return acts_; }
  // Memory for a received input or output gradient of `slot`: [tokens of a configured
  // micro-batch, hidden], in the slot.
  Tensor alloc_hidden(int slot);

  // ---- forward ----
  // mb: the micro-batch (tokens for the first stage, targets for the last; others ignore it).
  // input: the received hidden state (ignored on the first stage). After the last piece:
  // output() (not last stage) and losses().
  void forward_begin(int slot, const data::MicroBatch& mb, const Tensor& input,
                     const LossScales& scales, bool training);
  int forward_pieces() const { return static_cast<int>(fwd_cuts_.size()) + 1; }
  void forward_piece(int slot, int piece);
  Tensor output(int slot) const;
  const MicroLosses& losses(int slot) const;
  // All pieces in order.
  MicroLosses forward(int slot, const data::MicroBatch& mb, const Tensor& input,
                      const LossScales& scales, bool training);

  // ---- backward ----
  // dy: the received output gradient (ignored on the last stage). After the last piece:
  // input_grad() (not first stage).
  void backward_begin(int slot, const Tensor& dy);
  int backward_pieces() const { return static_cast<int>(bwd_cuts_.size()) + 1; }
  void backward_piece(int slot, int piece);
  Tensor input_grad(int slot) const;
  void backward_input(int slot, const Tensor& dy);
  // Accumulates the weight gradients of the micro-batch. The slot stays until release(): its
  // output and input gradient may still have to be sent.
  void backward_weight(int slot);
  // The same in pieces (one per MTP module, block and the embedding, in backward_weight's order),
  // so that an executor can run them while an exchange of another micro-batch travels.
  int weight_pieces() const;
  void backward_weight_piece(int slot, int piece);
  // How many of this slot's weight pieces (from the first) may run now: those whose input pass
  // is complete (an MTP module's or layer's backward pieces have all run; the embedding's once the
  // whole backward has). While a backward is under way this grows piece by piece, so an executor
  // can start a micro-batch's weight pass before its input pass ends.
  int weight_pieces_ready(int slot) const;
  // Whether the next piece of this slot's forward or backward would start without waiting: no
  // exchange it started is still in flight.
  bool exchanges_ready(int slot) const;
  // Frees a slot (after the weight pass, or without backward for evaluation).
  void release(int slot);

  void set_grads_hook(GradsHook hook) { hook_ = std::move(hook); }
  // The parameter-id lists the hook receives for one micro-batch (one entry per report).
  std::vector<std::vector<int>> grad_reports() const;

  // Every MoE layer of this stage (main blocks first, then the MTP blocks).
  const std::vector<Moe*>& moe_layers() const { return moe_; }
  int embedding_id() const { return embed_ ? embed_->table_id() : -1; }

 private:
  // One step of the forward walk; the backward walks the same steps in reverse.
  struct Step {
    enum Kind { embed, layer, head, mtp } kind;
    int index = 0;  // layer index, or MTP depth - 1
    int phase = 0;
  };
  struct Saved {
    Tensor inputs, x0, dx0;
    std::vector<Tensor> targets;  // per head: main, then each MTP depth
    std::vector<Tensor> outs;     // outputs of each layer (outs[i] is layer i + 1's input)
    std::vector<Tensor> grads;    // gradient at each layer's output
    std::vector<Tensor> mtp_emb, mtp_out, mtp_dout, mtp_de;
    Tensor dh_carry;              // MTP chain: gradient flowing into the previous depth
    int64_t rows = 0;             // tokens of this micro-batch
    int bwd_done = 0;             // backward steps run so far
    LossScales scales;
    MicroLosses losses;
  };
  void run_forward(const Step& st, int slot);
  void run_backward(const Step& st, int slot);
  void report(const std::vector<int>& ids) {
    if (hook_) hook_(ids);
  }
  Tensor layer_input(const Saved& s, int i) const { return i == 0 ? s.x0 : s.outs[i - 1]; }
  Tensor last_hidden(const Saved& s) const { return s.outs.back(); }

  Config cfg_;
  StagePlan plan_;
  ParamStore& params_;
  Activations acts_;
  LayerEnv env_;
  int64_t rows_ = 0, D_ = 0;
  int depth_ = 0;  // MTP modules (last stage only)
  std::unique_ptr<Embedding> embed_;  // first stage, and the last when it has MTP modules
  std::vector<std::unique_ptr<Layer>> layers_;
  std::unique_ptr<HeadLoss> head_;
  std::vector<std::unique_ptr<MtpModule>> mtp_;
  std::vector<std::unique_ptr<HeadLoss>> mtp_heads_;
  std::vector<std::vector<int>> mtp_ids_;      // parameters of each MTP module
  std::vector<int> head_ids_;                  // lm_head and the final norm
  std::vector<std::vector<int>> mtp_head_ids_; // lm_head and each MTP head's norm
  std::vector<Moe*> moe_;
  std::vector<Step> fwd_steps_, bwd_steps_;
  std::vector<int> fwd_cuts_, bwd_cuts_;  // piece p ends before step cuts[p]
  std::vector<int> weight_after_;         // per weight piece: backward steps its inputs need
  std::vector<Saved> saved_;
  GradsHook hook_;
};

}  // namespace core
