// The NCCL communicator in a build without the CUDA backend: not available.
#include "core/error.hpp"
#include "parallel/device_comm.hpp"

namespace parallel {

bool nccl_built() {
  return false;
}

std::unique_ptr<Communicator> make_nccl_communicator(Communicator&, core::Context&, double) {
  FLOT_THROW(core::ConfigError,
             "the NCCL communicator needs the CUDA backend, which this binary was built without");
}

}  // namespace parallel
