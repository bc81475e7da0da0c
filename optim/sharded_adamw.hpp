// AdamW over the part of a ParamStore this rank updates: all of it, or under ZeRO-1 its shard of
// each reduction group's region. The moments exist only for that part, so optimizer memory per
// rank falls by the group size; the owner of a shard updates it and the others receive the
// parameters by all-gather (parallel::GradSync).
//
// A shard is a plain element range of the flat parameter / gradient views; it may start or end
// inside a parameter. Each parameter's piece is updated with that parameter's weight-decay flag,
// so the result is element for element what an unsharded step computes.
#pragma once

#include <array>
#include <vector>

#include "core/params.hpp"
#include "optim/adamw.hpp"

namespace optim {

class ShardedAdamW {
 public:
  // owned[g]: the element range of group g's region this rank updates (may be empty).
  ShardedAdamW(const core::ParamStore& ps, std::array<core::ParamStore::Range, core::kParamGroups> owned,
               core::DType moment_dtype, AdamWHyper hyper);
  // One step (step counts from 1) on the owned ranges with grads multiplied by grad_scale.
  void step(core::ParamStore& ps, int64_t step, double lr, double grad_scale);
  // Sum of squares of the owned gradient elements (accumulated in double).
  double owned_grad_sq(const core::ParamStore& ps) const;
  const std::array<core::ParamStore::Range, core::kParamGroups>& owned() const { return owned_; }
  size_t bytes() const { return 2 * static_cast<size_t>(numel_) * core::dtype_size(moment_dtype_); }
  core::DType moment_dtype() const { return moment_dtype_; }
  // The moments of the owned elements, in flat order (group 0's range, then group 1's).
  core::Tensor moment1() const;
  core::Tensor moment2() const;
  // The owned part of each parameter, in flat order (checkpoints read and write moments by it).
  struct Piece {
    int64_t begin, end;  // flat element range, inside one parameter
    int64_t moment;      // offset of `begin` in the moment buffers
    bool decay;
  };
  const std::vector<Piece>& pieces() const { return pieces_; }

 private:
  std::array<core::ParamStore::Range, core::kParamGroups> owned_;
  core::DType moment_dtype_;
  AdamWHyper hyper_;
  std::vector<Piece> pieces_;
  int64_t numel_ = 0;
  std::vector<std::byte> m_, v_;
};

}  // namespace optim
