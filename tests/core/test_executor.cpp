// The executor in one process: the sequential schedule's overlapped pairs (forward of m + 1 with
// the backward of m) accumulate the same gradients, bitwise, as plain 1F1B over one stage, and
// the slots it needs come from a dry run of its own rules.
#include <catch2/catch.hpp>

#include "core/model.hpp"
#include "layer_harness.hpp"
#include "parallel/executor.hpp"

namespace {

core::data::MicroBatch batch(const core::Config& c, int index) {
  core::data::MicroBatch mb;
  mb.batch = c.train.micro_batch_size;
  mb.seq_len = c.train.seq_len;
  const int64_t n = mb.batch * mb.seq_len, depth = c.model.mtp.depth;
  std::vector<int32_t> win(mb.batch * (mb.seq_len + 1 + depth));
  for (size_t i = 0; i < win.size(); ++i)
    win[i] = static_cast<int32_t>(testing::mix64(1000 * index + i) % c.model.vocab_size);
  auto view = [&](int shift) {
    std::vector<int32_t> v(n);
    for (int64_t b = 0; b < mb.batch; ++b)
      for (int64_t t = 0; t < mb.seq_len; ++t) v[b * mb.seq_len + t] = win[b * (mb.seq_len + 1 + depth) + t + shift];
    return v;
  };
  mb.inputs = view(0);
  for (int k = 0; k <= depth; ++k) mb.targets.push_back(view(1 + k));
  return mb;
}

std::vector<float> grads_after(parallel::ScheduleKind kind, bool overlap, const core::Config& c,
                               int chunks, core::MicroLosses* losses, bool ep_overlap = false) {
  core::Context ctx;
  auto pp = parallel::make_single_process_communicator("pp");
  auto sched = parallel::make_schedule(kind, 1, chunks, 0, ep_overlap);
  core::Model model(c, ctx, core::DType::f32, {core::StagePlan{0, 1, 0, c.model.num_layers}},
                    parallel::Executor::slots_needed(sched), nullptr, {1, 1});
  model.init(7);
  parallel::Executor exec(sched, model, *pp, overlap);
  std::vector<core::data::MicroBatch> mbs;
  for (int i = 0; i < chunks; ++i) mbs.push_back(batch(c, i));
  core::LossScales sc{0.01, 0.003, 0.25};
  model.params().zero_grads();
  auto run = exec.run([&](int g) -> const core::data::MicroBatch& { return mbs.at(g); }, sc, false);
  *losses = run.losses;
  auto g = model.params().flat_grads();
  return std::vector<float>(g.ptr<float>(), g.ptr<float>() + g.numel());
}

}  // namespace

TEST_CASE("executor: overlapped pairs give bitwise the gradients of plain 1F1B in one process",
          "[executor]") {
  core::Config c;
  c.model = testing::tiny_model();
  c.model.vocab_size = 32;
  c.train.seq_len = 8;
  c.train.micro_batch_size = 2;
  core::MicroLosses a, b, d, e;
  auto plain = grads_after(parallel::ScheduleKind::one_f_one_b, true, c, 4, &a);
  auto pairs = grads_after(parallel::ScheduleKind::sequential, true, c, 4, &b);
  auto serial = grads_after(parallel::ScheduleKind::sequential, false, c, 4, &d);
  // (F0&F1) (F2&I0) (F3&I1) W0 (I2&I3) W1 W2 W3: weight passes still in micro order, so the
  // same sums
  auto ends = grads_after(parallel::ScheduleKind::sequential, true, c, 4, &e, /*ep_overlap=*/true);
  CHECK(plain == pairs);
  CHECK(plain == serial);
  CHECK(plain == ends);
  CHECK(a.lm_sum == b.lm_sum);
  CHECK(a.lm_sum == e.lm_sum);
  CHECK(a.lm_tokens == 4 * 16);
  double norm = 0;
  for (float v : plain) norm += static_cast<double>(v) * v;
  CHECK(norm > 0);
}

TEST_CASE("executor: slots per chunk from a dry run of the schedule", "[executor]") {
  using parallel::ScheduleKind;
  // one process: 1F1B frees each slot before the next forward; the pairs hold two
  CHECK(parallel::Executor::slots_needed(parallel::make_schedule(ScheduleKind::one_f_one_b, 1, 8, 0)) ==
        std::vector<int>{1});
  CHECK(parallel::Executor::slots_needed(parallel::make_schedule(ScheduleKind::sequential, 1, 8, 0)) ==
        std::vector<int>{2});
  // paired ends: two forwards, a third with the first input pass, a fourth while the first
  // weight pass waits for the next pair
  CHECK(parallel::Executor::slots_needed(parallel::make_schedule(ScheduleKind::sequential, 1, 8, 0, true)) ==
        std::vector<int>{4});
  // pipelines: never fewer than the in-flight forwards awaiting their weight pass
  for (auto kind : {ScheduleKind::dualpipe, ScheduleKind::dualpipev, ScheduleKind::one_f_one_b})
    for (int pp : {2, 4})
      for (int r = 0; r < pp; ++r) {
        auto s = parallel::make_schedule(kind, pp, 4 * pp, r);
        auto slots = parallel::Executor::slots_needed(s);
        auto peaks = parallel::in_flight_peaks(s);
        REQUIRE(slots.size() == peaks.slots.size());
        for (size_t c = 0; c < slots.size(); ++c) {
          CHECK(slots[c] >= peaks.slots[c]);
          CHECK(slots[c] <= peaks.slots[c] + 1);
        }
      }
}
