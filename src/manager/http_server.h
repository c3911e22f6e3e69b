// HttpServer: a minimal HTTP/1.1 listener (Boost.Beast) for /healthz, /readyz and /metrics.
#pragma once

#include <utility>  // before Asio: Boost 1.74 under C++20 needs it

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "hacoord/status.h"

namespace hacoord {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// GET only; one request per connection is enough for probes and Prometheus scrapes. Runs on a
// thread of its own so that a slow client never delays the election.
class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const std::string& path)>;

  // `listen` is "host:port" (port 0 picks a free one). InvalidArgument / Unavailable when it
  // cannot be parsed or bound.
  static Result<std::unique_ptr<HttpServer>> start(const std::string& listen, Handler handler);
  ~HttpServer();  // stops accepting and joins
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const { return port_; }

 private:
  HttpServer(Handler handler);
  void accept();

  Handler handler_;
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  int port_ = 0;
  std::thread thread_;
};

}  // namespace hacoord
