// `flotilla schedule`: prints a pipeline schedule's per-rank op order and, on request, simulates
// it (busy / idle / peak activations per rank) and writes the timeline as a Chrome trace.
#include <fmt/format.h>

#include <cstdio>
#include <fstream>

#include "core/error.hpp"
#include "launch/commands.hpp"
#include "parallel/schedule.hpp"
#include "parallel/schedule_sim.hpp"

namespace launch {
namespace {

std::string join_ints(const std::vector<int>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

void print_simulation(const parallel::CostModel& c, const parallel::SimResult& sim) {
  fmt::print("\nsimulated with F={:g} B={:g} I={:g} W={:g} FB={:g} p2p={:g} A={:g}{}: makespan {:g}\n",
             c.F, c.B, c.I, c.W, c.FB, c.p2p, c.A, c.fill > 0 ? " fill=1" : "", sim.makespan);
  fmt::print("{:<5} {:>10} {:>10} {:>10} {:>10} {:>16} {:>12}\n", "rank", "busy", "idle", "wait",
             "end", "peak_activations", "peak_slots");
  for (size_t r = 0; r < sim.ranks.size(); ++r) {
    const parallel::SimRank& s = sim.ranks[r];
    fmt::print("{:<5} {:>10g} {:>10g} {:>10g} {:>10g} {:>16} {:>12}\n", fmt::format("r{}", r),
               s.busy, s.idle, s.wait, s.end, s.peak_activations, join_ints(s.peak_slots));
  }
}

}  // namespace

int run_schedule(const ScheduleArgs& args) {
  parallel::ScheduleKind kind = parallel::schedule_kind_from_name(args.kind);
  // Costs are checked before anything is printed, so bad input leaves no partial output.
  const bool simulate = args.simulate || !args.trace.empty();
  parallel::CostModel cost = parallel::parse_cost_model(args.costs);
  std::vector<parallel::Schedule> ranks = parallel::make_schedules(kind, args.pp, args.chunks, args.ep_overlap);
  for (const parallel::Schedule& s : ranks)
    fmt::print("{}\n", parallel::format_schedule(s, args.comm));
  if (!simulate) return 0;

  parallel::SimResult sim = parallel::simulate(ranks, cost);
  if (!sim.ok()) {
    std::fflush(stdout);
    std::fprintf(stderr, "flotilla: the simulated schedule is broken:\n%s\n", sim.report().c_str());
    return 1;
  }
  if (args.simulate) print_simulation(cost, sim);
  if (!args.trace.empty()) {
    std::ofstream out(args.trace);
    if (!out) FLOT_THROW(core::ConfigError, "--trace: cannot write '{}'", args.trace);
    out << parallel::chrome_trace(sim) << '\n';
    if (!out) FLOT_THROW(core::ConfigError, "--trace: writing '{}' failed", args.trace);
    std::fprintf(stderr, "trace of the simulated timeline written to %s\n", args.trace.c_str());
  }
  return 0;
}

}  // namespace launch
