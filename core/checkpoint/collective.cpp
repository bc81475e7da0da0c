// Agreement on failure with the failing rank's message, and small gathers, over the
// communicator's float collectives.
#include "core/checkpoint/collective.hpp"

#include "core/error.hpp"
#include "core/tensor.hpp"
#include "parallel/communicator.hpp"

namespace core::checkpoint {

std::vector<double> gather_all(parallel::Communicator* world, const std::vector<double>& mine) {
  if (!world || world->size() == 1) return mine;
  const int64_t n = static_cast<int64_t>(mine.size());
  std::vector<double> all(static_cast<size_t>(n) * world->size());
  world->all_gather(Tensor::of(mine.data(), {n}), Tensor::of(all.data(), {n * world->size()}))
      ->wait();
  return all;
}

double from_rank0(parallel::Communicator* world, double v) {
  if (!world || world->size() == 1) return v;
  double x = world->rank() == 0 ? v : 0.0;
  world->all_reduce(Tensor::of(&x, {1}), parallel::ReduceOp::sum)->wait();
  return x;
}

Agreement agree(parallel::Communicator* world, const std::string& my_error, int kind) {
  Agreement a;
  if (!world || world->size() == 1) {
    a.failed = !my_error.empty();
    a.rank = a.failed ? 0 : -1;
    a.kind = a.failed ? kind : 0;
    a.message = my_error;
    return a;
  }
  const bool failed = !my_error.empty();
  const std::vector<double> flags =
      gather_all(world, {failed ? 1.0 : 0.0, failed ? static_cast<double>(kind) : 0.0,
                         static_cast<double>(my_error.size())});
  for (int r = 0; r < world->size(); ++r)
    if (flags[3 * r] > 0) {
      a.failed = true;
      a.rank = r;
      a.kind = static_cast<int>(flags[3 * r + 1]);
      break;
    }
  if (!a.failed) return a;
  // The failing rank's message, one character per int32 (a sum where only it contributes).
  const int64_t len = static_cast<int64_t>(flags[3 * a.rank + 2]);
  std::vector<int32_t> text(static_cast<size_t>(std::max<int64_t>(len, 1)), 0);
  if (world->rank() == a.rank)
    for (int64_t i = 0; i < len; ++i) text[i] = static_cast<unsigned char>(my_error[i]);
  world
      ->all_reduce(Tensor::of(text.data(), {static_cast<int64_t>(text.size())}),
                   parallel::ReduceOp::sum)
      ->wait();
  a.message.assign(static_cast<size_t>(len), ' ');
  for (int64_t i = 0; i < len; ++i) a.message[i] = static_cast<char>(text[i]);
  return a;
}

void rethrow_agreed(parallel::Communicator* world, std::exception_ptr mine) {
  if (!world || world->size() == 1) {
    if (mine) std::rethrow_exception(mine);
    return;
  }
  enum { kConfig = 1, kData = 2, kOther = 3 };
  std::string message;
  int kind = 0;
  if (mine) {
    try {
      std::rethrow_exception(mine);
    } catch (const ConfigError& e) {
      kind = kConfig;
      message = e.what();
    } catch (const DataError& e) {
      kind = kData;
      message = e.what();
    } catch (const std::exception& e) {
      kind = kOther;
      message = e.what();
    }
    if (message.empty()) message = "unknown error";
  }
  const Agreement a = agree(world, message, kind);
  if (!a.failed) return;
  if (a.kind == kConfig) throw ConfigError(a.message);
  if (a.kind == kData) throw DataError(a.message);
  throw Error(a.message);
}

}  // namespace core::checkpoint
