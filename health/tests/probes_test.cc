// AsioProbeRunner against real local things: /bin/sh commands, loopback sockets, a tiny HTTP server.
#include "health/probes.h"

#include <utility>  // before Asio: Boost 1.74 under C++20 needs it

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <sstream>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <gtest/gtest.h>

#include "core/runtime.h"
#include "health/tests/local_services.h"
#include "support/eventually.h"

namespace hacoord {
namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;
using namespace test;

// Generous room for a loaded machine on top of a check's own timeout, for waits that must end.
constexpr milliseconds kSlack = 10000ms;

class ProbesTest : public ::testing::Test {
 protected:
  struct Timed {
    CheckOutcome outcome;
    milliseconds took{0};
  };

  // A run in progress: its id and the future of its one outcome.
  struct Pending {
    std::uint64_t id = 0;
    std::shared_ptr<std::promise<CheckOutcome>> promise = std::make_shared<std::promise<CheckOutcome>>();
    std::future<CheckOutcome> future = promise->get_future();
    Steady::time_point started = Steady::now();
  };

  Pending begin(const HealthCheckConfig& c) {
    Pending p;
    p.id = runner_->start(c, [this, promise = p.promise](CheckOutcome o) {
      ++completions_;
      promise->set_value(std::move(o));
    });
    return p;
  }
  Timed finish(Pending& p, milliseconds bound) {
    if (p.future.wait_for(bound) != std::future_status::ready) {
      ADD_FAILURE() << "no outcome within " << bound.count() << " ms";
      return {{false, "no outcome"}, bound};
    }
    CheckOutcome o = p.future.get();
    return {o, std::chrono::duration_cast<milliseconds>(Steady::now() - p.started)};
  }
  // Runs `c` once and measures it.
  Timed run(const HealthCheckConfig& c) {
    Pending p = begin(c);
    return finish(p, c.timeout + kSlack);
  }

  // Declared first, destroyed last: completions of runs cancelled at teardown still count here.
  std::atomic<int> completions_{0};
  Runtime runtime_{1};
  std::unique_ptr<AsioProbeRunner> runner_ = std::make_unique<AsioProbeRunner>(runtime_.io());
};

// ---- command ---------------------------------------------------------------------------------

TEST_F(ProbesTest, CommandExitZeroPassesOtherwiseFailsWithExitCodeAndOutput) {
  EXPECT_TRUE(run(commandCheck("t", "true")).outcome.passed);
  CheckOutcome f = run(commandCheck("f", "false")).outcome;
  EXPECT_FALSE(f.passed);
  EXPECT_EQ(f.reason, "exit 1");
  CheckOutcome msg = run(commandCheck("m", "echo 'db: no response' >&2; echo second line; exit 3")).outcome;
  EXPECT_FALSE(msg.passed);
  EXPECT_EQ(msg.reason, "exit 3: db: no response");
  CheckOutcome sig = run(commandCheck("s", "kill -TERM $$")).outcome;
  EXPECT_FALSE(sig.passed);
  EXPECT_EQ(sig.reason, "killed by signal 15");
  CheckOutcome missing = run(commandCheck("n", "/nonexistent/pg_isready -q")).outcome;
  EXPECT_FALSE(missing.passed);
  EXPECT_EQ(missing.reason.rfind("exit 127: ", 0), 0u) << missing.reason;
  EXPECT_NE(missing.reason.find("/nonexistent/pg_isready"), std::string::npos) << missing.reason;
}

TEST_F(ProbesTest, CommandWithALotOfOutputIsNotBlocked) {
  // 1 MB through a 64 KB pipe: the probe keeps reading, so the command is not stuck writing.
  Timed t = run(commandCheck("loud", "head -c 1000000 /dev/zero | tr '\\0' x; echo; exit 4", 5000ms));
  EXPECT_FALSE(t.outcome.passed);
  EXPECT_EQ(t.outcome.reason.rfind("exit 4: xxxx", 0), 0u) << t.outcome.reason.substr(0, 40);
  EXPECT_LT(t.outcome.reason.size(), 300u) << "the reason quotes one short line";
  EXPECT_LT(t.took, 5000ms) << "the command was blocked on its full pipe until the timeout";
}

TEST_F(ProbesTest, CommandGetsNoDescriptorsOfTheDaemonAndAQuietStdin) {
  TempDir dir;
  int port = 0;
  int listener = listenLoopback(1, &port);          // stands for a daemon's socket
  int inheritable = ::open("/dev/null", O_RDONLY);  // not even one without CLOEXEC leaks
  // ls lists its own descriptors: 0, 1, 2 and the one it opens to read the directory (3).
  CheckOutcome o =
      run(commandCheck("fds", "ls /proc/self/fd > " + dir.file("fds") + "; read x; test $? -ne 0")).outcome;
  ::close(listener);
  ::close(inheritable);
  EXPECT_TRUE(o.passed) << o.reason << " (stdin should be /dev/null, so read fails at EOF)";
  std::istringstream fds(readFile(dir.file("fds")));
  std::vector<int> seen;
  for (int fd; fds >> fd;) seen.push_back(fd);
  EXPECT_FALSE(seen.empty());
  for (int fd : seen) EXPECT_LE(fd, 3) << "descriptor " << fd << " leaked into the command";
}

TEST_F(ProbesTest, CommandTimeoutKillsTheWholeProcessGroupAndReapsTheShell) {
  TempDir dir;
  // The shell records its pid and that of a background child, then waits: both must die.
  const std::string cmd =
      "sleep 5 & echo $! > " + dir.file("child") + "; echo $$ > " + dir.file("shell") + "; wait";
  Timed t = run(commandCheck("slow", cmd, 1000ms));
  EXPECT_FALSE(t.outcome.passed);
  EXPECT_EQ(t.outcome.reason, "timed out after 1000 ms (process group killed)");
  EXPECT_GE(t.took, 1000ms);
  EXPECT_LT(t.took, 4000ms) << "the kill must not wait for sleep 5";
  const pid_t shell = pidFrom(dir.file("shell"));
  const pid_t child = pidFrom(dir.file("child"));
  ASSERT_GT(shell, 0);
  ASSERT_GT(child, 0);
  // Reaped before the outcome was reported, not some time later.
  EXPECT_TRUE(processReaped(shell)) << "shell " << shell << " still has a process entry (zombie?)";
  // The grandchild's parent is not us: someone else reaps it, so dead (or a zombie) is enough.
  EXPECT_TRUE(eventually([&] { return processGone(child); }, 2000ms))
      << "background child " << child << " survived the timeout";
}

TEST_F(ProbesTest, CancelStopsACommandAtOnceAndReapsIt) {
  TempDir dir;
  Pending p = begin(commandCheck("c", "echo $$ > " + dir.file("pid") + "; exec sleep 30", 20000ms));
  ASSERT_TRUE(eventually([&] { return pidFrom(dir.file("pid")) > 0; }, 5000ms));
  runner_->cancel(p.id);
  Timed t = finish(p, kSlack);
  EXPECT_FALSE(t.outcome.passed);
  EXPECT_EQ(t.outcome.reason, "cancelled");
  EXPECT_LT(t.took, 20000ms) << "cancel waited for the timeout";
  EXPECT_TRUE(processReaped(pidFrom(dir.file("pid"))));
}

TEST_F(ProbesTest, DoneRunsExactlyOnceAndNeverInsideStart) {
  // From the io thread itself: start() must return before `done` runs.
  std::atomic<bool> returned{false};
  std::atomic<bool> done_before_return{false};
  auto finished = std::make_shared<std::promise<void>>();
  HealthCheckConfig bad = tcpCheck("no port here");  // fails without any I/O
  boost::asio::post(runtime_.io(), [&, finished] {
    runner_->start(bad, [&, finished](CheckOutcome) {
      done_before_return = !returned.load();
      ++completions_;
      finished->set_value();
    });
    returned = true;
  });
  ASSERT_EQ(finished->get_future().wait_for(kSlack), std::future_status::ready);
  EXPECT_FALSE(done_before_return.load());

  // Cancelling a finished run, or one that never existed, completes nothing again.
  Pending p = begin(commandCheck("t", "true"));
  EXPECT_TRUE(finish(p, kSlack).outcome.passed);
  runner_->cancel(p.id);
  runner_->cancel(987654321);
  // A marker run queued behind the cancels on the runner's strand: once it is done, so are they.
  EXPECT_TRUE(run(commandCheck("marker", "true")).outcome.passed);
  EXPECT_EQ(completions_.load(), 3);
}

TEST_F(ProbesTest, NoZombiesAfterManyRunsOfEveryKind) {
  std::vector<Pending> runs;
  for (int i = 0; i < 8; ++i) {
    runs.push_back(begin(commandCheck("ok", "true")));
    runs.push_back(begin(commandCheck("bad", "exit 2")));
    runs.push_back(begin(commandCheck("slow", "sleep 5", 100ms)));
    runs.push_back(begin(commandCheck("cut", "sleep 5", 5000ms)));
  }
  for (std::size_t i = 3; i < runs.size(); i += 4) runner_->cancel(runs[i].id);
  for (auto& p : runs) finish(p, 5000ms + kSlack);
  EXPECT_EQ(zombieChildren(), 0);
  EXPECT_EQ(completions_.load(), 32);
}

TEST_F(ProbesTest, DestroyingTheRunnerCancelsItsRuns) {
  TempDir dir;
  Pending p = begin(commandCheck("c", "echo $$ > " + dir.file("pid") + "; exec sleep 30", 20000ms));
  ASSERT_TRUE(eventually([&] { return pidFrom(dir.file("pid")) > 0; }, 5000ms));
  runner_.reset();
  Timed t = finish(p, kSlack);
  EXPECT_EQ(t.outcome.reason, "cancelled");
  EXPECT_TRUE(processReaped(pidFrom(dir.file("pid"))));
}

TEST(AsioProbeRunnerTeardown, AnIoContextDestroyedMidRunKillsAndReapsTheCommand) {
  TempDir dir;
  auto io = std::make_unique<boost::asio::io_context>();
  auto runner = std::make_unique<AsioProbeRunner>(*io);
  std::atomic<int> completions{0};
  runner->start(commandCheck("c", "echo $$ > " + dir.file("pid") + "; exec sleep 30", 20000ms),
                [&](CheckOutcome) { ++completions; });
  ASSERT_TRUE(eventually(
      [&] {
        io->poll();
        return pidFrom(dir.file("pid")) > 0;
      },
      5000ms));
  const pid_t pid = pidFrom(dir.file("pid"));
  runner.reset();
  io.reset();  // no thread runs it any more: the run's handlers are destroyed, not run
  EXPECT_TRUE(processReaped(pid)) << "the command outlived the io_context";
  EXPECT_EQ(completions.load(), 0);
}

// ---- TCP -------------------------------------------------------------------------------------

TEST_F(ProbesTest, TcpPassesAgainstAListenerFailsAgainstAClosedPortAtOnce) {
  int port = 0;
  int fd = listenLoopback(16, &port);
  EXPECT_TRUE(run(tcpCheck("127.0.0.1:" + std::to_string(port))).outcome.passed);
  ::close(fd);

  const int closed = freeLoopbackPort();
  Timed t = run(tcpCheck("127.0.0.1:" + std::to_string(closed), 5000ms));
  EXPECT_FALSE(t.outcome.passed);
  EXPECT_EQ(t.outcome.reason, "connect to 127.0.0.1:" + std::to_string(closed) + ": Connection refused");
  EXPECT_LT(t.took, 5000ms) << "a refusal is an answer, not a timeout";
}

TEST_F(ProbesTest, TcpTimesOutWhenNobodyAnswers) {
  // A listener whose accept queue (backlog 0: one connection) is full drops further SYNs.
  int port = 0;
  int listener = listenLoopback(0, &port);
  int filler = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::connect(filler, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  pollfd pfd{filler, POLLOUT, 0};
  ASSERT_EQ(::poll(&pfd, 1, 5000), 1) << "the filler connection did not complete";

  Timed t = run(tcpCheck("127.0.0.1:" + std::to_string(port), 300ms));
  ::close(filler);
  ::close(listener);
  EXPECT_FALSE(t.outcome.passed);
  EXPECT_EQ(t.outcome.reason, "connect to 127.0.0.1:" + std::to_string(port) + " timed out after 300 ms");
  EXPECT_GE(t.took, 300ms);
}

TEST_F(ProbesTest, TcpRejectsABadAddressSayingWhy) {
  CheckOutcome no_port = run(tcpCheck("127.0.0.1")).outcome;
  EXPECT_FALSE(no_port.passed);
  EXPECT_EQ(no_port.reason, "bad address \"127.0.0.1\": expected host:port");
  CheckOutcome v6 = run(tcpCheck("::1:80")).outcome;
  EXPECT_EQ(v6.reason, "bad address \"::1:80\": an IPv6 host needs brackets, e.g. [::1]:4222");
  CheckOutcome range = run(tcpCheck("127.0.0.1:70000")).outcome;
  EXPECT_EQ(range.reason, "bad address \"127.0.0.1:70000\": port must be between 1 and 65535");
}

TEST_F(ProbesTest, TcpResolvesNamesToo) {
  int port = 0;
  int fd = listenLoopback(16, &port);
  // "localhost" comes from /etc/hosts (no DNS); it may be ::1 first, then 127.0.0.1.
  CheckOutcome o = run(tcpCheck("localhost:" + std::to_string(port))).outcome;
  ::close(fd);
  EXPECT_TRUE(o.passed) << o.reason;
}

TEST_F(ProbesTest, TcpIPv6LiteralInBrackets) {
  const int closed = freeLoopbackPort();
  CheckOutcome o = run(tcpCheck("[::1]:" + std::to_string(closed))).outcome;
  EXPECT_FALSE(o.passed);
  // Refused, or no IPv6 on this host: either way the address is quoted with brackets.
  EXPECT_EQ(o.reason.rfind("connect to [::1]:" + std::to_string(closed) + ": ", 0), 0u) << o.reason;
}

// ---- HTTP ------------------------------------------------------------------------------------

TEST_F(ProbesTest, HttpTwoHundredsAndRedirectsPassErrorsFail) {
  TinyHttpServer ok("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
  TinyHttpServer redirect("HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\n\r\n");
  TinyHttpServer broken("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n");
  TinyHttpServer missing("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
  EXPECT_TRUE(run(httpCheck(ok.url("/healthz?deep=1#frag"))).outcome.passed);
  const std::string request = ok.lastRequest();
  EXPECT_EQ(request.substr(0, request.find("\r\n")), "GET /healthz?deep=1 HTTP/1.0");
  EXPECT_NE(request.find("\r\nHost: 127.0.0.1:" + std::to_string(ok.port()) + "\r\n"), std::string::npos)
      << request;
  EXPECT_TRUE(run(httpCheck(redirect.url(""))).outcome.passed);
  EXPECT_EQ(redirect.lastRequest().substr(0, 16), "GET / HTTP/1.0\r\n");
  CheckOutcome f = run(httpCheck(broken.url("/"))).outcome;
  EXPECT_FALSE(f.passed);
  EXPECT_EQ(f.reason, "HTTP 500 Internal Server Error");
  EXPECT_EQ(run(httpCheck(missing.url("/"))).outcome.reason, "HTTP 404 Not Found");
}

TEST_F(ProbesTest, HttpReadsOnlyTheHeader) {
  // A 200 whose body never ends: the verdict comes from the header, well before the timeout.
  TinyHttpServer endless("HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\npartial", /*keep_open=*/true);
  Timed t = run(httpCheck(endless.url("/"), 5000ms));
  EXPECT_TRUE(t.outcome.passed) << t.outcome.reason;
  EXPECT_LT(t.took, 5000ms);
}

TEST_F(ProbesTest, HttpSilenceGarbageAndClosedPortsFail) {
  TinyHttpServer silent("");
  Timed t = run(httpCheck(silent.url("/"), 300ms));
  EXPECT_FALSE(t.outcome.passed);
  EXPECT_EQ(t.outcome.reason, "waiting for the HTTP status line timed out after 300 ms");
  EXPECT_GE(t.took, 300ms);

  TinyHttpServer garbage("SSH-2.0-OpenSSH_9.2\r\n");
  CheckOutcome g = run(httpCheck(garbage.url("/"))).outcome;
  EXPECT_FALSE(g.passed);
  EXPECT_EQ(g.reason, "not an HTTP status line: \"SSH-2.0-OpenSSH_9.2\"");

  TinyHttpServer nothing("\r\n");
  EXPECT_FALSE(run(httpCheck(nothing.url("/"))).outcome.passed);

  const int closed = freeLoopbackPort();
  CheckOutcome c = run(httpCheck("http://127.0.0.1:" + std::to_string(closed) + "/")).outcome;
  EXPECT_FALSE(c.passed);
  EXPECT_EQ(c.reason, "connect to 127.0.0.1:" + std::to_string(closed) + ": Connection refused");
}

TEST_F(ProbesTest, HttpRejectsBadUrlsSayingWhy) {
  CheckOutcome https = run(httpCheck("https://127.0.0.1/")).outcome;
  EXPECT_FALSE(https.passed);
  EXPECT_EQ(https.reason, "bad url \"https://127.0.0.1/\": only http://host[:port]/path");
  CheckOutcome user = run(httpCheck("http://admin:secret@127.0.0.1/")).outcome;
  EXPECT_NE(user.reason.find("no user:password@"), std::string::npos) << user.reason;
  CheckOutcome port = run(httpCheck("http://127.0.0.1:http/")).outcome;
  EXPECT_EQ(port.reason, "bad url \"http://127.0.0.1:http/\": port must be a decimal number");
}

TEST_F(ProbesTest, CancelStopsAnHttpRunAtOnce) {
  TinyHttpServer silent("");
  Pending p = begin(httpCheck(silent.url("/"), 20000ms));
  ASSERT_TRUE(eventually([&] { return silent.requests() > 0; }, 5000ms));
  runner_->cancel(p.id);
  Timed t = finish(p, kSlack);
  EXPECT_EQ(t.outcome.reason, "cancelled");
  EXPECT_LT(t.took, 20000ms);
}

}  // namespace
}  // namespace hacoord
