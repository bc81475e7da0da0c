// The NCCL communicator over real ranks, one GPU each, with integer-valued rank-seeded data (as
// nccl-tests): every element's expected value is exact, and the count of wrong elements summed
// over the ranks must be 0. Also: host tensors go through MPI, split groups work.
#include <catch2/catch.hpp>

#include "nccl_env.hpp"

using namespace nccl_testing;
using parallel::ReduceOp;

TEST_CASE("nccl all_reduce, all_gather and reduce_scatter are exact", "[nccl]") {
  parallel::Communicator& c = nccl();
  const int n = c.size(), r = c.rank();
  core::BumpArena arena(0, &cuda().memory());
  for (int64_t len : {1, 1000, 100003}) {
    std::vector<float> x(static_cast<size_t>(len)), want_sum(static_cast<size_t>(len)),
        want_max(static_cast<size_t>(len));
    for (int64_t i = 0; i < len; ++i) {
      x[i] = float((r + 1) * 100 + i % 97);
      want_sum[i] = float(100 * n * (n + 1) / 2 + n * (i % 97));
      want_max[i] = float(n * 100 + i % 97);
    }
    core::Tensor s = upload(arena, x), m = upload(arena, x);
    auto h1 = c.all_reduce(s, ReduceOp::sum);
    auto h2 = c.all_reduce(m, ReduceOp::max);
    h2->wait();
    h1->wait();
    INFO("length " << len);
    CHECK(sum_over_ranks(wrong(download<float>(s), want_sum) +
                         wrong(download<float>(m), want_max)) == 0);

    std::vector<int32_t> block(static_cast<size_t>(len)), gathered_want(size_t(len * n));
    for (int64_t i = 0; i < len; ++i) block[i] = int32_t(r * 1000 + i);
    for (int q = 0; q < n; ++q)
      for (int64_t i = 0; i < len; ++i) gathered_want[q * len + i] = int32_t(q * 1000 + i);
    core::Tensor g = arena.alloc(core::DType::i32, {len * n});
    c.all_gather(upload(arena, block), g)->wait();
    std::vector<float> rs_in(size_t(len * n)), rs_want(static_cast<size_t>(len));
    for (int64_t i = 0; i < len * n; ++i) rs_in[i] = float(r + i);
    for (int64_t j = 0; j < len; ++j) rs_want[j] = float(n * (n - 1) / 2 + n * (r * len + j));
    core::Tensor rs_out = arena.alloc(core::DType::f32, {len});
    c.reduce_scatter(upload(arena, rs_in), rs_out)->wait();
    CHECK(sum_over_ranks(wrong(download<int32_t>(g), gathered_want) +
                         wrong(download<float>(rs_out), rs_want)) == 0);
  }
}

TEST_CASE("nccl reduce_scatter_v and all_to_all_v with empty blocks", "[nccl]") {
  parallel::Communicator& c = nccl();
  const int n = c.size(), r = c.rank();
  core::BumpArena arena(0, &cuda().memory());
  std::vector<int64_t> counts(static_cast<size_t>(n));
  int64_t total = 0;
  for (int q = 0; q < n; ++q) total += counts[q] = q % 2 ? 0 : 3 + q;  // odd ranks own nothing
  std::vector<float> in(static_cast<size_t>(total)), want(static_cast<size_t>(counts[r]));
  for (int64_t i = 0; i < total; ++i) in[i] = float((r + 1) * (i + 1));
  int64_t mine = 0;
  for (int q = 0; q < r; ++q) mine += counts[q];
  for (int64_t j = 0; j < counts[r]; ++j) want[j] = float(n * (n + 1) / 2 * (mine + j + 1));
  core::Tensor out = arena.alloc(core::DType::f32, {counts[r]});
  c.reduce_scatter_v(upload(arena, in), out, counts)->wait();
  CHECK(sum_over_ranks(wrong(download<float>(out), want)) == 0);

  // Rank r sends (r + q) % 3 rows of 5 to rank q; row values name (sender, receiver, row).
  const int64_t D = 5;
  std::vector<int64_t> send(static_cast<size_t>(n)), recv(static_cast<size_t>(n));
  int64_t sr = 0, rr = 0;
  for (int q = 0; q < n; ++q) {
    sr += send[q] = (r + q) % 3;
    rr += recv[q] = (q + r) % 3;
  }
  std::vector<float> a2a_in(size_t(sr * D)), a2a_want(size_t(rr * D));
  for (int q = 0, row = 0; q < n; ++q)
    for (int64_t i = 0; i < send[q]; ++i, ++row)
      for (int64_t d = 0; d < D; ++d) a2a_in[row * D + d] = float(r * 10000 + q * 100 + i * 10 + d);
  for (int q = 0, row = 0; q < n; ++q)
    for (int64_t i = 0; i < recv[q]; ++i, ++row)
      for (int64_t d = 0; d < D; ++d)
        a2a_want[row * D + d] = float(q * 10000 + r * 100 + i * 10 + d);
  core::Tensor in_d = arena.alloc(core::DType::f32, {std::max<int64_t>(sr, 1), D});
  core::Tensor out_d = arena.alloc(core::DType::f32, {std::max<int64_t>(rr, 1), D});
  if (sr > 0) kernels::copy(core::Tensor::of(a2a_in.data(), {sr, D}), in_d.slice(0, sr));
  c.all_to_all_v(in_d, send, out_d, recv)->wait();
  std::vector<float> got = download<float>(out_d);
  got.resize(a2a_want.size());
  CHECK(sum_over_ranks(wrong(got, a2a_want)) == 0);
}

TEST_CASE("nccl send_recv ring, host tensors through MPI, split groups", "[nccl]") {
  parallel::Communicator& c = nccl();
  const int n = c.size(), r = c.rank();
  core::BumpArena arena(0, &cuda().memory());
  if (n > 1) {
    std::vector<float> mine(64, float(r)), want(64, float((r + n - 1) % n));
    core::Tensor s = upload(arena, mine), got = arena.alloc(core::DType::f32, {64});
    c.send_recv({{s, (r + 1) % n, 0}}, {{got, (r + n - 1) % n, 0}})->wait();
    CHECK(sum_over_ranks(wrong(download<float>(got), want)) == 0);
  }
  double host = r + 1;
  c.all_reduce(core::Tensor::of(&host, {1}), ReduceOp::sum)->wait();
  CHECK(host == n * (n + 1) / 2.0);
  auto half = c.split(r % 2, r, "half");
  std::vector<float> one(10, 1.0f);
  core::Tensor t = upload(arena, one);
  half->all_reduce(t, ReduceOp::sum)->wait();
  const float members = float((n - r % 2 + 1) / 2);
  CHECK(sum_over_ranks(wrong(download<float>(t), std::vector<float>(10, members))) == 0);
}
