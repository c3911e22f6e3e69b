// Manager: the HA daemon on one runtime: Node (election, hooks, control), the VIP on its own strand,
// health checks, the status responders and the HTTP listener; and the CLI's client calls.
//
// Threading: one Runtime (hc-io, hc-block) for everything; the Node's strand runs the elector and
// the leadership bus; the VIP runs on a blocking lane of its own (netlink and the optional
// duplicate probe are blocking calls), told of leadership by the bus before the application's
// hooks; the health checker runs on a strand; HTTP on hc-io. The threads are listed in
// src/core/runtime.h.
#include "hacoord/manager.h"

#include <pwd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <mutex>
#include <pthread.h>

#include "core/logging.h"
#include "core/runtime.h"
#include "health/checker.h"
#include "health/health_service.h"
#include "health/probes.h"
#include "hacoord/mesh.h"
#include "manager/http_server.h"
#include "manager/metrics.h"
#include "manager/vip_observer.h"
#include "nats/nats_connection.h"
#include "nats/nats_control.h"
#include "nats/nats_lease_store.h"
#include "node/control_codec.h"
#include "vip/vip_manager.h"

#ifndef HACOORD_VERSION
#define HACOORD_VERSION "0.0.0"
#endif

namespace hacoord {
namespace {

constinit const ModuleLog kLog("manager");

// One short-lived connection for a CLI call.
Result<std::unique_ptr<NatsConnection>> clientConnection(const Config& config) {
  setLogLevel(config.log_level == "info" ? "warn" : config.log_level);  // stdout is the answer
  return NatsConnection::connect(config.nats, "hacoord-cli");
}

std::string defaultRequester() {
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  const passwd* pw = ::getpwuid(::geteuid());
  std::string who =
      std::string("cli:") + (pw != nullptr ? pw->pw_name : "uid" + std::to_string(::geteuid())) + "@" + host;
  return who.substr(0, 128);
}

Status controlRequest(NatsConnection& conn, const Config& config, const std::string& node,
                      std::string_view verb, ControlRequest request) {
  if (!isValidId(node)) return invalidArgument("node id '" + node + "' is not [A-Za-z0-9_-]+");
  if (request.requester.empty()) request.requester = defaultRequester();
  // A handover includes the old leader's onLoseLeadership hook: allow for its time limit.
  const milliseconds timeout = config.election.hook_time_limit + 2 * config.nats.request_timeout;
  const std::string subject = controlSubject(config.cluster_id, node, std::string(verb));
  auto reply = natsRequest(conn, subject, encodeControlRequest(request), timeout);
  if (!reply.isOk()) {
    if (reply.status().code() == StatusCode::kNotFound) {
      return unavailable("node " + node + " is down: no daemon answers on " + subject);
    }
    return reply.status();
  }
  return decodeControlReply(*reply);
}

Status controlRequest(const Config& config, const std::string& node, std::string_view verb,
                      ControlRequest request) {
  auto conn = clientConnection(config);
  if (!conn.isOk()) return conn.status();
  return controlRequest(**conn, config, node, verb, std::move(request));
}

// The mesh's view of one peer, as the status JSON carries it.
PeerStatus toPeerStatus(const mesh::PeerInfo& p) {
  PeerStatus s;
  s.id = p.id;
  s.state = std::string(mesh::peerStateName(p.state));
  s.reason = p.reason == mesh::DeadReason::kNone ? "" : std::string(mesh::deadReasonName(p.reason));
  s.division = p.division;
  s.type = p.type;
  s.incarnation = p.incarnation;
  s.rtt_ms = std::chrono::duration<double, std::milli>(p.rtt_ewma).count();
  s.rtt_p99_ms = std::chrono::duration<double, std::milli>(p.rtt_p99).count();
  s.address = p.address;
  return s;
}

// The lease's holder, from one read (no waiting for every node to answer).
Result<std::string> leaseHolder(NatsConnection& conn, const Config& config) {
  auto lease = readLeaseOnce(conn, config.bucketName());
  if (!lease.isOk()) return lease.status();
  if (!lease->entry.hasRecord() || lease->entry.record.vacant()) {
    return failedPrecondition("no node holds the lease");
  }
  return lease->entry.record.holder;
}

}  // namespace

struct Manager::Impl {
  Impl(Config c, std::shared_ptr<Hooks> h)
      : config(std::move(c)),
        app(h ? std::move(h) : std::make_shared<Hooks>()),
        started_at(std::chrono::steady_clock::now()) {}

  // Health verdicts, on the health strand: the node decides candidacy from them.
  void onHealth(bool healthy, bool failed_too_long) {
    if (!failed_too_long) kLog->info("local checks now {}", healthy ? "healthy" : "failing");
    if (node) node->setHealth(healthy, failed_too_long);
  }

  NodeStatus currentStatus() const {
    NodeStatus s;
    s.node_id = config.node_id;
    s.role = std::string(roleName(node ? node->role() : Role::kStopped));
    if (node && s.role == "leader" && !node->isLeader()) s.role = "follower";  // deadline passed
    s.leader = node ? node->leader() : "";
    s.epoch = node ? node->epoch().value() : 0;
    s.uptime_ms =
        std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - started_at).count();
    s.nats_connected = connection && connection->connected();
    if (vip) {
      s.vip.address = vip->address();
      // Never a netlink dump here: this runs on hc-io (HTTP) and on nats.c's thread (status).
      s.vip.held = vip->lastSeenPresent();
    }
    if (checker) {
      s.checks = checker->states();
      s.healthy = checker->healthy();
    }
    s.candidate = node && node->candidate();
    s.hooks_overrunning = node && node->stats().hooks_overrunning;
    s.version = HACOORD_VERSION;
    if (Mesh* m = mesh_source.load(); m != nullptr) {
      for (const mesh::PeerInfo& p : m->peers()) s.peers.push_back(toPeerStatus(p));  // never blocks
    }
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
      MetricsInput in{s, node->stats(), vip ? std::optional<VipMetrics>(vip->metrics()) : std::nullopt,
                      http_stats_source.load() != nullptr
                          ? std::optional<HttpServerStats>(http_stats_source.load()->stats())
                          : std::nullopt,
                      std::nullopt};
      if (Mesh* m = mesh_source.load(); m != nullptr) in.mesh = MeshMetrics{m->counters(), m->refusals()};
      return {200, "text/plain; version=0.0.4; charset=utf-8", renderMetrics(in)};
    }
    return {404, "text/plain; charset=utf-8", "not found: try /healthz /readyz /metrics\n"};
  }

  Config config;
  std::shared_ptr<Hooks> app;
  const std::chrono::steady_clock::time_point started_at;
  std::shared_ptr<Runtime> runtime = std::make_shared<Runtime>();
  LeaseClock lease_clock;
  std::unique_ptr<StrandScheduler> vip_lane = runtime->makeBlockingLane();
  std::unique_ptr<StrandScheduler> health_strand = runtime->makeStrand();
  std::unique_ptr<AsioProbeRunner> probes = std::make_unique<AsioProbeRunner>(runtime->io());
  std::unique_ptr<VipManager> vip;
  std::unique_ptr<VipObserver> vip_observer;
  std::unique_ptr<Node> node;
  std::unique_ptr<Mesh> mesh;
  // Read by the status and HTTP handlers (nats.c's thread, hc-io): set after mesh starts, cleared
  // before it stops.
  std::atomic<Mesh*> mesh_source{nullptr};
  std::unique_ptr<HealthChecker> checker;
  std::unique_ptr<NatsConnection> connection;  // status and health responders
  std::unique_ptr<HealthService> health_service;
  std::unique_ptr<HttpServer> http_server;
  // The handler runs on hc-io and may run before http_server is assigned: it reads this instead.
  std::atomic<HttpServer*> http_stats_source{nullptr};
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
Mesh* Manager::mesh() { return impl_->mesh.get(); }

Status Manager::start() {
  Impl& d = *impl_;
  std::lock_guard lock(d.lifecycle);
  if (d.started) return failedPrecondition("manager already started");
  if (Status s = validateConfig(d.config); !s.isOk()) return s;
  setLogLevel(d.config.log_level);

  std::vector<LeadershipObserver*> observers;
  if (d.config.vip.enabled()) {
    VipTimings timings;
    timings.lease_ttl = d.config.election.lease_ttl;
    timings.renew_interval = d.config.election.renew_interval;
    timings.safety_margin = d.config.election.safety_margin;
    auto vip = VipManager::create(d.config.vip, timings, *d.vip_lane, d.lease_clock);
    if (!vip.isOk()) return vip.status();
    d.vip = std::move(*vip);
    // A VIP left behind by a previous run (e.g. kill -9 with a long lifetime) must go before
    // this node is even a candidate: only the leader may hold it.
    if (Status s = d.vip->removeForcibly("removed at start (left over)"); !s.isOk()) return s;
    d.vip_observer = std::make_unique<VipObserver>(*d.vip, *d.vip_lane);
    observers.push_back(d.vip_observer.get());
  }

  d.node = std::unique_ptr<Node>(new Node(d.config, d.app, d.runtime, observers));
  // The checker costs no thread: always there, so a SIGHUP can add checks.
  d.checker = std::make_unique<HealthChecker>(d.config.health.checks, d.config.health.fail_after,
                                              d.lease_clock, *d.health_strand, *d.probes);
  d.checker->setOnChange([&d](bool healthy) { d.onHealth(healthy, false); });
  d.checker->setOnFailedTooLong([&d] { d.onHealth(false, true); });
  if (Status s = d.node->start(); !s.isOk()) return s;
  d.health_strand->runSync([&d] { d.checker->start(); });

  if (d.config.mesh.enabled()) {
    auto mesh = Mesh::create(d.config, d.runtime);
    if (!mesh.isOk()) return mesh.status();
    d.mesh = std::move(*mesh);
    // Built in: a liveness probe any peer (or tool) can call; echoes the request.
    Status handled = d.mesh->handle("sys.ping", [](const mesh::CallContext&, std::string request,
                                                   mesh::Reply reply) { reply(std::move(request)); });
    if (!handled.isOk()) return handled;
    if (Status s = d.mesh->start(); !s.isOk()) {
      return Status(s.code(), "mesh (listen " + d.config.mesh.listen + "): " + s.message());
    }
    d.mesh_source = d.mesh.get();
  }

  auto conn = NatsConnection::connect(d.config.nats, "hacoord-" + d.config.node_id + "-status");
  if (!conn.isOk()) return conn.status();
  d.connection = std::move(*conn);
  auto service = HealthService::start(*d.connection, d.config.cluster_id, d.config.node_id,
                                      [&d] { return d.currentStatus(); });
  if (!service.isOk()) return service.status();
  d.health_service = std::move(*service);

  if (!d.config.http_listen.empty()) {
    const HttpServerOptions options{d.config.http_listen, d.config.http_max_connections,
                                    d.config.http_request_timeout};
    auto http =
        HttpServer::start(d.runtime->io(), options, [&d](const std::string& path) { return d.http(path); });
    if (!http.isOk()) return http.status();
    d.http_server = std::move(*http);
    d.http_stats_source = d.http_server.get();
  }
  d.started = true;
  return Status::ok();
}

void Manager::stop() {
  Impl& d = *impl_;
  std::lock_guard lock(d.lifecycle);
  if (d.stopped) return;
  d.stopped = true;
  if (d.http_server) d.http_server->stop();
  d.http_stats_source = nullptr;
  d.health_service.reset();
  if (d.checker) d.health_strand->runSync([&d] { d.checker->stop(); });
  d.health_strand->shutdown();
  d.mesh_source = nullptr;
  if (d.mesh) d.mesh->stop();  // GOAWAY to the peers, members record deleted
  d.mesh.reset();              // while the runtime it shares lives
  if (d.node) d.node->stop();  // planned handover: the VIP goes off first, on its strand
  if (d.vip) {
    // Whatever happened to the handover, the VIP does not outlive the daemon.
    d.vip_lane->runSync([&d] {
      if (Status s = d.vip->removeForcibly("removed at stop"); !s.isOk()) {
        kLog->warn("VIP cleanup at stop: {}", s.toString());
      }
    });
  }
  d.vip_lane->shutdown();
  d.http_server.reset();
  d.checker.reset();
  d.node.reset();
  d.vip.reset();
  d.connection.reset();
}

Status Manager::reload(const Config& config) {
  Impl& d = *impl_;
  if (!setLogLevel(config.log_level)) return invalidArgument("log.level " + config.log_level);
  if (d.checker) {
    d.health_strand->runSync(
        [&] { d.checker->replaceChecks(config.health.checks, config.health.fail_after); });
  }
  kLog->info("reloaded: log level {}, {} health check(s)", config.log_level, config.health.checks.size());
  return Status::ok();
}

namespace {
sigset_t daemonSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  return signals;
}
}  // namespace

void Manager::blockDaemonSignals() {
  const sigset_t signals = daemonSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

void Manager::unblockDaemonSignals() {
  const sigset_t signals = daemonSignals();
  pthread_sigmask(SIG_UNBLOCK, &signals, nullptr);
}

Status Manager::runDaemon(const std::string& config_path) {
  // Blocked before start() creates threads, so that they inherit the mask and only sigwait()
  // below receives these signals; one that arrives during start() waits here for it.
  blockDaemonSignals();
  const sigset_t signals = daemonSignals();
  if (Status s = start(); !s.isOk()) {
    stop();
    return s;
  }
  for (;;) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGHUP) {
      auto reloaded = loadConfigFile(config_path);
      if (!reloaded.isOk()) {
        kLog->error("SIGHUP: keeping the running config: {}", reloaded.status().message());
      } else if (Status s = reload(*reloaded); !s.isOk()) {
        kLog->error("SIGHUP: {}", s.toString());
      }
      continue;
    }
    kLog->info("signal {}: stopping (planned handover if leader)", sig);
    stop();
    return Status::ok();
  }
}

Result<std::vector<NodeStatus>> Manager::clusterStatus(const Config& config, milliseconds window) {
  auto conn = clientConnection(config);
  if (!conn.isOk()) return conn.status();
  return gatherStatus(**conn, config.cluster_id, window);
}

Result<NodeStatus> Manager::health(const Config& config, const std::string& node, milliseconds timeout) {
  auto conn = clientConnection(config);
  if (!conn.isOk()) return conn.status();
  return queryNode(**conn, config.cluster_id, node, timeout);
}

Status Manager::promote(const Config& config, const std::string& node, const ControlOptions& options) {
  ControlRequest request;
  request.requester = options.requester;
  if (!options.force) {
    // The node checks that it can lead, then asks the leader (which rate-limits handovers).
    return controlRequest(config, node, kVerbPromote, request);
  }
  // Forced: the operator's request goes to the leader itself, on the subject only the operator
  // may publish. The node is checked first, as it would check itself.
  auto conn = clientConnection(config);
  if (!conn.isOk()) return conn.status();
  auto status = queryNode(**conn, config.cluster_id, node, config.nats.request_timeout);
  if (!status.isOk()) return status.status();
  if (!status->candidate) return failedPrecondition("node " + node + " is not a candidate");
  auto holder = leaseHolder(**conn, config);
  if (!holder.isOk()) return holder.status();
  if (*holder == node) return Status::ok();
  request.successor = node;
  return controlRequest(**conn, config, *holder, kVerbForceStepDown, request);
}

Status Manager::demote(const Config& config, const std::string& node, const ControlOptions& options) {
  auto conn = clientConnection(config);
  if (!conn.isOk()) return conn.status();
  std::string target = node;
  if (target.empty()) {
    auto holder = leaseHolder(**conn, config);
    if (!holder.isOk()) {
      return holder.status().code() == StatusCode::kFailedPrecondition
                 ? failedPrecondition("no node holds the lease: nothing to demote")
                 : holder.status();
    }
    target = *holder;
  }
  ControlRequest request;
  request.requester = options.requester;
  return controlRequest(**conn, config, target, options.force ? kVerbForceStepDown : kVerbStepDown, request);
}

Status Manager::join(const Config& config, const std::string& node, const ControlOptions& options) {
  ControlRequest request;
  request.requester = options.requester;
  return controlRequest(config, node, kVerbJoin, request);
}

Status Manager::leave(const Config& config, const std::string& node, const ControlOptions& options) {
  ControlRequest request;
  request.requester = options.requester;
  return controlRequest(config, node, kVerbLeave, request);
}

}  // namespace hacoord
