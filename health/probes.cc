// The three probes (command, TCP connect, HTTP GET) as asynchronous operations on one Asio strand.
#include "health/probes.h"

#include <utility>  // before Asio: Boost 1.74 under C++20 needs it

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <exception>
#include <optional>
#include <unordered_map>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include "core/host_port.h"
#include "core/shell.h"

namespace hacoord {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using asio::ip::tcp;
using ErrorCode = boost::system::error_code;
using Strand = asio::strand<asio::io_context::executor_type>;

std::string errnoText(int err) { return std::strerror(err); }

CheckOutcome pass() { return {true, ""}; }
CheckOutcome failure(std::string reason) { return {false, std::move(reason)}; }

// The first non-blank line of `text`, trimmed, control characters blanked, at most `limit`
// characters: what a failure reason quotes of a command's output or of a server's answer.
std::string firstLine(std::string_view text, std::size_t limit) {
  const std::size_t begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string_view::npos) return "";
  std::string line(text.substr(begin, text.find_first_of("\r\n", begin) - begin));
  while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) line.pop_back();
  for (char& ch : line) {
    if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) ch = ' ';
  }
  if (line.size() > limit) line = line.substr(0, limit) + "...";
  return line;
}

// One run of one check. Every handler of it holds a shared_ptr, so it lives exactly as long as
// one of its operations is in flight; all of them run on the runner's strand.
class Probe : public std::enable_shared_from_this<Probe> {
 public:
  Probe(const Strand& strand, HealthCheckConfig config, ProbeRunner::Done done)
      : config_(std::move(config)), done_(std::move(done)), timer_(strand) {}
  virtual ~Probe() = default;
  Probe(const Probe&) = delete;
  Probe& operator=(const Probe&) = delete;

  // Arms the timeout and starts the work. `forget` runs once the run has finished.
  void begin(std::function<void()> forget) {
    forget_ = std::move(forget);
    try {
      timer_.expires_after(config_.timeout);
      timer_.async_wait([self = shared_from_this()](const ErrorCode& ec) {
        if (!ec && !self->finished_) self->stop(self->timeoutReason());
      });
      run();
    } catch (const std::exception& e) {  // bad_alloc and the like: a failed run, not a dead io thread
      if (!finished_) stop(std::string("internal error: ") + e.what());
    }
  }

  void cancel() {
    if (!finished_) stop("cancelled");
  }

 protected:
  virtual void run() = 0;
  // Ends the work in progress and reports failure(reason): at once, or (a command) once reaped.
  virtual void stop(std::string reason) = 0;
  virtual std::string timeoutReason() const = 0;
  // Closes the probe's descriptors, so that handlers still waiting on them finish.
  virtual void closeIo() = 0;

  void finish(CheckOutcome outcome) {
    if (finished_) return;
    finished_ = true;
    timer_.cancel();
    closeIo();
    if (forget_) forget_();
    ProbeRunner::Done done = std::move(done_);
    done(std::move(outcome));
  }
  bool finished() const { return finished_; }
  std::string timedOutAfter() const {
    return "timed out after " + std::to_string(config_.timeout.count()) + " ms";
  }
  template <typename Derived>
  std::shared_ptr<Derived> sharedAs() {
    return std::static_pointer_cast<Derived>(shared_from_this());
  }

  const HealthCheckConfig config_;

 private:
  ProbeRunner::Done done_;
  asio::steady_timer timer_;  // the check's timeout: real I/O against real time
  std::function<void()> forget_;
  bool finished_ = false;
};

// ---- command --------------------------------------------------------------------------------

class CommandProbe final : public Probe {
 public:
  CommandProbe(const Strand& strand, HealthCheckConfig config, ProbeRunner::Done done)
      : Probe(strand, std::move(config), std::move(done)), exit_(strand), output_(strand) {}

  ~CommandProbe() override {
    // Only when the io_context was torn down with the command still running (its handlers were
    // destroyed, not run): kill and reap here, so that no command outlives the daemon.
    if (pid_ > 0 && !reaped_) {
      ::killpg(pid_, SIGKILL);
      reapNow(pid_);
    }
  }

 private:
  static constexpr std::size_t kKeptOutput = 1024;  // enough for the first line of a reason

  void run() override {
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return finish(failure("pipe: " + errnoText(errno)));
    // Only our end is non-blocking: the command's stdout must stay an ordinary blocking pipe.
    ::fcntl(pipe_fds[0], F_SETFL, ::fcntl(pipe_fds[0], F_GETFL) | O_NONBLOCK);
    ErrorCode ec;
    output_.assign(pipe_fds[0], ec);
    if (ec) {
      ::close(pipe_fds[0]);
      ::close(pipe_fds[1]);
      return finish(failure("cannot watch the command's output: " + ec.message()));
    }
    const int rc = spawn(pipe_fds[1]);
    ::close(pipe_fds[1]);  // EOF on our end once the command (and whatever inherited it) is done
    if (rc != 0) return finish(failure("cannot run /bin/sh: " + errnoText(rc)));

    const int pidfd = pidfdOpen(pid_);  // CLOEXEC by definition
    if (pidfd < 0) return giveUp("pidfd_open: " + errnoText(errno));
    exit_.assign(pidfd, ec);
    if (ec) {
      ::close(pidfd);
      return giveUp("cannot watch the command's exit: " + ec.message());
    }
    waitForExit();
    readOutput();
  }

  // 0 or an errno value.
  int spawn(int output_fd) { return spawnShell(config_.command, output_fd, {}, &pid_); }

  // The command cannot be watched: it is killed and reaped at once (SIGKILL makes that quick).
  void giveUp(std::string reason) {
    ::killpg(pid_, SIGKILL);
    reapNow(pid_);
    reaped_ = true;
    finish(failure(std::move(reason)));
  }

  void waitForExit() {
    exit_.async_wait(asio::posix::stream_descriptor::wait_read,
                     [self = sharedAs<CommandProbe>()](const ErrorCode& ec) {
                       if (ec == asio::error::operation_aborted) return;  // closed by finish()
                       self->onExit(ec);
                     });
  }

  void onExit(const ErrorCode& wait_error) {
    int status = 0;
    pid_t w;
    do {
      w = ::waitpid(pid_, &status, WNOHANG);
    } while (w < 0 && errno == EINTR);
    if (w == 0) {
      if (wait_error) return giveUp("cannot watch the command's exit: " + wait_error.message());
      return waitForExit();  // not exited after all: wait for the next wake-up
    }
    reaped_ = true;  // by us, or (ECHILD) by the kernel because SIGCHLD is ignored
    if (w < 0) {
      return finish(failure("exit status unknown: waitpid: " + errnoText(errno) +
                            " (is SIGCHLD ignored in this process?)"));
    }
    if (!stop_reason_.empty()) return finish(failure(stop_reason_));
    drainOutput();  // what the command wrote just before exiting
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return finish(pass());
    std::string reason = WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                                           : "killed by signal " + std::to_string(WTERMSIG(status));
    const std::string line = firstLine(output_text_, 200);
    if (!line.empty()) reason += ": " + line;
    finish(failure(std::move(reason)));
  }

  void readOutput() {
    output_.async_wait(asio::posix::stream_descriptor::wait_read,
                       [self = sharedAs<CommandProbe>()](const ErrorCode& ec) {
                         if (ec || self->finished()) return;
                         if (self->drainOutput()) self->readOutput();
                       });
  }

  // Reads what the pipe holds now. False at EOF or on an error (the pipe is then closed).
  bool drainOutput() {
    if (!output_.is_open()) return false;
    char buffer[4096];
    // A bounded number of reads per wake-up: a command writing without pause must not hold the
    // io thread; the next wait finds the pipe readable again at once.
    for (int i = 0; i < 16; ++i) {
      const ssize_t r = ::read(output_.native_handle(), buffer, sizeof buffer);
      if (r > 0) {
        // Keep reading past the limit: a command blocked on a full pipe would only time out.
        const std::size_t keep =
            std::min(static_cast<std::size_t>(r), kKeptOutput - std::min(kKeptOutput, output_text_.size()));
        output_text_.append(buffer, keep);
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      ErrorCode ignored;
      output_.close(ignored);
      return false;
    }
    return true;
  }

  void stop(std::string reason) override {
    if (pid_ <= 0) return finish(failure(std::move(reason)));
    if (!stop_reason_.empty()) return;  // already killed: waiting for the exit
    stop_reason_ = std::move(reason);
    ::killpg(pid_, SIGKILL);  // the group: the shell's own children go too
    // finish() follows once the pidfd reports the exit and the shell is reaped.
  }

  std::string timeoutReason() const override { return timedOutAfter() + " (process group killed)"; }

  void closeIo() override {
    ErrorCode ignored;
    exit_.close(ignored);
    output_.close(ignored);  // a background child may keep its end open for hours
  }

  pid_t pid_ = 0;
  bool reaped_ = false;
  std::string stop_reason_;                // why the command was killed: "" while it runs on its own
  asio::posix::stream_descriptor exit_;    // the pidfd: readable once the command has exited
  asio::posix::stream_descriptor output_;  // our end of the stdout/stderr pipe
  std::string output_text_;
};

// ---- TCP and HTTP ---------------------------------------------------------------------------

std::string endpointText(const tcp::endpoint& ep) {
  const std::string address = ep.address().to_string();
  return (ep.address().is_v6() ? "[" + address + "]" : address) + ":" + std::to_string(ep.port());
}

// Resolves a host:port and connects to its addresses in turn; the subclass takes over once one
// accepts.
class NetProbe : public Probe {
 protected:
  NetProbe(const Strand& strand, HealthCheckConfig config, ProbeRunner::Done done)
      : Probe(strand, std::move(config), std::move(done)), socket_(strand), resolver_(strand) {}

  virtual void connected() = 0;

  void connectTo(const HostPort& target) {
    ErrorCode ec;
    const asio::ip::address literal = asio::ip::make_address(target.host, ec);
    if (!ec) {  // an IP literal: no lookup at all
      endpoints_.emplace_back(literal, static_cast<unsigned short>(target.port));
      return connectNext();
    }
    doing_ = "name lookup of " + target.host;
    resolver_.async_resolve(
        target.host, std::to_string(target.port), tcp::resolver::numeric_service,
        [self = sharedAs<NetProbe>(), host = target.host](const ErrorCode& error,
                                                          const tcp::resolver::results_type& results) {
          if (self->finished()) return;
          if (error) return self->finish(failure("cannot resolve " + host + ": " + error.message()));
          for (const auto& entry : results) self->endpoints_.push_back(entry.endpoint());
          self->last_error_ = "cannot resolve " + host + ": no address";
          self->connectNext();
        });
  }

  void stop(std::string reason) override { finish(failure(std::move(reason))); }
  std::string timeoutReason() const override { return doing_ + " " + timedOutAfter(); }
  void closeIo() override {
    resolver_.cancel();  // a lookup still queued on Asio's resolver thread is skipped there
    ErrorCode ignored;
    socket_.close(ignored);
  }

  std::string doing_;  // what a timeout interrupts, for its reason: "connect to 127.0.0.1:80"
  tcp::socket socket_;

 private:
  void connectNext() {
    if (next_ == endpoints_.size()) return finish(failure(last_error_));
    const tcp::endpoint ep = endpoints_[next_++];
    doing_ = "connect to " + endpointText(ep);
    ErrorCode ec;
    socket_.close(ec);
    // Our own socket() call: Asio's does not set SOCK_CLOEXEC.
    const int fd = ::socket(ep.protocol().family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      last_error_ = doing_ + ": socket: " + errnoText(errno);
      return connectNext();
    }
    socket_.assign(ep.protocol(), fd, ec);
    if (ec) {
      ::close(fd);
      last_error_ = doing_ + ": " + ec.message();
      return connectNext();
    }
    socket_.async_connect(ep, [self = sharedAs<NetProbe>()](const ErrorCode& error) {
      if (self->finished()) return;
      if (error) {
        self->last_error_ = self->doing_ + ": " + error.message();
        return self->connectNext();
      }
      self->connected();
    });
  }

  tcp::resolver resolver_;
  std::vector<tcp::endpoint> endpoints_;
  std::size_t next_ = 0;
  std::string last_error_;
};

class TcpProbe final : public NetProbe {
 public:
  TcpProbe(const Strand& strand, HealthCheckConfig config, ProbeRunner::Done done)
      : NetProbe(strand, std::move(config), std::move(done)) {}

 private:
  void run() override {
    auto target = parseHostPort(config_.address);
    if (!target.isOk()) {
      return finish(failure("bad address \"" + config_.address + "\": " + target.status().message()));
    }
    connectTo(*target);
  }
  // A connect is all this check asks for; finish() closes the socket.
  void connected() override { finish(pass()); }
};

struct HttpTarget {
  HostPort host_port;
  std::string host_header;  // the authority as written in the URL
  std::string path;         // "/..." including any query, without the fragment
};

// "http://host[:port][/path][?query][#fragment]"; on failure, what is wrong in `problem`.
std::optional<HttpTarget> parseHttpUrl(std::string_view url, std::string& problem) {
  constexpr std::string_view kScheme = "http://";
  if (!url.starts_with(kScheme)) {
    problem = "only http://host[:port]/path";
    return std::nullopt;
  }
  const std::string_view rest = url.substr(kScheme.size());
  const std::size_t end = rest.find_first_of("/?#");
  const std::string_view authority = rest.substr(0, end);
  std::string_view path = end == std::string_view::npos ? std::string_view() : rest.substr(end);
  path = path.substr(0, path.find('#'));  // a fragment never goes on the wire
  if (authority.find('@') != std::string_view::npos) {
    problem = "no user:password@ in the URL (only http://host[:port]/path)";
    return std::nullopt;
  }
  auto host_port = parseHostPort(authority, HostPortRules{.default_port = "80"});
  if (!host_port.isOk()) {
    problem = host_port.status().message();
    return std::nullopt;
  }
  HttpTarget t{*host_port, std::string(authority), std::string(path)};
  if (t.path.empty() || t.path.front() != '/') t.path = "/" + t.path;
  return t;
}

class HttpProbe final : public NetProbe {
 public:
  HttpProbe(const Strand& strand, HealthCheckConfig config, ProbeRunner::Done done)
      : NetProbe(strand, std::move(config), std::move(done)) {}

 private:
  void run() override {
    std::string problem;
    auto target = parseHttpUrl(config_.url, problem);
    if (!target) return finish(failure("bad url \"" + config_.url + "\": " + problem));
    // HTTP/1.0 with Connection: close: the server answers once and closes.
    request_.version(10);
    request_.method(http::verb::get);
    request_.target(target->path);
    request_.set(http::field::host, target->host_header);
    request_.set(http::field::user_agent, "hacoord-health");
    request_.set(http::field::accept, "*/*");
    request_.set(http::field::connection, "close");
    connectTo(target->host_port);
  }

  void connected() override {
    doing_ = "sending the request";
    http::async_write(socket_, request_, [self = sharedAs<HttpProbe>()](const ErrorCode& ec, std::size_t) {
      if (self->finished()) return;
      if (ec) return self->finish(failure("sending the request: " + ec.message()));
      self->readAnswer();
    });
  }

  void readAnswer() {
    doing_ = "waiting for the HTTP status line";
    // The header is all a check needs: a large or endless body is never read.
    http::async_read_header(socket_, buffer_, parser_,
                            [self = sharedAs<HttpProbe>()](const ErrorCode& ec, std::size_t) {
                              if (self->finished()) return;
                              if (ec) return self->finish(failure(self->badAnswer(ec)));
                              self->judge();
                            });
  }

  void judge() {
    const unsigned code = parser_.get().result_int();
    if (code >= 200 && code < 400) return finish(pass());
    const auto phrase = parser_.get().reason();
    const std::string reason = firstLine(std::string_view(phrase.data(), phrase.size()), 80);
    finish(failure("HTTP " + std::to_string(code) + (reason.empty() ? "" : " " + reason)));
  }

  // Why the answer could not be read, quoting what the server sent when it is not HTTP.
  std::string badAnswer(const ErrorCode& ec) const {
    const auto data = buffer_.data();
    const std::string_view received(static_cast<const char*>(data.data()), data.size());
    if (received.empty()) {
      if (ec == http::error::end_of_stream || ec == asio::error::eof) {
        return "the server closed the connection without an answer";
      }
      return "reading the answer: " + ec.message();
    }
    const std::string line = firstLine(received, 80);
    if (line.empty()) return "no HTTP status line in the answer";
    if (!line.starts_with("HTTP/")) return "not an HTTP status line: \"" + line + "\"";
    return "bad HTTP answer (" + ec.message() + "): \"" + line + "\"";
  }

  http::request<http::empty_body> request_;
  boost::beast::flat_buffer buffer_;
  http::response_parser<http::empty_body> parser_;
};

// Null for a type value outside the enumeration (then `done` is left to the caller).
std::shared_ptr<Probe> makeProbe(const Strand& strand, const HealthCheckConfig& check,
                                 ProbeRunner::Done& done) {
  switch (check.type) {
    case HealthCheckConfig::Type::kCommand:
      return std::make_shared<CommandProbe>(strand, check, std::move(done));
    case HealthCheckConfig::Type::kTcp:
      return std::make_shared<TcpProbe>(strand, check, std::move(done));
    case HealthCheckConfig::Type::kHttp:
      return std::make_shared<HttpProbe>(strand, check, std::move(done));
  }
  return nullptr;
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

// The runs in progress, by id. Touched only on the strand; a run is owned by its own handlers,
// so the map holds weak references and a run never outlives the io_context's handlers.
struct AsioProbeRunner::State {
  explicit State(asio::io_context& io) : strand(asio::make_strand(io)) {}
  Strand strand;
  std::atomic<std::uint64_t> next_run{1};
  std::unordered_map<std::uint64_t, std::weak_ptr<Probe>> runs;
};

AsioProbeRunner::AsioProbeRunner(asio::io_context& io) : state_(std::make_shared<State>(io)) {}

AsioProbeRunner::~AsioProbeRunner() {
  asio::post(state_->strand, [state = state_] {
    auto runs = std::move(state->runs);
    for (auto& [id, weak] : runs) {
      if (auto probe = weak.lock()) probe->cancel();
    }
  });
}

std::uint64_t AsioProbeRunner::start(const HealthCheckConfig& check, Done done) {
  const std::uint64_t id = state_->next_run++;
  // Posted, never run here: `done` must not run inside start().
  asio::post(state_->strand, [state = state_, id, check, done = std::move(done)]() mutable {
    std::shared_ptr<Probe> probe = makeProbe(state->strand, check, done);
    if (!probe) return done(failure("unknown check type"));
    state->runs.emplace(id, probe);
    probe->begin([weak = std::weak_ptr<State>(state), id] {
      if (auto s = weak.lock()) s->runs.erase(id);
    });
  });
  return id;
}

void AsioProbeRunner::cancel(std::uint64_t run) {
  asio::post(state_->strand, [state = state_, run] {
    auto it = state->runs.find(run);
    if (it == state->runs.end()) return;
    if (auto probe = it->second.lock()) probe->cancel();
  });
}

}  // namespace hacoord
