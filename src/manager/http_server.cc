// HttpServer: accept loop with a connection cap and accept back-off, one deadline-bound request per
// connection, and a stop() that is safe from any thread.
#include "manager/http_server.h"

#include <utility>  // before Asio: Boost 1.74 under C++20 needs it

#include <sys/resource.h>

#include <atomic>
#include <future>
#include <unordered_map>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "core/host_port.h"
#include "core/logging.h"

namespace hacoord {
namespace beast = boost::beast;
namespace http = boost::beast::http;
using boost::asio::ip::tcp;

namespace {

using Strand = boost::asio::strand<boost::asio::any_io_executor>;

// Parse errors (the client's fault) share Beast's "beast.http" category with a few that only say
// the peer went away; the latter get no answer.
bool isMalformedRequest(const beast::error_code& ec) {
  if (ec.category() != http::make_error_code(http::error::bad_method).category()) return false;
  return ec != http::error::end_of_stream && ec != http::error::partial_message;
}

std::string quote(const std::string& s) { return "\"" + s + "\""; }

}  // namespace

// Everything the strand's handlers touch. Owned jointly by the HttpServer and by every pending
// handler (through the sessions), so a handler that completes after stop() finds it intact; after
// close() nothing in here refers to the owner any more.
struct HttpServer::Core : std::enable_shared_from_this<Core> {
  Core(boost::asio::io_context& context, HttpServerOptions opts, Handler h)
      : io(context),
        options(std::move(opts)),
        strand(boost::asio::make_strand(boost::asio::any_io_executor(context.get_executor()))),
        acceptor(strand),
        backoff(strand),
        handler(std::move(h)),
        log(moduleLogger("http")) {}

  void accept();
  void onAccept(const beast::error_code& ec, tcp::socket socket);
  void refuse(tcp::socket socket);
  void release(Session* session);
  void close();
  // close() exactly once, whoever gets here first (the strand, or stop() once hc-io has stopped).
  void closeOnce() {
    if (close_claimed.exchange(true)) return;
    close();
    close_done.set_value();
  }

  boost::asio::io_context& io;
  const HttpServerOptions options;
  Strand strand;
  // Strand only, from here to `log`.
  tcp::acceptor acceptor;
  boost::asio::steady_timer backoff;
  Handler handler;  // reset by close(): it captures the owner
  bool closed = false;
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions;
  std::uint64_t burst_refused = 0;        // refused since the cap was last reached (0: not at it)
  std::uint64_t burst_accept_errors = 0;  // failed accepts in a row
  std::string where;                      // "ip:port", for logs
  std::shared_ptr<spdlog::logger> log;

  std::atomic<bool> close_claimed{false};
  std::promise<void> close_done;
  std::shared_future<void> close_finished = close_done.get_future().share();

  std::atomic<std::uint64_t> accepted{0};
  std::atomic<std::uint64_t> refused_at_cap{0};
  std::atomic<std::uint64_t> closed_by_timeout{0};
  std::atomic<std::uint64_t> accept_errors{0};
  std::atomic<std::uint64_t> open{0};
};

// One connection: read one request under a deadline, answer it under a deadline, close. Lives as
// long as one of its operations is pending; every way out goes through finish().
class HttpServer::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(std::shared_ptr<Core> core, tcp::socket socket)
      : core_(std::move(core)), stream_(std::move(socket)) {
    parser_.header_limit(static_cast<std::uint32_t>(kMaxHeaderBytes));
    parser_.body_limit(kMaxBodyBytes);
  }

  void start() {
    // One deadline for the whole request: a slow-loris that trickles a byte at a time gains
    // nothing, unlike with a timer that restarts on every read.
    stream_.expires_after(core_->options.request_timeout);
    http::async_read(stream_, buffer_, parser_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) { self->onRead(ec); });
  }

  // Closes the socket and the deadline; pending operations complete with operation_aborted.
  void finish() {
    if (finished_) return;
    finished_ = true;
    stream_.close();
    core_->release(this);
  }

 private:
  void onRead(const beast::error_code& ec) {
    if (core_->closed) return finish();
    if (ec == beast::error::timeout) {
      core_->closed_by_timeout.fetch_add(1, std::memory_order_relaxed);
      core_->log->debug("closed a connection that sent no complete request within {} ms",
                        core_->options.request_timeout.count());
      return finish();
    }
    if (ec == http::error::header_limit) {
      return respond(431, "request header larger than " + std::to_string(kMaxHeaderBytes) + " bytes\n");
    }
    if (ec == http::error::body_limit) {
      return respond(
          413, "request body larger than " + std::to_string(kMaxBodyBytes) + " bytes (GET takes no body)\n");
    }
    if (isMalformedRequest(ec)) return respond(400, "malformed HTTP request: " + ec.message() + "\n");
    if (ec) return finish();  // the peer went away or reset

    const auto& request = parser_.get();
    const bool head = request.method() == http::verb::head;
    if (request.method() != http::verb::get && !head) {
      response_.set(http::field::allow, "GET, HEAD");
      return respond(405, "method not allowed: only GET and HEAD\n");
    }
    const std::string target(request.target());
    // A copy: close() may reset core_->handler from inside the call (stop() from the Handler).
    const Handler handler = core_->handler;
    HttpResponse r = handler(target.substr(0, target.find('?')));
    response_.set(http::field::content_type, r.content_type);
    if (head) {
      response_.content_length(r.body.size());  // what GET would send, without the body
      write(r.status);
    } else {
      response_.body() = std::move(r.body);
      response_.prepare_payload();
      write(r.status);
    }
  }

  void respond(int status, std::string body) {
    response_.set(http::field::content_type, "text/plain; charset=utf-8");
    response_.body() = std::move(body);
    response_.prepare_payload();
    write(status);
  }

  void write(int status) {
    response_.result(static_cast<unsigned>(status));
    response_.version(11);
    response_.set(http::field::server, "hacoord");
    response_.keep_alive(false);
    // The client must take the answer within the same bound it had to deliver the request: one
    // that never reads would otherwise hold the socket for as long as the kernel buffers last.
    stream_.expires_after(core_->options.request_timeout);
    http::async_write(stream_, response_,
                      [self = shared_from_this()](beast::error_code ec, std::size_t) { self->onWrite(ec); });
  }

  void onWrite(const beast::error_code& ec) {
    if (ec == beast::error::timeout && !core_->closed) {
      core_->closed_by_timeout.fetch_add(1, std::memory_order_relaxed);
      core_->log->debug("closed a connection that did not take its response within {} ms",
                        core_->options.request_timeout.count());
    } else if (!ec) {
      beast::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    }
    finish();
  }

  std::shared_ptr<Core> core_;
  beast::tcp_stream stream_;
  // Room for the largest header and body we accept; the parser's limits trip first.
  beast::flat_buffer buffer_{2 * (kMaxHeaderBytes + kMaxBodyBytes)};
  http::request_parser<http::string_body> parser_;
  http::response<http::string_body> response_;
  bool finished_ = false;
};

void HttpServer::Core::accept() {
  // The accepted socket runs on the strand too, so its handlers never overlap ours.
  acceptor.async_accept(boost::asio::any_io_executor(strand),
                        [self = shared_from_this()](const beast::error_code& ec, tcp::socket s) {
                          self->onAccept(ec, std::move(s));
                        });
}

void HttpServer::Core::onAccept(const beast::error_code& ec, tcp::socket socket) {
  if (closed) return;
  if (ec) {
    // EMFILE/ENFILE leave the connection queued, so an immediate retry fails again at once: wait,
    // and log the burst once rather than once per attempt.
    accept_errors.fetch_add(1, std::memory_order_relaxed);
    if (burst_accept_errors++ == 0) {
      log->warn("HTTP {}: accept failed: {}; retrying every {} ms", where, ec.message(),
                kAcceptBackoff.count());
    }
    backoff.expires_after(kAcceptBackoff);
    backoff.async_wait([self = shared_from_this()](const beast::error_code& wait_ec) {
      if (!wait_ec && !self->closed) self->accept();
    });
    return;
  }
  if (burst_accept_errors > 0) {
    log->info("HTTP {}: accepting again after {} failed accepts", where, burst_accept_errors);
    burst_accept_errors = 0;
  }
  if (sessions.size() >= static_cast<std::size_t>(options.max_connections)) {
    refuse(std::move(socket));
  } else {
    accepted.fetch_add(1, std::memory_order_relaxed);
    open.fetch_add(1, std::memory_order_relaxed);
    auto session = std::make_shared<Session>(shared_from_this(), std::move(socket));
    sessions.emplace(session.get(), session);
    session->start();
  }
  accept();
}

void HttpServer::Core::refuse(tcp::socket socket) {
  // Accepting and closing (rather than not accepting) keeps the listen backlog from filling up
  // with connections nobody will serve. The 503 is best-effort: a fresh socket's send buffer is
  // empty, so a non-blocking write of a few bytes goes through.
  refused_at_cap.fetch_add(1, std::memory_order_relaxed);
  if (burst_refused++ == 0) {
    log->warn("HTTP {}: {} connections open (the cap); refusing new ones until one closes", where,
              options.max_connections);
  }
  static const std::string kBusy = [] {
    const std::string body = "too many connections\n";
    return "HTTP/1.1 503 Service Unavailable\r\nServer: hacoord\r\nContent-Type: text/plain; "
           "charset=utf-8\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  }();
  beast::error_code ignored;
  socket.non_blocking(true, ignored);
  socket.write_some(boost::asio::buffer(kBusy), ignored);
  socket.shutdown(tcp::socket::shutdown_send, ignored);
  socket.close(ignored);
}

void HttpServer::Core::release(Session* session) {
  if (sessions.erase(session) == 0) return;  // close() already let it go
  open.fetch_sub(1, std::memory_order_relaxed);
  if (burst_refused > 0 && sessions.size() < static_cast<std::size_t>(options.max_connections)) {
    log->info("HTTP {}: below the cap again after refusing {} connections", where, burst_refused);
    burst_refused = 0;
  }
}

void HttpServer::Core::close() {
  if (closed) return;
  closed = true;
  beast::error_code ignored;
  acceptor.close(ignored);
  backoff.cancel();
  for (auto& [raw, weak] : std::exchange(sessions, {})) {
    open.fetch_sub(1, std::memory_order_relaxed);
    if (auto session = weak.lock()) session->finish();
  }
  handler = nullptr;
  log->info("HTTP listener on {} stopped", where);
}

HttpServer::HttpServer(std::shared_ptr<Core> core, int port) : core_(std::move(core)), port_(port) {}

Result<std::unique_ptr<HttpServer>> HttpServer::start(boost::asio::io_context& io,
                                                      const HttpServerOptions& options, Handler handler) {
  auto parsed = parseHostPort(options.listen, HostPortRules{.allow_port_zero = true});
  if (!parsed.isOk()) {
    return invalidArgument("http.listen: " + parsed.status().message() + " (got " + quote(options.listen) +
                           ")");
  }
  beast::error_code ec;
  const auto address = boost::asio::ip::make_address(parsed->host, ec);
  if (ec) {
    return invalidArgument(
        "http.listen: the host must be an IP address such as 127.0.0.1 or [::1], not a name (got " +
        quote(options.listen) + ")");
  }
  if (options.max_connections < 1) {
    return invalidArgument("http.maxConnections: must be at least 1 (got " +
                           std::to_string(options.max_connections) + ")");
  }
  if (options.request_timeout.count() <= 0) {
    return invalidArgument("http.requestTimeoutMs: must be positive (got " +
                           std::to_string(options.request_timeout.count()) + ")");
  }
  // The reserve: idle HTTP clients must run out of connection slots long before the process runs
  // out of descriptors, or they would starve NATS, health checks and the VIP's netlink socket.
  rlimit fds{};
  if (::getrlimit(RLIMIT_NOFILE, &fds) == 0 && fds.rlim_cur != RLIM_INFINITY &&
      static_cast<rlim_t>(options.max_connections) > fds.rlim_cur / 2) {
    return invalidArgument("http.maxConnections: " + std::to_string(options.max_connections) +
                           " is more than half of this process's file descriptor limit (" +
                           std::to_string(fds.rlim_cur) +
                           "); lower it or raise the limit (LimitNOFILE= in the systemd unit)");
  }

  auto core = std::make_shared<Core>(io, options, std::move(handler));
  const tcp::endpoint endpoint(address, static_cast<unsigned short>(parsed->port));
  core->acceptor.open(endpoint.protocol(), ec);
  if (!ec) core->acceptor.set_option(boost::asio::socket_base::reuse_address(true), ec);
  if (!ec) core->acceptor.bind(endpoint, ec);
  if (!ec) core->acceptor.listen(boost::asio::socket_base::max_listen_connections, ec);
  if (ec) return unavailable("http.listen " + quote(options.listen) + ": " + ec.message());
  const int port = core->acceptor.local_endpoint().port();
  core->where =
      (address.is_v6() ? "[" + address.to_string() + "]" : address.to_string()) + ":" + std::to_string(port);
  core->log->info(
      "HTTP listener on {} (/healthz /readyz /metrics), at most {} connections, {} ms "
      "per request",
      core->where, options.max_connections, options.request_timeout.count());
  boost::asio::post(core->strand, [core] {
    if (!core->closed) core->accept();
  });
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(core), port));
}

HttpServer::~HttpServer() { stop(); }

void HttpServer::stop() {
  Core& core = *core_;
  // On hc-io (the server's strand, e.g. from the Handler, or another strand) nothing of ours can
  // run concurrently: the io_context has one thread, and it is this one.
  if (core.strand.running_in_this_thread() || core.io.get_executor().running_in_this_thread()) {
    core.closeOnce();
    return;
  }
  boost::asio::post(core.strand, [c = core_] { c->closeOnce(); });
  // Normally the strand closes within microseconds. If hc-io has stopped, the strand never will,
  // and nothing runs handlers any more, so closing from here is safe.
  while (core.close_finished.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
    if (core.io.stopped()) core.closeOnce();
  }
}

HttpServerStats HttpServer::stats() const {
  const Core& c = *core_;
  return {c.accepted.load(std::memory_order_relaxed), c.refused_at_cap.load(std::memory_order_relaxed),
          c.closed_by_timeout.load(std::memory_order_relaxed),
          c.accept_errors.load(std::memory_order_relaxed), c.open.load(std::memory_order_relaxed)};
}

}  // namespace hacoord
