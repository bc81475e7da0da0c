// Tests of the DeepSeek-V3 gate: the oracle vectors, a brute-force reference over all group
// subsets, the selection-only bias, and float64 finite differences of gate_backward.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "common/gradcheck.hpp"
#include "core/error.hpp"
#include "kernels/moe_ops.hpp"

using core::Tensor;
using kernels::GateShape;

namespace {

template <class T>
struct GateOut {
  std::vector<T> scores, weights;
  std::vector<int32_t> idx;
};

template <class T, class B>
GateOut<T> run_gate(const GateShape& g, const std::vector<T>& logits, const std::vector<B>& bias,
                    int threads = 2) {
  core::Context ctx;
  ctx.threads = threads;
  const int64_t n = static_cast<int64_t>(logits.size()) / g.num_experts;
  GateOut<T> o;
  o.scores.assign(n * g.num_experts, T(-7));
  o.weights.assign(n * g.top_k, T(-7));
  o.idx.assign(n * g.top_k, -7);
  kernels::gate_forward(ctx, g, Tensor::of(logits.data(), {n, g.num_experts}),
                        Tensor::of(bias.data(), {g.num_experts}),
                        Tensor::of(o.scores.data(), {n, g.num_experts}),
                        Tensor::of(o.idx.data(), {n, g.top_k}), Tensor::of(o.weights.data(), {n, g.top_k}));
  return o;
}

// One token by brute force: every subset of groups_per_token groups is scored by the sum of its
// group scores (summed in long double so that only exact ties tie); the best subset, ties to the
// lexicographically smallest, supplies the candidates; then a full sort by (biased desc, index).
template <class T>
std::pair<std::vector<int>, std::vector<T>> reference_gate(const GateShape& g, const T* logits,
                                                           const T* bias) {
  const int E = g.num_experts, G = g.num_groups, per = E / G;
  std::vector<T> s(E), b(E);
  for (int e = 0; e < E; ++e) {
    s[e] = T(1) / (T(1) + std::exp(-logits[e]));
    b[e] = s[e] + bias[e];
  }
  std::vector<long double> gscore(G);
  for (int gi = 0; gi < G; ++gi) {
    std::vector<T> v(b.begin() + gi * per, b.begin() + (gi + 1) * per);
    std::sort(v.begin(), v.end(), std::greater<T>());
    gscore[gi] = per == 1 ? v[0] : v[0] + v[1];
  }
  uint32_t best_mask = 0;
  long double best = -std::numeric_limits<long double>::infinity();
  bool found = false;
  std::vector<std::vector<int>> subsets;
  for (uint32_t mask = 0; mask < (1u << G); ++mask) {
    if (__builtin_popcount(mask) != g.groups_per_token) continue;
    std::vector<int> members;
    for (int gi = 0; gi < G; ++gi)
      if (mask >> gi & 1) members.push_back(gi);
    long double total = 0;
    for (int gi : members) total += gscore[gi];
    std::vector<int> best_members;
    for (int gi = 0; gi < G; ++gi)
      if (best_mask >> gi & 1) best_members.push_back(gi);
    if (!found || total > best || (total == best && members < best_members)) {
      best = total;
      best_mask = mask;
      found = true;
    }
  }
  std::vector<int> cand;
  for (int e = 0; e < E; ++e)
    if (best_mask >> (e / per) & 1) cand.push_back(e);
  std::stable_sort(cand.begin(), cand.end(), [&](int x, int y) { return b[x] > b[y]; });
  cand.resize(g.top_k);
  T sum = 0;
  for (int e : cand) sum += s[e];
  std::vector<T> w;
  for (int e : cand) w.push_back(static_cast<T>(g.route_scale) * s[e] / sum);
  return {cand, w};
}

template <class T>
void check_against_reference(const GateShape& g, int64_t n, uint64_t seed, double logit_amp,
                             std::vector<T> bias) {
  auto logits = testing::random_vector<T>(n * g.num_experts, seed, logit_amp);
  auto out = run_gate(g, logits, bias);
  int64_t wrong = 0;
  for (int64_t t = 0; t < n; ++t) {
    auto [idx, w] = reference_gate<T>(g, &logits[t * g.num_experts], bias.data());
    for (int j = 0; j < g.top_k; ++j) {
      if (out.idx[t * g.top_k + j] != idx[j]) ++wrong;
      CHECK(out.weights[t * g.top_k + j] == Approx(w[j]).epsilon(1e-5));
    }
    for (int e = 0; e < g.num_experts; ++e)
      CHECK(out.scores[t * g.num_experts + e] ==
            Approx(1.0 / (1.0 + std::exp(-static_cast<double>(logits[t * g.num_experts + e]))))
                .epsilon(1e-6));
  }
  INFO("E " << g.num_experts << " k " << g.top_k << " groups " << g.num_groups << "/"
            << g.groups_per_token << " seed " << seed);
  CHECK(wrong == 0);
}

GateShape shape(int E, int k, int G, int gpt, double rs) {
  GateShape g;
  g.num_experts = E;
  g.top_k = k;
  g.num_groups = G;
  g.groups_per_token = gpt;
  g.route_scale = rs;
  return g;
}

double logit(double p) { return std::log(p / (1 - p)); }

}  // namespace

TEST_CASE("gate reproduces the DeepSeek-V3 oracle vectors", "[moe]") {
  std::ifstream in(FLOTILLA_TEST_DATA "/oracle/gate_vectors.json");
  REQUIRE(in.good());
  auto j = nlohmann::json::parse(in);
  GateShape g = shape(j["num_experts"], j["experts_per_token"], j["num_groups"],
                      j["groups_per_token"], j["route_scale"]);
  const auto bias = j["bias"].get<std::vector<float>>();
  std::vector<float> lf;
  for (const auto& tok : j["tokens"])
    for (double v : tok["logits"]) lf.push_back(static_cast<float>(v));
  std::vector<double> ld(lf.begin(), lf.end());
  REQUIRE(j["tokens"].size() == 12);
  auto check = [&](const auto& out, const char* dtype) {
    INFO("logits " << dtype);
    for (size_t t = 0; t < j["tokens"].size(); ++t) {
      const auto& tok = j["tokens"][t];
      std::vector<std::pair<int, double>> got;
      for (int s = 0; s < g.top_k; ++s)
        got.emplace_back(out.idx[t * g.top_k + s], out.weights[t * g.top_k + s]);
      std::sort(got.begin(), got.end());
      const auto experts = tok["experts"].get<std::vector<int>>();
      const auto weights = tok["weights"].get<std::vector<double>>();
      REQUIRE(experts.size() == got.size());
      for (size_t s = 0; s < got.size(); ++s) {
        INFO("token " << t << " slot " << s);
        CHECK(got[s].first == experts[s]);
        CHECK(std::fabs(got[s].second - weights[s]) < 1e-5);
      }
    }
  };
  check(run_gate(g, lf, bias), "f32");
  check(run_gate(g, ld, bias), "f64 (with an f32 bias)");
}

TEST_CASE("gate equals a brute-force reference over all group subsets", "[moe]") {
  struct Case {
    int E, k, G, gpt;
    double rs, bias_amp, bias_shift;
  };
  const Case cases[] = {
      {16, 4, 4, 2, 2.5, 0.5, 0.0},   {32, 6, 8, 3, 1.0, 0.3, 0.0},
      {8, 2, 1, 1, 1.7, 0.5, 0.0},    {12, 3, 4, 4, 1.0, 0.5, 0.0},  // all groups kept
      {8, 3, 8, 3, 1.0, 0.5, 0.0},    {256, 8, 8, 4, 2.5, 0.1, 0.0},  // size-1 groups; V3 shape
      {16, 4, 4, 2, 2.5, 0.5, -30.0},  // every biased score negative
      {32, 8, 4, 1, 1.0, 4.0, -8.0},   // large, mostly negative biases
  };
  uint64_t seed = 100;
  for (const Case& c : cases) {
    GateShape g = shape(c.E, c.k, c.G, c.gpt, c.rs);
    auto bd = testing::random_vector<double>(c.E, ++seed, c.bias_amp);
    for (double& b : bd) b += c.bias_shift;
    check_against_reference<double>(g, 64, ++seed, 3.0, bd);
    check_against_reference<float>(g, 64, ++seed, 3.0, std::vector<float>(bd.begin(), bd.end()));
  }
}

TEST_CASE("gate group limiting excludes a globally higher expert", "[moe]") {
  // Group scores: g0 = 0.95 (one strong expert), g1 = 1.2, g2 = 1.1, g3 = 0.2.
  const double p[8] = {0.95, 1e-9, 0.6, 0.6, 0.55, 0.55, 0.1, 0.1};
  std::vector<double> logits(8), bias(8, 0.0);
  for (int e = 0; e < 8; ++e) logits[e] = logit(p[e]);
  auto limited = run_gate(shape(8, 2, 4, 2, 1.0), logits, bias);
  CHECK(limited.idx == std::vector<int32_t>{2, 3});  // tie between 2 and 3: lower index first
  CHECK(limited.weights[0] == Approx(0.5));
  auto unlimited = run_gate(shape(8, 2, 4, 4, 1.0), logits, bias);
  CHECK(unlimited.idx == std::vector<int32_t>{0, 2});
  // The same with every biased score negative: a mask of 0 instead of -inf would pick 0 or 1.
  std::vector<double> neg(8, -5.0);
  auto negative = run_gate(shape(8, 2, 4, 2, 1.0), logits, neg);
  CHECK(negative.idx == std::vector<int32_t>{2, 3});
}

TEST_CASE("gate ties go to the lower index, groups and experts alike", "[moe]") {
  std::vector<float> logits(2 * 8, 0.25f), bias(8, 0.0f);
  auto out = run_gate(shape(8, 3, 4, 2, 1.0), logits, bias);
  CHECK(out.idx == std::vector<int32_t>{0, 1, 2, 0, 1, 2});
  for (float w : out.weights) CHECK(w == Approx(1.0 / 3));
  // Equal scores in a later group rank after the earlier group's equal ones but before lower ones.
  std::vector<double> l2 = {0.0, -1.0, 1.0, 1.0, 1.0, -2.0, -3.0, -3.0};
  auto o2 = run_gate(shape(8, 3, 4, 4, 1.0), l2, std::vector<double>(8, 0.0));
  CHECK(o2.idx == std::vector<int32_t>{2, 3, 4});
}

TEST_CASE("gate weights use the unbiased scores; route_scale multiplies them", "[moe]") {
  // Scores 0.9, 0.8, 0.3, 0.2; the bias moves the choice to experts 2 and 3.
  const double p[4] = {0.9, 0.8, 0.3, 0.2};
  std::vector<double> logits(4);
  for (int e = 0; e < 4; ++e) logits[e] = logit(p[e]);
  std::vector<double> bias = {0.0, 0.0, 1.0, 1.0};
  auto out = run_gate(shape(4, 2, 1, 1, 2.5), logits, bias);
  REQUIRE(out.idx == std::vector<int32_t>{2, 3});
  CHECK(out.weights[0] == Approx(2.5 * 0.3 / 0.5));
  CHECK(out.weights[1] == Approx(2.5 * 0.2 / 0.5));
  // Scores are the plain sigmoid: the bias never enters them.
  CHECK(out.scores[2] == Approx(0.3));
  // Any bias giving the same selection gives bitwise the same weights.
  auto logits_many = testing::random_vector<double>(40 * 16, 7, 2.0);
  auto b1 = testing::random_vector<double>(16, 8, 0.01);
  auto b2 = b1;
  for (double& b : b2) b -= 3.0;  // a uniform shift never changes the selection
  GateShape g = shape(16, 4, 4, 2, 2.5);
  auto o1 = run_gate(g, logits_many, b1), o2 = run_gate(g, logits_many, b2);
  REQUIRE(o1.idx == o2.idx);
  CHECK(o1.weights == o2.weights);
  double total = 0;
  for (int j = 0; j < 4; ++j) total += o1.weights[j];
  CHECK(total == Approx(2.5));
}

TEST_CASE("gate_backward matches float64 finite differences", "[moe]") {
  GateShape g = shape(16, 4, 4, 2, 2.5);
  const int64_t n = 6, E = 16, k = 4;
  auto logits = testing::random_vector<double>(n * E, 21, 2.0);
  auto bias = testing::random_vector<double>(E, 22, 0.4);
  auto r = testing::random_vector<double>(n * k, 23);
  auto r2 = testing::random_vector<double>(n * E, 24);
  auto base = run_gate(g, logits, bias);
  for (bool extra : {true, false}) {
    INFO("dscores_extra " << (extra ? "given" : "empty"));
    std::vector<double> dlogits(n * E, 123.0);
    core::Context ctx;
    ctx.threads = 2;
    kernels::gate_backward(ctx, g, Tensor::of(r.data(), {n, k}), Tensor::of(base.scores.data(), {n, E}),
                           Tensor::of(base.idx.data(), {n, k}),
                           extra ? Tensor::of(r2.data(), {n, E}) : Tensor(),
                           Tensor::of(dlogits.data(), {n, E}));
    auto loss = [&] {
      auto o = run_gate(g, logits, bias);
      REQUIRE(o.idx == base.idx);  // the perturbation must not change the selection
      return testing::dot(r, o.weights) + (extra ? testing::dot(r2, o.scores) : 0.0);
    };
    testing::check_gradient("dlogits", logits, dlogits, loss, 1e-6, 1e-7);
  }
}

TEST_CASE("gate_backward depends on the bias only through the selection", "[moe]") {
  GateShape g = shape(16, 4, 4, 2, 1.0);
  const int64_t n = 8, E = 16, k = 4;
  auto logits = testing::random_vector<double>(n * E, 31, 2.0);
  auto r = testing::random_vector<double>(n * k, 32);
  auto b1 = testing::random_vector<double>(E, 33, 0.01);
  auto b2 = b1;
  for (double& b : b2) b += 7.0;
  auto backward = [&](const GateOut<double>& o) {
    std::vector<double> dl(n * E);
    core::Context ctx;
    kernels::gate_backward(ctx, g, Tensor::of(r.data(), {n, k}), Tensor::of(o.scores.data(), {n, E}),
                           Tensor::of(o.idx.data(), {n, k}), Tensor(), Tensor::of(dl.data(), {n, E}));
    return dl;
  };
  auto o1 = run_gate(g, logits, b1), o2 = run_gate(g, logits, b2);
  REQUIRE(o1.idx == o2.idx);
  CHECK(backward(o1) == backward(o2));
  // Unselected experts get no gradient from the weights.
  auto dl = backward(o1);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t e = 0; e < E; ++e) {
      bool selected = std::count(&o1.idx[t * k], &o1.idx[t * k] + k, e) > 0;
      if (!selected) CHECK(dl[t * E + e] == 0.0);
    }
}

TEST_CASE("gate handles zero tokens and rejects bad shapes", "[moe]") {
  GateShape g = shape(8, 2, 4, 2, 1.0);
  core::Context ctx;
  std::vector<float> bias(8, 0.0f);
  Tensor none_e(nullptr, core::DType::f32, {0, 8}), none_k(nullptr, core::DType::f32, {0, 2});
  Tensor none_i(nullptr, core::DType::i32, {0, 2});
  CHECK_NOTHROW(kernels::gate_forward(ctx, g, none_e, Tensor::of(bias.data(), {8}), none_e, none_i, none_k));
  CHECK_NOTHROW(kernels::gate_backward(ctx, g, none_k, none_e, none_i, Tensor(), none_e));
  std::vector<float> logits(8), scores(8), w(2);
  std::vector<int32_t> idx(2);
  auto fwd = [&](const GateShape& gs) {
    kernels::gate_forward(ctx, gs, Tensor::of(logits.data(), {1, 8}), Tensor::of(bias.data(), {8}),
                          Tensor::of(scores.data(), {1, 8}), Tensor::of(idx.data(), {1, gs.top_k}),
                          Tensor::of(w.data(), {1, gs.top_k}));
  };
  CHECK_NOTHROW(fwd(g));
  CHECK_THROWS_AS(fwd(shape(8, 2, 3, 2, 1.0)), core::InternalError);  // 3 groups do not divide 8
  CHECK_THROWS_AS(fwd(shape(8, 5, 4, 2, 1.0)), core::InternalError);  // 5 > 2 groups x 2 experts
  CHECK_THROWS_AS(fwd(shape(8, 2, 4, 5, 1.0)), core::InternalError);  // 5 > 4 groups
  std::vector<double> wd(2);
  CHECK_THROWS_AS(kernels::gate_forward(ctx, g, Tensor::of(logits.data(), {1, 8}),
                                        Tensor::of(bias.data(), {8}), Tensor::of(scores.data(), {1, 8}),
                                        Tensor::of(idx.data(), {1, 2}), Tensor::of(wd.data(), {1, 2})),
                  core::InternalError);
  idx = {0, 8};  // out of range
  std::vector<float> dl(8);
  CHECK_THROWS_AS(kernels::gate_backward(ctx, g, Tensor::of(w.data(), {1, 2}), Tensor::of(scores.data(), {1, 8}),
                                         Tensor::of(idx.data(), {1, 2}), Tensor(),
                                         Tensor::of(dl.data(), {1, 8})),
                  core::InternalError);
}
