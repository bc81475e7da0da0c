// Runs the flotilla binary as a user would and captures its exit code and output.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

namespace testing {

struct RunResult {
  int code = -1;
  std::string output;  // stdout and stderr together
};

// Runs a shell command line, capturing stdout (redirect stderr into it in the command).
inline RunResult run_shell(const std::string& cmd) {
  RunResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

inline RunResult run_flotilla(const std::string& args) {
  return run_shell(std::string(FLOTILLA_BINARY) + " " + args + " 2>&1");
}

// The same under `mpirun -np ranks` (as root, oversubscribed, unbound: the test machine may have
// fewer cores than ranks).
inline std::string mpirun(int ranks) {
  return "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 " +
         std::string(FLOTILLA_MPIEXEC) + " -np " + std::to_string(ranks) +
         " --oversubscribe --bind-to none " + FLOTILLA_BINARY;
}
inline RunResult run_mpi(int ranks, const std::string& args) {
  return run_shell(mpirun(ranks) + " " + args + " 2>&1");
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::string temp_dir(const std::string& name) {
  std::string d = "/tmp/flotilla-test-" + name + "-" + std::to_string(::getpid());
  std::string cmd = "rm -rf '" + d + "' && mkdir -p '" + d + "'";
  if (std::system(cmd.c_str()) != 0) return "/tmp";
  return d;
}

}  // namespace testing
