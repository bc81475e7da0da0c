// Pipeline schedules as data: the oracle op orders of DeepSeek's reference, and the invariants
// every (kind, pp, chunks) must keep, checked on the action lists themselves.
#include <catch2/catch.hpp>
#include <deque>
#include <fstream>
#include <map>
#include <string>
#include <tuple>

#include "core/error.hpp"
#include "parallel/schedule.hpp"
#include "schedule_sizes.hpp"

using namespace parallel;
using Catch::Matchers::Contains;
using testing::Size;

namespace {

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(line);
  return lines;
}

std::string size_text(const Size& z) {
  return std::string(schedule_kind_name(z.kind)) + " pp=" + std::to_string(z.pp) +
         " chunks=" + std::to_string(z.chunks) + (z.ep_overlap ? " ep_overlap" : "");
}

// Checks one rank's list alone: each (chunk, micro) forwarded once and backwarded once, in micro
// order, backward after forward; every I has one later W in FIFO order; the queue of sends and
// receives is committed before any compute and empty at the end; every message has a peer.
void check_rank_invariants(const Schedule& s) {
  INFO("rank " << s.rank);
  const int n = static_cast<int>(s.places.size());
  const int micros = s.micro_per_chunk();
  CHECK(micros == (s.kind == ScheduleKind::dualpipe ? s.chunks / 2 : s.chunks));
  std::vector<int> fwd(n, 0), bwd(n, 0);
  std::deque<std::pair<int, int>> deferred;
  int queued = 0, weights = 0, zero_bubble = 0;
  auto forward = [&](int c, int m) {
    CHECK(m == fwd[c]);
    ++fwd[c];
  };
  // A full backward (zero_bubble false) runs its weight pass at once: only with no older weight
  // pass deferred, whose pieces the executor may have run in part, does each parameter sum its
  // micro-batches' gradients in an order that does not depend on timing.
  auto backward = [&](int c, int m, bool zero_bubble) {
    CHECK(m == bwd[c]);
    CHECK(m < fwd[c]);
    if (!zero_bubble) CHECK(deferred.empty());
    ++bwd[c];
  };
  for (const Action& a : s.actions) {
    INFO(action_label(a));
    REQUIRE(a.chunk >= 0);
    REQUIRE(a.chunk < n);
    const ChunkPlace& p = s.places[a.chunk];
    if (a.is_comm()) {
      bool from_prev = a.kind == ActionKind::recv_forward || a.kind == ActionKind::send_backward;
      CHECK((from_prev ? p.prev_rank : p.next_rank) >= 0);
      ++queued;
      continue;
    }
    if (a.kind == ActionKind::commit) {
      CHECK(queued > 0);
      queued = 0;
      continue;
    }
    CHECK(queued == 0);
    switch (a.kind) {
      case ActionKind::forward:
        forward(a.chunk, a.micro);
        break;
      case ActionKind::backward:
        backward(a.chunk, a.micro, a.zero_bubble);
        if (a.zero_bubble) deferred.emplace_back(a.chunk, a.micro), ++zero_bubble;
        break;
      case ActionKind::weight:
        REQUIRE(!deferred.empty());
        CHECK(deferred.front() == std::make_pair(a.chunk, a.micro));
        deferred.pop_front();
        ++weights;
        break;
      case ActionKind::forward_backward:
        REQUIRE(a.chunk_b >= 0);
        REQUIRE(a.chunk_b < n);
        forward(a.chunk, a.micro);
        backward(a.chunk_b, a.micro_b, a.zero_bubble);
        if (a.zero_bubble) deferred.emplace_back(a.chunk_b, a.micro_b), ++zero_bubble;
        break;
      case ActionKind::forward_pair:
      case ActionKind::backward_pair:
        // Only in the expert-parallel form: two micro-batches of one chunk, in order, where
        // nothing is sent (no pipeline), or the turning rank's forwards of both chunks, the second
        // chunk's micro-batch the one after the first's.
        CHECK(s.ep_overlap);
        if (s.kind == ScheduleKind::sequential) {
          CHECK(a.chunk_b == a.chunk);
          CHECK(a.micro_b == a.micro + 1);
        } else {
          CHECK(a.kind == ActionKind::forward_pair);
          CHECK(a.chunk_b == 1 - a.chunk);
          CHECK(a.micro_b == a.micro + 1);
        }
        if (a.kind == ActionKind::forward_pair) {
          forward(a.chunk, a.micro);
          forward(a.chunk_b, a.micro_b);
        } else {
          backward(a.chunk, a.micro, a.zero_bubble);
          backward(a.chunk_b, a.micro_b, a.zero_bubble);
          if (a.zero_bubble) {
            deferred.emplace_back(a.chunk, a.micro);
            deferred.emplace_back(a.chunk_b, a.micro_b);
            zero_bubble += 2;
          }
        }
        break;
      default:
        break;
    }
  }
  CHECK(queued == 0);
  CHECK(deferred.empty());
  CHECK(weights == zero_bubble);
  for (int c = 0; c < n; ++c) {
    CHECK(fwd[c] == micros);
    CHECK(bwd[c] == micros);
  }
}

// Message counts per (from, to, activation or gradient), as sent and as received.
using Key = std::tuple<int, int, bool>;
void count_messages(const Schedule& s, std::map<Key, int>& sent, std::map<Key, int>& received) {
  for (const Action& a : s.actions) {
    const ChunkPlace& p = s.places[a.chunk];
    switch (a.kind) {
      case ActionKind::send_forward:
        ++sent[{s.rank, p.next_rank, false}];
        break;
      case ActionKind::send_backward:
        ++sent[{s.rank, p.prev_rank, true}];
        break;
      case ActionKind::recv_forward:
        ++received[{p.prev_rank, s.rank, false}];
        break;
      case ActionKind::recv_backward:
        ++received[{p.next_rank, s.rank, true}];
        break;
      default:
        break;
    }
  }
}

}  // namespace

TEST_CASE("schedule op order equals DeepSeek's reference for the oracle sizes", "[schedule]") {
  struct Case {
    const char* file;
    ScheduleKind kind;
    int pp, chunks;
  };
  for (Case c : {Case{"dualpipe_pp4_chunks8.txt", ScheduleKind::dualpipe, 4, 8},
                 Case{"dualpipe_pp4_chunks10.txt", ScheduleKind::dualpipe, 4, 10},
                 Case{"dualpipev_pp4_chunks8.txt", ScheduleKind::dualpipev, 4, 8}}) {
    INFO(c.file);
    std::vector<std::string> expected =
        read_lines(std::string(FLOTILLA_TEST_DATA) + "/oracle/" + c.file);
    REQUIRE(expected.size() == static_cast<size_t>(c.pp));
    for (int r = 0; r < c.pp; ++r)
      CHECK(format_schedule(make_schedule(c.kind, c.pp, c.chunks, r)) == expected[r]);
    // The printed activations peak is PP+1 stages on every rank: 5 for N=4, 9 for V with 8 stages.
    for (int r = 0; r < c.pp; ++r)
      CHECK(in_flight_peaks(make_schedule(c.kind, c.pp, c.chunks, r)).activations ==
            (c.kind == ScheduleKind::dualpipe ? 5 : 9));
  }
}

TEST_CASE("every valid size keeps the schedule invariants on every rank", "[schedule]") {
  int checked = 0;
  for (const Size& z : testing::valid_sizes()) {
    INFO(size_text(z));
    std::map<Key, int> sent, received;
    for (const Schedule& s : testing::schedules_of(z)) {
      check_rank_invariants(s);
      count_messages(s, sent, received);
      ++checked;
    }
    CHECK(sent == received);
  }
  CHECK(checked > 500);
}

TEST_CASE("a forward with a peer is received from and sent to the neighbouring stage",
          "[schedule]") {
  // Message counts per rank pair: each micro-batch crosses each link once per direction.
  std::map<Key, int> sent, received;
  for (const Schedule& s : make_schedules(ScheduleKind::dualpipe, 4, 10))
    count_messages(s, sent, received);
  // Rank 1 -> 2 carries direction 0's 5 activations and direction 1's 5 gradients.
  CHECK(sent[{1, 2, false}] == 5);
  CHECK(sent[{1, 2, true}] == 5);
  CHECK(sent.count({0, 3, false}) == 0);
  std::map<Key, int> vsent, vreceived;
  for (const Schedule& s : make_schedules(ScheduleKind::dualpipev, 3, 7))
    count_messages(s, vsent, vreceived);
  CHECK(vsent[{1, 2, false}] == 7);        // chunk 0 down the V
  CHECK(vsent[{2, 1, false}] == 7);        // chunk 1 back up
  CHECK(vsent.count({2, 2, false}) == 0);  // the turn is local
  CHECK(vsent == vreceived);
}

TEST_CASE("chunk places: stages, neighbours and DualPipeV's local turn", "[schedule]") {
  Schedule d = make_schedule(ScheduleKind::dualpipe, 6, 12, 1);
  REQUIRE(d.places.size() == 2);
  CHECK(d.num_stages == 6);
  CHECK(d.places[0].stage == 1);
  CHECK(d.places[0].prev_rank == 0);
  CHECK(d.places[0].next_rank == 2);
  CHECK(d.places[1].stage == 4);
  CHECK(d.places[1].prev_rank == 2);
  CHECK(d.places[1].next_rank == 0);
  Schedule d0 = make_schedule(ScheduleKind::dualpipe, 6, 12, 0);
  CHECK(d0.places[0].first_stage());
  CHECK(d0.places[1].last_stage(6));  // both ends of the model on rank 0
  CHECK(d0.places[1].next_rank == -1);

  Schedule v = make_schedule(ScheduleKind::dualpipev, 3, 6, 2);
  CHECK(v.num_stages == 6);
  CHECK(v.places[0].stage == 2);
  CHECK(v.places[0].next_rank == -1);
  CHECK(v.places[0].local_out);
  CHECK(v.places[1].stage == 3);
  CHECK(v.places[1].prev_rank == -1);
  CHECK(v.places[1].local_in);
  CHECK(v.places[1].next_rank == 1);
  Schedule v0 = make_schedule(ScheduleKind::dualpipev, 3, 6, 0);
  CHECK(v0.places[1].last_stage(6));
  CHECK_FALSE(v0.places[1].local_in);

  Schedule one = make_schedule(ScheduleKind::one_f_one_b, 3, 3, 2);
  REQUIRE(one.places.size() == 1);
  CHECK(one.places[0].last_stage(3));
  CHECK(one.places[0].prev_rank == 1);
}

TEST_CASE("DualPipeV on N ranks is DualPipe on 2N ranks, rank by rank", "[schedule]") {
  for (int n = 1; n <= 8; ++n)
    for (int chunks : testing::chunk_counts()) {
      if (!testing::valid_size(ScheduleKind::dualpipev, n, chunks)) continue;
      INFO("N=" << n << " chunks=" << chunks);
      for (bool ep_overlap : {false, true})
        for (int r = 0; r < n; ++r)
          CHECK(format_schedule(make_schedule(ScheduleKind::dualpipev, n, chunks, r, ep_overlap)) ==
                format_schedule(make_schedule(ScheduleKind::dualpipe, 2 * n, 2 * chunks, r, ep_overlap)));
    }
}

TEST_CASE("1f1b and sequential print the textbook orders", "[schedule]") {
  CHECK(format_schedule(make_schedule(ScheduleKind::one_f_one_b, 1, 3, 0)) ==
        "r0: F0.0 B0.0 F0.1 B0.1 F0.2 B0.2");
  CHECK(format_schedule(make_schedule(ScheduleKind::one_f_one_b, 3, 4, 0)) ==
        "r0: F0.0 F0.1 F0.2 B0.0 F0.3 B0.1 B0.2 B0.3");
  CHECK(format_schedule(make_schedule(ScheduleKind::one_f_one_b, 3, 4, 2)) ==
        "r2: F0.0 B0.0 F0.1 B0.1 F0.2 B0.2 F0.3 B0.3");
  CHECK(format_schedule(make_schedule(ScheduleKind::sequential, 1, 1, 0)) == "r0: F0.0 B0.0");
  CHECK(format_schedule(make_schedule(ScheduleKind::sequential, 1, 4, 0)) ==
        "r0: F0.0 (F0.1&B0.0) (F0.2&B0.1) (F0.3&B0.2) B0.3");
  // No pipeline, no messages.
  for (const Action& a : make_schedule(ScheduleKind::sequential, 1, 4, 0).actions)
    CHECK(a.is_compute());
  // ep_overlap: no lone forward or backward once there are two micro-batches, and each pair's
  // weight passes wait one pair.
  auto paired = [](int chunks) {
    return format_schedule(make_schedule(ScheduleKind::sequential, 1, chunks, 0, true));
  };
  CHECK(paired(1) == "r0: F0.0 B0.0");
  CHECK(paired(2) == "r0: (F0.0&F0.1) (I0.0&I0.1) W0.0 W0.1");
  CHECK(paired(3) == "r0: (F0.0&F0.1) (F0.2&I0.0) (I0.1&I0.2) W0.0 W0.1 W0.2");
  CHECK(paired(4) == "r0: (F0.0&F0.1) (F0.2&I0.0) (F0.3&I0.1) W0.0 (I0.2&I0.3) W0.1 W0.2 W0.3");
  CHECK(paired(5) ==
        "r0: (F0.0&F0.1) (F0.2&I0.0) (F0.3&I0.1) W0.0 (F0.4&I0.2) W0.1 (I0.3&I0.4) W0.2 W0.3 W0.4");
  // 1f1b ignores it
  CHECK_FALSE(make_schedule(ScheduleKind::one_f_one_b, 1, 4, 0, true).ep_overlap);
}

TEST_CASE("dualpipe's expert-parallel form defers weight passes and pairs the turn's forwards",
          "[schedule]") {
  // DualPipeV pp=2 with 8 micro-batches: phases 4 and 5's backwards become input passes, each
  // weight pass runs after the next compute's commit; phase 6's backwards are all input passes
  // too, and every weight pass still deferred runs after them (the reference: B1.7 on r0, B1.6
  // B0.6 on r1, with the weight passes before); the turning rank (r1) runs its warm-up forwards
  // in pairs (F1.i & F0.i+1).
  CHECK(format_schedule(make_schedule(ScheduleKind::dualpipev, 2, 8, 0, true)) ==
        "r0: F0.0 F0.1 F0.2 F1.0 I1.0 W1.0 F1.1 (F0.3&I1.1) (F1.2&I0.0) W1.1 (F0.4&I1.2) W0.0 "
        "(F1.3&I0.1) W1.2 (F0.5&I1.3) W0.1 (F1.4&I0.2) W1.3 (F0.6&I1.4) W0.2 (F1.5&I0.3) W1.4 "
        "(F0.7&I1.5) W0.3 (F1.6&I0.4) W1.5 I1.6 W0.4 (F1.7&I0.5) I1.7 I0.6 W1.6 I0.7 W0.5 W1.7 "
        "W0.6 W0.7");
  CHECK(format_schedule(make_schedule(ScheduleKind::dualpipev, 2, 8, 1, true)) ==
        "r1: F0.0 (F1.0&F0.1) (F1.1&F0.2) B1.0 (F1.2&I0.0) (F0.3&I1.1) W0.0 (F1.3&I0.1) W1.1 "
        "(F0.4&I1.2) W0.1 (F1.4&I0.2) W1.2 (F0.5&I1.3) W0.2 (F1.5&I0.3) W1.3 (F0.6&I1.4) W0.3 "
        "(F1.6&I0.4) W1.4 (F0.7&I1.5) W0.4 (F1.7&I0.5) I1.6 I0.6 I1.7 I0.7 W1.5 W0.5 W1.6 W0.6 "
        "W1.7 W0.7");
  // For every size: the same forwards and backwards in the same order (a pair of forwards
  // unpacked), the same messages in the same order, only weight passes moved (a B may become I
  // and W, never the other way) and batches merged (never split). Passes and messages are
  // compared as two separate sequences.
  auto without_weights = [](const Schedule& s) {
    std::vector<std::string> passes, messages;
    for (Action a : s.actions) {
      if (a.kind == ActionKind::weight || a.kind == ActionKind::commit) continue;
      a.zero_bubble = false;
      if (a.is_comm()) {
        messages.push_back(action_label(a));
      } else if (a.kind == ActionKind::forward_pair) {
        passes.push_back(action_label({ActionKind::forward, a.chunk, a.micro}));
        passes.push_back(action_label({ActionKind::forward, a.chunk_b, a.micro_b}));
      } else {
        passes.push_back(action_label(a));
      }
    }
    return std::make_pair(passes, messages);
  };
  auto commits = [](const Schedule& s) {
    return std::count_if(s.actions.begin(), s.actions.end(),
                         [](const Action& a) { return a.kind == ActionKind::commit; });
  };
  int compared = 0, paired = 0;
  for (ScheduleKind kind : {ScheduleKind::dualpipe, ScheduleKind::dualpipev})
    for (int pp = 1; pp <= 8; ++pp)
      for (int chunks : testing::chunk_counts()) {
        if (!testing::valid_size(kind, pp, chunks)) continue;
        INFO(schedule_kind_name(kind) << " pp=" << pp << " chunks=" << chunks);
        for (int r = 0; r < pp; ++r) {
          const Schedule plain = make_schedule(kind, pp, chunks, r);
          const Schedule ep = make_schedule(kind, pp, chunks, r, true);
          CHECK(ep.ep_overlap);
          CHECK(without_weights(ep) == without_weights(plain));
          CHECK(commits(ep) <= commits(plain));
          // Every main-loop pair defers its backward's weight pass; only the turning ranks
          // (V's last, DualPipe's two middle ones) pair forwards, as many as they have
          // phase-1 warm-up forwards.
          const bool turn = kind == ScheduleKind::dualpipev ? r == pp - 1 : r == pp / 2 - 1 || r == pp / 2;
          int forward_pairs = 0;
          for (const Action& a : ep.actions) {
            if (a.kind == ActionKind::forward_backward) CHECK(a.zero_bubble);
            forward_pairs += a.kind == ActionKind::forward_pair;
          }
          const int half = kind == ScheduleKind::dualpipev ? pp : pp / 2;
          CHECK(forward_pairs == (turn ? half : 0));
          paired += forward_pairs > 0;
          // The price: at most one more micro-batch slot per chunk, activations unchanged.
          for (int c = 0; c < 2; ++c)
            CHECK(max_in_flight_slots(ep, c) <= max_in_flight_slots(plain, c) + 1);
          CHECK(in_flight_peaks(ep).activations == in_flight_peaks(plain).activations);
          ++compared;
        }
      }
  CHECK(compared > 100);
  CHECK(paired > 20);
}

TEST_CASE("communication mirrors the reference's calls", "[schedule]") {
  // Rank 1 of DualPipe pp=4 (a middle rank): step 1 is empty, step 2 starts by queueing the
  // receive of its first direction-0 input and commits it alone; its F0 output leaves with the
  // F1 input receive in the next batch.
  Schedule s = make_schedule(ScheduleKind::dualpipe, 4, 8, 1);
  std::vector<std::string> head;
  for (size_t i = 0; i < 8; ++i) head.push_back(action_label(s.actions[i]));
  CHECK(head == std::vector<std::string>{"recv_forward(0.0)", "commit", "F0.0", "send_forward(0.0)",
                                         "recv_forward(0.1)", "recv_forward(1.0)", "commit",
                                         "F1.0"});
  // A W commits what is queued before it runs, so this rank has nothing left at the end; where
  // the last backward's gradient is still queued, the step ends with its commit.
  CHECK(s.actions.back().kind == ActionKind::weight);
  Schedule last = make_schedule(ScheduleKind::one_f_one_b, 2, 3, 1);
  REQUIRE(last.actions.size() > 3);
  CHECK(action_label(last.actions[last.actions.size() - 3]) == "B0.2");
  CHECK(action_label(last.actions[last.actions.size() - 2]) == "send_backward(0.2)");
  CHECK(last.actions.back().kind == ActionKind::commit);
  // Rank 0's first forward has its input locally: no receive, no commit before it.
  Schedule r0 = make_schedule(ScheduleKind::dualpipe, 4, 8, 0);
  CHECK(action_label(r0.actions[0]) == "F0.0");
  CHECK(action_label(r0.actions[1]) == "send_forward(0.0)");
}

TEST_CASE("in-flight peaks: activations PP+1 for DualPipe and DualPipeV, slots per chunk",
          "[schedule]") {
  for (const Size& z : testing::valid_sizes()) {
    INFO(size_text(z));
    for (const Schedule& s : testing::schedules_of(z)) {
      INFO("rank " << s.rank);
      InFlightPeaks p = in_flight_peaks(s);
      switch (z.kind) {
        case ScheduleKind::dualpipe:
          CHECK(p.activations == z.pp + 1);
          break;
        case ScheduleKind::dualpipev:
          CHECK(p.activations == 2 * z.pp + 1);
          break;
        case ScheduleKind::one_f_one_b:
          CHECK(p.activations == z.pp - s.rank);
          break;
        case ScheduleKind::sequential:
          CHECK(p.activations == std::min(z.ep_overlap ? 3 : 2, z.chunks));
          if (z.ep_overlap) CHECK(p.slots[0] == std::min(4, z.chunks));
          break;
      }
      // A slot lives from the forward to the weight pass, so it is never fewer than the
      // activations of that chunk; the per-chunk peaks bound the total.
      int total = 0;
      for (size_t c = 0; c < s.places.size(); ++c) {
        CHECK(max_in_flight_slots(s, static_cast<int>(c)) == p.slots[c]);
        CHECK(p.slots[c] >= 1);
        CHECK(p.slots[c] <= s.micro_per_chunk());
        total += p.slots[c];
      }
      CHECK(total >= p.activations);
    }
  }
  // Hand count, DualPipe pp=4 chunks=8 rank 0: direction 0 holds F0.0..F0.3 until the I/W tail.
  InFlightPeaks p = in_flight_peaks(make_schedule(ScheduleKind::dualpipe, 4, 8, 0));
  CHECK(p.slots == std::vector<int>{4, 1});
}

TEST_CASE("schedule kinds by name", "[schedule]") {
  for (auto kind : testing::all_kinds())
    CHECK(schedule_kind_from_name(schedule_kind_name(kind)) == kind);
  CHECK(schedule_kind_from_name("1f1b") == ScheduleKind::one_f_one_b);
  CHECK_THROWS_AS(schedule_kind_from_name("gpipe"), core::ConfigError);
  CHECK_THROWS_WITH(schedule_kind_from_name("gpipe"),
                    Contains("gpipe") && Contains("dualpipev") && Contains("1f1b"));
}

TEST_CASE("impossible sizes are refused with the offending values", "[schedule]") {
  using K = ScheduleKind;
  auto refuses = [](K kind, int pp, int chunks, int rank, std::vector<std::string> parts) {
    INFO(schedule_kind_name(kind) << " pp=" << pp << " chunks=" << chunks << " rank=" << rank);
    try {
      make_schedule(kind, pp, chunks, rank);
      FAIL("accepted");
    } catch (const core::ConfigError& e) {
      for (const std::string& part : parts) CHECK_THAT(e.what(), Contains(part));
    }
  };
  refuses(K::dualpipe, 3, 12, 0, {"pp = 3", "even"});
  refuses(K::dualpipe, 4, 6, 0, {"chunks = 6", "pp = 4", "2*pp"});
  refuses(K::dualpipe, 4, 9, 0, {"chunks = 9"});
  refuses(K::dualpipev, 4, 7, 0, {"chunks = 7", "pp = 4"});
  refuses(K::one_f_one_b, 4, 3, 0, {"chunks = 3", "pp = 4"});
  refuses(K::sequential, 2, 4, 0, {"pp = 2"});
  refuses(K::dualpipev, 2, 4, 2, {"rank 2", "pp = 2"});
  refuses(K::one_f_one_b, 0, 4, 0, {"pp = 0"});
  refuses(K::sequential, 1, 0, 0, {"chunks = 0"});
  // The sweep: exactly the sizes the rule calls valid are accepted.
  for (auto kind : testing::all_kinds())
    for (int pp = 1; pp <= 8; ++pp)
      for (int chunks : testing::chunk_counts()) {
        INFO(schedule_kind_name(kind) << " pp=" << pp << " chunks=" << chunks);
        if (testing::valid_size(kind, pp, chunks))
          CHECK_NOTHROW(make_schedule(kind, pp, chunks, pp - 1));
        else
          CHECK_THROWS_AS(make_schedule(kind, pp, chunks, 0), core::ConfigError);
      }
}
