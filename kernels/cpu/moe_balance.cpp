// CPU balance loss over token segments (sequence-wise or batch-wise) and its gradient, which flows
// through P only (f counts top-k selections and is piecewise constant).
//
// With Z_t = sum_j s_{j,t}, the loss of one segment is 1/T sum_t <f, s_t> / Z_t, so the whole loss
// is alpha / (segments T) sum_t <f_seg(t), s_t> / Z_t and its gradient per token is
// alpha / (segments T Z_t) (f_i - <f, s_t> / Z_t). Sums run in double for both float types.
#include <vector>

#include "kernels/cpu/moe_cpu.hpp"

namespace kernels::cpu {

namespace {

// f [segments, E], already scaled by E / (k T), and 1 / Z_t per token.
template <class T>
void balance_stats(int64_t n, int64_t E, const T* scores, int k, int64_t seg, int threads,
                   std::vector<double>& f, std::vector<double>& zinv) {
  const int64_t nseg = n / seg;
  std::vector<int32_t> sel(static_cast<size_t>(n) * k);
  zinv.resize(n);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t t = 0; t < n; ++t) {
    const T* s = scores + t * E;
    TopK<T> top(k);
    double z = 0;
    for (int64_t e = 0; e < E; ++e) {
      top.push(s[e], static_cast<int>(e));
      z += s[e];
    }
    for (int j = 0; j < k; ++j) sel[t * k + j] = top.idx[j];
    zinv[t] = 1.0 / (z + kNormGuard);
  }
  f.assign(static_cast<size_t>(nseg * E), 0.0);
  const double scale = static_cast<double>(E) / (static_cast<double>(k) * seg);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t sg = 0; sg < nseg; ++sg) {
    double* fs = &f[sg * E];
    for (int64_t i = sg * seg * k; i < (sg + 1) * seg * k; ++i) fs[sel[i]] += 1.0;
    for (int64_t e = 0; e < E; ++e) fs[e] *= scale;
  }
}

template <class T>
double dot_f(const double* f, const T* s, int64_t E) {
  double d = 0;
  for (int64_t e = 0; e < E; ++e) d += f[e] * s[e];
  return d;
}

}  // namespace

template <class T>
double balance_loss_forward(int64_t n, int64_t E, const T* scores, int top_k, int64_t segment_len,
                            double alpha, int threads) {
  std::vector<double> f, zinv;
  balance_stats(n, E, scores, top_k, segment_len, threads, f, zinv);
  double total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total) num_threads(threads)
  for (int64_t t = 0; t < n; ++t)
    total += dot_f(&f[(t / segment_len) * E], scores + t * E, E) * zinv[t];
  const double nseg = static_cast<double>(n / segment_len);
  return alpha * total / (nseg * static_cast<double>(segment_len));
}

template <class T>
void balance_loss_backward(int64_t n, int64_t E, const T* scores, int top_k, int64_t segment_len,
                           double alpha, double dloss, T* dscores, int threads) {
  std::vector<double> f, zinv;
  balance_stats(n, E, scores, top_k, segment_len, threads, f, zinv);
  const double nseg = static_cast<double>(n / segment_len);
  const double c = dloss * alpha / (nseg * static_cast<double>(segment_len));
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t t = 0; t < n; ++t) {
    const double* fs = &f[(t / segment_len) * E];
    const T* s = scores + t * E;
    const double zi = zinv[t];
    const double mean = dot_f(fs, s, E) * zi;
    T* ds = dscores + t * E;
    for (int64_t e = 0; e < E; ++e) ds[e] += static_cast<T>(c * zi * (fs[e] - mean));
  }
}

#define FLOT_INSTANTIATE(T)                                                                     \
  template double balance_loss_forward<T>(int64_t, int64_t, const T*, int, int64_t, double, int); \
  template void balance_loss_backward<T>(int64_t, int64_t, const T*, int, int64_t, double, double, \
                                         T*, int);
FLOT_INSTANTIATE(float)
FLOT_INSTANTIATE(double)
#undef FLOT_INSTANTIATE

}  // namespace kernels::cpu
