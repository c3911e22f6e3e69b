// Running `/bin/sh -c COMMAND` as a child of this multi-threaded daemon: one spawn for the health
// probes (asynchronous, on Asio) and the notify hooks (blocking, on hc-hooks).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hacoord {

// Starts `/bin/sh -c command` with posix_spawn (safe with threads, unlike fork()):
//  - stdin /dev/null, stdout and stderr onto `output_fd`, no other descriptor of the daemon
//    (NATS sockets, the HTTP listener), CLOEXEC or not;
//  - a process group of its own (killpg() reaches whatever the shell started), default signal
//    dispositions and an empty mask, whatever the daemon blocks or ignores;
//  - the daemon's environment with `env` added (a name already set is replaced).
// Returns 0 and sets `*pid`, or an errno value.
int spawnShell(const std::string& command, int output_fd,
               const std::vector<std::pair<std::string, std::string>>& env, pid_t* pid);

// pidfd_open(2): a descriptor that polls readable once `pid` exits (CLOEXEC), or -1 with errno.
int pidfdOpen(pid_t pid);

// Waits for `pid` itself (never -1: other children of the process are not ours to reap).
void reapNow(pid_t pid);

// One blocking run of a command, for callers on a thread of their own.
struct ShellRun {
  bool started = false;    // false: could not run /bin/sh (see `error`)
  bool timed_out = false;  // killed (the whole group) at the time limit
  int exit_code = -1;      // when it exited by itself
  int signal = 0;          // when a signal ended it
  std::string error;       // why it could not be started or watched (then it was killed)
  bool ok() const { return started && error.empty() && !timed_out && signal == 0 && exit_code == 0; }
  std::string describe() const;  // "exit 0", "exit 3", "killed by signal 9", "timed out after ..."
};

// Runs `command` until it exits or `limit` passes (then SIGKILL to its process group). Every line
// it writes (stdout and stderr, at most 4 KiB per line, trailing '\r' removed) goes to `on_line`
// as it arrives, on the calling thread. Never leaves a zombie. A command that exits while a
// background child of its keeps the output open is done at its exit; the rest of that output is
// not waited for.
ShellRun runShell(const std::string& command, const std::vector<std::pair<std::string, std::string>>& env,
                  std::chrono::milliseconds limit, const std::function<void(std::string_view line)>& on_line);

}  // namespace hacoord
