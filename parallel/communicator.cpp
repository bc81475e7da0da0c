// Argument checks shared by the communicator implementations.
#include "parallel/communicator.hpp"

namespace parallel {

void check_all_to_all_v(const Communicator& c, const core::Tensor& in,
                        const std::vector<int64_t>& send_counts, const core::Tensor& out,
                        const std::vector<int64_t>& recv_counts) {
  const auto n = static_cast<size_t>(c.size());
  FLOT_CHECK(send_counts.size() == n && recv_counts.size() == n,
             "all_to_all_v on {} ({} ranks) with {} send and {} receive counts", c.name(), n,
             send_counts.size(), recv_counts.size());
  int64_t s = 0, r = 0;
  for (size_t i = 0; i < n; ++i) {
    FLOT_CHECK(send_counts[i] >= 0 && recv_counts[i] >= 0, "all_to_all_v negative count for rank {}", i);
    s += send_counts[i];
    r += recv_counts[i];
  }
  FLOT_CHECK(in.rows() >= s && out.rows() >= r,
             "all_to_all_v on {}: sends {} rows from {}, receives {} rows into {}", c.name(), s,
             in.shape_str(), r, out.shape_str());
  FLOT_CHECK(s == 0 || r == 0 || in.dtype == out.dtype, "all_to_all_v dtypes {} and {}",
             core::dtype_name(in.dtype), core::dtype_name(out.dtype));
  FLOT_CHECK(s == 0 || r == 0 || in.cols() == out.cols(), "all_to_all_v rows of {} and {}",
             in.shape_str(), out.shape_str());
}

}  // namespace parallel
