// TlsTransport: the production mesh Transport, mutual TLS 1.3 over TCP (Boost.Asio + OpenSSL).
//
// Identity (DESIGN §6.1, notes/mesh-locks-store.md §1.2): TLS 1.3 only, both sides present a leaf
// of the cluster CA (the only trust anchor), ALPN "hacoord/1" both ways, and the leaf carries
// exactly one URI SAN hacoord://<cluster>/<node>. The dialer also demands the node it dialed.
// Every connection this side refuses is counted by RefusedReason and logged once; it never becomes
// a Link. In TLS 1.3 the client's handshake ends before the server has checked the client's
// certificate, so a dialer waits for the acceptor's session ticket (sent only once the acceptor
// accepted it) before its dial succeeds: a dial the acceptor refused fails on both sides.
//
// Bytes (§6.2, §1.4, §1.5): one read loop per connection feeding a FrameDecoder; one writer per
// connection (a strand, one async_write in flight) that gathers up to ~64 KiB of frames per write
// from per-lane queues, control first, then rpc:stream:sync 4:2:1 at fragment granularity, so a
// small RPC waits behind at most one bulk fragment. A decode error sends GOAWAY and closes that
// connection only. Reading pauses while more than max_message_bytes of delivered messages wait on
// the Scheduler (TCP pushes back on the peer instead of a queue growing here).
//
// on_closed's Status: Cancelled after close() (or the owner released the link), Unavailable when
// the peer closed (EOF, close_notify, truncation: "closed the connection", with its GOAWAY if one
// came) or on an I/O error ("... failed: <error>"), InvalidArgument / ResourceExhausted after the
// peer sent a bad frame.
//
// Threading: all socket work runs on the io_context, each connection, dial and the acceptor on a
// strand of their own. Callbacks (accept, dial results, LinkEvents) are posted to the Scheduler
// given at construction. counters() and refusals() may be read from any thread.
//
// Lifetimes: dropping the last reference to a Link closes it as close(kShutdown) would and stops
// its events. A dial's done runs exactly once (Cancelled by stop()) while the transport lives.
// Destroying the transport stops it; no accept or dial callback is posted afterwards. Links stay
// usable after the transport is gone. The Scheduler must outlive the transport and every Link.
//
// Reload (SIGHUP, reloadCredentials): the SSL_CTX is built in one function (makeSslContext in the
// .cc) and held behind a mutex; new connections take the current one, open ones keep theirs.
//
// This header keeps Asio and OpenSSL out (pimpl): only the io_context is forward-declared.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hacoord/clock.h"
#include "hacoord/scheduler.h"
#include "hacoord/status.h"
#include "mesh/frame.h"
#include "mesh/link.h"

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace hacoord::mesh {

class TlsTransport final : public Transport {
 public:
  struct Options {
    std::string cluster;  // our cluster id: the peer's SAN must name it
    std::string node;     // our node id (logs; our certificate must name it)
    std::string ca_file;  // the cluster CA, the only trust anchor
    std::string cert_file;
    std::string key_file;
    std::string listen_address = "127.0.0.1:0";  // port 0: any free port (listenAddress() tells)
    Duration handshake_timeout = std::chrono::seconds(3);
    std::size_t max_message_bytes = kDefaultMaxMessageBytes;
    Duration tcp_user_timeout = std::chrono::seconds(5);
    std::size_t max_concurrent_handshakes = 64;  // inbound; more are closed at once and counted
    // Inbound handshakes from one IP address at once, so that one host opening silent connections
    // cannot take every slot from the peers (more are closed at once and counted).
    std::size_t max_handshakes_per_address = 8;
  };

  struct Counters {
    std::uint64_t connections_accepted = 0;  // inbound connections that became Links
    std::uint64_t connections_dialed = 0;    // outbound connections that became Links
    std::uint64_t handshakes_over_cap = 0;   // inbound connections closed unread: too many handshakes
                                             // (in all, or from their address)
    std::uint64_t bytes_in = 0;              // TLS plaintext bytes read on Links
    std::uint64_t bytes_out = 0;             // and written
    // Connections closed because the peer sent a bad frame, by the GOAWAY reason sent
    // (kFrameTooLarge or kProtocol).
    std::map<GoAwayReason, std::uint64_t> frames_refused;
  };

  // Loads the CA, certificate and key (InvalidArgument naming the file when one cannot be used).
  // Nothing listens before listen().
  static Result<std::unique_ptr<TlsTransport>> create(boost::asio::io_context& io, Scheduler& scheduler,
                                                      Options options);
  ~TlsTransport() override;  // stop()
  TlsTransport(const TlsTransport&) = delete;
  TlsTransport& operator=(const TlsTransport&) = delete;

  Status listen(AcceptFn on_accept) override;
  void dial(const std::string& node, const std::vector<std::string>& addrs, Duration timeout,
            DialFn done) override;
  void stop() override;
  std::string listenAddress() const override;
  std::map<RefusedReason, std::uint64_t> refusals() const override;

  Counters counters() const;
  // Loads the CA, certificate and key again from the same files (rotated in place) and uses them
  // for every connection from now on; open ones keep theirs. Returns the new certificate's
  // fingerprint. On any error (InvalidArgument naming the file, as create()) nothing changes.
  Result<std::string> reloadCredentials();

  struct Shared;  // state shared with connections and dials (defined in tls_transport.cc)

 private:
  explicit TlsTransport(std::shared_ptr<Shared> shared);

  std::shared_ptr<Shared> shared_;
};

}  // namespace hacoord::mesh
