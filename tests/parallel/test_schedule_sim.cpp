// The pipeline simulator: every valid schedule runs to the end without deadlock or broken
// invariants, idles exactly as the published bubble formulas say, and broken schedules are
// reported (deadlock, wrong message, missing weight pass) instead of hanging.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.hpp"
#include "parallel/schedule_sim.hpp"
#include "schedule_sizes.hpp"

using namespace parallel;
using Catch::Matchers::Contains;
using testing::Size;

namespace {

std::string size_text(const Size& z) {
  return std::string(schedule_kind_name(z.kind)) + " pp=" + std::to_string(z.pp) +
         " chunks=" + std::to_string(z.chunks) + (z.ep_overlap ? " ep_overlap" : "");
}

// The published bubble per rank: (PP/2-1)(F&B+B-3W) for DualPipe and DualPipeV with PP counting
// stages, (PP-1)(F+B) for 1F1B, none without a pipeline. The expert-parallel form of DualPipe(V)
// has the same once the executor's filling is simulated (CostModel::fill): its turning ranks
// pair their warm-up forwards, so each phase-1 output leaves one forward later, and its drain
// leaves weight passes to the end, but the weight work deferred by then runs while the commits
// wait.
double formula_idle(const Size& z, const CostModel& c) {
  switch (z.kind) {
    case ScheduleKind::dualpipe:
      return (z.pp / 2 - 1) * (c.FB + c.B - 3 * c.W);
    case ScheduleKind::dualpipev:
      return (z.pp - 1) * (c.FB + c.B - 3 * c.W);  // 2N stages
    case ScheduleKind::one_f_one_b:
      return (z.pp - 1) * (c.F + c.B);
    case ScheduleKind::sequential:
      return 0;
  }
  return -1;
}

// Removes the last action of kind k (there must be one).
void erase_last(std::vector<Action>& actions, ActionKind k) {
  for (size_t i = actions.size(); i-- > 0;)
    if (actions[i].kind == k) {
      actions.erase(actions.begin() + i);
      return;
    }
  FAIL("no such action");
}

Action act(ActionKind k, int chunk, int micro) {
  Action a;
  a.kind = k;
  a.chunk = chunk;
  a.micro = micro;
  return a;
}

}  // namespace

TEST_CASE("every valid schedule simulates to the end with empty queues", "[schedule][sim]") {
  CostModel with_latency;
  with_latency.p2p = 0.25;
  int simulated = 0;
  for (const Size& z : testing::valid_sizes()) {
    INFO(size_text(z));
    std::vector<Schedule> ranks = testing::schedules_of(z);
    for (const CostModel& cost : {CostModel{}, with_latency}) {
      SimResult sim = simulate(ranks, cost);
      INFO(sim.report());
      REQUIRE(sim.ok());
      int sent = 0;
      for (const SimRank& r : sim.ranks) {
        sent += r.messages_sent;
        CHECK(r.end <= sim.makespan);
        CHECK(r.idle == Approx(sim.makespan - r.busy));
        CHECK(r.wait <= r.idle + 1e-9);
      }
      // Every link carries each micro-batch's activation and gradient once per direction.
      int links = z.kind == ScheduleKind::dualpipev ? 2 * (z.pp - 1) : z.pp - 1;
      if (z.kind == ScheduleKind::dualpipe) links *= 2;  // two directions, C/2 each
      CHECK(sent == 2 * links * ranks[0].micro_per_chunk());
      ++simulated;
    }
  }
  CHECK(simulated > 400);
}

TEST_CASE("simulated idle time equals the published bubble formulas", "[schedule][sim]") {
  CostModel table;  // F=1, B=2, I=W=1, F&B=3, free messages
  CostModel doubled;
  doubled.F = 2, doubled.B = 4, doubled.I = 2, doubled.W = 2, doubled.FB = 6;
  for (const Size& z : testing::valid_sizes()) {
    INFO(size_text(z));
    std::vector<Schedule> ranks = testing::schedules_of(z);
    for (CostModel cost : {table, doubled}) {
      cost.fill = z.ep_overlap ? 1 : 0;  // the form is run only by the executor that fills
      SimResult sim = simulate(ranks, cost);
      REQUIRE(sim.ok());
      for (size_t r = 0; r < sim.ranks.size(); ++r) {
        INFO("rank " << r << " F=" << cost.F);
        CHECK(sim.ranks[r].idle == Approx(formula_idle(z, cost)).margin(1e-9));
        // busy = every micro-batch's forward and backward (I+W = B, F&B = F+B here)
        CHECK(sim.ranks[r].busy ==
              Approx(ranks[r].places.size() * ranks[r].micro_per_chunk() * (cost.F + cost.B)));
      }
    }
  }
  // The figures dualpipe.md quotes.
  auto idle0 = [](ScheduleKind k, int pp, int chunks) {
    return simulate(make_schedules(k, pp, chunks), CostModel{}).ranks[0].idle;
  };
  CHECK(idle0(ScheduleKind::dualpipe, 8, 20) == 6);
  CHECK(idle0(ScheduleKind::dualpipev, 4, 10) == 6);
  CHECK(idle0(ScheduleKind::dualpipe, 4, 8) == 2);
  // 1F1B's bubble (PP-1)(F+B) does not depend on the cost ratio.
  CostModel heavy_backward;
  heavy_backward.B = 3.5;
  SimResult one = simulate(make_schedules(ScheduleKind::one_f_one_b, 5, 9), heavy_backward);
  for (const SimRank& r : one.ranks) CHECK(r.idle == Approx(4 * 4.5));
}

TEST_CASE("when lone passes wait for their all-to-all, the expert-parallel form ends sooner",
          "[schedule][sim]") {
  // A = 1: every forward or input pass run alone waits as long as it computes (DeepSeek-V3's
  // 1:1), pairs hide it. The form pairs the turning ranks' warm-up forwards, which the
  // reference runs alone; every DualPipe(V) size of two or more stages gains.
  CostModel one_to_one;
  one_to_one.A = 1;
  int compared = 0;
  for (const Size& z : testing::valid_sizes()) {
    if (!z.ep_overlap || z.kind == ScheduleKind::sequential) continue;
    INFO(size_text(z));
    SimResult form = simulate(testing::schedules_of(z), one_to_one);
    SimResult reference = simulate(make_schedules(z.kind, z.pp, z.chunks), one_to_one);
    REQUIRE(form.ok());
    REQUIRE(reference.ok());
    const int stages = z.kind == ScheduleKind::dualpipev ? 2 * z.pp : z.pp;
    if (stages >= 2) CHECK(form.makespan < reference.makespan);
    // With the executor's filling the form gains more (its drain leaves its weight passes to the
    // lone input passes' waits): DualPipeV pp 2 x 8 at 55 against the reference's 61.
    CostModel filled = one_to_one;
    filled.fill = 1;
    const SimResult form_filled = simulate(testing::schedules_of(z), filled);
    REQUIRE(form_filled.ok());
    CHECK(form_filled.makespan <= form.makespan);
    if (stages >= 2)
      CHECK(form_filled.makespan < simulate(make_schedules(z.kind, z.pp, z.chunks), filled).makespan);
    // Lone passes cost more; busy time grows by A times their compute, never for pairs.
    CHECK(reference.ranks[0].busy > simulate(make_schedules(z.kind, z.pp, z.chunks), CostModel{})
                                        .ranks[0]
                                        .busy);
    ++compared;
  }
  CHECK(compared > 30);
}

TEST_CASE("filled waits: weight work runs while a lone pass or a commit waits", "[schedule][sim]") {
  // One rank, F = I = W = 1, A = 1: F0.0 and F0.1 wait 1 each with nothing deferred; I0.0 waits
  // 1 before its own weight pass is queued; I0.1's wait runs all of W0.0, so the W0.0 action
  // costs nothing: 2 + 2 + 2 + 2 + 0 + 1 = 9 instead of 10.
  Schedule s = make_schedule(ScheduleKind::sequential, 1, 2, 0);
  s.actions.clear();
  Action i0 = act(ActionKind::backward, 0, 0), i1 = act(ActionKind::backward, 0, 1);
  i0.zero_bubble = i1.zero_bubble = true;
  s.actions = {act(ActionKind::forward, 0, 0), act(ActionKind::forward, 0, 1), i0, i1,
               act(ActionKind::weight, 0, 0), act(ActionKind::weight, 0, 1)};
  CostModel c = parse_cost_model("F=1,I=1,W=1,A=1");
  SimResult idle_waits = simulate({s}, c);
  REQUIRE(idle_waits.ok());
  CHECK(idle_waits.makespan == 10);
  c.fill = 1;
  SimResult filled = simulate({s}, c);
  REQUIRE(filled.ok());
  CHECK(filled.makespan == 9);
  CHECK(filled.ranks[0].busy == 9);  // the filled second counts once, inside I0.1
  // A commit's wait: DualPipeV pp 2 x 8 in the expert-parallel form on a free link. Filled, its
  // idle time is the published formula's (the test above); left empty, more.
  CostModel free_link;
  SimResult empty = simulate(make_schedules(ScheduleKind::dualpipev, 2, 8, true), free_link);
  free_link.fill = 1;
  SimResult busy = simulate(make_schedules(ScheduleKind::dualpipev, 2, 8, true), free_link);
  REQUIRE(empty.ok());
  REQUIRE(busy.ok());
  CHECK(busy.makespan < empty.makespan);
  for (size_t r = 0; r < busy.ranks.size(); ++r) {
    CHECK(busy.ranks[r].wait < empty.ranks[r].wait);
    CHECK(busy.ranks[r].idle == Approx(2));  // (PP/2-1)(FB+B-3W), PP = 4 stages
  }
  bool filled_event = false;
  for (const SimEvent& e : busy.events) filled_event |= e.label == "W (in a wait)" && !e.wait;
  CHECK(filled_event);
}

TEST_CASE("a message cost lengthens the step but never deadlocks", "[schedule][sim]") {
  CostModel slow;
  slow.p2p = 0.5;
  SimResult free_sim = simulate(make_schedules(ScheduleKind::dualpipev, 4, 10), CostModel{});
  SimResult slow_sim = simulate(make_schedules(ScheduleKind::dualpipev, 4, 10), slow);
  REQUIRE(slow_sim.ok());
  CHECK(slow_sim.makespan > free_sim.makespan);
  CHECK(slow_sim.ranks[0].busy == free_sim.ranks[0].busy);
}

TEST_CASE("a deadlocking order is reported with the waiting ranks, not hung", "[schedule][sim]") {
  // 1F1B with every send committed on its own: under rendezvous semantics rank 0 waits to
  // deliver activation 1 while rank 1 waits to deliver gradient 0.
  std::vector<Schedule> ranks = make_schedules(ScheduleKind::one_f_one_b, 2, 2);
  const ActionKind C = ActionKind::commit;
  ranks[0].actions = {act(ActionKind::forward, 0, 0),
                      act(ActionKind::send_forward, 0, 0),
                      act(C, 0, 0),
                      act(ActionKind::forward, 0, 1),
                      act(ActionKind::send_forward, 0, 1),
                      act(C, 0, 0),
                      act(ActionKind::recv_backward, 0, 0),
                      act(C, 0, 0),
                      act(ActionKind::backward, 0, 0),
                      act(ActionKind::recv_backward, 0, 1),
                      act(C, 0, 0),
                      act(ActionKind::backward, 0, 1)};
  ranks[1].actions = {act(ActionKind::recv_forward, 0, 0),  act(C, 0, 0),
                      act(ActionKind::forward, 0, 0),       act(ActionKind::backward, 0, 0),
                      act(ActionKind::send_backward, 0, 0), act(C, 0, 0),
                      act(ActionKind::recv_forward, 0, 1),  act(C, 0, 0),
                      act(ActionKind::forward, 0, 1),       act(ActionKind::backward, 0, 1),
                      act(ActionKind::send_backward, 0, 1), act(C, 0, 0)};
  SimResult sim = simulate(ranks, CostModel{});
  CHECK_FALSE(sim.ok());
  CHECK_THAT(sim.deadlock, Contains("deadlock"));
  CHECK_THAT(sim.deadlock, Contains("r0 waits") && Contains("send_forward(0.1) to r1"));
  CHECK_THAT(sim.deadlock, Contains("r1 waits") && Contains("send_backward(0.0) to r0"));
  // The shipped 1F1B of the same size runs.
  CHECK(simulate(make_schedules(ScheduleKind::one_f_one_b, 2, 2), CostModel{}).ok());
}

TEST_CASE("wrong messages, missing inputs and leftover weight passes are reported",
          "[schedule][sim]") {
  SECTION("two sends swapped: the receiver gets the wrong micro-batch") {
    std::vector<Schedule> ranks = make_schedules(ScheduleKind::one_f_one_b, 2, 3);
    auto& a = ranks[0].actions;
    std::vector<size_t> sends;
    for (size_t i = 0; i < a.size(); ++i)
      if (a[i].kind == ActionKind::send_forward) sends.push_back(i);
    REQUIRE(sends.size() == 3);
    std::swap(a[sends[0]].micro, a[sends[1]].micro);
    SimResult sim = simulate(ranks, CostModel{});
    CHECK_FALSE(sim.ok());
    CHECK_THAT(sim.report(), Contains("out of order"));
    CHECK_THAT(sim.report(),
               Contains("expects the activation for stage 1 micro 0") &&
                   Contains("matching send carries the activation for stage 1 micro 1"));
  }
  SECTION("a forward before its input arrived") {
    std::vector<Schedule> ranks = make_schedules(ScheduleKind::one_f_one_b, 2, 2);
    auto& a = ranks[1].actions;  // recv, commit, F0.0, ...
    REQUIRE(a[0].kind == ActionKind::recv_forward);
    std::swap(a[1], a[2]);  // F0.0 before the commit
    SimResult sim = simulate(ranks, CostModel{});
    CHECK_THAT(sim.report(), Contains("before its input arrived"));
  }
  SECTION("a weight pass dropped") {
    std::vector<Schedule> ranks = make_schedules(ScheduleKind::dualpipe, 2, 4);
    erase_last(ranks[0].actions, ActionKind::weight);
    SimResult sim = simulate(ranks, CostModel{});
    CHECK_THAT(sim.report(), Contains("weight passes never ran"));
  }
  SECTION("a pair whose halves depend on each other") {
    // DualPipeV's turn: F1.0 reads F0.0's output in memory, so the two cannot interleave.
    std::vector<Schedule> ranks = make_schedules(ScheduleKind::dualpipev, 1, 2);
    auto& a = ranks[0].actions;
    REQUIRE(action_label(a[0]) == "F0.0");
    REQUIRE(action_label(a[1]) == "F1.0");
    Action pair{ActionKind::forward_pair, 0, 0};
    pair.chunk_b = 1;
    pair.micro_b = 0;
    a.erase(a.begin(), a.begin() + 2);
    a.insert(a.begin(), pair);
    SimResult sim = simulate(ranks, CostModel{});
    CHECK_FALSE(sim.ok());
    CHECK_THAT(sim.report(), Contains("(F0.0&F1.0) pairs two passes of which one needs the other"));
  }
  SECTION("a receive dropped: sends outnumber receives") {
    std::vector<Schedule> ranks = make_schedules(ScheduleKind::dualpipev, 2, 4);
    erase_last(ranks[1].actions, ActionKind::recv_backward);
    SimResult sim = simulate(ranks, CostModel{});
    CHECK_FALSE(sim.ok());
  }
}

TEST_CASE("the simulated timeline: events per rank and a Chrome trace", "[schedule][sim]") {
  SimResult sim = simulate(make_schedules(ScheduleKind::dualpipe, 4, 8), CostModel{});
  REQUIRE(sim.ok());
  CHECK(sim.makespan == 26);
  int compute = 0;
  for (const SimEvent& e : sim.events) {
    CHECK(e.end >= e.start);
    if (!e.wait) ++compute;
  }
  // 4 ranks x (16 compute ops: 8 F, 8 B/I or pair halves, plus W's, minus pairs)
  int expected = 0;
  for (const Schedule& s : make_schedules(ScheduleKind::dualpipe, 4, 8))
    for (const Action& a : s.actions) expected += a.is_compute();
  CHECK(compute == expected);

  nlohmann::json trace = nlohmann::json::parse(chrome_trace(sim));
  REQUIRE(trace.contains("traceEvents"));
  int complete = 0;
  std::set<int> rows;
  for (const auto& e : trace["traceEvents"]) {
    if (e["ph"] != "X") continue;
    ++complete;
    rows.insert(e["tid"].get<int>());
    CHECK(e["dur"].get<double>() >= 0);
  }
  CHECK(complete == static_cast<int>(sim.events.size()));
  CHECK(rows == std::set<int>{0, 1, 2, 3});
}

TEST_CASE("cost strings for --simulate", "[schedule][sim]") {
  CostModel d = parse_cost_model("");
  CHECK(d.F == 1);
  CHECK(d.B == 2);
  CHECK(d.I == 1);
  CHECK(d.W == 1);
  CHECK(d.FB == 3);
  CHECK(d.p2p == 0);
  CHECK(d.A == 0);
  CHECK(parse_cost_model("A=1").A == 1);
  CHECK(d.fill == 0);
  CHECK(parse_cost_model("A=1,fill=1").fill == 1);
  CHECK_THROWS_WITH(parse_cost_model("fill=0.5"), Contains("fill") && Contains("0 or 1"));
  CostModel c = parse_cost_model("F=1.5, B=3,W=0.5,FB=4");
  CHECK(c.F == 1.5);
  CHECK(c.B == 3);
  CHECK(c.W == 0.5);
  CHECK(c.I == 0.5);  // I follows W unless given
  CHECK(c.FB == 4);
  CHECK(parse_cost_model("I=2,W=1").I == 2);
  CHECK(parse_cost_model("p2p=0.25").p2p == 0.25);
  CHECK_THROWS_AS(parse_cost_model("F=1,X=2"), core::ConfigError);
  CHECK_THROWS_WITH(parse_cost_model("F=1,X=2"), Contains("'X'"));
  CHECK_THROWS_WITH(parse_cost_model("F=one"), Contains("'one'"));
  CHECK_THROWS_AS(parse_cost_model("F"), core::ConfigError);
  CHECK_THROWS_AS(parse_cost_model("F=-1"), core::ConfigError);
  CHECK_THROWS_AS(parse_cost_model("F=1,,B=2"), core::ConfigError);
}
