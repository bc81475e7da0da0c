// Main of the multi-rank NCCL tests (run under mpirun by CTest, after `test_gpu --check-gpus N`
// confirmed N GPUs, so this binary never runs where it must skip). Every rank starts MPI, its
// CUDA runtime on the GPU of its local rank and an NCCL communicator over the world; the process
// exits non-zero on every rank when any rank saw a failure.
#include <mpi.h>

#include "catch_session.hpp"
#include <memory>

#include "launch/environment.hpp"
#include "nccl_env.hpp"

namespace nccl_testing {
namespace {
parallel::MpiRuntime* g_mpi = nullptr;
parallel::Communicator* g_nccl = nullptr;
core::CudaRuntime* g_cuda = nullptr;
core::Context g_ctx;
}  // namespace
parallel::MpiRuntime& mpi() {
  return *g_mpi;
}
parallel::Communicator& nccl() {
  return *g_nccl;
}
core::CudaRuntime& cuda() {
  return *g_cuda;
}
core::Context& ctx() {
  return g_ctx;
}
}  // namespace nccl_testing

int main(int argc, char** argv) {
  int failed = 0;
  {
    parallel::MpiRuntime mpi(/*comm_timeout_s=*/120, 0, 0);
    const launch::LaunchEnv env = launch::read_launch_env();
    core::CudaOptions o;
    o.local_rank = env.local_rank;
    o.local_size = env.local_size;
    core::CudaRuntime cuda(o);
    cuda.attach(nccl_testing::g_ctx);
    std::unique_ptr<parallel::Communicator> nccl =
        parallel::make_nccl_communicator(mpi.world(), nccl_testing::g_ctx, 120);
    nccl_testing::g_mpi = &mpi;
    nccl_testing::g_cuda = &cuda;
    nccl_testing::g_nccl = nccl.get();
    const int rc = testing::run_catch(argc, argv);
    int mine = rc != 0, any = 0;
    MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    failed = any;
    nccl_testing::g_nccl = nullptr;
  }
  return failed ? 1 : 0;
}
