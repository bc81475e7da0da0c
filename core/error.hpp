// Typed errors and the check macros every folder uses.
//
// Before communication starts, bad input (config, data files, layouts) throws one of the typed
// errors below; launch/ turns them into a clear message and exit code 2. After communication has
// started, a fatal error must abort the whole job (see core::fatal) so that no peer is left
// waiting in a collective. Destructors never throw.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace core {

// Base of every error the framework throws on purpose.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
  // Set on the one rank of a job that says the message when the ranks agreed on bad input
  // (the lowest rank that found it), so that a problem seen by rank 3 alone is still printed.
  void mark_reporter() { reporter_ = true; }
  bool reporter() const { return reporter_; }

 private:
  bool reporter_ = false;
};
// Invalid configuration: unknown key, wrong type, impossible value or combination.
struct ConfigError : Error {
  using Error::Error;
};
// A data, checkpoint or other input file that is missing, truncated or of the wrong format.
struct DataError : Error {
  using Error::Error;
};
// A violated internal precondition (shape mismatch, wrong dtype): a bug, not bad input.
struct InternalError : Error {
  using Error::Error;
};
// Another rank of the job found bad input and reported it; this rank stops with the same exit
// code (2) without repeating the message.
struct PeerError : Error {
  using Error::Error;
};

// Prints the message with this process's rank and ends the whole job. Installed by the
// communicator (MPI_Abort) once communication has started; std::abort before that.
[[noreturn]] void fatal(const std::string& message);
using FatalHandler = void (*)(const std::string& message);
void set_fatal_handler(FatalHandler handler);

}  // namespace core

#define FLOT_STRINGIFY_(x) #x
#define FLOT_STRINGIFY(x) FLOT_STRINGIFY_(x)
#define FLOT_WHERE __FILE__ ":" FLOT_STRINGIFY(__LINE__)

// FLOT_CHECK(cond, "fmt {}", args...): throws core::InternalError naming the condition, the
// formatted message and file:line. For preconditions that only a bug can violate.
#define FLOT_CHECK(cond, ...)                                                                 \
  do {                                                                                        \
    if (!(cond))                                                                              \
      throw ::core::InternalError(::fmt::format("check failed: {} ({}) at {}", #cond,        \
                                                ::fmt::format(__VA_ARGS__), FLOT_WHERE)); \
  } while (0)

// FLOT_THROW(ErrorType, "fmt {}", args...): throws a typed error with a user-facing message.
#define FLOT_THROW(ErrorType, ...) throw ErrorType(::fmt::format(__VA_ARGS__))
