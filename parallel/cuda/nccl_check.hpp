// FLOT_NCCL(call): the NCCL member of the check-macro family. A failing NCCL call after
// communication has started cannot be reported to the peers, so it ends the whole job
// (core::fatal) with the call, NCCL's error string, its last error message and file:line.
#pragma once

#include <nccl.h>

#include "core/error.hpp"

namespace parallel::detail {
[[noreturn]] void nccl_failed(const char* call, ncclResult_t code, ncclComm_t comm,
                              const char* where);
}

#define FLOT_NCCL(call, comm)                                                    \
  do {                                                                           \
    ncclResult_t flot_nccl_rc_ = (call);                                         \
    if (flot_nccl_rc_ != ncclSuccess)                                            \
      ::parallel::detail::nccl_failed(#call, flot_nccl_rc_, (comm), FLOT_WHERE); \
  } while (0)
