// Stage plans: which transformer blocks each pipeline stage computes, and which ends of the
// model it holds.
//
// Stage 0 holds the embedding, the last stage the final norm, the output head and the MTP
// modules (with their own blocks; they need the embedding too, which they share with stage 0
// when both stages are on one rank, as DualPipe arranges). The split is parallel.pipeline_layers
// when given, else the contiguous split that minimizes the largest estimated stage cost, where
// a block costs its forward + backward FLOPs per token and the ends add the embedding (its
// backward scatter, counted as one hidden-size pass), the head (once per head use) and the MTP
// modules.
#pragma once

#include <string>
#include <vector>

#include "core/config.hpp"

namespace core {

struct StagePlan {
  int stage = 0, num_stages = 1;
  int first_block = 0, num_blocks = 0;  // main-model blocks [first, first + num)
  bool has_embedding() const { return stage == 0; }
  bool has_head() const { return stage == num_stages - 1; }
};

// Estimated cost (FLOPs per token, forward + backward) of main block i, of the embedding and of
// the head end (head uses and MTP modules).
struct StageCosts {
  std::vector<double> blocks;
  double embedding = 0, head_end = 0;
};
StageCosts stage_costs(const Config& c);

// The plans of all num_stages stages (config already validated).
std::vector<StagePlan> plan_stages(const Config& c, int num_stages);
// "[0-1 | 2-3]" style summary for the start-up log, with each stage's estimated share.
std::string describe_plans(const Config& c, const std::vector<StagePlan>& plans);

}  // namespace core
