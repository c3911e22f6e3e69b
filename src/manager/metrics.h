// Prometheus text exposition of a node's state, counters and renew-latency histogram.
#pragma once

#include <optional>
#include <string>

#include "hacoord/node.h"
#include "hacoord/node_status.h"
#include "manager/http_server.h"
#include "vip/vip_manager.h"

namespace hacoord {

struct MetricsInput {
  NodeStatus status;
  NodeStats stats;
  std::optional<VipMetrics> vip;
  std::optional<HttpServerStats> http;
};

// Every series carries node="<nodeId>"; the VIP acts carry the epoch as a gauge.
std::string renderMetrics(const MetricsInput& in);

}  // namespace hacoord
