// Buckets over the ParamStore's regions, started as their parameters become final.
#include "parallel/grad_sync.hpp"

#include <algorithm>
#include <cstring>

#include "core/error.hpp"

namespace parallel {

std::array<int64_t, core::kParamGroups> GradSync::padding(int dp, int edp) { return {dp, edp}; }

GradSync::GradSync(core::ParamStore& ps, Communicator& dp, Communicator& edp, bool zero1,
                   int64_t bucket_bytes)
    : ps_(ps), dp_(dp), edp_(edp), zero1_(zero1) {
  FLOT_CHECK(bucket_bytes > 0, "bucket of {} bytes", bucket_bytes);
  const int64_t bucket_elems = std::max<int64_t>(1, bucket_bytes / core::dtype_size(ps.dtype()));
  bucket_of_.assign(ps.size(), -1);
  std::vector<int> ids(ps.size());
  for (int id = 0; id < ps.size(); ++id) ids[id] = id;
  std::sort(ids.begin(), ids.end(), [&](int a, int b) { return ps.offset(a) < ps.offset(b); });
  for (int g = 0; g < core::kParamGroups; ++g) {
    const auto region = ps.region(static_cast<core::ParamGroup>(g));
    const int n = comm(g).size();
    FLOT_CHECK(region.size() % n == 0, "group {} region of {} elements over {} ranks", g,
               region.size(), n);
    const int64_t len = region.size() / n;
    shard_[g] = {region.begin + comm(g).rank() * len, region.begin + (comm(g).rank() + 1) * len};
    if (region.size() == 0) continue;
    Bucket cur{g, region.begin, region.begin, 0, false, nullptr};
    for (int id : ids) {
      if (static_cast<int>(ps.spec(id).group) != g) continue;
      if (cur.end > cur.begin && cur.end - cur.begin >= bucket_elems) {
        buckets_.push_back(std::move(cur));
        cur = Bucket{g, buckets_.back().end, buckets_.back().end, 0, false, nullptr};
      }
      cur.end = ps.offset(id) + ps.param(id).numel();
      bucket_of_[id] = static_cast<int>(buckets_.size());
    }
    cur.end = region.end;  // the region's padding rides with its last bucket
    buckets_.push_back(std::move(cur));
  }
  int64_t scratch = 0;
  for (int g = 0; g < core::kParamGroups; ++g) scratch += shard_[g].size();
  if (zero1_) scratch_.resize(static_cast<size_t>(scratch) * core::dtype_size(ps.dtype()));
  expected_.assign(ps.size(), 1);
}

std::array<core::ParamStore::Range, core::kParamGroups> GradSync::owned() const {
  if (zero1_) return shard_;
  return {ps_.region(core::ParamGroup::dense), ps_.region(core::ParamGroup::expert)};
}

void GradSync::set_expected(std::vector<int> passes) {
  FLOT_CHECK(static_cast<int>(passes.size()) == ps_.size(), "{} pass counts for {} parameters",
             passes.size(), ps_.size());
  expected_ = std::move(passes);
}

void GradSync::begin_step() {
  for (auto& b : buckets_) {
    FLOT_CHECK(!b.handle, "bucket [{}, {}) still in flight at the start of a step", b.begin, b.end);
    b.pending = 0;
    b.started = false;
  }
  remaining_ = expected_;
  for (int id = 0; id < ps_.size(); ++id)
    if (remaining_[id] > 0) ++buckets_[bucket_of_[id]].pending;
}

void GradSync::weights_done(const std::vector<int>& ids) {
  for (int id : ids) {
    FLOT_CHECK(remaining_[id] > 0, "parameter {} got more weight passes than the {} expected",
               ps_.spec(id).name, expected_[id]);
    if (--remaining_[id] > 0) continue;
    Bucket& b = buckets_[bucket_of_[id]];
    if (--b.pending == 0) start(b);
  }
}

void GradSync::start(Bucket& b) {
  b.started = true;
  Communicator& c = comm(b.group);
  if (c.size() == 1) return;
  const core::Tensor grads = ps_.flat_grads().slice(b.begin, b.end);
  if (!zero1_) {
    b.handle = c.all_reduce(grads, ReduceOp::sum, Traffic::gradients);
    return;
  }
  // Each rank's block is the part of the bucket inside its shard.
  const auto region = ps_.region(static_cast<core::ParamGroup>(b.group));
  const int64_t len = region.size() / c.size();
  std::vector<int64_t> counts(c.size());
  for (int r = 0; r < c.size(); ++r) {
    const int64_t s = region.begin + r * len, e = s + len;
    counts[r] = std::max<int64_t>(0, std::min(e, b.end) - std::max(s, b.begin));
  }
  const auto& mine = shard_[b.group];
  const int64_t lo = std::max(mine.begin, b.begin), hi = std::max(lo, std::min(mine.end, b.end));
  int64_t at = lo - mine.begin;
  for (int g = 0; g < b.group; ++g) at += shard_[g].size();
  core::Tensor out(scratch_.data() + at * core::dtype_size(ps_.dtype()), ps_.dtype(), {hi - lo});
  b.handle = c.reduce_scatter_v(grads, out, counts, Traffic::gradients);
}

void GradSync::finish() {
  for (auto& b : buckets_)
    if (!b.started) start(b);
  for (auto& b : buckets_) {
    if (b.handle) b.handle->wait();
    b.handle.reset();
  }
  if (!zero1_) return;
  // The reduced shard replaces the local gradients of the shard (the rest is not used).
  int64_t at = 0;
  const size_t es = core::dtype_size(ps_.dtype());
  for (int g = 0; g < core::kParamGroups; ++g) {
    if (comm(g).size() > 1 && shard_[g].size() > 0)
      std::memcpy(static_cast<std::byte*>(ps_.flat_grads().data) + shard_[g].begin * es,
                  scratch_.data() + at * es, shard_[g].size() * es);
    at += shard_[g].size();
  }
}

void GradSync::gather_params() {
  if (!zero1_) return;
  std::vector<HandlePtr> hs;
  for (int g = 0; g < core::kParamGroups; ++g) {
    Communicator& c = comm(g);
    const auto region = ps_.region(static_cast<core::ParamGroup>(g));
    if (c.size() == 1 || region.size() == 0) continue;
    const core::Tensor all = ps_.flat_params().slice(region.begin, region.end);
    const core::Tensor mine = ps_.flat_params().slice(shard_[g].begin, shard_[g].end);
    hs.push_back(c.all_gather(mine, all, Traffic::gradients));
  }
  for (auto& h : hs) h->wait();
}

}  // namespace parallel
