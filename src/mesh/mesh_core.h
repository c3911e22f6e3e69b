// MeshCore: the peer mesh's logic (DESIGN §6.1-6.3): who is a peer, one connection per pair,
// liveness, RPC with deadlines, broadcast/all/any, metadata. Pure: it sees a Transport, a
// MemberSource, a Clock and a Scheduler, so the simulation drives it on virtual time.
//
// Threading contract: every method must be called on `scheduler` (the mesh's strand); every
// callback it makes (Done, peer events) runs there too, except handlers, which run through the
// injected `run_handler` executor (a worker pool in production) and may answer from any thread:
// their reply is posted back to the strand. Nothing here blocks.
//
// Safety and liveness argument, in short:
//  - Identity: a Link's peer id is the certificate's. A link is adopted only if that node has a
//    members record listing the link's fingerprint; a record that goes away closes the link.
//    Ids inside frames (HELLO's node) are compared and a mismatch is a protocol error.
//  - One connection per pair: of two links between the same pair, both ends keep the one dialed
//    by the lower node id (or, between two of the same direction, the newer): a deterministic
//    rule both ends evaluate alike, so they converge on the same link without talking.
//  - Exactly once by the deadline: every pending call has a timer at its deadline; a reply, a link
//    loss, a peer death and the timer each try to complete it, and only the first one that finds it
//    still pending does (it is erased before the Done runs).
//  - Expired requests never run: a request's deadline is its arrival time plus the remaining time
//    the sender put in the frame (relative: clocks are never compared); one that is expired on
//    arrival or while queued for a handler is dropped.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hacoord/clock.h"
#include "hacoord/mesh.h"
#include "hacoord/scheduler.h"
#include "hacoord/status.h"
#include "mesh/frame.h"
#include "mesh/link.h"
#include "mesh/member.h"

namespace hacoord::mesh {

struct MeshOptions {
  std::string node;
  std::string division;
  std::string type;
  std::uint64_t incarnation = 0;
  std::vector<std::string> advertise;  // addrs put in our members record
  std::vector<std::string> cert_sha256;
  Duration ping_interval{std::chrono::seconds(1)};
  Duration suspect_after{std::chrono::seconds(3)};
  Duration dead_after{std::chrono::seconds(5)};
  Duration dial_timeout{std::chrono::seconds(3)};
  Duration backoff_min{std::chrono::milliseconds(100)};
  Duration backoff_max{std::chrono::seconds(5)};
  Duration higher_dial_delay{std::chrono::seconds(2)};  // the higher id dials after this alone
  Duration meta_debounce{std::chrono::milliseconds(50)};
  Duration broadcast_timeout{std::chrono::seconds(5)};  // remaining time put on broadcast frames
  std::size_t max_message_bytes = kDefaultMaxMessageBytes;
  std::size_t send_budget = 8 * 1024 * 1024;  // bytes queued per peer before `call` waits
  // Request bytes waiting in every method's queue together (a queue of 1024 x 16 MiB would be
  // 16 GiB); beyond it a request is answered ResourceExhausted, as with a full queue.
  std::size_t max_queued_request_bytes = 64 * 1024 * 1024;
  std::uint64_t seed = 0;  // tie-breaks and jitter (0: random)
};

class MeshCore {
 public:
  using Executor = std::function<void(std::function<void()>)>;
  using PeerEventFn = std::function<void(const PeerInfo&)>;
  using EpochFn = std::function<void(std::uint64_t)>;

  MeshCore(MeshOptions options, const Clock& clock, Scheduler& scheduler, Transport& transport,
           MemberSource& members, Executor run_handler);
  ~MeshCore();
  MeshCore(const MeshCore&) = delete;
  MeshCore& operator=(const MeshCore&) = delete;

  // Listens, publishes our members record and starts the liveness tick.
  Status start();
  // GOAWAY(shutdown) to every peer, fails pending calls (Cancelled), deletes our record.
  void stop();

  std::vector<PeerInfo> peers() const;  // every known peer except ourselves
  std::optional<PeerInfo> peer(std::string_view id) const;
  void onPeerEvent(PeerEventFn fn) { peer_event_ = std::move(fn); }
  // A frame carried an epoch above every one seen so far (the elector re-reads the lease).
  void onHigherEpoch(EpochFn fn) { higher_epoch_ = std::move(fn); }
  void noteEpoch(std::uint64_t epoch);
  // Our certificate was rotated: `fingerprint` is listed first in our members record, before the
  // one it replaces (peers keep links made with the old one: a record without it would make them
  // drop those links; a second rotation drops the oldest). FailedPrecondition before start().
  Status rotateCertificate(std::string fingerprint);

  // AlreadyExists for a duplicate name; InvalidArgument for an empty or too long one.
  Status handle(std::string method, Handler handler, HandlerOptions options = {});

  void call(std::string_view peer, std::string_view method, std::string request, CallOptions options,
            Done<Result<std::string>> done);
  // Alive peers matching `filter`, fire and forget; returns how many were sent (the rest counted
  // as dropped: over the send budget).
  std::size_t broadcast(std::string_view method, std::string request, const PeerFilter& filter = {});
  // Peers alive now and matching `filter`; one PeerReply each, in peer id order; ends by the deadline.
  void all(std::string_view method, std::string request, CallOptions options, const PeerFilter& filter,
           Done<std::vector<PeerReply>> done);
  // The least busy alive peer matching `filter` that is not overloaded.
  void any(std::string_view method, std::string request, CallOptions options, const PeerFilter& filter,
           Done<PeerReply> done);

  // Pushed to every peer (debounced), whole map with a rising version. ResourceExhausted above
  // kMaxMetaBytes (nothing changes).
  Status setMeta(std::string key, std::string value);
  const std::map<std::string, std::string>& meta() const { return meta_; }

  const MeshCounters& counters() const { return counters_; }
  const std::string& node() const { return options_.node; }
  bool degraded() const { return degraded_; }

 private:
  struct Peer;
  struct Pending;
  struct Incoming;
  struct Method;
  struct AnyAttempt;
  // A call's end: its result, and whether the request was handed to a link (any's retry rule).
  using CallDone = std::function<void(Result<std::string>, bool sent)>;

  // Members.
  void onMemberUpsert(const MemberRecord& record);
  void onMemberGone(const std::string& node);
  // Connections.
  void scheduleDial(Peer& p, Duration delay);
  void dial(const std::string& id);
  void onDialed(const std::string& id, std::uint64_t attempt, Result<std::shared_ptr<Link>> link);
  void onAccepted(std::shared_ptr<Link> link);
  void adopt(std::shared_ptr<Link> link);
  bool preferred(const Link& candidate, const Link& current) const;
  void onLinkMessage(const std::string& id, const Link* link, Message m);
  void onLinkClosed(const std::string& id, const Link* link, const Status& why);
  void dropLink(Peer& p, PeerState state, DeadReason reason, const std::string& why, bool redial);
  void setState(Peer& p, PeerState state, DeadReason reason);
  // Frames.
  void sendTo(Peer& p, Message m);
  void onHello(Peer& p, const Message& m);
  void onPing(Peer& p, const Message& m);
  void onPong(Peer& p, const Message& m);
  void onRequest(Peer& p, Message m);
  void onResponse(Peer& p, const Message& m);
  void onCancel(Peer& p, const Message& m);
  void onMetaPush(Peer& p, const Message& m);
  // Calls.
  void startCall(std::string_view peer, std::string_view method, std::string request, CallOptions options,
                 CallDone done);
  void anyStep(std::shared_ptr<AnyAttempt> a);
  void trySend(std::uint64_t call_id);
  void sendWaiting(Peer& p);
  // `fn` made safe for timers, posted tasks and callbacks of the transport and the member source:
  // they may run on the strand after the core was destroyed, and then do nothing.
  template <class F>
  auto guarded(F fn) {
    return [guard = std::weak_ptr<bool>(alive_), fn = std::move(fn)](auto&&... args) mutable {
      if (!guard.expired()) fn(std::forward<decltype(args)>(args)...);
    };
  }
  void heardEpoch(std::uint64_t epoch);
  Status checkSize(const Peer& p, std::string_view what, std::size_t bytes) const;
  static Lane laneFor(std::size_t payload_bytes);
  void abandonIncoming(Peer& p);
  void complete(std::uint64_t call_id, Result<std::string> result);
  void failCallsOf(Peer& p, const Status& why);
  void dispatch(Method& method, std::shared_ptr<Incoming> in);
  void finishRequest(std::shared_ptr<Incoming> in, Result<std::string> result);
  // Liveness.
  void tick();
  void pushMeta();
  void scheduleMetaPush();
  PeerInfo infoOf(const Peer& p) const;
  Status unavailableStatus(const Peer* p, std::string_view id) const;

  MeshOptions options_;
  const Clock& clock_;
  Scheduler& scheduler_;
  Transport& transport_;
  MemberSource& members_;
  Executor run_handler_;
  std::mt19937_64 rng_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // guards posted replies

  std::map<std::string, std::unique_ptr<Peer>, std::less<>> peers_;
  std::map<std::uint64_t, std::unique_ptr<Pending>> pending_;
  std::map<std::string, std::unique_ptr<Method>, std::less<>> methods_;
  std::uint64_t next_call_id_ = 1;
  std::size_t queued_request_bytes_ = 0;  // in every Method::queue
  MemberRecord self_;                     // our record as published (start(), rotateCertificate())
  std::uint64_t epoch_ = 0;
  std::map<std::string, std::string> meta_;
  std::uint64_t meta_version_ = 0;
  bool meta_push_armed_ = false;
  bool started_ = false;
  bool stopped_ = false;
  bool degraded_ = false;
  TimePoint last_tick_{};
  Scheduler::TimerId tick_timer_ = 0;
  MeshCounters counters_;
  PeerEventFn peer_event_;
  EpochFn higher_epoch_;
};

}  // namespace hacoord::mesh
