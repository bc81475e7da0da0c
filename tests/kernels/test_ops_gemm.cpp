// Tests of kernels::gemm (all transpose combinations, alpha / beta, folding, shape errors) and
// of the elementwise ops, against plain double loops.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common/gradcheck.hpp"
#include "kernels/ops.hpp"

using core::Tensor;

namespace {

// C = alpha op(A) op(B) + beta C in double; A stored [M, K] or [K, M], B [K, N] or [N, K].
template <class T>
std::vector<double> naive_gemm(int M, int N, int K, const std::vector<T>& A, bool ta,
                               const std::vector<T>& B, bool tb, const std::vector<T>& C,
                               double alpha, double beta) {
  std::vector<double> out(M * N);
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double s = 0;
      for (int p = 0; p < K; ++p) {
        double a = ta ? A[p * M + i] : A[i * K + p];
        double b = tb ? B[j * K + p] : B[p * N + j];
        s += a * b;
      }
      out[i * N + j] = alpha * s + (beta == 0 ? 0.0 : beta * C[i * N + j]);
    }
  return out;
}

template <class T>
void check_gemm_case(int M, int N, int K, bool ta, bool tb, double alpha, double beta, double tol) {
  kernels::Context ctx;
  auto A = testing::random_vector<T>(M * K, 1 + M + ta);
  auto B = testing::random_vector<T>(K * N, 2 + N + tb);
  auto C = testing::random_vector<T>(M * N, 3);
  // beta == 0 must never read C: NaN there would poison the result.
  if (beta == 0) std::fill(C.begin(), C.end(), std::numeric_limits<T>::quiet_NaN());
  auto want = naive_gemm(M, N, K, A, ta, B, tb, C, alpha, beta);
  Tensor tA = ta ? Tensor::of(A.data(), {K, M}) : Tensor::of(A.data(), {M, K});
  Tensor tB = tb ? Tensor::of(B.data(), {N, K}) : Tensor::of(B.data(), {K, N});
  kernels::gemm(ctx, tA, ta, tB, tb, Tensor::of(C.data(), {M, N}), alpha, beta);
  double worst = 0;
  for (int i = 0; i < M * N; ++i)
    worst = std::max(worst, std::fabs(C[i] - want[i]) / std::max(1.0, std::fabs(want[i])));
  INFO("M " << M << " N " << N << " K " << K << " ta " << ta << " tb " << tb << " alpha " << alpha
            << " beta " << beta);
  CHECK(worst <= tol);
}

}  // namespace

TEST_CASE("gemm matches a naive product for every transpose, alpha and beta", "[ops][gemm]") {
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (double beta : {0.0, 1.0, -0.5}) {
        check_gemm_case<double>(7, 5, 3, ta, tb, 1.0, beta, 1e-13);
        check_gemm_case<double>(33, 70, 45, ta, tb, -1.5, beta, 1e-13);
        check_gemm_case<float>(130, 90, 300, ta, tb, 0.75, beta, 1e-5);
      }
}

TEST_CASE("gemm folds higher-rank views and handles empty work", "[ops][gemm]") {
  kernels::Context ctx;
  auto A = testing::random_vector<double>(2 * 3 * 4, 11);
  auto B = testing::random_vector<double>(4 * 5, 12);
  std::vector<double> C(6 * 5);
  kernels::gemm(ctx, Tensor::of(A.data(), {2, 3, 4}), false, Tensor::of(B.data(), {4, 5}), false,
                Tensor::of(C.data(), {2, 3, 5}));
  auto want = naive_gemm(6, 5, 4, A, false, B, false, C, 1.0, 0.0);
  for (int i = 0; i < 30; ++i) CHECK(C[i] == Approx(want[i]).epsilon(1e-12));
  // K = 0: an empty sum, so C = beta * C.
  std::vector<double> C2(6, 2.0), empty;
  kernels::gemm(ctx, Tensor::of(empty.data(), {2, 0}), false, Tensor::of(empty.data(), {0, 3}),
                false, Tensor::of(C2.data(), {2, 3}), 1.0, 0.5);
  for (double c : C2) CHECK(c == 1.0);
}

TEST_CASE("gemm rejects mismatched shapes, dtypes and aliasing", "[ops][gemm]") {
  kernels::Context ctx;
  std::vector<double> A(12), B(12), C(16);
  std::vector<float> Cf(9);
  auto tA = Tensor::of(A.data(), {3, 4});
  CHECK_THROWS_AS(kernels::gemm(ctx, tA, false, Tensor::of(B.data(), {3, 4}), false,
                                Tensor::of(C.data(), {3, 4})),
                  core::InternalError);
  CHECK_THROWS_AS(kernels::gemm(ctx, tA, false, Tensor::of(B.data(), {4, 3}), false,
                                Tensor::of(C.data(), {4, 4})),
                  core::InternalError);
  CHECK_THROWS_AS(kernels::gemm(ctx, tA, false, Tensor::of(B.data(), {4, 3}), false,
                                Tensor::of(Cf.data(), {3, 3})),
                  core::InternalError);
  CHECK_THROWS_AS(kernels::gemm(ctx, tA, false, Tensor::of(B.data(), {4, 3}), false,
                                Tensor::of(A.data(), {3, 3})),
                  core::InternalError);
  Tensor on_gpu = Tensor::of(C.data(), {3, 3});
  on_gpu.device = core::Device::cuda;
  CHECK_THROWS_WITH(kernels::gemm(ctx, tA, false, Tensor::of(B.data(), {4, 3}), false, on_gpu),
                    Catch::Contains("on the CPU") && Catch::Contains("on the GPU"));
  // The shape check passes on a correct call.
  CHECK_NOTHROW(kernels::gemm(ctx, tA, false, Tensor::of(B.data(), {4, 3}), false,
                              Tensor::of(C.data(), {3, 3})));
}

TEST_CASE("elementwise ops: fill, copy, axpy, scale, sum_squares", "[ops][elementwise]") {
  const int n = 100003;  // above the parallel threshold, odd to leave a remainder
  auto x = testing::random_vector<float>(n, 21);
  auto y = testing::random_vector<float>(n, 22);
  auto y0 = y;
  Tensor tx = Tensor::of(x.data(), {n}), ty = Tensor::of(y.data(), {n});

  kernels::axpy(0.5, tx, ty);
  for (int i = 0; i < n; i += 997) CHECK(y[i] == Approx(y0[i] + 0.5f * x[i]).epsilon(1e-6));
  kernels::scale(ty, -2.0);
  for (int i = 0; i < n; i += 997)
    CHECK(y[i] == Approx(-2.0f * (y0[i] + 0.5f * x[i])).epsilon(1e-6));

  double want = 0;
  for (float v : x) want += static_cast<double>(v) * v;
  CHECK(kernels::sum_squares(tx) == Approx(want).epsilon(1e-12));

  std::vector<float> z(n);
  kernels::copy(tx, Tensor::of(z.data(), {n}));
  CHECK(z == x);
  kernels::fill(tx, 3.25);
  CHECK(std::all_of(x.begin(), x.end(), [](float v) { return v == 3.25f; }));

  std::vector<double> d(10);
  CHECK_THROWS_AS(kernels::axpy(1.0, tx, Tensor::of(d.data(), {10})), core::InternalError);
  CHECK_THROWS_AS(kernels::copy(tx, Tensor::of(z.data(), {n - 1})), core::InternalError);
  std::vector<int32_t> ints(4);
  CHECK_THROWS_AS(kernels::scale(Tensor::of(ints.data(), {4}), 2.0), core::InternalError);
}
