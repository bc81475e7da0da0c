// The training step: the schedule, gradient reduction and clipping, AdamW, the expert-bias rule.
#include "core/trainer.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>

#include "core/error.hpp"
#include "core/memory_plan.hpp"
#include "kernels/ops.hpp"
#include "optim/clip.hpp"
#include "optim/expert_bias.hpp"
#include "parallel/run_trace.hpp"

namespace core {

void check_supported(const Config& c, int world_size) {
  (void)world_size;
  if (c.runtime.device != "cpu")
    FLOT_THROW(ConfigError,
               "runtime.device: '{}': the CUDA ops, device arenas, cuBLASLt GEMMs and the NCCL "
               "communicator exist (docs/cuda.md) but the model does not run on a GPU yet. "
               "Missing: parameters, gradients and optimizer state in device memory "
               "(core/params.cpp allocates host memory), device activation arenas "
               "(core/stage.cpp), and layers that stop reading tensors on the host "
               "(core/layers/attention.cpp K/V assembly, core/layers/mtp.cpp concatenation, "
               "core/layers/embedding_head.cpp loss sum, core/layers/moe.cpp routing counts and "
               "exchange sizes, core/stage.cpp token upload, parallel/grad_sync.cpp copies, "
               "optim/clip.cpp and optim/expert_bias.cpp); use runtime.device=cpu",
               c.runtime.device);
}

parallel::ScheduleKind schedule_kind(const Config& c) {
  if (c.parallel.pp > 1) return parallel::schedule_kind_from_name(c.parallel.schedule);
  return c.parallel.ep > 1 ? parallel::ScheduleKind::sequential : parallel::ScheduleKind::one_f_one_b;
}

int chunks_per_step(const Config& c, int dp) {
  if (c.parallel.chunks > 0) return c.parallel.chunks;
  return c.train.global_batch_size / (c.train.micro_batch_size * dp);
}

namespace {

// A rank's stages in ascending order (mirrored DualPipe ranks then lay out identically), each
// with the activation slots its chunk of the schedule needs.
std::vector<PlannedStage> rank_stages(const parallel::Schedule& sched, const std::vector<StagePlan>& plans) {
  const std::vector<int> chunk_slots = parallel::Executor::slots_needed(sched);
  std::vector<PlannedStage> mine;
  for (size_t c = 0; c < sched.places.size(); ++c)
    mine.push_back({plans[sched.places[c].stage], chunk_slots[c]});
  std::sort(mine.begin(), mine.end(),
            [](const PlannedStage& a, const PlannedStage& b) { return a.plan.stage < b.plan.stage; });
  return mine;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Sum over every rank of a small vector, in rank order, so that the result is bitwise the same
// on every rank whatever the MPI library's reduction order: decisions taken from it (clipping,
// skipping a non-finite step) are the same everywhere.
std::vector<double> ordered_sum(parallel::Communicator& world, const std::vector<double>& mine) {
  const int64_t n = static_cast<int64_t>(mine.size());
  std::vector<double> all(static_cast<size_t>(n) * world.size());
  world.all_gather(Tensor::of(mine.data(), {n}), Tensor::of(all.data(), {n * world.size()}))->wait();
  std::vector<double> sum(n, 0.0);
  for (int r = 0; r < world.size(); ++r)
    for (int64_t i = 0; i < n; ++i) sum[i] += all[r * n + i];
  return sum;
}

}  // namespace

Trainer::Trainer(const Config& cfg, Context& ctx, const std::string& run_dir, bool log,
                 const std::atomic<bool>* stop)
    : cfg_(cfg), ctx_(ctx), run_dir_(run_dir), log_(log && ctx.rank == 0), stop_(stop) {
  parallel::Communicator* world = ctx.comm;
  if (!world) {
    own_world_ = parallel::make_single_process_communicator();
    world = own_world_.get();
  }
  // Everything that can fail on bad input comes before the first collective (the grid split),
  // and the ranks agree on the outcome, so that one rank's missing file never leaves the
  // others waiting: the lowest rank that failed reports, every rank stops with exit code 2.
  std::exception_ptr failure;
  parallel::GridShape shape;
  parallel::Coords me;
  try {
    check_supported(cfg_, world->size());
    validate_layout(cfg_, world->size());
    dataset_ = data::make_dataset(cfg_);
    shape = parallel::grid_shape(world->size(), cfg_.parallel.pp, cfg_.parallel.ep);
    me = parallel::coords_of(shape, world->rank());
    loader_ = std::make_unique<data::Loader>(*dataset_, cfg_, me.dp_rank, shape.dp);
    // Without a pipeline, expert parallelism with overlap pairs the step's ends too (one more
    // micro-batch in flight buys cover for the first forward's and last backward's exchanges).
    sched_ = parallel::make_schedule(schedule_kind(cfg_), cfg_.parallel.pp,
                                     chunks_per_step(cfg_, shape.dp), me.pp_rank,
                                     cfg_.parallel.overlap && shape.ep > 1);
    plans_ = plan_stages(cfg_, sched_.num_stages);
    memory_plan_ = plan_memory(cfg_, rank_stages(sched_, plans_), shape.dp, shape.ep, me.dp_rank);
    memory_available_ = available_memory(cfg_.runtime.memory_limit_gb);
    check_memory_plan(cfg_, memory_plan_, ctx_.local_size, memory_available_);
  } catch (const ConfigError&) {
    failure = std::current_exception();
  } catch (const DataError&) {
    failure = std::current_exception();
  }
  if (world->size() > 1) {
    double bad = failure ? world->size() - world->rank() : 0;  // the lowest failing rank is largest
    world->all_reduce(Tensor::of(&bad, {1}), parallel::ReduceOp::max)->wait();
    if (bad > 0 && !(failure && world->size() - world->rank() == bad))
      throw PeerError(fmt::format("rank {} reported bad input", world->size() - static_cast<int>(bad)));
  }
  if (failure) {
    try {
      std::rethrow_exception(failure);
    } catch (Error& e) {
      e.mark_reporter();
      throw;
    }
  }
  const parallel::ScheduleKind kind = sched_.kind;

  grid_ = std::make_unique<parallel::Grid>(*world, cfg_.parallel.pp, cfg_.parallel.ep);
  std::vector<StagePlan> my_plans;
  std::vector<int> slots;
  for (const PlannedStage& s : rank_stages(sched_, plans_)) {
    my_plans.push_back(s.plan);
    slots.push_back(s.slots);
  }
  const int edp = shape.dp / shape.ep;
  model_ = std::make_unique<Model>(cfg_, ctx_, DType::f32, my_plans, slots, &grid_->ep(),
                                   parallel::GradSync::padding(shape.dp, edp));
  model_->init(cfg_.run.seed);
  exec_ = std::make_unique<parallel::Executor>(sched_, *model_, grid_->pp(), cfg_.parallel.overlap);

  ParamStore& ps = model_->params();
  sync_ = std::make_unique<parallel::GradSync>(ps, grid_->dp(), grid_->edp(), cfg_.parallel.zero1,
                                               static_cast<int64_t>(cfg_.parallel.bucket_mb * 1048576));
  // Weight passes per step of each parameter: every report of every stage, once per micro-batch
  // the stage's chunk carries.
  std::vector<int> passes(ps.size(), 0);
  for (size_t c = 0; c < sched_.places.size(); ++c) {
    Stage* st = model_->find_stage(sched_.places[c].stage);
    for (const auto& ids : st->grad_reports())
      for (int id : ids) passes[id] += sched_.micro_per_chunk();
  }
  tied_embedding_ = kind == parallel::ScheduleKind::one_f_one_b && cfg_.parallel.pp > 1 &&
                    cfg_.model.mtp.depth > 0 &&
                    (me.pp_rank == 0 || me.pp_rank == cfg_.parallel.pp - 1);
  if (tied_embedding_) ++passes[ps.find("model.embed_tokens.weight")];  // the tie sum, last
  sync_->set_expected(std::move(passes));
  for (int i = 0; i < model_->num_stages(); ++i)
    model_->stage(i).set_grads_hook([this](const std::vector<int>& ids) { sync_->weights_done(ids); });

  optim::AdamWHyper h;
  h.beta1 = cfg_.optim.beta1;
  h.beta2 = cfg_.optim.beta2;
  h.eps = cfg_.optim.eps;
  h.weight_decay = cfg_.optim.weight_decay;
  opt_ = std::make_unique<optim::ShardedAdamW>(
      ps, sync_->owned(), cfg_.optim.moment_dtype == "bf16" ? DType::bf16 : DType::f32, h);

  schedule_.kind = cfg_.optim.schedule;
  schedule_.lr = cfg_.optim.lr;
  schedule_.min_lr = cfg_.optim.min_lr;
  schedule_.warmup_steps = cfg_.optim.warmup_steps;
  schedule_.total_steps = cfg_.train.steps;
  schedule_.decay_fraction = cfg_.optim.decay_fraction;
  const int experts = model_->total_moe_layers() > 0 ? cfg_.model.moe.num_experts : 0;
  metrics_ = std::make_unique<MetricsWriter>(run_dir_, !run_dir_.empty() && ctx.rank == 0, experts,
                                             cfg_.run.tensorboard);
  console_ = std::make_unique<ConsoleLog>(log_, grid_->world().size() == 1);
  batches_.resize(sched_.chunks);
  batch_step_.assign(sched_.chunks, -1);
  last_stats_ = grid_->world().stats();
  ckpt_root_ = !cfg_.checkpoint.dir.empty() ? cfg_.checkpoint.dir
               : run_dir_.empty()           ? std::string()
                                            : run_dir_ + "/checkpoints";
}

Trainer::~Trainer() = default;

std::vector<MemoryPlan> Trainer::memory_plans() const {
  const parallel::GridShape shape = grid_->shape();
  std::vector<MemoryPlan> out;  // at data-parallel rank 0 (the other shards differ by a few elements)
  for (int r = 0; r < cfg_.parallel.pp; ++r) {
    const parallel::Schedule s =
        parallel::make_schedule(sched_.kind, cfg_.parallel.pp, sched_.chunks, r, sched_.ep_overlap);
    out.push_back(plan_memory(cfg_, rank_stages(s, plans_), shape.dp, shape.ep));
  }
  return out;
}

MemoryPlan Trainer::memory_used() {
  MemoryPlan m;
  m.params = static_cast<int64_t>(model_->params().bytes_params());
  m.grads = m.params;
  m.optimizer = static_cast<int64_t>(opt_->bytes());
  m.activations = static_cast<int64_t>(model_->activation_bytes());
  m.exchange = static_cast<int64_t>(model_->exchange_bytes());
  m.param_elements = model_->params().numel_unpadded();
  return m;
}

int64_t Trainer::tokens_per_step() const {
  return static_cast<int64_t>(cfg_.train.global_batch_size) * cfg_.train.seq_len;
}

double Trainer::sum_over_world(double v) { return ordered_sum(grid_->world(), {v})[0]; }

void Trainer::mirror_sums() {
  ParamStore& ps = model_->params();
  parallel::Communicator& mirror = grid_->mirror();
  if (mirror.size() == 1) return;
  if (sched_.kind == parallel::ScheduleKind::dualpipe) {
    // The two copies of each stage hold identical layouts and shards: sum what this rank updates.
    std::vector<parallel::HandlePtr> hs;
    for (const auto& r : sync_->owned())
      if (r.size() > 0)
        hs.push_back(mirror.all_reduce(ps.flat_grads().slice(r.begin, r.end), parallel::ReduceOp::sum,
                                       parallel::Traffic::gradients));
    for (auto& h : hs) h->wait();
  }
}

std::vector<ParamStore::Range> Trainer::counted_ranges() const {
  // Every element is counted once over the world: its shard's owner in the reduction group
  // (parallel::GradSync::shard), on the lower rank of a DualPipe pair, and on the first stage of
  // 1F1B's tied embedding.
  const ParamStore& ps = model_->params();
  const parallel::Coords me = grid_->coords();
  const int pp = cfg_.parallel.pp;
  if (sched_.kind == parallel::ScheduleKind::dualpipe && me.pp_rank > pp - 1 - me.pp_rank) return {};
  std::vector<ParamStore::Range> parts;
  for (const auto& r : sync_->shard()) parts.push_back(r);
  if (tied_embedding_ && me.pp_rank == pp - 1) {
    // the last stage's copy of the embedding is not counted: cut it out of the shard
    const int id = ps.find("model.embed_tokens.weight");
    const ParamStore::Range e{ps.offset(id), ps.offset(id) + ps.param(id).numel()};
    std::vector<ParamStore::Range> cut;
    for (const auto& r : parts) {
      if (r.end <= e.begin || r.begin >= e.end) {
        cut.push_back(r);
        continue;
      }
      if (r.begin < e.begin) cut.push_back({r.begin, e.begin});
      if (r.end > e.end) cut.push_back({e.end, r.end});
    }
    parts = cut;
  }
  return parts;
}

double Trainer::global_grad_norm() {
  const ParamStore& ps = model_->params();
  std::vector<Tensor> views;
  for (const auto& r : counted_ranges())
    if (r.size() > 0) views.push_back(ps.flat_grads().slice(r.begin, r.end));
  return std::sqrt(sum_over_world(optim::sum_squares(views)));
}

StepMetrics Trainer::step() {
  auto t0 = std::chrono::steady_clock::now();
  // The compute's CPU time: the process's, less the communication thread's.
  const double progress0 = grid_->world().stats().progress_cpu_s;
  const double cpu0 = process_cpu_seconds() - progress0;
  Model& model = *model_;
  ParamStore& ps = model.params();
  const int depth = cfg_.model.mtp.depth;
  const double global_tokens = static_cast<double>(tokens_per_step());
  LossScales scales;
  scales.lm = 1.0 / global_tokens;
  scales.mtp = depth > 0 ? cfg_.model.mtp.loss_weight / depth / global_tokens : 0.0;
  scales.aux = static_cast<double>(cfg_.train.micro_batch_size) / cfg_.train.global_batch_size;

  ps.zero_grads();
  for (Moe* moe : model.moe_layers()) moe->clear_loads();
  sync_->begin_step();
  auto batch = [this](int g) -> const data::MicroBatch& {
    if (batch_step_[g] != step_) {
      loader_->train_batch(step_, g, batches_[g]);
      batch_step_[g] = step_;
    }
    return batches_[g];
  };
  const bool tracing = step_ + 1 == trace_at_;
  if (tracing) grid_->world().set_recording(true);
  last_run_ = exec_->run(batch, scales, tracing);
  const parallel::StepRun& run = last_run_;
  if (tied_embedding_) {
    const int id = ps.find("model.embed_tokens.weight");
    grid_->mirror().all_reduce(ps.grad(id), parallel::ReduceOp::sum, parallel::Traffic::gradients)->wait();
    sync_->weights_done({id});
  }
  sync_->finish();
  mirror_sums();

  // Losses and loads over the whole global batch (every rank, every micro-batch).
  std::vector<double> sums(3 + 2 * depth, 0.0);
  sums[0] = run.losses.lm_sum;
  sums[1] = static_cast<double>(run.losses.lm_tokens);
  sums[2] = run.aux * scales.aux;
  for (int k = 0; k < depth && k < static_cast<int>(run.losses.mtp_sum.size()); ++k) {
    sums[3 + 2 * k] = run.losses.mtp_sum[k];
    sums[4 + 2 * k] = static_cast<double>(run.losses.mtp_tokens[k]);
  }
  sums = ordered_sum(grid_->world(), sums);
  const int E = cfg_.model.moe.num_experts;
  const int L = model.total_moe_layers();
  std::vector<double> loads_flat(static_cast<size_t>(L) * E, 0.0);
  for (Moe* moe : model.moe_layers())
    for (int e = 0; e < E; ++e) loads_flat[moe->index() * E + e] += static_cast<double>(moe->loads()[e]);
  if (L > 0)
    grid_->world().all_reduce(Tensor::of(loads_flat.data(), {static_cast<int64_t>(loads_flat.size())}),
                              parallel::ReduceOp::sum)->wait();

  const double grad_norm = global_grad_norm();
  // A non-finite loss or gradient skips the update. The sums and the norm are rank-ordered, so
  // every rank takes the same decision.
  bool finite = std::isfinite(grad_norm);
  for (double v : sums) finite = finite && std::isfinite(v);
  const double lr = optim::lr_at(schedule_, step_);
  if (finite) {
    const double clip = optim::clip_factor(grad_norm, cfg_.optim.grad_clip);
    opt_->step(ps, step_ + 1 - skipped_total_, lr, clip);  // AdamW counts applied updates
    sync_->gather_params();
  }

  // Aux-loss-free balancing: loads over the whole global batch of this step, the same on every
  // rank (integer counts), so every copy of a layer moves its bias identically.
  StepMetrics m;
  last_loads_.assign(L, std::vector<int64_t>(E));
  double vio_sum = 0;
  for (int l = 0; l < L; ++l) {
    for (int e = 0; e < E; ++e) last_loads_[l][e] = static_cast<int64_t>(loads_flat[l * E + e]);
    vio_sum += optim::max_violation(last_loads_[l].data(), E);
  }
  if (finite && cfg_.model.moe.balancer == "aux_free")
    for (Moe* moe : model.moe_layers())
      optim::update_expert_bias(ps.buffer(moe->bias_id()), last_loads_[moe->index()].data(), E,
                                cfg_.model.moe.bias_update_rate);
  if (L > 0) m.max_vio = vio_sum / L;

  ++step_;
  tokens_seen_ += tokens_per_step();
  skipped_in_row_ = finite ? 0 : skipped_in_row_ + 1;
  skipped_total_ += finite ? 0 : 1;
  m.skipped = !finite;
  m.step = step_;
  m.total_steps = cfg_.train.steps;
  m.lm_loss = sums[0] / std::max(1.0, sums[1]);
  double mtp = 0;
  for (int k = 0; k < depth; ++k) mtp += sums[3 + 2 * k] / std::max(1.0, sums[4 + 2 * k]);
  m.mtp_loss = depth > 0 ? mtp / depth : 0.0;
  m.aux_loss = sums[2];
  m.loss = m.lm_loss + cfg_.model.mtp.loss_weight * m.mtp_loss + m.aux_loss;  // mtp_loss 0 at depth 0
  m.lr = lr;
  m.grad_norm = grad_norm;
  m.tokens = tokens_seen_;
  m.step_time_s = seconds_since(t0);

  // Timings: the slowest rank's figures (all_reduce max: exact, the same everywhere).
  const parallel::CommStats now = grid_->world().stats();
  const auto tr = [](parallel::Traffic t) { return static_cast<int>(t); };
  const int a2a = tr(parallel::Traffic::expert_a2a), pipe = tr(parallel::Traffic::pipeline);
  const double pipeline_wait = now.wait_s[pipe] - last_stats_.wait_s[pipe];
  std::vector<double> worst{
      m.step_time_s,
      run.forward_s,
      run.backward_s,
      static_cast<double>(now.bytes_sent[a2a] - last_stats_.bytes_sent[a2a]),
      now.in_flight_s - last_stats_.in_flight_s,
      now.total_wait_s() - last_stats_.total_wait_s() - pipeline_wait,
      pipeline_wait / m.step_time_s,
      static_cast<double>(run.peak_activations),
      now.traffic_in_flight_s[a2a] - last_stats_.traffic_in_flight_s[a2a],
      now.wait_s[a2a] - last_stats_.wait_s[a2a],
      static_cast<double>(now.exchange_bytes[a2a] - last_stats_.exchange_bytes[a2a]),
      process_cpu_seconds() - now.progress_cpu_s - cpu0,
      now.progress_cpu_s - progress0};
  last_stats_ = now;
  grid_->world().all_reduce(Tensor::of(worst.data(), {static_cast<int64_t>(worst.size())}),
                            parallel::ReduceOp::max)->wait();
  m.forward_s = worst[1];
  m.backward_s = worst[2];
  m.optimizer_s = std::max(0.0, m.step_time_s - run.forward_s - run.backward_s);
  m.tokens_per_s = tokens_per_step() / m.step_time_s;
  if (grid_->world().size() > 1) {
    m.a2a_bytes = static_cast<int64_t>(worst[3]);
    m.comm_s = worst[4];
    m.exposed_comm_s = worst[5];
    m.comm_cpu_s = worst[12];
    if (cfg_.parallel.pp > 1) m.bubble_fraction = worst[6];
    if (cfg_.parallel.ep > 1) {
      m.a2a_s = worst[8];
      m.a2a_exposed_s = worst[9];
      m.a2a_paced_bytes = static_cast<int64_t>(worst[10]);
    }
  }
  m.peak_activations = static_cast<int>(worst[7]);
  m.compute_cpu_s = worst[11];
  if (dataset_->entropy_floor() >= 0) m.entropy_floor = dataset_->entropy_floor();
  if (tracing) {
    grid_->world().set_recording(false);
    std::vector<parallel::TraceEvent> events = last_run_.trace;
    for (const auto& c : grid_->world().take_records())
      events.push_back({c.what, c.wait ? "wait" : parallel::traffic_name(c.traffic), c.start, c.end,
                        c.wait ? parallel::TraceLane::wait : parallel::TraceLane::comm});
    parallel::write_job_trace(grid_->world(), events, last_run_.start, trace_path_);
  }
  return m;
}

double Trainer::evaluate() {
  // A forward-only pass through the stages in order (direction 0 of DualPipe), one validation
  // micro-batch at a time: each rank receives its stage's input, runs it, sends the output on.
  const int S = sched_.num_stages, pp = cfg_.parallel.pp;
  auto holder = [&](int s) {
    if (sched_.kind == parallel::ScheduleKind::dualpipev) return s < pp ? s : 2 * pp - 1 - s;
    return s;
  };
  const int me = grid_->coords().pp_rank;
  parallel::Communicator& ppc = grid_->pp();
  data::MicroBatch mb;
  double sum = 0, count = 0;
  LossScales none;
  for (int i = 0; i < loader_->val_batches(); ++i) {
    loader_->val_batch(i, mb);
    Tensor carried;  // output of this rank's previous stage when the next one is also here
    Stage* prev_stage = nullptr;
    for (int s = 0; s < S; ++s) {
      if (holder(s) != me) continue;
      Stage& st = *model_->find_stage(s);
      Tensor input;
      if (s > 0) {
        input = st.alloc_hidden(0);
        if (holder(s - 1) == me) {
          kernels::copy(carried, input);
          prev_stage->release(0);
        } else {
          ppc.send_recv({}, {{input, holder(s - 1), 2 * s}})->wait();
        }
      }
      MicroLosses L = st.forward(0, mb, input, none, /*training=*/false);
      if (s == S - 1) {
        sum += L.lm_sum;
        count += static_cast<double>(L.lm_tokens);
        st.release(0);
      } else if (holder(s + 1) == me) {
        carried = st.output(0);
        prev_stage = &st;
      } else {
        ppc.send_recv({{st.output(0), holder(s + 1), 2 * (s + 1)}}, {})->wait();
        st.release(0);
      }
    }
  }
  std::vector<double> s = ordered_sum(grid_->world(), {sum, count});
  return s[0] / std::max(1.0, s[1]);
}

TrainResult Trainer::run() {
  TrainResult r;
  r.entropy_floor = dataset_->entropy_floor();
  r.ln_vocab = std::log(static_cast<double>(cfg_.model.vocab_size));
  auto start = std::chrono::steady_clock::now();
  while (step_ < cfg_.train.steps) {
    // Every rank must stop after the same step: rank 0's signal decides for all.
    double stop = stop_ && stop_->load() ? 1.0 : 0.0;
    if (grid_->world().size() > 1) {
      grid_->world().all_reduce(Tensor::of(&stop, {1}), parallel::ReduceOp::max)->wait();
    }
    if (stop > 0) {
      r.interrupted = true;
      break;
    }
    StepMetrics m = step();
    if (step_ == 1) r.initial_loss = m.lm_loss;
    r.final_loss = m.lm_loss;
    bool eval_now = cfg_.train.eval_every > 0 &&
                    (step_ % cfg_.train.eval_every == 0 || step_ == cfg_.train.steps);
    if (eval_now) {
      m.eval_loss = evaluate();
      r.final_eval_loss = *m.eval_loss;
    }
    if (m.skipped || step_ % cfg_.train.log_every == 0 || eval_now || step_ == cfg_.train.steps) {
      double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      console_->step(m, elapsed);
      metrics_->write(m);
      metrics_->write_loads(step_, last_loads_);
    }
    if (m.skipped) report_skipped(m);
    save_if_due(false, r);
  }
  save_if_due(true, r);
  console_->finish_line();
  r.steps = step_;
  return r;
}

}  // namespace core
