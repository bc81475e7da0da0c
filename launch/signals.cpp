// Stop-signal handlers: only async-signal-safe calls (atomic store, alarm, write, _exit).
#include "launch/signals.hpp"

#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstring>

namespace launch {
namespace {

// The one piece of process-global state: a signal handler can only reach globals.
std::atomic<bool> g_stop{false};
unsigned g_grace_s = 0;

void say(const char* text) {
  const ssize_t n = ::write(STDERR_FILENO, text, std::strlen(text));
  (void)n;
}

extern "C" void on_stop(int) {
  if (g_stop.exchange(true)) {
    say("\nflotilla: second stop signal: exiting now without saving (the last complete checkpoint "
        "stays valid)\n");
    _exit(kExitStoppedNow);
  }
  say("\nflotilla: stop signal: finishing the current step, then saving a checkpoint (a second "
      "signal exits at once)\n");
  if (g_grace_s > 0) alarm(g_grace_s);
}

extern "C" void on_grace_over(int) {
  say("\nflotilla: the step and checkpoint did not finish within runtime.stop_grace_s after the "
      "stop signal: exiting now without saving\n");
  _exit(kExitStoppedNow);
}

}  // namespace

const std::atomic<bool>& install_stop_signals(double grace_s) {
  g_grace_s = grace_s > 0 ? static_cast<unsigned>(std::ceil(grace_s)) : 0;
  struct sigaction sa {};
  sa.sa_handler = on_stop;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sa.sa_handler = on_grace_over;
  sigaction(SIGALRM, &sa, nullptr);
  return g_stop;
}

}  // namespace launch
