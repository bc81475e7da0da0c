// GEMM plans for cuBLASLt (kernels/lt_plan.hpp): row-major -> column-major mapping, FP8 scale
// layouts and repacks, the alignment rules, and a host emulation of cuBLASLt's result.
#include "kernels/lt_plan.hpp"

#include <algorithm>
#include <cstring>

#include "core/error.hpp"

namespace kernels::lt {

const char* lt_type_name(LtType t) {
  switch (t) {
    case LtType::f32:
      return "f32";
    case LtType::bf16:
      return "bf16";
    case LtType::e4m3:
      return "e4m3";
    case LtType::e5m2:
      return "e5m2";
  }
  return "?";
}

int lt_type_size(LtType t) {
  switch (t) {
    case LtType::f32:
      return 4;
    case LtType::bf16:
      return 2;
    default:
      return 1;
  }
}

const char* fp8_kind_name(Fp8Kind k) {
  switch (k) {
    case Fp8Kind::forward:
      return "forward";
    case Fp8Kind::dgrad:
      return "dgrad";
    case Fp8Kind::wgrad:
      return "wgrad";
  }
  return "?";
}

int64_t ScaleLayout::count() const {
  switch (mode) {
    case ScaleMode::none:
      return 0;
    case ScaleMode::vec128:
      return inner * outer;
    case ScaleMode::blk128x128:
      return ld * outer;
  }
  return 0;
}

int64_t ScaleLayout::index(int64_t inner_block, int64_t outer_index) const {
  return mode == ScaleMode::vec128 ? outer_index + inner_block * outer
                                   : inner_block + outer_index * ld;
}

bool ScaleRepack::identity() const {
  return src_i == dst_i && src_o == dst_o && dst_count == inner * outer;
}

void apply_repack(const ScaleRepack& r, const float* src, float* dst) {
  std::fill(dst, dst + r.dst_count, 0.0f);
  for (int64_t i = 0; i < r.inner; ++i)
    for (int64_t o = 0; o < r.outer; ++o)
      dst[i * r.dst_i + o * r.dst_o] = src[i * r.src_i + o * r.src_o];
}

std::string LtPlan::key(bool reads_c, int alignment) const {
  auto mat = [](const LtMatrix& x) {
    return std::string(lt_type_name(x.type)) + "[" + std::to_string(x.rows) + "x" +
           std::to_string(x.cols) + "/" + std::to_string(x.ld) + "]";
  };
  return std::string(trans_a ? "T" : "N") + (trans_b ? "T" : "N") + " m" + std::to_string(m) +
         " n" + std::to_string(n) + " k" + std::to_string(k) + " A" + mat(a) + " B" + mat(b) +
         " C" + mat(c) + " s" + std::to_string(static_cast<int>(scale_a.mode)) +
         std::to_string(static_cast<int>(scale_b.mode)) + (reads_c ? " +C" : "") + " al" +
         std::to_string(alignment);
}

LtPlan plan_rowmajor(LtType ab, LtType c, int64_t M, int64_t N, int64_t K, bool trans_a,
                     bool trans_b) {
  LtPlan p;
  p.m = N;
  p.n = M;
  p.k = K;
  // A' is the row-major B seen column-major (its row length is the leading dimension); B' is A.
  p.trans_a = trans_b;
  p.trans_b = trans_a;
  const int64_t ldb = trans_b ? K : N, lda = trans_a ? M : K;
  p.a = {ab, ldb, trans_b ? N : K, ldb};
  p.b = {ab, lda, trans_a ? K : M, lda};
  p.c = {c, N, M, N};
  return p;
}

namespace {

// Repack of a scale tensor whose element (inner block i, outer o) sits at i * src_i + o * src_o.
ScaleRepack repack_to(const ScaleLayout& l, int64_t src_i, int64_t src_o) {
  ScaleRepack r;
  r.inner = l.inner;
  r.outer = l.outer;
  r.src_i = src_i;
  r.src_o = src_o;
  if (l.mode == ScaleMode::vec128) {
    r.dst_i = l.outer;
    r.dst_o = 1;
  } else {
    r.dst_i = 1;
    r.dst_o = l.ld;
  }
  r.dst_count = l.count();
  return r;
}

ScaleLayout vec128(int64_t inner_blocks, int64_t outer) {
  return {ScaleMode::vec128, inner_blocks, outer, outer};
}
ScaleLayout blk128(int64_t inner_blocks, int64_t outer_blocks) {
  return {ScaleMode::blk128x128, inner_blocks, outer_blocks, round_up(inner_blocks, 4)};
}

int64_t aligned_bytes(int64_t b) {
  return round_up(b, 256);
}

}  // namespace

Fp8Plan plan_fp8(Fp8Kind kind, int64_t M, int64_t N, int64_t K, LtType a_format, LtType b_format) {
  Fp8Plan f;
  f.kind = kind;
  f.M = M;
  f.N = N;
  f.K = K;
  const int64_t MB = blocks_of(M), NB = blocks_of(N), KB = blocks_of(K);
  switch (kind) {
    case Fp8Kind::forward:
      // Y[M, N] = X W^T: A' = W [N, K] (row-major = K-contiguous), B' = X [M, K].
      f.gemm = plan_rowmajor(a_format, LtType::f32, M, N, K, false, true);
      f.codes_a = {false, false, N, K};
      f.codes_b = {true, false, M, K};
      f.gemm.scale_a = blk128(KB, NB);
      f.gemm.scale_b = vec128(KB, M);
      f.repack_a = repack_to(f.gemm.scale_a, 1, KB);  // W scales [NB, KB]
      f.repack_b = repack_to(f.gemm.scale_b, 1, KB);  // X scales [M, KB]
      break;
    case Fp8Kind::dgrad:
      // dX[M, K] = dY W: A' = W^T stored [K, N] (N-contiguous), B' = dY [M, N].
      f.gemm = plan_rowmajor(a_format, LtType::f32, M, K, N, false, true);
      f.codes_a = {false, true, N, K};
      f.codes_b = {true, false, M, N};
      f.gemm.scale_a = blk128(NB, KB);
      f.gemm.scale_b = vec128(NB, M);
      f.repack_a = repack_to(f.gemm.scale_a, KB, 1);  // W scales [NB, KB], transposed
      f.repack_b = repack_to(f.gemm.scale_b, 1, NB);  // dY scales [M, NB]
      break;
    case Fp8Kind::wgrad:
      // dW[N, K] += dY^T X: A' = X^T stored [K, M], B' = dY^T stored [N, M] (M-contiguous).
      f.gemm = plan_rowmajor(a_format, LtType::f32, N, K, M, false, true);
      f.codes_a = {false, true, M, K};
      f.codes_b = {true, true, M, N};
      f.gemm.scale_a = vec128(MB, K);
      f.gemm.scale_b = vec128(MB, N);
      f.repack_a = repack_to(f.gemm.scale_a, K, 1);  // X col scales [MB, K]: already cuBLASLt's
      f.repack_b = repack_to(f.gemm.scale_b, N, 1);  // dY col scales [MB, N]
      f.accumulate = true;
      break;
  }
  // A' is the weight side except in wgrad, where it is x (also the `b` operand of the call).
  f.gemm.a.type = b_format;
  f.gemm.b.type = a_format;
  return f;
}

int64_t Fp8Plan::scratch_bytes() const {
  int64_t b = 0;
  for (const CodeSource* s : {&codes_a, &codes_b})
    if (s->transpose) b += aligned_bytes(s->rows * s->cols);
  for (const ScaleRepack* r : {&repack_a, &repack_b})
    if (!r->identity()) b += aligned_bytes(r->dst_count * 4);
  return b;
}

bool fp8_lt_supported(const LtPlan& p, int alignment) {
  const bool e5 = p.a.type == LtType::e5m2 && p.b.type == LtType::e5m2;
  auto fp8 = [](LtType t) { return t == LtType::e4m3 || t == LtType::e5m2; };
  return p.trans_a && !p.trans_b && fp8(p.a.type) && fp8(p.b.type) && !e5 &&
         p.c.type == LtType::f32 && p.m % 16 == 0 && p.n % 16 == 0 && p.k % 16 == 0 &&
         p.a.ld % 16 == 0 && p.b.ld % 16 == 0 && p.c.ld % 4 == 0 && alignment >= 16;
}

void lt_reference(const LtPlan& p, const float* a, const float* b, const float* sa, const float* sb,
                  double alpha, double beta, float* c) {
  const bool scaled = p.scale_a.mode != ScaleMode::none;
  FLOT_CHECK(!scaled || (p.trans_a && !p.trans_b), "block-scaled plans are TN");
  auto opa = [&](int64_t i, int64_t kk) {
    return p.trans_a ? a[kk + i * p.a.ld] : a[i + kk * p.a.ld];
  };
  auto opb = [&](int64_t kk, int64_t j) {
    return p.trans_b ? b[j + kk * p.b.ld] : b[kk + j * p.b.ld];
  };
  auto outer_of = [](const ScaleLayout& l, int64_t i) {
    return l.mode == ScaleMode::vec128 ? i : i / kBlock;
  };
  for (int64_t j = 0; j < p.n; ++j)
    for (int64_t i = 0; i < p.m; ++i) {
      double acc = 0;
      for (int64_t k0 = 0; k0 < p.k; k0 += kBlock) {
        double dot = 0;
        for (int64_t kk = k0; kk < std::min(p.k, k0 + kBlock); ++kk)
          dot += static_cast<double>(opa(i, kk)) * opb(kk, j);
        if (scaled) {
          const int64_t kb = k0 / kBlock;
          dot *= static_cast<double>(sa[p.scale_a.index(kb, outer_of(p.scale_a, i))]) *
                 sb[p.scale_b.index(kb, outer_of(p.scale_b, j))];
        }
        acc += dot;
      }
      float& d = c[i + j * p.c.ld];
      d = static_cast<float>(alpha * acc + (beta != 0.0 ? beta * d : 0.0));
    }
}

int pointer_alignment(std::initializer_list<const void*> ptrs) {
  int a = 256;
  for (const void* p : ptrs) {
    if (!p) continue;
    const auto v = reinterpret_cast<uintptr_t>(p);
    while (a > 1 && v % static_cast<uintptr_t>(a) != 0) a /= 2;
  }
  return a;
}

}  // namespace kernels::lt
