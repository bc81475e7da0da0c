// CPU grouped GEMM over contiguous per-expert row segments and its weight gradient: one Eigen GEMM
// per non-empty segment on row-major maps, scheduled across threads by segment size
// (kernels/cpu/segments.hpp).

#include "kernels/cpu/eigen_maps.hpp"
#include "kernels/cpu/moe_cpu.hpp"
#include "kernels/cpu/segments.hpp"

namespace kernels::cpu {

template <class T>
void grouped_gemm(int64_t m, int64_t n, int64_t kd, int e_count, const T* A, const T* B,
                  bool trans_b, const int32_t* offsets, T* C, T alpha, T beta, int threads) {
  auto job = [&](int e) {
    const int64_t r0 = offsets[e], rows = offsets[e + 1] - offsets[e];
    ConstMatMap<T> a(A + r0 * kd, rows, kd);
    MatMap<T> c(C + r0 * n, rows, n);
    // beta = 0 must not read C: it may hold garbage or NaN.
    if (beta == T(0)) {
      if (kd == 0) {
        c.setZero();
      } else if (trans_b) {
        c.noalias() = alpha * (a * ConstMatMap<T>(B + e * n * kd, n, kd).transpose());
      } else {
        c.noalias() = alpha * (a * ConstMatMap<T>(B + e * kd * n, kd, n));
      }
      return;
    }
    if (beta != T(1)) c *= beta;
    if (kd == 0) return;
    if (trans_b) {
      c.noalias() += alpha * (a * ConstMatMap<T>(B + e * n * kd, n, kd).transpose());
    } else {
      c.noalias() += alpha * (a * ConstMatMap<T>(B + e * kd * n, kd, n));
    }
  };
  schedule_segments(e_count, offsets, threads, job);
}

template <class T>
void grouped_gemm_wgrad(int64_t m, int64_t n, int64_t kd, int e_count, const T* dC, const T* A,
                        const int32_t* offsets, T* dB, int threads) {
  auto job = [&](int e) {
    const int64_t r0 = offsets[e], rows = offsets[e + 1] - offsets[e];
    ConstMatMap<T> dc(dC + r0 * n, rows, n);
    ConstMatMap<T> a(A + r0 * kd, rows, kd);
    MatMap<T> db(dB + e * n * kd, n, kd);
    db.noalias() += dc.transpose() * a;
  };
  schedule_segments(e_count, offsets, threads, job);
}

#define FLOT_INSTANTIATE(T)                                                                       \
  template void grouped_gemm<T>(int64_t, int64_t, int64_t, int, const T*, const T*, bool,          \
                                const int32_t*, T*, T, T, int);                                   \
  template void grouped_gemm_wgrad<T>(int64_t, int64_t, int64_t, int, const T*, const T*,          \
                                      const int32_t*, T*, int);
FLOT_INSTANTIATE(float)
FLOT_INSTANTIATE(double)
#undef FLOT_INSTANTIATE

}  // namespace kernels::cpu
