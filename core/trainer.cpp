// The training step: micro-batches, gradient reduction and clipping, AdamW, the expert-bias rule.
#include "core/trainer.hpp"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/error.hpp"
#include "kernels/ops.hpp"
#include "optim/adamw.hpp"
#include "optim/clip.hpp"
#include "optim/expert_bias.hpp"
#include "parallel/communicator.hpp"

namespace core {

void check_supported(const Config& c, int world_size) {
  if (c.train.precision != "fp32")
    FLOT_THROW(ConfigError,
               "train.precision: '{}' is not implemented yet (FP8/BF16 training arrives with the "
               "mixed-precision work); use train.precision=fp32",
               c.train.precision);
  if (c.runtime.device != "cpu")
    FLOT_THROW(ConfigError,
               "runtime.device: '{}' is not implemented yet (the CUDA backend is a later issue); "
               "use runtime.device=cpu",
               c.runtime.device);
  if (world_size != 1 || c.parallel.pp != 1 || c.parallel.ep != 1)
    FLOT_THROW(ConfigError,
               "this build trains in a single process only (world size {}, parallel.pp={}, "
               "parallel.ep={}); run without mpirun -np > 1 and with pp=ep=1",
               world_size, c.parallel.pp, c.parallel.ep);
  if (c.train.resume != "auto" && c.train.resume != "never")
    FLOT_THROW(ConfigError,
               "train.resume: resuming from '{}' is not implemented yet (checkpoints are a later "
               "issue); use train.resume=never",
               c.train.resume);
}

Trainer::Trainer(const Config& cfg, Context& ctx, const std::string& run_dir, bool log,
                 const std::atomic<bool>* stop)
    : cfg_(cfg), ctx_(ctx), run_dir_(run_dir), log_(log && ctx.rank == 0), stop_(stop) {
  check_supported(cfg_, ctx.world_size);
  dataset_ = data::make_dataset(cfg_);
  const int dp = ctx.world_size / cfg_.parallel.pp;
  loader_ = std::make_unique<data::Loader>(*dataset_, cfg_, ctx.rank % dp, dp);
  model_ = std::make_unique<Model>(cfg_, ctx_, DType::f32, /*slots=*/1);
  model_->init(cfg_.run.seed);
  schedule_.kind = cfg_.optim.schedule;
  schedule_.lr = cfg_.optim.lr;
  schedule_.min_lr = cfg_.optim.min_lr;
  schedule_.warmup_steps = cfg_.optim.warmup_steps;
  schedule_.total_steps = cfg_.train.steps;
  schedule_.decay_fraction = cfg_.optim.decay_fraction;
  int experts = model_->moe_layers().empty() ? 0 : cfg_.model.moe.num_experts;
  metrics_ = std::make_unique<MetricsWriter>(run_dir_, !run_dir_.empty() && ctx.rank == 0, experts);
  console_ = std::make_unique<ConsoleLog>(log_);
}

Trainer::~Trainer() = default;

int64_t Trainer::tokens_per_step() const {
  return static_cast<int64_t>(cfg_.train.global_batch_size) * cfg_.train.seq_len;
}

namespace {
double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}
}  // namespace

StepMetrics Trainer::step() {
  auto t0 = std::chrono::steady_clock::now();
  double forward_s = 0, backward_s = 0;
  Model& model = *model_;
  ParamStore& ps = model.params();
  const int depth = cfg_.model.mtp.depth;
  const int micro = loader_->micro_batches_per_step();
  const double global_tokens = static_cast<double>(tokens_per_step());
  LossScales scales;
  scales.lm = 1.0 / global_tokens;
  scales.mtp = depth > 0 ? cfg_.model.mtp.loss_weight / depth / global_tokens : 0.0;
  scales.aux = static_cast<double>(cfg_.train.micro_batch_size) / cfg_.train.global_batch_size;

  ps.zero_grads();
  for (Moe* moe : model.moe_layers()) moe->clear_loads();
  // sums: lm loss, lm tokens, aux, then per depth (mtp loss, mtp tokens)
  std::vector<double> sums(3 + 2 * depth, 0.0);
  data::MicroBatch mb;
  for (int m = 0; m < micro; ++m) {
    loader_->train_batch(step_, m, mb);
    auto tf = std::chrono::steady_clock::now();
    MicroLosses L = model.forward(0, mb, scales, /*training=*/true);
    auto tb = std::chrono::steady_clock::now();
    forward_s += std::chrono::duration<double>(tb - tf).count();
    model.backward_input(0);
    model.backward_weight(0);
    backward_s += seconds_since(tb);
    sums[0] += L.lm_sum;
    sums[1] += static_cast<double>(L.lm_tokens);
    sums[2] += L.aux * scales.aux;
    for (int k = 0; k < depth; ++k) {
      sums[3 + 2 * k] += L.mtp_sum[k];
      sums[4 + 2 * k] += static_cast<double>(L.mtp_tokens[k]);
    }
  }

  // Data-parallel reduction: gradients, loss sums and expert loads (a no-op in one process).
  parallel::Communicator* comm = ctx_.comm;
  std::vector<double> loads_flat;
  for (Moe* moe : model.moe_layers())
    for (int64_t v : moe->loads()) loads_flat.push_back(static_cast<double>(v));
  if (comm) {
    comm->all_reduce(ps.flat_grads(), parallel::ReduceOp::sum)->wait();
    comm->all_reduce(Tensor::of(sums.data(), {static_cast<int64_t>(sums.size())}), parallel::ReduceOp::sum)->wait();
    if (!loads_flat.empty())
      comm->all_reduce(Tensor::of(loads_flat.data(), {static_cast<int64_t>(loads_flat.size())}),
                       parallel::ReduceOp::sum)->wait();
  }

  const double grad_norm = optim::global_norm({ps.flat_grads()});
  if (!std::isfinite(grad_norm))
    FLOT_THROW(Error,
               "step {}: the gradient norm is not finite ({}; loss {:.6g}); stopping before the update so the "
               "weights stay finite. Lower optim.lr or raise optim.warmup_steps, or check the data",
               step_ + 1, grad_norm, sums[0] / std::max(1.0, sums[1]));
  const double clip = optim::clip_factor(grad_norm, cfg_.optim.grad_clip);
  const double lr = optim::lr_at(schedule_, step_);
  apply_optimizer(lr, clip);

  // Aux-loss-free balancing: loads over the whole global batch of this step.
  StepMetrics m;
  const int E = cfg_.model.moe.num_experts;
  last_loads_.assign(model.moe_layers().size(), {});
  double vio_sum = 0;
  for (size_t l = 0; l < model.moe_layers().size(); ++l) {
    std::vector<int64_t> loads(E);
    for (int e = 0; e < E; ++e) loads[e] = static_cast<int64_t>(loads_flat[l * E + e]);
    vio_sum += optim::max_violation(loads.data(), E);
    if (cfg_.model.moe.balancer == "aux_free")
      optim::update_expert_bias(ps.buffer(model.moe_layers()[l]->bias_id()), loads.data(), E,
                                cfg_.model.moe.bias_update_rate);
    last_loads_[l] = std::move(loads);
  }
  if (!model.moe_layers().empty()) m.max_vio = vio_sum / model.moe_layers().size();

  ++step_;
  tokens_seen_ += tokens_per_step();
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
  m.forward_s = forward_s;
  m.backward_s = backward_s;
  m.optimizer_s = m.step_time_s - forward_s - backward_s;
  m.tokens_per_s = tokens_per_step() / m.step_time_s;
  if (dataset_->entropy_floor() >= 0) m.entropy_floor = dataset_->entropy_floor();
  return m;
}

void Trainer::apply_optimizer(double lr, double clip) {
  ParamStore& ps = model_->params();
  optim::AdamWHyper h;
  h.beta1 = cfg_.optim.beta1;
  h.beta2 = cfg_.optim.beta2;
  h.eps = cfg_.optim.eps;
  h.weight_decay = cfg_.optim.weight_decay;
  for (int id = 0; id < ps.size(); ++id)
    optim::adamw_step(ps.param(id), ps.grad(id), ps.moment1(id), ps.moment2(id), h, step_ + 1, lr,
                      clip, ps.spec(id).decay);
}

double Trainer::evaluate() {
  data::MicroBatch mb;
  double sum = 0, count = 0;
  LossScales none;
  for (int i = 0; i < cfg_.train.eval_batches; ++i) {
    loader_->val_batch(i, mb);
    MicroLosses L = model_->forward(0, mb, none, /*training=*/false);
    model_->release(0);
    sum += L.lm_sum;
    count += static_cast<double>(L.lm_tokens);
  }
  std::vector<double> s{sum, count};
  if (ctx_.comm) ctx_.comm->all_reduce(Tensor::of(s.data(), {2}), parallel::ReduceOp::sum)->wait();
  return s[0] / std::max(1.0, s[1]);
}

TrainResult Trainer::run() {
  TrainResult r;
  r.entropy_floor = dataset_->entropy_floor();
  r.ln_vocab = std::log(static_cast<double>(cfg_.model.vocab_size));
  auto start = std::chrono::steady_clock::now();
  while (step_ < cfg_.train.steps) {
    if (stop_ && stop_->load()) {
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
    if (step_ % cfg_.train.log_every == 0 || eval_now || step_ == cfg_.train.steps) {
      double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      console_->step(m, elapsed);
      metrics_->write(m);
      metrics_->write_loads(step_, last_loads_);
    }
  }
  console_->finish_line();
  r.steps = step_;
  return r;
}

}  // namespace core
