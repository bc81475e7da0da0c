// SingleProcess communicator: a world of one, where every collective is a local copy.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/error.hpp"
#include "parallel/communicator.hpp"

namespace parallel {
namespace {

class DoneHandle : public Handle {
 public:
  void wait() override {}
  bool done() override { return true; }
};

void copy_if_distinct(const core::Tensor& in, const core::Tensor& out) {
  FLOT_CHECK(in.bytes() == out.bytes() && in.dtype == out.dtype, "{} {} -> {} {}",
             core::dtype_name(in.dtype), in.shape_str(), core::dtype_name(out.dtype), out.shape_str());
  if (in.data != out.data && in.bytes() > 0) std::memmove(out.data, in.data, in.bytes());
}

class SingleProcess : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  HandlePtr all_reduce(const core::Tensor&, ReduceOp) override { return std::make_unique<DoneHandle>(); }
  HandlePtr all_gather(const core::Tensor& in, const core::Tensor& out) override {
    copy_if_distinct(in, out);
    return std::make_unique<DoneHandle>();
  }
  HandlePtr reduce_scatter(const core::Tensor& in, const core::Tensor& out) override {
    copy_if_distinct(in, out);
    return std::make_unique<DoneHandle>();
  }
  HandlePtr all_to_all_v(const core::Tensor& in, const std::vector<int64_t>& send_counts,
                         const core::Tensor& out, const std::vector<int64_t>& recv_counts) override {
    FLOT_CHECK(send_counts.size() == 1 && recv_counts.size() == 1 && send_counts[0] == recv_counts[0],
               "single-process all_to_all_v with {} / {} counts", send_counts.size(), recv_counts.size());
    FLOT_CHECK(in.rows() == send_counts[0] && out.rows() == recv_counts[0], "row counts {} {} vs {}",
               in.rows(), out.rows(), send_counts[0]);
    copy_if_distinct(in, out);
    return std::make_unique<DoneHandle>();
  }
  void barrier() override {}
  void abort(const std::string& message) override { core::fatal(message); }
};

}  // namespace

std::unique_ptr<Communicator> make_single_process_communicator() {
  return std::make_unique<SingleProcess>();
}

}  // namespace parallel
