#include "core/error.hpp"

#include <cstdio>
#include <cstdlib>

namespace core {
namespace {
FatalHandler g_fatal_handler = nullptr;  // set once by the communicator at start-up
}

void set_fatal_handler(FatalHandler handler) { g_fatal_handler = handler; }

void fatal(const std::string& message) {
  if (g_fatal_handler) g_fatal_handler(message);
  std::fprintf(stderr, "flotilla: fatal: %s\n", message.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace core
