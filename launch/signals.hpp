// How `flotilla train` reacts to SIGINT / SIGTERM (a scheduler's preemption, Ctrl-C).
//
// First signal: the stop flag is set; the trainer finishes the current step, saves a checkpoint
// and exits with kExitStopped. A grace timer starts with it: if the step and the save have not
// ended within runtime.stop_grace_s seconds (a huge step can take minutes, and schedulers send
// SIGKILL after a short grace period), the process exits at once with kExitStoppedNow. A second
// signal exits at once with kExitStoppedNow. Exiting "at once" is _exit() from the handler: no
// buffers flushed, no checkpoint; the last complete checkpoint stays the one to resume from.
#pragma once

#include <atomic>

namespace launch {

constexpr int kExitStopped = 130;     // stopped by a signal after the step; checkpoint saved
constexpr int kExitStoppedNow = 131;  // second signal or grace time over: ended immediately

// Installs the handlers (once per process); grace_s 0 = no timer. Returns the stop flag.
const std::atomic<bool>& install_stop_signals(double grace_s);

}  // namespace launch
