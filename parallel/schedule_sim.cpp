// The pipeline simulator: every rank's action list run with commit-and-wait semantics on a cost
// model, checking on the way that each op has its inputs (see schedule_sim.hpp).
#include "parallel/schedule_sim.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <deque>

#include "core/error.hpp"

namespace parallel {

double CostModel::of(const Action& a) const {
  switch (a.kind) {
    case ActionKind::forward:
      return F * (1 + A);
    case ActionKind::backward:
      return (a.zero_bubble ? I : B) + A * I;
    case ActionKind::weight:
      return W;
    case ActionKind::forward_backward:
      return a.zero_bubble ? FB - B + I : FB;
    case ActionKind::forward_pair:
      return 2 * F;
    case ActionKind::backward_pair:
      return a.zero_bubble ? 2 * I : 2 * B;
    default:
      return 0;
  }
}

namespace {

// The input-only backward one half of a pair stands for, as the weight queue holds it.
Action backward_half(int chunk, int micro) {
  Action a{ActionKind::backward, chunk, micro};
  a.zero_bubble = true;
  return a;
}

}  // namespace

std::string SimResult::report() const {
  std::string out = deadlock;
  for (const std::string& e : errors) out += (out.empty() ? "" : "\n") + e;
  return out;
}

namespace {

// What a message carries; a receive expects exactly the tag of the send it matches.
struct Tag {
  bool grad = false;
  int stage = 0;  // destination stage
  int micro = 0;
  bool operator==(const Tag& o) const {
    return grad == o.grad && stage == o.stage && micro == o.micro;
  }
};

std::string tag_text(const Tag& t) {
  return fmt::format("{} for stage {} micro {}", t.grad ? "gradient" : "activation", t.stage,
                     t.micro);
}

struct Post {
  Tag tag;
  double time = 0;
};

// Messages from one rank to another, matched in posting order.
struct Channel {
  std::vector<Post> sends, recvs;
};

struct Op {  // one queued op of the rank's open commit
  int channel = 0;
  bool send = false;
  size_t index = 0;  // position on the channel once posted
  Tag tag;
  int from = 0, to = 0;
  Action action;
};

struct RankState {
  const Schedule* s = nullptr;
  size_t pc = 0;
  double clock = 0;
  std::vector<Op> queued;
  bool posted = false;  // the commit at pc has put `queued` on the channels
  int commits = 0;
  std::vector<int> fwd, bwd, recv_f, recv_b, sent_f, sent_b;  // done counts per chunk
  std::deque<Action> deferred;                                // I's awaiting their W
  std::deque<double> weight_left;  // per deferred entry, its weight work not yet run (fill)
  bool finished() const { return pc == s->actions.size(); }
};

class Simulator {
 public:
  Simulator(const std::vector<Schedule>& ranks, const CostModel& cost)
      : cost_(cost), pp_(static_cast<int>(ranks.size())), channels_(pp_ * pp_) {
    FLOT_CHECK(pp_ > 0, "simulate needs at least one rank");
    for (int r = 0; r < pp_; ++r) {
      const Schedule& s = ranks[r];
      FLOT_CHECK(
          s.rank == r && s.pp == pp_ && s.kind == ranks[0].kind && s.chunks == ranks[0].chunks,
          "schedule {} is rank {} of {} {}/{}; expected rank {} of the same pipeline", r, s.rank,
          schedule_kind_name(s.kind), s.pp, s.chunks, r);
      RankState st;
      st.s = &s;
      size_t n = s.places.size();
      for (auto* v : {&st.fwd, &st.bwd, &st.recv_f, &st.recv_b, &st.sent_f, &st.sent_b})
        v->assign(n, 0);
      state_.push_back(st);
    }
    res_.ranks.resize(pp_);
  }

  SimResult run() {
    bool progress = true;
    while (progress) {
      progress = false;
      for (int r = 0; r < pp_; ++r) progress |= advance(r);
    }
    bool all_done = std::all_of(state_.begin(), state_.end(),
                                [](const RankState& st) { return st.finished(); });
    if (!all_done)
      report_deadlock();
    else
      check_leftovers();
    for (int r = 0; r < pp_; ++r) {
      SimRank& out = res_.ranks[r];
      out.end = state_[r].clock;
      res_.makespan = std::max(res_.makespan, out.end);
      InFlightPeaks peaks = in_flight_peaks(*state_[r].s);
      out.peak_activations = peaks.activations;
      out.peak_slots = peaks.slots;
    }
    for (SimRank& out : res_.ranks) out.idle = res_.makespan - out.busy;
    return res_;
  }

 private:
  void error(int r, const std::string& what) {
    const RankState& st = state_[r];
    res_.errors.push_back(
        fmt::format("r{} action {} ({}): {}", r, st.pc, action_label(st.s->actions[st.pc]), what));
  }

  // Runs rank r until it blocks or ends; true if it moved or posted anything.
  bool advance(int r) {
    RankState& st = state_[r];
    bool moved = false;
    while (!st.finished()) {
      const Action& a = st.s->actions[st.pc];
      if (a.kind == ActionKind::commit) {
        if (!st.posted) {
          post(r);
          moved = true;
        }
        if (!try_complete(r)) return moved;
      } else if (a.is_comm()) {
        queue(r, a);
      } else {
        compute(r, a);
      }
      ++st.pc;
      moved = true;
    }
    return moved;
  }

  void queue(int r, const Action& a) {
    RankState& st = state_[r];
    const ChunkPlace& p = st.s->places[a.chunk];
    Op op;
    op.action = a;
    op.send = a.kind == ActionKind::send_forward || a.kind == ActionKind::send_backward;
    const bool grad = a.kind == ActionKind::recv_backward || a.kind == ActionKind::send_backward;
    // Forward data flows prev -> this -> next, gradients the other way.
    int peer = (a.kind == ActionKind::recv_forward || a.kind == ActionKind::send_backward)
                   ? p.prev_rank
                   : p.next_rank;
    if (peer < 0 || peer >= pp_) {
      error(r, fmt::format("chunk {} has no peer rank on that side", a.chunk));
      return;
    }
    int dest_stage = p.stage;
    if (a.kind == ActionKind::send_forward) dest_stage = p.stage + 1;
    if (a.kind == ActionKind::send_backward) dest_stage = p.stage - 1;
    op.tag = Tag{grad, dest_stage, a.micro};
    op.from = op.send ? r : peer;
    op.to = op.send ? peer : r;
    op.channel = op.from * pp_ + op.to;
    if (a.kind == ActionKind::send_forward) {
      if (st.sent_f[a.chunk] != a.micro || st.fwd[a.chunk] <= a.micro)
        error(r, "sends an activation out of order or before its forward ran");
      ++st.sent_f[a.chunk];
    } else if (a.kind == ActionKind::send_backward) {
      if (st.sent_b[a.chunk] != a.micro || st.bwd[a.chunk] <= a.micro)
        error(r, "sends a gradient out of order or before its backward ran");
      ++st.sent_b[a.chunk];
    }
    st.queued.push_back(op);
  }

  void post(int r) {
    RankState& st = state_[r];
    for (Op& op : st.queued) {
      Channel& ch = channels_[op.channel];
      auto& side = op.send ? ch.sends : ch.recvs;
      op.index = side.size();
      side.push_back({op.tag, st.clock});
      if (op.send) ++res_.ranks[r].messages_sent;
    }
    st.posted = true;
  }

  bool try_complete(int r) {
    RankState& st = state_[r];
    double done = st.clock;
    for (const Op& op : st.queued) {
      const Channel& ch = channels_[op.channel];
      const auto& other = op.send ? ch.recvs : ch.sends;
      if (op.index >= other.size()) return false;
      const Post& mine = (op.send ? ch.sends : ch.recvs)[op.index];
      done = std::max(done, std::max(mine.time, other[op.index].time) + cost_.p2p);
    }
    for (const Op& op : st.queued) {
      if (op.send) continue;
      const Tag& sent = channels_[op.channel].sends[op.index].tag;
      if (!(sent == op.tag))
        error(r, fmt::format("receive from r{} expects the {} but the matching send carries the {}",
                             op.from, tag_text(op.tag), tag_text(sent)));
      auto& count = op.tag.grad ? st.recv_b : st.recv_f;
      ++count[op.action.chunk];
    }
    if (done > st.clock) {
      // Weight work run while the messages travel is busy time, the rest of the wait idle.
      const double filled = fill(st, done - st.clock);
      if (filled > 0) res_.events.push_back({r, "W (in a wait)", st.clock, st.clock + filled, false});
      if (done > st.clock + filled) res_.events.push_back({r, "wait", st.clock + filled, done, true});
      res_.ranks[r].wait += done - st.clock - filled;
      res_.ranks[r].busy += filled;
    }
    st.clock = done;
    st.queued.clear();
    st.posted = false;
    ++st.commits;
    return true;
  }

  // The chunk on this rank whose input or gradient moves in memory (DualPipeV's turn), or -1.
  int local_partner(const Schedule& s, bool want_local_out) const {
    for (size_t c = 0; c < s.places.size(); ++c)
      if (want_local_out ? s.places[c].local_out : s.places[c].local_in) return static_cast<int>(c);
    return -1;
  }

  // The forward (grad = false) or backward (grad = true) of (c, m): in micro order, a backward
  // after its forward, and only once its input (activation or output gradient) is here, by
  // message or from the other chunk of the V's turn.
  void run_pass(int r, int c, int m, bool grad) {
    RankState& st = state_[r];
    const ChunkPlace& p = st.s->places[c];
    const char* what = grad ? "backward" : "forward";
    std::vector<int>& done = grad ? st.bwd : st.fwd;
    if (done[c] != m || (grad && st.fwd[c] <= m))
      error(r, fmt::format("{} {}.{} out of order or before its forward", what, c, m));
    const int peer = grad ? p.next_rank : p.prev_rank;
    const std::vector<int>& arrived = grad ? st.recv_b : st.recv_f;
    if (peer >= 0 && arrived[c] <= m)
      error(r, fmt::format("{} {}.{} runs before its {} arrived", what, c, m,
                           grad ? "output gradient" : "input"));
    if (grad ? p.local_out : p.local_in) {
      int src = local_partner(*st.s, /*want_local_out=*/!grad);
      if (src < 0 || done[src] <= m)
        error(r, fmt::format("{} {}.{} runs before the local {} feeding it", what, c, m, what));
    }
    ++done[c];
  }

  // Whether the second half of a pair needs the first: the forward and backward of one
  // micro-batch of one chunk, or both passes of one micro-batch across the V's turn. The halves
  // run interleaved piece by piece, so a pair must not hold such a dependency.
  bool halves_depend(const Schedule& s, const Action& a) const {
    if (a.micro != a.micro_b) return false;
    if (a.chunk == a.chunk_b) return true;
    const bool grad = a.kind == ActionKind::backward_pair;
    if (a.kind == ActionKind::forward_backward) return false;  // different chunks: independent
    const ChunkPlace& second = s.places[a.chunk_b];
    return grad ? second.local_out && a.chunk == local_partner(s, /*want_local_out=*/false)
                : second.local_in && a.chunk == local_partner(s, /*want_local_out=*/true);
  }

  // Runs up to `seconds` of deferred weight work, oldest first (CostModel::fill); returns how
  // much ran.
  double fill(RankState& st, double seconds) const {
    if (cost_.fill <= 0) return 0;
    double ran = 0;
    for (double& left : st.weight_left) {
      const double run = std::min(left, seconds - ran);
      left -= run;
      ran += run;
      if (ran >= seconds) break;
    }
    return ran;
  }
  void defer(RankState& st, const Action& a) {
    st.deferred.push_back(a);
    st.weight_left.push_back(cost_.W);
  }

  void compute(int r, const Action& a) {
    RankState& st = state_[r];
    if (!st.queued.empty())
      error(r, "computes while sends or receives are queued but not committed");
    if (a.is_pair() && halves_depend(*st.s, a))
      error(r, fmt::format("{} pairs two passes of which one needs the other", action_label(a)));
    double weight_cost = cost_.W;
    // A lone pass's exchange waits are filled with older weight work, before it defers its own.
    if (a.kind == ActionKind::forward) fill(st, cost_.A * cost_.F);
    if (a.kind == ActionKind::backward) fill(st, cost_.A * cost_.I);
    switch (a.kind) {
      case ActionKind::forward:
        run_pass(r, a.chunk, a.micro, /*grad=*/false);
        break;
      case ActionKind::backward:
        run_pass(r, a.chunk, a.micro, /*grad=*/true);
        if (a.zero_bubble) defer(st, a);
        break;
      case ActionKind::weight:
        if (st.deferred.empty() || st.deferred.front().chunk != a.chunk ||
            st.deferred.front().micro != a.micro) {
          error(r, "the weight pass is not the oldest deferred one");
        }
        if (!st.deferred.empty()) {
          weight_cost = st.weight_left.front();
          st.deferred.pop_front();
          st.weight_left.pop_front();
        }
        break;
      case ActionKind::forward_backward:
        run_pass(r, a.chunk, a.micro, /*grad=*/false);
        run_pass(r, a.chunk_b, a.micro_b, /*grad=*/true);
        if (a.zero_bubble) defer(st, backward_half(a.chunk_b, a.micro_b));
        break;
      case ActionKind::forward_pair:
      case ActionKind::backward_pair: {
        const bool grad = a.kind == ActionKind::backward_pair;
        run_pass(r, a.chunk, a.micro, grad);
        run_pass(r, a.chunk_b, a.micro_b, grad);
        if (grad && a.zero_bubble) {
          defer(st, backward_half(a.chunk, a.micro));
          defer(st, backward_half(a.chunk_b, a.micro_b));
        }
        break;
      }
      default:
        break;
    }
    double t = a.kind == ActionKind::weight ? weight_cost : cost_.of(a);
    res_.events.push_back({r, action_label(a), st.clock, st.clock + t, false});
    res_.ranks[r].busy += t;
    st.clock += t;
  }

  void report_deadlock() {
    std::string text = "deadlock: no rank can proceed";
    for (int r = 0; r < pp_; ++r) {
      const RankState& st = state_[r];
      if (st.finished()) {
        text += fmt::format("\n  r{} finished", r);
        continue;
      }
      text += fmt::format("\n  r{} waits in commit {} (action {}) for:", r, st.commits, st.pc);
      for (const Op& op : st.queued) {
        const Channel& ch = channels_[op.channel];
        const auto& other = op.send ? ch.recvs : ch.sends;
        if (op.index < other.size()) continue;
        int peer = op.send ? op.to : op.from;
        text += fmt::format(" [{} {} r{}: r{} has posted {} matching {}]", action_label(op.action),
                            op.send ? "to" : "from", peer, peer, other.size(),
                            op.send ? "receives" : "sends");
      }
    }
    res_.deadlock = text;
  }

  void check_leftovers() {
    for (int r = 0; r < pp_; ++r) {
      const RankState& st = state_[r];
      const int expect = st.s->micro_per_chunk();
      if (!st.queued.empty())
        res_.errors.push_back(
            fmt::format("r{}: {} ops queued after the last commit", r, st.queued.size()));
      if (!st.deferred.empty())
        res_.errors.push_back(
            fmt::format("r{}: {} weight passes never ran", r, st.deferred.size()));
      for (size_t c = 0; c < st.fwd.size(); ++c)
        if (st.fwd[c] != expect || st.bwd[c] != expect)
          res_.errors.push_back(
              fmt::format("r{} chunk {}: {} forwards and {} backwards, expected {}", r, c,
                          st.fwd[c], st.bwd[c], expect));
    }
    for (int from = 0; from < pp_; ++from)
      for (int to = 0; to < pp_; ++to) {
        const Channel& ch = channels_[from * pp_ + to];
        if (ch.sends.size() != ch.recvs.size())
          res_.errors.push_back(fmt::format("r{} -> r{}: {} sends but {} receives", from, to,
                                            ch.sends.size(), ch.recvs.size()));
      }
  }

  CostModel cost_;
  int pp_;
  std::vector<Channel> channels_;  // [from * pp + to]
  std::vector<RankState> state_;
  SimResult res_;
};

}  // namespace

SimResult simulate(const std::vector<Schedule>& ranks, const CostModel& cost) {
  return Simulator(ranks, cost).run();
}

}  // namespace parallel
