// GradSync: the data-parallel reduction of one rank's gradients, in buckets that start while the
// backward pass is still running.
//
// Each reduction group's region of the ParamStore (dense: reduced over dp; expert: over edp) is
// cut into buckets of whole parameters. The trainer tells GradSync how many weight passes each
// parameter receives in a step (set_expected) and reports every pass (weights_done); a bucket
// whose parameters have all received theirs is final and its reduction starts at once, on the
// communication thread, while the compute thread continues the backward pass. Every rank of a
// group runs the same schedule, so buckets start in the same order everywhere (MPI's rule for
// collectives on one communicator).
//
// Without ZeRO-1 a bucket is all-reduced: every rank holds the summed gradients. With ZeRO-1
// (parallel.zero1) it is reduce-scattered: each rank receives the sum of its shard only (the
// region split evenly over the group, a shard may cut through a parameter), updates that shard
// (optim::ShardedAdamW), and gather_params() all-gathers the updated shards. The shard is also
// the part of the gradient whose squares this rank contributes to the global norm, with or
// without ZeRO-1, so that every element is counted exactly once over the world.
#pragma once

#include <array>
#include <vector>

#include "core/params.hpp"
#include "parallel/communicator.hpp"

namespace parallel {

class GradSync {
 public:
  // Elements each group's region must be padded to (a multiple of the group size), for
  // ParamStore::finalize.
  static std::array<int64_t, core::kParamGroups> padding(int dp, int edp);

  GradSync(core::ParamStore& ps, Communicator& dp, Communicator& edp, bool zero1,
           int64_t bucket_bytes);
  // Weight passes per step of each parameter (indexed by parameter id).
  void set_expected(std::vector<int> passes);
  // Starts a step: nothing reduced yet.
  void begin_step();
  // One weight pass of these parameters has been accumulated.
  void weights_done(const std::vector<int>& ids);
  // Starts the buckets not started yet (in bucket order) and waits for all of them; afterwards
  // the owned ranges hold the summed gradients.
  void finish();
  // ZeRO-1: all-gathers every rank's updated shard into the full parameters (waits).
  void gather_params();

  // The ranges this rank's optimizer updates: its shard with ZeRO-1, else the whole region.
  std::array<core::ParamStore::Range, core::kParamGroups> owned() const;
  // This rank's shard of each region (the norm's share, and ZeRO-1's update).
  std::array<core::ParamStore::Range, core::kParamGroups> shard() const { return shard_; }
  int num_buckets() const { return static_cast<int>(buckets_.size()); }
  bool zero1() const { return zero1_; }

 private:
  struct Bucket {
    int group;
    int64_t begin, end;  // flat element range (whole parameters, plus region padding at the end)
    int pending = 0;     // parameters not final yet this step
    bool started = false;
    HandlePtr handle;
  };
  void start(Bucket& b);
  Communicator& comm(int group) { return group == 0 ? dp_ : edp_; }

  core::ParamStore& ps_;
  Communicator &dp_, &edp_;
  bool zero1_;
  std::vector<Bucket> buckets_;
  std::vector<int> bucket_of_;     // per parameter id
  std::vector<int> expected_, remaining_;
  std::array<core::ParamStore::Range, core::kParamGroups> shard_{};
  std::vector<std::byte> scratch_;  // ZeRO-1: reduced shard, copied into the gradients at finish
};

}  // namespace parallel
