// SimMesh: N MeshCores on one SimLoop over a FakeMeshNetwork, for unit and simulation tests.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mesh/mesh_core.h"
#include "support/fake_mesh_network.h"
#include "support/fake_scheduler.h"

namespace hacoord::test {

class SimMesh {
 public:
  struct Node {
    std::unique_ptr<FakeScheduler> scheduler;
    std::unique_ptr<FakeMeshTransport> transport;
    std::unique_ptr<FakeMemberSource> members;
    std::unique_ptr<mesh::MeshCore> core;
    std::uint64_t incarnation = 0;
    // How long a handler waits for a free worker (a pool busy with blocking handlers).
    std::shared_ptr<Duration> worker_stall = std::make_shared<Duration>(0);
  };

  explicit SimMesh(std::uint64_t seed = 1, FakeMeshNetwork::Options net_options = {})
      : net_(loop_, seed, net_options), seed_(seed) {}

  // Starts a node (again, after crash(): a new process with a higher incarnation). `tune` may
  // change its options before it starts; `setup` may register handlers before start().
  mesh::MeshCore& start(const std::string& id, const std::function<void(mesh::MeshOptions&)>& tune = {},
                        const std::function<void(mesh::MeshCore&)>& setup = {}) {
    Node& n = nodes_[id];
    n.core.reset();
    n.members.reset();
    n.transport.reset();
    n.scheduler = std::make_unique<FakeScheduler>(loop_);
    n.transport = net_.transport(id, *n.scheduler);
    n.members = net_.members(id, *n.scheduler);
    mesh::MeshOptions o;
    o.node = id;
    o.incarnation = ++incarnations_[id];
    n.incarnation = o.incarnation;
    o.cert_sha256 = {FakeMeshNetwork::fingerprintOf(id)};
    o.seed = seed_ * 1000 + o.incarnation * 31 + std::hash<std::string>{}(id) % 1000;
    if (tune) tune(o);
    FakeScheduler* sched = n.scheduler.get();
    n.core = std::make_unique<mesh::MeshCore>(o, loop_, *n.scheduler, *n.transport, *n.members,
                                              [sched, stall = n.worker_stall](std::function<void()> f) {
                                                if (stall->count() > 0) {
                                                  sched->runAfter(*stall, std::move(f));
                                                } else {
                                                  sched->post(std::move(f));
                                                }
                                              });
    if (setup) setup(*n.core);
    Status s = n.core->start();
    if (!s.isOk()) std::abort();
    return *n.core;
  }

  // kill -9: the process vanishes (its record stays, as in NATS until MaxAge).
  void crash(const std::string& id) {
    Node& n = nodes_.at(id);
    net_.crash(id);
    n.scheduler->crash();
    n.core.reset();
    n.members.reset();
    n.transport.reset();
  }
  // A clean stop: GOAWAY to peers, its record deleted.
  void stop(const std::string& id) {
    Node& n = nodes_.at(id);
    n.core->stop();
    loop_.advance(std::chrono::milliseconds(1));
  }

  // From now on, handlers of `id` start `stall` after they were handed to its workers (0: at once).
  void setWorkerStall(const std::string& id, Duration stall) { *nodes_.at(id).worker_stall = stall; }

  bool running(const std::string& id) const {
    auto it = nodes_.find(id);
    return it != nodes_.end() && it->second.core != nullptr;
  }
  mesh::MeshCore& core(const std::string& id) { return *nodes_.at(id).core; }
  FakeScheduler& scheduler(const std::string& id) { return *nodes_.at(id).scheduler; }
  FakeMeshTransport& transport(const std::string& id) { return *nodes_.at(id).transport; }
  std::vector<std::string> ids() const {
    std::vector<std::string> out;
    for (const auto& [id, n] : nodes_) out.push_back(id);
    return out;
  }

  // True when every running node sees every other running node alive.
  bool allAlive() const {
    for (const auto& [a, na] : nodes_) {
      if (!na.core) continue;
      for (const auto& [b, nb] : nodes_) {
        if (a == b || !nb.core) continue;
        auto p = na.core->peer(b);
        if (!p || p->state != mesh::PeerState::kAlive) return false;
      }
    }
    return true;
  }

  SimLoop& loop() { return loop_; }
  FakeMeshNetwork& net() { return net_; }

 private:
  SimLoop loop_;
  FakeMeshNetwork net_;
  std::uint64_t seed_;
  std::map<std::string, Node> nodes_;
  std::map<std::string, std::uint64_t> incarnations_;
};

}  // namespace hacoord::test
