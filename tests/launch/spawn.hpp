// Runs a command in the background with its output in a file, so that a test can watch the log,
// send signals to it (or to one rank of an mpirun job) and time its exit. The child leads its
// own process group; the destructor kills the group if it is still running, so a failing test
// leaves no stray processes.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

namespace testing {

class Spawned {
 public:
  // Runs `/bin/sh -c "exec <command>"` with stdout and stderr appended to `log`.
  Spawned(const std::string& command, const std::string& log) : log_(log) {
    pid_ = ::fork();
    if (pid_ == 0) {
      ::setpgid(0, 0);
      const std::string cmd = "exec " + command + " >>'" + log + "' 2>&1";
      ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::setpgid(pid_, pid_);
  }
  ~Spawned() {
    if (code_ == kRunning && pid_ > 0) {
      ::kill(-pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  Spawned(const Spawned&) = delete;
  Spawned& operator=(const Spawned&) = delete;

  pid_t pid() const { return pid_; }
  std::string output() const {
    std::ifstream in(log_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  // Waits until the log contains `text`; false after timeout_s or if the process ended first.
  bool wait_for(const std::string& text, double timeout_s) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (std::chrono::steady_clock::now() < end) {
      if (output().find(text) != std::string::npos) return true;
      if (poll()) return output().find(text) != std::string::npos;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  void signal(int sig) const { ::kill(pid_, sig); }
  // Waits for the exit; returns the exit code (128 + signal when killed), or kRunning after
  // timeout_s (the process is left running for the destructor).
  int wait_exit(double timeout_s) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (!poll() && std::chrono::steady_clock::now() < end)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return code_;
  }
  static constexpr int kRunning = -1;

 private:
  bool poll() {
    if (code_ != kRunning) return true;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) != pid_) return false;
    code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return true;
  }
  std::string log_;
  pid_t pid_ = -1;
  int code_ = kRunning;
};

}  // namespace testing
