// MPI communicator: collectives as MPI nonblocking collectives, all-to-all and pipeline messages
// as tagged point-to-point messages, all posted and tested by the Engine's thread.
#include "parallel/mpi_communicator.hpp"

#include <fmt/format.h>

#include <climits>
#include <cstdio>
#include <cstring>

#include "parallel/mpi_check.hpp"
#include "parallel/mpi_engine.hpp"

namespace parallel {
namespace detail {

void mpi_failed(const char* call, int code, const char* where) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) len = 0;
  core::fatal(fmt::format("{} failed: {} at {}", call, std::string(text, len), where));
}

}  // namespace detail

namespace {

using mpi::Engine;
using mpi::RequestOp;

// Tags below this are for explicitly tagged messages (the pipeline's); reserved tags cycle above.
constexpr int kFirstReservedTag = 1000;
constexpr int kReservedTagSpan = 30000;  // MPI guarantees tags up to 32767

int world_rank_for_fatal = -1;

[[noreturn]] void abort_job(const std::string& message) {
  std::fprintf(stderr, "flotilla: fatal (rank %d): %s\n", world_rank_for_fatal, message.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::abort();
}

std::string human_bytes(int64_t b) {
  if (b >= (1 << 20)) return fmt::format("{:.1f} MiB", b / 1048576.0);
  if (b >= 1024) return fmt::format("{:.1f} KiB", b / 1024.0);
  return fmt::format("{} B", b);
}

MPI_Datatype reduce_type(const core::Tensor& t) {
  switch (t.dtype) {
    case core::DType::f32: return MPI_FLOAT;
    case core::DType::f64: return MPI_DOUBLE;
    case core::DType::i32: return MPI_INT32_T;
    default:
      FLOT_THROW(core::InternalError, "no MPI reduction for dtype {}", core::dtype_name(t.dtype));
  }
}

int int_count(int64_t n, const char* what) {
  FLOT_CHECK(n >= 0 && n <= INT_MAX, "{}: {} elements exceed one MPI message", what, n);
  return static_cast<int>(n);
}

// One message on the wire: a byte range and its peer and tag.
struct Wire {
  void* data;
  int64_t bytes;
  int peer, tag;
};

class ThenOp : public mpi::Op {
 public:
  ThenOp(HandlePtr first, std::function<HandlePtr()> next)
      : first_(std::move(first)), next_(std::move(next)) {}
  bool progress(double, double*, bool*, bool*) override {
    if (!second_) {
      if (!first_->done()) return false;
      second_ = next_();
    }
    return second_->done();
  }

 private:
  HandlePtr first_, second_;
  std::function<HandlePtr()> next_;
};

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator(std::shared_ptr<Engine> engine, MPI_Comm comm, std::string name)
      : engine_(std::move(engine)), comm_(comm), name_(std::move(name)) {
    FLOT_MPI(MPI_Comm_rank(comm_, &rank_));
    FLOT_MPI(MPI_Comm_size(comm_, &size_));
    FLOT_MPI(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  }
  ~MpiCommunicator() override {
    if (comm_ != MPI_COMM_WORLD && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }

  HandlePtr all_reduce(const core::Tensor& buf, ReduceOp op, Traffic traffic) override {
    const int n = int_count(buf.numel(), "all_reduce");
    MPI_Datatype t = reduce_type(buf);
    MPI_Op mop = op == ReduceOp::sum ? MPI_SUM : MPI_MAX;
    // A ring all-reduce sends 2 (n-1)/n of the buffer in 2 (n-1) dependent steps.
    const int64_t bytes = size_ > 1 ? 2 * (size_ - 1) * static_cast<int64_t>(buf.bytes()) / size_ : 0;
    auto rop = make_op("all_reduce", buf.bytes(), traffic);
    void* data = buf.data;
    MPI_Comm comm = comm_;
    rop->add(send_time(bytes, 2 * (size_ - 1) - 1, traffic), [=](std::vector<MPI_Request>& reqs) {
      reqs.emplace_back();
      FLOT_MPI(MPI_Iallreduce(MPI_IN_PLACE, data, n, t, mop, comm, &reqs.back()));
    });
    return engine_->submit(std::move(rop));
  }

  HandlePtr all_gather(const core::Tensor& in, const core::Tensor& out, Traffic traffic) override {
    FLOT_CHECK(in.dtype == out.dtype && out.bytes() == in.bytes() * static_cast<size_t>(size_),
               "all_gather of {} {} into {} {} over {} ranks", core::dtype_name(in.dtype),
               in.shape_str(), core::dtype_name(out.dtype), out.shape_str(), size_);
    const int n = int_count(static_cast<int64_t>(in.bytes()), "all_gather");
    const int64_t bytes = static_cast<int64_t>(in.bytes()) * (size_ - 1);
    auto rop = make_op("all_gather", out.bytes(), traffic);
    void *src = in.data, *dst = out.data;
    // in place when `in` already is this rank's block of `out`
    const bool in_place = src == static_cast<char*>(dst) + static_cast<int64_t>(rank_) * n;
    MPI_Comm comm = comm_;
    rop->add(send_time(bytes, size_ - 2, traffic), [=](std::vector<MPI_Request>& reqs) {
      reqs.emplace_back();
      FLOT_MPI(MPI_Iallgather(in_place ? MPI_IN_PLACE : src, n, MPI_BYTE, dst, n, MPI_BYTE, comm,
                              &reqs.back()));
    });
    return engine_->submit(std::move(rop));
  }

  HandlePtr reduce_scatter(const core::Tensor& in, const core::Tensor& out, Traffic traffic) override {
    FLOT_CHECK(in.dtype == out.dtype && in.numel() == out.numel() * size_,
               "reduce_scatter of {} {} into {} {} over {} ranks", core::dtype_name(in.dtype),
               in.shape_str(), core::dtype_name(out.dtype), out.shape_str(), size_);
    const int n = int_count(out.numel(), "reduce_scatter");
    MPI_Datatype t = reduce_type(in);
    const int64_t bytes = static_cast<int64_t>(out.bytes()) * (size_ - 1);
    auto rop = make_op("reduce_scatter", in.bytes(), traffic);
    void *src = in.data, *dst = out.data;
    MPI_Comm comm = comm_;
    rop->add(send_time(bytes, size_ - 2, traffic), [=](std::vector<MPI_Request>& reqs) {
      reqs.emplace_back();
      FLOT_MPI(MPI_Ireduce_scatter_block(src, dst, n, t, MPI_SUM, comm, &reqs.back()));
    });
    return engine_->submit(std::move(rop));
  }

  HandlePtr reduce_scatter_v(const core::Tensor& in, const core::Tensor& out,
                             const std::vector<int64_t>& counts, Traffic traffic) override {
    FLOT_CHECK(counts.size() == static_cast<size_t>(size_), "reduce_scatter_v with {} counts on {} ranks",
               counts.size(), size_);
    std::vector<int> c(size_);
    int64_t total = 0;
    for (int r = 0; r < size_; ++r) {
      c[r] = int_count(counts[r], "reduce_scatter_v");
      total += counts[r];
    }
    FLOT_CHECK(in.dtype == out.dtype && in.numel() == total && out.numel() == counts[rank_],
               "reduce_scatter_v of {} {} into {} {} with {} elements here of {}",
               core::dtype_name(in.dtype), in.shape_str(), core::dtype_name(out.dtype),
               out.shape_str(), counts[rank_], total);
    MPI_Datatype t = reduce_type(in);
    const int64_t bytes = (total - counts[rank_]) * static_cast<int64_t>(core::dtype_size(in.dtype));
    auto rop = make_op("reduce_scatter_v", in.bytes(), traffic);
    void *src = in.data, *dst = out.data;
    MPI_Comm comm = comm_;
    rop->add(send_time(bytes, size_ - 2, traffic), [=](std::vector<MPI_Request>& reqs) {
      reqs.emplace_back();
      FLOT_MPI(MPI_Ireduce_scatter(src, dst, c.data(), t, MPI_SUM, comm, &reqs.back()));
    });
    return engine_->submit(std::move(rop));
  }

  HandlePtr all_to_all_v(const core::Tensor& in, const std::vector<int64_t>& send_counts,
                         const core::Tensor& out, const std::vector<int64_t>& recv_counts,
                         Traffic traffic, int tag) override {
    check_all_to_all_v(*this, in, send_counts, out, recv_counts);
    if (tag < 0) tag = reserve_tags(1);
    const int64_t in_row = in.rows() > 0 ? static_cast<int64_t>(in.bytes()) / in.rows() : 0;
    const int64_t out_row = out.rows() > 0 ? static_cast<int64_t>(out.bytes()) / out.rows() : 0;
    const int64_t row = in_row > 0 ? in_row : out_row;
    std::vector<Wire> sends, recvs;
    int64_t so = 0, ro = 0;
    char* src = static_cast<char*>(in.data);
    char* dst = static_cast<char*>(out.data);
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) {
        // The local segment never touches the network.
        if (send_counts[r] > 0) std::memcpy(dst + ro * row, src + so * row, send_counts[r] * row);
      } else {
        // Both sides know every count, so both skip the empty messages.
        if (send_counts[r] > 0) sends.push_back({src + so * row, send_counts[r] * row, r, tag});
        if (recv_counts[r] > 0) recvs.push_back({dst + ro * row, recv_counts[r] * row, r, tag});
      }
      so += send_counts[r];
      ro += recv_counts[r];
    }
    return post_messages("all_to_all_v", sends, recvs, traffic);
  }

  HandlePtr send_recv(const std::vector<Message>& sends, const std::vector<Message>& recvs,
                      Traffic traffic) override {
    for (const auto& m : sends)
      FLOT_CHECK(m.peer >= 0 && m.peer < size_ && m.peer != rank_, "send to rank {} of {} on {}",
                 m.peer, size_, name_);
    for (const auto& m : recvs)
      FLOT_CHECK(m.peer >= 0 && m.peer < size_ && m.peer != rank_, "receive from rank {} of {} on {}",
                 m.peer, size_, name_);
    std::vector<Wire> ws, wr;
    for (const auto& m : sends) ws.push_back({m.buf.data, static_cast<int64_t>(m.buf.bytes()), m.peer, m.tag});
    for (const auto& m : recvs) wr.push_back({m.buf.data, static_cast<int64_t>(m.buf.bytes()), m.peer, m.tag});
    return post_messages("send_recv", ws, wr, traffic);
  }

  HandlePtr then(HandlePtr first, std::function<HandlePtr()> next, Traffic traffic) override {
    auto op = std::make_shared<ThenOp>(std::move(first), std::move(next));
    op->traffic = traffic;
    op->what = fmt::format("a chained exchange on {} ({} ranks)", name_, size_);
    op->label = fmt::format("chained exchange on {}", name_);
    return engine_->submit(std::move(op));
  }

  int reserve_tags(int n) override {
    FLOT_CHECK(n >= 1 && n < kReservedTagSpan, "reserve {} tags", n);
    if (next_tag_ + n > kReservedTagSpan) next_tag_ = 0;
    int t = kFirstReservedTag + next_tag_;
    next_tag_ += n;
    return t;
  }

  void barrier() override {
    auto rop = make_op("barrier", 0, Traffic::other);
    MPI_Comm comm = comm_;
    rop->add(mpi::now_s(), [=](std::vector<MPI_Request>& reqs) {
      reqs.emplace_back();
      FLOT_MPI(MPI_Ibarrier(comm, &reqs.back()));
    });
    engine_->submit(std::move(rop))->wait();
  }

  void abort(const std::string& message) override { abort_job(message); }

  std::unique_ptr<Communicator> split(int color, int key, const std::string& name) override {
    MPI_Comm sub = MPI_COMM_NULL;
    FLOT_MPI(MPI_Comm_split(comm_, color, key, &sub));
    return std::make_unique<MpiCommunicator>(engine_, sub, name);
  }

  CommStats stats() const override { return engine_->stats(); }
  void set_recording(bool on) override { engine_->set_recording(on); }
  void set_link_suspended(bool suspended) override { engine_->set_link_suspended(suspended); }
  void set_link_bandwidth(double bandwidth_gbps) override {
    engine_->set_link_bandwidth(bandwidth_gbps);
  }
  std::vector<CommRecord> take_records() override { return engine_->take_records(); }

 private:
  std::shared_ptr<RequestOp> make_op(const char* kind, size_t bytes, Traffic traffic) {
    auto op = std::make_shared<RequestOp>();
    op->what = fmt::format("{} of {} on {} ({} ranks, rank {} of it)", kind,
                           human_bytes(static_cast<int64_t>(bytes)), name_, size_, rank_);
    op->label = fmt::format("{} on {}, {}", kind, name_, human_bytes(static_cast<int64_t>(bytes)));
    op->traffic = traffic;
    return op;
  }

  // When a message (or a collective's share) of `bytes` leaving now may be posted: at once on a
  // real network, at its emulated arrival time on an emulated one.
  double send_time(int64_t bytes, int extra_latency_steps, Traffic traffic) {
    engine_->count_bytes(traffic, bytes);
    if (bytes == 0 && extra_latency_steps < 0) return mpi::now_s();
    return engine_->arrival(bytes, std::max(0, extra_latency_steps), traffic);
  }

  // Receives are posted at once; each send at its own emulated arrival time, in order, so
  // messages leaving this rank share its link.
  HandlePtr post_messages(const char* kind, const std::vector<Wire>& sends,
                          const std::vector<Wire>& recvs, Traffic traffic) {
    int64_t out = 0, in = 0;
    for (const auto& m : sends) out += m.bytes;
    for (const auto& m : recvs) in += m.bytes;
    auto rop = make_op(kind, static_cast<size_t>(out + in), traffic);
    // Each direction on its own: an exchange lasts as long as its larger side needs on the link,
    // and the two differ when the routing sends one rank's experts more rows.
    rop->label = fmt::format("{} on {}, {} out, {} in", kind, name_, human_bytes(out), human_bytes(in));
    engine_->count_exchange(traffic, std::max(out, in));
    MPI_Comm comm = comm_;
    const double now = mpi::now_s();
    for (const auto& m : recvs) {
      const int n = int_count(m.bytes, kind);
      rop->add(now, [=](std::vector<MPI_Request>& reqs) {
        reqs.emplace_back();
        FLOT_MPI(MPI_Irecv(m.data, n, MPI_BYTE, m.peer, m.tag, comm, &reqs.back()));
      });
    }
    for (const auto& m : sends) {
      const int n = int_count(m.bytes, kind);
      rop->add(send_time(m.bytes, 0, traffic), [=](std::vector<MPI_Request>& reqs) {
        reqs.emplace_back();
        FLOT_MPI(MPI_Isend(m.data, n, MPI_BYTE, m.peer, m.tag, comm, &reqs.back()));
      });
    }
    return engine_->submit(std::move(rop));
  }

  std::shared_ptr<Engine> engine_;
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
  std::string name_;
  int next_tag_ = 0;
};

}  // namespace

bool mpi_active() {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  return init && !fin;
}

struct MpiRuntime::Impl {
  std::shared_ptr<Engine> engine;
  std::unique_ptr<MpiCommunicator> world;
  int rank = 0, size = 1;
  double timeout_s = 0;
  CommThreadClass comm_thread = CommThreadClass::normal;
};

MpiRuntime::MpiRuntime(double comm_timeout_s, double bandwidth_gbps, double latency_us,
                       unsigned link_traffic, CommThreadClass comm_thread)
    : impl_(std::make_unique<Impl>()) {
  int provided = 0;
  FLOT_MPI(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided));
  FLOT_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &impl_->rank));
  FLOT_MPI(MPI_Comm_size(MPI_COMM_WORLD, &impl_->size));
  world_rank_for_fatal = impl_->rank;
  core::set_fatal_handler(abort_job);
  if (provided < MPI_THREAD_MULTIPLE)
    core::fatal(fmt::format("this MPI library provides thread level {} but Flotilla's "
                            "communication thread needs MPI_THREAD_MULTIPLE ({}); use an MPI "
                            "built with thread support (Debian's OpenMPI has it)",
                            provided, MPI_THREAD_MULTIPLE));
  impl_->timeout_s = comm_timeout_s;
  impl_->comm_thread = comm_thread;
  impl_->engine = std::make_shared<Engine>(impl_->rank, comm_timeout_s,
                                           LinkModel(bandwidth_gbps, latency_us, link_traffic),
                                           comm_thread);
  impl_->world = std::make_unique<MpiCommunicator>(impl_->engine, MPI_COMM_WORLD, "world");
}

MpiRuntime::~MpiRuntime() {
  impl_->world.reset();
  impl_->engine.reset();  // joins the communication thread
  core::set_fatal_handler(nullptr);
  MPI_Finalize();
}

Communicator& MpiRuntime::world() { return *impl_->world; }

std::unique_ptr<Communicator> MpiRuntime::make_world(const std::string& name, double bandwidth_gbps,
                                                     double latency_us) {
  MPI_Comm dup = MPI_COMM_NULL;
  FLOT_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &dup));
  auto engine = std::make_shared<Engine>(impl_->rank, impl_->timeout_s,
                                         LinkModel(bandwidth_gbps, latency_us), impl_->comm_thread);
  return std::make_unique<MpiCommunicator>(std::move(engine), dup, name);
}
int MpiRuntime::world_rank() const { return impl_->rank; }
bool MpiRuntime::comm_thread_refused() const { return impl_->engine->realtime_refused(); }
int MpiRuntime::world_size() const { return impl_->size; }

}  // namespace parallel
