// HttpServer on the runtime's io_context: GET/HEAD/404/405, request limits, timeouts against idle
// and slow clients, the connection cap under thousands of idle sockets, accept back-off, stop().
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/runtime.h"
#include "manager/http_server.h"
#include "support/eventually.h"

namespace hacoord {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

// Bounds for "eventually" that only a broken server exceeds; they are not the behaviour under test.
constexpr auto kPatience = 10s;

// A raw loopback TCP client, so that tests can send exactly the bytes (or silence) they need.
class Client {
 public:
  explicit Client(int port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    if (fd_ < 0) return;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~Client() { close(); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  bool send(std::string_view data) {
    return ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size());
  }

  // Everything until the server closes, waiting at most `bound` for each read.
  std::string readToEnd(std::chrono::milliseconds bound = 5s) {
    timeval tv{static_cast<time_t>(bound.count() / 1000),
               static_cast<suseconds_t>(bound.count() % 1000 * 1000)};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string out;
    char buf[65536];
    for (;;) {
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
  }

  // Without blocking: has the server closed (or reset) the connection? Drains what arrived.
  bool peerClosed() {
    char buf[4096];
    for (;;) {
      const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0) return true;
      if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
    }
  }

 private:
  int fd_ = -1;
};

std::string roundTrip(int port, std::string_view request) {
  Client c(port);
  if (!c.connected()) return "connect failed: " + std::string(strerror(errno));
  if (!c.send(request)) return "send failed";
  return c.readToEnd();
}

std::string get(int port, const std::string& path) {
  return roundTrip(port, "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
}

int statusOf(const std::string& response) {
  if (response.rfind("HTTP/1.", 0) != 0 || response.size() < 12) return -1;
  return std::stoi(response.substr(9, 3));
}

std::string bodyOf(const std::string& response) {
  const auto end = response.find("\r\n\r\n");
  return end == std::string::npos ? "" : response.substr(end + 4);
}

bool canConnect(int port) { return Client(port).connected(); }

// Sets the soft RLIMIT_NOFILE for one test and puts the old one back.
class FdLimit {
 public:
  explicit FdLimit(rlim_t soft) {
    ::getrlimit(RLIMIT_NOFILE, &saved_);
    rlimit wanted = saved_;
    wanted.rlim_cur = soft;
    ok_ = soft <= saved_.rlim_max && ::setrlimit(RLIMIT_NOFILE, &wanted) == 0;
  }
  ~FdLimit() { ::setrlimit(RLIMIT_NOFILE, &saved_); }
  bool ok() const { return ok_; }

 private:
  rlimit saved_{};
  bool ok_ = false;
};

class HttpServerTest : public ::testing::Test {
 protected:
  void start(int max_connections = 64, std::chrono::milliseconds timeout = 5000ms) {
    HttpServerOptions options;
    options.listen = "127.0.0.1:0";
    options.max_connections = max_connections;
    options.request_timeout = timeout;
    auto server = HttpServer::start(runtime_.io(), options, [this](const std::string& path) {
      ++calls_;
      if (path == "/healthz") return HttpResponse{200, "text/plain; charset=utf-8", "ok\n"};
      if (path == "/big") return HttpResponse{200, "text/plain", std::string(16 << 20, 'x')};
      if (path == "/stop") {
        server_->stop();
        return HttpResponse{200, "text/plain", "stopping\n"};
      }
      return HttpResponse{404, "text/plain; charset=utf-8", "not found\n"};
    });
    ASSERT_TRUE(server.isOk()) << server.status().toString();
    server_ = std::move(*server);
    port_ = server_->port();
    ASSERT_GT(port_, 0);
  }

  void TearDown() override {
    if (server_) server_->stop();
    server_.reset();
  }

  Runtime runtime_;
  std::unique_ptr<HttpServer> server_;
  int port_ = 0;
  std::atomic<int> calls_{0};
};

TEST_F(HttpServerTest, AnswersGetWithTheHandlersResponse) {
  start();
  const std::string r = get(port_, "/healthz?verbose=1");  // the query is not part of the path
  EXPECT_EQ(statusOf(r), 200) << r;
  EXPECT_NE(r.find("Content-Type: text/plain; charset=utf-8\r\n"), std::string::npos) << r;
  EXPECT_NE(r.find("Content-Length: 3\r\n"), std::string::npos) << r;
  EXPECT_NE(r.find("Connection: close\r\n"), std::string::npos) << r;
  EXPECT_EQ(bodyOf(r), "ok\n");
  EXPECT_EQ(server_->stats().accepted, 1u);
}

TEST_F(HttpServerTest, UnknownPathIs404) {
  start();
  const std::string r = get(port_, "/nope");
  EXPECT_EQ(statusOf(r), 404) << r;
  EXPECT_EQ(bodyOf(r), "not found\n");
}

TEST_F(HttpServerTest, HeadSendsGetsHeadersWithoutTheBody) {
  start();
  const std::string r = roundTrip(port_, "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(statusOf(r), 200) << r;
  EXPECT_NE(r.find("Content-Length: 3\r\n"), std::string::npos) << r;
  EXPECT_EQ(bodyOf(r), "");
}

TEST_F(HttpServerTest, OtherMethodsAre405WithoutCallingTheHandler) {
  start();
  for (const char* method : {"POST", "PUT", "DELETE", "BREW"}) {
    const std::string r = roundTrip(port_, std::string(method) + " /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(statusOf(r), 405) << method << ": " << r;
    EXPECT_NE(r.find("Allow: GET, HEAD\r\n"), std::string::npos) << r;
  }
  EXPECT_EQ(calls_, 0);
}

TEST_F(HttpServerTest, RefusesOversizedAndMalformedRequestsWithAReason) {
  start();
  const std::string big_header =
      "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + std::string(HttpServer::kMaxHeaderBytes, 'a') +
      "\r\n\r\n";
  std::string r = roundTrip(port_, big_header);
  EXPECT_EQ(statusOf(r), 431) << r.substr(0, 200);
  EXPECT_NE(bodyOf(r).find("8192"), std::string::npos) << r;

  r = roundTrip(port_,
                "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n" + std::string(2000, 'b'));
  EXPECT_EQ(statusOf(r), 413) << r;
  EXPECT_NE(bodyOf(r).find("1024"), std::string::npos) << r;

  // A small body is tolerated (and ignored).
  r = roundTrip(port_,
                "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + std::string(100, 'c'));
  EXPECT_EQ(statusOf(r), 200) << r;

  r = roundTrip(port_, "HELLO THERE\r\n\r\n");
  EXPECT_EQ(statusOf(r), 400) << r;
  EXPECT_NE(bodyOf(r).find("malformed HTTP request"), std::string::npos) << r;
  EXPECT_EQ(calls_, 1);
}

TEST_F(HttpServerTest, ClosesAnIdleConnectionAfterTheRequestTimeout) {
  const auto timeout = 300ms;
  start(64, timeout);
  const auto t0 = SteadyClock::now();
  Client idle(port_);
  ASSERT_TRUE(idle.connected());
  ASSERT_TRUE(eventually([&] { return idle.peerClosed(); }, kPatience));
  EXPECT_GE(SteadyClock::now() - t0, timeout);
  EXPECT_TRUE(eventually([&] { return server_->stats().open == 0; }, kPatience));
  EXPECT_EQ(server_->stats().closed_by_timeout, 1u);
  EXPECT_EQ(calls_, 0);
}

TEST_F(HttpServerTest, ClosesASlowLorisThatTricklesItsHeaders) {
  const auto timeout = 300ms;
  start(64, timeout);
  const auto t0 = SteadyClock::now();
  Client loris(port_);
  ASSERT_TRUE(loris.connected());
  ASSERT_TRUE(loris.send("GET /healthz HTTP/1.1\r\nX-Slow: "));
  // One more header byte every 50 ms, far more often than the timeout: a timer that restarted on
  // every read would keep this connection open for ever.
  ASSERT_TRUE(eventually([&] { return loris.peerClosed() || !loris.send("a"); }, kPatience, 50ms));
  EXPECT_GE(SteadyClock::now() - t0, timeout);
  EXPECT_TRUE(eventually([&] { return server_->stats().closed_by_timeout == 1; }, kPatience));
  EXPECT_EQ(calls_, 0);
}

TEST_F(HttpServerTest, ClosesAClientThatDoesNotTakeItsResponse) {
  const auto timeout = 300ms;
  start(64, timeout);
  // A raw socket: its receive window must shrink before it connects.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  int small = 4096;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port_));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string request = "GET /big HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(::send(fd, request.data(), request.size(), MSG_NOSIGNAL), static_cast<ssize_t>(request.size()));
  // 16 MiB never fit in the kernel's buffers, so the write stalls until the deadline closes it.
  EXPECT_TRUE(eventually([&] { return server_->stats().closed_by_timeout == 1; }, kPatience));
  EXPECT_TRUE(eventually([&] { return server_->stats().open == 0; }, kPatience));
  ::close(fd);
}

TEST_F(HttpServerTest, RefusesConnectionsBeyondTheCapAtOnce) {
  const int cap = 4;
  start(cap, 60s);  // no timeout can explain what happens here
  std::vector<std::unique_ptr<Client>> idle;
  for (int i = 0; i < cap; ++i) {
    idle.push_back(std::make_unique<Client>(port_));
    ASSERT_TRUE(idle.back()->connected());
  }
  ASSERT_TRUE(
      eventually([&] { return server_->stats().open == static_cast<std::uint64_t>(cap); }, kPatience));

  Client extra(port_);
  ASSERT_TRUE(extra.connected());
  const std::string r = extra.readToEnd(5s);  // closed at once, long before the 60 s timeout
  EXPECT_EQ(statusOf(r), 503) << r;
  EXPECT_TRUE(extra.peerClosed());
  EXPECT_EQ(server_->stats().refused_at_cap, 1u);
  EXPECT_EQ(statusOf(get(port_, "/healthz")), 503);  // still at the cap

  idle.front()->close();  // one slot frees up
  ASSERT_TRUE(
      eventually([&] { return server_->stats().open == static_cast<std::uint64_t>(cap - 1); }, kPatience));
  EXPECT_EQ(statusOf(get(port_, "/healthz")), 200);
  const HttpServerStats s = server_->stats();
  EXPECT_EQ(s.accepted, static_cast<std::uint64_t>(cap + 1));
  EXPECT_EQ(s.refused_at_cap, 2u);
  EXPECT_EQ(s.closed_by_timeout, 0u);
}

TEST_F(HttpServerTest, ThousandsOfIdleConnectionsLeaveDescriptorsForEverythingElse) {
  FdLimit limit(4096);
  if (!limit.ok()) GTEST_SKIP() << "cannot raise RLIMIT_NOFILE to 4096 here";
  const int cap = 64;
  const int clients = 3000;
  start(cap, 1000ms);
  std::vector<std::unique_ptr<Client>> idle;
  idle.reserve(clients);
  std::uint64_t most_open = 0;
  for (int i = 0; i < clients; ++i) {
    idle.push_back(std::make_unique<Client>(port_));
    ASSERT_TRUE(idle.back()->connected()) << "client " << i << ": " << strerror(errno);
    most_open = std::max(most_open, server_->stats().open);
  }
  EXPECT_LE(most_open, static_cast<std::uint64_t>(cap));
  ASSERT_TRUE(eventually(
      [&] {
        const HttpServerStats s = server_->stats();
        return s.accepted + s.refused_at_cap == static_cast<std::uint64_t>(clients);
      },
      kPatience));
  EXPECT_GT(server_->stats().refused_at_cap, 0u);

  // With the 3000 client sockets still open, this process can still open files and sockets.
  std::vector<int> spare;
  for (int i = 0; i < 100; ++i) {
    const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0) << "open #" << i << ": " << strerror(errno);
    spare.push_back(fd);
  }
  const int sock = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  EXPECT_GE(sock, 0) << strerror(errno);
  spare.push_back(sock);
  for (int fd : spare) ::close(fd);

  // Once the idle ones have been dropped, the server answers again.
  std::string r;
  ASSERT_TRUE(eventually([&] { return statusOf(r = get(port_, "/healthz")) == 200; }, kPatience, 50ms)) << r;
  EXPECT_GE(server_->stats().closed_by_timeout, 1u);
  EXPECT_LE(server_->stats().open, static_cast<std::uint64_t>(cap));
}

TEST_F(HttpServerTest, BacksOffInsteadOfSpinningWhenOutOfDescriptors) {
  start(4, 5000ms);
  const int sock = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(sock, 0);
  std::vector<int> filler;
  {
    FdLimit limit(256);
    ASSERT_TRUE(limit.ok());
    // Use up every descriptor left, so that the server's accept() fails with EMFILE.
    for (;;) {
      const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (fd < 0) break;
      filler.push_back(fd);
    }
    ASSERT_EQ(errno, EMFILE);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);  // needs no fd

    ASSERT_TRUE(eventually([&] { return server_->stats().accept_errors >= 1; }, kPatience));
    const auto first = SteadyClock::now();
    ASSERT_TRUE(eventually([&] { return server_->stats().accept_errors >= 4; }, kPatience));
    // Three retries, each after a back-off of at least 50 ms: a spinning acceptor would have made
    // thousands of attempts in this time.
    EXPECT_GE(SteadyClock::now() - first, 150ms);
    for (int fd : filler) ::close(fd);
  }
  // Descriptors are back: the queued connection is accepted and served.
  ASSERT_TRUE(eventually([&] { return server_->stats().accepted == 1; }, kPatience));
  const std::string request = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(::send(sock, request.data(), request.size(), MSG_NOSIGNAL), static_cast<ssize_t>(request.size()));
  char buf[512];
  const ssize_t n = ::recv(sock, buf, sizeof buf, 0);
  ASSERT_GT(n, 0);
  EXPECT_EQ(statusOf(std::string(buf, static_cast<std::size_t>(n))), 200);
  ::close(sock);
}

TEST_F(HttpServerTest, StopClosesTheListenerAndEveryConnection) {
  start(64, 60s);
  std::vector<std::unique_ptr<Client>> open;
  for (int i = 0; i < 3; ++i) open.push_back(std::make_unique<Client>(port_));
  open.push_back(std::make_unique<Client>(port_));
  ASSERT_TRUE(open.back()->send("GET /healthz HTTP/1.1\r\n"));  // half a request
  ASSERT_TRUE(eventually([&] { return server_->stats().open == 4; }, kPatience));

  server_->stop();  // from this thread, while hc-io runs
  EXPECT_FALSE(canConnect(port_)) << "the listener is closed when stop() returns";
  EXPECT_EQ(server_->stats().open, 0u);
  for (auto& c : open) EXPECT_TRUE(eventually([&] { return c->peerClosed(); }, kPatience));
  open.back()->send("Host: x\r\n\r\n");  // the rest of the request, too late: nobody answers
  server_->stop();                       // idempotent
  server_.reset();
  EXPECT_EQ(calls_, 0);
}

TEST_F(HttpServerTest, StopFromTheHandlerClosesTheListener) {
  start();
  get(port_, "/stop");  // its own connection goes with the server, answered or not
  EXPECT_EQ(calls_, 1);
  EXPECT_FALSE(canConnect(port_));
  EXPECT_EQ(server_->stats().open, 0u);
}

TEST_F(HttpServerTest, StopAfterTheRuntimeHasStoppedReturns) {
  start();
  Client idle(port_);
  ASSERT_TRUE(eventually([&] { return server_->stats().open == 1; }, kPatience));
  runtime_.stop();
  server_->stop();
  EXPECT_FALSE(canConnect(port_));
  EXPECT_TRUE(eventually([&] { return idle.peerClosed(); }, kPatience));
}

TEST(HttpServerOptionsTest, RejectsBadOptionsSayingWhatIsWrong) {
  Runtime runtime;
  auto handler = [](const std::string&) { return HttpResponse{}; };
  auto startWith = [&](const std::string& listen, int cap = 64, std::chrono::milliseconds timeout = 5000ms) {
    return HttpServer::start(runtime.io(), HttpServerOptions{listen, cap, timeout}, handler);
  };

  auto r = startWith("localhost:0");
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("must be an IP address"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("\"localhost:0\""), std::string::npos) << r.status().message();

  r = startWith("127.0.0.1");
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("expected host:port"), std::string::npos) << r.status().message();
  r = startWith("127.0.0.1:70000");
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("port must be between 0 and 65535"), std::string::npos)
      << r.status().message();
  r = startWith("::1:80");
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("brackets"), std::string::npos) << r.status().message();

  r = startWith("127.0.0.1:0", 0);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("maxConnections"), std::string::npos) << r.status().message();
  r = startWith("127.0.0.1:0", 64, 0ms);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("requestTimeoutMs"), std::string::npos) << r.status().message();
  {
    FdLimit limit(256);
    ASSERT_TRUE(limit.ok());
    r = startWith("127.0.0.1:0", 200);
    ASSERT_FALSE(r.isOk());
    EXPECT_NE(r.status().message().find("file descriptor limit (256)"), std::string::npos)
        << r.status().message();
  }

  auto first = startWith("127.0.0.1:0");
  ASSERT_TRUE(first.isOk()) << first.status().toString();
  r = startWith("127.0.0.1:" + std::to_string((*first)->port()));
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find("in use"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace hacoord
