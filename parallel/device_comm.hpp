// The host-side logic of the NCCL communicator (parallel/cuda/nccl_communicator.cpp), kept free
// of CUDA and NCCL headers so that it is tested on the CPU (tests/parallel/test_device_comm.cpp):
// the bounded wait that polls an operation and its communicator's asynchronous error, and the
// per-peer byte ranges of a variable all-to-all.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/context.hpp"
#include "parallel/communicator.hpp"

namespace parallel {

// ---- bounded wait ------------------------------------------------------------------------------
enum class PollState { pending, done, failed };

struct WaitOutcome {
  enum Kind { done, failed, timed_out } kind = done;
  double waited_s = 0;
  std::string error;  // the poll's message when failed
};

// Calls poll until it reports done or failed, or until timeout_s have passed on `clock` (seconds);
// sleeps between polls, from 1 us growing to 100 us, so a wait does not take a core from the
// ranks' compute. `poll` fills *error when it fails.
WaitOutcome poll_wait(const std::function<PollState(std::string* error)>& poll, double timeout_s,
                      const std::function<double()>& clock);
// The steady clock in seconds (the default clock of the waits).
double steady_seconds();

// ---- variable all-to-all -----------------------------------------------------------------------
// The messages of all_to_all_v on one rank: byte ranges of `in` to send to each peer and of `out`
// to receive from each, in rank order; empty messages are left out (both sides know every count)
// and this rank's own segment is a local copy.
struct PeerMessage {
  int peer = 0;
  int64_t offset = 0, bytes = 0;
};
struct ExchangePlan {
  std::vector<PeerMessage> sends, recvs;
  int64_t self_src = 0, self_dst = 0, self_bytes = 0;
};
ExchangePlan plan_all_to_all(int rank, const std::vector<int64_t>& send_counts,
                             const std::vector<int64_t>& recv_counts, int64_t row_bytes);

// ---- the NCCL communicator -----------------------------------------------------------------
// True when this binary has the NCCL communicator (built with the CUDA backend).
bool nccl_built();
// An NCCL communicator over the ranks of `host` (collective over it): rank 0's unique id travels
// by host.all_gather. Tensors on the GPU move through NCCL on the CUDA state's communication
// stream, ordered after the compute stream's work by events; tensors on the host go through
// `host`, so small host-side reductions keep working. Every wait polls the operation's event and
// ncclCommGetAsyncError with timeout_s, and on an error or the timeout aborts the NCCL
// communicator and then the whole job (core::fatal) naming the rank and the operation.
// ctx must have a CUDA runtime attached. `host` must outlive the returned communicator.
// NCCL matches the messages of a pair of ranks in issue order: tags are not used, so both sides
// must issue their exchanges in the same order (the schedules do). then() issues its second
// exchange inside wait() (done() stays false until then), on the waiting thread.
std::unique_ptr<Communicator> make_nccl_communicator(Communicator& host, core::Context& ctx,
                                                     double timeout_s);

}  // namespace parallel
