// CPU fused head + cross-entropy: Eigen GEMMs per (token chunk, vocab chunk) block, which Eigen
// splits over the OpenMP threads, and row-parallel softmax work on the block in between.
#include "kernels/cpu/head_ce.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/eigen_maps.hpp"

namespace kernels::cpu {

template <class T>
void head_ce_forward(const T* x, const T* W, const int32_t* targets, int64_t N, int64_t D,
                     int64_t V, T* losses, T* lse, HeadCeChunks chunks) {
  const int64_t tc = std::min(std::max<int64_t>(1, chunks.tokens), N);
  const int64_t vcmax = std::min(std::max<int64_t>(1, chunks.vocab), V);
  RowMat<T> block(tc, vcmax);
  // Running max and sum per token across vocab chunks; kept in double since a sum over 100k+
  // terms is formed from per-chunk partial sums.
  std::vector<double> run_max(tc), run_sum(tc);
  std::vector<T> target_logit(tc);
  for (int64_t n0 = 0; n0 < N; n0 += tc) {
    const int64_t nc = std::min(tc, N - n0);
    std::fill(run_max.begin(), run_max.end(), -std::numeric_limits<double>::infinity());
    std::fill(run_sum.begin(), run_sum.end(), 0.0);
    std::fill(target_logit.begin(), target_logit.end(), T(0));
    ConstMatMap<T> X(x + n0 * D, nc, D);
    for (int64_t v0 = 0; v0 < V; v0 += vcmax) {
      const int64_t vc = std::min(vcmax, V - v0);
      Eigen::Map<RowMat<T>> L(block.data(), nc, vc);
      L.noalias() = X * ConstMatMap<T>(W + v0 * D, vc, D).transpose();
#pragma omp parallel for schedule(static) if (nc * vc > kParallelMinElems)
      for (int64_t r = 0; r < nc; ++r) {
        auto row = L.row(r).array();
        const int64_t t = targets[n0 + r];
        if (t >= v0 && t < v0 + vc) target_logit[r] = row(t - v0);
        const double m = std::max(run_max[r], static_cast<double>(row.maxCoeff()));
        const double chunk_sum = static_cast<double>((row - static_cast<T>(m)).exp().sum());
        run_sum[r] = run_sum[r] * std::exp(run_max[r] - m) + chunk_sum;
        run_max[r] = m;
      }
    }
    for (int64_t r = 0; r < nc; ++r) {
      const double l = run_max[r] + std::log(run_sum[r]);
      lse[n0 + r] = static_cast<T>(l);
      losses[n0 + r] = targets[n0 + r] < 0 ? T(0) : static_cast<T>(l - target_logit[r]);
    }
  }
}

template <class T>
void head_ce_backward(const T* x, const T* W, const int32_t* targets, const T* lse, int64_t N,
                      int64_t D, int64_t V, T scale, T* dx, T* dW, HeadCeChunks chunks) {
  const int64_t tc = std::min(std::max<int64_t>(1, chunks.tokens), N);
  const int64_t vcmax = std::min(std::max<int64_t>(1, chunks.vocab), V);
  RowMat<T> block(tc, vcmax);
  for (int64_t n0 = 0; n0 < N; n0 += tc) {
    const int64_t nc = std::min(tc, N - n0);
    if (dx) MatMap<T>(dx + n0 * D, nc, D).setZero();
    // A chunk of padding contributes nothing: skip its GEMMs.
    if (std::all_of(targets + n0, targets + n0 + nc, [](int32_t t) { return t < 0; })) continue;
    ConstMatMap<T> X(x + n0 * D, nc, D);
    for (int64_t v0 = 0; v0 < V; v0 += vcmax) {
      const int64_t vc = std::min(vcmax, V - v0);
      ConstMatMap<T> Wc(W + v0 * D, vc, D);
      Eigen::Map<RowMat<T>> L(block.data(), nc, vc);
      L.noalias() = X * Wc.transpose();
      // dlogits = scale * (softmax - onehot); an ignored token's row is zero.
#pragma omp parallel for schedule(static) if (nc * vc > kParallelMinElems)
      for (int64_t r = 0; r < nc; ++r) {
        auto row = L.row(r).array();
        const int64_t t = targets[n0 + r];
        if (t < 0) {
          row.setZero();
          continue;
        }
        row = scale * (row - lse[n0 + r]).exp();
        if (t >= v0 && t < v0 + vc) row(t - v0) -= scale;
      }
      if (dx) MatMap<T>(dx + n0 * D, nc, D).noalias() += L * Wc;
      if (dW) MatMap<T>(dW + v0 * D, vc, D).noalias() += L.transpose() * X;
    }
  }
}

#define FLOT_INSTANTIATE(T)                                                                       \
  template void head_ce_forward<T>(const T*, const T*, const int32_t*, int64_t, int64_t, int64_t, \
                                   T*, T*, HeadCeChunks);                                         \
  template void head_ce_backward<T>(const T*, const T*, const int32_t*, const T*, int64_t,        \
                                    int64_t, int64_t, T, T*, T*, HeadCeChunks);
FLOT_INSTANTIATE(float)
FLOT_INSTANTIATE(double)
#undef FLOT_INSTANTIATE

}  // namespace kernels::cpu
