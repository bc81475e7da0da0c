// The schedule generators. DualPipe and DualPipeV follow DeepSeek's reference step() phase by
// phase, with its communication calls in the same places; 1F1B and sequential are written in the
// same verbs (forward chunk, backward chunk, pair, weight chunk, commit-and-wait).
#include "parallel/schedule.hpp"

#include <algorithm>
#include <deque>

#include "core/error.hpp"

namespace parallel {

ScheduleKind schedule_kind_from_name(const std::string& name) {
  if (name == "sequential") return ScheduleKind::sequential;
  if (name == "1f1b") return ScheduleKind::one_f_one_b;
  if (name == "dualpipe") return ScheduleKind::dualpipe;
  if (name == "dualpipev") return ScheduleKind::dualpipev;
  FLOT_THROW(core::ConfigError,
             "unknown pipeline schedule '{}'; choose one of sequential, 1f1b, dualpipe, dualpipev",
             name);
}

const char* schedule_kind_name(ScheduleKind k) {
  switch (k) {
    case ScheduleKind::sequential:
      return "sequential";
    case ScheduleKind::one_f_one_b:
      return "1f1b";
    case ScheduleKind::dualpipe:
      return "dualpipe";
    case ScheduleKind::dualpipev:
      return "dualpipev";
  }
  return "?";
}

int Schedule::micro_per_chunk() const {
  return kind == ScheduleKind::dualpipe ? chunks / 2 : chunks;
}

namespace {

void check_preconditions(ScheduleKind kind, int pp, int chunks, int rank) {
  const char* name = schedule_kind_name(kind);
  if (pp < 1) FLOT_THROW(core::ConfigError, "{}: pipeline size must be >= 1 (pp = {})", name, pp);
  if (chunks < 1)
    FLOT_THROW(core::ConfigError, "{}: needs at least one micro-batch (chunks = {})", name, chunks);
  if (rank < 0 || rank >= pp)
    FLOT_THROW(core::ConfigError, "{}: rank {} is outside the pipeline of pp = {} ranks", name,
               rank, pp);
  switch (kind) {
    case ScheduleKind::sequential:
      if (pp != 1)
        FLOT_THROW(core::ConfigError,
                   "sequential runs without a pipeline and needs pp = 1 (pp = {}); use 1f1b, "
                   "dualpipe or dualpipev for pp > 1",
                   pp);
      break;
    case ScheduleKind::one_f_one_b:
      if (chunks < pp)
        FLOT_THROW(core::ConfigError,
                   "1f1b needs chunks >= pp micro-batches (chunks = {}, pp = {})", chunks, pp);
      break;
    case ScheduleKind::dualpipe:
      if (pp % 2 != 0)
        FLOT_THROW(core::ConfigError,
                   "dualpipe needs an even pipeline size (pp = {}); dualpipev allows odd sizes",
                   pp);
      if (chunks % 2 != 0 || chunks < 2 * pp)
        FLOT_THROW(
            core::ConfigError,
            "dualpipe needs an even number of chunks >= 2*pp (chunks = {}, pp = {}, 2*pp = {})",
            chunks, pp, 2 * pp);
      break;
    case ScheduleKind::dualpipev:
      if (chunks < 2 * pp)
        FLOT_THROW(core::ConfigError,
                   "dualpipev needs chunks >= 2*pp (chunks = {}, pp = {}, 2*pp = {})", chunks, pp,
                   2 * pp);
      break;
  }
}

std::vector<ChunkPlace> make_places(ScheduleKind kind, int pp, int rank) {
  const int below = rank > 0 ? rank - 1 : -1;       // neighbour towards rank 0
  const int above = rank < pp - 1 ? rank + 1 : -1;  // neighbour towards rank pp-1
  ChunkPlace down;                                  // stage rank, data flows 0 -> pp-1
  down.stage = rank;
  down.prev_rank = below;
  down.next_rank = above;
  if (kind == ScheduleKind::sequential || kind == ScheduleKind::one_f_one_b) return {down};
  ChunkPlace up;  // data flows pp-1 -> 0
  up.prev_rank = above;
  up.next_rank = below;
  if (kind == ScheduleKind::dualpipe) {
    up.stage = pp - 1 - rank;
  } else {
    up.stage = 2 * pp - 1 - rank;
    // The last rank turns the V: its chunk 0 feeds its chunk 1 in memory.
    down.local_out = rank == pp - 1;
    up.local_in = rank == pp - 1;
  }
  return {down, up};
}

// Appends actions in the reference's verbs, tracking per-chunk counters so that every action
// carries its micro id, and omitting the communication the reference skips (see the header).
class Builder {
 public:
  explicit Builder(Schedule& s)
      : s_(s), n_(s.places.size()), f_(n_), b_(n_), rf_(n_), rb_(n_), sf_(n_), sb_(n_) {}

  void recv_forward(int c) {
    if (s_.places[c].prev_rank >= 0) queue(ActionKind::recv_forward, c, rf_[c]++);
  }
  void recv_backward(int c) {
    if (s_.places[c].next_rank >= 0) queue(ActionKind::recv_backward, c, rb_[c]++);
  }
  void send_forward(int c) {
    if (s_.places[c].next_rank >= 0) queue(ActionKind::send_forward, c, sf_[c]++);
  }
  void send_backward(int c) {
    if (s_.places[c].prev_rank >= 0) queue(ActionKind::send_backward, c, sb_[c]++);
  }
  void commit() {
    if (queued_ == 0) return;
    push({ActionKind::commit});
    queued_ = 0;
  }

  // From now on every compute action's commit is followed by the oldest deferred weight passes
  // until at most `keep` remain (-1: none emitted this way).
  void set_weight_keep(int keep) { weight_keep_ = keep; }

  // [recv] commit F [send]
  void forward_chunk(int c, bool recv = true, bool send = true) {
    if (recv) recv_forward(c);
    commit_then_weights();
    push({ActionKind::forward, c, f_[c]++});
    if (send) send_forward(c);
  }
  // [recv] commit B|I [send]
  void backward_chunk(int c, bool zero_bubble = false, bool recv = true, bool send = true) {
    if (recv) recv_backward(c);
    commit_then_weights();
    check_full_backward(zero_bubble, c);
    Action a{ActionKind::backward, c, b_[c]++};
    a.zero_bubble = zero_bubble;
    if (zero_bubble) deferred_.push_back(a);
    push(a);
    if (send) send_backward(c);
  }
  // [recv F] recv B, commit, (F&B) or (F&I), send F, send B
  void forward_backward_chunk(int c0, int c1, bool recv0 = true, bool zero_bubble = false) {
    if (recv0) recv_forward(c0);
    recv_backward(c1);
    commit_then_weights();
    check_full_backward(zero_bubble, c1);
    Action a{ActionKind::forward_backward, c0, f_[c0]++};
    a.chunk_b = c1;
    a.micro_b = b_[c1]++;
    a.zero_bubble = zero_bubble;
    if (zero_bubble) deferred_.push_back({ActionKind::backward, c1, a.micro_b});
    push(a);
    send_forward(c0);
    send_backward(c1);
  }
  // commit (F&F), (B&B) or (I&I): the chunk's next two forwards or backwards, overlapped (no
  // messages: used without a pipeline only)
  void same_pair_chunk(int c, bool forward, bool zero_bubble = false) {
    commit_then_weights();
    if (!forward) check_full_backward(zero_bubble, c);
    std::vector<int>& next = forward ? f_ : b_;
    Action a{forward ? ActionKind::forward_pair : ActionKind::backward_pair, c, next[c]++};
    a.chunk_b = c;
    a.micro_b = next[c]++;
    a.zero_bubble = zero_bubble && !forward;
    if (a.zero_bubble) {
      deferred_.push_back({ActionKind::backward, c, a.micro});
      deferred_.push_back({ActionKind::backward, c, a.micro_b});
    }
    push(a);
  }
  // commit (F&F): the next forwards of chunks c0 and c1, overlapped (the caller queues their
  // messages)
  void forward_pair_chunk(int c0, int c1) {
    commit_then_weights();
    Action a{ActionKind::forward_pair, c0, f_[c0]++};
    a.chunk_b = c1;
    a.micro_b = f_[c1]++;
    push(a);
  }
  bool has_deferred() const { return !deferred_.empty(); }
  // commit W (the oldest deferred weight pass)
  void weight_chunk() {
    FLOT_CHECK(!deferred_.empty(), "weight pass with an empty queue on rank {}", s_.rank);
    commit();
    Action a = deferred_.front();
    deferred_.pop_front();
    push({ActionKind::weight, a.chunk, a.micro});
  }
  void finish() {
    commit();
    FLOT_CHECK(deferred_.empty(), "{} weight passes left on rank {}", deferred_.size(), s_.rank);
  }

 private:
  void push(Action a) { s_.actions.push_back(a); }
  void commit_then_weights() {
    commit();
    while (weight_keep_ >= 0 && deferred_.size() > static_cast<size_t>(weight_keep_)) weight_chunk();
  }
  // A full backward runs its weight pass at once. With older weight passes still deferred, the
  // executor may have run some of their pieces inside pairs and not others, so a parameter's
  // micro-batch contributions would be summed in an order that depends on timing.
  void check_full_backward(bool zero_bubble, int c) const {
    FLOT_CHECK(zero_bubble || deferred_.empty(),
               "rank {}: a full backward B{}.{} while {} weight passes are deferred", s_.rank, c,
               b_[c], deferred_.size());
  }
  void queue(ActionKind k, int c, int micro) {
    push({k, c, micro});
    ++queued_;
  }

  Schedule& s_;
  size_t n_;
  std::vector<int> f_, b_, rf_, rb_, sf_, sb_;  // next micro per chunk: compute and messages
  std::deque<Action> deferred_;                 // zero-bubble backwards awaiting their W
  int queued_ = 0;
  int weight_keep_ = -1;                        // see set_weight_keep
};

// DualPipe's step() and DualPipeV's step() are the same eight phases over local phases 0/1:
// H = half ranks (N/2, or N for V), R = this rank's distance from the nearer end (min(r, N-1-r),
// or r for V), M = micro-batches per phase, `turn` = the rank that runs the first main-loop pair
// unoverlapped (the two middle ranks, or V's last rank), `flip` = 1 where local phase 0 is
// chunk 1 (DualPipe's second half of ranks).
void emit_dualpipe_phases(Builder& b, int H, int R, int M, bool turn, int flip, bool defer) {
  const int p0 = 0 ^ flip, p1 = 1 ^ flip;
  // 1: forwards of phase 0 fill the pipe up to this rank.
  for (int i = 0; i < 2 * (H - R - 1); ++i) b.forward_chunk(p0);
  // 2: alternate phase-0 and phase-1 forwards. The next phase-0 input is received together with
  // the phase-1 forward. On the turning ranks the phase-0 output leaves at once (its consumer,
  // the other middle rank, needs it for its phase-1 forward) and the last phase-1 output waits
  // for the main loop.
  b.recv_forward(p0);
  const bool pair_turn = defer && turn;
  if (pair_turn) {
    // The expert-parallel form pairs the turning rank's forwards across micro-batches: the
    // phase-1 forward of i (at DualPipeV's turn it reads the phase-0 forward of i, just run)
    // with the phase-0 forward of i+1 (whose input has arrived with it), the last pair taking
    // the main loop's first forward. The messages are the reference's in the same order; a
    // batch of sends is committed with the next receives instead of on its own.
    b.forward_chunk(p0, /*recv=*/false, /*send=*/true);
    for (int i = 0; i < R + 1; ++i) {
      b.recv_forward(p0);
      b.recv_forward(p1);
      b.forward_pair_chunk(p1, p0);
      if (i < R) {
        b.send_forward(p1);
        b.send_forward(p0);
      }
    }
  } else {
    for (int i = 0; i < R + 1; ++i) {
      b.forward_chunk(p0, /*recv=*/false, /*send=*/turn);
      b.recv_forward(p0);
      b.forward_chunk(p1, /*recv=*/true, /*send=*/!turn || i < R);
      if (!turn) b.send_forward(p0);
    }
  }
  // 3: zero-bubble backward of phase 1, its weight pass, and another phase-1 forward.
  for (int i = 0; i < H - R - 1; ++i) {
    b.backward_chunk(p1, /*zero_bubble=*/true);
    b.recv_forward(p1);
    b.weight_chunk();
    b.forward_chunk(p1, /*recv=*/false);
  }
  // 4: the main loop of overlapped pairs. With `defer`, the pairs' backwards (and step 5's) are
  // input passes whose weight passes run one pair later.
  if (defer) b.set_weight_keep(1);
  for (int i = 0; i < M - 2 * H + R + 1; ++i) {
    if (i == 0 && turn) {
      // Not overlapped, to shorten the bubble; the sends are queued by hand.
      if (!pair_turn) b.forward_chunk(p0, /*recv=*/false, /*send=*/false);
      b.send_forward(p1);
      b.backward_chunk(p1, /*zero_bubble=*/false, /*recv=*/true, /*send=*/false);
      b.send_forward(p0);
      b.send_backward(p1);
    } else {
      b.forward_backward_chunk(p0, p1, /*recv0=*/i > 0, defer);
    }
    b.forward_backward_chunk(p1, p0, /*recv0=*/true, defer);
  }
  // 5: drain phase-1 backwards against the remaining phase-1 forwards.
  for (int i = 0; i < H - R - 1; ++i) {
    b.backward_chunk(p1, defer);
    b.forward_backward_chunk(p1, p0, /*recv0=*/true, defer);
  }
  // 6: backwards of both phases; the second half of them defer their weight pass. The
  // expert-parallel form makes every one an input pass and runs all their weight passes after
  // (steps 7, 8 and the end): each of these lone backwards waits for its exchanges, the executor
  // fills those waits with the oldest deferred weight pieces, and its input gradient leaves
  // without the weight pass first. (With a lone pass waiting as long as it computes, the
  // simulator's `A=1,fill=1`: DualPipeV pp 2 x 16 ends at 103 instead of 107, pp 8 x 32 at 235
  // instead of 245; on a free link, A=0, at the same time.)
  if (defer) {
    b.set_weight_keep(-1);
    for (int i = 0; i < R + 1; ++i) {
      b.backward_chunk(p1, /*zero_bubble=*/true);
      b.backward_chunk(p0, /*zero_bubble=*/true);
    }
  } else {
    bool zero_bubble = false;
    for (int i = 0; i < R + 1; ++i) {
      if (i == (R + 1) / 2 && R % 2 == 1) zero_bubble = true;
      b.backward_chunk(p1, zero_bubble);
      if (i == (R + 1) / 2 && R % 2 == 0) zero_bubble = true;
      b.backward_chunk(p0, zero_bubble);
    }
  }
  // 7, 8: weight passes fill the drain.
  for (int i = 0; i < H - R - 1; ++i) {
    b.weight_chunk();
    b.backward_chunk(p0, /*zero_bubble=*/true);
  }
  for (int i = 0; i < R + 1; ++i) b.weight_chunk();
  while (b.has_deferred()) b.weight_chunk();  // the expert-parallel form's, from step 6
  b.finish();
}

// Non-interleaved 1F1B with full backwards. Each forward chunk's commit carries the previous
// backward's gradient send together with this forward's input receive, and each backward chunk's
// commit carries the forward output send together with the gradient receive. Neighbours thus
// post mirror-image batches (send F + recv B against recv F + send B), as Megatron's
// send_forward_recv_backward / send_backward_recv_forward do. Committing a send on its own
// instead deadlocks under rendezvous semantics: in the steady state rank r would wait to deliver
// an activation to r+1 while r+1 waits to deliver a gradient to r.
void emit_one_f_one_b(Builder& b, int pp, int chunks, int rank) {
  const int warmup = std::min(pp - rank - 1, chunks);
  for (int i = 0; i < warmup; ++i) b.forward_chunk(0);
  for (int i = warmup; i < chunks; ++i) {
    b.forward_chunk(0);
    b.backward_chunk(0);
  }
  for (int i = 0; i < warmup; ++i) b.backward_chunk(0);
  b.finish();
}

// pp = 1: F0, then (F m+1 & B m) pairs, then the last B; the pair lets expert-parallel
// all-to-all of one micro-batch hide behind the other's compute.
//
// ep_overlap: (F0&F1), then (F m & I m-2) pairs, each but the first followed by the oldest
// deferred weight pass (placed before the next pair: set_weight_keep(1)), then (I c-2 & I c-1)
// and the remaining weight passes. Every exchange of
// the step travels behind another micro-batch's compute, and each weight pass, deferred past one
// more pair, is work the executor can run while that pair waits for an exchange.
void emit_sequential(Builder& b, int chunks, bool ep_overlap) {
  if (!ep_overlap || chunks < 2) {
    b.forward_chunk(0);
    for (int m = 1; m < chunks; ++m) b.forward_backward_chunk(0, 0);
    b.backward_chunk(0);
    b.finish();
    return;
  }
  b.same_pair_chunk(0, /*forward=*/true);
  b.set_weight_keep(1);
  for (int m = 2; m < chunks; ++m) b.forward_backward_chunk(0, 0, /*recv0=*/true, /*zero_bubble=*/true);
  b.same_pair_chunk(0, /*forward=*/false, /*zero_bubble=*/true);
  while (b.has_deferred()) b.weight_chunk();
  b.finish();
}

}  // namespace

Schedule make_schedule(ScheduleKind kind, int pp, int chunks, int rank, bool ep_overlap) {
  check_preconditions(kind, pp, chunks, rank);
  Schedule s;
  s.kind = kind;
  s.ep_overlap = ep_overlap && kind != ScheduleKind::one_f_one_b;
  s.pp = pp;
  s.chunks = chunks;
  s.rank = rank;
  s.num_stages = kind == ScheduleKind::dualpipev ? 2 * pp : pp;
  s.places = make_places(kind, pp, rank);
  Builder b(s);
  switch (kind) {
    case ScheduleKind::sequential:
      emit_sequential(b, chunks, s.ep_overlap);
      break;
    case ScheduleKind::one_f_one_b:
      emit_one_f_one_b(b, pp, chunks, rank);
      break;
    case ScheduleKind::dualpipe: {
      const int half = pp / 2;
      const int R = std::min(rank, pp - 1 - rank);
      const bool middle = rank == half - 1 || rank == half;
      emit_dualpipe_phases(b, half, R, chunks / 2, middle, rank >= half ? 1 : 0, s.ep_overlap);
      break;
    }
    case ScheduleKind::dualpipev:
      emit_dualpipe_phases(b, pp, rank, chunks, rank == pp - 1, 0, s.ep_overlap);
      break;
  }
  return s;
}

std::vector<Schedule> make_schedules(ScheduleKind kind, int pp, int chunks, bool ep_overlap) {
  std::vector<Schedule> all;
  for (int r = 0; r < pp; ++r) all.push_back(make_schedule(kind, pp, chunks, r, ep_overlap));
  return all;
}

}  // namespace parallel
