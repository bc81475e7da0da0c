// The few collective steps a checkpoint needs beyond the trainer's: every rank learning whether
// any rank failed (and the lowest failing rank's message), so that all ranks take the same path
// and none is left waiting in a collective; and gathering small per-rank records.
#pragma once

#include <cstdint>
#include <exception>
#include <string>
#include <vector>

namespace parallel {
class Communicator;
}

namespace core::checkpoint {

struct Agreement {
  bool failed = false;
  int rank = -1;        // the lowest rank that failed
  int kind = 0;         // its error kind (the caller's code)
  std::string message;  // its message (every rank receives it)
};
// Collective over `world` (null or one rank: immediate). `my_error` empty = this rank is fine.
Agreement agree(parallel::Communicator* world, const std::string& my_error, int kind = 1);

// Collective: when any rank holds an exception, every rank throws the lowest failing rank's,
// with its type (ConfigError, DataError, or core::Error for anything else) and message, so that
// all ranks exit alike and rank 0 can report it. Returns when no rank failed.
void rethrow_agreed(parallel::Communicator* world, std::exception_ptr mine);

// Every rank's `mine` (the same length everywhere), in rank order. Collective.
std::vector<double> gather_all(parallel::Communicator* world, const std::vector<double>& mine);

// The value of rank 0 on every rank. Collective.
double from_rank0(parallel::Communicator* world, double v);

}  // namespace core::checkpoint
