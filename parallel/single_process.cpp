// SingleProcess communicator: a world of one, where every collective is a local copy and every
// handle is complete when returned.
#include <cstring>
#include <utility>

#include "core/error.hpp"
#include "parallel/communicator.hpp"

namespace parallel {
namespace {

class DoneHandle : public Handle {
 public:
  void wait() override {}
  bool done() override { return true; }
};

void copy_bytes(const core::Tensor& in, const core::Tensor& out) {
  FLOT_CHECK(in.bytes() == out.bytes(), "{} {} -> {} {}", core::dtype_name(in.dtype),
             in.shape_str(), core::dtype_name(out.dtype), out.shape_str());
  if (in.data != out.data && in.bytes() > 0) std::memmove(out.data, in.data, in.bytes());
}

class SingleProcess : public Communicator {
 public:
  explicit SingleProcess(std::string name) : name_(std::move(name)) {}
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const std::string& name() const override { return name_; }
  HandlePtr all_reduce(const core::Tensor&, ReduceOp, Traffic) override { return done(); }
  HandlePtr all_gather(const core::Tensor& in, const core::Tensor& out, Traffic) override {
    copy_bytes(in, out);
    return done();
  }
  HandlePtr reduce_scatter(const core::Tensor& in, const core::Tensor& out, Traffic) override {
    copy_bytes(in, out);
    return done();
  }
  HandlePtr reduce_scatter_v(const core::Tensor& in, const core::Tensor& out,
                             const std::vector<int64_t>& counts, Traffic) override {
    FLOT_CHECK(counts.size() == 1 && counts[0] == out.numel() && in.numel() == out.numel(),
               "single-process reduce_scatter_v of {} into {}", in.shape_str(), out.shape_str());
    copy_bytes(in, out);
    return done();
  }
  HandlePtr all_to_all_v(const core::Tensor& in, const std::vector<int64_t>& send_counts,
                         const core::Tensor& out, const std::vector<int64_t>& recv_counts, Traffic,
                         int) override {
    check_all_to_all_v(*this, in, send_counts, out, recv_counts);
    FLOT_CHECK(send_counts[0] == recv_counts[0], "single-process all_to_all_v sends {} rows, receives {}",
               send_counts[0], recv_counts[0]);
    if (send_counts[0] > 0) copy_bytes(in.slice(0, send_counts[0]), out.slice(0, recv_counts[0]));
    return done();
  }
  HandlePtr send_recv(const std::vector<Message>& sends, const std::vector<Message>& recvs,
                      Traffic) override {
    FLOT_CHECK(sends.empty() && recvs.empty(), "point-to-point messages in a world of one ({} sends)",
               sends.size());
    return done();
  }
  HandlePtr then(HandlePtr first, std::function<HandlePtr()> next, Traffic) override {
    first->wait();
    return next();
  }
  int reserve_tags(int n) override {
    int t = next_tag_;
    next_tag_ += n;
    return t;
  }
  void barrier() override {}
  void abort(const std::string& message) override { core::fatal(message); }
  std::unique_ptr<Communicator> split(int, int, const std::string& name) override {
    return std::make_unique<SingleProcess>(name);
  }
  CommStats stats() const override { return {}; }

 private:
  static HandlePtr done() { return std::make_unique<DoneHandle>(); }
  std::string name_;
  int next_tag_ = 0;
};

}  // namespace

std::unique_ptr<Communicator> make_single_process_communicator(const std::string& name) {
  return std::make_unique<SingleProcess>(name);
}

}  // namespace parallel
