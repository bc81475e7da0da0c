// The NCCL communicator with one rank, bootstrapped over the single-process communicator (no MPI
// needed, so it runs on any machine with one GPU): every operation on device buffers, the
// rank's own all-to-all segment copied on the communication stream, host tensors delegated, and
// the compute stream ordered after each wait. The multi-rank cases are tests/gpu_mpi/.
#include "gpu_testing.hpp"
#include "parallel/device_comm.hpp"

using namespace gpu_testing;
using parallel::ReduceOp;

TEST_CASE("nccl with one rank: every operation on GPU buffers", "[gpu][nccl1]") {
  auto host = parallel::make_single_process_communicator();
  auto c = parallel::make_nccl_communicator(*host, ctx(), 60);
  CHECK(c->size() == 1);
  Device dev;
  std::vector<float> x = random(1000, 80);
  Tensor t = dev.upload(x, {1000});
  c->all_reduce(t, ReduceOp::sum)->wait();
  c->all_reduce(t, ReduceOp::max)->wait();
  CHECK(download<float>(t) == x);
  Tensor g = dev.alloc(DType::f32, {1000});
  c->all_gather(t, g)->wait();
  CHECK(download<float>(g) == x);
  Tensor rs = dev.alloc(DType::f32, {1000});
  c->reduce_scatter(t, rs)->wait();
  CHECK(download<float>(rs) == x);
  Tensor rsv = dev.alloc(DType::f32, {1000});
  c->reduce_scatter_v(t, rsv, {1000})->wait();
  CHECK(download<float>(rsv) == x);
  // all_to_all_v with one rank: the local segment only (10 rows of 100).
  Tensor a2a = dev.alloc(DType::f32, {10, 100});
  c->all_to_all_v(t.reshape({10, 100}), {10}, a2a, {10})->wait();
  CHECK(download<float>(a2a) == x);
  // Chained exchange: the second runs once the first was waited for.
  Tensor chained = dev.alloc(DType::f32, {10, 100});
  auto h = c->then(c->all_reduce(t, ReduceOp::sum), [&] {
    return c->all_to_all_v(t.reshape({10, 100}), {10}, chained, {10});
  });
  h->wait();
  CHECK(h->done());
  CHECK(download<float>(chained) == x);
  double v = 3;
  c->all_reduce(Tensor::of(&v, {1}), ReduceOp::sum)->wait();  // host: single-process
  CHECK(v == 3);
  CHECK(c->stats().bytes_sent[0] == 0);  // one rank sends nothing
}
