// Local health checks: command (posix_spawn + pidfd), TCP connect and HTTP GET, with rise/fall.
#include "health/checks.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <optional>
#include <thread>
#include <utility>
#include <variant>

#include "core/logging.h"
#include "core/work_queue.h"

extern char** environ;

namespace hacoord {
namespace {

// Not hacoord::Clock (the injectable interface): checks do real I/O against real time.
using Steady = std::chrono::steady_clock;

std::shared_ptr<spdlog::logger> logger() {
  static auto log = moduleLogger("health");
  return log;
}

std::string errnoText(int err) { return std::strerror(err); }

// Milliseconds left until `deadline`, rounded up so poll() never wakes just before it; >= 0.
int msUntil(Steady::time_point deadline) {
  const auto left = deadline - Steady::now();
  if (left <= Steady::duration::zero()) return 0;
  const auto ms = std::chrono::ceil<milliseconds>(left).count();
  return static_cast<int>(std::min<long long>(ms, 1 << 30));
}

bool isReadable(int fd) {
  if (fd < 0) return false;
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

// One resolved address of a host:port.
struct Address {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family = AF_UNSPEC;
  std::string text;  // "127.0.0.1:80" / "[::1]:80", for messages
};

struct HostPort {
  std::string host;  // without brackets
  std::string port;
};

// "host:port" or "[v6]:port"; `default_port` when there is no port (only used for URLs).
std::optional<HostPort> splitHostPort(std::string_view s, const char* default_port) {
  HostPort hp;
  if (!s.empty() && s.front() == '[') {
    const std::size_t close = s.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    hp.host = std::string(s.substr(1, close - 1));
    std::string_view rest = s.substr(close + 1);
    if (rest.empty() && default_port != nullptr) {
      hp.port = default_port;
    } else if (rest.size() > 1 && rest.front() == ':') {
      hp.port = std::string(rest.substr(1));
    } else {
      return std::nullopt;
    }
  } else {
    const std::size_t colon = s.rfind(':');
    if (colon == std::string_view::npos) {
      if (default_port == nullptr) return std::nullopt;
      hp.host = std::string(s);
      hp.port = default_port;
    } else {
      hp.host = std::string(s.substr(0, colon));
      hp.port = std::string(s.substr(colon + 1));
    }
  }
  if (hp.host.empty() || hp.port.empty()) return std::nullopt;
  return hp;
}

std::string addressText(const sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    ::inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(ntohs(in->sin_port));
  }
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
  ::inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
  return "[" + std::string(buf) + "]:" + std::to_string(ntohs(in6->sin6_port));
}

std::vector<Address> toAddresses(const addrinfo* list) {
  std::vector<Address> out;
  for (const addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    Address a;
    std::memcpy(&a.storage, ai->ai_addr, ai->ai_addrlen);
    a.length = ai->ai_addrlen;
    a.family = ai->ai_family;
    a.text = addressText(ai->ai_addr);
    out.push_back(std::move(a));
  }
  return out;
}

// A name lookup on a thread of its own: getaddrinfo() cannot be bounded by a timeout, so the check
// stops waiting for it instead. The thread finishes on its own later and frees this through the
// shared_ptr; `done_fd` (an eventfd) lets the waiter poll it together with the cancel descriptor.
struct Lookup {
  Lookup() : done_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}
  ~Lookup() {
    if (done_fd >= 0) ::close(done_fd);
  }
  int done_fd;
  std::mutex mutex;
  int rc = 0;
  std::vector<Address> addresses;
};

// Every address of host:port, numeric hosts without any lookup. The outcome's reason on failure.
std::variant<std::vector<Address>, std::string> resolve(const HostPort& hp,
                                                         Steady::time_point deadline, int cancel_fd) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* list = nullptr;
  if (::getaddrinfo(hp.host.c_str(), hp.port.c_str(), &hints, &list) == 0) {
    std::vector<Address> out = toAddresses(list);
    ::freeaddrinfo(list);
    return out;
  }
  auto lookup = std::make_shared<Lookup>();
  if (lookup->done_fd < 0) return "eventfd: " + errnoText(errno);
  try {
    std::thread([lookup, hp] {
      addrinfo h{};
      h.ai_family = AF_UNSPEC;
      h.ai_socktype = SOCK_STREAM;
      h.ai_flags = AI_ADDRCONFIG | AI_NUMERICSERV;
      addrinfo* found = nullptr;
      const int rc = ::getaddrinfo(hp.host.c_str(), hp.port.c_str(), &h, &found);
      {
        std::lock_guard lock(lookup->mutex);
        lookup->rc = rc;
        if (rc == 0) lookup->addresses = toAddresses(found);
      }
      if (found != nullptr) ::freeaddrinfo(found);
      const uint64_t one = 1;
      [[maybe_unused]] ssize_t n = ::write(lookup->done_fd, &one, sizeof one);
    }).detach();
  } catch (const std::system_error& e) {
    return std::string("cannot start a name lookup: ") + e.what();
  }
  for (;;) {
    pollfd fds[2] = {{lookup->done_fd, POLLIN, 0}, {cancel_fd, POLLIN, 0}};
    const int n = ::poll(fds, 2, msUntil(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (fds[1].revents != 0) return std::string("cancelled");
    if (fds[0].revents != 0) break;
    if (n == 0) return "name lookup of " + hp.host + " timed out";
  }
  std::lock_guard lock(lookup->mutex);
  if (lookup->rc != 0) return "cannot resolve " + hp.host + ": " + ::gai_strerror(lookup->rc);
  if (lookup->addresses.empty()) return "cannot resolve " + hp.host + ": no IPv4/IPv6 address";
  return lookup->addresses;
}

// Owns a descriptor.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

// Non-blocking connect to the first address that accepts before the deadline. On failure the
// reason of the last attempt.
std::variant<Fd, std::string> connectWithin(const HostPort& hp, Steady::time_point deadline,
                                            int cancel_fd) {
  auto resolved = resolve(hp, deadline, cancel_fd);
  if (auto* reason = std::get_if<std::string>(&resolved)) return *reason;
  std::string last = "no address for " + hp.host;
  for (const Address& a : std::get<std::vector<Address>>(resolved)) {
    Fd fd(::socket(a.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) {
      last = "socket: " + errnoText(errno);
      continue;
    }
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&a.storage), a.length) == 0) {
      return fd;
    }
    if (errno != EINPROGRESS) {
      last = "connect to " + a.text + ": " + errnoText(errno);
      continue;
    }
    for (;;) {
      pollfd fds[2] = {{fd.get(), POLLOUT, 0}, {cancel_fd, POLLIN, 0}};
      const int n = ::poll(fds, 2, msUntil(deadline));
      if (n < 0 && errno == EINTR) continue;
      if (fds[1].revents != 0) return std::string("cancelled");
      if (n == 0) return "connect to " + a.text + " timed out";
      break;
    }
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err == 0) return fd;
    last = "connect to " + a.text + ": " + errnoText(err);
  }
  return last;
}

CheckOutcome pass() { return {true, ""}; }
CheckOutcome failure(std::string reason) { return {false, std::move(reason)}; }

std::string timeoutText(const HealthCheckConfig& c) {
  return "timed out after " + std::to_string(c.timeout.count()) + " ms";
}

CheckOutcome runTcp(const HealthCheckConfig& c, Steady::time_point deadline, int cancel_fd) {
  auto hp = splitHostPort(c.address, nullptr);
  if (!hp) return failure("bad address \"" + c.address + "\" (expected host:port)");
  auto connected = connectWithin(*hp, deadline, cancel_fd);
  if (auto* reason = std::get_if<std::string>(&connected)) return failure(*reason);
  return pass();  // the descriptor closes here: a connect is all this check asks for
}

struct HttpTarget {
  HostPort host_port;
  std::string host_header;  // the authority as written in the URL
  std::string path;         // "/..." including any query
};

std::optional<HttpTarget> parseHttpUrl(const std::string& url) {
  constexpr std::string_view kScheme = "http://";
  if (!std::string_view(url).starts_with(kScheme)) return std::nullopt;
  std::string_view rest = std::string_view(url).substr(kScheme.size());
  const std::size_t end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, end);
  std::string_view path = end == std::string_view::npos ? std::string_view() : rest.substr(end);
  path = path.substr(0, path.find('#'));  // a fragment never goes on the wire
  if (authority.find('@') != std::string_view::npos) return std::nullopt;
  auto hp = splitHostPort(authority, "80");
  if (!hp) return std::nullopt;
  HttpTarget t{*hp, std::string(authority), std::string(path)};
  if (t.path.empty() || t.path.front() != '/') t.path = "/" + t.path;
  return t;
}

CheckOutcome runHttp(const HealthCheckConfig& c, Steady::time_point deadline, int cancel_fd) {
  auto target = parseHttpUrl(c.url);
  if (!target) return failure("bad url \"" + c.url + "\" (only http://host[:port]/path)");
  auto connected = connectWithin(target->host_port, deadline, cancel_fd);
  if (auto* reason = std::get_if<std::string>(&connected)) return failure(*reason);
  Fd fd = std::move(std::get<Fd>(connected));

  // HTTP/1.0 with Connection: close: the server answers once and closes, no chunking to handle.
  const std::string request = "GET " + target->path + " HTTP/1.0\r\nHost: " + target->host_header +
                              "\r\nUser-Agent: hacoord-health\r\nAccept: */*\r\n"
                              "Connection: close\r\n\r\n";
  std::size_t sent = 0;
  std::string head;
  bool want_write = true;
  while (true) {
    pollfd fds[2] = {{fd.get(), static_cast<short>(want_write ? POLLOUT : POLLIN), 0},
                     {cancel_fd, POLLIN, 0}};
    const int n = ::poll(fds, 2, msUntil(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (fds[1].revents != 0) return failure("cancelled");
    if (n == 0) {
      return failure((want_write ? "sending the request" : "waiting for the HTTP status line") +
                     std::string(" timed out after ") + std::to_string(c.timeout.count()) + " ms");
    }
    if (want_write) {
      const ssize_t w = ::send(fd.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EAGAIN || errno == EINTR) continue;
        return failure("send: " + errnoText(errno));
      }
      sent += static_cast<std::size_t>(w);
      want_write = sent < request.size();
      continue;
    }
    char buf[1024];
    const ssize_t r = ::recv(fd.get(), buf, sizeof buf, 0);
    if (r < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return failure("recv: " + errnoText(errno));
    }
    head.append(buf, static_cast<std::size_t>(r));
    if (r == 0 || head.find('\n') != std::string::npos || head.size() >= 4096) break;
  }
  // "HTTP/1.1 200 OK"
  const std::string line = head.substr(0, head.find_first_of("\r\n"));
  if (line.empty()) return failure("the server closed the connection without an answer");
  if (!line.starts_with("HTTP/") || line.find(' ') == std::string::npos) {
    return failure("not an HTTP status line: \"" + line.substr(0, 80) + "\"");
  }
  const std::size_t sp = line.find(' ');
  const std::string code_text = line.substr(sp + 1, 3);
  if (code_text.size() != 3 ||
      !std::all_of(code_text.begin(), code_text.end(), [](unsigned char ch) { return ch >= '0' && ch <= '9'; })) {
    return failure("not an HTTP status line: \"" + line.substr(0, 80) + "\"");
  }
  const int code = std::stoi(code_text);
  if (code >= 200 && code < 400) return pass();
  return failure("HTTP " + line.substr(sp + 1, 80));
}

// The first line of a command's output, trimmed, for the failure reason.
std::string firstLine(const std::string& output) {
  std::size_t begin = output.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return "";
  std::string line = output.substr(begin, output.find_first_of("\r\n", begin) - begin);
  while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) line.pop_back();
  for (char& ch : line) {
    if (static_cast<unsigned char>(ch) < 0x20) ch = ' ';
  }
  if (line.size() > 200) line = line.substr(0, 200) + "...";
  return line;
}

int pidfdOpen(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  errno = ENOSYS;
  return -1;
#endif
}

// Waits for `pid` itself (never -1: other children of the process are not ours to reap).
bool reap(pid_t pid, int* status) {
  for (;;) {
    if (::waitpid(pid, status, 0) == pid) return true;
    if (errno != EINTR) return false;  // ECHILD: SIGCHLD is ignored, the kernel reaped it
  }
}

CheckOutcome runCommand(const HealthCheckConfig& c, Steady::time_point deadline, int cancel_fd) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return failure("pipe: " + errnoText(errno));
  Fd out_read(pipe_fds[0]);
  Fd out_write(pipe_fds[1]);
  // Only our end is non-blocking: the command's stdout must stay an ordinary blocking pipe.
  ::fcntl(out_read.get(), F_SETFL, ::fcntl(out_read.get(), F_GETFL) | O_NONBLOCK);

  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  ::posix_spawn_file_actions_init(&actions);
  ::posix_spawnattr_init(&attr);
  ::posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  ::posix_spawn_file_actions_adddup2(&actions, out_write.get(), 1);
  ::posix_spawn_file_actions_adddup2(&actions, out_write.get(), 2);
  // No descriptor of the daemon (NATS sockets, lock files) leaks into the command.
  ::posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  // Its own process group, so a timeout kills the shell and everything it started; default
  // signal dispositions and an empty mask, whatever the daemon ignores or blocks (SIGPIPE...).
  sigset_t empty;
  sigset_t all;
  ::sigemptyset(&empty);
  ::sigfillset(&all);
  ::posix_spawnattr_setpgroup(&attr, 0);
  ::posix_spawnattr_setsigmask(&attr, &empty);
  ::posix_spawnattr_setsigdefault(&attr, &all);
  ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::string command = c.command;
  char sh[] = "/bin/sh";
  char dash_c[] = "-c";
  char* argv[] = {sh, dash_c, command.data(), nullptr};
  pid_t pid = -1;
  // posix_spawn (vfork-like in glibc) rather than fork(): safe in this multi-threaded process.
  const int rc = ::posix_spawn(&pid, "/bin/sh", &actions, &attr, argv, environ);
  ::posix_spawn_file_actions_destroy(&actions);
  ::posix_spawnattr_destroy(&attr);
  out_write.reset();  // EOF on our end once the command (and whatever inherited it) is done
  if (rc != 0) return failure("cannot run /bin/sh: " + errnoText(rc));

  Fd pidfd(pidfdOpen(pid));  // -1 on old kernels: fall back to polling waitpid
  std::string output;
  bool exited = false;
  int status = 0;
  std::string stopped;  // why the run was cut short: "" when the command ended by itself
  while (!exited) {
    pollfd fds[3] = {{pidfd.get(), POLLIN, 0}, {out_read.get(), POLLIN, 0}, {cancel_fd, POLLIN, 0}};
    int wait_ms = msUntil(deadline);
    if (pidfd.get() < 0) wait_ms = std::min(wait_ms, 5);
    const int n = ::poll(fds, 3, wait_ms);
    if (n < 0 && errno == EINTR) continue;
    if (fds[2].revents != 0) {
      stopped = "cancelled";
      break;
    }
    if (fds[1].revents != 0) {
      char buf[1024];
      const ssize_t r = ::read(out_read.get(), buf, sizeof buf);
      if (r > 0) {
        // Keep reading past the limit: a command blocked on a full pipe would only time out.
        if (output.size() < 1024) output.append(buf, static_cast<std::size_t>(std::min<ssize_t>(r, 1024)));
      } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
        out_read.reset();  // EOF: stop polling it (poll ignores a negative descriptor)
      }
    }
    if (fds[0].revents != 0 || pidfd.get() < 0) {
      const pid_t w = ::waitpid(pid, &status, WNOHANG);
      if (w == pid) {
        exited = true;
        break;
      }
      if (w < 0 && errno != EINTR) {
        return failure("exit status unknown: waitpid: " + errnoText(errno) +
                       " (is SIGCHLD ignored in this process?)");
      }
    }
    if (Steady::now() >= deadline) {
      stopped = timeoutText(c);
      break;
    }
  }
  if (!exited) {
    ::killpg(pid, SIGKILL);  // the group: the shell's own children go too
    reap(pid, &status);
    return failure(stopped == "cancelled" ? stopped : stopped + " (process group killed)");
  }
  if (out_read.get() >= 0) {  // what the command wrote just before exiting
    char buf[1024];
    ssize_t r;
    while (output.size() < 1024 && (r = ::read(out_read.get(), buf, sizeof buf)) > 0) {
      output.append(buf, static_cast<std::size_t>(r));
    }
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return pass();
  std::string reason = WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                                         : "killed by signal " + std::to_string(WTERMSIG(status));
  const std::string line = firstLine(output);
  if (!line.empty()) reason += ": " + line;
  return failure(reason);
}

bool sameCheck(const HealthCheckConfig& a, const HealthCheckConfig& b) {
  return a.name == b.name && a.type == b.type && a.command == b.command && a.address == b.address &&
         a.url == b.url && a.interval == b.interval && a.timeout == b.timeout && a.rise == b.rise &&
         a.fall == b.fall;
}

}  // namespace

std::string_view checkTypeName(HealthCheckConfig::Type type) {
  switch (type) {
    case HealthCheckConfig::Type::kCommand:
      return "command";
    case HealthCheckConfig::Type::kTcp:
      return "tcp";
    case HealthCheckConfig::Type::kHttp:
      return "http";
  }
  return "unknown";
}

CheckOutcome runCheckOnce(const HealthCheckConfig& check, int cancel_fd) {
  const auto deadline = Steady::now() + check.timeout;
  try {
    switch (check.type) {
      case HealthCheckConfig::Type::kCommand:
        return runCommand(check, deadline, cancel_fd);
      case HealthCheckConfig::Type::kTcp:
        return runTcp(check, deadline, cancel_fd);
      case HealthCheckConfig::Type::kHttp:
        return runHttp(check, deadline, cancel_fd);
    }
  } catch (const std::exception& e) {  // bad_alloc and the like: a failed run, not a dead thread
    return failure(std::string("internal error: ") + e.what());
  }
  return failure("unknown check type");
}

// ---------------------------------------------------------------------------------------------

struct HealthChecker::CheckState {
  HealthCheckConfig config;
  bool healthy = true;
  int passes = 0;
  int failures = 0;
  std::string last_result = "pending";
};

// Everything the runner threads, the watchdog and the public accessors share, under `mutex`.
struct HealthChecker::Shared {
  mutable std::mutex mutex;
  std::condition_variable watch_cv;
  std::vector<std::shared_ptr<CheckState>> states;  // in configuration order
  milliseconds fail_after{0};
  bool healthy = true;
  std::optional<TimePoint> unhealthy_since;
  bool failed_too_long_fired = false;
  bool watch_stop = false;
  std::function<void(bool)> on_change;
  std::function<void()> on_failed_too_long;
  std::unique_ptr<WorkQueue> events;  // delivers callbacks in order; null while stopped
  std::thread watchdog;

  // Folds the checks into the overall verdict; queues onChange when it flips. Under `mutex`.
  void recomputeLocked() {
    const bool now_healthy =
        std::all_of(states.begin(), states.end(), [](const auto& s) { return s->healthy; });
    if (now_healthy == healthy) return;
    healthy = now_healthy;
    if (healthy) {
      unhealthy_since.reset();
      logger()->info("node healthy again: every check passes");
    } else {
      unhealthy_since = std::chrono::steady_clock::now();
      failed_too_long_fired = false;
      std::string failing;
      for (const auto& s : states) {
        if (!s->healthy) failing += (failing.empty() ? "" : ", ") + s->config.name;
      }
      logger()->warn("node unhealthy: failing check(s) {}; handover after {} ms", failing,
                     fail_after.count());
    }
    watch_cv.notify_all();
    if (events && on_change) {
      events->push([cb = on_change, h = healthy] { cb(h); });
    }
  }

  void record(CheckState& st, const CheckOutcome& outcome) {
    std::lock_guard lock(mutex);
    st.last_result = outcome.passed ? "pass" : "fail: " + outcome.reason;
    if (outcome.passed) {
      st.failures = 0;
      ++st.passes;
      if (!st.healthy && st.passes >= st.config.rise) {
        st.healthy = true;
        logger()->info("check {} healthy after {} pass(es)", st.config.name, st.passes);
      }
    } else {
      st.passes = 0;
      ++st.failures;
      logger()->debug("check {} failed ({} in a row): {}", st.config.name, st.failures, outcome.reason);
      if (st.healthy && st.failures >= st.config.fall) {
        st.healthy = false;
        logger()->warn("check {} unhealthy after {} failure(s): {}", st.config.name, st.failures,
                       outcome.reason);
      }
    }
    recomputeLocked();
  }

  // Fires onFailedTooLong once per unhealthy period, fail_after after it began.
  void watchLoop() {
    std::unique_lock lock(mutex);
    while (!watch_stop) {
      if (healthy || failed_too_long_fired || !unhealthy_since) {
        watch_cv.wait(lock);
        continue;
      }
      const TimePoint due = *unhealthy_since + fail_after;
      if (std::chrono::steady_clock::now() < due) {
        watch_cv.wait_until(lock, due);
        continue;
      }
      failed_too_long_fired = true;
      logger()->warn("node unhealthy for {} ms (failAfter): a leader hands over", fail_after.count());
      if (events && on_failed_too_long) events->push(on_failed_too_long);
    }
  }
};

// One check's thread: runs it, sleeps until the next start, reports into Shared. The eventfd
// both wakes the sleep and aborts a run in progress, so stop() never waits out a timeout.
class HealthChecker::Runner {
 public:
  Runner(std::shared_ptr<Shared> shared, std::shared_ptr<CheckState> state)
      : shared_(std::move(shared)),
        state_(std::move(state)),
        config_(state_->config),
        cancel_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (cancel_fd_ < 0) {
      // Without it the thread could not be stopped: a broken invariant, not a check failure.
      logger()->critical("eventfd: {}", errnoText(errno));
      std::abort();
    }
    thread_ = std::thread([this] { loop(); });
  }

  ~Runner() {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(cancel_fd_, &one, sizeof one);
    thread_.join();
    ::close(cancel_fd_);
  }

  const std::shared_ptr<CheckState>& state() const { return state_; }

 private:
  void loop() {
    auto next = Steady::now();
    for (;;) {
      for (;;) {  // sleep until `next` unless cancelled
        pollfd p{cancel_fd_, POLLIN, 0};
        const int n = ::poll(&p, 1, msUntil(next));
        if (n > 0) return;
        if (n == 0 && Steady::now() >= next) break;
      }
      const auto began = Steady::now();
      CheckOutcome outcome = runCheckOnce(config_, cancel_fd_);
      if (isReadable(cancel_fd_)) return;  // a run cut short by stop() proves nothing
      shared_->record(*state_, outcome);
      next = std::max(began + config_.interval, Steady::now());
    }
  }

  std::shared_ptr<Shared> shared_;
  std::shared_ptr<CheckState> state_;
  const HealthCheckConfig config_;  // a copy: the thread never reads the state without the lock
  int cancel_fd_;
  std::thread thread_;
};

HealthChecker::HealthChecker(std::vector<HealthCheckConfig> checks, milliseconds fail_after)
    : shared_(std::make_shared<Shared>()) {
  shared_->fail_after = fail_after;
  for (auto& c : checks) {
    auto st = std::make_shared<CheckState>();
    st->config = std::move(c);
    shared_->states.push_back(std::move(st));
  }
}

HealthChecker::~HealthChecker() { stop(); }

void HealthChecker::setOnChange(std::function<void(bool healthy)> callback) {
  std::lock_guard lock(shared_->mutex);
  shared_->on_change = std::move(callback);
}

void HealthChecker::setOnFailedTooLong(std::function<void()> callback) {
  std::lock_guard lock(shared_->mutex);
  shared_->on_failed_too_long = std::move(callback);
}

void HealthChecker::start() {
  std::lock_guard control(control_mutex_);
  if (running_) return;
  running_ = true;
  std::vector<std::shared_ptr<CheckState>> states;
  {
    std::lock_guard lock(shared_->mutex);
    shared_->events = std::make_unique<WorkQueue>();
    shared_->watch_stop = false;
    states = shared_->states;
  }
  shared_->watchdog = std::thread([shared = shared_] { shared->watchLoop(); });
  for (auto& st : states) runners_.push_back(std::make_unique<Runner>(shared_, st));
  logger()->info("health checks started: {} check(s), failAfter {} ms", states.size(),
                 failAfter().count());
}

void HealthChecker::stop() {
  std::lock_guard control(control_mutex_);
  if (!running_) return;
  running_ = false;
  runners_.clear();  // each destructor cancels and joins its thread
  {
    std::lock_guard lock(shared_->mutex);
    shared_->watch_stop = true;
  }
  shared_->watch_cv.notify_all();
  shared_->watchdog.join();
  std::unique_ptr<WorkQueue> events;
  {
    std::lock_guard lock(shared_->mutex);
    events = std::move(shared_->events);
  }
  events->shutdown();  // delivers what was queued, outside the lock: callbacks may read state
}

void HealthChecker::replaceChecks(std::vector<HealthCheckConfig> checks, milliseconds fail_after) {
  std::lock_guard control(control_mutex_);
  std::vector<std::shared_ptr<CheckState>> old_states;
  {
    std::lock_guard lock(shared_->mutex);
    old_states = shared_->states;
  }
  std::vector<std::shared_ptr<CheckState>> new_states;
  std::vector<std::shared_ptr<CheckState>> fresh;  // need a runner
  for (auto& c : checks) {
    auto kept = std::find_if(old_states.begin(), old_states.end(),
                             [&](const auto& s) { return sameCheck(s->config, c); });
    if (kept != old_states.end()) {
      new_states.push_back(*kept);
    } else {
      auto st = std::make_shared<CheckState>();
      st->config = std::move(c);
      new_states.push_back(st);
      fresh.push_back(st);
    }
  }
  // Stop the runners of removed or changed checks first: their late results must not count.
  std::erase_if(runners_, [&](const std::unique_ptr<Runner>& r) {
    return std::find(new_states.begin(), new_states.end(), r->state()) == new_states.end();
  });
  {
    std::lock_guard lock(shared_->mutex);
    shared_->states = new_states;
    shared_->fail_after = fail_after;
    shared_->recomputeLocked();
    shared_->watch_cv.notify_all();  // a new fail_after moves the watchdog's deadline
  }
  if (running_) {
    for (auto& st : fresh) runners_.push_back(std::make_unique<Runner>(shared_, st));
  }
  logger()->info("health checks reloaded: {} check(s) ({} new or changed), failAfter {} ms",
                 new_states.size(), fresh.size(), fail_after.count());
}

bool HealthChecker::healthy() const {
  std::lock_guard lock(shared_->mutex);
  return shared_->healthy;
}

std::vector<CheckStatus> HealthChecker::states() const {
  std::lock_guard lock(shared_->mutex);
  std::vector<CheckStatus> out;
  out.reserve(shared_->states.size());
  for (const auto& s : shared_->states) {
    out.push_back(CheckStatus{s->config.name, std::string(checkTypeName(s->config.type)), s->healthy,
                              s->last_result, s->passes, s->failures});
  }
  return out;
}

std::optional<TimePoint> HealthChecker::unhealthySince() const {
  std::lock_guard lock(shared_->mutex);
  return shared_->unhealthy_since;
}

bool HealthChecker::failedLongerThan(milliseconds duration) const {
  std::lock_guard lock(shared_->mutex);
  return shared_->unhealthy_since && std::chrono::steady_clock::now() - *shared_->unhealthy_since >= duration;
}

milliseconds HealthChecker::failAfter() const {
  std::lock_guard lock(shared_->mutex);
  return shared_->fail_after;
}

}  // namespace hacoord
