// The pre-flight memory plan: the bytes one rank will hold, computed from the config's shapes and
// the rank's place in the layout before anything is allocated, and the memory the machine offers.
//
// Parameters and gradients are counted exactly (the ParamStore registers the same tensors);
// optimizer state is the AdamW moments of the elements the rank updates (a ZeRO-1 shard or all);
// activations are, per pipeline stage the rank runs, the slots the schedule keeps in flight times
// what one micro-batch's forward and backward keep in its slot, plus the largest within-call
// scratch, plus the expert-parallel receive buffers. Routed rows are planned at the balanced
// count (micro-batch tokens x experts_per_token); an unbalanced step receives more on some ranks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/stage_plan.hpp"

namespace core {

struct MemoryPlan {
  int64_t params = 0, grads = 0, optimizer = 0;
  int64_t activations = 0;  // slots x per-slot bytes + scratch, over this rank's stages
  int64_t exchange = 0;     // expert-parallel receive buffers (outside the activation arenas)
  int64_t param_elements = 0;
  int64_t total() const { return params + grads + optimizer + activations + exchange; }
};

// One stage this rank runs, and how many micro-batches it keeps in flight (activation slots).
struct PlannedStage {
  StagePlan plan;
  int slots = 1;
};

// dp, ep: the data- and expert-parallel sizes; the stages and dp_rank are this rank's (the
// ZeRO-1 shard it updates).
MemoryPlan plan_memory(const Config& c, const std::vector<PlannedStage>& stages, int dp, int ep,
                       int dp_rank = 0);

// Bytes this process may still use: the smallest of MemAvailable and the cgroup's limit less its
// usage (a container or a Slurm allocation), or `limit_gb` when > 0.
int64_t available_memory(double limit_gb);

// The peak resident memory of this process so far (getrusage).
int64_t peak_resident_bytes();

// Refuses (ConfigError, exit 2) a plan whose bytes, times the ranks sharing this node, exceed
// `available`, naming what dominates and the keys that shrink it.
void check_memory_plan(const Config& c, const MemoryPlan& plan, int local_ranks, int64_t available);

// "params 12.0 MiB, grads 12.0 MiB, ..." for logs.
std::string describe_memory(const MemoryPlan& plan);

}  // namespace core
