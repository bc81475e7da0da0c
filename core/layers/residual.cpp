// Pre-norm residual layer: the norm, the residual sum, and the inside's slot bookkeeping.
#include "core/layers/residual.hpp"

#include "kernels/ops.hpp"

namespace core {

ResidualLayer::ResidualLayer(LayerEnv& env, const std::string& norm_name, int64_t dim, double eps,
                             std::unique_ptr<Sublayer> inner)
    : Layer(env), eps_(eps), w_norm_(add_norm(env.params, norm_name, dim)), inner_(std::move(inner)) {}

void ResidualLayer::forward(int slot, const Tensor& x, const Tensor& y) {
  for (int p = 0; p < phases(); ++p) forward_phase(p, slot, x, y);
}

void ResidualLayer::backward_input(int slot, const Tensor& dy, const Tensor& dx) {
  for (int p = 0; p < phases(); ++p) backward_phase(p, slot, dy, dx);
}

void ResidualLayer::forward_phase(int phase, int slot, const Tensor& x, const Tensor& y) {
  Saved& s = slot_state(saved_, slot);
  ScratchScope scope(scratch());
  if (phase == 0) {
    BumpArena& ar = slot_arena(slot);
    const int64_t N = x.rows(), D = x.cols();
    s.x = x;
    s.rstd = ar.alloc(dtype(), {N});
    // A single-phase inside that keeps no view of `a` is done with it when this call returns.
    const bool scratch_a = !inner_->keeps_input() && phases() == 1;
    s.a = (scratch_a ? scratch() : ar).alloc(dtype(), {N, D});
    kernels::rmsnorm_forward(env_.ctx, x, P(w_norm_), eps_, s.a, s.rstd);
  }
  inner_->forward_phase(phase, slot, s.a, y);
  if (phase == phases() - 1) kernels::axpy(1.0, x, y);
}

void ResidualLayer::backward_phase(int phase, int slot, const Tensor& dy, const Tensor& dx) {
  Saved& s = saved_.at(slot);
  if (phase == 0) s.da = slot_arena(slot).alloc(dtype(), {dy.rows(), dy.cols()});
  inner_->backward_phase(phase, slot, dy, s.da);  // dy stays valid until backward_weight
  if (phase == phases() - 1) {
    kernels::rmsnorm_backward_input(env_.ctx, s.da, s.x, P(w_norm_), s.rstd, dx);
    kernels::axpy(1.0, dy, dx);
  }
}

void ResidualLayer::backward_weight(int slot) {
  Saved& s = saved_.at(slot);
  inner_->backward_weight(slot);
  kernels::rmsnorm_backward_weight(env_.ctx, s.da, s.x, s.rstd, G(w_norm_));
  s = Saved{};
}

}  // namespace core
