// Activation slots, the precision names, parameter registration helpers.
#include "core/layers/layer.hpp"

#include "core/error.hpp"

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

Precision precision_from_name(const std::string& name) {
  if (name == "fp32") return Precision::fp32;
  if (name == "bf16") return Precision::bf16;
  if (name == "fp8") return Precision::fp8;
  FLOT_THROW(ConfigError, "train.precision: '{}' is not one of fp32, bf16, fp8", name);
}

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::fp32: return "fp32";
    case Precision::bf16: return "bf16";
    case Precision::fp8: return "fp8";
  }
  return "?";
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
