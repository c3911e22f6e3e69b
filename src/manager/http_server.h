// HttpServer: a hardened HTTP/1.1 listener (Boost.Beast) for /healthz, /readyz and /metrics.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "hacoord/status.h"

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace hacoord {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

struct HttpServerOptions {
  // "ip:port" or "[ipv6]:port"; port 0 picks a free one (see HttpServer::port()). The host must be
  // an IP literal: the listener never resolves names.
  std::string listen;
  // Open connections at most; a connection beyond them is accepted, answered 503 and closed at
  // once. At most half of the process's RLIMIT_NOFILE, so NATS and health checks keep descriptors.
  int max_connections = 64;
  // A connection must deliver its complete request within this time (idle and slow clients alike);
  // the response must be taken within it too. Either way the connection is closed.
  std::chrono::milliseconds request_timeout{5000};
};

// Counters since start(), for /metrics. Every connection accept() returned counts once, in
// `accepted` or in `refused_at_cap`.
struct HttpServerStats {
  std::uint64_t accepted = 0;           // taken into service
  std::uint64_t refused_at_cap = 0;     // closed at once: max_connections were open
  std::uint64_t closed_by_timeout = 0;  // request not delivered (or response not taken) in time
  std::uint64_t accept_errors = 0;      // accept() failed (EMFILE, ENFILE, ...); each one backs off
  std::uint64_t open = 0;               // open connections now
};

// One GET (or HEAD) per connection, enough for probes and Prometheus scrapes. The server has no
// thread of its own: it runs on a strand of the io_context it is given (the Runtime's hc-io), so
// nothing it does may block, and a slow or hostile client costs one socket and a timer, never a
// thread. Requests are capped at kMaxHeaderBytes of header; a body over kMaxBodyBytes is refused.
class HttpServer {
 public:
  // Called on the server's strand for GET and HEAD, with the target's path (query cut off). It
  // must be cheap and must not block: it runs on hc-io.
  using Handler = std::function<HttpResponse(const std::string& path)>;

  static constexpr std::size_t kMaxHeaderBytes = 8 * 1024;
  static constexpr std::size_t kMaxBodyBytes = 1024;
  // How long the acceptor waits before it retries after accept() failed (EMFILE and the like):
  // retrying at once would spin on hc-io while the descriptors stay exhausted.
  static constexpr std::chrono::milliseconds kAcceptBackoff{100};

  // Binds and starts accepting on `io`, which must be run by one thread (hacoord's hc-io).
  // InvalidArgument (saying what is wrong, quoting `listen`) for bad options; Unavailable when the
  // address cannot be bound.
  static Result<std::unique_ptr<HttpServer>> start(boost::asio::io_context& io,
                                                   const HttpServerOptions& options, Handler handler);
  ~HttpServer();  // stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Closes the acceptor and every open connection. When it returns the port is closed and the
  // Handler will not be called again (nor anything else that touches the owner), so the owner may
  // be destroyed right after. Idempotent; callable from any thread, from the Handler, and after
  // the io_context has stopped.
  void stop();

  int port() const { return port_; }
  // Safe from any thread.
  HttpServerStats stats() const;

 private:
  struct Core;  // the state the strand's handlers share; outlives this object until they are done
  class Session;

  HttpServer(std::shared_ptr<Core> core, int port);

  std::shared_ptr<Core> core_;
  int port_ = 0;
};

}  // namespace hacoord
