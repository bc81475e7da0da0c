// Communicator: the collective and point-to-point operations the trainer uses, each returning a
// handle to wait on, so that communication can proceed while the caller computes.
//
// Implementations: SingleProcess (here; world of one, every operation completes at once), MPI
// with a progress thread and NCCL (later issues). The trainer always calls through this interface,
// so a single process is the degenerate case of the parallel path, not a second trainer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.hpp"

namespace parallel {

enum class ReduceOp { sum, max };

// A pending operation. wait() blocks until it completes (or fails the job after the
// communicator's timeout, naming the rank and the operation).
class Handle {
 public:
  virtual ~Handle() = default;
  virtual void wait() = 0;
  virtual bool done() = 0;
};
using HandlePtr = std::unique_ptr<Handle>;

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In place over buf, element-wise across ranks.
  virtual HandlePtr all_reduce(const core::Tensor& buf, ReduceOp op) = 0;
  // out [size * n] gathers every rank's in [n] in rank order.
  virtual HandlePtr all_gather(const core::Tensor& in, const core::Tensor& out) = 0;
  // out [n] = this rank's block of the element-wise sum of every rank's in [size * n].
  virtual HandlePtr reduce_scatter(const core::Tensor& in, const core::Tensor& out) = 0;
  // Variable all-to-all over rows: send_counts[r] rows of `in` go to rank r (in rank order);
  // recv_counts[r] rows arrive from rank r into `out`. Empty segments are fine.
  virtual HandlePtr all_to_all_v(const core::Tensor& in, const std::vector<int64_t>& send_counts,
                                 const core::Tensor& out, const std::vector<int64_t>& recv_counts) = 0;
  virtual void barrier() = 0;
  // Ends the whole job (every rank) with this message.
  [[noreturn]] virtual void abort(const std::string& message) = 0;
};

// The world of one process.
std::unique_ptr<Communicator> make_single_process_communicator();

}  // namespace parallel
