// ChildProcess: a test's own child (stdin piped, stdout/stderr collected), signalled by its PID only.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace hacoord::test {

using std::chrono::milliseconds;

// One child process. Two reader threads drain its stdout and stderr as they arrive, so a child that
// prints a lot never blocks on a full pipe while the test is busy elsewhere, and reading lines never
// blocks the test. Only the PID started here is ever signalled, and never after it was reaped (a
// reaped PID may already belong to another process).
class ChildProcess {
 public:
  // args[0] is the program (a path, or a name looked up in PATH). The child gets SIGKILL if the
  // test's main thread dies. Throws std::runtime_error when it cannot be started.
  explicit ChildProcess(std::vector<std::string> args);
  // SIGKILL if still running, reap, join the readers.
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  const std::vector<std::string>& args() const { return args_; }

  // Sends `sig` to this child; false when it has already been reaped.
  bool signal(int sig);
  // Writes `line` + '\n' to the child's stdin; false when that fails (closed, child gone).
  bool writeLine(const std::string& line);
  void closeStdin();

  // Complete stdout lines so far (without '\n'), oldest first.
  std::vector<std::string> lines() const;
  // Whole stdout / stderr so far.
  std::string stdoutText() const;
  std::string stderrText() const;
  // Waits until stdout holds a line for which `pred` is true; returns it, or nullopt after
  // `timeout`. Wakes on every new line (no polling delay).
  template <typename Pred>
  std::optional<std::string> waitForLine(Pred pred, milliseconds timeout) const {
    std::unique_lock lock(mutex_);
    std::size_t checked = 0;
    std::optional<std::string> found;
    out_cv_.wait_for(lock, timeout, [&] {
      for (; checked < lines_.size(); ++checked) {
        if (pred(lines_[checked])) {
          found = lines_[checked];
          return true;
        }
      }
      return false;
    });
    return found;
  }

  // Waits until the child's stdout and stderr are closed (it exited) and fully read.
  bool waitOutputClosed(milliseconds timeout) const;

  // Reaps the child if it has exited (never blocks). True once it has.
  bool exited();
  // Waits until the child exits, at most `timeout`. True once it has.
  bool waitExit(milliseconds timeout);
  // The exit code, or 128 + signal number when a signal ended it; nullopt while running.
  std::optional<int> exitCode();
  // SIGKILL (if running) and reap.
  void kill9();

 private:
  void readLoop(int fd, bool is_stdout);

  std::vector<std::string> args_;
  pid_t pid_ = -1;
  int stdin_fd_ = -1;
  std::thread out_reader_;
  std::thread err_reader_;

  mutable std::mutex mutex_;  // guards everything below
  mutable std::condition_variable out_cv_;
  std::string out_;
  std::string partial_;  // stdout after the last '\n'
  std::vector<std::string> lines_;
  std::string err_;
  bool out_eof_ = false;
  bool err_eof_ = false;
  bool reaped_ = false;
  int wait_status_ = 0;
};

// Result of running a command to completion.
struct RunResult {
  int exit_code = -1;  // 128 + signal when a signal ended it; -1 when it timed out (then killed)
  bool timed_out = false;
  std::string out;
  std::string err;
  milliseconds elapsed{0};
  // Non-empty lines of `err`.
  std::vector<std::string> errLines() const;
};

// Runs `args` with stdin closed and waits at most `timeout` (then SIGKILL).
RunResult runProcess(const std::vector<std::string>& args, milliseconds timeout);

// The scalar members of one JSON object, as text (strings unescaped; numbers, true, false, null as
// written); nested objects and arrays are left out. nullopt when the text is not a JSON object.
std::optional<std::map<std::string, std::string>> parseFlatJson(std::string_view text);

// Writes `text` to `path` (truncating). Throws std::runtime_error.
void writeTextFile(const std::string& path, const std::string& text);
// The whole file, or "" when it cannot be read (not there yet).
std::string readTextFile(const std::string& path);

}  // namespace hacoord::test
