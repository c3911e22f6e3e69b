// Manager: the HA daemon on one runtime: Node (election, hooks, control), the VIP on its own strand,
// health checks, the status responders and the HTTP listener; and the CLI's client calls.
//
// Threading: one Runtime (hc-io, hc-block) for everything; the Node's strand runs the elector and
// the leadership bus; the VIP runs on a blocking lane of its own (netlink and the optional
// duplicate probe are blocking calls), told of leadership by the bus before the application's
// hooks; the health checker runs on a strand; HTTP on hc-io; `hacoord ping` requests chain
// asynchronous mesh calls (no thread waits for the peer). The threads are listed in
// src/core/runtime.h.
#include "hacoord/manager.h"

#include <pwd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <mutex>
#include <pthread.h>

#include <json/json.h>

#include "core/json_reader.h"
#include "core/logging.h"
#include "core/runtime.h"
#include "health/checker.h"
#include "health/health_service.h"
#include "health/probes.h"
#include "hacoord/mesh.h"
#include "manager/http_server.h"
#include "manager/metrics.h"
#include "manager/vip_observer.h"
#include "node/leadership.h"
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

// Tells the mesh every epoch the election sees, so its frames carry it (a handler reads the
// caller's epoch in CallContext::senderEpoch; DESIGN §6: locks and the store fence on it). Called
// on the elector's strand; Mesh::noteEpoch only posts.
class MeshEpochObserver final : public LeadershipObserver {
 public:
  explicit MeshEpochObserver(const std::atomic<Mesh*>& mesh) : mesh_(mesh) {}
  std::string_view name() const override { return "the mesh"; }
  void onGained(Epoch epoch, TimePoint, std::function<void(Status)> done) override {
    note(epoch);
    done(Status::ok());
  }
  void onRenewed(Epoch epoch, TimePoint) override { note(epoch); }
  void onLost(Epoch, LossReason, std::function<void(Status)> done) override { done(Status::ok()); }
  void onLeaderChanged(const std::string&, Epoch epoch) override { note(epoch); }

 private:
  void note(Epoch epoch) {
    if (Mesh* m = mesh_.load(); m != nullptr) m->noteEpoch(epoch.value());
  }
  const std::atomic<Mesh*>& mesh_;
};

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

std::string compactJson(const Json::Value& v) {
  Json::StreamWriterBuilder writer;
  writer["indentation"] = "";
  return Json::writeString(writer, v);
}

std::string errorReply(const std::string& what) {
  Json::Value v(Json::objectValue);
  v["error"] = what;
  return compactJson(v);
}

// The daemon's Mesh as the `hacoord ping` responder and its ping chains use it: cleared (and every
// use in progress waited for) before the mesh stops, so no chain calls into a stopped mesh.
class PingGate {
 public:
  void open(Mesh* mesh) {
    std::lock_guard lock(mutex_);
    mesh_ = mesh;
  }
  void close() {
    std::unique_lock lock(mutex_);
    mesh_ = nullptr;
    idle_.wait(lock, [this] { return users_ == 0; });
  }
  // Runs fn(mesh) unless closed; false when closed. Never holds the lock while fn runs (a Done that
  // runs inline may come back here).
  template <class F>
  bool with(F&& fn) {
    Mesh* mesh;
    {
      std::lock_guard lock(mutex_);
      if (mesh_ == nullptr) return false;
      mesh = mesh_;
      ++users_;
    }
    fn(*mesh);
    {
      std::lock_guard lock(mutex_);
      --users_;
    }
    idle_.notify_all();
    return true;
  }

 private:
  std::mutex mutex_;
  std::condition_variable idle_;
  Mesh* mesh_ = nullptr;
  int users_ = 0;
};

// One `hacoord ping` request: `count` sys.ping calls to `peer`, one at a time, chained on the mesh's
// asynchronous API (the next call is made from the previous one's Done, on an hc-mesh worker), so
// neither nats.c's delivery thread nor hc-io nor an hc-block thread waits for the peer. Replies
// {"node","peer","rttUs":[...],"errors":[...]} once the last call is done.
struct PingRun : std::enable_shared_from_this<PingRun> {
  static constexpr milliseconds kTimeout{1000};

  std::shared_ptr<PingGate> gate;
  std::string node;
  std::string peer;
  int count = 0;
  int sent = 0;
  Json::Value rtt_us{Json::arrayValue};
  Json::Value errors{Json::arrayValue};
  NatsResponder::ReplyFn reply;

  void next() {
    if (sent == count) return finish();
    const int seq = ++sent;
    char payload[16];
    std::snprintf(payload, sizeof payload, "ping%04d", seq % 10000);  // 8 bytes, echoed back
    auto self = shared_from_this();
    const bool ran = gate->with([&](Mesh& mesh) {
      mesh::CallOptions options;
      options.timeout = kTimeout;
      const auto start = std::chrono::steady_clock::now();
      mesh.call(peer, "sys.ping", payload, options,
                [self, seq, start, expected = std::string(payload)](Result<std::string> r) {
                  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                                      std::chrono::steady_clock::now() - start)
                                      .count();
                  if (!r.isOk()) {
                    self->errors.append("ping " + std::to_string(seq) + ": " + r.status().toString());
                  } else if (*r != expected) {
                    self->errors.append("ping " + std::to_string(seq) + ": " + self->peer +
                                        " echoed a different payload");
                  } else {
                    self->rtt_us.append(Json::Int64(us));
                  }
                  self->next();
                });
    });
    if (!ran) {
      errors.append("ping " + std::to_string(seq) + ": node " + node + " is stopping its mesh");
      finish();
    }
  }

  void finish() {
    Json::Value v(Json::objectValue);
    v["node"] = node;
    v["peer"] = peer;
    v["rttUs"] = rtt_us;
    v["errors"] = errors;
    reply(compactJson(v));
  }
};

// The responder's handler: checks the request and the peer, then starts the chain (quick: it runs
// on nats.c's delivery thread).
void answerMeshPing(const Config& config, const std::shared_ptr<PingGate>& gate, const std::string& body,
                    NatsResponder::ReplyFn reply) {
  const std::string& node = config.node_id;
  Json::Value request;
  if (!json::parseObject(body, request) || !request["peer"].isString() || !request["count"].isInt()) {
    return reply(
        errorReply("bad meshping request (want {\"peer\": ID, \"count\": N}): " + body.substr(0, 200)));
  }
  auto run = std::make_shared<PingRun>();
  run->gate = gate;
  run->node = node;
  run->peer = request["peer"].asString();
  run->count = request["count"].asInt();
  run->reply = std::move(reply);
  if (!isValidId(run->peer))
    return run->reply(errorReply("peer id '" + run->peer + "' is not [A-Za-z0-9_-]+"));
  if (run->count < 1 || run->count > Manager::kMaxMeshPings) {
    return run->reply(errorReply("count " + std::to_string(run->count) + " is not in 1.." +
                                 std::to_string(Manager::kMaxMeshPings)));
  }
  if (run->peer == node) return run->reply(errorReply("node " + node + " cannot ping itself over the mesh"));
  if (!config.mesh.enabled()) {
    return run->reply(errorReply("node " + node + " has no mesh (its config has no \"mesh\" section)"));
  }
  std::string refused;
  const bool ran = gate->with([&](Mesh& mesh) {
    const std::optional<mesh::PeerInfo> p = mesh.peer(run->peer);
    if (!p) {
      refused = "node " + node + "'s mesh knows no peer " + run->peer + " (no members record, never seen)";
    } else if (p->state == mesh::PeerState::kDead) {
      refused = "peer " + run->peer + " is dead (" + std::string(mesh::deadReasonName(p->reason)) +
                ") as node " + node + " sees it";
    }
  });
  if (!ran) refused = "node " + node + "'s mesh is not running (starting or stopping)";
  if (!refused.empty()) return run->reply(errorReply(refused));
  run->next();
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
  MeshEpochObserver mesh_epochs{mesh_source};
  std::unique_ptr<HealthChecker> checker;
  std::unique_ptr<NatsConnection> connection;  // status and health responders
  std::unique_ptr<HealthService> health_service;
  // hacoord ping: answered on hacoord.<c>.health.<node>.meshping, mesh or not (to say there is none).
  std::shared_ptr<PingGate> ping_gate = std::make_shared<PingGate>();
  std::unique_ptr<NatsResponder> mesh_ping;
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
  if (d.config.mesh.enabled()) observers.push_back(&d.mesh_epochs);

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
    d.mesh->noteEpoch(d.node->epoch().value());  // what the election saw before the mesh existed
  }

  auto conn = NatsConnection::connect(d.config.nats, "hacoord-" + d.config.node_id + "-status");
  if (!conn.isOk()) return conn.status();
  d.connection = std::move(*conn);
  auto service = HealthService::start(*d.connection, d.config.cluster_id, d.config.node_id,
                                      [&d] { return d.currentStatus(); });
  if (!service.isOk()) return service.status();
  d.health_service = std::move(*service);
  d.ping_gate->open(d.mesh.get());
  auto ping =
      NatsResponder::subscribe(*d.connection, meshPingSubject(d.config.cluster_id, d.config.node_id),
                               [&d, gate = d.ping_gate](std::string body, NatsResponder::ReplyFn reply) {
                                 answerMeshPing(d.config, gate, body, std::move(reply));
                               });
  if (!ping.isOk()) return ping.status();
  d.mesh_ping = std::move(*ping);

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
  d.mesh_ping.reset();
  d.ping_gate->close();  // ping chains in progress end with "stopping" before the mesh goes
  if (d.checker) d.health_strand->runSync([&d] { d.checker->stop(); });
  d.health_strand->shutdown();
  // The planned handover comes first: stopping the mesh (GOAWAY, the members record deleted)
  // must not delay the successor's takeover.
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
  d.mesh_source = nullptr;
  if (d.mesh) d.mesh->stop();  // GOAWAY to the peers; the members record is deleted on hc-members
  d.mesh.reset();              // while the runtime it shares lives
  d.http_server.reset();
  d.checker.reset();
  d.node.reset();
  d.vip.reset();
  d.connection.reset();
}

Status Manager::reload(const Config& config) {
  Impl& d = *impl_;
  if (!setLogLevel(config.log_level)) return invalidArgument("log.level " + config.log_level);
  // The mesh certificate rotated in place (the files of the running config: new paths need a
  // restart). A failure keeps the running certificate and says why; the rest still reloads.
  Status mesh_reload;
  if (d.mesh) mesh_reload = d.mesh->reloadCredentials();
  if (!mesh_reload.isOk()) kLog->error("SIGHUP: keeping the mesh certificate: {}", mesh_reload.toString());
  if (d.checker) {
    d.health_strand->runSync(
        [&] { d.checker->replaceChecks(config.health.checks, config.health.fail_after); });
  }
  kLog->info("reloaded: log level {}, {} health check(s){}", config.log_level, config.health.checks.size(),
             d.mesh && mesh_reload.isOk() ? ", mesh certificate" : "");
  return mesh_reload;
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

Result<MeshPingResult> Manager::meshPing(const Config& config, const std::string& peer, int count) {
  const std::string& node = config.node_id;
  if (!isValidId(peer)) return invalidArgument("peer id '" + peer + "' is not [A-Za-z0-9_-]+");
  if (count < 1 || count > kMaxMeshPings) {
    return invalidArgument("--count " + std::to_string(count) + " is not in 1.." +
                           std::to_string(kMaxMeshPings));
  }
  auto conn = clientConnection(config);
  if (!conn.isOk()) return conn.status();
  const std::string subject = meshPingSubject(config.cluster_id, node);
  Json::Value body(Json::objectValue);
  body["peer"] = peer;
  body["count"] = count;
  // The daemon answers after its last ping: at most 1 s each.
  const milliseconds timeout = count * PingRun::kTimeout + 2 * config.nats.request_timeout;
  auto reply = natsRequest(**conn, subject, compactJson(body), timeout);
  if (!reply.isOk()) {
    const Status& st = reply.status();
    if (st.code() == StatusCode::kNotFound) {
      return unavailable("node " + node + " is down: no daemon answers on " + subject);
    }
    if (st.code() == StatusCode::kDeadlineExceeded) {
      return deadlineExceeded("node " + node + " did not answer within " + std::to_string(timeout.count()) +
                              " ms");
    }
    return Status(st.code(), "asking node " + node + ": " + st.message());
  }
  Json::Value v;
  if (!json::parseObject(*reply, v)) {
    return Status(StatusCode::kDataLoss, "node " + node + " sent an unreadable meshping reply: " + *reply);
  }
  if (v["error"].isString()) return failedPrecondition(v["error"].asString());
  if (!v["rttUs"].isArray() || !v["errors"].isArray() || v["peer"].asString() != peer) {
    return Status(StatusCode::kDataLoss, "node " + node + " sent an unexpected meshping reply: " + *reply);
  }
  MeshPingResult out;
  out.node = v["node"].asString();
  out.peer = peer;
  for (const Json::Value& r : v["rttUs"]) out.rtt_us.push_back(r.asInt64());
  for (const Json::Value& e : v["errors"]) out.errors.push_back(e.asString());
  return out;
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
