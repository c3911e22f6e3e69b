// Node: wires the Elector to NATS (lease store, control subjects), the hook runner and a snapshot.
#include "hacoord/node.h"

#include <future>
#include <mutex>
#include <random>

#include <json/json.h>

#include "core/asio_scheduler.h"
#include "core/hook_runner.h"
#include "core/logging.h"
#include "core/work_queue.h"
#include "election/elector.h"
#include "nats/nats_connection.h"
#include "nats/nats_control.h"
#include "nats/nats_lease_store.h"
#include "node/state_file.h"

namespace hacoord {
namespace {

std::shared_ptr<spdlog::logger> log() {
  static auto logger = moduleLogger("node");
  return logger;
}

std::string randomIncarnation() {
  std::random_device rd;
  std::uniform_int_distribution<std::uint64_t> dist;
  const std::uint64_t v = dist(rd);
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string successorFromRequest(const std::string& body) {
  Json::Value v;
  Json::CharReaderBuilder b;
  std::string errors;
  std::unique_ptr<Json::CharReader> r(b.newCharReader());
  if (body.empty() || !r->parse(body.data(), body.data() + body.size(), &v, &errors) ||
      !v.isObject() || !v["successor"].isString()) {
    return "";
  }
  return v["successor"].asString();
}

}  // namespace

struct Node::Impl final : ElectorListener {
  Impl(Config c, std::shared_ptr<Hooks> h)
      : config(std::move(c)),
        hooks(h ? std::move(h) : std::make_shared<Hooks>()),
        incarnation(randomIncarnation()),
        runner(scheduler, config.election.hook_time_limit) {
    snapshot.candidate = config.election.candidate;
  }

  // --- ElectorListener: runs on the scheduler; hooks go to the runner thread, in order.
  void onBecomeLeader(Epoch epoch, TimePoint) override {
    {
      std::lock_guard lock(mutex);
      ++stats.became_leader;
      // The hook (on the runner thread) reads leaseDeadline() from this snapshot; the elector
      // publishes it only after this call returns, so without this the hook could see the old
      // follower snapshot (deadline zero) and fail with "the lease has already ended".
      snapshot = elector->snapshot();
    }
    // The verdict is posted by the hook's own thread when it returns, even after an overrun:
    // a hook that fails late still makes the node step down.
    runner.run("onBecomeLeader", [this, epoch] {
      Status result = hooks->onBecomeLeader(epoch);
      if (result.isOk()) return;
      scheduler.post([this, epoch, result] {
        if (!elector || elector->snapshot().epoch != epoch) return;  // that leadership is over
        log()->error("node {} onBecomeLeader(epoch {}) failed: {}; stepping down",
                     config.node_id, epoch.value(), result.toString());
        elector->stepDown("", [](Status) {}, LossReason::kHookFailed);
      });
    });
  }
  void onLoseLeadership(Epoch epoch, LossReason reason,
                        std::function<void(bool)> released) override {
    {
      std::lock_guard lock(mutex);
      ++stats.lost_leadership;
    }
    runner.run("onLoseLeadership", [this, epoch, reason] { (void)hooks->onLoseLeadership(epoch, reason); },
               std::move(released));
  }
  void onLeaderChange(const std::string& leader, Epoch epoch) override {
    runner.run("onLeaderChange", [this, leader, epoch] { hooks->onLeaderChange(leader, epoch); });
  }
  void onSnapshot(const ElectorSnapshot& s) override {
    bool renewed;
    {
      std::lock_guard lock(mutex);
      renewed = s.role == Role::kLeader &&
                (snapshot.role != Role::kLeader || s.valid_until > snapshot.valid_until);
      snapshot = s;
    }
    if (renewed) {
      runner.run("onLeaseRenewed", [this, epoch = s.epoch, until = s.valid_until] {
        hooks->onLeaseRenewed(epoch, until);
      });
    }
  }
  void onRenewed(Epoch, TimePoint, Duration latency) override {
    const double ms = std::chrono::duration<double, std::milli>(latency).count();
    std::size_t bucket = 0;
    while (bucket < std::size(NodeStats::kRenewLatencyBoundsMs) &&
           ms > NodeStats::kRenewLatencyBoundsMs[bucket]) {
      ++bucket;
    }
    std::lock_guard lock(mutex);
    ++stats.renewals;
    stats.renew_latency_sum_ms += ms;
    ++stats.renew_latency_buckets[bucket];
  }

  ElectorSnapshot currentSnapshot() const {
    std::lock_guard lock(mutex);
    return snapshot;
  }

  // Runs `op(done)` on the scheduler and waits for `done(Status)`, at most `limit`.
  Status callOnScheduler(std::function<void(std::function<void(Status)>)> op, Duration limit) {
    auto promise = std::make_shared<std::promise<Status>>();
    auto future = promise->get_future();
    scheduler.post([op = std::move(op), promise] {
      op([promise](Status s) { promise->set_value(std::move(s)); });
    });
    if (future.wait_for(limit) != std::future_status::ready) {
      return deadlineExceeded("no answer within " + std::to_string(toMillis(limit)) + " ms");
    }
    return future.get();
  }

  Duration handoverLimit() const {
    return config.election.hook_time_limit + 2 * config.nats.request_timeout;
  }

  void serveControl() {
    auto stepdown_responder = NatsResponder::subscribe(
        *connection, controlSubject(config.cluster_id, config.node_id, "stepdown"),
        [this](std::string body, std::function<void(std::string)> reply) {
          const std::string successor = successorFromRequest(body);
          scheduler.post([this, successor, reply = std::move(reply)] {
            if (!elector) return reply(controlReply(unavailable("node is stopping")));
            elector->stepDown(successor, [reply](Status s) { reply(controlReply(s)); });
          });
        });
    auto promote_responder = NatsResponder::subscribe(
        *connection, controlSubject(config.cluster_id, config.node_id, "promote"),
        [this](std::string, std::function<void(std::string)> reply) {
          // promote() blocks on a request to the leader: not on NATS's delivery thread.
          control_worker.push([this, reply = std::move(reply)] { reply(controlReply(promote())); });
        });
    for (auto* r : {&stepdown_responder, &promote_responder}) {
      if (r->isOk()) {
        responders.push_back(std::move(r->value()));
      } else {
        log()->error("node {} cannot serve control requests: {}", config.node_id,
                     r->status().toString());
      }
    }
  }

  Status promote() {
    const ElectorSnapshot s = currentSnapshot();
    if (s.role == Role::kLeader) return Status::ok();
    if (s.leader.empty()) {
      return failedPrecondition("no live leader to hand over; the lease goes to a candidate when "
                                "it expires");
    }
    if (!s.candidate) return failedPrecondition("node " + config.node_id + " is not a candidate");
    Json::Value req(Json::objectValue);
    req["successor"] = config.node_id;
    Json::StreamWriterBuilder w;
    w["indentation"] = "";
    auto reply = natsRequest(*connection, controlSubject(config.cluster_id, s.leader, "stepdown"),
                             Json::writeString(w, req),
                             std::chrono::duration_cast<milliseconds>(handoverLimit()));
    if (!reply.isOk()) return reply.status();
    return parseControlReply(*reply);
  }

  Config config;
  std::shared_ptr<Hooks> hooks;
  const std::string incarnation;
  LeaseClock clock;
  AsioScheduler scheduler;
  HookRunner runner;
  WorkQueue control_worker;
  std::unique_ptr<NatsConnection> connection;
  std::unique_ptr<NatsLeaseStore> store;
  std::unique_ptr<StateFile> floor;
  std::unique_ptr<Elector> elector;
  std::vector<std::unique_ptr<NatsResponder>> responders;
  bool started = false;
  bool stopped = false;

  mutable std::mutex mutex;  // guards snapshot and stats: read from application threads
  ElectorSnapshot snapshot;
  NodeStats stats;
};

Node::Node(Config config, std::shared_ptr<Hooks> hooks)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(hooks))) {}

Node::~Node() { stop(); }

Status Node::start() {
  Impl& d = *impl_;
  if (d.started) return failedPrecondition("node already started");
  if (Status s = validateConfig(d.config); !s.isOk()) return s;
  ConnectionEvents events;
  events.onReconnected = [&d] {
    log()->info("node {} reconnected to NATS", d.config.node_id);
    if (d.store) d.store->restartWatch();
  };
  events.onDisconnected = [&d] { log()->warn("node {} disconnected from NATS", d.config.node_id); };
  auto connection = NatsConnection::connect(d.config.nats, "hacoord-" + d.config.node_id, events);
  if (!connection.isOk()) return connection.status();
  d.connection = std::move(*connection);
  auto store = NatsLeaseStore::open(*d.connection, d.config.bucketName(),
                                    d.config.election.bucket_replicas, d.scheduler);
  if (!store.isOk()) {
    d.connection.reset();
    return store.status();
  }
  d.store = std::move(*store);

  ElectorConfig ec;
  ec.node_id = d.config.node_id;
  ec.incarnation = d.incarnation;
  ec.lease_ttl = d.config.election.lease_ttl;
  ec.renew_interval = d.config.election.renew_interval;
  ec.cooldown = d.config.election.cooldown;
  ec.safety_margin = d.config.election.safety_margin;
  ec.candidate = d.config.election.candidate;
  ec.jitter_seed = std::hash<std::string>{}(d.incarnation);
  auto floor = StateFile::open(d.config.state_dir, d.config.cluster_id, d.config.node_id);
  if (!floor.isOk()) {
    d.store.reset();
    d.connection.reset();
    return floor.status();
  }
  d.floor = std::move(*floor);
  d.elector = std::make_unique<Elector>(ec, d.clock, d.scheduler, *d.store, *d.floor, nullptr, d);
  d.scheduler.runSync([&d] { d.elector->start(); });
  d.serveControl();
  d.started = true;
  log()->info("node {} started in cluster {} (incarnation {})", d.config.node_id,
              d.config.cluster_id, d.incarnation);
  return Status::ok();
}

void Node::stop() {
  Impl& d = *impl_;
  if (!d.started || d.stopped) return;
  d.stopped = true;
  d.responders.clear();
  d.control_worker.shutdown();
  const Status s = d.callOnScheduler(
      [&d](std::function<void(Status)> done) { d.elector->stop([done] { done(Status::ok()); }); },
      d.handoverLimit());
  if (!s.isOk()) log()->warn("node {} stop: handover incomplete: {}", d.config.node_id, s.toString());
  d.store->close();
  d.runner.shutdown();
  d.scheduler.stop();
  d.elector.reset();
  d.store.reset();
  d.connection.reset();
  std::lock_guard lock(d.mutex);
  d.snapshot.role = Role::kStopped;
  d.snapshot.valid_until = TimePoint{};
  log()->info("node {} stopped", d.config.node_id);
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
  return d.callOnScheduler(
      [&d](std::function<void(Status)> done) { d.elector->stepDown("", std::move(done)); },
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
    d.config.election.candidate = candidate;
    if (applied) applied();
    return;
  }
  d.scheduler.post([&d, candidate, applied = std::move(applied)] {
    d.elector->setCandidate(candidate);
    if (applied) applied();
  });
}

}  // namespace hacoord
