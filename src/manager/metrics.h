// Prometheus text exposition of a node's state, counters and renew-latency histogram.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "hacoord/mesh.h"
#include "hacoord/node.h"
#include "hacoord/node_status.h"
#include "manager/http_server.h"
#include "vip/vip_manager.h"

namespace hacoord {

// The mesh's counters and TLS refusals (the peers come from NodeStatus::peers).
struct MeshMetrics {
  mesh::MeshCounters counters;
  std::map<std::string, std::uint64_t> refusals;  // by reason
};

struct MetricsInput {
  NodeStatus status;
  NodeStats stats;
  std::optional<VipMetrics> vip;
  std::optional<HttpServerStats> http;
  std::optional<MeshMetrics> mesh;  // only when a mesh is configured
};

// Every series carries node="<nodeId>"; the VIP acts carry the epoch as a gauge.
std::string renderMetrics(const MetricsInput& in);

}  // namespace hacoord
