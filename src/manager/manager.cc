// Manager: wires Node, VipManager, HealthChecker, HealthService, control responders and HTTP.
#include "hacoord/manager.h"

#include <atomic>
#include <csignal>
#include <pthread.h>
#include <chrono>
#include <mutex>

#include <json/json.h>

#include "core/asio_scheduler.h"
#include "core/logging.h"
#include "core/runtime.h"
#include "health/checker.h"
#include "health/probes.h"
#include "health/health_service.h"
#include "manager/http_server.h"
#include "manager/metrics.h"
#include "nats/nats_connection.h"
#include "nats/nats_control.h"
#include "nats/nats_lease_store.h"
#include "vip/vip_manager.h"

#ifndef HACOORD_VERSION
#define HACOORD_VERSION "0.0.0"
#endif

namespace hacoord {
namespace {

std::shared_ptr<spdlog::logger> log() {
  static auto logger = moduleLogger("manager");
  return logger;
}

// One short-lived connection for a CLI call.
Result<std::unique_ptr<NatsConnection>> clientConnection(const Config& config) {
  setLogLevel(config.log_level == "info" ? "warn" : config.log_level);  // stdout is the answer
  return NatsConnection::connect(config.nats, "hacoord-cli");
}

Status controlRequest(const Config& config, const std::string& node, const std::string& verb,
                      const std::string& body) {
  if (!isValidId(node)) return invalidArgument("node id '" + node + "' is not [A-Za-z0-9_-]+");
  auto conn = clientConnection(config);
  if (!conn.isOk()) return conn.status();
  // A handover includes the old leader's onLoseLeadership hook: allow for its time limit.
  const milliseconds timeout = config.election.hook_time_limit + 2 * config.nats.request_timeout;
  auto reply = natsRequest(**conn, controlSubject(config.cluster_id, node, verb), body, timeout);
  if (!reply.isOk() && reply.status().message().rfind("no responders", 0) == 0) {
    return unavailable("node " + node + " is down: no daemon answers on " +
                       controlSubject(config.cluster_id, node, verb));
  }
  if (!reply.isOk()) return reply.status();
  return parseControlReply(*reply);
}

}  // namespace

struct Manager::Impl final : Hooks {
  Impl(Config c, std::shared_ptr<Hooks> h)
      : config(std::move(c)),
        app(h ? std::move(h) : std::make_shared<Hooks>()),
        operator_candidate(config.election.candidate),
        started_at(std::chrono::steady_clock::now()) {}

  // --- Hooks around the application's: the VIP goes on after the lease, off before release.
  Status onBecomeLeader(Epoch epoch) override {
    if (vip) {
      if (Status s = vip->acquire(epoch, node->leaseDeadline()); !s.isOk()) {
        log()->error("epoch {}: cannot take the VIP {}: {}", epoch.value(), vip->address(),
                     s.toString());
        return s;  // the node steps down: another node may be able to hold the VIP
      }
    }
    return app->onBecomeLeader(epoch);
  }
  Status onLoseLeadership(Epoch epoch, LossReason reason) override {
    Status vip_status;
    if (vip) {
      if (Status s = vip->release(epoch); !s.isOk()) {
        log()->error("epoch {}: cannot remove the VIP {}: {}", epoch.value(), vip->address(),
                     s.toString());
        vip_status = s;
      }
    }
    Status app_status = app->onLoseLeadership(epoch, reason);
    return vip_status.isOk() ? app_status : vip_status;
  }
  void onLeaderChange(std::string_view leader, Epoch epoch) override {
    app->onLeaderChange(leader, epoch);
  }
  void onLeaseRenewed(Epoch epoch, TimePoint valid_until) override {
    if (vip) {
      if (Status s = vip->extend(epoch, valid_until); !s.isOk()) {
        log()->warn("epoch {}: cannot extend the VIP lifetime: {}", epoch.value(), s.toString());
      }
    }
    app->onLeaseRenewed(epoch, valid_until);
  }

  // Candidacy = what the operator asked (join/leave) and, while not leading, local health. A
  // leader with failing checks keeps leading until they have failed for health.failAfterMs.
  void applyCandidacy(bool failed_too_long, std::function<void()> applied = {}) {
    const bool healthy = !checker || checker->healthy();
    const bool grace = node->isLeader() && !failed_too_long;  // unhealthy leader: not yet
    const bool candidate = operator_candidate.load() && (healthy || grace);
    if (failed_too_long && node->isLeader()) {
      log()->warn("health checks failing for {} ms: handing over", config.health.fail_after.count());
    }
    node->setCandidate(candidate, std::move(applied));
  }

  void serveControl() {
    for (const auto& [verb, join] : {std::pair{"join", true}, std::pair{"leave", false}}) {
      auto r = NatsResponder::subscribe(
          *connection, controlSubject(config.cluster_id, config.node_id, verb),
          [this, join = join](std::string, NatsResponder::ReplyFn reply) {
            operator_candidate = join;
            log()->info("operator: {} candidacy", join ? "join" : "leave");
            // The reply waits until the election took the change in, so that a `promote` sent
            // right after `join` finds this node a candidate.
            work.post([this, reply = std::move(reply)] {
              applyCandidacy(false, [reply] { reply(controlReply(Status::ok())); });
            });
          });
      if (r.isOk()) {
        responders.push_back(std::move(*r));
      } else {
        log()->error("cannot serve {}: {}", verb, r.status().toString());
      }
    }
  }

  NodeStatus currentStatus() const {
    NodeStatus s;
    s.node_id = config.node_id;
    s.role = std::string(roleName(node ? node->role() : Role::kStopped));
    if (node && s.role == "leader" && !node->isLeader()) s.role = "follower";  // deadline passed
    s.leader = node ? node->leader() : "";
    s.epoch = node ? node->epoch().value() : 0;
    s.uptime_ms = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() -
                                                           started_at)
                      .count();
    s.nats_connected = connection && connection->connected();
    if (vip) {
      s.vip.address = vip->address();
      auto present = vip->present();
      s.vip.held = present.isOk() && *present;
    }
    if (checker) {
      s.checks = checker->states();
      s.healthy = checker->healthy();
    }
    s.candidate = operator_candidate.load();
    s.version = HACOORD_VERSION;
    return s;
  }

  HttpResponse http(const std::string& path) const {
    const NodeStatus s = currentStatus();
    if (path == "/healthz") {
      if (!s.nats_connected) return {503, "text/plain; charset=utf-8", "not connected to NATS\n"};
      return {200, "text/plain; charset=utf-8", "ok\n"};
    }
    if (path == "/readyz") {
      // Ready: a leader is known and this node is in the state it should be in (VIP only here
      // while leading).
      const bool leading = s.role == "leader";
      if (s.leader.empty()) return {503, "text/plain; charset=utf-8", "no leader known\n"};
      if (vip && s.vip.held != leading) {
        return {503, "text/plain; charset=utf-8",
                std::string(leading ? "leading without the VIP\n" : "VIP held while not leading\n")};
      }
      return {200, "text/plain; charset=utf-8", leading ? "ready (leader)\n" : "ready (follower)\n"};
    }
    if (path == "/metrics") {
      MetricsInput in{s, node->stats(), vip ? std::optional<VipMetrics>(vip->metrics()) : std::nullopt};
      return {200, "text/plain; version=0.0.4; charset=utf-8", renderMetrics(in)};
    }
    return {404, "text/plain; charset=utf-8", "not found: try /healthz /readyz /metrics\n"};
  }

  void scheduleReconcile() {
    if (!vip) return;
    work.runAfter(config.vip.garp_refresh, [this] {
      reconcileVip();
      scheduleReconcile();
    });
  }
  void reconcileVip() {
    if (!vip) return;
    const bool leading = node->isLeader();
    if (Status s = vip->reconcile(leading, node->epoch(), node->leaseDeadline()); !s.isOk()) {
      log()->warn("VIP reconcile: {}", s.toString());
    }
  }

  Config config;
  std::shared_ptr<Hooks> app;
  std::atomic<bool> operator_candidate;
  const std::chrono::steady_clock::time_point started_at;
  AsioScheduler work;  // health reactions and VIP reconcile, off the NATS and hook threads
  Runtime runtime;
  LeaseClock lease_clock;
  std::unique_ptr<StrandScheduler> health_strand = runtime.makeStrand();
  std::unique_ptr<AsioProbeRunner> probes = std::make_unique<AsioProbeRunner>(runtime.io());
  std::unique_ptr<VipManager> vip;
  std::unique_ptr<Node> node;
  std::unique_ptr<HealthChecker> checker;
  std::unique_ptr<NatsConnection> connection;  // status, health and join/leave
  std::unique_ptr<HealthService> health_service;
  std::vector<std::unique_ptr<NatsResponder>> responders;
  std::unique_ptr<HttpServer> http_server;
  std::mutex lifecycle;
  bool started = false;
  bool stopped = false;
};

Manager::Manager(Config config, std::shared_ptr<Hooks> hooks)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(hooks))) {}

Manager::~Manager() { stop(); }

Node& Manager::node() { return *impl_->node; }
int Manager::httpPort() const { return impl_->http_server ? impl_->http_server->port() : 0; }
NodeStatus Manager::status() const { return impl_->currentStatus(); }

Status Manager::start() {
  Impl& d = *impl_;
  std::lock_guard lock(d.lifecycle);
  if (d.started) return failedPrecondition("manager already started");
  if (Status s = validateConfig(d.config); !s.isOk()) return s;
  setLogLevel(d.config.log_level);

  if (d.config.vip.enabled()) {
    VipTimings timings;
    timings.lease_ttl = d.config.election.lease_ttl;
    timings.renew_interval = d.config.election.renew_interval;
    timings.safety_margin = d.config.election.safety_margin;
    auto vip = VipManager::create(d.config.vip, timings);
    if (!vip.isOk()) return vip.status();
    d.vip = std::move(*vip);
    // A VIP left behind by a previous run (e.g. kill -9 with a long lifetime) must go before
    // this node is even a candidate: only the leader may hold it.
    if (Status s = d.vip->reconcile(false, Epoch(), TimePoint{}); !s.isOk()) return s;
  }

  // The Manager's hooks are the Node's; they call the application's.
  d.node = std::make_unique<Node>(d.config, std::shared_ptr<Hooks>(impl_.get(), [](Hooks*) {}));
  if (!d.config.health.checks.empty()) {
    d.checker = std::make_unique<HealthChecker>(d.config.health.checks, d.config.health.fail_after,
                                                d.lease_clock, *d.health_strand, *d.probes);
    d.checker->setOnChange([&d](bool healthy) {
      log()->info("local checks now {}", healthy ? "healthy" : "failing");
      d.work.post([&d] { d.applyCandidacy(false); });
    });
    d.checker->setOnFailedTooLong([&d] { d.work.post([&d] { d.applyCandidacy(true); }); });
  }
  if (Status s = d.node->start(); !s.isOk()) return s;
  if (d.checker) d.health_strand->runSync([&d] { d.checker->start(); });

  auto conn = NatsConnection::connect(d.config.nats, "hacoord-" + d.config.node_id + "-control");
  if (!conn.isOk()) return conn.status();
  d.connection = std::move(*conn);
  auto service = HealthService::start(*d.connection, d.config.cluster_id, d.config.node_id,
                                      [&d] { return d.currentStatus(); });
  if (!service.isOk()) return service.status();
  d.health_service = std::move(*service);
  d.serveControl();

  if (!d.config.http_listen.empty()) {
    const HttpServerOptions http_options{d.config.http_listen, d.config.http_max_connections,
                                         d.config.http_request_timeout};
    auto http = HttpServer::start(d.runtime.io(), http_options, [&d](const std::string& path) {
      return d.http(path);
    });
    if (!http.isOk()) return http.status();
    d.http_server = std::move(*http);
  }
  d.scheduleReconcile();
  d.started = true;
  return Status::ok();
}

void Manager::stop() {
  Impl& d = *impl_;
  std::lock_guard lock(d.lifecycle);
  if (d.stopped) return;
  d.stopped = true;
  if (d.http_server) d.http_server->stop();
  d.http_server.reset();
  d.responders.clear();
  d.health_service.reset();
  if (d.checker) d.health_strand->runSync([&d] { d.checker->stop(); });
  d.health_strand->shutdown();
  d.work.stop();
  if (d.node) d.node->stop();  // planned handover: the VIP goes off in onLoseLeadership
  if (d.vip) {
    if (Status s = d.vip->reconcile(false, Epoch(), TimePoint{}); !s.isOk()) {
      log()->warn("VIP cleanup at stop: {}", s.toString());
    }
  }
  d.connection.reset();
}

Status Manager::reload(const Config& config) {
  Impl& d = *impl_;
  if (!setLogLevel(config.log_level)) return invalidArgument("log.level " + config.log_level);
  if (d.checker) {
    d.health_strand->runSync(
        [&] { d.checker->replaceChecks(config.health.checks, config.health.fail_after); });
  } else if (!config.health.checks.empty()) {
    log()->warn("SIGHUP: health checks were added; they start at the next restart");
  }
  log()->info("reloaded: log level {}, {} health check(s)", config.log_level,
              config.health.checks.size());
  return Status::ok();
}

Status Manager::runDaemon(const std::string& config_path) {
  // Blocked before start() creates threads, so that they inherit the mask and only sigwait()
  // below receives these signals.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  if (Status s = start(); !s.isOk()) return s;
  for (;;) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGHUP) {
      auto reloaded = loadConfigFile(config_path);
      if (!reloaded.isOk()) {
        log()->error("SIGHUP: keeping the running config: {}", reloaded.status().message());
      } else if (Status s = reload(*reloaded); !s.isOk()) {
        log()->error("SIGHUP: {}", s.toString());
      }
      continue;
    }
    log()->info("signal {}: stopping (planned handover if leader)", sig);
    stop();
    return Status::ok();
  }
}

Result<std::vector<NodeStatus>> Manager::clusterStatus(const Config& config, milliseconds window) {
  auto conn = clientConnection(config);
  if (!conn.isOk()) return conn.status();
  return gatherStatus(**conn, config.cluster_id, window);
}

Result<NodeStatus> Manager::health(const Config& config, const std::string& node,
                                   milliseconds timeout) {
  auto conn = clientConnection(config);
  if (!conn.isOk()) return conn.status();
  return queryNode(**conn, config.cluster_id, node, timeout);
}

Status Manager::promote(const Config& config, const std::string& node) {
  return controlRequest(config, node, "promote", "");
}

Status Manager::demote(const Config& config, const std::string& node) {
  std::string target = node;
  if (target.empty()) {
    // The leader is the lease's holder: one read, no waiting for every node to answer.
    auto conn = clientConnection(config);
    if (!conn.isOk()) return conn.status();
    auto lease = readLeaseOnce(**conn, config.bucketName());
    if (!lease.isOk()) return lease.status();
    target = lease->entry.record.holder;
    if (target.empty()) return failedPrecondition("no node holds the lease: nothing to demote");
  }
  return controlRequest(config, target, "stepdown", "");
}

Status Manager::join(const Config& config, const std::string& node) {
  return controlRequest(config, node, "join", "");
}

Status Manager::leave(const Config& config, const std::string& node) {
  return controlRequest(config, node, "leave", "");
}

}  // namespace hacoord
