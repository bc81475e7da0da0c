// The pieces of every parameter inside the owned ranges, and AdamW applied to each.
#include "optim/sharded_adamw.hpp"

#include <algorithm>

#include "optim/clip.hpp"

namespace optim {

ShardedAdamW::ShardedAdamW(const core::ParamStore& ps,
                           std::array<core::ParamStore::Range, core::kParamGroups> owned,
                           core::DType moment_dtype, AdamWHyper hyper)
    : owned_(owned), moment_dtype_(moment_dtype), hyper_(hyper) {
  for (int g = 0; g < core::kParamGroups; ++g) {
    const auto region = ps.region(static_cast<core::ParamGroup>(g));
    FLOT_CHECK(owned[g].begin >= region.begin && owned[g].end <= region.end &&
                   owned[g].begin <= owned[g].end,
               "owned range [{}, {}) outside group {} region [{}, {})", owned[g].begin,
               owned[g].end, g, region.begin, region.end);
  }
  // Pieces in flat order, so the moment buffers follow the flat layout of the owned ranges.
  std::vector<int> ids(ps.size());
  for (int id = 0; id < ps.size(); ++id) ids[id] = id;
  std::sort(ids.begin(), ids.end(), [&](int a, int b) { return ps.offset(a) < ps.offset(b); });
  for (int g = 0; g < core::kParamGroups; ++g) {
    for (int id : ids) {
      const int64_t b = std::max(ps.offset(id), owned[g].begin);
      const int64_t e = std::min(ps.offset(id) + ps.param(id).numel(), owned[g].end);
      if (b >= e) continue;
      pieces_.push_back({b, e, numel_, ps.spec(id).decay});
      numel_ += e - b;
    }
  }
  m_.assign(static_cast<size_t>(numel_) * core::dtype_size(moment_dtype), std::byte{0});
  v_.assign(m_.size(), std::byte{0});
}

core::Tensor ShardedAdamW::moment1() const {
  return core::Tensor(const_cast<std::byte*>(m_.data()), moment_dtype_, {numel_});
}
core::Tensor ShardedAdamW::moment2() const {
  return core::Tensor(const_cast<std::byte*>(v_.data()), moment_dtype_, {numel_});
}

void ShardedAdamW::step(core::ParamStore& ps, int64_t step, double lr, double grad_scale) {
  const core::Tensor P = ps.flat_params(), G = ps.flat_grads();
  const core::Tensor M = moment1(), V = moment2();
  for (const Piece& p : pieces_) {
    const int64_t n = p.end - p.begin;
    adamw_step(P.slice(p.begin, p.end), G.slice(p.begin, p.end), M.slice(p.moment, p.moment + n),
               V.slice(p.moment, p.moment + n), hyper_, step, lr, grad_scale, p.decay);
  }
}

double ShardedAdamW::owned_grad_sq(const core::ParamStore& ps) const {
  const core::Tensor G = ps.flat_grads();
  std::vector<core::Tensor> parts;
  for (int g = 0; g < core::kParamGroups; ++g)
    if (owned_[g].size() > 0) parts.push_back(G.slice(owned_[g].begin, owned_[g].end));
  return sum_squares(parts);
}

}  // namespace optim
