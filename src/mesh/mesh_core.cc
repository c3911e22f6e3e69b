// MeshCore: peers from member records, one link per pair, liveness, RPC, metadata (see the header).
#include "mesh/mesh_core.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <utility>

#include "core/logging.h"

namespace hacoord::mesh {
namespace {

constinit const ModuleLog kLog("mesh");

constexpr Duration kTick = std::chrono::milliseconds(100);
constexpr Duration kSlip = std::chrono::seconds(1);  // a tick this late: our own timers slipped
constexpr Duration kBudgetRetry = std::chrono::milliseconds(5);
constexpr std::size_t kRttSamples = 128;
constexpr std::uint32_t kOverloaded = 64;  // a peer this busy is skipped by `any`

long long ms(Duration d) { return toMillis(d); }

bool contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

GoAwayReason goAwayFor(DeadReason r) {
  switch (r) {
    case DeadReason::kIdentity:
      return GoAwayReason::kIdentity;
    case DeadReason::kProtocol:
      return GoAwayReason::kProtocol;
    case DeadReason::kDeparted:
    case DeadReason::kNone:
    case DeadReason::kUnreachable:
    case DeadReason::kRestarted:
      break;
  }
  return GoAwayReason::kShutdown;
}

}  // namespace

std::string_view peerStateName(PeerState s) {
  switch (s) {
    case PeerState::kConnecting:
      return "connecting";
    case PeerState::kAlive:
      return "alive";
    case PeerState::kSuspect:
      return "suspect";
    case PeerState::kDead:
      return "dead";
  }
  return "unknown";
}

std::string_view deadReasonName(DeadReason r) {
  switch (r) {
    case DeadReason::kNone:
      return "";
    case DeadReason::kUnreachable:
      return "unreachable";
    case DeadReason::kDeparted:
      return "departed";
    case DeadReason::kRestarted:
      return "restarted";
    case DeadReason::kIdentity:
      return "identity";
    case DeadReason::kProtocol:
      return "protocol";
  }
  return "unknown";
}

bool divisionMatches(std::string_view prefix, std::string_view division) {
  if (prefix.empty()) return true;
  if (division.size() < prefix.size() || division.substr(0, prefix.size()) != prefix) return false;
  return division.size() == prefix.size() || division[prefix.size()] == '/';
}

bool PeerFilter::matches(const PeerInfo& p) const {
  return divisionMatches(division, p.division) && (type.empty() || type == p.type);
}

struct MeshCore::Peer {
  std::string id;
  std::optional<MemberRecord> record;
  MemberRecord last_record;    // what peers() shows of a peer whose record is gone
  std::shared_ptr<Link> link;  // the adopted link (at most one)
  bool hello = false;          // its HELLO arrived on `link`
  std::uint64_t hello_incarnation = 0;
  std::size_t accepts_bytes = 0;  // the largest message it accepts, from its HELLO (0: not said)
  bool said_shutdown = false;     // GOAWAY(shutdown) on the current link
  PeerState state = PeerState::kConnecting;
  DeadReason reason = DeadReason::kNone;
  TimePoint last_heard{};
  TimePoint last_sent{};
  TimePoint linked_at{};
  Duration backoff{0};
  Scheduler::TimerId dial_timer = 0;
  bool dialing = false;
  std::uint64_t dial_attempt = 0;
  double rtt_ewma_ns = 0;
  std::deque<std::int64_t> rtt_samples;
  std::uint32_t load = 0;
  TimePoint load_at{};
  std::uint64_t meta_version = 0;
  std::map<std::string, std::string> meta;
  std::size_t in_flight = 0;                                    // our calls to it, pending
  std::map<std::uint64_t, std::shared_ptr<Incoming>> incoming;  // its requests to us, by id
};

struct MeshCore::Pending {
  std::string peer;
  std::string method;
  std::string request;
  CallOptions options;
  TimePoint deadline{};
  Scheduler::TimerId deadline_timer = 0;
  Scheduler::TimerId retry_timer = 0;
  bool sent = false;
  const Link* link = nullptr;  // the link it was sent on
  CallDone done;
};

struct MeshCore::Incoming {
  std::string peer;
  const Link* link = nullptr;
  std::uint64_t id = 0;
  bool no_reply = false;
  CallContext ctx;
  std::string request;
  Method* method = nullptr;
  bool finished = false;
  // Set on a worker when the request waited there past its deadline or its cancel: never run.
  std::atomic<bool> not_run{false};
  Incoming(std::string p, std::string m, TimePoint deadline, std::uint64_t epoch)
      : peer(p), ctx(std::move(p), std::move(m), deadline, epoch) {}
};

struct MeshCore::Method {
  std::string name;
  Handler handler;
  HandlerOptions options;
  std::size_t running = 0;
  std::deque<std::shared_ptr<Incoming>> queue;
};

MeshCore::MeshCore(MeshOptions options, const Clock& clock, Scheduler& scheduler, Transport& transport,
                   MemberSource& members, Executor run_handler)
    : options_(std::move(options)),
      clock_(clock),
      scheduler_(scheduler),
      transport_(transport),
      members_(members),
      run_handler_(std::move(run_handler)),
      rng_(options_.seed != 0 ? options_.seed : std::random_device{}()) {}

MeshCore::~MeshCore() { alive_.reset(); }

Status MeshCore::start() {
  if (started_) return failedPrecondition("mesh already started");
  started_ = true;
  last_tick_ = clock_.now();
  Status s = transport_.listen(guarded([this](std::shared_ptr<Link> link) {
    if (!stopped_) onAccepted(std::move(link));
  }));
  if (!s.isOk()) return s;
  members_.start({guarded([this](const MemberRecord& r) {
                    if (!stopped_) onMemberUpsert(r);
                  }),
                  guarded([this](const std::string& node) {
                    if (!stopped_) onMemberGone(node);
                  })});
  MemberRecord& self = self_;
  self.node = options_.node;
  self.incarnation = options_.incarnation;
  // Advertised addresses with port 0 stand for the port actually bound (a listen on port 0).
  const std::string bound = transport_.listenAddress();
  const std::string bound_port = bound.substr(bound.rfind(':') + 1);
  for (const auto& a : options_.advertise) {
    const auto colon = a.rfind(':');
    self.addrs.push_back(
        colon != std::string::npos && a.substr(colon + 1) == "0" ? a.substr(0, colon + 1) + bound_port : a);
  }
  if (self.addrs.empty()) self.addrs.push_back(bound);
  self.division = options_.division;
  self.type = options_.type;
  self.cert_sha256 = options_.cert_sha256;
  self.meta_version = meta_version_;
  self.proto = kFrameVersion;
  members_.publish(self);
  tick_timer_ = scheduler_.runAfter(kTick, guarded([this] { tick(); }));
  kLog->info("mesh: node {} (incarnation {}) listening on {}", options_.node, options_.incarnation,
             transport_.listenAddress());
  return Status::ok();
}

void MeshCore::stop() {
  if (stopped_) return;
  stopped_ = true;
  scheduler_.cancel(tick_timer_);
  for (auto& [id, p] : peers_) {
    scheduler_.cancel(p->dial_timer);
    if (p->link) p->link->close(GoAwayReason::kShutdown, "node " + options_.node + " is stopping");
    p->link.reset();
    abandonIncoming(*p);  // running handlers see cancellation; their replies go nowhere
  }
  // Queued requests are never run now.
  for (auto& [name, method] : methods_) {
    counters_.requests_expired += method->queue.size();
    for (auto& in : method->queue) in->finished = true;
    method->queue.clear();
  }
  queued_request_bytes_ = 0;
  std::vector<std::uint64_t> ids;
  for (const auto& [id, pc] : pending_) ids.push_back(id);
  for (auto id : ids) complete(id, Status(StatusCode::kCancelled, "mesh stopping"));
  members_.stop();
  transport_.stop();
}

// ---- Members

void MeshCore::onMemberUpsert(const MemberRecord& record) {
  if (record.node == options_.node) return;
  auto& slot = peers_[record.node];
  if (!slot) {
    slot = std::make_unique<Peer>();
    slot->id = record.node;
    slot->last_heard = clock_.now();
  }
  Peer& p = *slot;
  const bool changed =
      !p.record || p.record->incarnation != record.incarnation || p.record->addrs != record.addrs;
  p.record = record;
  p.last_record = record;
  if (p.link && !contains(record.cert_sha256, p.link->fingerprint())) {
    dropLink(p, PeerState::kDead, DeadReason::kIdentity, "its certificate is no longer in its members record",
             true);
    return;
  }
  if (p.link && p.hello && record.incarnation > p.hello_incarnation) {
    dropLink(p, PeerState::kDead, DeadReason::kRestarted,
             "restarted (incarnation " + std::to_string(record.incarnation) + ")", false);
  }
  if (!changed) return;
  p.backoff = Duration(0);
  // A dial in flight goes to the record it was made for (maybe an old address, or a process that
  // is gone and leaves it to time out): a new one starts now; the old one's failure is ignored.
  p.dialing = false;
  if (p.state == PeerState::kDead) {
    p.last_heard = clock_.now();
    setState(p, PeerState::kConnecting, DeadReason::kNone);
  }
  if (!p.link) scheduleDial(p, options_.node < p.id ? Duration(0) : options_.higher_dial_delay);
}

void MeshCore::onMemberGone(const std::string& node) {
  auto it = peers_.find(node);
  if (it == peers_.end() || !it->second->record) return;
  Peer& p = *it->second;
  p.record.reset();
  scheduler_.cancel(p.dial_timer);
  p.dial_timer = 0;
  dropLink(p, PeerState::kDead, DeadReason::kDeparted, "its members record is gone", false);
  setState(p, PeerState::kDead, DeadReason::kDeparted);
}

// ---- Connections

void MeshCore::scheduleDial(Peer& p, Duration delay) {
  if (stopped_ || p.link || p.dialing || !p.record) return;
  scheduler_.cancel(p.dial_timer);
  const std::string id = p.id;
  p.dial_timer = scheduler_.runAfter(delay, guarded([this, id] { dial(id); }));
}

void MeshCore::dial(const std::string& id) {
  auto it = peers_.find(id);
  if (stopped_ || it == peers_.end()) return;
  Peer& p = *it->second;
  p.dial_timer = 0;
  if (p.link || p.dialing || !p.record) return;
  p.dialing = true;
  const std::uint64_t attempt = ++p.dial_attempt;
  transport_.dial(id, p.record->addrs, options_.dial_timeout,
                  guarded([this, id, attempt](Result<std::shared_ptr<Link>> link) {
                    onDialed(id, attempt, std::move(link));
                  }));
}

void MeshCore::onDialed(const std::string& id, std::uint64_t attempt, Result<std::shared_ptr<Link>> link) {
  auto it = peers_.find(id);
  if (it == peers_.end()) {
    if (link.isOk()) (*link)->close(GoAwayReason::kShutdown, "not a member");
    return;
  }
  Peer& p = *it->second;
  const bool current = attempt == p.dial_attempt;
  if (current) p.dialing = false;
  if (stopped_) {
    if (link.isOk()) (*link)->close(GoAwayReason::kShutdown, "node " + options_.node + " is stopping");
    return;
  }
  if (!link.isOk()) {
    if (!current) return;  // a dial the record changed under: a newer one is in charge
    // Backoff 100 ms doubling to 5 s, +-20% jitter; a changed record resets it.
    p.backoff = std::clamp(p.backoff * 2, options_.backoff_min, options_.backoff_max);
    std::uniform_real_distribution<double> jitter(0.8, 1.2);
    const auto delay = std::chrono::duration_cast<Duration>(p.backoff * jitter(rng_));
    kLog->debug("mesh: dial {} failed: {}; again in {} ms", id, link.status().toString(), ms(delay));
    scheduleDial(p, delay);
    return;
  }
  adopt(std::move(*link));
}

void MeshCore::onAccepted(std::shared_ptr<Link> link) { adopt(std::move(link)); }

bool MeshCore::preferred(const Link& candidate, const Link& current) const {
  // Both ends keep the link the lower id dialed; between two of the same direction, the newer.
  const bool lower_dials_candidate = candidate.dialed() == (options_.node < candidate.peerId());
  const bool lower_dials_current = current.dialed() == (options_.node < current.peerId());
  if (lower_dials_candidate != lower_dials_current) return lower_dials_candidate;
  return true;
}

void MeshCore::adopt(std::shared_ptr<Link> link) {
  const std::string id = link->peerId();
  auto refuse = [&](GoAwayReason reason, const std::string& why) {
    link->start({[](Message) {}, [](const Status&) {}});
    link->close(reason, why);
  };
  auto it = peers_.find(id);
  if (id == options_.node || it == peers_.end() || !it->second->record) {
    ++counters_.links_refused_identity;
    kLog->warn("mesh: refused a connection from {} ({}): no members record for that node", id,
               link->remoteAddress());
    refuse(GoAwayReason::kIdentity, "no members record for " + id);
    return;
  }
  Peer& p = *it->second;
  if (!contains(p.record->cert_sha256, link->fingerprint())) {
    ++counters_.links_refused_identity;
    kLog->warn("mesh: refused a connection from {} ({}): certificate {} is not in its members record", id,
               link->remoteAddress(), link->fingerprint());
    refuse(GoAwayReason::kIdentity, "certificate not in the members record of " + id);
    return;
  }
  if (p.link) {
    ++counters_.links_duplicate;
    if (!preferred(*link, *p.link)) {
      refuse(GoAwayReason::kDuplicate, "another connection between " + options_.node + " and " + id + " won");
      return;
    }
    auto old = std::move(p.link);
    p.link.reset();
    p.hello = false;
    failCallsOf(p, unavailable("connection to " + id + " replaced"));
    // Their replies could only go on the old link, and a restarted caller numbers its calls from 1
    // again: kept, they would make its new requests look like duplicates and go unanswered.
    abandonIncoming(p);
    old->close(GoAwayReason::kDuplicate,
               "another connection between " + options_.node + " and " + id + " won");
  }
  scheduler_.cancel(p.dial_timer);
  p.dial_timer = 0;
  p.link = link;
  p.hello = false;
  p.said_shutdown = false;
  p.linked_at = clock_.now();
  const Link* raw = link.get();
  link->start({guarded([this, id, raw](Message m) { onLinkMessage(id, raw, std::move(m)); }),
               guarded([this, id, raw](const Status& why) { onLinkClosed(id, raw, why); })});
  Hello h;
  h.node = options_.node;
  h.incarnation = options_.incarnation;
  h.epoch = epoch_;
  h.ping_interval_ms = static_cast<std::uint32_t>(ms(options_.ping_interval));
  h.meta_version = meta_version_;
  h.max_message_bytes =
      static_cast<std::uint32_t>(std::min<std::size_t>(options_.max_message_bytes, UINT32_MAX));
  Message m;
  m.type = FrameType::kHello;
  m.payload = encodeHello(h);
  sendTo(p, std::move(m));
}

void MeshCore::onLinkClosed(const std::string& id, const Link* link, const Status& why) {
  auto it = peers_.find(id);
  if (it == peers_.end() || it->second->link.get() != link) return;  // a link already replaced
  Peer& p = *it->second;
  if (p.said_shutdown) {
    dropLink(p, PeerState::kDead, DeadReason::kDeparted, "it is stopping", false);
    return;
  }
  dropLink(p, PeerState::kSuspect, DeadReason::kUnreachable, "connection lost: " + why.toString(), true);
}

void MeshCore::dropLink(Peer& p, PeerState state, DeadReason reason, const std::string& why, bool redial) {
  if (p.link) {
    kLog->info("mesh: peer {} {}: {}", p.id, state == PeerState::kDead ? "dead" : "disconnected", why);
    auto link = std::move(p.link);
    p.link.reset();
    link->close(goAwayFor(reason), why);
  }
  p.hello = false;
  failCallsOf(p, unavailable("peer " + p.id + " " + std::string(deadReasonName(reason)) + ": " + why));
  abandonIncoming(p);
  setState(p, state, state == PeerState::kDead ? reason : p.reason);
  if (!redial || !p.record) return;
  if (options_.node < p.id) {
    p.backoff = std::clamp(p.backoff * 2, options_.backoff_min, options_.backoff_max);
    scheduleDial(p, p.backoff);
  } else {
    scheduleDial(p, options_.higher_dial_delay);
  }
}

// The requests `p` sent on its link, now gone: their handlers see cancellation, their replies are
// dropped (finishRequest sends only on the link a request came on).
void MeshCore::abandonIncoming(Peer& p) {
  for (auto& [rid, in] : p.incoming) in->ctx.cancelled_->store(true);
  p.incoming.clear();
}

void MeshCore::setState(Peer& p, PeerState state, DeadReason reason) {
  if (state != PeerState::kDead) reason = DeadReason::kNone;
  if (p.state == state && p.reason == reason) return;
  p.state = state;
  p.reason = reason;
  if (state == PeerState::kDead) {
    kLog->info("mesh: peer {} is dead ({})", p.id, deadReasonName(reason));
  } else if (state == PeerState::kAlive) {
    kLog->info("mesh: peer {} is alive ({})", p.id, p.link ? p.link->remoteAddress() : "");
  }
  if (peer_event_) peer_event_(infoOf(p));
}

// ---- Frames

void MeshCore::sendTo(Peer& p, Message m) {
  if (!p.link) return;
  m.sender_epoch = epoch_;
  p.last_sent = clock_.now();
  p.link->send(std::move(m));
}

void MeshCore::onLinkMessage(const std::string& id, const Link* link, Message m) {
  auto it = peers_.find(id);
  if (stopped_ || it == peers_.end() || it->second->link.get() != link) return;
  Peer& p = *it->second;
  p.last_heard = clock_.now();
  heardEpoch(m.sender_epoch);
  if (!p.hello && m.type != FrameType::kHello && m.type != FrameType::kGoAway) {
    ++counters_.protocol_errors;
    dropLink(p, PeerState::kDead, DeadReason::kProtocol,
             "sent " + std::string(frameTypeName(static_cast<std::uint8_t>(m.type))) + " before HELLO", true);
    return;
  }
  if (p.hello && p.state == PeerState::kSuspect) {
    setState(p, PeerState::kAlive, DeadReason::kNone);  // heard again
    sendWaiting(p);
  }
  switch (m.type) {
    case FrameType::kHello:
      return onHello(p, m);
    case FrameType::kPing:
      return onPing(p, m);
    case FrameType::kPong:
      return onPong(p, m);
    case FrameType::kGoAway: {
      auto g = decodeGoAway(m.payload);
      if (g.isOk() && g->reason == GoAwayReason::kShutdown) p.said_shutdown = true;
      kLog->debug("mesh: {} said GOAWAY: {}", id, g.isOk() ? g->text : g.status().toString());
      return;
    }
    case FrameType::kRpcReq:
      return onRequest(p, std::move(m));
    case FrameType::kRpcResp:
      return onResponse(p, m);
    case FrameType::kRpcCancel:
      return onCancel(p, m);
    case FrameType::kMetaPush:
      return onMetaPush(p, m);
    default:
      return;  // streams, locks, store: not handled here yet; unknown >= 0x80: ignored by design
  }
}

void MeshCore::onHello(Peer& p, const Message& m) {
  auto h = decodeHello(m.payload);
  std::string problem;
  if (!h.isOk()) {
    problem = "bad HELLO: " + h.status().message();
  } else if (p.hello) {
    problem = "second HELLO";
  } else if (h->node != p.id) {
    problem = "HELLO names node \"" + h->node + "\" but its certificate names \"" + p.id + "\"";
  } else {
    Hello ours;
    ours.proto_min = ours.proto_max = kFrameVersion;
    if (!negotiateVersion(ours, *h)) {
      problem = "no common protocol version (it speaks " + std::to_string(h->proto_min) + ".." +
                std::to_string(h->proto_max) + ")";
    }
  }
  if (!problem.empty()) {
    ++counters_.protocol_errors;
    dropLink(p, PeerState::kDead, DeadReason::kProtocol, problem, true);
    return;
  }
  if (p.record && h->incarnation < p.record->incarnation) {
    // An older process of that node than the one its record announces: not the peer we want.
    dropLink(p, PeerState::kDead, DeadReason::kRestarted,
             "stale incarnation " + std::to_string(h->incarnation), true);
    return;
  }
  p.hello = true;
  p.hello_incarnation = h->incarnation;
  p.accepts_bytes = h->max_message_bytes;
  p.backoff = Duration(0);
  heardEpoch(h->epoch);
  setState(p, PeerState::kAlive, DeadReason::kNone);
  if (meta_version_ > 0) {
    Message mp;
    mp.type = FrameType::kMetaPush;
    mp.payload = encodeMeta({meta_version_, meta_});
    sendTo(p, std::move(mp));
  }
  sendWaiting(p);
}

// DESIGN §6.2: a small RPC never waits behind bulk data. A request or reply that needs more than
// one fragment goes on the stream lane, so the RPC lane's small messages (weighted 2:1 above it)
// overtake it between its fragments instead of queueing behind all of them.
Lane MeshCore::laneFor(std::size_t payload_bytes) {
  return payload_bytes > kMaxFragmentPayload ? Lane::kStream : Lane::kRpc;
}

// OK when a message of `bytes` fits both our maxMessageBytes and the one `p` said in its HELLO.
Status MeshCore::checkSize(const Peer& p, std::string_view what, std::size_t bytes) const {
  if (bytes > options_.max_message_bytes) {
    return resourceExhausted(std::string(what) + " of " + std::to_string(bytes) +
                             " bytes is above maxMessageBytes " + std::to_string(options_.max_message_bytes));
  }
  if (p.accepts_bytes > 0 && bytes > p.accepts_bytes) {
    return resourceExhausted(std::string(what) + " of " + std::to_string(bytes) + " bytes is above peer " +
                             p.id + "'s maxMessageBytes " + std::to_string(p.accepts_bytes));
  }
  return Status::ok();
}

// The wait_for_ready calls to `p` that are not sent yet, now that it is alive.
void MeshCore::sendWaiting(Peer& p) {
  std::vector<std::uint64_t> waiting;
  for (const auto& [cid, pc] : pending_) {
    if (pc->peer == p.id && !pc->sent) waiting.push_back(cid);
  }
  for (auto cid : waiting) trySend(cid);
}

void MeshCore::onPing(Peer& p, const Message& m) {
  auto ping = decodePing(m.payload);
  if (!ping.isOk()) return;
  Pong pong;
  pong.echoed_ns = ping->sent_ns;
  std::size_t busy = 0;
  for (const auto& [name, method] : methods_) busy += method->running + method->queue.size();
  pong.in_flight = static_cast<std::uint32_t>(std::min<std::size_t>(busy, UINT32_MAX));
  pong.queued_bytes = p.link ? p.link->queuedBytes() : 0;
  Message reply;
  reply.type = FrameType::kPong;
  reply.payload = encodePong(pong);
  sendTo(p, std::move(reply));
}

void MeshCore::onPong(Peer& p, const Message& m) {
  auto pong = decodePong(m.payload);
  if (!pong.isOk()) return;
  const std::int64_t rtt = clock_.now().time_since_epoch().count() - pong->echoed_ns;
  if (rtt < 0) return;
  p.rtt_ewma_ns = p.rtt_samples.empty() ? static_cast<double>(rtt)
                                        : p.rtt_ewma_ns * 0.875 + static_cast<double>(rtt) * 0.125;
  p.rtt_samples.push_back(rtt);
  if (p.rtt_samples.size() > kRttSamples) p.rtt_samples.pop_front();
  p.load = pong->in_flight;
  p.load_at = clock_.now();
}

void MeshCore::onMetaPush(Peer& p, const Message& m) {
  auto meta = decodeMeta(m.payload);
  if (!meta.isOk()) {
    kLog->warn("mesh: bad metadata from {}: {}", p.id, meta.status().toString());
    return;
  }
  if (meta->version <= p.meta_version) return;  // an older push overtaken by a newer one
  p.meta_version = meta->version;
  p.meta = std::move(meta->entries);
  if (peer_event_) peer_event_(infoOf(p));
}

// ---- Serving requests

void MeshCore::onRequest(Peer& p, Message m) {
  const bool no_reply = (m.flags & kFlagNoReply) != 0;
  auto respond = [&](const Status& s) {
    if (no_reply) return;
    Message r;
    r.type = FrameType::kRpcResp;
    r.lane = Lane::kRpc;
    r.id = m.id;
    r.flags = kFlagError;
    r.payload = encodeError(s);
    sendTo(p, std::move(r));
  };
  if (m.timeout_ms == 0) {
    ++counters_.requests_expired;  // expired on arrival: never run
    return;
  }
  auto mit = methods_.find(m.name);
  if (mit == methods_.end()) {
    ++counters_.requests_rejected;
    respond(notFound("no handler for method \"" + m.name + "\" on node " + options_.node));
    return;
  }
  if (!no_reply && p.incoming.count(m.id) != 0) return;  // a duplicate of a request being served
  const TimePoint deadline = clock_.now() + std::chrono::milliseconds(m.timeout_ms);
  auto in = std::make_shared<Incoming>(p.id, m.name, deadline, m.sender_epoch);
  in->link = p.link.get();
  in->id = m.id;
  in->no_reply = no_reply;
  in->request = std::move(m.payload);
  in->method = mit->second.get();
  if (!no_reply) p.incoming[m.id] = in;
  Method& method = *mit->second;
  if (method.running >= method.options.max_concurrency) {
    const std::size_t bytes = in->request.size();
    std::string full;
    if (method.queue.size() >= method.options.max_queue) {
      full = "method \"" + m.name + "\" on node " + options_.node + " is at its limit of " +
             std::to_string(method.options.max_concurrency) + " running and " +
             std::to_string(method.options.max_queue) + " queued requests";
    } else if (bytes > options_.max_queued_request_bytes -
                           std::min(options_.max_queued_request_bytes, queued_request_bytes_)) {
      full = "node " + options_.node + " has " + std::to_string(queued_request_bytes_) +
             " bytes of requests queued; " + std::to_string(bytes) + " more would pass its limit of " +
             std::to_string(options_.max_queued_request_bytes);
    }
    if (!full.empty()) {
      ++counters_.requests_rejected;
      p.incoming.erase(m.id);
      respond(resourceExhausted(full));
      return;
    }
    queued_request_bytes_ += bytes;
    method.queue.push_back(std::move(in));
    return;
  }
  dispatch(method, std::move(in));
}

void MeshCore::dispatch(Method& method, std::shared_ptr<Incoming> in) {
  ++method.running;
  auto once = std::make_shared<std::atomic<bool>>(false);
  Scheduler* scheduler = &scheduler_;
  Reply reply = [this, in, once, scheduler, guard = std::weak_ptr<bool>(alive_)](Result<std::string> result) {
    if (once->exchange(true)) return;  // a handler that answers twice: the first answer counts
    scheduler->post([this, in, guard, result = std::move(result)]() mutable {
      if (guard.expired()) return;
      finishRequest(in, std::move(result));
    });
  };
  // The workers may be busy (blocking handlers): whether the request is still wanted is decided
  // when a worker takes it, not when it was queued there. The clock outlives the workers' tasks.
  run_handler_([handler = method.handler, in, clock = &clock_, reply = std::move(reply)]() mutable {
    if (in->ctx.cancelled() || clock->now() >= in->ctx.deadline()) {
      in->not_run.store(true);
      reply(Status(StatusCode::kDeadlineExceeded, "request expired before a worker was free to run it"));
      return;
    }
    handler(in->ctx, std::move(in->request), std::move(reply));
  });
}

void MeshCore::finishRequest(std::shared_ptr<Incoming> in, Result<std::string> result) {
  if (in->finished) return;
  in->finished = true;
  Method& method = *in->method;
  --method.running;
  if (in->not_run.load()) {
    ++counters_.requests_expired;
  } else {
    ++counters_.requests_served;
  }
  auto pit = peers_.find(in->peer);
  if (pit != peers_.end()) {
    Peer& p = *pit->second;
    auto iit = p.incoming.find(in->id);
    if (iit != p.incoming.end() && iit->second == in) p.incoming.erase(iit);
    const bool wanted = !in->no_reply && p.link.get() == in->link && clock_.now() < in->ctx.deadline();
    if (wanted) {
      Message r;
      r.type = FrameType::kRpcResp;
      r.id = in->id;
      if (result.isOk()) {
        r.payload = std::move(result.value());
        if (Status too_big = checkSize(p, "reply", r.payload.size()); !too_big.isOk()) {
          r.flags = kFlagError;
          r.payload = encodeError(too_big);
        }
      } else {
        r.flags = kFlagError;
        r.payload = encodeError(result.status());
      }
      r.lane = laneFor(r.payload.size());
      sendTo(p, std::move(r));
    }
  }
  // Next queued request of this method that is still worth running.
  while (!method.queue.empty() && method.running < method.options.max_concurrency) {
    auto next = std::move(method.queue.front());
    method.queue.pop_front();
    queued_request_bytes_ -= next->request.size();
    if (next->ctx.cancelled() || clock_.now() >= next->ctx.deadline()) {
      ++counters_.requests_expired;  // its caller gave up: never run it
      next->finished = true;
      auto np = peers_.find(next->peer);
      if (np != peers_.end()) np->second->incoming.erase(next->id);
      continue;
    }
    dispatch(method, std::move(next));
  }
}

void MeshCore::onCancel(Peer& p, const Message& m) {
  auto it = p.incoming.find(m.id);
  if (it != p.incoming.end()) it->second->ctx.cancelled_->store(true);
}

Status MeshCore::handle(std::string method, Handler handler, HandlerOptions options) {
  if (method.empty() || method.size() > kMaxNameBytes) {
    return invalidArgument("method name must be 1-" + std::to_string(kMaxNameBytes) + " bytes");
  }
  if (!handler) return invalidArgument("method \"" + method + "\": empty handler");
  if (options.max_concurrency == 0)
    return invalidArgument("method \"" + method + "\": max_concurrency must be > 0");
  if (methods_.count(method) != 0)
    return Status(StatusCode::kAlreadyExists, "method \"" + method + "\" already has a handler");
  auto m = std::make_unique<Method>();
  m->name = method;
  m->handler = std::move(handler);
  m->options = options;
  methods_.emplace(std::move(method), std::move(m));
  return Status::ok();
}

// ---- Calling

void MeshCore::call(std::string_view peer, std::string_view method, std::string request, CallOptions options,
                    Done<Result<std::string>> done) {
  startCall(peer, method, std::move(request), options,
            [done = std::move(done)](Result<std::string> r, bool) { done(std::move(r)); });
}

void MeshCore::startCall(std::string_view peer, std::string_view method, std::string request,
                         CallOptions options, CallDone done) {
  auto pc = std::make_unique<Pending>();
  pc->peer = std::string(peer);
  pc->method = std::string(method);
  pc->request = std::move(request);
  pc->options = options;
  pc->done = std::move(done);
  Status bad;
  if (options.timeout <= Duration(0)) {
    bad = invalidArgument("call " + pc->method + " to " + pc->peer + ": a timeout above zero is required");
  } else if (pc->method.empty() || pc->method.size() > kMaxNameBytes) {
    bad = invalidArgument("method name must be 1-" + std::to_string(kMaxNameBytes) + " bytes");
  } else if (pc->request.size() > options_.max_message_bytes) {
    bad = resourceExhausted("request of " + std::to_string(pc->request.size()) +
                            " bytes is above maxMessageBytes " + std::to_string(options_.max_message_bytes));
  } else if (stopped_) {
    bad = Status(StatusCode::kCancelled, "mesh stopped");
  }
  if (!bad.isOk()) {
    scheduler_.post([done = std::move(pc->done), bad] { done(bad, false); });
    return;
  }
  const std::uint64_t id = next_call_id_++;
  pc->deadline = clock_.now() + options.timeout;
  pc->deadline_timer = scheduler_.runAfter(
      options.timeout, guarded([this, id] {
        auto it = pending_.find(id);
        if (it == pending_.end()) return;
        Pending& c = *it->second;
        ++counters_.calls_timed_out;
        if (c.sent) {
          auto pit = peers_.find(c.peer);
          if (pit != peers_.end() && pit->second->link.get() == c.link) {
            Message cancel;
            cancel.type = FrameType::kRpcCancel;
            cancel.lane = Lane::kRpc;
            cancel.id = id;
            sendTo(*pit->second, std::move(cancel));
          }
        }
        complete(id, deadlineExceeded("no reply from " + c.peer + " to " + c.method + " within " +
                                      std::to_string(ms(c.options.timeout)) + " ms"));
      }));
  pending_.emplace(id, std::move(pc));
  auto pit = peers_.find(peer);
  if (pit != peers_.end()) ++pit->second->in_flight;
  trySend(id);
}

Status MeshCore::unavailableStatus(const Peer* p, std::string_view id) const {
  if (p == nullptr || !p->record)
    return unavailable("peer " + std::string(id) + " is not a member (no members record)");
  std::string s = "peer " + std::string(id) + " is " + std::string(peerStateName(p->state));
  if (p->state == PeerState::kDead) s += " (" + std::string(deadReasonName(p->reason)) + ")";
  return unavailable(s);
}

void MeshCore::trySend(std::uint64_t call_id) {
  auto it = pending_.find(call_id);
  if (it == pending_.end()) return;
  Pending& c = *it->second;
  c.retry_timer = 0;
  auto pit = peers_.find(c.peer);
  Peer* p = pit == peers_.end() ? nullptr : pit->second.get();
  if (p == nullptr || !p->link || !p->hello || p->state != PeerState::kAlive) {
    if (!c.options.wait_for_ready) complete(call_id, unavailableStatus(p, c.peer));
    return;  // wait_for_ready: sendWaiting() retries it; the deadline timer ends it otherwise
  }
  if (Status too_big = checkSize(*p, "request", c.request.size()); !too_big.isOk()) {
    complete(call_id, too_big);  // sent, the peer would close the connection and every call on it
    return;
  }
  Message m;
  m.type = FrameType::kRpcReq;
  m.lane = laneFor(c.request.size());
  m.id = call_id;
  m.name = c.method;
  const Duration remaining = c.deadline - clock_.now();
  if (remaining <= Duration(0)) return;  // the deadline timer is due
  const auto remaining_ms = std::chrono::ceil<std::chrono::milliseconds>(remaining).count();
  m.timeout_ms = static_cast<std::uint32_t>(std::clamp<long long>(remaining_ms, 1, UINT32_MAX));
  if (p->link->queuedBytes() + c.request.size() > options_.send_budget && p->link->queuedBytes() > 0) {
    // Over the per-peer send budget: wait for room, until the deadline.
    c.retry_timer = scheduler_.runAfter(kBudgetRetry, guarded([this, call_id] { trySend(call_id); }));
    return;
  }
  m.payload = c.request;  // kept for `any`, which may resend an idempotent request elsewhere
  c.sent = true;
  c.link = p->link.get();
  ++counters_.calls_sent;
  sendTo(*p, std::move(m));
}

void MeshCore::onResponse(Peer& p, const Message& m) {
  auto it = pending_.find(m.id);
  if (it == pending_.end() || it->second->peer != p.id || it->second->link != p.link.get()) return;
  if ((m.flags & kFlagError) != 0) {
    complete(m.id, decodeError(m.payload));
  } else {
    complete(m.id, m.payload);
  }
}

void MeshCore::complete(std::uint64_t call_id, Result<std::string> result) {
  auto it = pending_.find(call_id);
  if (it == pending_.end()) return;
  std::unique_ptr<Pending> c = std::move(it->second);
  pending_.erase(it);
  scheduler_.cancel(c->deadline_timer);
  scheduler_.cancel(c->retry_timer);
  auto pit = peers_.find(c->peer);
  if (pit != peers_.end() && pit->second->in_flight > 0) --pit->second->in_flight;
  if (!result.isOk()) ++counters_.calls_failed;
  scheduler_.post([done = std::move(c->done), result = std::move(result), sent = c->sent]() mutable {
    done(std::move(result), sent);
  });
}

void MeshCore::failCallsOf(Peer& p, const Status& why) {
  std::vector<std::uint64_t> ids;
  for (const auto& [id, c] : pending_) {
    if (c->peer == p.id && (c->sent || !c->options.wait_for_ready)) ids.push_back(id);
  }
  for (auto id : ids) complete(id, why);
}

std::size_t MeshCore::broadcast(std::string_view method, std::string request, const PeerFilter& filter) {
  std::size_t sent = 0;
  if (stopped_ || method.empty() || method.size() > kMaxNameBytes ||
      request.size() > options_.max_message_bytes) {
    return 0;
  }
  for (auto& [id, p] : peers_) {
    if (p->state != PeerState::kAlive || !p->link || !filter.matches(infoOf(*p))) continue;
    if (p->link->queuedBytes() + request.size() > options_.send_budget ||
        !checkSize(*p, "request", request.size()).isOk()) {
      ++counters_.broadcast_dropped;
      continue;
    }
    Message m;
    m.type = FrameType::kRpcReq;
    m.lane = laneFor(request.size());
    m.flags = kFlagNoReply;
    m.id = next_call_id_++;
    m.name = std::string(method);
    m.timeout_ms = static_cast<std::uint32_t>(std::max<long long>(1, ms(options_.broadcast_timeout)));
    m.payload = request;
    sendTo(*p, std::move(m));
    ++sent;
  }
  return sent;
}

void MeshCore::all(std::string_view method, std::string request, CallOptions options,
                   const PeerFilter& filter, Done<std::vector<PeerReply>> done) {
  std::vector<std::string> targets;
  for (const auto& [id, p] : peers_) {
    if (p->state == PeerState::kAlive && filter.matches(infoOf(*p))) targets.push_back(id);
  }
  struct Gather {
    std::vector<PeerReply> replies;
    std::size_t left = 0;
    Done<std::vector<PeerReply>> done;
  };
  auto g = std::make_shared<Gather>();
  g->done = std::move(done);
  g->left = targets.size();
  if (targets.empty()) {
    scheduler_.post([g] { g->done({}); });
    return;
  }
  for (const auto& t : targets) g->replies.push_back({t, unavailable("not answered")});
  options.wait_for_ready = false;  // only peers alive now; one that dies fails its slot at once
  for (std::size_t i = 0; i < targets.size(); ++i) {
    call(targets[i], method, request, options, [g, i](Result<std::string> r) {
      g->replies[i].reply = std::move(r);
      if (--g->left == 0) g->done(std::move(g->replies));
    });
  }
}

struct MeshCore::AnyAttempt {
  std::vector<std::string> order;  // least busy first
  std::size_t next = 0;
  std::string method;
  std::string request;
  CallOptions options;
  TimePoint deadline{};
  Done<PeerReply> done;
};

void MeshCore::any(std::string_view method, std::string request, CallOptions options,
                   const PeerFilter& filter, Done<PeerReply> done) {
  // Least busy: our own in-flight calls to it plus its load from a PONG no older than 2 pings.
  std::vector<std::pair<std::uint64_t, std::string>> ranked;
  const TimePoint now = clock_.now();
  for (const auto& [id, p] : peers_) {
    if (p->state != PeerState::kAlive || !filter.matches(infoOf(*p))) continue;
    const std::uint32_t load = now - p->load_at <= 2 * options_.ping_interval ? p->load : 0;
    if (load >= kOverloaded || p->in_flight >= kOverloaded) continue;
    ranked.emplace_back(static_cast<std::uint64_t>(load) + p->in_flight, id);
  }
  std::shuffle(ranked.begin(), ranked.end(), rng_);  // random tie-break
  std::stable_sort(ranked.begin(), ranked.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  if (ranked.empty() || options.timeout <= Duration(0)) {
    Status why = ranked.empty()
                     ? unavailable("no alive, not overloaded peer matches the filter")
                     : invalidArgument("any " + std::string(method) + ": a timeout above zero is required");
    scheduler_.post([done = std::move(done), why] { done({"", why}); });
    return;
  }
  auto a = std::make_shared<AnyAttempt>();
  for (auto& r : ranked) a->order.push_back(std::move(r.second));
  a->method = std::string(method);
  a->request = std::move(request);
  a->options = options;
  a->options.wait_for_ready = false;
  a->deadline = now + options.timeout;
  a->done = std::move(done);
  anyStep(std::move(a));
}

void MeshCore::anyStep(std::shared_ptr<AnyAttempt> a) {
  const std::string target = a->order[a->next++];
  CallOptions o = a->options;
  o.timeout = a->deadline - clock_.now();
  startCall(target, a->method, a->request, o,
            [this, a, target, guard = std::weak_ptr<bool>(alive_)](Result<std::string> r, bool sent) {
              // Another peer only if this one never got the request, or repeating it is harmless.
              const bool retry =
                  !guard.expired() && !r.isOk() && r.status().code() == StatusCode::kUnavailable &&
                  (!sent || a->options.idempotent) && a->next < a->order.size() && clock_.now() < a->deadline;
              if (retry) {
                anyStep(a);
                return;
              }
              a->done({target, std::move(r)});
            });
}

// ---- Metadata

Status MeshCore::setMeta(std::string key, std::string value) {
  if (key.empty() || key.size() > kMaxNameBytes) {
    return invalidArgument("metadata key must be 1-" + std::to_string(kMaxNameBytes) + " bytes");
  }
  if (value.size() > kMaxMetaBytes - key.size()) {
    return resourceExhausted("metadata value of " + std::to_string(value.size()) +
                             " bytes is above the limit of " + std::to_string(kMaxMetaBytes) +
                             " for keys and values together");
  }
  auto next = meta_;
  next[std::move(key)] = std::move(value);
  std::size_t bytes = 0;
  for (const auto& [k, v] : next) bytes += k.size() + v.size();
  if (bytes > kMaxMetaBytes) {
    return resourceExhausted("metadata of " + std::to_string(bytes) + " bytes is above the limit of " +
                             std::to_string(kMaxMetaBytes));
  }
  meta_ = std::move(next);
  ++meta_version_;
  scheduleMetaPush();
  return Status::ok();
}

void MeshCore::scheduleMetaPush() {
  if (meta_push_armed_) return;
  meta_push_armed_ = true;
  scheduler_.runAfter(options_.meta_debounce, guarded([this] { pushMeta(); }));
}

void MeshCore::pushMeta() {
  meta_push_armed_ = false;
  if (stopped_) return;
  const std::string payload = encodeMeta({meta_version_, meta_});
  for (auto& [id, p] : peers_) {
    if (!p->hello || !p->link) continue;
    Message m;
    m.type = FrameType::kMetaPush;
    m.payload = payload;
    sendTo(*p, std::move(m));
  }
}

void MeshCore::noteEpoch(std::uint64_t epoch) { epoch_ = std::max(epoch_, epoch); }

Status MeshCore::rotateCertificate(std::string fingerprint) {
  if (self_.node.empty() || stopped_) return failedPrecondition("the mesh is not running");
  std::vector<std::string> listed{fingerprint};
  if (!self_.cert_sha256.empty() && self_.cert_sha256.front() != fingerprint)
    listed.push_back(self_.cert_sha256.front());
  options_.cert_sha256 = listed;
  self_.cert_sha256 = std::move(listed);
  members_.publish(self_);
  kLog->info("mesh: node {} now presents certificate {}", options_.node, fingerprint);
  return Status::ok();
}

// An epoch a peer sent (on a frame or in HELLO): a higher one than ours is news for the election.
void MeshCore::heardEpoch(std::uint64_t epoch) {
  if (epoch <= epoch_) return;
  epoch_ = epoch;
  if (higher_epoch_) higher_epoch_(epoch_);
}

// ---- Liveness

void MeshCore::tick() {
  if (stopped_) return;
  const TimePoint now = clock_.now();
  const bool slipped = now - last_tick_ > kTick + kSlip;
  last_tick_ = now;
  tick_timer_ = scheduler_.runAfter(kTick, guarded([this] { tick(); }));
  if (slipped) {
    // Our own timers ran late (a paused process, an overloaded host): the silence we measured is
    // ours, not theirs. Declare ourselves degraded and give every peer a fresh start.
    ++counters_.slipped_ticks;
    if (!degraded_)
      kLog->warn("mesh: node {} is degraded: its timers slipped; no peer declared dead", options_.node);
    degraded_ = true;
    for (auto& [id, p] : peers_) p->last_heard = std::max(p->last_heard, now);
    return;
  }
  degraded_ = false;
  for (auto& [id, up] : peers_) {
    Peer& p = *up;
    if (!p.record) continue;
    const Duration silence = now - p.last_heard;
    if (p.link && !p.hello && now - p.linked_at >= options_.dial_timeout) {
      ++counters_.protocol_errors;
      dropLink(p, PeerState::kSuspect, DeadReason::kProtocol,
               "no HELLO within " + std::to_string(ms(options_.dial_timeout)) + " ms", true);
      continue;
    }
    if (silence >= options_.dead_after) {
      if (p.state != PeerState::kDead) {
        dropLink(p, PeerState::kDead, DeadReason::kUnreachable,
                 "nothing heard for " + std::to_string(ms(silence)) + " ms while its members record is fresh",
                 true);
      }
      continue;
    }
    if (silence >= options_.suspect_after && p.state == PeerState::kAlive)
      setState(p, PeerState::kSuspect, DeadReason::kNone);
    if (p.link && p.hello && now - p.last_sent >= options_.ping_interval) {
      Message m;
      m.type = FrameType::kPing;
      m.payload = encodePing({now.time_since_epoch().count()});
      sendTo(p, std::move(m));
    }
  }
}

// ---- Views

PeerInfo MeshCore::infoOf(const Peer& p) const {
  PeerInfo info;
  info.id = p.id;
  // A departed peer keeps what was last known of it (its record is gone).
  info.division = p.last_record.division;
  info.type = p.last_record.type;
  info.incarnation = std::max(p.last_record.incarnation, p.hello_incarnation);
  info.state = p.state;
  info.reason = p.reason;
  info.connected = p.link != nullptr && p.hello;
  info.address = p.link ? p.link->remoteAddress() : "";
  info.rtt_ewma = Duration(static_cast<std::int64_t>(p.rtt_ewma_ns));
  if (!p.rtt_samples.empty()) {
    std::vector<std::int64_t> s(p.rtt_samples.begin(), p.rtt_samples.end());
    const std::size_t k = std::min(s.size() - 1, (s.size() * 99) / 100);
    std::nth_element(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(k), s.end());
    info.rtt_p99 = Duration(s[k]);
  }
  info.load = p.load;
  info.meta_version = p.meta_version;
  info.meta = p.meta;
  return info;
}

std::vector<PeerInfo> MeshCore::peers() const {
  std::vector<PeerInfo> out;
  for (const auto& [id, p] : peers_) out.push_back(infoOf(*p));
  return out;
}

std::optional<PeerInfo> MeshCore::peer(std::string_view id) const {
  auto it = peers_.find(id);
  if (it == peers_.end()) return std::nullopt;
  return infoOf(*it->second);
}

#undef GUARDED

}  // namespace hacoord::mesh
