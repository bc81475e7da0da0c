// CPU causal attention: per (sequence, head, query tile) Eigen GEMMs against the visible keys,
// a row softmax with saved log-sum-exp, and the standard recomputing backward.
#include "kernels/cpu/attention.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "kernels/cpu/eigen_maps.hpp"

namespace kernels::cpu {

namespace {

// Views of one (sequence b, head h) slice: `rows` rows starting at time t0.
template <class T>
struct HeadViews {
  const AttnShape& s;
  int64_t b, h;
  template <class P>
  auto at(P* base, int64_t D, int64_t t0, int64_t rows) const {
    using Map = std::conditional_t<std::is_const_v<P>, ConstStridedMap<T>, StridedMap<T>>;
    return Map(base + ((b * s.T + t0) * s.H + h) * D, rows, D, Eigen::OuterStride<>(s.H * D));
  }
};

// Per-thread score scratch, kept between calls. A fresh [tile, T] block per call is an mmap of
// new pages each time (glibc serves >= 128 KiB that way), and the kernel zeroing those pages took
// 5-8% of attention time in profiles. It only caches memory; no result depends on its contents.
template <class T>
T* thread_scratch(size_t elems) {
  thread_local Eigen::Matrix<T, Eigen::Dynamic, 1> buf;
  if (static_cast<size_t>(buf.size()) < elems) buf.resize(static_cast<Eigen::Index>(elems));
  return buf.data();
}

}  // namespace

template <class T>
void attention_forward(const AttnShape& s, const T* q, const T* k, const T* v, T scale, T* out,
                       T* lse) {
  const int64_t tiles = (s.T + kAttnTile - 1) / kAttnTile;
  const int64_t items = s.B * s.H * tiles;
#pragma omp parallel
  {
    T* scores = thread_scratch<T>(static_cast<size_t>(std::min(kAttnTile, s.T) * s.T));
    // Items are (tile, b, h) with the heaviest (last) tiles first, handed out dynamically: the
    // work of a tile grows with its index.
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t tile = tiles - 1 - item / (s.B * s.H), pair = item % (s.B * s.H);
      const int64_t b = pair / s.H, h = pair % s.H;
      const int64_t i0 = tile * kAttnTile, i1 = std::min(s.T, i0 + kAttnTile), n = i1 - i0;
      HeadViews<T> hv{s, b, h};
      Eigen::Map<RowMat<T>> S(scores, n, i1);  // keys [0, i1) are the visible prefix
      S.noalias() = scale * hv.at(q, s.Dqk, i0, n) * hv.at(k, s.Dqk, 0, i1).transpose();
      T* lse_row = lse + pair * s.T + i0;
      for (int64_t r = 0; r < n; ++r) {
        const int64_t valid = i0 + r + 1;
        auto row = S.row(r).head(valid).array();
        const T m = row.maxCoeff();
        row = (row - m).exp();
        const T sum = row.sum();
        row *= T(1) / sum;
        S.row(r).tail(i1 - valid).setZero();
        lse_row[r] = m + std::log(sum);
      }
      hv.at(out, s.Dv, i0, n).noalias() = S * hv.at(v, s.Dv, 0, i1);
    }
  }
}

template <class T>
void attention_backward(const AttnShape& s, const T* dout, const T* q, const T* k, const T* v,
                        const T* out, const T* lse, T scale, T* dq, T* dk, T* dv) {
  const int64_t pairs = s.B * s.H;
  // dk and dv of a head collect every query tile, so a head belongs to one thread. With fewer
  // heads than threads the loop runs on one thread and Eigen parallelizes each GEMM instead.
  const bool by_head = pairs >= omp_get_max_threads();
#pragma omp parallel if (by_head)
  {
    const int64_t tile_rows = std::min(kAttnTile, s.T);
    T* scratch = thread_scratch<T>(static_cast<size_t>(2 * tile_rows * s.T + tile_rows));
    T* P_buf = scratch;
    T* dS_buf = scratch + tile_rows * s.T;
    Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> delta(scratch + 2 * tile_rows * s.T, tile_rows);
#pragma omp for schedule(dynamic, 1)
    for (int64_t pair = 0; pair < pairs; ++pair) {
      HeadViews<T> hv{s, pair / s.H, pair % s.H};
      const T* lse_pair = lse + pair * s.T;
      // Last tile first: it sees every key, so its dk and dv products assign and no separate
      // zeroing pass over the strided gradients is needed.
      const int64_t tiles = (s.T + kAttnTile - 1) / kAttnTile;
      for (int64_t tile = tiles - 1; tile >= 0; --tile) {
        const int64_t i0 = tile * kAttnTile, i1 = std::min(s.T, i0 + kAttnTile), n = i1 - i0;
        const bool first = tile == tiles - 1;
        auto Q = hv.at(q, s.Dqk, i0, n);
        auto K = hv.at(k, s.Dqk, 0, i1);
        auto V = hv.at(v, s.Dv, 0, i1);
        auto dO = hv.at(dout, s.Dv, i0, n);
        auto O = hv.at(out, s.Dv, i0, n);
        Eigen::Map<RowMat<T>> P(P_buf, n, i1), dS(dS_buf, n, i1);
        // delta_i = sum_j P_ij dP_ij = dO_i . O_i: the softmax Jacobian's diagonal correction.
        delta.head(n) = dO.cwiseProduct(O).rowwise().sum().array();
        P.noalias() = scale * Q * K.transpose();
        dS.noalias() = dO * V.transpose();
        for (int64_t r = 0; r < n; ++r) {
          const int64_t valid = i0 + r + 1;
          auto p = P.row(r).head(valid).array();
          p = (p - lse_pair[i0 + r]).exp();
          dS.row(r).head(valid).array() = p * (dS.row(r).head(valid).array() - delta(r));
          P.row(r).tail(i1 - valid).setZero();
          dS.row(r).tail(i1 - valid).setZero();
        }
        auto dV = hv.at(dv, s.Dv, 0, i1);
        auto dK = hv.at(dk, s.Dqk, 0, i1);
        if (first) {
          dV.noalias() = P.transpose() * dO;
          dK.noalias() = scale * dS.transpose() * Q;
        } else {
          dV.noalias() += P.transpose() * dO;
          dK.noalias() += scale * dS.transpose() * Q;
        }
        hv.at(dq, s.Dqk, i0, n).noalias() = scale * dS * K;
      }
    }
  }
}

#define FLOT_INSTANTIATE(T)                                                                      \
  template void attention_forward<T>(const AttnShape&, const T*, const T*, const T*, T, T*, T*); \
  template void attention_backward<T>(const AttnShape&, const T*, const T*, const T*, const T*,  \
                                      const T*, const T*, T, T*, T*, T*);
FLOT_INSTANTIATE(float)
FLOT_INSTANTIATE(double)
#undef FLOT_INSTANTIATE

}  // namespace kernels::cpu
