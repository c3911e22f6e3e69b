// HealthChecker against real local things: /bin/sh commands, loopback sockets, a tiny HTTP server.
#include "health/checks.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "support/eventually.h"
#include "support/nats_server_fixture.h"

namespace hacoord {
namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

// A temp dir for pid files and plans, removed afterwards.
class TempDir {
 public:
  TempDir() : path_(test::makeTempDir("hacoord-health")) {}
  ~TempDir() { test::removeTree(path_); }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void writeFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

// A pid written by a command; 0 until the file holds a complete line.
pid_t pidFrom(const std::string& path) {
  const std::string text = readFile(path);
  if (text.empty() || text.back() != '\n') return 0;
  return static_cast<pid_t>(std::stol(text));
}

// The process no longer exists, or is a zombie (killed, waiting for a parent that is not us).
bool processGone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return true;
  std::string line;
  std::getline(stat, line);
  const std::size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'Z';
}

// No entry at all: the process is dead AND its parent (us) has reaped it.
bool processReaped(pid_t pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

HealthCheckConfig command(const std::string& name, const std::string& cmd,
                          milliseconds timeout = 2000ms, milliseconds interval = 1000ms) {
  HealthCheckConfig c;
  c.name = name;
  c.type = HealthCheckConfig::Type::kCommand;
  c.command = cmd;
  c.timeout = timeout;
  c.interval = interval;
  return c;
}

HealthCheckConfig tcp(const std::string& address, milliseconds timeout = 1000ms) {
  HealthCheckConfig c;
  c.name = "tcp";
  c.type = HealthCheckConfig::Type::kTcp;
  c.address = address;
  c.timeout = timeout;
  return c;
}

HealthCheckConfig http(const std::string& url, milliseconds timeout = 1000ms) {
  HealthCheckConfig c;
  c.name = "http";
  c.type = HealthCheckConfig::Type::kHttp;
  c.url = url;
  c.timeout = timeout;
  return c;
}

int listenLoopback(int backlog, int* port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  EXPECT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_EQ(::listen(fd, backlog), 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  *port = ntohs(addr.sin_port);
  return fd;
}

// A loopback HTTP server on a thread of its own: reads one request head per connection and
// answers with `response` verbatim, or holds the connection open unanswered when it is "".
class TinyHttpServer {
 public:
  explicit TinyHttpServer(std::string response)
      : response_(std::move(response)), stop_fd_(::eventfd(0, EFD_CLOEXEC)) {
    listen_fd_ = listenLoopback(16, &port_);
    thread_ = std::thread([this] { loop(); });
  }
  ~TinyHttpServer() {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(stop_fd_, &one, sizeof one);
    thread_.join();
    for (int fd : held_) ::close(fd);
    ::close(listen_fd_);
    ::close(stop_fd_);
  }
  int port() const { return port_; }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  std::string lastRequest() const {
    std::lock_guard lock(mutex_);
    return last_request_;
  }
  int requests() const { return requests_.load(); }

 private:
  // Waits for `fd` (or the stop event); false when stopping.
  bool waitFor(int fd) {
    pollfd fds[2] = {{fd, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    while (::poll(fds, 2, -1) < 0) {
    }
    return fds[1].revents == 0;
  }
  void loop() {
    while (waitFor(listen_fd_)) {
      int conn = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn < 0) continue;
      std::string head;
      char buf[1024];
      while (head.find("\r\n\r\n") == std::string::npos && waitFor(conn)) {
        ssize_t r = ::recv(conn, buf, sizeof buf, 0);
        if (r <= 0) break;
        head.append(buf, static_cast<std::size_t>(r));
      }
      {
        std::lock_guard lock(mutex_);
        last_request_ = head;
      }
      ++requests_;
      if (response_.empty()) {
        held_.push_back(conn);
        continue;
      }
      [[maybe_unused]] ssize_t w = ::send(conn, response_.data(), response_.size(), MSG_NOSIGNAL);
      ::close(conn);
    }
  }

  std::string response_;
  int stop_fd_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::vector<int> held_;
  mutable std::mutex mutex_;
  std::string last_request_;
  std::atomic<int> requests_{0};
  std::thread thread_;
};

// Runs one check and measures it.
struct Timed {
  CheckOutcome outcome;
  milliseconds took;
};
Timed timedRun(const HealthCheckConfig& c, int cancel_fd = -1) {
  const auto t0 = Steady::now();
  CheckOutcome o = runCheckOnce(c, cancel_fd);
  return {o, std::chrono::duration_cast<milliseconds>(Steady::now() - t0)};
}

// ---- single runs ---------------------------------------------------------------------------

TEST(CommandCheck, ExitZeroPassesOtherwiseFailsWithExitCodeAndOutput) {
  EXPECT_TRUE(runCheckOnce(command("t", "true")).passed);
  CheckOutcome f = runCheckOnce(command("f", "false"));
  EXPECT_FALSE(f.passed);
  EXPECT_EQ(f.reason, "exit 1");
  CheckOutcome msg = runCheckOnce(command("m", "echo 'db: no response' >&2; echo second line; exit 3"));
  EXPECT_FALSE(msg.passed);
  EXPECT_EQ(msg.reason, "exit 3: db: no response");
  CheckOutcome sig = runCheckOnce(command("s", "kill -TERM $$"));
  EXPECT_FALSE(sig.passed);
  EXPECT_EQ(sig.reason, "killed by signal 15");
}

TEST(CommandCheck, ALotOfOutputDoesNotBlockTheCommand) {
  // 1 MB through a 64 KB pipe: the checker keeps reading, so the command is not stuck writing.
  Timed t = timedRun(command("loud", "head -c 1000000 /dev/zero | tr '\\0' x; exit 0", 5000ms));
  EXPECT_TRUE(t.outcome.passed) << t.outcome.reason;
}

TEST(CommandCheck, GetsNoDescriptorsOfTheDaemonAndAQuietStdin) {
  TempDir dir;
  int port = 0;
  int listener = listenLoopback(1, &port);  // stands for a daemon's socket
  // ls lists its own descriptors: 0, 1, 2 and the one it opens to read the directory (3).
  CheckOutcome o = runCheckOnce(command("fds", "ls /proc/self/fd > " + dir.file("fds") + "; read x; test $? -ne 0"));
  ::close(listener);
  EXPECT_TRUE(o.passed) << o.reason << " (stdin should be /dev/null, so read fails at EOF)";
  std::istringstream fds(readFile(dir.file("fds")));
  std::vector<int> seen;
  for (int fd; fds >> fd;) seen.push_back(fd);
  for (int fd : seen) EXPECT_LE(fd, 3) << "descriptor " << fd << " leaked into the command";
}

TEST(CommandCheck, TimeoutKillsTheWholeProcessGroupAndReapsTheShell) {
  TempDir dir;
  // The shell records its pid and that of a background child, then waits: both must die.
  const std::string cmd = "sleep 5 & echo $! > " + dir.file("child") + "; echo $$ > " +
                          dir.file("shell") + "; wait";
  Timed t = timedRun(command("slow", cmd, 1000ms));
  EXPECT_FALSE(t.outcome.passed);
  EXPECT_EQ(t.outcome.reason, "timed out after 1000 ms (process group killed)");
  EXPECT_GE(t.took, 1000ms);
  EXPECT_LT(t.took, 4000ms) << "the kill must not wait for sleep 5";
  const pid_t shell = pidFrom(dir.file("shell"));
  const pid_t child = pidFrom(dir.file("child"));
  ASSERT_GT(shell, 0);
  ASSERT_GT(child, 0);
  EXPECT_TRUE(processReaped(shell)) << "shell " << shell << " still has a process entry (zombie?)";
  // The grandchild's parent is not us: someone else reaps it, so dead (or a zombie) is enough.
  EXPECT_TRUE(eventually([&] { return processGone(child); }, 2000ms))
      << "background child " << child << " survived the timeout";
}

TEST(CommandCheck, CancelStopsARunAtOnce) {
  TempDir dir;
  int cancel = ::eventfd(0, EFD_CLOEXEC);
  std::thread canceller([&] {
    eventually([&] { return pidFrom(dir.file("pid")) > 0; }, 5000ms);
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(cancel, &one, sizeof one);
  });
  Timed t = timedRun(command("c", "echo $$ > " + dir.file("pid") + "; exec sleep 10", 10000ms), cancel);
  canceller.join();
  ::close(cancel);
  EXPECT_FALSE(t.outcome.passed);
  EXPECT_EQ(t.outcome.reason, "cancelled");
  EXPECT_LT(t.took, 3000ms);
  EXPECT_TRUE(processReaped(pidFrom(dir.file("pid"))));
}

TEST(TcpCheck, PassesAgainstAListenerFailsAgainstAClosedPort) {
  int port = 0;
  int fd = listenLoopback(16, &port);
  EXPECT_TRUE(runCheckOnce(tcp("127.0.0.1:" + std::to_string(port))).passed);
  ::close(fd);

  const int closed = test::freeLoopbackPort();
  Timed t = timedRun(tcp("127.0.0.1:" + std::to_string(closed)));
  EXPECT_FALSE(t.outcome.passed);
  EXPECT_EQ(t.outcome.reason, "connect to 127.0.0.1:" + std::to_string(closed) + ": Connection refused");
  EXPECT_LT(t.took, 500ms);  // a refusal is immediate, not a timeout

  CheckOutcome bad = runCheckOnce(tcp("127.0.0.1"));
  EXPECT_FALSE(bad.passed);
  EXPECT_NE(bad.reason.find("bad address"), std::string::npos) << bad.reason;
}

TEST(TcpCheck, ResolvesNamesToo) {
  int port = 0;
  int fd = listenLoopback(16, &port);
  // "localhost" comes from /etc/hosts (no DNS); it may be ::1 first, then 127.0.0.1.
  CheckOutcome o = runCheckOnce(tcp("localhost:" + std::to_string(port)));
  ::close(fd);
  EXPECT_TRUE(o.passed) << o.reason;
}

TEST(HttpCheck, TwoHundredsAndRedirectsPassErrorsFail) {
  TinyHttpServer ok("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
  TinyHttpServer redirect("HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\n\r\n");
  TinyHttpServer broken("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n");
  EXPECT_TRUE(runCheckOnce(http(ok.url("/healthz?deep=1#frag"))).passed);
  EXPECT_EQ(ok.lastRequest().substr(0, ok.lastRequest().find("\r\n")), "GET /healthz?deep=1 HTTP/1.0");
  EXPECT_NE(ok.lastRequest().find("\r\nHost: 127.0.0.1:" + std::to_string(ok.port()) + "\r\n"),
            std::string::npos)
      << ok.lastRequest();
  EXPECT_TRUE(runCheckOnce(http(redirect.url(""))).passed);
  EXPECT_EQ(redirect.lastRequest().substr(0, 16), "GET / HTTP/1.0\r\n");
  CheckOutcome f = runCheckOnce(http(broken.url("/")));
  EXPECT_FALSE(f.passed);
  EXPECT_EQ(f.reason, "HTTP 500 Internal Server Error");
}

TEST(HttpCheck, SilenceGarbageAndClosedPortsFail) {
  TinyHttpServer silent("");
  Timed t = timedRun(http(silent.url("/"), 300ms));
  EXPECT_FALSE(t.outcome.passed);
  EXPECT_EQ(t.outcome.reason, "waiting for the HTTP status line timed out after 300 ms");
  EXPECT_GE(t.took, 290ms);
  EXPECT_LT(t.took, 1500ms);

  TinyHttpServer garbage("SSH-2.0-OpenSSH_9.2\r\n");
  CheckOutcome g = runCheckOnce(http(garbage.url("/")));
  EXPECT_FALSE(g.passed);
  EXPECT_EQ(g.reason, "not an HTTP status line: \"SSH-2.0-OpenSSH_9.2\"");

  TinyHttpServer nothing("\r\n");
  EXPECT_FALSE(runCheckOnce(http(nothing.url("/"))).passed);

  const int closed = test::freeLoopbackPort();
  CheckOutcome c = runCheckOnce(http("http://127.0.0.1:" + std::to_string(closed) + "/"));
  EXPECT_FALSE(c.passed);
  EXPECT_NE(c.reason.find("Connection refused"), std::string::npos) << c.reason;

  CheckOutcome https = runCheckOnce(http("https://127.0.0.1/"));
  EXPECT_FALSE(https.passed);
  EXPECT_NE(https.reason.find("only http://"), std::string::npos) << https.reason;
}

// ---- HealthChecker --------------------------------------------------------------------------

// Records callbacks in order, with what the plan's run counter said when each arrived.
struct Recorder {
  std::mutex mutex;
  std::vector<bool> changes;
  std::vector<std::string> runs_at_change;
  std::atomic<int> failed_too_long{0};
  std::vector<bool> snapshot() {
    std::lock_guard lock(mutex);
    return changes;
  }
};

TEST(HealthChecker, WithoutChecksIsHealthy) {
  HealthChecker checker({}, 1000ms);
  EXPECT_TRUE(checker.healthy());
  checker.start();
  EXPECT_TRUE(checker.healthy());
  EXPECT_TRUE(checker.states().empty());
  EXPECT_FALSE(checker.unhealthySince().has_value());
  EXPECT_FALSE(checker.failedLongerThan(0ms));
  checker.stop();
  checker.stop();  // idempotent
}

TEST(HealthChecker, StartsHealthyAndPendingBeforeTheFirstRun) {
  HealthChecker checker({command("db", "false")}, 1000ms);
  EXPECT_TRUE(checker.healthy());
  auto states = checker.states();
  ASSERT_EQ(states.size(), 1u);
  EXPECT_EQ(states[0].name, "db");
  EXPECT_EQ(states[0].type, "command");
  EXPECT_TRUE(states[0].healthy);
  EXPECT_EQ(states[0].last_result, "pending");
}

// The command follows a plan, one letter per run (P pass, F fail; the last letter repeats), and
// writes how many runs it has made, so each verdict change can be pinned to the run that caused it.
std::string planCommand(const TempDir& dir, const std::string& plan) {
  writeFile(dir.file("plan"), plan);
  const std::string cnt = dir.file("runs");
  return "n=$(cat " + cnt + " 2>/dev/null || echo 0); n=$((n+1)); echo $n > " + cnt + ".tmp; mv " +
         cnt + ".tmp " + cnt + "; p=$(cat " + dir.file("plan") +
         "); i=$n; [ $i -gt ${#p} ] && i=${#p}; c=$(echo \"$p\" | cut -c$i); [ \"$c\" = P ]";
}

int runsSoFar(const TempDir& dir) {
  const std::string t = readFile(dir.file("runs"));
  return t.empty() ? 0 : std::stoi(t);
}

TEST(HealthChecker, RiseAndFallCountConsecutiveResults) {
  TempDir dir;
  // Runs: 1 F, 2 F, 3 P (resets the failures), 4-6 F F F (fall=3 -> unhealthy after run 6),
  //       7 P (rise=2: still unhealthy), 8 P (healthy), then passes.
  HealthCheckConfig c = command("plan", planCommand(dir, "FFPFFFPP"), 2000ms, 400ms);
  c.fall = 3;
  c.rise = 2;
  HealthChecker checker({c}, 60000ms);
  Recorder rec;
  checker.setOnChange([&](bool healthy) {
    std::lock_guard lock(rec.mutex);
    rec.changes.push_back(healthy);
    rec.runs_at_change.push_back(readFile(dir.file("runs")));
  });
  checker.start();
  ASSERT_TRUE(eventually([&] { return runsSoFar(dir) >= 10; }, 20000ms));
  checker.stop();
  EXPECT_EQ(rec.snapshot(), (std::vector<bool>{false, true}));
  // Each run's successor starts 400 ms after it: the callback arrives long before that.
  EXPECT_EQ(rec.runs_at_change, (std::vector<std::string>{"6\n", "8\n"}));
  auto states = checker.states();
  ASSERT_EQ(states.size(), 1u);
  EXPECT_TRUE(states[0].healthy);
  EXPECT_EQ(states[0].last_result, "pass");
  EXPECT_GE(states[0].consecutive_passes, 3);  // runs 7-9 at least (run 10 may be cut by stop)
  EXPECT_EQ(states[0].consecutive_failures, 0);
  EXPECT_TRUE(checker.healthy());
}

TEST(HealthChecker, UnhealthyLongEnoughFiresOnceAndFailedLongerThanAgrees) {
  HealthCheckConfig c = command("down", "false", 2000ms, 20ms);
  c.fall = 1;
  HealthChecker checker({c}, 1000ms);
  Recorder rec;
  std::atomic<bool> early_too_long{true};
  std::atomic<long long> fired_after_ms{-1};
  checker.setOnChange([&](bool healthy) {
    std::lock_guard lock(rec.mutex);
    rec.changes.push_back(healthy);
    if (!healthy) early_too_long = checker.failedLongerThan(1000ms);
  });
  checker.setOnFailedTooLong([&] {
    ++rec.failed_too_long;
    auto since = checker.unhealthySince();
    if (since) {
      fired_after_ms = std::chrono::duration_cast<milliseconds>(Steady::now() - *since).count();
    }
  });
  const auto t0 = Steady::now();
  checker.start();
  ASSERT_TRUE(eventually([&] { return rec.failed_too_long.load() == 1; }, 5000ms));
  EXPECT_FALSE(early_too_long.load());
  EXPECT_GE(fired_after_ms.load(), 1000);
  EXPECT_LT(fired_after_ms.load(), 3000);
  EXPECT_TRUE(checker.failedLongerThan(1000ms));
  EXPECT_FALSE(checker.failedLongerThan(60000ms));
  ASSERT_TRUE(checker.unhealthySince().has_value());
  EXPECT_GE(*checker.unhealthySince(), t0);
  // Still failing: it does not fire again for the same unhealthy period.
  const auto states_before = checker.states()[0].consecutive_failures;
  ASSERT_TRUE(eventually([&] { return checker.states()[0].consecutive_failures >= states_before + 20; }, 5000ms));
  EXPECT_EQ(rec.failed_too_long.load(), 1);
  checker.stop();
  EXPECT_EQ(rec.snapshot(), (std::vector<bool>{false}));
}

TEST(HealthChecker, RecoveringBeforeFailAfterDoesNotFire) {
  TempDir dir;
  HealthCheckConfig c = command("blip", planCommand(dir, "FPP"), 2000ms, 50ms);
  c.fall = 1;
  c.rise = 2;
  HealthChecker checker({c}, 2000ms);
  Recorder rec;
  checker.setOnChange([&](bool healthy) {
    std::lock_guard lock(rec.mutex);
    rec.changes.push_back(healthy);
  });
  checker.setOnFailedTooLong([&] { ++rec.failed_too_long; });
  const auto t0 = Steady::now();
  checker.start();
  // Unhealthy after run 1, healthy after run 3 (~100 ms in); then well past failAfter.
  ASSERT_TRUE(eventually(
      [&] { return runsSoFar(dir) >= 15 && Steady::now() - t0 >= 2500ms; }, 15000ms));
  checker.stop();
  EXPECT_EQ(rec.snapshot(), (std::vector<bool>{false, true}));
  EXPECT_EQ(rec.failed_too_long.load(), 0);
  EXPECT_FALSE(checker.unhealthySince().has_value());
  EXPECT_FALSE(checker.failedLongerThan(0ms));
}

TEST(HealthChecker, ASlowCheckDoesNotDelayAFastOne) {
  TempDir dir;
  HealthCheckConfig slow = command("slow", "echo $$ > " + dir.file("slow") + "; exec sleep 20", 15000ms, 20000ms);
  HealthCheckConfig fast = command("fast", "true", 2000ms, 20ms);
  HealthChecker checker({slow, fast}, 1000ms);
  checker.start();
  ASSERT_TRUE(eventually([&] { return pidFrom(dir.file("slow")) > 0; }, 5000ms));
  EXPECT_TRUE(eventually([&] { return checker.states()[1].consecutive_passes >= 10; }, 5000ms))
      << "the fast check made only " << checker.states()[1].consecutive_passes << " runs";
  EXPECT_EQ(checker.states()[0].last_result, "pending");
  // stop() does not wait out the slow check's 15 s timeout: its process group is killed.
  const auto t0 = Steady::now();
  checker.stop();
  EXPECT_LT(Steady::now() - t0, 2000ms);
  EXPECT_TRUE(processReaped(pidFrom(dir.file("slow"))));
  EXPECT_EQ(checker.states()[0].last_result, "pending");  // a cancelled run is not a result
}

TEST(HealthChecker, MixedChecksAgainstLocalServices) {
  int port = 0;
  int listener = listenLoopback(16, &port);
  TinyHttpServer web("HTTP/1.0 200 OK\r\n\r\n");
  HealthCheckConfig t = tcp("127.0.0.1:" + std::to_string(port));
  t.interval = 20ms;
  HealthCheckConfig h = http(web.url("/ready"));
  h.interval = 20ms;
  HealthCheckConfig c = command("cmd", "true", 2000ms, 20ms);
  HealthChecker checker({t, h, c}, 1000ms);
  checker.start();
  EXPECT_TRUE(eventually([&] {
    auto s = checker.states();
    return std::all_of(s.begin(), s.end(), [](const CheckStatus& x) { return x.consecutive_passes >= 3; });
  }, 5000ms));
  EXPECT_TRUE(checker.healthy());
  EXPECT_EQ(checker.states()[0].type, "tcp");
  EXPECT_EQ(checker.states()[1].type, "http");
  EXPECT_GE(web.requests(), 3);
  // The TCP service goes away: fall (3) failures later the node is unhealthy.
  ::close(listener);
  EXPECT_TRUE(eventually([&] { return !checker.healthy(); }, 5000ms));
  auto s = checker.states();
  EXPECT_FALSE(s[0].healthy);
  EXPECT_EQ(s[0].last_result.rfind("fail: connect to 127.0.0.1:", 0), 0u) << s[0].last_result;
  EXPECT_TRUE(s[1].healthy);
  EXPECT_TRUE(s[2].healthy);
  checker.stop();
}

TEST(HealthChecker, ReplaceChecksKeepsUnchangedOnesAndRecomputes) {
  HealthCheckConfig bad = command("bad", "false", 2000ms, 20ms);
  bad.fall = 1;
  HealthCheckConfig good = command("good", "true", 2000ms, 20ms);
  HealthChecker checker({good, bad}, 60000ms);
  Recorder rec;
  checker.setOnChange([&](bool healthy) {
    std::lock_guard lock(rec.mutex);
    rec.changes.push_back(healthy);
  });
  checker.start();
  ASSERT_TRUE(eventually([&] { return !checker.healthy() && checker.states()[0].consecutive_passes >= 3; }, 5000ms));
  const int good_passes = checker.states()[0].consecutive_passes;

  // SIGHUP: "bad" is dropped, "good" unchanged, a new "extra" appears.
  checker.replaceChecks({good, command("extra", "true", 2000ms, 20ms)}, 5000ms);
  EXPECT_TRUE(checker.healthy());
  EXPECT_EQ(checker.failAfter(), 5000ms);
  auto s = checker.states();
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].name, "good");
  EXPECT_GE(s[0].consecutive_passes, good_passes);  // kept its counters and thread
  EXPECT_EQ(s[1].name, "extra");
  EXPECT_TRUE(eventually([&] { return checker.states()[1].last_result == "pass"; }, 5000ms));
  checker.stop();
  EXPECT_EQ(rec.snapshot(), (std::vector<bool>{false, true}));

  // A changed check (same name, new command) starts afresh.
  HealthCheckConfig good_changed = good;
  good_changed.command = "exit 0";
  checker.replaceChecks({good_changed}, 5000ms);
  EXPECT_EQ(checker.states()[0].last_result, "pending");
  EXPECT_EQ(checker.states()[0].consecutive_passes, 0);
}

TEST(HealthChecker, CanBeRestartedAfterStop) {
  HealthChecker checker({command("t", "true", 2000ms, 20ms)}, 1000ms);
  checker.start();
  ASSERT_TRUE(eventually([&] { return checker.states()[0].consecutive_passes >= 1; }, 5000ms));
  checker.stop();
  const int passes = checker.states()[0].consecutive_passes;
  checker.start();
  EXPECT_TRUE(eventually([&] { return checker.states()[0].consecutive_passes > passes; }, 5000ms));
}

}  // namespace
}  // namespace hacoord
