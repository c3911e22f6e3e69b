// The peer mesh (DESIGN §6.1-6.3): mutual-TLS connections between the nodes of a cluster, with
// RPC, metadata and liveness. Value types, and the Mesh a daemon or an application runs.
//
// Every node has a certificate from the cluster CA naming it (hacoord://<cluster>/<node>) and
// publishes a members record in NATS ({addrs, fingerprints, division, type, incarnation}); peers
// find each other there, connect directly (one TLS 1.3 connection per pair) and check each other's
// certificate against that record. See the README's "Peer mesh" section.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hacoord/clock.h"
#include "hacoord/config.h"
#include "hacoord/status.h"

namespace hacoord {

class Runtime;

namespace mesh {

class MeshCore;

enum class PeerState { kConnecting, kAlive, kSuspect, kDead };
enum class DeadReason {
  kNone,
  kUnreachable,  // silent or connection lost while its members record is fresh (a partition)
  kDeparted,     // its record is gone, or it said GOAWAY(shutdown)
  kRestarted,    // a new incarnation
  kIdentity,     // certificate not in its members record
  kProtocol,     // malformed frames, bad HELLO, no common version
};
std::string_view peerStateName(PeerState s);
std::string_view deadReasonName(DeadReason r);

struct PeerInfo {
  std::string id;
  std::string division;
  std::string type;
  std::uint64_t incarnation = 0;
  PeerState state = PeerState::kConnecting;
  DeadReason reason = DeadReason::kNone;
  bool connected = false;
  std::string address;  // the connection's remote address, "" when not connected
  Duration rtt_ewma{0};
  Duration rtt_p99{0};
  std::uint32_t load = 0;  // the peer's in-flight handlers, from its last PONG
  std::uint64_t meta_version = 0;
  std::map<std::string, std::string> meta;
};

// Matches a peer on division (whole path segments: "dc1/r2" matches "dc1/r2" and "dc1/r2/h3", not
// "dc1/r20"; "" matches all) and type ("" matches all).
struct PeerFilter {
  std::string division;
  std::string type;
  bool matches(const PeerInfo& p) const;
};
bool divisionMatches(std::string_view prefix, std::string_view division);

struct CallOptions {
  Duration timeout{0};          // mandatory: > 0
  bool wait_for_ready = false;  // wait (until the deadline) for a peer that is not alive yet
  bool idempotent = false;      // `any` may retry it on another peer after a send
};

// What a handler knows about the request it serves.
class CallContext {
 public:
  CallContext(std::string peer, std::string method, TimePoint deadline, std::uint64_t epoch)
      : peer_(std::move(peer)), method_(std::move(method)), deadline_(deadline), epoch_(epoch) {}
  const std::string& peer() const { return peer_; }
  const std::string& method() const { return method_; }
  TimePoint deadline() const { return deadline_; }  // on the mesh's clock
  std::uint64_t senderEpoch() const { return epoch_; }
  // True once the caller cancelled or gave up (deadline), or the connection is gone. Thread-safe.
  bool cancelled() const { return cancelled_->load(); }

 private:
  friend class MeshCore;  // sets cancelled_
  std::string peer_;
  std::string method_;
  TimePoint deadline_;
  std::uint64_t epoch_;
  std::shared_ptr<std::atomic<bool>> cancelled_ = std::make_shared<std::atomic<bool>>(false);
};

using Reply = std::function<void(Result<std::string>)>;  // callable once, from any thread
using Handler = std::function<void(const CallContext&, std::string request, Reply reply)>;
template <class T>
using Done = std::function<void(T)>;

struct PeerReply {
  std::string peer;
  Result<std::string> reply;
};

struct HandlerOptions {
  std::size_t max_concurrency = 64;
  std::size_t max_queue = 1024;
};

struct MeshCounters {
  std::uint64_t calls_sent = 0;
  std::uint64_t calls_failed = 0;
  std::uint64_t calls_timed_out = 0;
  std::uint64_t requests_served = 0;
  std::uint64_t requests_expired = 0;        // dropped unrun: expired on arrival, in the queue or
                                             // waiting for a free worker
  std::uint64_t requests_rejected = 0;       // ResourceExhausted (concurrency queue full), NotFound
  std::uint64_t broadcast_dropped = 0;       // per peer: over its send budget or its message limit
  std::uint64_t links_refused_identity = 0;  // no record or unknown fingerprint
  std::uint64_t links_duplicate = 0;
  std::uint64_t protocol_errors = 0;
  std::uint64_t slipped_ticks = 0;  // our own timers late: no deaths declared that tick
};

}  // namespace mesh

// A node's mesh: a TLS listener and dialer, its members record in NATS, and the RPC registry.
//
// Threading: every method is safe from any thread. Handlers run on the mesh's worker threads
// (hc-mesh), never on the I/O thread, and may block (within their deadline); `reply` may be called
// from any thread, once. A request that waited for a free worker past its deadline (or was
// cancelled meanwhile) is answered DeadlineExceeded without running. Done callbacks of the
// asynchronous forms and peer events run on a thread of their own (hc-meshcb), so busy handlers
// never delay them; the *Sync forms block the caller (never call them from a handler or a Done:
// use the callback forms).
class Mesh {
 public:
  // Builds a mesh from a daemon config (cluster and node id, nats, mesh). InvalidArgument when the
  // config has no mesh section or its files are unusable (naming the file). `runtime` is shared
  // with a Manager/Node when given; otherwise the mesh runs its own.
  static Result<std::unique_ptr<Mesh>> create(const Config& config,
                                              std::shared_ptr<Runtime> runtime = nullptr);
  ~Mesh();  // stop()
  Mesh(const Mesh&) = delete;
  Mesh& operator=(const Mesh&) = delete;

  // Connects to NATS, listens, publishes the members record, starts dialing. Register handlers
  // before start() so no early request finds NotFound.
  Status start();
  // GOAWAY to every peer, pending calls end with Cancelled, the members record is deleted.
  void stop();

  // The read methods below never wait for the mesh's thread (safe anywhere, hc-io included): they
  // return a view at most 100 ms old, and fresh after every peer state change.
  const std::string& node() const;
  std::string listenAddress() const;  // the bound address (useful with port 0)
  std::vector<mesh::PeerInfo> peers() const;
  std::optional<mesh::PeerInfo> peer(std::string_view id) const;
  void onPeerEvent(std::function<void(const mesh::PeerInfo&)> fn);
  mesh::MeshCounters counters() const;
  // TLS refusals by reason ("wrong_ca", "expired", "san", "alpn", "tls_handshake").
  std::map<std::string, std::uint64_t> refusals() const;
  // The highest leader epoch seen, and a callback for when a peer shows a higher one.
  void noteEpoch(std::uint64_t epoch);
  void onHigherEpoch(std::function<void(std::uint64_t)> fn);

  // handle(), broadcast() and setMeta() wait for the mesh's strand (on hc-io) to run them: call them
  // from any thread but hc-io itself (a handler or a Done is fine).
  Status handle(std::string method, mesh::Handler handler, mesh::HandlerOptions options = {});
  void call(std::string_view peer, std::string_view method, std::string request, mesh::CallOptions options,
            mesh::Done<Result<std::string>> done);
  Result<std::string> callSync(std::string_view peer, std::string_view method, std::string request,
                               mesh::CallOptions options);
  std::size_t broadcast(std::string_view method, std::string request, const mesh::PeerFilter& filter = {});
  void all(std::string_view method, std::string request, mesh::CallOptions options,
           const mesh::PeerFilter& filter, mesh::Done<std::vector<mesh::PeerReply>> done);
  std::vector<mesh::PeerReply> allSync(std::string_view method, std::string request,
                                       mesh::CallOptions options, const mesh::PeerFilter& filter = {});
  void any(std::string_view method, std::string request, mesh::CallOptions options,
           const mesh::PeerFilter& filter, mesh::Done<mesh::PeerReply> done);
  mesh::PeerReply anySync(std::string_view method, std::string request, mesh::CallOptions options,
                          const mesh::PeerFilter& filter = {});
  Status setMeta(std::string key, std::string value);

  // Certificate rotation (the daemon does it on SIGHUP): loads the CA, certificate and key again
  // from the config's files (replaced in place), uses them for every new connection and lists the
  // new certificate in our members record; open connections carry on. On an error (naming the
  // file) nothing changes; FailedPrecondition unless started and not stopped. Call it from any
  // thread but hc-io.
  Status reloadCredentials();

  struct Impl;

 private:
  explicit Mesh(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hacoord
