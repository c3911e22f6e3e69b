// Node: the elector on its strand, the NATS lease store, the state file, the leadership bus
// (internal observers, then the application's hooks on hc-hooks) and the control verbs.
//
// Threading: the elector, the bus and the candidacy inputs live on one strand of the runtime's
// io_context (`strand`); blocking calls (the promote request, gathering the other nodes' epoch
// floors) run on a blocking lane. Application
// threads only read a snapshot under `mutex`, or post to the strand and wait.
#include "hacoord/node.h"

#include <future>
#include <mutex>
#include <random>

#include "core/hook_runner.h"
#include "core/logging.h"
#include "core/runtime.h"
#include "election/elector.h"
#include "nats/nats_connection.h"
#include "nats/nats_control.h"
#include "nats/nats_floor_exchange.h"
#include "nats/nats_lease_store.h"
#include "node/control_codec.h"
#include "node/control_service.h"
#include "node/hooks_observer.h"
#include "node/leadership.h"
#include "node/state_file.h"

namespace hacoord {
namespace {

constinit const ModuleLog kLog("node");

std::string randomIncarnation() {
  std::random_device rd;
  std::uniform_int_distribution<std::uint64_t> dist;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(dist(rd)));
  return buf;
}

}  // namespace

struct Node::Impl final : ElectorListener {
  Impl(Config c, std::shared_ptr<Hooks> h, std::shared_ptr<Runtime> rt,
       std::vector<LeadershipObserver*> internal)
      : config(std::move(c)),
        hooks(h ? std::move(h) : std::make_shared<Hooks>()),
        runtime(rt ? std::move(rt) : std::make_shared<Runtime>()),
        observers(std::move(internal)),
        incarnation(randomIncarnation()),
        operator_candidate(config.election.candidate) {
    snapshot.candidate = config.election.candidate;
  }

  // --- ElectorListener (on the strand): the bus tells the observers; counters and snapshot here.
  void onBecomeLeader(Epoch epoch, TimePoint valid_until) override {
    {
      std::lock_guard lock(mutex);
      ++stats.became_leader;
    }
    bus->gained(epoch, valid_until);
  }
  void onLoseLeadership(Epoch epoch, LossReason reason, std::function<void(bool)> released) override {
    {
      std::lock_guard lock(mutex);
      ++stats.lost_leadership;
    }
    bus->lost(epoch, reason, std::move(released));
    // An unhealthy node kept candidacy only while it led: not any more.
    if (!healthy) strand->post([this] { applyCandidacy(); });
  }
  void onLeaderChange(const std::string& leader, Epoch epoch) override { bus->leaderChanged(leader, epoch); }
  void onSnapshot(const ElectorSnapshot& s) override {
    std::lock_guard lock(mutex);
    snapshot = s;
  }
  void onRenewed(Epoch epoch, TimePoint valid_until, Duration latency) override {
    const double ms = std::chrono::duration<double, std::milli>(latency).count();
    std::size_t bucket = 0;
    while (bucket < std::size(NodeStats::kRenewLatencyBoundsMs) &&
           ms > NodeStats::kRenewLatencyBoundsMs[bucket]) {
      ++bucket;
    }
    {
      std::lock_guard lock(mutex);
      ++stats.renewals;
      stats.renew_latency_sum_ms += ms;
      ++stats.renew_latency_buckets[bucket];
    }
    bus->renewed(epoch, valid_until);
  }

  ElectorSnapshot currentSnapshot() const {
    std::lock_guard lock(mutex);
    return snapshot;
  }

  // On the strand: the election campaigns only while every input says so. An unhealthy leader
  // keeps its lease until its checks have failed for failAfterMs.
  void applyCandidacy(std::function<void()> applied = {}) {
    const bool leading = elector && elector->isLeader();
    const bool health_ok = healthy || (leading && !health_failed_too_long);
    const bool candidate = operator_candidate && health_ok && !hooks_overrunning;
    if (elector) elector->setCandidate(candidate);
    if (applied) applied();
  }

  // On the strand: a hook passed its time limit (true) or the last overrunning one returned.
  void onHooksOverrun(bool overrunning) {
    {
      std::lock_guard lock(mutex);
      stats.hooks_overrunning = overrunning;
      if (overrunning) ++stats.hook_overruns;
    }
    hooks_overrunning = overrunning;
    kLog->warn("node {} {} candidacy: {}", config.node_id, overrunning ? "leaves" : "may rejoin",
               overrunning ? "a hook is past its time limit (a leader hands over)"
                           : "no hook is past its time limit any more");
    applyCandidacy();
  }

  // Runs `op(done)` on the strand and waits for `done(Status)`, at most `limit`.
  Status callOnStrand(std::function<void(std::function<void(Status)>)> op, Duration limit) {
    auto promise = std::make_shared<std::promise<Status>>();
    auto future = promise->get_future();
    strand->post(
        [op = std::move(op), promise] { op([promise](Status s) { promise->set_value(std::move(s)); }); });
    if (future.wait_for(limit) != std::future_status::ready) {
      return deadlineExceeded("no answer within " + std::to_string(toMillis(limit)) + " ms");
    }
    return future.get();
  }

  Duration handoverLimit() const { return config.election.hook_time_limit + 2 * config.nats.request_timeout; }

  // Asks the live leader (over NATS) to hand over to this node. Blocks: never on the strand.
  // `requester`: who asked (logged by the leader); "" when the application called Node::promote().
  Status promote(const std::string& requester = "") {
    const ElectorSnapshot s = currentSnapshot();
    if (s.role == Role::kLeader) return Status::ok();
    if (s.leader.empty()) {
      return failedPrecondition(
          "no live leader to hand over; the lease goes to a candidate when "
          "it expires");
    }
    if (!s.candidate) return failedPrecondition("node " + config.node_id + " is not a candidate");
    ControlRequest request;
    request.successor = config.node_id;
    request.requester =
        requester.empty() ? "node:" + config.node_id : requester + " via node:" + config.node_id;
    auto reply =
        natsRequest(*connection, controlSubject(config.cluster_id, s.leader, std::string(kVerbStepDown)),
                    encodeControlRequest(request), std::chrono::duration_cast<milliseconds>(handoverLimit()));
    if (!reply.isOk()) return reply.status();
    return decodeControlReply(*reply);
  }

  Status startControl() {
    ControlActions actions;
    actions.step_down = [this](const std::string& successor, std::function<void(Status)> done) {
      if (!elector) return done(unavailable("node is stopping"));
      elector->stepDown(successor, std::move(done));
    };
    actions.promote = [this](const std::string& requester) { return promote(requester); };
    actions.handed_over_at = [this] { return elector ? elector->snapshot().handed_over_at : TimePoint{}; };
    actions.set_candidate = [this](bool join, std::function<void()> applied) {
      operator_candidate = join;
      kLog->info("node {}: operator says {} candidacy", config.node_id, join ? "join" : "leave");
      applyCandidacy(std::move(applied));
    };
    auto service =
        ControlService::start(*connection, config.cluster_id, config.node_id, config.election.cooldown, clock,
                              *strand, *blocking, std::move(actions));
    if (!service.isOk()) return service.status();
    control = std::move(*service);
    return Status::ok();
  }

  Config config;
  std::shared_ptr<Hooks> hooks;
  std::shared_ptr<Runtime> runtime;
  std::vector<LeadershipObserver*> observers;  // internal ones; the hooks come last
  const std::string incarnation;
  LeaseClock clock;
  std::unique_ptr<StrandScheduler> strand = runtime->makeStrand();
  std::unique_ptr<StrandScheduler> blocking = runtime->makeBlockingLane();
  std::unique_ptr<HookRunner> runner;
  std::unique_ptr<HooksObserver> hooks_observer;
  std::unique_ptr<LeadershipBus> bus;
  std::unique_ptr<NatsConnection> connection;
  std::unique_ptr<NatsLeaseStore> store;
  // What the connection's reconnected callback (nats.c's thread) pokes: cleared before `store` is
  // destroyed, so a reconnect during stop never reaches a store that is gone.
  std::mutex reconnect_mutex;
  NatsLeaseStore* reconnect_store = nullptr;
  void dropStore() {
    {
      std::lock_guard lock(reconnect_mutex);
      reconnect_store = nullptr;
    }
    store.reset();
  }
  std::unique_ptr<StateFile> floor;
  // The floor the elector raises, readable by the floor responder from nats.c's thread.
  std::unique_ptr<PublishedEpochFloor> published_floor;
  // Answers other nodes' floor requests; gathers theirs before a campaign on a key with no record.
  std::unique_ptr<NatsFloorExchange> exchange;
  std::unique_ptr<Elector> elector;
  std::unique_ptr<ControlService> control;
  bool started = false;
  bool stopped = false;

  // Candidacy inputs, on the strand.
  bool operator_candidate;
  bool healthy = true;
  bool health_failed_too_long = false;
  bool hooks_overrunning = false;

  mutable std::mutex mutex;  // guards snapshot and stats: read from application threads
  ElectorSnapshot snapshot;
  NodeStats stats;
};

Node::Node(Config config, std::shared_ptr<Hooks> hooks)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(hooks), nullptr,
                                   std::vector<LeadershipObserver*>{})) {}

Node::Node(Config config, std::shared_ptr<Hooks> hooks, std::shared_ptr<Runtime> runtime,
           std::vector<LeadershipObserver*> observers)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(hooks), std::move(runtime),
                                   std::move(observers))) {}

Node::~Node() { stop(); }

Status Node::start() {
  Impl& d = *impl_;
  if (d.started) return failedPrecondition("node already started");
  if (Status s = validateConfig(d.config); !s.isOk()) return s;
  // The state file first: a node that cannot keep its epoch floor must not campaign at all.
  auto floor = StateFile::open(d.config.state_dir, d.config.cluster_id, d.config.node_id);
  if (!floor.isOk()) return floor.status();
  d.floor = std::move(*floor);
  d.published_floor = std::make_unique<PublishedEpochFloor>(*d.floor);

  ConnectionEvents events;
  events.onReconnected = [&d] {
    kLog->info("node {} reconnected to NATS", d.config.node_id);
    std::lock_guard lock(d.reconnect_mutex);
    if (d.reconnect_store != nullptr) d.reconnect_store->restartWatch();
  };
  events.onDisconnected = [&d] { kLog->warn("node {} disconnected from NATS", d.config.node_id); };
  auto connection = NatsConnection::connect(d.config.nats, "hacoord-" + d.config.node_id, events);
  if (!connection.isOk()) return connection.status();
  d.connection = std::move(*connection);
  auto store = NatsLeaseStore::open(*d.connection, d.config.bucketName(), d.config.election.bucket_replicas,
                                    *d.strand);
  if (!store.isOk()) {
    d.connection.reset();
    return store.status();
  }
  d.store = std::move(*store);
  {
    std::lock_guard lock(d.reconnect_mutex);
    d.reconnect_store = d.store.get();
  }
  // Before the elector starts: a node that campaigns must already tell others its floor.
  auto exchange = NatsFloorExchange::start(*d.connection, d.config.cluster_id, *d.published_floor, *d.strand,
                                           *d.blocking);
  if (!exchange.isOk()) {
    d.dropStore();
    d.connection.reset();
    return exchange.status();
  }
  d.exchange = std::move(*exchange);

  d.runner = std::make_unique<HookRunner>(*d.strand, d.config.election.hook_time_limit,
                                          [&d](bool overrunning) { d.onHooksOverrun(overrunning); });
  d.hooks_observer = std::make_unique<HooksObserver>(d.hooks, *d.runner);
  d.bus = std::make_unique<LeadershipBus>(*d.strand);
  for (LeadershipObserver* o : d.observers) d.bus->add(*o);
  d.bus->add(*d.hooks_observer);
  d.bus->setStepDown([&d](Epoch epoch, Status why) {
    if (!d.elector || d.elector->snapshot().epoch != epoch || !d.elector->isLeader()) return;
    kLog->error("node {} steps down from epoch {}: {}", d.config.node_id, epoch.value(), why.toString());
    d.elector->stepDown(
        "", [](Status) {}, LossReason::kHookFailed);
  });

  ElectorConfig ec;
  ec.node_id = d.config.node_id;
  ec.incarnation = d.incarnation;
  ec.lease_ttl = d.config.election.lease_ttl;
  ec.renew_interval = d.config.election.renew_interval;
  ec.cooldown = d.config.election.cooldown;
  ec.safety_margin = d.config.election.safety_margin;
  ec.candidate = d.operator_candidate && d.healthy;
  ec.jitter_seed = std::hash<std::string>{}(d.incarnation);
  d.elector =
      std::make_unique<Elector>(ec, d.clock, *d.strand, *d.store, *d.published_floor, d.exchange.get(), d);
  d.strand->runSync([&d] { d.elector->start(); });
  if (Status s = d.startControl(); !s.isOk()) {
    kLog->error("node {} cannot serve control requests: {}", d.config.node_id, s.toString());
  }
  d.started = true;
  kLog->info("node {} started in cluster {} (incarnation {}, state file {})", d.config.node_id,
             d.config.cluster_id, d.incarnation, d.floor->path());
  return Status::ok();
}

void Node::stop() {
  Impl& d = *impl_;
  if (!d.started || d.stopped) return;
  d.stopped = true;
  d.control.reset();  // no new requests; waits for a handler running now
  const Status s = d.callOnStrand(
      [&d](std::function<void(Status)> done) { d.elector->stop([done] { done(Status::ok()); }); },
      d.handoverLimit());
  if (!s.isOk()) kLog->warn("node {} stop: handover incomplete: {}", d.config.node_id, s.toString());
  d.store->close();
  d.runner->shutdown();  // queued hooks are dropped; a running one is waited for
  d.blocking->shutdown();
  d.strand->shutdown();  // nothing of the elector, the bus or the control runs after this
  d.elector.reset();
  d.bus.reset();
  d.exchange.reset();  // after the lanes: no gather runs; waits for a reply in progress
  d.dropStore();
  d.connection.reset();
  std::lock_guard lock(d.mutex);
  d.snapshot.role = Role::kStopped;
  d.snapshot.valid_until = TimePoint{};
  kLog->info("node {} stopped", d.config.node_id);
}

Role Node::role() const { return impl_->currentSnapshot().role; }

bool Node::isLeader() const {
  const ElectorSnapshot s = impl_->currentSnapshot();
  return s.role == Role::kLeader && impl_->clock.now() < s.valid_until;
}

TimePoint Node::leaseDeadline() const {
  const ElectorSnapshot s = impl_->currentSnapshot();
  return s.role == Role::kLeader ? s.valid_until : TimePoint{};
}

NodeStats Node::stats() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->stats;
}

std::string Node::leader() const { return impl_->currentSnapshot().leader; }
Epoch Node::epoch() const { return impl_->currentSnapshot().epoch; }
const std::string& Node::nodeId() const { return impl_->config.node_id; }
const std::string& Node::incarnation() const { return impl_->incarnation; }

Status Node::stepDown() {
  Impl& d = *impl_;
  if (!d.started || d.stopped) return failedPrecondition("node is not running");
  return d.callOnStrand([&d](std::function<void(Status)> done) { d.elector->stepDown("", std::move(done)); },
                        d.handoverLimit());
}

Status Node::promote() {
  Impl& d = *impl_;
  if (!d.started || d.stopped) return failedPrecondition("node is not running");
  return d.promote();
}

void Node::setCandidate(bool candidate, std::function<void()> applied) {
  Impl& d = *impl_;
  if (!d.started || d.stopped) {
    d.operator_candidate = candidate;
    d.config.election.candidate = candidate;
    if (applied) applied();
    return;
  }
  d.strand->post([&d, candidate, applied = std::move(applied)]() mutable {
    d.operator_candidate = candidate;
    d.applyCandidacy(std::move(applied));
  });
}

void Node::setHealth(bool healthy, bool failed_too_long) {
  Impl& d = *impl_;
  if (!d.started || d.stopped) {
    d.healthy = healthy;
    d.health_failed_too_long = failed_too_long;
    return;
  }
  d.strand->post([&d, healthy, failed_too_long] {
    if (failed_too_long && !d.health_failed_too_long && d.elector && d.elector->isLeader()) {
      kLog->warn("node {}: health checks failing for {} ms: handing over", d.config.node_id,
                 d.config.health.fail_after.count());
    }
    d.healthy = healthy;
    d.health_failed_too_long = failed_too_long;
    d.applyCandidacy();
  });
}

bool Node::candidate() const { return impl_->currentSnapshot().candidate; }

}  // namespace hacoord
