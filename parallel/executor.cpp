// The schedule interpreter: slots, queued messages, the weight FIFO and overlapped pairs.
#include "parallel/executor.hpp"

#include <algorithm>
#include <chrono>

#include <fmt/format.h>

#include "core/error.hpp"
#include "kernels/ops.hpp"

namespace parallel {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

std::vector<int> Executor::slots_needed(const Schedule& schedule) {
  // A dry run of the rules run() follows: a slot is taken when a micro-batch's input is first
  // received (or its forward starts) and given back once its weight pass has run and every
  // message read from it has been delivered (at a later commit).
  const size_t chunks = schedule.places.size();
  const int micro = schedule.micro_per_chunk();
  std::vector<std::vector<int>> sends_left(chunks, std::vector<int>(micro, 0));
  std::vector<std::vector<char>> held(chunks, std::vector<char>(micro, 0)), done = held;
  for (const Action& a : schedule.actions)
    if (a.kind == ActionKind::send_forward || a.kind == ActionKind::send_backward)
      ++sends_left[a.chunk][a.micro];
  std::vector<int> now(chunks, 0), peak(chunks, 1);
  std::vector<std::pair<int, int>> queued;
  auto take = [&](int c, int m) {
    if (held[c][m]) return;
    held[c][m] = 1;
    peak[c] = std::max(peak[c], ++now[c]);
  };
  auto finish = [&](int c, int m) {
    done[c][m] = 1;
    if (held[c][m] && sends_left[c][m] == 0) {
      held[c][m] = 0;
      --now[c];
    }
  };
  for (const Action& a : schedule.actions) {
    switch (a.kind) {
      case ActionKind::recv_forward:
      case ActionKind::forward:
        take(a.chunk, a.micro);
        break;
      case ActionKind::forward_backward:
        take(a.chunk, a.micro);
        if (!a.zero_bubble) finish(a.chunk_b, a.micro_b);
        break;
      case ActionKind::forward_pair:
        take(a.chunk, a.micro);
        take(a.chunk_b, a.micro_b);
        break;
      case ActionKind::backward_pair:
        if (!a.zero_bubble) {
          finish(a.chunk, a.micro);
          finish(a.chunk_b, a.micro_b);
        }
        break;
      case ActionKind::backward:
        if (!a.zero_bubble) finish(a.chunk, a.micro);
        break;
      case ActionKind::weight:
        finish(a.chunk, a.micro);
        break;
      case ActionKind::send_forward:
      case ActionKind::send_backward:
        queued.emplace_back(a.chunk, a.micro);
        break;
      case ActionKind::commit:
        for (auto [c, m] : queued) {
          --sends_left[c][m];
          if (done[c][m]) finish(c, m);
        }
        queued.clear();
        break;
      default:
        break;
    }
  }
  return peak;
}

Executor::Executor(const Schedule& schedule, core::Model& model, Communicator& pp, bool overlap)
    : sched_(schedule), model_(model), pp_(pp), overlap_(overlap) {
  const std::vector<int> slots = slots_needed(schedule);
  const int micro = sched_.micro_per_chunk();
  for (size_t c = 0; c < sched_.places.size(); ++c) {
    ChunkState cs;
    cs.stage = model.find_stage(sched_.places[c].stage);
    FLOT_CHECK(cs.stage, "rank {} holds no stage {} for its chunk {}", sched_.rank,
               sched_.places[c].stage, c);
    FLOT_CHECK(cs.stage->slots() >= slots[c], "stage {} has {} slots, the schedule needs {}",
               sched_.places[c].stage, cs.stage->slots(), slots[c]);
    for (int s = cs.stage->slots() - 1; s >= 0; --s) cs.free_slots.push_back(s);
    cs.slot_of.assign(micro, -1);
    cs.input.assign(micro, core::Tensor());
    cs.dy.assign(micro, core::Tensor());
    cs.sends_total.assign(micro, 0);
    cs.done.assign(micro, false);
    chunks_.push_back(std::move(cs));
  }
  // A slot is freed after its weight pass and after every message read from it has left; the
  // schedule says how many there are (an input gradient is sent after the full backward that
  // already ran the weight pass).
  for (const Action& a : sched_.actions)
    if (a.kind == ActionKind::send_forward || a.kind == ActionKind::send_backward)
      ++chunks_[a.chunk].sends_total[a.micro];
}

int Executor::global_micro(int chunk, int micro) const {
  if (sched_.kind == ScheduleKind::dualpipe && chunk == 1) return sched_.chunks / 2 + micro;
  return micro;
}

int Executor::acquire(int chunk, int micro) {
  ChunkState& cs = chunks_[chunk];
  if (cs.slot_of[micro] >= 0) return cs.slot_of[micro];
  FLOT_CHECK(!cs.free_slots.empty(), "rank {} chunk {}: no free activation slot for micro-batch {}",
             sched_.rank, chunk, micro);
  const int slot = cs.free_slots.back();
  cs.free_slots.pop_back();
  cs.slot_of[micro] = slot;
  return slot;
}

void Executor::release_if_idle(int chunk, int micro) {
  ChunkState& cs = chunks_[chunk];
  if (!cs.done[micro] || cs.sends_left[micro] > 0) return;
  cs.stage->release(cs.slot_of[micro]);
  cs.free_slots.push_back(cs.slot_of[micro]);
  cs.slot_of[micro] = -1;
}

double Executor::commit(StepRun& r, bool record) {
  if (q_sends_.empty() && q_recvs_.empty()) return 0;
  HandlePtr h = pp_.send_recv(q_sends_, q_recvs_, Traffic::pipeline);
  // While the neighbours' messages are on their way, deferred weight pieces run (the pipeline's
  // bubble filled with work that would otherwise run later).
  const double filled = fill_while([&] { return !h->done(); }, r, record, &r.commit_weight_pieces);
  h->wait();
  q_sends_.clear();
  q_recvs_.clear();
  // Sent outputs and gradients may now be freed with their slots (the reference's to_free).
  auto sent = std::move(q_sent_from_);
  q_sent_from_.clear();
  for (const auto& s : sent) {
    --chunks_[s.chunk].sends_left[s.micro];
    release_if_idle(s.chunk, s.micro);
  }
  return filled;
}

void Executor::forward(int chunk, int micro, const BatchFn& batch, const core::LossScales& scales,
                       StepRun& r) {
  (void)r;
  ChunkState& cs = chunks_[chunk];
  const ChunkPlace& place = sched_.places[chunk];
  const int slot = acquire(chunk, micro);
  core::Tensor input;
  if (place.local_in) {
    // DualPipeV's turn: the other chunk's output of this micro-batch, copied into this slot
    // (the other chunk frees its copy with its own slot).
    ChunkState& other = chunks_[1 - chunk];
    input = cs.stage->alloc_hidden(slot);
    kernels::copy(other.stage->output(other.slot_of.at(micro)), input);
  } else if (!place.first_stage()) {
    input = cs.input[micro];
    FLOT_CHECK(!input.empty(), "rank {} chunk {}: forward of micro-batch {} before its input arrived",
               sched_.rank, chunk, micro);
  }
  cs.stage->forward_begin(slot, batch(global_micro(chunk, micro)), input, scales, true);
}

void Executor::finish_forward(int chunk, int micro, StepRun& r) {
  ChunkState& cs = chunks_[chunk];
  const core::MicroLosses& L = cs.stage->losses(cs.slot_of[micro]);
  r.aux += L.aux;
  if (sched_.places[chunk].last_stage(sched_.num_stages)) {
    r.losses.lm_sum += L.lm_sum;
    r.losses.lm_tokens += L.lm_tokens;
    r.losses.mtp_sum.resize(L.mtp_sum.size(), 0.0);
    r.losses.mtp_tokens.resize(L.mtp_tokens.size(), 0);
    for (size_t k = 0; k < L.mtp_sum.size(); ++k) {
      r.losses.mtp_sum[k] += L.mtp_sum[k];
      r.losses.mtp_tokens[k] += L.mtp_tokens[k];
    }
  }
  cs.input[micro] = core::Tensor();
  r.peak_activations = std::max(r.peak_activations, ++in_flight_);
}

void Executor::backward_begin(int chunk, int micro) {
  ChunkState& cs = chunks_[chunk];
  const ChunkPlace& place = sched_.places[chunk];
  const int slot = cs.slot_of.at(micro);
  FLOT_CHECK(slot >= 0, "rank {} chunk {}: backward of micro-batch {} without its forward",
             sched_.rank, chunk, micro);
  core::Tensor dy;
  if (!place.last_stage(sched_.num_stages)) {
    dy = cs.dy[micro];
    FLOT_CHECK(!dy.empty(), "rank {} chunk {}: backward of micro-batch {} before its gradient arrived",
               sched_.rank, chunk, micro);
  }
  cs.stage->backward_begin(slot, dy);
  // A full backward's weight pass is queued too, so that its early pieces can fill the input
  // pass's own waits; backward_end runs the rest. (The schedule never runs a full backward while
  // older weight passes are deferred, so it is the only one queued.)
  Deferred d{chunk, micro};
  d.early = micro + 1 < sched_.micro_per_chunk();
  weight_fifo_.push_back(d);
}

void Executor::backward_end(int chunk, int micro, bool zero_bubble) {
  ChunkState& cs = chunks_[chunk];
  const ChunkPlace& place = sched_.places[chunk];
  --in_flight_;
  if (place.local_in) {
    // DualPipeV's turn backwards: this chunk's input gradient is the other chunk's output
    // gradient; copied now, before this slot can be freed by the weight pass.
    ChunkState& other = chunks_[1 - chunk];
    const int oslot = other.slot_of.at(micro);
    other.dy[micro] = other.stage->alloc_hidden(oslot);
    kernels::copy(cs.stage->input_grad(cs.slot_of[micro]), other.dy[micro]);
  }
  cs.dy[micro] = core::Tensor();
  auto d = std::find_if(weight_fifo_.begin(), weight_fifo_.end(),
                        [&](const Deferred& x) { return x.chunk == chunk && x.micro == micro; });
  FLOT_CHECK(d != weight_fifo_.end(), "rank {}: backward {}.{} has no queued weight pass", sched_.rank,
             chunk, micro);
  if (!zero_bubble) {
    FLOT_CHECK(d == weight_fifo_.begin(), "rank {}: full backward B{}.{} behind {} deferred weight passes",
               sched_.rank, chunk, micro, d - weight_fifo_.begin());
    const int from = d->pieces_done;
    weight_fifo_.erase(d);
    weight(chunk, micro, from);
    return;
  }
  d->input_done = true;
}

void Executor::weight(int chunk, int micro, int from_piece) {
  ChunkState& cs = chunks_[chunk];
  const int slot = cs.slot_of.at(micro);
  for (int p = from_piece; p < cs.stage->weight_pieces(); ++p) cs.stage->backward_weight_piece(slot, p);
  cs.done[micro] = true;
  release_if_idle(chunk, micro);
}

bool Executor::fill_one(std::string* label, StepRun& r, int* counter) {
  // The oldest deferred weight pass with pieces left, once every older one has run all of its
  // own: each parameter still receives its micro-batches' contributions in order.
  // A pass whose input pass still runs offers the pieces it has completed (or none).
  for (Deferred& d : weight_fifo_) {
    core::Stage& st = *chunks_[d.chunk].stage;
    if (d.pieces_done == st.weight_pieces()) continue;
    const int slot = chunks_[d.chunk].slot_of.at(d.micro);
    const int ready = d.input_done ? st.weight_pieces() : d.early ? st.weight_pieces_ready(slot) : 0;
    if (d.pieces_done >= ready) return false;
    st.backward_weight_piece(slot, d.pieces_done);
    if (label) *label = fmt::format("W{}.{} piece {}", d.chunk, d.micro, d.pieces_done);
    ++d.pieces_done;
    ++r.filled_weight_pieces;
    if (!d.input_done) ++r.early_weight_pieces;
    if (counter) ++*counter;
    return true;
  }
  return false;
}

double Executor::fill_while(const std::function<bool()>& waiting, StepRun& r, bool record,
                            int* counter) {
  if (!overlap_) return 0;
  const double t0 = now_s();
  double t = t0;
  std::string what;
  while (waiting() && fill_one(record ? &what : nullptr, r, counter)) {
    const double n = now_s();
    if (record) r.trace.push_back({what, "weight", t, n, TraceLane::compute});
    t = n;
  }
  r.backward_s += t - t0;
  return t - t0;
}

void Executor::run_compute(const Action& a, const BatchFn& batch, const core::LossScales& scales,
                           StepRun& r, bool record) {
  // One forward or backward, or a pair of them: a forward and a backward (F&B or F&I), two
  // forwards (F&F) or two backwards (B&B or I&I).
  struct Half {
    bool forward = true;
    int chunk = 0, micro = 0;
    core::Stage* stage = nullptr;
    int slot = -1, pieces = 0;
    std::string label;
  };
  Half h[2];
  const int halves = a.is_pair() ? 2 : 1;
  h[0].forward = a.kind == ActionKind::forward || a.kind == ActionKind::forward_backward ||
                 a.kind == ActionKind::forward_pair;
  h[1].forward = a.kind == ActionKind::forward_pair;
  h[0].chunk = a.chunk, h[0].micro = a.micro;
  h[1].chunk = a.chunk_b, h[1].micro = a.micro_b;
  for (int k = 0; k < halves; ++k) {
    Half& x = h[k];
    if (x.forward)
      forward(x.chunk, x.micro, batch, scales, r);
    else
      backward_begin(x.chunk, x.micro);
    x.stage = chunks_[x.chunk].stage;
    x.slot = chunks_[x.chunk].slot_of[x.micro];
    x.pieces = x.forward ? x.stage->forward_pieces() : x.stage->backward_pieces();
    x.label = fmt::format("{}{}.{}", x.forward ? 'F' : a.zero_bubble ? 'I' : 'B', x.chunk, x.micro);
  }
  double t = now_s();
  auto tick = [&](double& into, const std::string& what, const char* cat) {
    const double n = now_s();
    into += n - t;
    if (record) r.trace.push_back({what, cat, t, n, TraceLane::compute});
    t = n;
  };
  auto piece = [&](const Half& x, int i) {
    if (x.forward)
      x.stage->forward_piece(x.slot, i);
    else
      x.stage->backward_piece(x.slot, i);
  };
  // While the exchange a half's next piece needs still travels, deferred weight passes run.
  auto fill = [&](const Half& x) {
    fill_while([&] { return !x.stage->exchanges_ready(x.slot); }, r, record,
               halves == 1 ? &r.lone_weight_pieces : nullptr);
    t = now_s();
  };
  if (overlap_) {
    // Each piece ends with an exchange in flight; the other micro-batch's next piece (or, for a
    // lone pass, deferred weight pieces) runs while it travels.
    for (int i = 0; i < std::max(h[0].pieces, h[1].pieces); ++i)
      for (int k = 0; k < halves; ++k)
        if (i < h[k].pieces) {
          const Half& x = h[k];
          fill(x);
          piece(x, i);
          tick(x.forward ? r.forward_s : r.backward_s, fmt::format("{} piece {}", x.label, i),
               x.forward ? "forward" : "backward");
        }
  } else {
    for (int k = 0; k < halves; ++k) {
      const Half& x = h[k];
      for (int i = 0; i < x.pieces; ++i) piece(x, i);
      // A lone pass is its action's own trace event.
      const double n = now_s();
      (x.forward ? r.forward_s : r.backward_s) += n - t;
      if (record && halves == 2)
        r.trace.push_back({x.label, x.forward ? "forward" : "backward", t, n, TraceLane::compute});
      t = n;
    }
  }
  // Forwards finish first (their losses), then the backwards' weight passes in micro order.
  for (int k = 0; k < halves; ++k)
    if (h[k].forward) finish_forward(h[k].chunk, h[k].micro, r);
  for (int k = 0; k < halves; ++k)
    if (!h[k].forward) {
      backward_end(h[k].chunk, h[k].micro, a.zero_bubble);
      if (!a.zero_bubble) tick(r.backward_s, fmt::format("W{}.{}", h[k].chunk, h[k].micro), "weight");
    }
}

StepRun Executor::run(const BatchFn& batch, const core::LossScales& scales, bool record_trace) {
  StepRun r;
  weight_fifo_.clear();
  in_flight_ = 0;
  r.start = now_s();
  for (auto& cs : chunks_) {
    cs.sends_left = cs.sends_total;
    std::fill(cs.done.begin(), cs.done.end(), false);
  }
  for (const Action& a : sched_.actions) {
    ChunkState& cs = a.kind == ActionKind::commit ? chunks_[0] : chunks_[a.chunk];
    const ChunkPlace& place = sched_.places[a.kind == ActionKind::commit ? 0 : a.chunk];
    const double start = now_s();
    bool compute = a.is_compute();
    switch (a.kind) {
      case ActionKind::recv_forward: {
        const int slot = acquire(a.chunk, a.micro);
        cs.input[a.micro] = cs.stage->alloc_hidden(slot);
        q_recvs_.push_back({cs.input[a.micro], place.prev_rank, tag(true, place.stage)});
        break;
      }
      case ActionKind::recv_backward: {
        const int slot = cs.slot_of.at(a.micro);
        FLOT_CHECK(slot >= 0, "gradient of micro-batch {} expected before its forward", a.micro);
        cs.dy[a.micro] = cs.stage->alloc_hidden(slot);
        q_recvs_.push_back({cs.dy[a.micro], place.next_rank, tag(false, place.stage)});
        break;
      }
      case ActionKind::send_forward: {
        const int slot = cs.slot_of.at(a.micro);
        q_sends_.push_back({cs.stage->output(slot), place.next_rank, tag(true, place.stage + 1)});
        q_sent_from_.push_back({a.chunk, a.micro});
        break;
      }
      case ActionKind::send_backward: {
        const int slot = cs.slot_of.at(a.micro);
        q_sends_.push_back({cs.stage->input_grad(slot), place.prev_rank, tag(false, place.stage - 1)});
        q_sent_from_.push_back({a.chunk, a.micro});
        break;
      }
      case ActionKind::commit: {
        const double filled = commit(r, record_trace);
        r.compute_s += filled;
        r.wait_s += now_s() - start - filled;
        break;
      }
      case ActionKind::weight: {
        FLOT_CHECK(!weight_fifo_.empty() && weight_fifo_.front().chunk == a.chunk &&
                       weight_fifo_.front().micro == a.micro,
                   "rank {}: weight pass W{}.{} is not the next one deferred", sched_.rank, a.chunk,
                   a.micro);
        FLOT_CHECK(weight_fifo_.front().input_done, "rank {}: W{}.{} before its input pass", sched_.rank,
                   a.chunk, a.micro);
        const int from = weight_fifo_.front().pieces_done;  // some may have run inside pairs
        weight_fifo_.pop_front();
        weight(a.chunk, a.micro, from);
        r.backward_s += now_s() - start;
        break;
      }
      case ActionKind::forward:
      case ActionKind::backward:
      case ActionKind::forward_backward:
      case ActionKind::forward_pair:
      case ActionKind::backward_pair:
        run_compute(a, batch, scales, r, record_trace);
        break;
    }
    const double end = now_s();
    if (compute) r.compute_s += end - start;
    if (record_trace && compute) {
      static const char* cats[] = {"", "", "", "", "", "forward", "backward", "weight", "pair",
                                   "pair", "pair"};
      const char* cat = a.kind == ActionKind::backward && a.zero_bubble ? "backward_input"
                                                                         : cats[static_cast<int>(a.kind)];
      r.trace.push_back({action_label(a), cat, start, end, TraceLane::compute});
    }
  }
  r.compute_s += commit(r, record_trace);
  FLOT_CHECK(weight_fifo_.empty(), "rank {}: {} weight passes left after the schedule", sched_.rank,
             weight_fifo_.size());
  return r;
}

}  // namespace parallel
