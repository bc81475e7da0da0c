// FLOT_MPI(call): the MPI member of the check-macro family. A failing MPI call after
// communication has started cannot be reported back to the peers, so it ends the whole job
// (core::fatal) with the call, its error string and file:line.
#pragma once

#include <mpi.h>

#include <string>

#include "core/error.hpp"

namespace parallel::detail {
[[noreturn]] void mpi_failed(const char* call, int code, const char* where);
}

#define FLOT_MPI(call)                                                         \
  do {                                                                         \
    int flot_mpi_rc_ = (call);                                                 \
    if (flot_mpi_rc_ != MPI_SUCCESS)                                           \
      ::parallel::detail::mpi_failed(#call, flot_mpi_rc_, FLOT_WHERE);         \
  } while (0)
