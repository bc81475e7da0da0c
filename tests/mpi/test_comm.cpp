// Every communication op over real MPI ranks with integer-valued, rank-seeded data (as
// nccl-tests does): the expected value of every element is known exactly, and the number of wrong
// elements, summed over the ranks, must be 0.
#include <catch2/catch.hpp>

#include <vector>

#include "mpi_env.hpp"
#include "parallel/grid.hpp"

using parallel::Communicator;
using parallel::ReduceOp;
using core::Tensor;

namespace {

Communicator& world() { return testing::mpi().world(); }

template <class T>
int64_t wrong(const std::vector<T>& got, const std::vector<T>& want) {
  int64_t bad = got.size() != want.size() ? 1 : 0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) bad += got[i] != want[i];
  return bad;
}

}  // namespace

TEMPLATE_TEST_CASE("all_reduce sums and maxes rank-seeded integers exactly", "[comm]", float, double,
                   int32_t) {
  Communicator& w = world();
  const int n = w.size(), r = w.rank();
  for (int64_t len : {1, 1000, 100003}) {
    std::vector<TestType> sum(len), mx(len), want_sum(len), want_max(len);
    for (int64_t i = 0; i < len; ++i) {
      sum[i] = mx[i] = static_cast<TestType>((r + 1) * 100 + i % 97);
      // sum over q of ((q+1)*100 + i%97) and the largest rank's value
      want_sum[i] = static_cast<TestType>(100 * n * (n + 1) / 2 + n * (i % 97));
      want_max[i] = static_cast<TestType>(n * 100 + i % 97);
    }
    auto h1 = w.all_reduce(Tensor::of(sum.data(), {len}), ReduceOp::sum);
    auto h2 = w.all_reduce(Tensor::of(mx.data(), {len}), ReduceOp::max);
    h2->wait();
    h1->wait();
    INFO("length " << len);
    CHECK(testing::sum_over(w, wrong(sum, want_sum) + wrong(mx, want_max)) == 0);
  }
}

TEST_CASE("all_gather and reduce_scatter place every rank's block", "[comm]") {
  Communicator& w = world();
  const int n = w.size(), r = w.rank();
  for (int64_t len : {0, 1, 777}) {
    std::vector<float> in(len), out(len * n), want(len * n);
    for (int64_t i = 0; i < len; ++i) in[i] = static_cast<float>(r * 1000 + i);
    for (int q = 0; q < n; ++q)
      for (int64_t i = 0; i < len; ++i) want[q * len + i] = static_cast<float>(q * 1000 + i);
    w.all_gather(Tensor::of(in.data(), {len}), Tensor::of(out.data(), {len * n}))->wait();
    std::vector<float> rs_in(len * n), rs_out(len), rs_want(len);
    for (int64_t i = 0; i < len * n; ++i) rs_in[i] = static_cast<float>(r + i);
    // block r: sum over q of (q + r*len + j)
    for (int64_t j = 0; j < len; ++j) rs_want[j] = static_cast<float>(n * (r * len + j) + n * (n - 1) / 2);
    w.reduce_scatter(Tensor::of(rs_in.data(), {len * n}), Tensor::of(rs_out.data(), {len}))->wait();
    INFO("length " << len);
    CHECK(testing::sum_over(w, wrong(out, want) + wrong(rs_out, rs_want)) == 0);
  }
}

namespace {
// Rows rank `src` sends to rank `dst` in the all-to-all test: some empty, and rank 0 sends none.
int64_t rows_between(int src, int dst) { return src == 0 ? 0 : (src + 2 * dst) % 3 * (dst + 1); }
float row_value(int src, int dst, int64_t row, int64_t col) {
  return static_cast<float>(src * 100000 + dst * 10000 + row * 10 + col);
}
}  // namespace

TEST_CASE("all_to_all_v moves variable row counts, empty segments and a rank that sends nothing", "[comm]") {
  Communicator& w = world();
  const int n = w.size(), r = w.rank();
  const int64_t D = 3;
  std::vector<int64_t> sc(n), rc(n);
  int64_t s_total = 0, r_total = 0;
  for (int q = 0; q < n; ++q) {
    sc[q] = rows_between(r, q);
    rc[q] = rows_between(q, r);
    s_total += sc[q];
    r_total += rc[q];
  }
  std::vector<float> in(s_total * D), out(r_total * D, -1.f), want;
  int64_t row = 0;
  for (int q = 0; q < n; ++q)
    for (int64_t i = 0; i < sc[q]; ++i, ++row)
      for (int64_t c = 0; c < D; ++c) in[row * D + c] = row_value(r, q, i, c);
  for (int q = 0; q < n; ++q)
    for (int64_t i = 0; i < rc[q]; ++i)
      for (int64_t c = 0; c < D; ++c) want.push_back(row_value(q, r, i, c));
  const parallel::CommStats before = w.stats();
  w.all_to_all_v(Tensor::of(in.data(), {s_total, D}), sc, Tensor::of(out.data(), {r_total, D}), rc)->wait();
  const parallel::CommStats after = w.stats();
  CHECK(testing::sum_over(w, wrong(out, want)) == 0);
  // The stats count what left for other ranks, and the exchange at the pace of its larger side.
  const int t = static_cast<int>(parallel::Traffic::other);
  const int64_t row_bytes = D * static_cast<int64_t>(sizeof(float));
  const int64_t out_bytes = (s_total - sc[r]) * row_bytes, in_bytes = (r_total - rc[r]) * row_bytes;
  CHECK(after.bytes_sent[t] - before.bytes_sent[t] == out_bytes);
  CHECK(after.exchange_bytes[t] - before.exchange_bytes[t] == std::max(out_bytes, in_bytes));
  // The communication thread ran the exchange: its CPU clock has moved.
  CHECK(after.progress_cpu_s > 0);
  CHECK(after.progress_cpu_s >= before.progress_cpu_s);
}

TEST_CASE("batched send/recv runs both directions of a ring at once, in order per tag", "[comm]") {
  Communicator& w = world();
  const int n = w.size(), r = w.rank();
  if (n < 2) return;
  const int next = (r + 1) % n, prev = (r + n - 1) % n;
  const int64_t len = 50000;
  // two messages per direction with the same tag: they must arrive in posting order
  std::vector<float> a(len), b(len), c(len), ra(len), rb(len), rc(len);
  for (int64_t i = 0; i < len; ++i) {
    a[i] = static_cast<float>(r * 10 + 1 + i % 7);
    b[i] = static_cast<float>(r * 10 + 2 + i % 7);
    c[i] = static_cast<float>(r * 10 + 3 + i % 7);
  }
  std::vector<parallel::Message> sends{{Tensor::of(a.data(), {len}), next, 1},
                                       {Tensor::of(b.data(), {len}), next, 1},
                                       {Tensor::of(c.data(), {len}), prev, 2}};
  std::vector<parallel::Message> recvs{{Tensor::of(ra.data(), {len}), prev, 1},
                                       {Tensor::of(rb.data(), {len}), prev, 1},
                                       {Tensor::of(rc.data(), {len}), next, 2}};
  if (n == 2) {  // prev == next: still distinct by tag
    CHECK(prev == next);
  }
  w.send_recv(sends, recvs)->wait();
  int64_t bad = 0;
  for (int64_t i = 0; i < len; ++i) {
    bad += ra[i] != static_cast<float>(prev * 10 + 1 + i % 7);
    bad += rb[i] != static_cast<float>(prev * 10 + 2 + i % 7);
    bad += rc[i] != static_cast<float>(next * 10 + 3 + i % 7);
  }
  CHECK(testing::sum_over(w, bad) == 0);
}

TEST_CASE("then() chains counts and rows without the caller, like expert dispatch", "[comm]") {
  Communicator& w = world();
  const int n = w.size(), r = w.rank();
  const int64_t D = 2;
  for (int round = 0; round < 3; ++round) {
    // phase 1: how many rows go to each rank; phase 2: the rows, sized from what arrived
    std::vector<int64_t> send_counts(n), recv_counts(n, -1);
    for (int q = 0; q < n; ++q) send_counts[q] = (r + q + round) % 4;
    int64_t total = 0;
    for (auto v : send_counts) total += v;
    std::vector<float> rows(total * D);
    int64_t k = 0;
    for (int q = 0; q < n; ++q)
      for (int64_t i = 0; i < send_counts[q]; ++i, ++k)
        for (int64_t c = 0; c < D; ++c) rows[k * D + c] = static_cast<float>(r * 1000 + q * 100 + i * 10 + c);
    std::vector<float> got;
    const int tag = w.reserve_tags(2);
    std::vector<int64_t> ones(n, 1);
    auto counts = w.all_to_all_v(Tensor::of(send_counts.data(), {n, 1}), ones,
                                 Tensor::of(recv_counts.data(), {n, 1}), ones,
                                 parallel::Traffic::other, tag);
    auto h = w.then(std::move(counts), [&]() {
      int64_t in = 0;
      for (auto v : recv_counts) in += v;
      got.assign(in * D, -1.f);
      return w.all_to_all_v(Tensor::of(rows.data(), {total, D}), send_counts,
                            Tensor::of(got.data(), {in, D}), recv_counts, parallel::Traffic::other,
                            tag + 1);
    });
    h->wait();
    std::vector<float> want;
    for (int q = 0; q < n; ++q)
      for (int64_t i = 0; i < (q + r + round) % 4; ++i)
        for (int64_t c = 0; c < D; ++c) want.push_back(static_cast<float>(q * 1000 + r * 100 + i * 10 + c));
    INFO("round " << round);
    CHECK(testing::sum_over(w, wrong(got, want)) == 0);
  }
}

TEST_CASE("grid groups hold exactly the ranks the layout says", "[comm][grid]") {
  Communicator& w = world();
  const int n = w.size();
  for (int pp = 1; pp <= n; ++pp) {
    if (n % pp) continue;
    const int dp = n / pp;
    for (int ep = 1; ep <= dp; ++ep) {
      if (dp % ep) continue;
      parallel::Grid g(w, pp, ep);
      const auto shape = g.shape();
      const auto me = g.coords();
      int64_t bad = 0;
      struct Group {
        Communicator* comm;
        std::function<bool(const parallel::Coords&)> same;
      };
      std::vector<Group> groups{
          {&g.pp(), [&](const parallel::Coords& c) { return c.dp_rank == me.dp_rank; }},
          {&g.dp(), [&](const parallel::Coords& c) { return c.pp_rank == me.pp_rank; }},
          {&g.ep(), [&](const parallel::Coords& c) { return c.pp_rank == me.pp_rank && c.dp_rank / ep == me.dp_rank / ep; }},
          {&g.edp(), [&](const parallel::Coords& c) { return c.pp_rank == me.pp_rank && c.ep_rank == me.ep_rank; }},
          {&g.mirror(), [&](const parallel::Coords& c) {
             return c.dp_rank == me.dp_rank &&
                    std::min(c.pp_rank, pp - 1 - c.pp_rank) == std::min(me.pp_rank, pp - 1 - me.pp_rank);
           }}};
      for (auto& grp : groups) {
        // the sum of 2^rank over the group identifies its members
        double mask = static_cast<double>(1 << w.rank());
        grp.comm->all_reduce(Tensor::of(&mask, {1}), ReduceOp::sum)->wait();
        double want = 0;
        for (int q = 0; q < n; ++q)
          if (grp.same(parallel::coords_of(shape, q))) want += static_cast<double>(1 << q);
        bad += mask != want;
      }
      INFO("pp " << pp << " ep " << ep);
      CHECK(testing::sum_over(w, bad) == 0);
    }
  }
}

TEST_CASE("reduce_scatter_v with uneven and empty blocks, and all_gather in place", "[comm]") {
  Communicator& w = world();
  const int n = w.size(), r = w.rank();
  // block q has 3q + 5 elements, rank 1's none: blocks differ in size and one is empty
  std::vector<int64_t> counts(n);
  int64_t total = 0;
  for (int q = 0; q < n; ++q) total += counts[q] = (q == 1 ? 0 : q * 3 + 5);
  std::vector<float> in(total), out(counts[r]), want(counts[r]);
  for (int64_t i = 0; i < total; ++i) in[i] = static_cast<float>(r * 7 + i);
  int64_t first = 0;
  for (int q = 0; q < r; ++q) first += counts[q];
  for (int64_t j = 0; j < counts[r]; ++j) want[j] = static_cast<float>(7 * n * (n - 1) / 2 + n * (first + j));
  w.reduce_scatter_v(core::Tensor::of(in.data(), {total}), core::Tensor::of(out.data(), {counts[r]}), counts)->wait();
  // in place: this rank's block already sits at its place in the output
  const int64_t len = 11;
  std::vector<float> all(len * n, -1.f), all_want(len * n);
  for (int64_t i = 0; i < len; ++i) all[r * len + i] = static_cast<float>(r * 100 + i);
  for (int q = 0; q < n; ++q)
    for (int64_t i = 0; i < len; ++i) all_want[q * len + i] = static_cast<float>(q * 100 + i);
  w.all_gather(core::Tensor::of(all.data() + r * len, {len}), core::Tensor::of(all.data(), {len * n}))->wait();
  CHECK(testing::sum_over(w, wrong(out, want) + wrong(all, all_want)) == 0);
}
