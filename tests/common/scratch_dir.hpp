// An empty scratch directory per test and process, under the system's temp folder.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>

namespace testing {

inline std::string scratch_dir(const std::string& name) {
  namespace fs = std::filesystem;
  fs::path d = fs::temp_directory_path() /
               ("flotilla-" + name + "-" + std::to_string(static_cast<long>(::getpid())));
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

}  // namespace testing
