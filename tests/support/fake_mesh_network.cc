// FakeMeshNetwork: links with FIFO delivery, partitions that hold data, FIN/RST, a member registry.
#include "support/fake_mesh_network.h"

#include <algorithm>
#include <deque>
#include <optional>

namespace hacoord::test {

using mesh::Message;

struct FakeMeshNetwork::Endpoint {
  std::string node;
  FakeScheduler* scheduler = nullptr;
  bool listening = false;
  mesh::Transport::AcceptFn on_accept;
  std::map<mesh::RefusedReason, std::uint64_t> refusals;
};

// One connection: side 0 dialed, side 1 accepted. Direction d carries what side d sends.
struct FakeMeshNetwork::Conn {
  std::string node[2];
  FakeScheduler* scheduler[2] = {nullptr, nullptr};
  std::shared_ptr<FakeLink> link[2];
  bool closed[2] = {false, false};  // this side's Link is closed (it saw or made the close)
  TimePoint last_delivery[2]{};
  std::deque<std::pair<TimePoint, std::optional<Message>>> held[2];  // nullopt: the FIN
  std::size_t held_bytes[2] = {0, 0};
};

class FakeLink final : public mesh::Link {
 public:
  FakeLink(FakeMeshNetwork& net, std::weak_ptr<FakeMeshNetwork::Conn> conn, int side, std::string peer,
           std::string fingerprint)
      : net_(net),
        conn_(std::move(conn)),
        side_(side),
        peer_(std::move(peer)),
        fingerprint_(std::move(fingerprint)) {}

  void start(mesh::LinkEvents events) override {
    events_ = std::move(events);
    started_ = true;
    auto buffered = std::move(buffered_);
    for (auto& m : buffered) events_.on_message(std::move(m));
    if (close_pending_) {
      close_pending_ = false;
      events_.on_closed(close_status_);
    }
  }
  const std::string& peerId() const override { return peer_; }
  const std::string& fingerprint() const override { return fingerprint_; }
  bool dialed() const override { return side_ == 0; }
  std::string remoteAddress() const override { return peer_ + ":7000"; }
  bool send(Message m) override {
    auto c = conn_.lock();
    if (!c || c->closed[side_]) return false;
    net_.deliver(c, side_, std::move(m));
    return true;
  }
  std::size_t queuedBytes() const override {
    auto c = conn_.lock();
    return c ? c->held_bytes[side_] : 0;
  }
  void close(mesh::GoAwayReason reason, std::string text) override {
    auto c = conn_.lock();
    if (!c || c->closed[side_]) return;
    Message g;
    g.type = mesh::FrameType::kGoAway;
    g.payload = mesh::encodeGoAway({reason, std::move(text)});
    net_.deliver(c, side_, std::move(g));
    net_.closeConn(c, Status(StatusCode::kCancelled, "closed locally"), side_);
  }

  // From the network, on this side's scheduler.
  void receive(Message m) {
    if (started_) {
      events_.on_message(std::move(m));
    } else {
      buffered_.push_back(std::move(m));
    }
  }
  void closed(const Status& why) {
    if (started_) {
      if (events_.on_closed) events_.on_closed(why);
    } else {
      close_pending_ = true;
      close_status_ = why;
    }
  }

 private:
  FakeMeshNetwork& net_;
  std::weak_ptr<FakeMeshNetwork::Conn> conn_;
  int side_;
  std::string peer_;
  std::string fingerprint_;
  mesh::LinkEvents events_;
  bool started_ = false;
  std::vector<Message> buffered_;
  bool close_pending_ = false;
  Status close_status_;
};

FakeMeshNetwork::FakeMeshNetwork(SimLoop& loop, std::uint64_t seed, Options options)
    : loop_(loop), options_(options), rng_(seed) {}

FakeMeshNetwork::~FakeMeshNetwork() = default;

std::string FakeMeshNetwork::fingerprintOf(const std::string& node) {
  // A stable 64-hex-digit stand-in for a certificate's SHA-256 (FNV-1a, repeated).
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : node) h = (h ^ c) * 1099511628211ULL;
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 64; ++i) {
    out.push_back(kHex[(h >> ((i % 16) * 4)) & 0xF]);
    if (i % 16 == 15) h = (h ^ 0x9e3779b97f4a7c15ULL) * 1099511628211ULL;
  }
  return out;
}

Duration FakeMeshNetwork::drawDelay() {
  std::uniform_int_distribution<std::int64_t> d(options_.min_delay.count(), options_.max_delay.count());
  return Duration(d(rng_));
}

bool FakeMeshNetwork::blocked(const std::string& from, const std::string& to) const {
  return blocked_.count({from, to}) != 0;
}

void FakeMeshNetwork::deliver(const std::shared_ptr<Conn>& conn, int dir, Message m) {
  const int to = 1 - dir;
  if (conn->closed[to]) return;  // the other end is gone: what it would receive is lost (RST)
  if (blocked(conn->node[dir], conn->node[to]) || !conn->held[dir].empty()) {
    // Partitioned (or earlier data still held: order is kept): TCP keeps retransmitting.
    conn->held_bytes[dir] += m.payload.size();
    conn->held[dir].emplace_back(loop_.now(), std::move(m));
    std::weak_ptr<Conn> weak = conn;
    loop_.scheduleAfter(options_.user_timeout, [this, weak, dir] {
      auto c = weak.lock();
      if (!c || c->held[dir].empty()) return;
      if (loop_.now() - c->held[dir].front().first >= options_.user_timeout) {
        closeConn(c, unavailable("TCP_USER_TIMEOUT: data unacknowledged for 5 s"), -1);
      }
    });
    return;
  }
  const TimePoint at = std::max(loop_.now() + drawDelay(), conn->last_delivery[dir]);
  conn->last_delivery[dir] = at;
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  const int copies = coin(rng_) < options_.duplicate_probability ? 2 : 1;
  for (int i = 0; i < copies; ++i) {
    std::weak_ptr<Conn> weak = conn;
    conn->scheduler[to]->runAtGlobal(at, [this, weak, to, m] {
      auto c = weak.lock();
      if (!c || c->closed[to] || !c->link[to]) return;
      ++delivered_;
      c->link[to]->receive(m);
    });
  }
}

void FakeMeshNetwork::closeConn(const std::shared_ptr<Conn>& conn, const Status& why, int closer) {
  // closer >= 0: that side closed (FIN after its queued data); -1: reset both sides now.
  for (int s = 0; s < 2; ++s) {
    if (conn->closed[s]) continue;
    const bool now_side = closer < 0 || s == closer;
    if (!now_side) continue;
    conn->closed[s] = true;
    std::weak_ptr<Conn> weak = conn;
    Status st = why;
    conn->scheduler[s]->runAtGlobal(loop_.now(), [weak, s, st] {
      auto c = weak.lock();
      if (c && c->link[s]) c->link[s]->closed(st);
    });
  }
  if (closer < 0) return;
  // The FIN travels like data, after what the closer sent.
  const int to = 1 - closer;
  if (conn->closed[to]) return;
  if (blocked(conn->node[closer], conn->node[to]) || !conn->held[closer].empty()) {
    conn->held[closer].emplace_back(loop_.now(), std::nullopt);
    return;
  }
  sendFin(conn, closer);
}

void FakeMeshNetwork::sendFin(const std::shared_ptr<Conn>& conn, int closer) {
  const int to = 1 - closer;
  if (conn->closed[to]) return;
  const TimePoint at = std::max(loop_.now() + drawDelay(), conn->last_delivery[closer]);
  conn->last_delivery[closer] = at;
  conn->scheduler[to]->runAtGlobal(at, [conn, to] {
    if (conn->closed[to]) return;
    conn->closed[to] = true;
    if (conn->link[to]) conn->link[to]->closed(unavailable("connection closed by " + conn->node[1 - to]));
  });
}

void FakeMeshNetwork::flush(const std::shared_ptr<Conn>& conn, int dir) {
  auto held = std::move(conn->held[dir]);
  conn->held[dir].clear();
  conn->held_bytes[dir] = 0;
  for (auto& [sent, m] : held) {
    if (m) {
      deliver(conn, dir, std::move(*m));
    } else {
      sendFin(conn, dir);  // that side closed earlier; its FIN goes out after what it sent before
    }
  }
}

void FakeMeshNetwork::partition(const std::string& a, const std::string& b) {
  partitionOneWay(a, b);
  partitionOneWay(b, a);
}

void FakeMeshNetwork::partitionOneWay(const std::string& from, const std::string& to) {
  blocked_.insert({from, to});
}

void FakeMeshNetwork::heal(const std::string& a, const std::string& b) {
  blocked_.erase({a, b});
  blocked_.erase({b, a});
  for (auto& c : conns_) {
    for (int d = 0; d < 2; ++d) {
      if (!c->held[d].empty() && !blocked(c->node[d], c->node[1 - d])) flush(c, d);
    }
  }
}

void FakeMeshNetwork::healAll() {
  auto all = blocked_;
  for (const auto& [a, b] : all) heal(a, b);
}

void FakeMeshNetwork::reset(const std::string& a, const std::string& b) {
  for (auto& c : conns_) {
    if ((c->node[0] == a && c->node[1] == b) || (c->node[0] == b && c->node[1] == a)) {
      closeConn(c, unavailable("connection reset"), -1);
    }
  }
}

void FakeMeshNetwork::crash(const std::string& node) {
  auto eit = endpoints_.find(node);
  if (eit != endpoints_.end()) eit->second->listening = false;
  for (auto& c : conns_) {
    for (int s = 0; s < 2; ++s) {
      if (c->node[s] != node || c->closed[s]) continue;
      // The dead process's side says nothing more; the kernel sends FIN after what was in flight.
      c->link[s].reset();
      closeConn(c, Status(StatusCode::kCancelled, "process killed"), s);
    }
  }
}

std::size_t FakeMeshNetwork::openLinks(const std::string& a, const std::string& b) const {
  std::size_t n = 0;
  for (const auto& c : conns_) {
    if (c->closed[0] || c->closed[1]) continue;
    if ((c->node[0] == a && c->node[1] == b) || (c->node[0] == b && c->node[1] == a)) ++n;
  }
  return n;
}

void FakeMeshNetwork::registerEndpoint(Endpoint* e) { endpoints_[e->node] = e; }

void FakeMeshNetwork::unregisterEndpoint(Endpoint* e) {
  auto it = endpoints_.find(e->node);
  if (it != endpoints_.end() && it->second == e) endpoints_.erase(it);
  // The process is gone: whatever it still held closes like a crash.
  for (auto& c : conns_) {
    for (int s = 0; s < 2; ++s) {
      if (c->node[s] == e->node && c->scheduler[s] == e->scheduler && !c->closed[s]) {
        c->link[s].reset();
        closeConn(c, Status(StatusCode::kCancelled, "transport destroyed"), s);
      }
    }
  }
}

void FakeMeshNetwork::presentAs(const std::string& node, const std::string& claimed_id,
                                const std::string& fingerprint) {
  presented_[node] = {claimed_id, fingerprint};
}

void FakeMeshNetwork::dial(Endpoint& from, const std::string& node, const std::vector<std::string>& addrs,
                           Duration timeout, mesh::Transport::DialFn done) {
  FakeScheduler* sched = from.scheduler;
  auto fail_at = [sched](TimePoint at, Status s, mesh::Transport::DialFn fn) {
    sched->runAtGlobal(at, [s, fn = std::move(fn)] { fn(s); });
  };
  // The fake resolves "<node>:7000" to that node's endpoint.
  std::string target = addrs.empty() ? node : addrs.front().substr(0, addrs.front().find(':'));
  auto it = endpoints_.find(target);
  if (blocked(from.node, target) || blocked(target, from.node)) {
    fail_at(loop_.now() + timeout, deadlineExceeded("connect to " + target + ":7000 timed out"),
            std::move(done));
    return;
  }
  if (it == endpoints_.end() || !it->second->listening) {
    fail_at(loop_.now() + drawDelay(), unavailable("connection refused by " + target + ":7000"),
            std::move(done));
    return;
  }
  Endpoint& to = *it->second;
  auto presented = [&](const std::string& n) {
    auto p = presented_.find(n);
    return p != presented_.end() ? p->second : std::make_pair(n, fingerprintOf(n));
  };
  const auto [to_id, to_fp] = presented(target);
  const auto [from_id, from_fp] = presented(from.node);
  const Duration d1 = drawDelay();
  const Duration d2 = drawDelay();
  if (to_id != node) {
    ++from.refusals[mesh::RefusedReason::kSan];
    fail_at(
        loop_.now() + d1 + d2,
        Status(StatusCode::kPermissionDenied, "certificate names \"" + to_id + "\", dialed \"" + node + "\""),
        std::move(done));
    return;
  }
  auto conn = std::make_shared<Conn>();
  conn->node[0] = from.node;
  conn->node[1] = target;
  conn->scheduler[0] = from.scheduler;
  conn->scheduler[1] = to.scheduler;
  conn->link[0] = std::make_shared<FakeLink>(*this, conn, 0, to_id, to_fp);
  conn->link[1] = std::make_shared<FakeLink>(*this, conn, 1, from_id, from_fp);
  conn->last_delivery[0] = conn->last_delivery[1] = loop_.now() + d1;
  conns_.erase(std::remove_if(conns_.begin(), conns_.end(),
                              [](const auto& c) {
                                return c->closed[0] && c->closed[1] && c->held[0].empty() &&
                                       c->held[1].empty();
                              }),
               conns_.end());
  conns_.push_back(conn);
  auto accept = to.on_accept;
  to.scheduler->runAtGlobal(loop_.now() + d1, [conn, accept] {
    if (!conn->closed[1] && accept) accept(conn->link[1]);
  });
  from.scheduler->runAtGlobal(loop_.now() + d1 + d2, [conn, done = std::move(done)] {
    if (conn->closed[0]) {
      done(unavailable("connection closed during the handshake"));
      return;
    }
    done(std::shared_ptr<mesh::Link>(conn->link[0]));
  });
}

// ---- Members

void FakeMeshNetwork::registerSource(FakeMemberSource* s) { sources_.insert(s); }
void FakeMeshNetwork::unregisterSource(FakeMemberSource* s) { sources_.erase(s); }

void FakeMeshNetwork::publishMember(const std::string& from, const mesh::MemberRecord& r) {
  if (cut_from_members_.count(from) != 0) return;
  putMember(r);
}

void FakeMeshNetwork::putMember(const mesh::MemberRecord& r) {
  registry_[r.node] = r;
  for (auto* s : sources_) {
    if (!s->started() || cut_from_members_.count(s->node()) != 0) continue;
    s->scheduler().runAtGlobal(loop_.now() + options_.members_delay, [this, s, r] {
      if (sources_.count(s) != 0) s->deliverUpsert(r);
    });
  }
}

void FakeMeshNetwork::deleteMember(const std::string& from, const std::string& node) {
  if (cut_from_members_.count(from) != 0) return;
  removeMember(node);
}

void FakeMeshNetwork::removeMember(const std::string& node) {
  if (registry_.erase(node) == 0) return;
  for (auto* s : sources_) {
    if (!s->started() || cut_from_members_.count(s->node()) != 0) continue;
    s->scheduler().runAtGlobal(loop_.now() + options_.members_delay, [this, s, node] {
      if (sources_.count(s) != 0) s->deliverGone(node);
    });
  }
}

void FakeMeshNetwork::cutFromMembers(const std::string& node, bool cut) {
  if (cut) {
    cut_from_members_.insert(node);
    return;
  }
  cut_from_members_.erase(node);
  // Back on NATS: its watcher resyncs to the whole current state.
  for (auto* s : sources_) {
    if (s->node() != node || !s->started()) continue;
    s->republish();  // its refresh puts the record again
    resync(s);
  }
}

void FakeMeshNetwork::resync(FakeMemberSource* s) {
  if (cut_from_members_.count(s->node()) != 0) return;
  auto snapshot = registry_;
  s->scheduler().runAtGlobal(loop_.now() + options_.members_delay, [this, s, snapshot] {
    if (sources_.count(s) == 0) return;
    s->resyncTo(snapshot);
  });
}

std::unique_ptr<FakeMeshTransport> FakeMeshNetwork::transport(const std::string& node,
                                                              FakeScheduler& scheduler) {
  return std::make_unique<FakeMeshTransport>(*this, node, scheduler);
}

std::unique_ptr<FakeMemberSource> FakeMeshNetwork::members(const std::string& node,
                                                           FakeScheduler& scheduler) {
  return std::make_unique<FakeMemberSource>(*this, node, scheduler);
}

// ---- FakeMeshTransport

FakeMeshTransport::FakeMeshTransport(FakeMeshNetwork& net, std::string node, FakeScheduler& scheduler)
    : net_(net), endpoint_(std::make_unique<FakeMeshNetwork::Endpoint>()) {
  endpoint_->node = std::move(node);
  endpoint_->scheduler = &scheduler;
  net_.registerEndpoint(endpoint_.get());
}

FakeMeshTransport::~FakeMeshTransport() { net_.unregisterEndpoint(endpoint_.get()); }

Status FakeMeshTransport::listen(AcceptFn on_accept) {
  endpoint_->on_accept = std::move(on_accept);
  endpoint_->listening = true;
  return Status::ok();
}

void FakeMeshTransport::dial(const std::string& node, const std::vector<std::string>& addrs, Duration timeout,
                             DialFn done) {
  net_.dial(*endpoint_, node, addrs, timeout, std::move(done));
}

void FakeMeshTransport::stop() { endpoint_->listening = false; }

std::string FakeMeshTransport::listenAddress() const { return endpoint_->node + ":7000"; }

std::map<mesh::RefusedReason, std::uint64_t> FakeMeshTransport::refusals() const {
  return endpoint_->refusals;
}

// ---- FakeMemberSource

FakeMemberSource::FakeMemberSource(FakeMeshNetwork& net, std::string node, FakeScheduler& scheduler)
    : net_(net), node_(std::move(node)), scheduler_(scheduler) {
  net_.registerSource(this);
}

FakeMemberSource::~FakeMemberSource() { net_.unregisterSource(this); }

void FakeMemberSource::start(Events events) {
  events_ = std::move(events);
  started_ = true;
  net_.resync(this);  // a new watcher starts with the whole current state
}

void FakeMemberSource::publish(const mesh::MemberRecord& self) {
  self_ = self;
  net_.publishMember(node_, self);
}

void FakeMemberSource::republish() {
  if (self_) net_.publishMember(node_, *self_);
}

void FakeMemberSource::stop() {
  net_.deleteMember(node_, node_);
  started_ = false;
}

void FakeMemberSource::deliverUpsert(const mesh::MemberRecord& r) {
  if (!started_) return;
  known_.insert(r.node);
  if (events_.on_upsert) events_.on_upsert(r);
}

void FakeMemberSource::deliverGone(const std::string& node) {
  if (!started_) return;
  known_.erase(node);
  if (events_.on_gone) events_.on_gone(node);
}

void FakeMemberSource::resyncTo(const std::map<std::string, mesh::MemberRecord>& snapshot) {
  auto known = known_;
  for (const auto& n : known) {
    if (snapshot.count(n) == 0) deliverGone(n);
  }
  for (const auto& [n, r] : snapshot) deliverUpsert(r);
}

}  // namespace hacoord::test
