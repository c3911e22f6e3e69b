// HttpServer: accept loop and one-shot request handling with Beast.
#include "manager/http_server.h"

#include <boost/asio/ip/address.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "core/logging.h"

namespace hacoord {
namespace http = boost::beast::http;
using boost::asio::ip::tcp;

namespace {

// Reads one request, answers it, closes. Owns its socket and buffers.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, const HttpServer::Handler& handler)
      : socket_(std::move(socket)), handler_(handler) {}

  void run() {
    http::async_read(socket_, buffer_, request_,
                     [self = shared_from_this()](boost::beast::error_code ec, std::size_t) {
                       if (!ec) self->respond();
                     });
  }

 private:
  void respond() {
    HttpResponse r;
    if (request_.method() != http::verb::get && request_.method() != http::verb::head) {
      r = {405, "text/plain; charset=utf-8", "only GET\n"};
    } else {
      std::string target(request_.target());
      r = handler_(target.substr(0, target.find('?')));
    }
    response_.version(request_.version());
    response_.result(static_cast<unsigned>(r.status));
    response_.set(http::field::server, "hacoord");
    response_.set(http::field::content_type, r.content_type);
    response_.keep_alive(false);
    response_.body() = request_.method() == http::verb::head ? "" : std::move(r.body);
    response_.prepare_payload();
    http::async_write(socket_, response_,
                      [self = shared_from_this()](boost::beast::error_code, std::size_t) {
                        boost::beast::error_code ignored;
                        self->socket_.shutdown(tcp::socket::shutdown_send, ignored);
                      });
  }

  tcp::socket socket_;
  const HttpServer::Handler& handler_;
  boost::beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  http::response<http::string_body> response_;
};

}  // namespace

HttpServer::HttpServer(Handler handler) : handler_(std::move(handler)), acceptor_(io_) {}

Result<std::unique_ptr<HttpServer>> HttpServer::start(const std::string& listen, Handler handler) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) return invalidArgument("http.listen: expected host:port, got " + listen);
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  int port = 0;
  try {
    port = std::stoi(listen.substr(colon + 1));
  } catch (const std::exception&) {
    return invalidArgument("http.listen: bad port in " + listen);
  }
  boost::system::error_code ec;
  auto address = boost::asio::ip::make_address(host.empty() ? "0.0.0.0" : host, ec);
  if (ec) return invalidArgument("http.listen: '" + host + "' is not an IP address");

  std::unique_ptr<HttpServer> server(new HttpServer(std::move(handler)));
  tcp::endpoint endpoint(address, static_cast<unsigned short>(port));
  server->acceptor_.open(endpoint.protocol(), ec);
  if (!ec) server->acceptor_.set_option(boost::asio::socket_base::reuse_address(true), ec);
  if (!ec) server->acceptor_.bind(endpoint, ec);
  if (!ec) server->acceptor_.listen(boost::asio::socket_base::max_listen_connections, ec);
  if (ec) return unavailable("http.listen " + listen + ": " + ec.message());
  server->port_ = server->acceptor_.local_endpoint().port();
  server->accept();
  server->thread_ = std::thread([s = server.get()] { s->io_.run(); });
  moduleLogger("http")->info("HTTP listener on {}:{} (/healthz /readyz /metrics)", host, server->port_);
  return server;
}

HttpServer::~HttpServer() {
  io_.stop();
  if (thread_.joinable()) thread_.join();
}

void HttpServer::accept() {
  acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
    if (ec) return;  // acceptor closed
    std::make_shared<Session>(std::move(socket), handler_)->run();
    accept();
  });
}

}  // namespace hacoord
