// Activation slots and the linear helpers shared by all layers.
#include "core/layers/layer.hpp"

#include "kernels/ops.hpp"

namespace core {

Activations::Activations(int slots) {
  FLOT_CHECK(slots >= 1, "{} activation slots", slots);
  slots_.reserve(slots);
  for (int i = 0; i < slots; ++i) slots_.emplace_back();
}

BumpArena& Activations::slot(int s) {
  FLOT_CHECK(s >= 0 && s < slots(), "activation slot {} of {}", s, slots());
  return slots_[s];
}

size_t Activations::bytes() const {
  size_t b = scratch_.capacity();
  for (const auto& s : slots_) b += s.capacity();
  return b;
}

void linear_forward(Context& ctx, const Tensor& x, const Tensor& W, const Tensor& y) {
  kernels::gemm(ctx, x.matrix(W.size(1)), false, W, true, y.matrix(W.size(0)));
}

void linear_backward_input(Context& ctx, const Tensor& dy, const Tensor& W, const Tensor& dx,
                           bool accumulate) {
  kernels::gemm(ctx, dy.matrix(W.size(0)), false, W, false, dx.matrix(W.size(1)), 1.0,
                accumulate ? 1.0 : 0.0);
}

void linear_backward_weight(Context& ctx, const Tensor& dy, const Tensor& x, const Tensor& dW) {
  kernels::gemm(ctx, dy.matrix(dW.size(0)), true, x.matrix(dW.size(1)), false, dW, 1.0, 1.0);
}

int add_matrix(ParamStore& ps, const std::string& name, int64_t out, int64_t in, double std) {
  ParamSpec s;
  s.name = name;
  s.shape = {out, in};
  s.std = std;
  return ps.add(std::move(s));
}

int add_norm(ParamStore& ps, const std::string& name, int64_t dim) {
  ParamSpec s;
  s.name = name;
  s.shape = {dim};
  s.init = Init::ones;
  s.decay = false;
  return ps.add(std::move(s));
}

}  // namespace core
