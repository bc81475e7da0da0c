// The layer interface and what layers share: activation slots, scratch memory, the precision.
//
// A layer is a plain object with forward / backward_input / backward_weight. forward saves what
// backward needs in the activation slot of its micro-batch; backward_input writes the input
// gradient (input gradients overwrite) and saves what the weight gradient needs; backward_weight
// accumulates weight gradients (weight gradients accumulate) and may run later than
// backward_input (zero-bubble pipeline schedules defer it). The slot is freed by its owner (the
// model) once every layer's backward_weight of that micro-batch has run.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/arena.hpp"
#include "core/context.hpp"
#include "core/params.hpp"
#include "core/tensor.hpp"

namespace parallel {
class Communicator;
}

namespace core {

// Per-micro-batch activation memory: one arena per slot (as many slots as micro-batches can be
// in flight at once: 1 for sequential training, PP + 1 for DualPipe), plus one scratch arena for
// temporaries that live within a single call.
class Activations {
 public:
  explicit Activations(int slots);
  int slots() const { return static_cast<int>(slots_.size()); }
  BumpArena& slot(int s);
  BumpArena& scratch() { return scratch_; }
  void release(int s) { slot(s).reset(); }
  size_t bytes() const;

 private:
  std::vector<BumpArena> slots_;
  BumpArena scratch_;
};

// What the forward of one micro-batch tells its layers. Per slot, because an executor may
// interleave the pieces of two micro-batches (a training forward and an evaluation, or an
// overlapped forward / backward pair).
struct SlotInfo {
  bool training = true;         // MoE layers count expert loads (off during evaluation)
  double aux_grad_scale = 0.0;  // d(step loss) / d(this micro-batch's balance loss)
};

// The numerics of the Linear GEMMs (train.precision; core/layers/linear.hpp applies it).
enum class Precision : uint8_t { fp32, bf16, fp8 };
Precision precision_from_name(const std::string& name);  // "fp32" | "bf16" | "fp8"
const char* precision_name(Precision p);

// What every layer of a model (or of one pipeline stage) shares.
struct LayerEnv {
  Context& ctx;
  ParamStore& params;
  Activations& acts;
  int64_t seq_len = 0;  // tokens per sequence; micro-batch rows are sequences * seq_len
  // The expert-parallel group (null = every expert is local): MoE layers exchange tokens in it.
  parallel::Communicator* ep = nullptr;
  // fp32 for float64 parameters (the FP8 and BF16 ops take f32 only).
  Precision precision = Precision::fp32;
  std::vector<SlotInfo> slots = std::vector<SlotInfo>(acts.slots());
  SlotInfo& slot(int s) { return slots.at(s); }
};

// The per-slot saved state of a layer-like object, grown on demand (a slot's first forward).
// State that another thread touches while an exchange is in flight must not move: such layers
// size their vectors for every slot up front instead.
template <class S>
S& slot_state(std::vector<S>& states, int slot) {
  if (static_cast<int>(states.size()) <= slot) states.resize(slot + 1);
  return states[slot];
}

class Layer {
 public:
  explicit Layer(LayerEnv& env) : env_(env) {}
  virtual ~Layer() = default;
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;

  // x, y [N, D]; y written.
  virtual void forward(int slot, const Tensor& x, const Tensor& y) = 0;
  // dy [N, D] in, dx [N, D] written. The caller keeps dy unchanged until backward_weight of the
  // slot has run (the model allocates every gradient in the slot's arena), so layers may keep a
  // view of it for the weight pass instead of a copy.
  virtual void backward_input(int slot, const Tensor& dy, const Tensor& dx) = 0;
  // Accumulates this micro-batch's weight gradients.
  virtual void backward_weight(int slot) = 0;

  // Phases: a layer that communicates (MoE under expert parallelism) splits forward and
  // backward_input where an exchange is in flight: phase p + 1 waits for what phase p started,
  // so an executor can run another micro-batch's work in between. Running every phase in order
  // is forward / backward_input.
  virtual int phases() const { return 1; }
  virtual void forward_phase(int phase, int slot, const Tensor& x, const Tensor& y) {
    forward(slot, x, y);
  }
  virtual void backward_phase(int phase, int slot, const Tensor& dy, const Tensor& dx) {
    backward_input(slot, dy, dx);
  }
  // The ids of the parameters this layer registered (its weight pass accumulates into them).
  std::vector<int> param_ids;

 protected:
  DType dtype() const { return env_.params.dtype(); }
  Tensor P(int id) const { return env_.params.param(id); }
  Tensor G(int id) const { return env_.params.grad(id); }
  BumpArena& slot_arena(int slot) { return env_.acts.slot(slot); }
  BumpArena& scratch() { return env_.acts.scratch(); }
  LayerEnv& env_;
};

// Registers a [out, in] matrix with the model's init std and weight decay.
int add_matrix(ParamStore& ps, const std::string& name, int64_t out, int64_t in, double std);
// Registers an RMSNorm weight (ones, no weight decay).
int add_norm(ParamStore& ps, const std::string& name, int64_t dim);

}  // namespace core
