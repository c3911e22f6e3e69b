// An in-memory mesh network for simulation: one shared network, one Transport and MemberSource per
// node, faults as data (partitions, delay, duplication, resets, crashes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "mesh/link.h"
#include "mesh/member.h"
#include "support/fake_scheduler.h"

namespace hacoord::test {

class FakeMeshTransport;
class FakeMemberSource;
class FakeLink;

// The network every node's transport and member source talks to.
//
// Connections model TCP inside TLS: ordered and reliable while they live. A message sent at s on a
// link from a to b is delivered to b's scheduler at max(s + delay, the previous delivery on that
// direction) — FIFO per direction — unless a→b is partitioned: then it waits (TCP retransmits) and
// is delivered when the partition heals, or the link dies once data has waited `user_timeout`
// (TCP_USER_TIMEOUT) and both ends see on_closed. A reset kills a link at once (both ends told
// after a delay). duplicate_probability re-delivers a message right after itself (not what TCP
// does: it tests that the mesh's logic tolerates replays). Dialing a node that is partitioned away,
// not listening, or down fails at the dial timeout (partition: a black hole) or after one delay
// (refused). The member registry is the stand-in for the members bucket: a record put by one node
// reaches every other node's source after a delay, unless that node is cut from NATS.
// All times are global (SimLoop) times; randomness is a seeded std::mt19937_64.
class FakeMeshNetwork {
 public:
  struct Options {
    Duration min_delay{std::chrono::microseconds(100)};
    Duration max_delay{std::chrono::milliseconds(2)};
    Duration user_timeout{std::chrono::seconds(5)};
    Duration members_delay{std::chrono::milliseconds(5)};
    double duplicate_probability = 0.0;
  };

  FakeMeshNetwork(SimLoop& loop, std::uint64_t seed, Options options);
  explicit FakeMeshNetwork(SimLoop& loop, std::uint64_t seed = 1) : FakeMeshNetwork(loop, seed, Options{}) {}
  ~FakeMeshNetwork();
  FakeMeshNetwork(const FakeMeshNetwork&) = delete;
  FakeMeshNetwork& operator=(const FakeMeshNetwork&) = delete;

  // A node's transport (address "<node>:7000", certificate fingerprint fingerprintOf(node)) and
  // member source, delivering on `scheduler`. A node made again after crash() is a restart.
  std::unique_ptr<FakeMeshTransport> transport(const std::string& node, FakeScheduler& scheduler);
  std::unique_ptr<FakeMemberSource> members(const std::string& node, FakeScheduler& scheduler);
  static std::string fingerprintOf(const std::string& node);  // 64 hex digits

  // Faults.
  void partition(const std::string& a, const std::string& b);  // both directions
  void partitionOneWay(const std::string& from, const std::string& to);
  void heal(const std::string& a, const std::string& b);
  void healAll();
  // Cuts `node` from NATS: its member record stops being refreshed and it sees no changes.
  void cutFromMembers(const std::string& node, bool cut);
  void reset(const std::string& a, const std::string& b);  // every link between them dies
  // kill -9 of a process: its links close (peers see FIN after a delay) and it stops listening;
  // its member record stays until removed (MaxAge) or replaced by a restart.
  void crash(const std::string& node);
  void removeMember(const std::string& node);  // its record expired or was deleted
  // A record under `node`'s key written by someone else (an operator, an attacker with NATS access).
  void putMember(const mesh::MemberRecord& record);
  // The certificate a node presents from now on (another node's id: a stolen/misissued cert).
  void presentAs(const std::string& node, const std::string& claimed_id, const std::string& fingerprint);

  Options& options() { return options_; }
  std::mt19937_64& rng() { return rng_; }

  // Open connections between a and b that both ends still hold (for the one-per-pair invariant).
  std::size_t openLinks(const std::string& a, const std::string& b) const;
  std::uint64_t messagesDelivered() const { return delivered_; }

  // Internal (used by the fake transport and links).
  struct Endpoint;
  struct Conn;
  Duration drawDelay();
  bool blocked(const std::string& from, const std::string& to) const;
  void deliver(const std::shared_ptr<Conn>& conn, int dir, mesh::Message m);
  void closeConn(const std::shared_ptr<Conn>& conn, const Status& why, int closer);
  // The FIN from `closer` reaches the other side after everything `closer` sent before it.
  void sendFin(const std::shared_ptr<Conn>& conn, int closer);
  void flush(const std::shared_ptr<Conn>& conn, int dir);
  void registerEndpoint(Endpoint* e);
  void unregisterEndpoint(Endpoint* e);
  void dial(Endpoint& from, const std::string& node, const std::vector<std::string>& addrs, Duration timeout,
            mesh::Transport::DialFn done);
  void publishMember(const std::string& from, const mesh::MemberRecord& r);
  void deleteMember(const std::string& from, const std::string& node);
  void registerSource(FakeMemberSource* s);
  void resync(FakeMemberSource* s);  // the whole registry, as a restarted watcher sees it
  void unregisterSource(FakeMemberSource* s);

 private:
  SimLoop& loop_;
  Options options_;
  std::mt19937_64 rng_;
  std::set<std::pair<std::string, std::string>> blocked_;  // (from, to)
  std::set<std::string> cut_from_members_;
  std::map<std::string, Endpoint*> endpoints_;                            // by node
  std::map<std::string, std::pair<std::string, std::string>> presented_;  // node -> (id, fingerprint)
  std::vector<std::shared_ptr<Conn>> conns_;                              // pruned once both ends are closed
  std::map<std::string, mesh::MemberRecord> registry_;
  std::set<FakeMemberSource*> sources_;
  std::uint64_t delivered_ = 0;
};

class FakeMeshTransport final : public mesh::Transport {
 public:
  FakeMeshTransport(FakeMeshNetwork& net, std::string node, FakeScheduler& scheduler);
  ~FakeMeshTransport() override;

  Status listen(AcceptFn on_accept) override;
  void dial(const std::string& node, const std::vector<std::string>& addrs, Duration timeout,
            DialFn done) override;
  void stop() override;
  std::string listenAddress() const override;
  std::map<mesh::RefusedReason, std::uint64_t> refusals() const override;

  FakeMeshNetwork::Endpoint& endpoint() { return *endpoint_; }

 private:
  FakeMeshNetwork& net_;
  std::unique_ptr<FakeMeshNetwork::Endpoint> endpoint_;
};

class FakeMemberSource final : public mesh::MemberSource {
 public:
  FakeMemberSource(FakeMeshNetwork& net, std::string node, FakeScheduler& scheduler);
  ~FakeMemberSource() override;
  void start(Events events) override;
  void publish(const mesh::MemberRecord& self) override;
  void stop() override;

  // Internal: the network tells the source about a change (already delayed).
  void deliverUpsert(const mesh::MemberRecord& r);
  void deliverGone(const std::string& node);
  void resyncTo(const std::map<std::string, mesh::MemberRecord>& snapshot);
  void republish();  // the periodic refresh: our record again
  const std::string& node() const { return node_; }
  FakeScheduler& scheduler() { return scheduler_; }
  bool started() const { return started_; }

 private:
  FakeMeshNetwork& net_;
  std::string node_;
  FakeScheduler& scheduler_;
  Events events_;
  bool started_ = false;
  std::set<std::string> known_;  // nodes it has reported and not reported gone
  std::optional<mesh::MemberRecord> self_;
};

}  // namespace hacoord::test
