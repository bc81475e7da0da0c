// CPU GEMM through Eigen's blocked, packed, OpenMP-parallel matrix product.
#include "kernels/cpu/gemm.hpp"

#include "kernels/cpu/eigen_maps.hpp"

namespace kernels::cpu {

namespace {

// One instantiation per (trans_a, trans_b) so that Eigen sees the storage order at compile time
// and picks its packed kernel for each layout instead of copying a transposed operand.
template <class T, class MA, class MB>
void product(const MA& a, const MB& b, MatMap<T>& c, T alpha, T beta) {
  if (beta == T(0)) {
    c.noalias() = alpha * a * b;
  } else {
    if (beta != T(1)) c *= beta;
    c.noalias() += alpha * a * b;
  }
}

}  // namespace

template <class T>
void gemm(int64_t M, int64_t N, int64_t K, const T* A, bool trans_a, const T* B, bool trans_b, T* C,
          T alpha, T beta) {
  MatMap<T> c(C, M, N);
  if (K == 0) {
    // Eigen would still read C for beta != 0; an empty sum leaves beta * C.
    if (beta == T(0))
      c.setZero();
    else
      c *= beta;
    return;
  }
  ConstMatMap<T> a(A, trans_a ? K : M, trans_a ? M : K);
  ConstMatMap<T> b(B, trans_b ? N : K, trans_b ? K : N);
  if (!trans_a && !trans_b) product<T>(a, b, c, alpha, beta);
  if (!trans_a && trans_b) product<T>(a, b.transpose(), c, alpha, beta);
  if (trans_a && !trans_b) product<T>(a.transpose(), b, c, alpha, beta);
  if (trans_a && trans_b) product<T>(a.transpose(), b.transpose(), c, alpha, beta);
}

template void gemm<float>(int64_t, int64_t, int64_t, const float*, bool, const float*, bool, float*,
                          float, float);
template void gemm<double>(int64_t, int64_t, int64_t, const double*, bool, const double*, bool,
                           double*, double, double);

}  // namespace kernels::cpu
