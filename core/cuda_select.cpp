// select_device: the rank -> GPU rule, host-only so it is tested without a GPU.
#include "core/cuda_runtime.hpp"
#include "core/error.hpp"

namespace core {

int select_device(int local_rank, int local_size, int device_count) {
  if (device_count < 1)
    FLOT_THROW(ConfigError,
               "runtime.device = cuda but no CUDA device is visible to this process; check "
               "nvidia-smi and CUDA_VISIBLE_DEVICES, or use runtime.device=cpu");
  if (local_rank < 0 || local_size < 1 || local_rank >= local_size)
    FLOT_THROW(ConfigError, "local rank {} of {} processes on this node is not a valid placement",
               local_rank, local_size);
  if (local_size > device_count)
    FLOT_THROW(ConfigError,
               "{} processes on this node but only {} CUDA devices: Flotilla runs one GPU per "
               "rank (NCCL cannot put two ranks of a communicator on one GPU); launch at most {} "
               "processes per node",
               local_size, device_count, device_count);
  return local_rank;
}

}  // namespace core
