// Node: one member of a hacoord group. Connects to NATS, campaigns for the lease, runs the hooks.
#pragma once

#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "hacoord/config.h"
#include "hacoord/epoch.h"
#include "hacoord/hooks.h"
#include "hacoord/status.h"

namespace hacoord {

class LeadershipObserver;
class Runtime;

// Counters for metrics. renew_latency_buckets[i] counts renewals confirmed within
// kRenewLatencyBoundsMs[i] (not cumulative); the last bucket is everything slower.
struct NodeStats {
  static constexpr double kRenewLatencyBoundsMs[] = {0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000};
  std::uint64_t became_leader = 0;
  std::uint64_t lost_leadership = 0;
  std::uint64_t renewals = 0;
  std::uint64_t hook_overruns = 0;  // hook calls that passed their time limit
  bool hooks_overrunning = false;   // one is past its limit now: the node is out of candidacy
  double renew_latency_sum_ms = 0;
  std::uint64_t renew_latency_buckets[std::size(kRenewLatencyBoundsMs) + 1] = {};
};

// Thread-safe. Accessors read a snapshot; isLeader() also checks the local lease deadline on the
// steady clock, so it turns false on time even if hacoord's own threads are stalled.
class Node {
 public:
  Node(Config config, std::shared_ptr<Hooks> hooks = nullptr);
  ~Node();  // stop()
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Connects to NATS (waits up to nats.connect_timeout for a first server), creates or binds the
  // bucket and starts the election. Unavailable when NATS cannot be reached; InvalidArgument when
  // the bucket exists with another configuration.
  Status start();
  // Planned handover if leader (hooks first, then the lease is released), then disconnect.
  // Idempotent; also called by the destructor.
  void stop();

  Role role() const;
  bool isLeader() const;
  std::string leader() const;  // "" when the lease is vacant or unknown
  Epoch epoch() const;         // epoch of the latest record seen (this node's own while leading)
  // While leader: the steady-clock instant this node stops acting as leader unless renewed.
  TimePoint leaseDeadline() const;
  NodeStats stats() const;
  const std::string& nodeId() const;
  // Campaigns now (every input of setCandidate's note agrees).
  bool candidate() const;
  const std::string& incarnation() const;

  // Planned handover. FailedPrecondition when not leader. Returns once the lease is released.
  Status stepDown();
  // Asks the live leader (over NATS request/reply) to hand over to this node. Returns when the
  // leader has accepted; the takeover follows within milliseconds.
  Status promote();
  // Enter or leave candidacy without stopping (leaving while leader hands over first).
  // `applied` (optional) runs once the election has taken the change in, on hacoord's thread:
  // from then on role(), promote() and the election itself see the new candidacy.
  // The node campaigns only while this is true, its local health gate is open (Manager) and none
  // of its hooks is past its time limit.
  void setCandidate(bool candidate, std::function<void()> applied = {});

 private:
  friend class Manager;
  // The Manager's node: on the Manager's runtime, with its observers (the VIP) told of leadership
  // before the hooks, and a health gate on candidacy.
  Node(Config config, std::shared_ptr<Hooks> hooks, std::shared_ptr<Runtime> runtime,
       std::vector<LeadershipObserver*> observers);
  // Local health (the Manager's checks): an unhealthy node does not campaign; an unhealthy leader
  // keeps leading until its checks have failed for health.failAfterMs (`failed_too_long`).
  void setHealth(bool healthy, bool failed_too_long);

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hacoord
