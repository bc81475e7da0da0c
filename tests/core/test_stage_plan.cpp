// Layer partitioning: explicit stage sizes are taken as given; the automatic split is the
// contiguous split with the smallest largest-stage cost (checked against brute force), so the
// head stage, which carries the output head and the MTP modules, gets fewer blocks.
#include <catch2/catch.hpp>

#include <algorithm>
#include <functional>
#include <limits>

#include "core/stage_plan.hpp"

namespace {

double largest_stage(const core::Config& c, const std::vector<core::StagePlan>& plans) {
  const core::StageCosts cost = core::stage_costs(c);
  double worst = 0;
  for (const auto& p : plans) {
    double v = 0;
    for (int i = p.first_block; i < p.first_block + p.num_blocks; ++i) v += cost.blocks[i];
    if (p.has_embedding()) v += cost.embedding;
    if (p.has_head()) v += cost.head_end;
    worst = std::max(worst, v);
  }
  return worst;
}

// The best largest-stage cost over every contiguous split with at least one block per stage.
double brute_force(const core::Config& c, int stages) {
  const int L = c.model.num_layers;
  double best = std::numeric_limits<double>::infinity();
  std::vector<int> sizes(stages, 1);
  std::function<void(int, int)> rec = [&](int s, int left) {
    if (s == stages - 1) {
      if (left < 1) return;
      sizes[s] = left;
      std::vector<core::StagePlan> plans;
      int first = 0;
      for (int i = 0; i < stages; ++i) {
        plans.push_back({i, stages, first, sizes[i]});
        first += sizes[i];
      }
      best = std::min(best, largest_stage(c, plans));
      return;
    }
    for (int n = 1; n <= left - (stages - s - 1); ++n) {
      sizes[s] = n;
      rec(s + 1, left - n);
    }
  };
  rec(0, L);
  return best;
}

}  // namespace

TEST_CASE("explicit parallel.pipeline_layers are the stage sizes", "[stage_plan]") {
  core::Config c;
  c.model.num_layers = 7;
  c.parallel.pipeline_layers = {3, 1, 2, 1};
  auto plans = core::plan_stages(c, 4);
  REQUIRE(plans.size() == 4);
  CHECK(plans[0].first_block == 0);
  CHECK(plans[0].num_blocks == 3);
  CHECK(plans[1].first_block == 3);
  CHECK(plans[3].first_block == 6);
  CHECK(plans[3].num_blocks == 1);
  CHECK(plans[0].has_embedding());
  CHECK_FALSE(plans[1].has_embedding());
  CHECK(plans[3].has_head());
  CHECK_FALSE(plans[2].has_head());
}

TEST_CASE("the automatic split minimizes the largest estimated stage cost", "[stage_plan]") {
  for (int layers : {4, 7, 12})
    for (int depth : {0, 1, 2})
      for (int stages : {1, 2, 3, 4}) {
        if (stages > layers) continue;
        core::Config c;
        c.model.num_layers = layers;
        c.model.mtp.depth = depth;
        c.model.vocab_size = 4096;  // a heavy head end
        auto plans = core::plan_stages(c, stages);
        int total = 0;
        for (const auto& p : plans) {
          CHECK(p.num_blocks >= 1);
          total += p.num_blocks;
        }
        INFO(layers << " layers, depth " << depth << ", " << stages << " stages");
        CHECK(total == layers);
        CHECK(largest_stage(c, plans) == Approx(brute_force(c, stages)).epsilon(1e-12));
      }
  // the head end costs more than a block here, so the last stage holds fewer blocks
  core::Config c;
  c.model.num_layers = 12;
  c.model.vocab_size = 32768;
  auto plans = core::plan_stages(c, 3);
  CHECK(plans.back().num_blocks < plans.front().num_blocks);
}
