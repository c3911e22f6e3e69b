// spawnShell and the blocking runShell: see shell.h.
#include "core/shell.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

extern char** environ;

namespace hacoord {

int spawnShell(const std::string& command, int output_fd,
               const std::vector<std::pair<std::string, std::string>>& env, pid_t* pid) {
  std::vector<std::string> vars;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view var(*e);
    bool replaced = false;
    for (const auto& [name, value] : env) {
      replaced = replaced || (var.size() > name.size() && var.starts_with(name) && var[name.size()] == '=');
    }
    if (!replaced) vars.emplace_back(var);
  }
  for (const auto& [name, value] : env) vars.push_back(name + "=" + value);
  std::vector<char*> envp;
  for (std::string& v : vars) envp.push_back(v.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  ::posix_spawn_file_actions_init(&actions);
  ::posix_spawnattr_init(&attr);
  ::posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  ::posix_spawn_file_actions_adddup2(&actions, output_fd, 1);
  ::posix_spawn_file_actions_adddup2(&actions, output_fd, 2);
  ::posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  sigset_t empty;
  sigset_t all;
  ::sigemptyset(&empty);
  ::sigfillset(&all);
  ::posix_spawnattr_setpgroup(&attr, 0);
  ::posix_spawnattr_setsigmask(&attr, &empty);
  ::posix_spawnattr_setsigdefault(&attr, &all);
  ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::string text = command;
  char sh[] = "/bin/sh";
  char dash_c[] = "-c";
  char* argv[] = {sh, dash_c, text.data(), nullptr};
  pid_t child = -1;
  const int rc = ::posix_spawn(&child, "/bin/sh", &actions, &attr, argv, envp.data());
  ::posix_spawn_file_actions_destroy(&actions);
  ::posix_spawnattr_destroy(&attr);
  if (rc == 0) *pid = child;
  return rc;
}

int pidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

void reapNow(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

std::string ShellRun::describe() const {
  if (!started) return "not started: " + error;
  if (!error.empty()) return error + " (process group killed)";
  if (timed_out) return "timed out (process group killed)";
  if (signal != 0) return "killed by signal " + std::to_string(signal);
  return "exit " + std::to_string(exit_code);
}

namespace {

constexpr std::size_t kMaxLine = 4096;

// Splits output into lines for `on_line`; an overlong line is cut into pieces.
class LineSplitter {
 public:
  explicit LineSplitter(const std::function<void(std::string_view)>& on_line) : on_line_(on_line) {}
  void add(const char* data, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      if (data[i] == '\n') {
        emit();
        continue;
      }
      partial_.push_back(data[i]);
      if (partial_.size() >= kMaxLine) emit();
    }
  }
  void finish() {
    if (!partial_.empty()) emit();
  }

 private:
  void emit() {
    if (!partial_.empty() && partial_.back() == '\r') partial_.pop_back();
    if (on_line_) on_line_(partial_);
    partial_.clear();
  }
  const std::function<void(std::string_view)>& on_line_;
  std::string partial_;
};

// Reads what the pipe holds now; false at EOF or on an error.
bool drain(int fd, LineSplitter& lines) {
  char buffer[4096];
  for (;;) {
    const ssize_t r = ::read(fd, buffer, sizeof buffer);
    if (r > 0) {
      lines.add(buffer, static_cast<std::size_t>(r));
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
}

}  // namespace

ShellRun runShell(const std::string& command, const std::vector<std::pair<std::string, std::string>>& env,
                  std::chrono::milliseconds limit,
                  const std::function<void(std::string_view line)>& on_line) {
  ShellRun run;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    run.error = std::string("pipe: ") + std::strerror(errno);
    return run;
  }
  ::fcntl(pipe_fds[0], F_SETFL, ::fcntl(pipe_fds[0], F_GETFL) | O_NONBLOCK);
  pid_t pid = -1;
  const int rc = spawnShell(command, pipe_fds[1], env, &pid);
  ::close(pipe_fds[1]);
  if (rc != 0) {
    ::close(pipe_fds[0]);
    run.error = std::string("cannot run /bin/sh: ") + std::strerror(rc);
    return run;
  }
  run.started = true;
  LineSplitter lines(on_line);
  const int pidfd = pidfdOpen(pid);
  if (pidfd < 0) {
    run.error = std::string("pidfd_open: ") + std::strerror(errno);
    ::killpg(pid, SIGKILL);
    reapNow(pid);
    ::close(pipe_fds[0]);
    return run;
  }
  bool output_open = true;
  bool exited = false;
  while (!exited) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      run.timed_out = true;
      break;
    }
    pollfd fds[2] = {{pidfd, POLLIN, 0}, {pipe_fds[0], POLLIN, 0}};
    const int n = ::poll(fds, output_open ? 2 : 1, static_cast<int>(left.count()) + 1);
    if (n < 0 && errno != EINTR) {
      run.error = std::string("poll: ") + std::strerror(errno);
      break;
    }
    if (output_open && n > 0 && fds[1].revents != 0) output_open = drain(pipe_fds[0], lines);
    if (n > 0 && fds[0].revents != 0) exited = true;
  }
  if (!exited) ::killpg(pid, SIGKILL);  // the group: the shell's own children go too
  int status = 0;
  pid_t w;
  do {
    w = ::waitpid(pid, &status, 0);
  } while (w < 0 && errno == EINTR);
  if (output_open) drain(pipe_fds[0], lines);  // what it wrote just before exiting
  lines.finish();
  ::close(pipe_fds[0]);
  ::close(pidfd);
  if (w < 0) {
    run.error = std::string("exit status unknown: waitpid: ") + std::strerror(errno);
    return run;
  }
  if (exited) {
    if (WIFEXITED(status)) run.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) run.signal = WTERMSIG(status);
  }
  return run;
}

}  // namespace hacoord
