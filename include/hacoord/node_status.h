// NodeStatus: what one node reports about itself over NATS (DESIGN §5 status JSON), and its codec.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "hacoord/status.h"

namespace hacoord {

// One local check as the HealthChecker last saw it.
struct CheckStatus {
  std::string name;
  std::string type;              // "command", "tcp" or "http"
  bool healthy = true;           // after rise/fall counting, not just the last run
  std::string last_result;       // "pending" (not run yet), "pass" or "fail: <reason>"
  int consecutive_passes = 0;    // the current run of passes (0 after a failure)
  int consecutive_failures = 0;  // the current run of failures (0 after a pass)

  bool operator==(const CheckStatus&) const = default;
};

struct VipStatus {
  std::string address;  // "" when this node has no VIP configured
  bool held = false;    // the address is on this node's interface now

  bool operator==(const VipStatus&) const = default;
};

// One mesh peer as this node sees it (DESIGN §6.3).
struct PeerStatus {
  std::string id;
  std::string state;   // "connecting", "alive", "suspect" or "dead"
  std::string reason;  // "" or, when dead: unreachable, departed, restarted, identity, protocol
  std::string division;
  std::string type;
  uint64_t incarnation = 0;
  double rtt_ms = 0;      // EWMA of the PING round trips
  double rtt_p99_ms = 0;  // p99 of the recent round trips
  std::string address;    // the connection's remote address, "" when not connected

  bool operator==(const PeerStatus&) const = default;
};

struct NodeStatus {
  std::string node_id;
  std::string role;    // "leader", "follower" or "stopped" (roleName())
  std::string leader;  // node id of the current leader as this node sees it; "" when none
  uint64_t epoch = 0;  // epoch of the latest lease record this node has seen
  int64_t uptime_ms = 0;
  bool nats_connected = false;
  VipStatus vip;
  std::vector<CheckStatus> checks;
  bool healthy = true;             // every local check is healthy (true when none are configured)
  bool candidate = true;           // this node campaigns for the lease
  bool hooks_overrunning = false;  // a hook is past its time limit (the node left candidacy)
  std::string version;             // hacoord version string
  std::vector<PeerStatus> peers;   // mesh peers; empty without a mesh

  // Compact JSON with camelCase keys: nodeId, role, leader, epoch, uptimeMs, natsConnected,
  // vip {address, held}, checks [{name, type, healthy, lastResult, consecutivePasses,
  // consecutiveFailures}], healthy, candidate, hooksOverrunning (optional when decoding), version,
  // peers [{id, state, reason, division, type, incarnation, rttMs, rttP99Ms, address}] (optional
  // when decoding: older nodes and nodes without a mesh omit it).
  std::string toJson() const;

  // Strict on what is there: every key above is required with its JSON type, the role must be
  // one of the three, epoch/uptime/counts must be integers >= 0. Unknown keys are ignored so that
  // a newer node can add fields without breaking older CLIs. InvalidArgument naming the first
  // offending key, e.g. "status JSON: checks[1].healthy: expected a boolean (true or false), got
  // number", or "status JSON: not valid JSON: line 1, column 9: ..." for a syntax error.
  static Result<NodeStatus> fromJson(std::string_view json);

  bool operator==(const NodeStatus&) const = default;
};

}  // namespace hacoord
