// NodeStatus <-> JSON: strict on types so a garbled reply is an error, not a default.
#include "hacoord/node_status.h"

#include <cmath>

#include <json/json.h>

#include "core/json_reader.h"

namespace hacoord {
namespace {

// Replies are small and machine-written: no comments. A NUL inside a check's output is kept.
json::Rules statusRules() {
  json::Rules rules;
  rules.nul_in_strings = true;
  return rules;
}

bool isRoleName(std::string_view role) { return role == "leader" || role == "follower" || role == "stopped"; }

bool isPeerStateName(std::string_view s) {
  return s == "connecting" || s == "alive" || s == "suspect" || s == "dead";
}

bool validRtt(double ms) { return std::isfinite(ms) && ms >= 0; }

bool isDeadReasonName(std::string_view r) {
  return r.empty() || r == "unreachable" || r == "departed" || r == "restarted" || r == "identity" ||
         r == "protocol";
}

}  // namespace

std::string NodeStatus::toJson() const {
  Json::Value v(Json::objectValue);
  v["nodeId"] = node_id;
  v["role"] = role;
  v["leader"] = leader;
  v["epoch"] = Json::UInt64(epoch);
  v["uptimeMs"] = Json::Int64(uptime_ms);
  v["natsConnected"] = nats_connected;
  Json::Value vip_json(Json::objectValue);
  vip_json["address"] = vip.address;
  vip_json["held"] = vip.held;
  v["vip"] = std::move(vip_json);
  Json::Value checks_json(Json::arrayValue);
  for (const CheckStatus& c : checks) {
    Json::Value cj(Json::objectValue);
    cj["name"] = c.name;
    cj["type"] = c.type;
    cj["healthy"] = c.healthy;
    cj["lastResult"] = c.last_result;
    cj["consecutivePasses"] = c.consecutive_passes;
    cj["consecutiveFailures"] = c.consecutive_failures;
    checks_json.append(std::move(cj));
  }
  v["checks"] = std::move(checks_json);
  v["healthy"] = healthy;
  v["candidate"] = candidate;
  v["hooksOverrunning"] = hooks_overrunning;
  v["version"] = version;
  if (!peers.empty()) {
    Json::Value peers_json(Json::arrayValue);
    for (const PeerStatus& p : peers) {
      Json::Value pj(Json::objectValue);
      pj["id"] = p.id;
      pj["state"] = p.state;
      pj["reason"] = p.reason;
      pj["division"] = p.division;
      pj["type"] = p.type;
      pj["incarnation"] = Json::UInt64(p.incarnation);
      pj["rttMs"] = p.rtt_ms;
      pj["rttP99Ms"] = p.rtt_p99_ms;
      pj["address"] = p.address;
      peers_json.append(std::move(pj));
    }
    v["peers"] = std::move(peers_json);
  }
  Json::StreamWriterBuilder writer;
  writer["indentation"] = "";
  return Json::writeString(writer, v);
}

Result<NodeStatus> NodeStatus::fromJson(std::string_view text) {
  Result<json::Document> doc = json::Document::parse(text, statusRules());
  if (!doc.isOk()) return invalidArgument("status JSON: not valid JSON: " + doc.status().message());
  json::Problems problems;
  NodeStatus s;
  // Unknown keys are ignored at every level: a newer node may add fields.
  if (auto top = doc->root(problems).object(json::kIgnoreUnknownKeys)) {
    top->require("nodeId", s.node_id);
    if (top->require("role", s.role) && !isRoleName(s.role)) {
      top->fail("role", "must be leader, follower or stopped (got " + json::quote(s.role) + ")");
    }
    top->require("leader", s.leader);
    top->require("epoch", s.epoch);
    top->require("uptimeMs", s.uptime_ms, 0);
    top->require("natsConnected", s.nats_connected);
    if (auto vip = top->require("vip").object(json::kIgnoreUnknownKeys)) {
      vip->require("address", s.vip.address);
      vip->require("held", s.vip.held);
    }
    if (auto checks = top->require("checks").array("objects")) {
      for (const json::Value& item : *checks) {
        auto check = item.object(json::kIgnoreUnknownKeys);
        if (!check) break;
        CheckStatus c;
        check->require("name", c.name);
        check->require("type", c.type);
        check->require("healthy", c.healthy);
        check->require("lastResult", c.last_result);
        check->require("consecutivePasses", c.consecutive_passes, 0);
        check->require("consecutiveFailures", c.consecutive_failures, 0);
        s.checks.push_back(std::move(c));
      }
    }
    top->require("healthy", s.healthy);
    top->require("candidate", s.candidate);
    top->read("hooksOverrunning", s.hooks_overrunning);  // optional: older nodes do not send it
    top->require("version", s.version);
    // Optional: older nodes and nodes without a mesh do not send it. Strict when present.
    if (auto peers = top->get("peers").array("objects")) {
      for (const json::Value& item : *peers) {
        auto peer = item.object(json::kIgnoreUnknownKeys);
        if (!peer) break;
        PeerStatus p;
        peer->require("id", p.id);
        if (peer->require("state", p.state) && !isPeerStateName(p.state)) {
          peer->fail("state",
                     "must be connecting, alive, suspect or dead (got " + json::quote(p.state) + ")");
        }
        if (peer->require("reason", p.reason) && !isDeadReasonName(p.reason)) {
          peer->fail("reason", "must be empty, unreachable, departed, restarted, identity or protocol (got " +
                                   json::quote(p.reason) + ")");
        }
        peer->require("division", p.division);
        peer->require("type", p.type);
        peer->require("incarnation", p.incarnation);
        if (peer->require("rttMs", p.rtt_ms) && !validRtt(p.rtt_ms)) {
          peer->fail("rttMs", "must be at least 0 and finite");
        }
        if (peer->require("rttP99Ms", p.rtt_p99_ms) && !validRtt(p.rtt_p99_ms)) {
          peer->fail("rttP99Ms", "must be at least 0 and finite");
        }
        peer->require("address", p.address);
        s.peers.push_back(std::move(p));
      }
    }
  }
  if (!problems.ok()) return problems.toStatus("status JSON");
  return s;
}

}  // namespace hacoord
