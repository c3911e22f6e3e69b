// Mesh: the composition of MeshCore, TlsTransport and NatsMemberSource on one strand of a Runtime,
// with handlers on a worker pool (hc-mesh) and the application's callbacks on another (hc-meshcb).
//
// Threading: MeshCore, the transport's callbacks and the member source's events all run on one
// StrandScheduler (hc-io); public methods post to it (or wait for it with runSync, never from the
// strand itself). Handlers run on the worker pool, the Done callbacks given to the public methods
// and peer events on the callback pool, so an application's code never blocks hc-io.
//
// Shutdown order: the core stops and is destroyed on its strand (dropping every Link), then the
// transport and the member source go, then the strand, then the workers, then NATS.
#include "hacoord/mesh.h"

#include <utility>  // before Asio: Boost 1.74 under C++20 needs it

#include <chrono>
#include <future>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include <boost/asio/post.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "core/logging.h"
#include "core/runtime.h"
#include "mesh/certs.h"
#include "mesh/mesh_core.h"
#include "mesh/tls_transport.h"
#include "nats/nats_connection.h"
#include "nats/nats_member_source.h"

namespace hacoord {
namespace {

constinit const ModuleLog kLog("mesh");

constexpr int kWorkers = 2;
constexpr Duration kViewRefresh = std::chrono::milliseconds(100);

std::string refusedKey(mesh::RefusedReason r) { return std::string(mesh::refusedReasonName(r)); }

// The certificate the config names must be this node's: peers would refuse any other.
Status checkOwnCertificate(const Config& config) {
  const std::string& path = config.mesh.cert;
  auto id = mesh::identityOfPemFile(path, config.cluster_id);
  if (!id.isOk()) return invalidArgument("mesh.cert " + path + ": " + id.status().message());
  if (*id != config.node_id) {
    return invalidArgument("mesh.cert " + path + " is node '" + *id + "''s certificate, not this node's ('" +
                           config.node_id + "')");
  }
  return Status::ok();
}

}  // namespace

struct Mesh::Impl {
  Config config;
  std::shared_ptr<Runtime> runtime;
  bool own_runtime = false;
  std::unique_ptr<StrandScheduler> strand;
  // Two pools of named threads (like every thread of ours): hc-mesh runs handlers, hc-meshcb the
  // application's Done callbacks and peer events, so handlers that block (or a burst of them)
  // never hold back the completion of calls, and a slow callback never delays serving.
  struct Pool {
    const char* name;
    int threads;
    boost::asio::io_context io;
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard{io.get_executor()};
    std::vector<std::thread> running;
    Pool(const char* n, int t) : name(n), threads(t) {}
    void start() {
      for (int n = 0; n < threads; ++n) running.push_back(Runtime::startThread(name, [this] { io.run(); }));
    }
    void join() {
      guard.reset();  // run() returns once what is queued has run
      for (auto& t : running) {
        if (t.joinable()) t.join();
      }
    }
  };
  Pool workers{"hc-mesh", kWorkers};
  Pool callbacks{"hc-meshcb", 1};  // one thread: peer events and Done callbacks arrive in order
  void startWorkers() {
    workers.start();
    callbacks.start();
  }
  void joinWorkers() {
    workers.join();
    callbacks.join();
  }
  LeaseClock clock;
  std::unique_ptr<NatsConnection> nats;
  std::unique_ptr<NatsMemberSource> members;
  std::unique_ptr<mesh::TlsTransport> transport;
  std::unique_ptr<mesh::MeshCore> core;
  mesh::MeshOptions options;
  // The view the read methods return without waiting for the strand (they may be called on hc-io,
  // e.g. by the HTTP handler, where waiting for this strand would deadlock): published by the
  // strand every kViewRefresh and on every peer event.
  mutable std::mutex view_mutex;
  std::vector<mesh::PeerInfo> view_peers;
  mesh::MeshCounters view_counters;
  std::function<void(const mesh::PeerInfo&)> peer_event;  // the application's, on the workers
  std::mutex mutex;                                       // guards started and stopped
  bool started = false;
  bool stopped = false;

  // A Done or a peer event running on a pool thread may call in while ~Mesh runs: once the core
  // is destroyed (or its strand shut down) every method answers this instead.
  static Status gone() { return Status(StatusCode::kCancelled, "mesh destroyed"); }

  // Runs `fn(core)` on the strand and returns its value (the strand must not be the caller's
  // thread); `fallback` without a core.
  template <class F, class R>
  R onStrand(F fn, R fallback) {
    std::optional<R> out;
    strand->runSync([&] {
      if (core) out.emplace(fn(*core));
    });
    if (!out) return fallback;
    return std::move(*out);
  }
  // Posts `fn(core)` to the strand; `orElse()` there when the core is gone.
  template <class F, class G>
  void postToCore(F fn, G orElse) {
    strand->post([this, fn = std::move(fn), orElse = std::move(orElse)]() mutable {
      if (core) {
        fn(*core);
      } else {
        orElse();
      }
    });
  }

  // On the strand.
  void publishView() {
    if (!core) return;  // destroyed by ~Mesh: the view keeps its last state
    auto peers = core->peers();
    auto counters = core->counters();
    std::lock_guard lock(view_mutex);
    view_peers = std::move(peers);
    view_counters = counters;
  }
  void refreshViewPeriodically() {
    if (!core) return;
    publishView();
    strand->runAfter(kViewRefresh, [this] { refreshViewPeriodically(); });
  }

  // Wraps a Done so it runs on the callback pool. Copies `done` per call: the wrapper may be called
  // many times (onPeerEvent, onHigherEpoch), and moving it out left an empty function for the next
  // event (std::bad_function_call on a worker, which terminates).
  template <class T>
  mesh::Done<T> onWorkers(mesh::Done<T> done) {
    auto shared = std::make_shared<mesh::Done<T>>(std::move(done));
    return [this, shared](T value) {
      boost::asio::post(callbacks.io,
                        [shared, value = std::move(value)]() mutable { (*shared)(std::move(value)); });
    };
  }
};

Result<std::unique_ptr<Mesh>> Mesh::create(const Config& config, std::shared_ptr<Runtime> runtime) {
  if (!config.mesh.enabled()) return invalidArgument("the config has no \"mesh\" section");
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  if (!runtime) {
    runtime = std::make_shared<Runtime>();
    impl->own_runtime = true;
  }
  impl->runtime = std::move(runtime);
  impl->strand = impl->runtime->makeStrand();
  const MeshConfig& m = config.mesh;
  if (Status s = checkOwnCertificate(config); !s.isOk()) return s;
  auto fingerprint = mesh::fingerprintOfPemFile(m.cert);
  if (!fingerprint.isOk()) return invalidArgument("mesh.cert: " + fingerprint.status().message());
  mesh::TlsTransport::Options t;
  t.cluster = config.cluster_id;
  t.node = config.node_id;
  t.ca_file = m.ca;
  t.cert_file = m.cert;
  t.key_file = m.key;
  t.listen_address = m.listen;
  t.handshake_timeout = m.dial_timeout;
  t.max_message_bytes = static_cast<std::size_t>(m.max_message_bytes);
  auto transport = mesh::TlsTransport::create(impl->runtime->io(), *impl->strand, t);
  if (!transport.isOk()) return transport.status();
  impl->transport = std::move(*transport);
  mesh::MeshOptions& o = impl->options;
  o.node = config.node_id;
  o.division = m.division;
  o.type = m.type;
  // A new incarnation on every start: the wall clock in microseconds rises across restarts.
  o.incarnation = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                                 std::chrono::system_clock::now().time_since_epoch())
                                                 .count());
  o.advertise = m.advertise;
  o.cert_sha256 = {*fingerprint};
  o.ping_interval = m.ping_interval;
  o.suspect_after = m.suspect_after;
  o.dead_after = m.dead_after;
  o.dial_timeout = m.dial_timeout;
  o.max_message_bytes = static_cast<std::size_t>(m.max_message_bytes);
  o.send_budget = static_cast<std::size_t>(m.send_budget_bytes);
  o.seed = o.incarnation;
  auto nats = NatsConnection::connect(config.nats, "hacoord-" + config.node_id + "-mesh");
  if (!nats.isOk()) return nats.status();
  impl->nats = std::move(*nats);
  NatsMemberSourceOptions mo;
  mo.cluster_id = config.cluster_id;
  mo.refresh = m.refresh;
  mo.replicas = config.election.bucket_replicas;
  auto members = NatsMemberSource::open(*impl->nats, mo, *impl->strand);
  if (!members.isOk()) return members.status();
  impl->members = std::move(*members);
  Impl* i = impl.get();
  i->startWorkers();
  i->core = std::make_unique<mesh::MeshCore>(
      i->options, i->clock, *i->strand, *i->transport, *i->members,
      [i](std::function<void()> f) { boost::asio::post(i->workers.io, std::move(f)); });
  return std::unique_ptr<Mesh>(new Mesh(std::move(impl)));
}

Mesh::Mesh(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Mesh::~Mesh() {
  stop();
  Impl& i = *impl_;
  // The core (and every Link it holds) goes on its strand; then what posts to the strand.
  i.strand->runSync([&] { i.core.reset(); });
  i.transport.reset();
  i.members.reset();
  i.strand->shutdown();
  i.joinWorkers();
  i.nats.reset();
  if (i.own_runtime) i.runtime->stop();
}

Status Mesh::start() {
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    if (impl_->stopped) return failedPrecondition("mesh stopped");
    if (impl_->started) return failedPrecondition("mesh already started");
    impl_->started = true;
  }
  Impl& i = *impl_;
  Status s = i.onStrand(
      [&](mesh::MeshCore& core) {
        Status started = core.start();
        if (!started.isOk()) return started;
        core.onPeerEvent([&i](const mesh::PeerInfo& p) {
          i.publishView();
          std::function<void(const mesh::PeerInfo&)> fn;
          {
            std::lock_guard lock(i.view_mutex);
            fn = i.peer_event;
          }
          if (fn) boost::asio::post(i.callbacks.io, [fn, p] { fn(p); });
        });
        i.refreshViewPeriodically();
        return Status::ok();
      },
      Impl::gone());
  if (s.isOk())
    kLog->info("mesh: node {} joined the mesh of cluster {}", impl_->config.node_id,
               impl_->config.cluster_id);
  return s;
}

void Mesh::stop() {
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    if (impl_->stopped) return;
    impl_->stopped = true;
    if (!impl_->started) return;
  }
  impl_->strand->runSync([&] {
    if (!impl_->core) return;
    impl_->core->stop();
    impl_->publishView();
  });
}

const std::string& Mesh::node() const { return impl_->config.node_id; }

std::string Mesh::listenAddress() const { return impl_->transport->listenAddress(); }

std::vector<mesh::PeerInfo> Mesh::peers() const {
  std::lock_guard lock(impl_->view_mutex);
  return impl_->view_peers;
}

std::optional<mesh::PeerInfo> Mesh::peer(std::string_view id) const {
  std::lock_guard lock(impl_->view_mutex);
  for (const auto& p : impl_->view_peers) {
    if (p.id == id) return p;
  }
  return std::nullopt;
}

void Mesh::onPeerEvent(std::function<void(const mesh::PeerInfo&)> fn) {
  std::lock_guard lock(impl_->view_mutex);
  impl_->peer_event = std::move(fn);
}

mesh::MeshCounters Mesh::counters() const {
  std::lock_guard lock(impl_->view_mutex);
  return impl_->view_counters;
}

std::map<std::string, std::uint64_t> Mesh::refusals() const {
  std::map<std::string, std::uint64_t> out;
  for (const auto& [reason, n] : impl_->transport->refusals()) out[refusedKey(reason)] = n;
  return out;
}

void Mesh::noteEpoch(std::uint64_t epoch) {
  impl_->postToCore([epoch](mesh::MeshCore& core) { core.noteEpoch(epoch); }, [] {});
}

void Mesh::onHigherEpoch(std::function<void(std::uint64_t)> fn) {
  auto wrapped = impl_->onWorkers<std::uint64_t>(std::move(fn));
  impl_->onStrand(
      [&](mesh::MeshCore& core) {
        core.onHigherEpoch(wrapped);
        return true;
      },
      false);
}

Status Mesh::handle(std::string method, mesh::Handler handler, mesh::HandlerOptions options) {
  return impl_->onStrand(
      [&](mesh::MeshCore& core) { return core.handle(std::move(method), std::move(handler), options); },
      Impl::gone());
}

void Mesh::call(std::string_view peer, std::string_view method, std::string request,
                mesh::CallOptions options, mesh::Done<Result<std::string>> done) {
  auto d = impl_->onWorkers<Result<std::string>>(std::move(done));
  impl_->postToCore(
      [peer = std::string(peer), method = std::string(method), request = std::move(request), options,
       d](mesh::MeshCore& core) mutable { core.call(peer, method, std::move(request), options, d); },
      [d] { d(Impl::gone()); });
}

Result<std::string> Mesh::callSync(std::string_view peer, std::string_view method, std::string request,
                                   mesh::CallOptions options) {
  std::promise<Result<std::string>> p;
  auto f = p.get_future();
  const bool ran = impl_->onStrand(
      [&](mesh::MeshCore& core) {
        core.call(peer, method, std::move(request), options,
                  [&p](Result<std::string> r) { p.set_value(std::move(r)); });
        return true;
      },
      false);
  if (!ran) return Impl::gone();
  return f.get();
}

std::size_t Mesh::broadcast(std::string_view method, std::string request, const mesh::PeerFilter& filter) {
  return impl_->onStrand(
      [&](mesh::MeshCore& core) { return core.broadcast(method, std::move(request), filter); },
      std::size_t{0});
}

void Mesh::all(std::string_view method, std::string request, mesh::CallOptions options,
               const mesh::PeerFilter& filter, mesh::Done<std::vector<mesh::PeerReply>> done) {
  auto d = impl_->onWorkers<std::vector<mesh::PeerReply>>(std::move(done));
  impl_->postToCore(
      [method = std::string(method), request = std::move(request), options, filter,
       d](mesh::MeshCore& core) mutable { core.all(method, std::move(request), options, filter, d); },
      [d] { d({}); });
}

std::vector<mesh::PeerReply> Mesh::allSync(std::string_view method, std::string request,
                                           mesh::CallOptions options, const mesh::PeerFilter& filter) {
  std::promise<std::vector<mesh::PeerReply>> p;
  auto f = p.get_future();
  const bool ran = impl_->onStrand(
      [&](mesh::MeshCore& core) {
        core.all(method, std::move(request), options, filter,
                 [&p](std::vector<mesh::PeerReply> r) { p.set_value(std::move(r)); });
        return true;
      },
      false);
  if (!ran) return {};
  return f.get();
}

void Mesh::any(std::string_view method, std::string request, mesh::CallOptions options,
               const mesh::PeerFilter& filter, mesh::Done<mesh::PeerReply> done) {
  auto d = impl_->onWorkers<mesh::PeerReply>(std::move(done));
  impl_->postToCore(
      [method = std::string(method), request = std::move(request), options, filter,
       d](mesh::MeshCore& core) mutable { core.any(method, std::move(request), options, filter, d); },
      [d] {
        d({"", Impl::gone()});
      });
}

mesh::PeerReply Mesh::anySync(std::string_view method, std::string request, mesh::CallOptions options,
                              const mesh::PeerFilter& filter) {
  std::promise<mesh::PeerReply> p;
  auto f = p.get_future();
  const bool ran = impl_->onStrand(
      [&](mesh::MeshCore& core) {
        core.any(method, std::move(request), options, filter,
                 [&p](mesh::PeerReply r) { p.set_value(std::move(r)); });
        return true;
      },
      false);
  if (!ran) return {"", Impl::gone()};
  return f.get();
}

Status Mesh::reloadCredentials() {
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    if (!impl_->started || impl_->stopped) return failedPrecondition("the mesh is not running");
  }
  if (Status s = checkOwnCertificate(impl_->config); !s.isOk()) return s;
  auto fingerprint = impl_->transport->reloadCredentials();
  if (!fingerprint.isOk()) return fingerprint.status();
  return impl_->onStrand(
      [&](mesh::MeshCore& core) { return core.rotateCertificate(std::move(fingerprint).value()); },
      Impl::gone());
}

Status Mesh::setMeta(std::string key, std::string value) {
  return impl_->onStrand([&](mesh::MeshCore& core) { return core.setMeta(std::move(key), std::move(value)); },
                         Impl::gone());
}

}  // namespace hacoord
