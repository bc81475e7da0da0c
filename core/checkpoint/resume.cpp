// Resume resolution and the early writability check.
#include "core/checkpoint/resume.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <exception>
#include <filesystem>

#include "core/checkpoint/collective.hpp"
#include "core/checkpoint/files.hpp"
#include "core/checkpoint/manifest.hpp"
#include "core/error.hpp"
#include "parallel/communicator.hpp"

namespace core::checkpoint {
namespace fs = std::filesystem;

std::string resolve_resume(const std::string& resume, const std::string& root,
                           parallel::Communicator* world) {
  std::string path;
  std::exception_ptr failure;
  try {
    if (resume == "auto") {
      const auto found = list_checkpoints(root);
      if (!found.empty()) path = found.back().path;
    } else if (resume != "never") {
      path = resolve_checkpoint_path(resume);
    }
  } catch (const std::exception&) {
    failure = std::current_exception();
  }
  // Every rank looks at the same (shared) directory, which nobody writes to at this point.
  rethrow_agreed(world, failure);
  return path;
}

void check_writable(const std::string& root, parallel::Communicator* world) {
  std::exception_ptr failure;
  if (!world || world->rank() == 0) {
    try {
      std::error_code ec;
      fs::create_directories(root, ec);
      if (ec)
        FLOT_THROW(ConfigError,
                   "checkpoint directory {} cannot be created: {}; set "
                   "checkpoint.dir to a writable directory (or checkpoint.every=0)",
                   root, ec.message());
      const std::string probe = root + "/.probe-" + std::to_string(::getpid());
      try {
        write_file_synced(probe, "probe\n");
      } catch (const Error& e) {
        FLOT_THROW(ConfigError,
                   "checkpoint directory {} is not writable ({}); set checkpoint.dir "
                   "to a writable directory (or checkpoint.every=0)",
                   root, e.what());
      }
      std::remove(probe.c_str());
    } catch (const std::exception&) {
      failure = std::current_exception();
    }
  }
  rethrow_agreed(world, failure);
}

}  // namespace core::checkpoint
