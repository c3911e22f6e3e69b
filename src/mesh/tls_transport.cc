// TlsTransport: mutual TLS 1.3 mesh links over Boost.Asio and OpenSSL (see tls_transport.h).
#include "mesh/tls_transport.h"

#include <utility>  // before Asio: Boost 1.74 under C++20 needs it

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string_view>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/host_port.h"
#include "core/logging.h"
#include "mesh/certs.h"

namespace hacoord::mesh {

std::string_view refusedReasonName(RefusedReason r) {
  switch (r) {
    case RefusedReason::kTlsHandshake:
      return "tls_handshake";
    case RefusedReason::kWrongCa:
      return "wrong_ca";
    case RefusedReason::kExpired:
      return "expired";
    case RefusedReason::kSan:
      return "san";
    case RefusedReason::kAlpn:
      return "alpn";
  }
  return "unknown";
}

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;
using boost::system::error_code;

namespace {

constinit const ModuleLog kLog("mesh");

constexpr std::string_view kAlpn = "hacoord/1";
// What a write gathers before it goes out: one bulk fragment at most (see pickLane()).
constexpr std::size_t kWriteGather = 64 * 1024;
constexpr std::size_t kReadChunk = 64 * 1024;
// close(): GOAWAY, close_notify, and the socket is closed by then whatever the peer does
// (async_shutdown can hang on TLS 1.3, boostorg/asio#164).
constexpr auto kCloseWait = std::chrono::seconds(1);
constexpr int kRefusedReasons = 5;
constexpr int kGoAwayReasons = 8;

// Lanes after control, 4:2:1; no two bulk slots are adjacent (wrapping included), so once a bulk
// fragment has gone out the next pick is the rpc lane.
constexpr Lane kLaneSlots[] = {Lane::kRpc, Lane::kStream, Lane::kRpc, Lane::kSync,
                               Lane::kRpc, Lane::kStream, Lane::kRpc};
constexpr std::size_t kLaneSlotCount = sizeof(kLaneSlots) / sizeof(kLaneSlots[0]);

std::string opensslError() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) {
      out += "; ";
    }
    out += buf;
  }
  return out.empty() ? "no OpenSSL error" : out;
}

std::string endpointText(const tcp::endpoint& ep) {
  const auto addr = ep.address();
  if (addr.is_v6()) {
    return "[" + addr.to_string() + "]:" + std::to_string(ep.port());
  }
  return addr.to_string() + ":" + std::to_string(ep.port());
}

std::string millisText(Duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}

// Why a handshake was refused, as found by the callbacks or the checks after it.
struct Refusal {
  RefusedReason reason = RefusedReason::kTlsHandshake;
  std::string detail;
  bool by_peer = false;  // the peer refused us (not counted as our refusal)
};

// Per-connection state the OpenSSL callbacks write (reached through SSL ex_data).
struct HandshakeState {
  std::optional<Refusal> refusal;
  // Dialer: the acceptor sent a session ticket, which it does only once it has accepted our
  // certificate (in TLS 1.3 the client's handshake ends before the server has checked it).
  std::function<void()> on_ticket;
};

int handshakeStateIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

int selectAlpn(SSL* ssl, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void* /*arg*/) {
  std::string offered;
  for (unsigned int i = 0; i < inlen;) {
    const unsigned int len = in[i];
    if (i + 1 + len > inlen) {
      break;
    }
    const std::string_view proto(reinterpret_cast<const char*>(in + i + 1), len);
    if (proto == kAlpn) {
      *out = in + i + 1;
      *outlen = static_cast<unsigned char>(len);
      return SSL_TLSEXT_ERR_OK;
    }
    offered += offered.empty() ? "" : ",";
    offered += proto;
    i += 1 + len;
  }
  if (auto* hs = static_cast<HandshakeState*>(SSL_get_ex_data(ssl, handshakeStateIndex()));
      hs && !hs->refusal) {
    hs->refusal =
        Refusal{RefusedReason::kAlpn, "the client offered ALPN [" + offered + "], not " + std::string(kAlpn)};
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

// The acceptor's session ticket: proof that it accepted our certificate. The session itself is
// never kept (sessions are never resumed).
int onNewSession(SSL* ssl, SSL_SESSION* /*session*/) {
  if (auto* hs = static_cast<HandshakeState*>(SSL_get_ex_data(ssl, handshakeStateIndex()));
      hs && hs->on_ticket) {
    auto fn = std::move(hs->on_ticket);
    hs->on_ticket = nullptr;
    fn();
  }
  return 0;
}

RefusedReason classifyVerifyError(int err) {
  switch (err) {
    case X509_V_ERR_CERT_NOT_YET_VALID:
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD:
    case X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD:
      return RefusedReason::kExpired;
    default:
      // Unknown issuer, bad signature, self-signed, bad chain: not the cluster CA's certificate.
      return RefusedReason::kWrongCa;
  }
}

void setSocketOptions(tcp::socket& socket, Duration user_timeout) {
  error_code ec;
  socket.set_option(tcp::no_delay(true), ec);
  if (ec) {
    kLog->warn("cannot set TCP_NODELAY: {}", ec.message());
  }
  const unsigned int ms =
      static_cast<unsigned int>(std::chrono::duration_cast<std::chrono::milliseconds>(user_timeout).count());
  if (::setsockopt(socket.native_handle(), IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms)) != 0) {
    kLog->warn("cannot set TCP_USER_TIMEOUT: errno {}", errno);
  }
}

// The one place an SSL_CTX is made, so that a reload (SIGHUP) can build a new one and swap it in:
// connections keep the context they started with.
Result<std::shared_ptr<ssl::context>> makeSslContext(const TlsTransport::Options& o) {
  ERR_clear_error();
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls);
  SSL_CTX* c = ctx->native_handle();
  if (SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION) != 1) {
    return internalError("cannot restrict TLS to 1.3: " + opensslError());
  }
  // Sessions are never resumed: every connection proves its certificate again. The acceptor
  // still sends one ticket, after it has checked the dialer's certificate: the dialer takes it as
  // the acceptor's consent (onNewSession), so a refused dial never becomes a Link on either side.
  // The client cache mode only makes OpenSSL call onNewSession; nothing is stored.
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(c, onNewSession);
  SSL_CTX_set_num_tickets(c, 1);
  if (SSL_CTX_load_verify_locations(c, o.ca_file.c_str(), nullptr) != 1) {
    return invalidArgument("cannot load the cluster CA " + o.ca_file + ": " + opensslError());
  }
  if (SSL_CTX_use_certificate_chain_file(c, o.cert_file.c_str()) != 1) {
    return invalidArgument("cannot load the certificate " + o.cert_file + ": " + opensslError());
  }
  if (SSL_CTX_use_PrivateKey_file(c, o.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return invalidArgument("cannot load the key " + o.key_file + ": " + opensslError());
  }
  if (SSL_CTX_check_private_key(c) != 1) {
    return invalidArgument("the key " + o.key_file + " does not match the certificate " + o.cert_file + ": " +
                           opensslError());
  }
  SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  SSL_CTX_set_verify_depth(c, 2);
  SSL_CTX_set_alpn_select_cb(c, selectAlpn, nullptr);
  return ctx;
}

// ---- Shared state ------------------------------------------------------------------------------

class TlsConn;
struct DialOp;

}  // namespace

struct TlsTransport::Shared : std::enable_shared_from_this<Shared> {
  Shared(asio::io_context& io_in, Scheduler& scheduler_in, Options options_in,
         std::shared_ptr<ssl::context> ctx_in)
      : io(io_in),
        scheduler(scheduler_in),
        options(std::move(options_in)),
        acceptor_ex(asio::make_strand(io_in)),
        ctx(std::move(ctx_in)) {}

  asio::io_context& io;
  Scheduler& scheduler;
  const Options options;
  const asio::any_io_executor acceptor_ex;

  std::atomic<bool> stopped{false};
  std::atomic<std::size_t> handshakes{0};

  std::atomic<std::uint64_t> accepted{0};
  std::atomic<std::uint64_t> dialed{0};
  std::atomic<std::uint64_t> over_cap{0};
  std::atomic<std::uint64_t> bytes_in{0};
  std::atomic<std::uint64_t> bytes_out{0};
  std::array<std::atomic<std::uint64_t>, kRefusedReasons> refused{};
  std::array<std::atomic<std::uint64_t>, kGoAwayReasons> frames_refused{};

  mutable std::mutex mu;
  std::shared_ptr<ssl::context> ctx;                         // guarded by mu (a reload swaps it)
  std::shared_ptr<tcp::acceptor> acceptor;                   // guarded by mu; used on acceptor_ex
  AcceptFn on_accept;                                        // set once by listen()
  std::string listen_address;                                // guarded by mu
  std::set<std::shared_ptr<DialOp>> dials;                   // guarded by mu
  std::map<asio::ip::address, std::size_t> handshakes_from;  // guarded by mu: inbound, by address

  // Takes an inbound handshake slot for a connection from `from`; empty when it may go on, else
  // why not (too many handshakes in all, or from that address).
  std::string beginHandshake(const asio::ip::address& from) {
    std::lock_guard lock(mu);
    if (handshakes.load() >= options.max_concurrent_handshakes) {
      return "more than " + std::to_string(options.max_concurrent_handshakes) + " inbound handshakes at once";
    }
    std::size_t& n = handshakes_from[from];
    if (n >= options.max_handshakes_per_address) {
      return "more than " + std::to_string(options.max_handshakes_per_address) + " inbound handshakes from " +
             from.to_string() + " at once";
    }
    ++n;
    handshakes.fetch_add(1);
    return {};
  }
  void endHandshake(const asio::ip::address& from) {
    std::lock_guard lock(mu);
    handshakes.fetch_sub(1);
    auto it = handshakes_from.find(from);
    if (it != handshakes_from.end() && --it->second == 0) handshakes_from.erase(it);
  }

  // Accept and dial callbacks: never after the transport was destroyed (its owner may destroy the
  // Scheduler next).
  std::mutex post_mu;
  bool detached = false;  // guarded by post_mu
  void post(Scheduler::Task task) {
    std::lock_guard lock(post_mu);
    if (!detached) {
      scheduler.post(std::move(task));
    }
  }

  std::shared_ptr<ssl::context> context() const {
    std::lock_guard lock(mu);
    return ctx;
  }
  void refuse(RefusedReason r, const std::string& remote, bool inbound, const std::string& detail) {
    refused[static_cast<int>(r)].fetch_add(1, std::memory_order_relaxed);
    kLog->info("{} refused {} {}: {} ({})", options.node,
               inbound ? "inbound connection from" : "connection to", remote, refusedReasonName(r), detail);
  }
};

// ---- One connection ----------------------------------------------------------------------------

namespace {

class TlsConn : public std::enable_shared_from_this<TlsConn> {
 public:
  using HandshakeDone = std::function<void(std::optional<Refusal>)>;

  TlsConn(std::shared_ptr<TlsTransport::Shared> shared, tcp::socket socket, std::shared_ptr<ssl::context> ctx,
          bool dialed, std::string expected_node)
      : shared_(std::move(shared)),
        ctx_(std::move(ctx)),
        ex_(socket.get_executor()),
        stream_(std::move(socket), *ctx_),
        timer_(ex_),
        dialed_(dialed),
        expected_node_(std::move(expected_node)),
        decoder_(shared_->options.max_message_bytes) {
    error_code ec;
    const auto ep = stream_.lowest_layer().remote_endpoint(ec);
    remote_ = ec ? std::string("(unknown)") : endpointText(ep);
  }

  const asio::any_io_executor& executor() const { return ex_; }
  const std::string& remote() const { return remote_; }
  const std::string& peerId() const { return peer_id_; }
  const std::string& fingerprint() const { return fingerprint_; }
  bool dialed() const { return dialed_; }
  std::size_t queuedBytes() const { return queued_.load(std::memory_order_relaxed); }

  // On the strand. `done` runs on the strand once: nullopt when the peer passed every check.
  void handshake(Duration timeout, HandshakeDone done) {
    hs_done_ = std::move(done);
    SSL* ssl = stream_.native_handle();
    SSL_set_ex_data(ssl, handshakeStateIndex(), &hs_);
    stream_.set_verify_callback(
        [this](bool preverified, ssl::verify_context& vc) { return verifyPeer(preverified, vc); });
    if (dialed_) {
      static const std::string kAlpnWire =
          std::string(1, static_cast<char>(kAlpn.size())) + std::string(kAlpn);
      // Note the inverted convention: 0 is success.
      if (SSL_set_alpn_protos(ssl, reinterpret_cast<const unsigned char*>(kAlpnWire.data()),
                              static_cast<unsigned int>(kAlpnWire.size())) != 0) {
        finishHandshake(Refusal{RefusedReason::kTlsHandshake, "cannot set ALPN: " + opensslError()});
        return;
      }
      SSL_set_tlsext_host_name(ssl, expected_node_.c_str());
    }
    timer_.expires_after(timeout);
    timer_.async_wait(asio::bind_executor(ex_, [self = shared_from_this(), timeout](const error_code& ec) {
      if (!ec && !self->hs_finished_) {
        self->hs_timed_out_ = true;
        self->hs_timeout_ = timeout;
        self->closeSocket();
      }
    }));
    stream_.async_handshake(dialed_ ? ssl::stream_base::client : ssl::stream_base::server,
                            asio::bind_executor(ex_, [self = shared_from_this()](const error_code& ec) {
                              self->onHandshake(ec);
                            }));
  }

  // On the strand: drops the connection without a word (refused or abandoned before it was a Link).
  void closeSocket() {
    error_code ignored;
    timer_.cancel();
    stream_.lowest_layer().close(ignored);
  }

  // ---- Link methods (called on the Scheduler) ----

  void start(LinkEvents events) {
    if (start_called_) {
      return;
    }
    start_called_ = true;
    events_ = std::move(events);
    asio::post(ex_, [self = shared_from_this()] {
      self->started_ = true;
      if (self->finished_) {
        self->postClosed();
      } else if (self->parked_) {
        auto [ec, n] = *self->parked_;
        self->parked_.reset();
        self->onRead(ec, n);
      } else if (!self->read_in_flight_) {
        self->doRead();
      }
    });
  }

  bool send(Message m) {
    if (closing_.load()) {
      return false;
    }
    const auto lane = static_cast<std::size_t>(m.lane);
    if (lane >= static_cast<std::size_t>(kLaneCount)) {
      kLog->warn("send to {}: lane {} does not exist", peer_id_, lane);
      return false;
    }
    std::string bytes;
    if (Status s = encodeMessage(m, bytes); !s.isOk()) {
      kLog->warn("send to {}: cannot encode a {} message: {}", peer_id_,
                 frameTypeName(static_cast<std::uint8_t>(m.type)), s.toString());
      return false;
    }
    queued_.fetch_add(bytes.size(), std::memory_order_relaxed);
    asio::post(ex_, [self = shared_from_this(), lane, bytes = std::move(bytes),
                     enqueued = std::chrono::steady_clock::now()]() mutable {
      if (self->finished_) {
        self->queued_.fetch_sub(bytes.size(), std::memory_order_relaxed);
        return;
      }
      self->lanes_[lane].push_back(Queued{std::move(bytes), 0, enqueued});
      self->kick();
    });
    return true;
  }

  void close(GoAwayReason reason, std::string text) {
    if (closing_.exchange(true)) {
      return;
    }
    asio::post(ex_, [self = shared_from_this(), reason, text = std::move(text)] {
      self->beginClose(
          reason, text,
          Status(StatusCode::kCancelled,
                 "closed by this node: GOAWAY(" + std::string(goAwayReasonName(reason)) + ") " + text));
    });
  }

  // The last Link handle is gone: close as close() would, and deliver nothing more.
  void abandon() {
    {
      // After this nothing more is posted to the Scheduler for this link (which may be destroyed
      // right after its last link).
      std::lock_guard lock(post_mu_);
      abandoned_.store(true);
    }
    closing_.store(true);
    asio::post(ex_, [self = shared_from_this()] {
      self->beginClose(GoAwayReason::kShutdown, "link released",
                       Status(StatusCode::kCancelled, "the link was released by its owner"));
    });
  }

 private:
  struct Queued {
    std::string bytes;  // whole frames
    std::size_t pos = 0;
    std::chrono::steady_clock::time_point enqueued;  // when send() was called
  };

  bool verifyPeer(bool preverified, ssl::verify_context& vc) {
    X509_STORE_CTX* sc = vc.native_handle();
    const int depth = X509_STORE_CTX_get_error_depth(sc);
    if (!preverified) {
      const int err = X509_STORE_CTX_get_error(sc);
      if (!hs_.refusal) {
        hs_.refusal =
            Refusal{classifyVerifyError(err), std::string("certificate at depth ") + std::to_string(depth) +
                                                  ": " + X509_verify_cert_error_string(err)};
      }
      return false;
    }
    if (depth == 0) {
      auto id = identityOf(X509_STORE_CTX_get_current_cert(sc), shared_->options.cluster, expected_node_);
      if (!id.isOk()) {
        if (!hs_.refusal) {
          hs_.refusal = Refusal{RefusedReason::kSan, id.status().message()};
        }
        X509_STORE_CTX_set_error(sc, X509_V_ERR_APPLICATION_VERIFICATION);
        return false;
      }
    }
    return true;
  }

  void onHandshake(const error_code& ec) {
    if (ec) {
      if (hs_.refusal) {
        finishHandshake(hs_.refusal);
      } else if (hs_timed_out_) {
        finishHandshake(
            Refusal{RefusedReason::kTlsHandshake, "no handshake within " + millisText(hs_timeout_)});
      } else {
        finishHandshake(Refusal{RefusedReason::kTlsHandshake, ec.message()});
      }
      return;
    }
    SSL* ssl = stream_.native_handle();
    const unsigned char* alpn = nullptr;
    unsigned int alpn_len = 0;
    SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
    if (std::string_view(reinterpret_cast<const char*>(alpn), alpn == nullptr ? 0 : alpn_len) != kAlpn) {
      finishHandshake(Refusal{
          RefusedReason::kAlpn,
          alpn_len == 0
              ? std::string("no ALPN negotiated")
              : "ALPN '" + std::string(reinterpret_cast<const char*>(alpn), alpn_len) + "' negotiated"});
      return;
    }
    X509* leaf = SSL_get0_peer_certificate(ssl);
    if (leaf == nullptr) {
      finishHandshake(Refusal{RefusedReason::kTlsHandshake, "the peer presented no certificate"});
      return;
    }
    // The verify callback checked it already; checked again on the leaf itself, since a Link's
    // identity must never rest on a callback having run.
    auto id = identityOf(leaf, shared_->options.cluster, expected_node_);
    if (!id.isOk()) {
      finishHandshake(Refusal{RefusedReason::kSan, id.status().message()});
      return;
    }
    peer_id_ = std::move(id).value();
    auto fingerprint = fingerprintOf(leaf);
    if (!fingerprint.isOk()) {
      finishHandshake(Refusal{RefusedReason::kTlsHandshake, fingerprint.status().message()});
      return;
    }
    fingerprint_ = std::move(fingerprint).value();
    if (!dialed_) {
      finishHandshake(std::nullopt);
      return;
    }
    // The dialer waits for the acceptor's verdict on its certificate: a session ticket (accepted),
    // application data (accepted), or an alert / close (refused). The read stays the link's first.
    hs_.on_ticket = [this] {
      if (!hs_finished_) {
        finishHandshake(std::nullopt);
      }
    };
    doRead();
  }

  void finishHandshake(std::optional<Refusal> r) {
    hs_finished_ = true;
    hs_.on_ticket = nullptr;
    timer_.cancel();
    SSL_set_ex_data(stream_.native_handle(), handshakeStateIndex(), nullptr);
    if (r) {
      closeSocket();
    }
    auto done = std::move(hs_done_);
    hs_done_ = nullptr;
    if (done) {
      done(std::move(r));
    }
  }

  // ---- Writer ----

  // The next bulk-or-rpc lane with frames, weighted 4:2:1; -1 when all are empty.
  int pickLane() {
    for (std::size_t i = 0; i < kLaneSlotCount; ++i) {
      const auto lane = static_cast<int>(kLaneSlots[slot_]);
      slot_ = (slot_ + 1) % kLaneSlotCount;
      if (!lanes_[lane].empty()) {
        return lane;
      }
    }
    return -1;
  }

  // A request's timeout_ms is what remains of its deadline when it leaves, not when it was queued
  // (behind other frames of its lane, or a slow reader): the time it waited is taken off here, just
  // before the write. Down to 0, which the receiver takes as expired: never run.
  void ageTimeout(std::size_t frame_at, std::chrono::steady_clock::time_point enqueued) {
    constexpr std::size_t kTypeAt = 5;
    constexpr std::size_t kTimeoutAt = 24;
    if (out_.size() < frame_at + kHeaderBytes || static_cast<std::uint8_t>(out_[frame_at + kTypeAt]) !=
                                                     static_cast<std::uint8_t>(FrameType::kRpcReq)) {
      return;
    }
    auto* t = reinterpret_cast<unsigned char*>(out_.data() + frame_at + kTimeoutAt);
    const std::uint32_t timeout =
        (std::uint32_t{t[0]} << 24) | (std::uint32_t{t[1]} << 16) | (std::uint32_t{t[2]} << 8) | t[3];
    if (timeout == 0) {
      return;
    }
    const auto waited =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - enqueued)
            .count();
    const std::uint32_t left = waited >= timeout ? 0 : timeout - static_cast<std::uint32_t>(waited);
    t[0] = static_cast<unsigned char>(left >> 24);
    t[1] = static_cast<unsigned char>(left >> 16);
    t[2] = static_cast<unsigned char>(left >> 8);
    t[3] = static_cast<unsigned char>(left);
  }

  void takeFrame(int lane) {
    Queued& q = lanes_[lane].front();
    const auto* p = reinterpret_cast<const unsigned char*>(q.bytes.data() + q.pos);
    const std::size_t len =
        (std::size_t{p[0]} << 24) | (std::size_t{p[1]} << 16) | (std::size_t{p[2]} << 8) | p[3];
    const std::size_t size = std::min(4 + len, q.bytes.size() - q.pos);
    const std::size_t at = out_.size();
    out_.append(q.bytes, q.pos, size);
    ageTimeout(at, q.enqueued);
    out_queued_ += size;
    q.pos += size;
    if (q.pos >= q.bytes.size()) {
      lanes_[lane].pop_front();
    }
  }

  void kick() {
    if (writing_ || finished_ || shutting_down_) {
      return;
    }
    out_.clear();
    out_queued_ = 0;
    while (!lanes_[0].empty() && out_.size() < kWriteGather) {
      takeFrame(0);
    }
    while (out_.size() < kWriteGather) {
      const int lane = pickLane();
      if (lane < 0) {
        break;
      }
      takeFrame(lane);
    }
    if (out_.empty()) {
      if (!goaway_.has_value()) {
        return;
      }
      out_ = std::move(*goaway_);
      goaway_.reset();
      goaway_in_flight_ = true;
    }
    writing_ = true;
    asio::async_write(
        stream_, asio::buffer(out_),
        asio::bind_executor(
            ex_, [self = shared_from_this()](const error_code& ec, std::size_t n) { self->onWrite(ec, n); }));
  }

  void onWrite(const error_code& ec, std::size_t n) {
    writing_ = false;
    shared_->bytes_out.fetch_add(n, std::memory_order_relaxed);
    queued_.fetch_sub(out_queued_, std::memory_order_relaxed);
    out_queued_ = 0;
    if (ec) {
      finish(Status(StatusCode::kUnavailable,
                    "writing to " + peer_id_ + " at " + remote_ + " failed: " + ec.message()));
      return;
    }
    if (goaway_in_flight_) {
      goaway_in_flight_ = false;
      startShutdown();
      return;
    }
    kick();
  }

  void dropQueued() {
    for (auto& lane : lanes_) {
      for (const Queued& q : lane) {
        queued_.fetch_sub(q.bytes.size() - q.pos, std::memory_order_relaxed);
      }
      lane.clear();
    }
  }

  // GOAWAY after what is queued, then close_notify, all within kCloseWait.
  void beginClose(GoAwayReason reason, const std::string& text, Status why) {
    if (finished_ || local_close_.has_value()) {
      return;
    }
    local_close_ = std::move(why);
    Message goaway;
    goaway.type = FrameType::kGoAway;
    goaway.lane = Lane::kControl;
    goaway.payload = encodeGoAway(GoAway{reason, text});
    std::string bytes;
    if (encodeMessage(goaway, bytes).isOk()) {
      goaway_ = std::move(bytes);
    }
    timer_.expires_after(kCloseWait);
    timer_.async_wait(asio::bind_executor(ex_, [self = shared_from_this()](const error_code& ec) {
      if (!ec) {
        self->finish(Status());
      }
    }));
    if (!goaway_.has_value()) {
      startShutdown();
      return;
    }
    kick();
  }

  void startShutdown() {
    if (shutting_down_ || finished_) {
      return;
    }
    shutting_down_ = true;
    stream_.async_shutdown(
        asio::bind_executor(ex_, [self = shared_from_this()](const error_code&) { self->finish(Status()); }));
  }

  // Once: the connection is gone. `why` unless this side closed it (then the reason it gave).
  void finish(Status why) {
    if (finished_) {
      return;
    }
    finished_ = true;
    closing_.store(true);
    closed_status_ = local_close_.has_value() ? *local_close_ : std::move(why);
    if (closed_status_.isOk()) {
      closed_status_ = Status(StatusCode::kUnavailable, "connection to " + remote_ + " closed");
    }
    dropQueued();
    closeSocket();
    if (started_) {
      postClosed();
    }
  }

  // To the Scheduler, unless the link was released.
  void postEvent(Scheduler::Task task) {
    std::lock_guard lock(post_mu_);
    if (!abandoned_.load()) {
      shared_->scheduler.post(std::move(task));
    }
  }

  void postClosed() {
    postEvent([self = shared_from_this(), status = closed_status_] {
      if (!self->abandoned_.load() && self->events_.on_closed) {
        self->events_.on_closed(status);
      }
    });
  }

  // ---- Reader ----

  void doRead() {
    if (finished_ || read_stopped_ || read_in_flight_) {
      return;
    }
    read_in_flight_ = true;
    stream_.async_read_some(
        asio::buffer(rbuf_.data(), rbuf_.size()),
        asio::bind_executor(ex_, [self = shared_from_this()](const error_code& ec, std::size_t n) {
          self->onReadDone(ec, n);
        }));
  }

  void onReadDone(const error_code& ec, std::size_t n) {
    read_in_flight_ = false;
    if (!hs_finished_) {
      // A dialer waiting for the acceptor's verdict (see onHandshake()).
      if (n == 0) {
        std::string why = hs_timed_out_ ? "no answer within " + millisText(hs_timeout_) : ec.message();
        finishHandshake(
            Refusal{RefusedReason::kTlsHandshake, "the peer refused the connection: " + why, true});
        return;
      }
      finishHandshake(std::nullopt);  // data before any ticket: accepted all the same
    }
    if (!started_) {
      parked_.emplace(ec, n);  // the Link delivers nothing before start()
      return;
    }
    onRead(ec, n);
  }

  void onRead(const error_code& ec, std::size_t n) {
    if (finished_) {
      return;
    }
    if (n > 0) {
      shared_->bytes_in.fetch_add(n, std::memory_order_relaxed);
      consume(std::string_view(rbuf_.data(), n));
      if (read_stopped_) {
        return;
      }
    }
    if (ec) {
      if (ec == asio::error::eof || ec == ssl::error::stream_truncated) {
        std::string text = "peer " + peer_id_ + " at " + remote_ + " closed the connection";
        if (!peer_goaway_.empty()) {
          text += " after " + peer_goaway_;
        }
        finish(Status(StatusCode::kUnavailable, text));
      } else {
        finish(Status(StatusCode::kUnavailable,
                      "reading from " + peer_id_ + " at " + remote_ + " failed: " + ec.message()));
      }
      return;
    }
    if (undelivered_.load() > undeliveredLimit()) {
      read_paused_ = true;  // resumed by the Scheduler's side once it has caught up (delivered())
      return;
    }
    doRead();
  }

  // The most message bytes posted to the Scheduler and not yet run before reading pauses: a slow
  // Scheduler makes the peer wait (TCP backpressure) instead of growing a queue.
  std::size_t undeliveredLimit() const { return shared_->options.max_message_bytes + kReadChunk; }

  // On the Scheduler, after a message ran.
  void delivered(std::size_t bytes) {
    const std::size_t before = undelivered_.fetch_sub(bytes);
    if (before > undeliveredLimit() && before - bytes <= undeliveredLimit()) {
      asio::post(ex_, [self = shared_from_this()] {
        if (self->read_paused_ && self->undelivered_.load() <= self->undeliveredLimit()) {
          self->read_paused_ = false;
          self->doRead();
        }
      });
    }
  }

  // Feeds the decoder and delivers whole messages; a bad frame ends the connection (GOAWAY).
  void consume(std::string_view chunk) {
    // Frame boundaries, tracked here so an oversize len is refused from its first 4 bytes, before
    // the decoder would wait for (or buffer) anything more.
    std::optional<std::uint32_t> oversize;
    for (std::size_t i = 0; i < chunk.size();) {
      if (frame_left_ == 0) {
        len_buf_[len_have_++] = static_cast<unsigned char>(chunk[i++]);
        if (len_have_ == 4) {
          len_have_ = 0;
          const std::uint32_t len = (std::uint32_t{len_buf_[0]} << 24) | (std::uint32_t{len_buf_[1]} << 16) |
                                    (std::uint32_t{len_buf_[2]} << 8) | len_buf_[3];
          if (len > kMaxFrameLen) {
            oversize = len;
            chunk = chunk.substr(0, i - std::min<std::size_t>(i, 4));
            break;
          }
          frame_left_ = len;
        }
      } else {
        const std::size_t skip = std::min<std::size_t>(frame_left_, chunk.size() - i);
        frame_left_ -= skip;
        i += skip;
      }
    }
    decoder_.feed(chunk);
    while (true) {
      auto next = decoder_.next();
      if (!next.isOk()) {
        const bool too_large = next.status().code() == StatusCode::kResourceExhausted;
        protocolError(too_large ? GoAwayReason::kFrameTooLarge : GoAwayReason::kProtocol,
                      next.status().message());
        return;
      }
      if (!next.value().has_value()) {
        break;
      }
      Message m = std::move(*next.value());
      if (m.type == FrameType::kGoAway) {
        if (auto g = decodeGoAway(m.payload); g.isOk()) {
          peer_goaway_ = "GOAWAY(" + std::string(goAwayReasonName(g->reason)) + ") " + g->text;
        }
      }
      const std::size_t bytes = m.payload.size() + m.name.size() + kHeaderBytes;
      undelivered_.fetch_add(bytes);
      postEvent([self = shared_from_this(), m = std::move(m), bytes]() mutable {
        if (!self->abandoned_.load() && self->events_.on_message) {
          self->events_.on_message(std::move(m));
        }
        self->delivered(bytes);
      });
    }
    if (oversize) {
      protocolError(GoAwayReason::kFrameTooLarge, "frame len " + std::to_string(*oversize) +
                                                      " > the largest allowed, " +
                                                      std::to_string(kMaxFrameLen));
    }
  }

  void protocolError(GoAwayReason reason, const std::string& detail) {
    read_stopped_ = true;
    closing_.store(true);
    shared_->frames_refused[static_cast<int>(reason)].fetch_add(1, std::memory_order_relaxed);
    kLog->info("{}: closing the link to {} at {}: {} ({})", shared_->options.node, peer_id_, remote_,
               goAwayReasonName(reason), detail);
    dropQueued();
    beginClose(reason, detail,
               Status(reason == GoAwayReason::kFrameTooLarge ? StatusCode::kResourceExhausted
                                                             : StatusCode::kInvalidArgument,
                      "peer " + peer_id_ + " at " + remote_ + " sent a bad frame: " + detail));
  }

  const std::shared_ptr<TlsTransport::Shared> shared_;
  const std::shared_ptr<ssl::context> ctx_;
  const asio::any_io_executor ex_;
  ssl::stream<tcp::socket> stream_;
  asio::steady_timer timer_;  // handshake timeout, then the close cap
  const bool dialed_;
  const std::string expected_node_;
  std::string remote_;

  // Written on the strand before the Link exists, read-only afterwards.
  std::string peer_id_;
  std::string fingerprint_;

  // Handshake (strand).
  HandshakeState hs_;
  HandshakeDone hs_done_;
  bool hs_finished_ = false;
  bool hs_timed_out_ = false;
  Duration hs_timeout_{};

  // Scheduler side.
  bool start_called_ = false;
  LinkEvents events_;
  std::mutex post_mu_;  // abandon() vs postEvent()
  std::atomic<bool> abandoned_{false};
  std::atomic<bool> closing_{false};
  std::atomic<std::size_t> queued_{0};

  // Strand side.
  bool started_ = false;
  bool finished_ = false;
  bool writing_ = false;
  bool shutting_down_ = false;
  bool read_stopped_ = false;
  bool read_in_flight_ = false;
  bool read_paused_ = false;
  std::optional<std::pair<error_code, std::size_t>> parked_;  // a read completed before start()
  std::atomic<std::size_t> undelivered_{0};
  bool goaway_in_flight_ = false;
  std::optional<Status> local_close_;
  std::optional<std::string> goaway_;
  Status closed_status_;
  std::array<std::deque<Queued>, kLaneCount> lanes_;
  std::size_t slot_ = 0;
  std::string out_;
  std::size_t out_queued_ = 0;
  std::array<char, kReadChunk> rbuf_{};
  FrameDecoder decoder_;
  std::uint32_t frame_left_ = 0;
  std::array<unsigned char, 4> len_buf_{};
  std::size_t len_have_ = 0;
  std::string peer_goaway_;
};

// The handle the mesh holds: dropping the last one closes the connection and stops its events.
class TlsLink final : public Link {
 public:
  explicit TlsLink(std::shared_ptr<TlsConn> conn) : conn_(std::move(conn)) {}
  ~TlsLink() override { conn_->abandon(); }
  TlsLink(const TlsLink&) = delete;
  TlsLink& operator=(const TlsLink&) = delete;

  void start(LinkEvents events) override { conn_->start(std::move(events)); }
  const std::string& peerId() const override { return conn_->peerId(); }
  const std::string& fingerprint() const override { return conn_->fingerprint(); }
  bool dialed() const override { return conn_->dialed(); }
  std::string remoteAddress() const override { return conn_->remote(); }
  bool send(Message m) override { return conn_->send(std::move(m)); }
  std::size_t queuedBytes() const override { return conn_->queuedBytes(); }
  void close(GoAwayReason reason, std::string text) override { conn_->close(reason, std::move(text)); }

 private:
  std::shared_ptr<TlsConn> conn_;
};

// ---- One dial ----------------------------------------------------------------------------------

struct DialOp : std::enable_shared_from_this<DialOp> {
  DialOp(std::shared_ptr<TlsTransport::Shared> shared_in, std::string node_in,
         std::vector<std::string> addrs_in, Transport::DialFn done_in)
      : shared(std::move(shared_in)),
        node(std::move(node_in)),
        addrs(std::move(addrs_in)),
        done(std::move(done_in)),
        ex(asio::make_strand(shared->io)),
        deadline(ex),
        resolver(ex) {}

  const std::shared_ptr<TlsTransport::Shared> shared;
  const std::string node;
  const std::vector<std::string> addrs;
  Transport::DialFn done;  // taken by whoever claims `finished`
  const asio::any_io_executor ex;
  asio::steady_timer deadline;
  tcp::resolver resolver;
  std::atomic<bool> finished{false};

  // Strand only.
  std::size_t index = 0;
  std::vector<std::string> errors;
  bool refused = false;
  std::optional<tcp::socket> socket;
  std::shared_ptr<TlsConn> conn;

  void start(Duration timeout) {
    deadline.expires_after(timeout);
    deadline.async_wait([self = shared_from_this(), timeout](const error_code& ec) {
      if (!ec) {
        self->fail(Status(StatusCode::kDeadlineExceeded,
                          "no link to " + self->node + " within " + millisText(timeout) + self->tried()));
      }
    });
    tryNext();
  }

  std::string tried() const {
    std::string out;
    for (const auto& e : errors) {
      out += out.empty() ? " (" : "; ";
      out += e;
    }
    return out.empty() ? out : out + ")";
  }

  void tryNext() {
    if (finished.load()) {
      return;
    }
    if (index >= addrs.size()) {
      fail(Status(refused ? StatusCode::kPermissionDenied : StatusCode::kUnavailable,
                  "cannot link to " + node + (addrs.empty() ? std::string(": no address") : tried())));
      return;
    }
    const std::string addr = addrs[index++];
    auto hp = parseHostPort(addr);
    if (!hp.isOk()) {
      errors.push_back(addr + ": " + hp.status().message());
      tryNext();
      return;
    }
    resolver.async_resolve(
        hp->host, std::to_string(hp->port),
        [self = shared_from_this(), addr](const error_code& ec, const tcp::resolver::results_type& results) {
          if (self->finished.load()) {
            return;
          }
          if (ec) {
            self->errors.push_back(addr + ": " + ec.message());
            self->tryNext();
            return;
          }
          self->socket.emplace(self->ex);
          asio::async_connect(
              *self->socket, results,
              [self, addr](const error_code& cec, const tcp::endpoint&) { self->onConnect(cec, addr); });
        });
  }

  void onConnect(const error_code& ec, const std::string& addr) {
    if (finished.load()) {
      return;
    }
    if (ec) {
      errors.push_back(addr + ": " + ec.message());
      socket.reset();
      tryNext();
      return;
    }
    setSocketOptions(*socket, shared->options.tcp_user_timeout);
    conn = std::make_shared<TlsConn>(shared, std::move(*socket), shared->context(), true, node);
    socket.reset();
    conn->handshake(shared->options.handshake_timeout,
                    // Weak: the connection holds this callback until its handshake ends.
                    [weak = weak_from_this(), addr](std::optional<Refusal> r) {
                      auto self = weak.lock();
                      if (!self || self->finished.load()) {
                        return;  // cancelled or timed out: the handshake failed because of that
                      }
                      if (r && r->by_peer) {
                        kLog->info("{}: {} at {} refused our connection: {}", self->shared->options.node,
                                   self->node, addr, r->detail);
                        self->errors.push_back(addr + ": " + r->detail);
                        self->refused = true;
                        self->conn.reset();
                        self->tryNext();
                        return;
                      }
                      if (r) {
                        self->shared->refuse(r->reason, self->node + " at " + addr, false, r->detail);
                        self->errors.push_back(addr + ": refused (" +
                                               std::string(refusedReasonName(r->reason)) + "): " + r->detail);
                        self->refused = true;
                        self->conn.reset();
                        self->tryNext();
                        return;
                      }
                      self->succeed();
                    });
  }

  bool claim() {
    if (finished.exchange(true)) {
      return false;
    }
    std::lock_guard lock(shared->mu);
    shared->dials.erase(shared_from_this());
    return true;
  }

  void succeed() {
    if (!claim()) {
      return;
    }
    deadline.cancel();
    shared->dialed.fetch_add(1, std::memory_order_relaxed);
    kLog->info("{}: linked to {} at {} (fingerprint {})", shared->options.node, conn->peerId(),
               conn->remote(), conn->fingerprint());
    auto link = std::make_shared<TlsLink>(std::move(conn));
    shared->post([fn = std::move(done), link = std::move(link)]() mutable {
      fn(std::shared_ptr<Link>(std::move(link)));
    });
  }

  // On the strand.
  void fail(Status why) {
    if (!claim()) {
      return;
    }
    abortIo();
    shared->post([fn = std::move(done), why = std::move(why)] { fn(why); });
  }

  // On the strand.
  void abortIo() {
    error_code ignored;
    deadline.cancel();
    resolver.cancel();
    if (socket) {
      socket->close(ignored);
    }
    if (conn) {
      conn->closeSocket();
      conn.reset();
    }
  }
};

// ---- Accepting ---------------------------------------------------------------------------------

void acceptLoop(const std::shared_ptr<TlsTransport::Shared>& shared,
                const std::shared_ptr<tcp::acceptor>& acceptor);

void handleAccepted(const std::shared_ptr<TlsTransport::Shared>& shared, tcp::socket socket) {
  error_code ec;
  const tcp::endpoint remote = socket.remote_endpoint(ec);
  const asio::ip::address from = ec ? asio::ip::address() : remote.address();
  if (const std::string over = shared->beginHandshake(from); !over.empty()) {
    // Logged at the 1st, 2nd, 4th, 8th... such connection: a flood must not flood the log too.
    const std::uint64_t n = shared->over_cap.fetch_add(1, std::memory_order_relaxed) + 1;
    if ((n & (n - 1)) == 0) {
      kLog->warn("{}: {}: closing new connections unread ({} so far)", shared->options.node, over, n);
    }
    error_code ignored;
    socket.close(ignored);
    return;
  }
  setSocketOptions(socket, shared->options.tcp_user_timeout);
  auto conn = std::make_shared<TlsConn>(shared, std::move(socket), shared->context(), false, std::string());
  asio::post(conn->executor(), [shared, conn, from] {
    // Weak: the connection holds this callback until its handshake ends (no cycle if the
    // io_context is destroyed first); while it runs, the connection is alive.
    conn->handshake(shared->options.handshake_timeout,
                    [shared, from, weak = std::weak_ptr<TlsConn>(conn)](std::optional<Refusal> r) {
                      shared->endHandshake(from);
                      auto live = weak.lock();
                      if (!live) {
                        return;
                      }
                      if (r) {
                        shared->refuse(r->reason, live->remote(), true, r->detail);
                        return;
                      }
                      if (shared->stopped.load()) {
                        live->closeSocket();
                        return;
                      }
                      shared->accepted.fetch_add(1, std::memory_order_relaxed);
                      kLog->info("{}: accepted a link from {} at {} (fingerprint {})", shared->options.node,
                                 live->peerId(), live->remote(), live->fingerprint());
                      auto link = std::make_shared<TlsLink>(live);
                      shared->post([shared, link = std::move(link)]() mutable {
                        if (!shared->stopped.load() && shared->on_accept) {
                          shared->on_accept(std::move(link));
                        }
                      });
                    });
  });
}

void acceptLoop(const std::shared_ptr<TlsTransport::Shared>& shared,
                const std::shared_ptr<tcp::acceptor>& acceptor) {
  // any_io_executor, so that the socket is a tcp::socket (on a strand of its own).
  acceptor->async_accept(
      asio::any_io_executor(asio::make_strand(shared->io)),
      asio::bind_executor(shared->acceptor_ex, [shared, acceptor](const error_code& ec, tcp::socket socket) {
        if (!acceptor->is_open() || shared->stopped.load()) {
          return;
        }
        if (ec) {
          // Out of descriptors and the like: try again shortly instead of spinning.
          kLog->warn("{}: accept failed: {}", shared->options.node, ec.message());
          auto timer =
              std::make_shared<asio::steady_timer>(shared->acceptor_ex, std::chrono::milliseconds(100));
          timer->async_wait([shared, acceptor, timer](const error_code&) {
            if (acceptor->is_open() && !shared->stopped.load()) {
              acceptLoop(shared, acceptor);
            }
          });
          return;
        }
        handleAccepted(shared, std::move(socket));
        acceptLoop(shared, acceptor);
      }));
}

}  // namespace

// ---- TlsTransport ------------------------------------------------------------------------------

Result<std::unique_ptr<TlsTransport>> TlsTransport::create(asio::io_context& io, Scheduler& scheduler,
                                                           Options options) {
  if (Status s = checkId("cluster id", options.cluster); !s.isOk()) {
    return s;
  }
  if (Status s = checkId("node id", options.node); !s.isOk()) {
    return s;
  }
  auto ctx = makeSslContext(options);
  if (!ctx.isOk()) {
    return ctx.status();
  }
  auto shared = std::make_shared<Shared>(io, scheduler, std::move(options), std::move(ctx).value());
  return std::unique_ptr<TlsTransport>(new TlsTransport(std::move(shared)));
}

TlsTransport::TlsTransport(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}

Result<std::string> TlsTransport::reloadCredentials() {
  auto ctx = makeSslContext(shared_->options);
  if (!ctx.isOk()) {
    return ctx.status();
  }
  auto fingerprint = fingerprintOf(SSL_CTX_get0_certificate((*ctx)->native_handle()));
  if (!fingerprint.isOk()) {
    return fingerprint.status();
  }
  std::lock_guard lock(shared_->mu);
  shared_->ctx = std::move(ctx).value();
  return fingerprint;
}

TlsTransport::~TlsTransport() {
  stop();
  std::lock_guard lock(shared_->post_mu);
  shared_->detached = true;
}

Status TlsTransport::listen(AcceptFn on_accept) {
  const auto& o = shared_->options;
  auto hp = parseHostPort(o.listen_address, HostPortRules{.allow_port_zero = true});
  if (!hp.isOk()) {
    return invalidArgument("listen address '" + o.listen_address + "': " + hp.status().message());
  }
  std::lock_guard lock(shared_->mu);
  if (shared_->stopped.load()) {
    return failedPrecondition("the transport was stopped");
  }
  if (shared_->acceptor) {
    return failedPrecondition("listen() was called already");
  }
  error_code ec;
  tcp::resolver resolver(shared_->io);
  const auto results = resolver.resolve(hp->host, std::to_string(hp->port),
                                        tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || results.empty()) {
    return invalidArgument("listen address '" + o.listen_address +
                           "': " + (ec ? ec.message() : "no address"));
  }
  auto acceptor = std::make_shared<tcp::acceptor>(shared_->acceptor_ex);
  const tcp::endpoint ep = results.begin()->endpoint();
  acceptor->open(ep.protocol(), ec);
  if (!ec) {
    acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
  }
  if (!ec) {
    acceptor->bind(ep, ec);
  }
  if (!ec) {
    acceptor->listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    return unavailable("cannot listen on " + o.listen_address + ": " + ec.message());
  }
  const tcp::endpoint bound = acceptor->local_endpoint(ec);
  shared_->listen_address = ec ? o.listen_address : endpointText(bound);
  shared_->acceptor = acceptor;
  shared_->on_accept = std::move(on_accept);
  kLog->info("{}: mesh listening on {}", o.node, shared_->listen_address);
  asio::post(shared_->acceptor_ex, [shared = shared_, acceptor] { acceptLoop(shared, acceptor); });
  return Status::ok();
}

void TlsTransport::dial(const std::string& node, const std::vector<std::string>& addrs, Duration timeout,
                        DialFn done) {
  auto op = std::make_shared<DialOp>(shared_, node, addrs, std::move(done));
  bool stopped = false;
  {
    std::lock_guard lock(shared_->mu);
    stopped = shared_->stopped.load();
    if (!stopped) {
      shared_->dials.insert(op);
    }
  }
  if (stopped) {
    op->finished.store(true);
    shared_->post([fn = std::move(op->done), node] {
      fn(Status(StatusCode::kCancelled, "dial to " + node + ": the transport was stopped"));
    });
    return;
  }
  if (Status s = checkId("node id", node); !s.isOk()) {
    asio::post(op->ex, [op, s] { op->fail(s); });
    return;
  }
  asio::post(op->ex, [op, timeout] { op->start(timeout); });
}

void TlsTransport::stop() {
  std::shared_ptr<tcp::acceptor> acceptor;
  std::set<std::shared_ptr<DialOp>> dials;
  {
    std::lock_guard lock(shared_->mu);
    if (shared_->stopped.exchange(true)) {
      return;
    }
    acceptor = std::move(shared_->acceptor);
    dials.swap(shared_->dials);
  }
  if (acceptor) {
    asio::post(shared_->acceptor_ex, [acceptor] {
      error_code ignored;
      acceptor->close(ignored);
    });
  }
  for (const auto& op : dials) {
    if (op->finished.exchange(true)) {
      continue;
    }
    shared_->post([fn = std::move(op->done), node = op->node] {
      fn(Status(StatusCode::kCancelled, "dial to " + node + ": the transport was stopped"));
    });
    asio::post(op->ex, [op] { op->abortIo(); });
  }
}

std::string TlsTransport::listenAddress() const {
  std::lock_guard lock(shared_->mu);
  return shared_->listen_address;
}

std::map<RefusedReason, std::uint64_t> TlsTransport::refusals() const {
  std::map<RefusedReason, std::uint64_t> out;
  for (int i = 0; i < kRefusedReasons; ++i) {
    if (const auto n = shared_->refused[i].load(); n > 0) {
      out[static_cast<RefusedReason>(i)] = n;
    }
  }
  return out;
}

TlsTransport::Counters TlsTransport::counters() const {
  Counters c;
  c.connections_accepted = shared_->accepted.load();
  c.connections_dialed = shared_->dialed.load();
  c.handshakes_over_cap = shared_->over_cap.load();
  c.bytes_in = shared_->bytes_in.load();
  c.bytes_out = shared_->bytes_out.load();
  for (int i = 0; i < kGoAwayReasons; ++i) {
    if (const auto n = shared_->frames_refused[i].load(); n > 0) {
      c.frames_refused[static_cast<GoAwayReason>(i)] = n;
    }
  }
  return c;
}

}  // namespace hacoord::mesh
