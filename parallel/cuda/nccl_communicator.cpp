// The NCCL communicator (parallel/device_comm.hpp): collectives, variable all-to-all and batched
// point-to-point messages on the communication stream, bounded waits that abort instead of
// hanging; host tensors delegate to the host (MPI) communicator.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "core/cuda/cuda_check.hpp"
#include "core/cuda/cuda_state.hpp"
#include "parallel/cuda/nccl_check.hpp"
#include "parallel/device_comm.hpp"

namespace parallel {

namespace detail {

void nccl_failed(const char* call, ncclResult_t code, ncclComm_t comm, const char* where) {
  const char* last = comm ? ncclGetLastError(comm) : "";
  core::fatal(fmt::format("NCCL call {} failed: {} ({}) at {}", call, ncclGetErrorString(code),
                          last ? last : "", where));
}

}  // namespace detail

bool nccl_built() {
  return true;
}

namespace {

ncclDataType_t nccl_type(const core::Tensor& t) {
  switch (t.dtype) {
    case core::DType::f32:
      return ncclFloat32;
    case core::DType::f64:
      return ncclFloat64;
    case core::DType::i32:
      return ncclInt32;
    case core::DType::bf16:
      return ncclBfloat16;
    default:
      FLOT_THROW(core::InternalError, "no NCCL reduction for dtype {}", core::dtype_name(t.dtype));
  }
}

bool on_gpu(const core::Tensor& t) {
  return t.device == core::Device::cuda;
}

class NcclCommunicator;

// One enqueued operation: the event recorded on the communication stream after it.
class NcclHandle : public Handle {
 public:
  NcclHandle(NcclCommunicator& c, cudaEvent_t done, std::string what, Traffic t)
      : comm_(c), done_(done), what_(std::move(what)), traffic_(t) {}
  ~NcclHandle() override;
  void wait() override;
  bool done() override {
    if (waited_) return true;
    return cudaEventQuery(done_) == cudaSuccess;
  }

 private:
  NcclCommunicator& comm_;
  cudaEvent_t done_;
  std::string what_;
  Traffic traffic_;
  bool waited_ = false;
};

// then(): the second exchange is issued when the first has been waited for, on the waiting thread.
class ThenHandle : public Handle {
 public:
  ThenHandle(HandlePtr first, std::function<HandlePtr()> next)
      : first_(std::move(first)), next_(std::move(next)) {}
  void wait() override {
    if (!second_) {
      first_->wait();
      second_ = next_();
    }
    second_->wait();
  }
  bool done() override { return second_ && second_->done(); }

 private:
  HandlePtr first_, second_;
  std::function<HandlePtr()> next_;
};

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(Communicator& host, std::unique_ptr<Communicator> owned_host, ncclComm_t comm,
                   core::CudaState& cuda, double timeout_s, std::string name)
      : host_(host),
        owned_host_(std::move(owned_host)),
        comm_(comm),
        cuda_(cuda),
        timeout_s_(timeout_s),
        name_(std::move(name)) {}
  ~NcclCommunicator() override {
    // Destructors never throw: a failing destroy is ignored (the process is ending).
    if (comm_) ncclCommDestroy(comm_);
  }

  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  const std::string& name() const override { return name_; }

  HandlePtr all_reduce(const core::Tensor& buf, ReduceOp op, Traffic traffic) override {
    if (!on_gpu(buf)) return host_.all_reduce(buf, op, traffic);
    const ncclRedOp_t nop = op == ReduceOp::sum ? ncclSum : ncclMax;
    count(traffic, size() > 1 ? 2 * (size() - 1) * static_cast<int64_t>(buf.bytes()) / size() : 0);
    return run("all_reduce", buf.bytes(), traffic, [&] {
      FLOT_NCCL(ncclAllReduce(buf.data, buf.data, static_cast<size_t>(buf.numel()), nccl_type(buf),
                              nop, comm_, cuda_.comm),
                comm_);
    });
  }

  HandlePtr all_gather(const core::Tensor& in, const core::Tensor& out, Traffic traffic) override {
    if (!on_gpu(in) && !on_gpu(out)) return host_.all_gather(in, out, traffic);
    FLOT_CHECK(on_gpu(in) && on_gpu(out) && in.dtype == out.dtype &&
                   out.bytes() == in.bytes() * static_cast<size_t>(size()),
               "all_gather of {} {} into {} {} over {} ranks (both on the GPU)",
               core::dtype_name(in.dtype), in.shape_str(), core::dtype_name(out.dtype),
               out.shape_str(), size());
    count(traffic, static_cast<int64_t>(in.bytes()) * (size() - 1));
    return run("all_gather", out.bytes(), traffic, [&] {
      FLOT_NCCL(ncclAllGather(in.data, out.data, in.bytes(), ncclUint8, comm_, cuda_.comm), comm_);
    });
  }

  HandlePtr reduce_scatter(const core::Tensor& in, const core::Tensor& out,
                           Traffic traffic) override {
    if (!on_gpu(in) && !on_gpu(out)) return host_.reduce_scatter(in, out, traffic);
    FLOT_CHECK(
        on_gpu(in) && on_gpu(out) && in.dtype == out.dtype && in.numel() == out.numel() * size(),
        "reduce_scatter of {} {} into {} {} over {} ranks (both on the GPU)",
        core::dtype_name(in.dtype), in.shape_str(), core::dtype_name(out.dtype), out.shape_str(),
        size());
    count(traffic, static_cast<int64_t>(out.bytes()) * (size() - 1));
    return run("reduce_scatter", in.bytes(), traffic, [&] {
      FLOT_NCCL(ncclReduceScatter(in.data, out.data, static_cast<size_t>(out.numel()),
                                  nccl_type(in), ncclSum, comm_, cuda_.comm),
                comm_);
    });
  }

  HandlePtr reduce_scatter_v(const core::Tensor& in, const core::Tensor& out,
                             const std::vector<int64_t>& counts, Traffic traffic) override {
    if (!on_gpu(in) && !on_gpu(out)) return host_.reduce_scatter_v(in, out, counts, traffic);
    FLOT_CHECK(counts.size() == static_cast<size_t>(size()),
               "reduce_scatter_v with {} counts on {} ranks", counts.size(), size());
    int64_t total = 0;
    for (int64_t c : counts) total += c;
    FLOT_CHECK(on_gpu(in) && on_gpu(out) && in.dtype == out.dtype && in.numel() == total &&
                   out.numel() == counts[rank()],
               "reduce_scatter_v of {} {} into {} {} with {} elements here of {}",
               core::dtype_name(in.dtype), in.shape_str(), core::dtype_name(out.dtype),
               out.shape_str(), counts[rank()], total);
    const size_t es = core::dtype_size(in.dtype);
    count(traffic, (total - counts[rank()]) * static_cast<int64_t>(es));
    // One reduction to each block's owner, grouped into a single NCCL launch.
    return run("reduce_scatter_v", in.bytes(), traffic, [&] {
      FLOT_NCCL(ncclGroupStart(), comm_);
      int64_t off = 0;
      for (int r = 0; r < size(); ++r) {
        if (counts[r] > 0)
          FLOT_NCCL(ncclReduce(static_cast<const char*>(in.data) + off * es, out.data,
                               static_cast<size_t>(counts[r]), nccl_type(in), ncclSum, r, comm_,
                               cuda_.comm),
                    comm_);
        off += counts[r];
      }
      FLOT_NCCL(ncclGroupEnd(), comm_);
    });
  }

  HandlePtr all_to_all_v(const core::Tensor& in, const std::vector<int64_t>& send_counts,
                         const core::Tensor& out, const std::vector<int64_t>& recv_counts,
                         Traffic traffic, int tag) override {
    if (!on_gpu(in) && !on_gpu(out))
      return host_.all_to_all_v(in, send_counts, out, recv_counts, traffic, tag);
    check_all_to_all_v(*this, in, send_counts, out, recv_counts);
    FLOT_CHECK(on_gpu(in) && on_gpu(out), "all_to_all_v on {}: in and out on different devices",
               name_);
    const int64_t in_row = in.rows() > 0 ? static_cast<int64_t>(in.bytes()) / in.rows() : 0;
    const int64_t out_row = out.rows() > 0 ? static_cast<int64_t>(out.bytes()) / out.rows() : 0;
    const ExchangePlan plan =
        plan_all_to_all(rank(), send_counts, recv_counts, in_row > 0 ? in_row : out_row);
    int64_t total = 0, in_total = 0;
    for (const auto& m : plan.sends) total += m.bytes;
    for (const auto& m : plan.recvs) in_total += m.bytes;
    count(traffic, total);
    count_exchange(traffic, std::max(total, in_total));
    return run("all_to_all_v", static_cast<size_t>(total), traffic,
               [&] { post(plan, in.data, out.data); });
  }

  HandlePtr send_recv(const std::vector<Message>& sends, const std::vector<Message>& recvs,
                      Traffic traffic) override {
    bool gpu = false, cpu = false;
    for (const auto* list : {&sends, &recvs})
      for (const auto& m : *list) (on_gpu(m.buf) ? gpu : cpu) = true;
    FLOT_CHECK(!(gpu && cpu), "send_recv on {} mixes host and GPU buffers", name_);
    if (!gpu) return host_.send_recv(sends, recvs, traffic);
    int64_t total = 0;
    for (const auto& m : sends) {
      FLOT_CHECK(m.peer >= 0 && m.peer < size() && m.peer != rank(), "send to rank {} of {} on {}",
                 m.peer, size(), name_);
      total += static_cast<int64_t>(m.buf.bytes());
    }
    int64_t in_total = 0;
    for (const auto& m : recvs) {
      FLOT_CHECK(m.peer >= 0 && m.peer < size() && m.peer != rank(),
                 "receive from rank {} of {} on {}", m.peer, size(), name_);
      in_total += static_cast<int64_t>(m.buf.bytes());
    }
    count(traffic, total);
    count_exchange(traffic, std::max(total, in_total));
    return run("send_recv", static_cast<size_t>(total), traffic, [&] {
      FLOT_NCCL(ncclGroupStart(), comm_);
      for (const auto& m : recvs)
        FLOT_NCCL(ncclRecv(m.buf.data, m.buf.bytes(), ncclUint8, m.peer, comm_, cuda_.comm), comm_);
      for (const auto& m : sends)
        FLOT_NCCL(ncclSend(m.buf.data, m.buf.bytes(), ncclUint8, m.peer, comm_, cuda_.comm), comm_);
      FLOT_NCCL(ncclGroupEnd(), comm_);
    });
  }

  HandlePtr then(HandlePtr first, std::function<HandlePtr()> next, Traffic) override {
    return std::make_unique<ThenHandle>(std::move(first), std::move(next));
  }

  int reserve_tags(int n) override {
    FLOT_CHECK(n >= 1, "reserve {} tags", n);
    const int t = next_tag_;
    next_tag_ = (next_tag_ + n) % 30000;
    return t;
  }

  void barrier() override { host_.barrier(); }

  [[noreturn]] void abort(const std::string& message) override {
    ncclCommAbort(comm_);
    comm_ = nullptr;
    host_.abort(message);
    std::abort();  // not reached: the host communicator ends the job
  }

  std::unique_ptr<Communicator> split(int color, int key, const std::string& name) override {
    std::unique_ptr<Communicator> sub_host = host_.split(color, key, name);
    ncclComm_t sub = nullptr;
    FLOT_CUDA(cudaSetDevice(cuda_.device));
    FLOT_NCCL(ncclCommSplit(comm_, color, key, &sub, nullptr), comm_);
    Communicator& h = *sub_host;
    return std::make_unique<NcclCommunicator>(h, std::move(sub_host), sub, cuda_, timeout_s_, name);
  }

  CommStats stats() const override {
    CommStats s = host_.stats();
    for (int i = 0; i < 4; ++i) {
      s.bytes_sent[i] += bytes_[i].load();
      s.exchange_bytes[i] += exchange_bytes_[i].load();
      s.wait_s[i] += wait_us_[i].load() * 1e-6;
    }
    return s;
  }

  // Waits for one operation (NcclHandle::wait).
  void wait_for(cudaEvent_t done, const std::string& what, Traffic traffic) {
    const WaitOutcome w = poll_wait(
        [&](std::string* error) {
          const cudaError_t q = cudaEventQuery(done);
          if (q == cudaSuccess) return PollState::done;
          if (q != cudaErrorNotReady) {
            *error = fmt::format("CUDA error {} ({})", cudaGetErrorName(q), cudaGetErrorString(q));
            return PollState::failed;
          }
          ncclResult_t async = ncclSuccess;
          const ncclResult_t r = ncclCommGetAsyncError(comm_, &async);
          if (r != ncclSuccess || (async != ncclSuccess && async != ncclInProgress)) {
            const char* last = ncclGetLastError(comm_);
            *error =
                fmt::format("NCCL asynchronous error {} ({})",
                            ncclGetErrorString(r != ncclSuccess ? r : async), last ? last : "");
            return PollState::failed;
          }
          return PollState::pending;
        },
        timeout_s_, steady_seconds);
    wait_us_[static_cast<int>(traffic)] += static_cast<int64_t>(w.waited_s * 1e6);
    if (w.kind != WaitOutcome::done) {
      // Abort the communicator first: its kernels stop and peers blocked in it see the abort.
      ncclCommAbort(comm_);
      comm_ = nullptr;
      core::fatal(fmt::format(
          "rank {}: {} waiting for {}: {}. Aborted the NCCL communicator; ending the whole job.",
          rank(),
          w.kind == WaitOutcome::timed_out
              ? fmt::format("no progress for {:g} s (runtime.comm_timeout_s)", timeout_s_)
              : std::string("communication failed"),
          what,
          w.kind == WaitOutcome::timed_out ? "a peer rank stopped responding or died" : w.error));
    }
    // Later compute reads what arrived: the compute stream waits for the operation too.
    FLOT_CUDA(cudaStreamWaitEvent(cuda_.compute, done, 0));
  }

 private:
  // Orders the operation after the compute stream's work, issues it on the communication
  // stream, and returns a handle on the event recorded after it.
  template <class Issue>
  HandlePtr run(const char* kind, size_t bytes, Traffic traffic, Issue&& issue) {
    FLOT_CHECK(comm_ != nullptr, "{} on {} after the NCCL communicator was aborted", kind, name_);
    cudaEvent_t ready = nullptr, done = nullptr;
    FLOT_CUDA(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    FLOT_CUDA(cudaEventRecord(ready, cuda_.compute));
    FLOT_CUDA(cudaStreamWaitEvent(cuda_.comm, ready, 0));
    FLOT_CUDA(cudaEventDestroy(ready));  // released once the wait above has been satisfied
    issue();
    FLOT_CUDA(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    FLOT_CUDA(cudaEventRecord(done, cuda_.comm));
    return std::make_unique<NcclHandle>(
        *this, done,
        fmt::format("NCCL {} of {} bytes on {} ({} ranks, rank {} of it)", kind, bytes, name_,
                    size(), rank()),
        traffic);
  }

  // Sends and receives of a plan in one group, this rank's own segment copied on the stream.
  void post(const ExchangePlan& plan, const void* in, void* out) {
    const char* src = static_cast<const char*>(in);
    char* dst = static_cast<char*>(out);
    if (plan.self_bytes > 0)
      FLOT_CUDA(cudaMemcpyAsync(dst + plan.self_dst, src + plan.self_src,
                                static_cast<size_t>(plan.self_bytes), cudaMemcpyDeviceToDevice,
                                cuda_.comm));
    FLOT_NCCL(ncclGroupStart(), comm_);
    for (const auto& m : plan.recvs)
      FLOT_NCCL(ncclRecv(dst + m.offset, static_cast<size_t>(m.bytes), ncclUint8, m.peer, comm_,
                         cuda_.comm),
                comm_);
    for (const auto& m : plan.sends)
      FLOT_NCCL(ncclSend(src + m.offset, static_cast<size_t>(m.bytes), ncclUint8, m.peer, comm_,
                         cuda_.comm),
                comm_);
    FLOT_NCCL(ncclGroupEnd(), comm_);
  }

  void count(Traffic t, int64_t bytes) { bytes_[static_cast<int>(t)] += bytes; }
  void count_exchange(Traffic t, int64_t bytes) { exchange_bytes_[static_cast<int>(t)] += bytes; }

  Communicator& host_;
  std::unique_ptr<Communicator> owned_host_;
  ncclComm_t comm_;
  core::CudaState& cuda_;
  double timeout_s_;
  std::string name_;
  int next_tag_ = 0;
  std::atomic<int64_t> bytes_[4] = {{0}, {0}, {0}, {0}};
  std::atomic<int64_t> exchange_bytes_[4] = {{0}, {0}, {0}, {0}};
  std::atomic<int64_t> wait_us_[4] = {{0}, {0}, {0}, {0}};
};

NcclHandle::~NcclHandle() {
  if (!waited_ && cudaEventQuery(done_) != cudaSuccess)
    core::fatal("an NCCL communication handle was dropped before completion: " + what_);
  cudaEventDestroy(done_);
}

void NcclHandle::wait() {
  if (waited_) return;
  comm_.wait_for(done_, what_, traffic_);
  waited_ = true;
}

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(Communicator& host, core::Context& ctx,
                                                     double timeout_s) {
  core::CudaState& cuda = core::cuda_state(ctx);
  // Rank 0's unique id reaches every rank through the host communicator (all_gather of 128 bytes).
  static_assert(sizeof(ncclUniqueId) % sizeof(int32_t) == 0, "ncclUniqueId size");
  constexpr int64_t kWords = sizeof(ncclUniqueId) / sizeof(int32_t);
  ncclUniqueId id{};
  if (host.rank() == 0) FLOT_NCCL(ncclGetUniqueId(&id), nullptr);
  std::vector<int32_t> mine(kWords), all(kWords * host.size());
  std::memcpy(mine.data(), &id, sizeof(id));
  host.all_gather(core::Tensor::of(mine.data(), {kWords}),
                  core::Tensor::of(all.data(), {kWords * host.size()}))
      ->wait();
  std::memcpy(&id, all.data(), sizeof(id));
  FLOT_CUDA(cudaSetDevice(cuda.device));
  ncclComm_t comm = nullptr;
  FLOT_NCCL(ncclCommInitRank(&comm, host.size(), id, host.rank()), nullptr);
  return std::make_unique<NcclCommunicator>(host, nullptr, comm, cuda, timeout_s,
                                            host.name() + "/nccl");
}

}  // namespace parallel
