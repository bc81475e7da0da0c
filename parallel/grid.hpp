// Grid: where this rank sits in the pp x dp process grid, and a communicator per group.
//
// world = pp x dp, rank = pp_rank * dp + dp_rank, so the ranks of one pipeline stage are
// consecutive (and the heavy expert traffic stays on few nodes). Expert parallelism lives inside
// data parallelism: ep divides dp, the ep group is a block of ep consecutive dp ranks, and the
// expert-data group (edp) holds the dp ranks with the same ep rank: the ranks that own the same
// experts and reduce their gradients. The mirror group pairs pipeline ranks r and pp-1-r of the
// same dp rank: the two copies of a DualPipe stage, or the first and last stage that both hold
// the embedding under 1F1B with MTP.
#pragma once

#include <memory>
#include <string>

#include "parallel/communicator.hpp"

namespace parallel {

struct GridShape {
  int world = 1, pp = 1, dp = 1, ep = 1;
};

struct Coords {
  int pp_rank = 0, dp_rank = 0;
  int ep_rank = 0;   // rank inside the ep group = dp_rank % ep
  int edp_rank = 0;  // rank inside the expert-data group = dp_rank / ep
};

// The shape for a world of this size; throws core::ConfigError naming the values when pp does
// not divide the world or ep does not divide dp (the config's validate_layout says the same
// earlier, with the keys' positions).
GridShape grid_shape(int world, int pp, int ep);
Coords coords_of(const GridShape& g, int world_rank);
int world_rank_of(const GridShape& g, int pp_rank, int dp_rank);

class Grid {
 public:
  // Collective over `world`: splits it into the groups.
  Grid(Communicator& world, int pp, int ep);
  const GridShape& shape() const { return shape_; }
  const Coords& coords() const { return coords_; }
  Communicator& world() { return world_; }
  Communicator& pp() { return *pp_; }
  Communicator& dp() { return *dp_; }
  Communicator& ep() { return *ep_; }
  Communicator& edp() { return *edp_; }
  Communicator& mirror() { return *mirror_; }
  // "pp 2 x dp 4 (ep 2): rank 5 = pp 1, dp 1, ep 1, edp 0"
  std::string describe() const;

 private:
  Communicator& world_;
  GridShape shape_;
  Coords coords_;
  std::unique_ptr<Communicator> pp_, dp_, ep_, edp_, mirror_;
};

}  // namespace parallel
