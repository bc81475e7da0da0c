// The process grid's arithmetic and its communicator splits.
#include "parallel/grid.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.hpp"

namespace parallel {

GridShape grid_shape(int world, int pp, int ep) {
  if (world < 1 || pp < 1 || ep < 1 || world % pp != 0)
    FLOT_THROW(core::ConfigError,
               "a world of {} processes cannot be split into parallel.pp = {} pipeline ranks; "
               "launch a multiple of {} processes",
               world, pp, pp);
  GridShape g{world, pp, world / pp, ep};
  if (g.dp % ep != 0)
    FLOT_THROW(core::ConfigError,
               "parallel.ep = {} does not divide the data-parallel size dp = {} (world {} / pp {})",
               ep, g.dp, world, pp);
  return g;
}

Coords coords_of(const GridShape& g, int world_rank) {
  FLOT_CHECK(world_rank >= 0 && world_rank < g.world, "rank {} of {}", world_rank, g.world);
  Coords c;
  c.pp_rank = world_rank / g.dp;
  c.dp_rank = world_rank % g.dp;
  c.ep_rank = c.dp_rank % g.ep;
  c.edp_rank = c.dp_rank / g.ep;
  return c;
}

int world_rank_of(const GridShape& g, int pp_rank, int dp_rank) {
  FLOT_CHECK(pp_rank >= 0 && pp_rank < g.pp && dp_rank >= 0 && dp_rank < g.dp,
             "pp rank {} of {}, dp rank {} of {}", pp_rank, g.pp, dp_rank, g.dp);
  return pp_rank * g.dp + dp_rank;
}

Grid::Grid(Communicator& world, int pp, int ep)
    : world_(world), shape_(grid_shape(world.size(), pp, ep)), coords_(coords_of(shape_, world.rank())) {
  const Coords& c = coords_;
  const int r = world.rank();
  // Every split is collective over the world, in this order on every rank.
  pp_ = world.split(c.dp_rank, c.pp_rank, "pp");
  dp_ = world.split(c.pp_rank, c.dp_rank, "dp");
  ep_ = world.split(c.pp_rank * shape_.dp + c.dp_rank / ep, c.ep_rank, "ep");
  edp_ = world.split(c.pp_rank * shape_.ep + c.ep_rank, c.edp_rank, "edp");
  const int pair = std::min(c.pp_rank, pp - 1 - c.pp_rank);
  mirror_ = world.split(c.dp_rank * pp + pair, c.pp_rank, "mirror");
  FLOT_CHECK(pp_->size() == pp && dp_->size() == shape_.dp && ep_->size() == ep &&
                 edp_->size() == shape_.dp / ep,
             "grid split of rank {}: pp {} dp {} ep {} edp {}", r, pp_->size(), dp_->size(),
             ep_->size(), edp_->size());
}

std::string Grid::describe() const {
  return fmt::format("pp {} x dp {} (ep {}): rank {} = pp {}, dp {}, ep {}, edp {}", shape_.pp,
                     shape_.dp, shape_.ep, world_.rank(), coords_.pp_rank, coords_.dp_rank,
                     coords_.ep_rank, coords_.edp_rank);
}

}  // namespace parallel
