// Link and Transport: the seam between the mesh logic and the bytes (mutual TLS in production, an
// in-memory fault-injecting fake in the simulation).
//
// A Link is one authenticated, ordered, reliable connection to one peer that carries whole
// Messages. The peer's id comes from its certificate (the URI SAN hacoord://<cluster>/<node>) and
// never from anything it sends; its fingerprint is the SHA-256 of its leaf, lower-case hex, which
// the mesh checks against the peer's members record.
//
// Threading contract: a Transport is built with the mesh's Scheduler. Every callback it makes
// (accepted links, dial results, LinkEvents) is posted to that Scheduler, so the mesh logic runs
// on one strand and needs no mutex. Link methods may be called from that Scheduler only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hacoord/clock.h"
#include "hacoord/status.h"
#include "mesh/frame.h"

namespace hacoord::mesh {

struct LinkEvents {
  std::function<void(Message)> on_message;
  // Once, when the link is gone for any reason (peer closed, I/O error, protocol error, close()).
  std::function<void(const Status&)> on_closed;
};

class Link {
 public:
  virtual ~Link() = default;

  // Starts delivering events. Nothing is delivered (and nothing lost) before start().
  virtual void start(LinkEvents events) = 0;
  virtual const std::string& peerId() const = 0;
  virtual const std::string& fingerprint() const = 0;
  virtual bool dialed() const = 0;                // true on the side that dialed
  virtual std::string remoteAddress() const = 0;  // "host:port", for logs

  // Queues `m` on its lane; false when the link is closed. Never blocks: budgets are the mesh's.
  virtual bool send(Message m) = 0;
  // Bytes queued and not yet written to the socket, per lane and in total.
  virtual std::size_t queuedBytes() const = 0;
  // Sends GOAWAY(reason, text) after what is queued, then closes within about a second.
  // on_closed still runs once.
  virtual void close(GoAwayReason reason, std::string text) = 0;
};

// Why a transport refused a connection before it became a Link (counted per reason).
enum class RefusedReason {
  kTlsHandshake,  // plaintext, TLS 1.2, no client certificate, handshake error
  kWrongCa,       // certificate chain not from the cluster CA
  kExpired,       // not yet valid or expired
  kSan,           // not exactly one URI SAN, wrong scheme or cluster, or a node other than dialed
  kAlpn,          // no ALPN hacoord/1
};
std::string_view refusedReasonName(RefusedReason r);

class Transport {
 public:
  using AcceptFn = std::function<void(std::shared_ptr<Link>)>;
  using DialFn = std::function<void(Result<std::shared_ptr<Link>>)>;

  virtual ~Transport() = default;

  // Starts accepting; `on_accept` gets every authenticated inbound link.
  virtual Status listen(AcceptFn on_accept) = 0;
  // Connects to `node` at one of `addrs` ("host:port", tried in order), demanding that the peer's
  // certificate name `node`. `done` runs once, by `timeout`.
  virtual void dial(const std::string& node, const std::vector<std::string>& addrs, Duration timeout,
                    DialFn done) = 0;
  // Stops accepting and dialing; links already handed out stay open until closed.
  virtual void stop() = 0;
  // The address peers should dial when none is configured ("127.0.0.1:40123" after listen()).
  virtual std::string listenAddress() const = 0;
  virtual std::map<RefusedReason, std::uint64_t> refusals() const = 0;
};

}  // namespace hacoord::mesh
