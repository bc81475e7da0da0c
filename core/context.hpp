// Context: the runtime state that ops, layers and the trainer share, passed explicitly.
//
// Holds what would otherwise be globals: the thread count, the communicator (parallel/), and later
// CUDA streams and cuBLASLt handles. One per process; created by launch/ after the config is valid.
#pragma once

#include <cstdint>

namespace parallel {
class Communicator;
}

namespace core {

struct Context {
  int threads = 1;                          // OpenMP / Eigen threads of this rank
  parallel::Communicator* comm = nullptr;   // world communicator; single-process by default
  int rank = 0;
  int world_size = 1;
  int local_size = 1;                       // processes on this node (they share its memory)
};

// Applies ctx.threads to OpenMP and Eigen (0 = leave as is). Called once at start-up and by tests.
void apply_threads(const Context& ctx);

}  // namespace core
