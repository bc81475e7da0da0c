// Catch2 main for the tests that run under mpirun: every rank runs the same test cases (they are
// collective), and the process exits non-zero on every rank when any rank saw a failure, so
// mpirun and CTest report it whichever rank failed. A test that leaves a peer waiting hits the
// communicator's timeout and ends the job instead of hanging CTest.
#include "catch_session.hpp"
#include <mpi.h>

#include <cstdlib>

#include "mpi_env.hpp"

namespace testing {
namespace {
parallel::MpiRuntime* g_runtime = nullptr;
}
parallel::MpiRuntime& mpi() { return *g_runtime; }
}  // namespace testing

int main(int argc, char** argv) {
  int failed = 0;
  {
    parallel::MpiRuntime runtime(/*comm_timeout_s=*/120, 0, 0);
    testing::g_runtime = &runtime;
    const int rc = testing::run_catch(argc, argv);
    int mine = rc != 0, any = 0;
    MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    failed = any;
    testing::g_runtime = nullptr;
  }
  return failed ? 1 : 0;
}
