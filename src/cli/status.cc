// `hacoord status`: the lease record plus every daemon's own status, one table; never campaigns.
#include <chrono>
#include <cstdio>

#include <json/json.h>

#include <thread>

#include "cli/cli.h"
#include "hacoord/manager.h"
#include "core/logging.h"
#include "nats/nats_connection.h"
#include "health/health_service.h"
#include "nats/nats_control.h"
#include "nats/nats_lease_store.h"

namespace hacoord::cli {

namespace {

// One snapshot: the lease record (read directly) and the nodes that answer on the status subject.
int printStatusOnce(const Config& config, bool json) {
  auto connection = NatsConnection::connect(config.nats, "hacoord-status", {});
  if (!connection.isOk()) {
    printError("status: " + connection.status().toString());
    return kExitFailure;
  }
  auto lease = readLeaseOnce(**connection, config.bucketName());
  // The record's age is taken now, not after the gather below has waited its window.
  const auto now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  if (!lease.isOk()) {
    printError("status: " + lease.status().toString());
    return kExitFailure;
  }
  auto nodes = gatherStatus(**connection, config.cluster_id, milliseconds(300));
  const LeaseEntry& e = lease->entry;
  const LeaseRecord& r = e.record;
  // Age compares our wall clock with the NATS server's: display only, never used for decisions.
  const long long age_ms = e.exists() ? (now_ns - lease->created_unix_ns) / 1000000 : -1;
  const bool expired = e.hasRecord() && !r.vacant() && age_ms > r.lease.count();
  const std::string leader = (!e.hasRecord() || r.vacant() || expired) ? "" : r.holder;

  if (json) {
    Json::Value v(Json::objectValue);
    v["cluster"] = config.cluster_id;
    v["leader"] = leader;
    v["holder"] = r.holder;
    v["epoch"] = Json::UInt64(r.epoch.value());
    v["revision"] = Json::UInt64(e.revision);
    v["ageMs"] = Json::Int64(age_ms);
    v["leaseMs"] = Json::Int64(r.lease.count());
    v["vacant"] = !e.exists() || (e.hasRecord() && r.vacant());
    v["record"] = std::string(leaseEntryKindName(e.kind));
    v["expired"] = expired;
    v["successor"] = r.successor;
    v["nodes"] = Json::Value(Json::arrayValue);
    if (nodes.isOk()) {
      for (const auto& n : *nodes) {
        Json::Value parsed;
        Json::Reader().parse(n.toJson(), parsed);
        v["nodes"].append(parsed);
      }
    }
    Json::StreamWriterBuilder w;
    w["indentation"] = "";
    std::printf("%s\n", Json::writeString(w, v).c_str());
    return kExitOk;
  }
  std::string leader_text = leader;
  if (!e.exists())
    leader_text = "(none: no node has ever held the lease)";
  else if (e.kind == LeaseEntryKind::kMarker)
    leader_text = "(unknown: the record was deleted by hand; nodes wait a full TTL before campaigning)";
  else if (e.kind == LeaseEntryKind::kUndecodable)
    leader_text = "(unknown: the key holds no lease record: " + lease->decode_error + ")";
  else if (r.vacant())
    leader_text = "(vacant: handed over)";
  else if (expired)
    leader_text = "(none: lease of " + r.holder + " expired)";
  std::printf("cluster   %s\n", config.cluster_id.c_str());
  std::printf("leader    %s\n", leader_text.c_str());
  if (e.hasRecord()) std::printf("epoch     %llu\n", static_cast<unsigned long long>(r.epoch.value()));
  if (e.exists()) std::printf("revision  %llu\n", static_cast<unsigned long long>(e.revision));
  if (e.hasRecord()) {
    std::printf("age       %lld ms (lease %lld ms)\n", age_ms, static_cast<long long>(r.lease.count()));
  }
  if (!r.successor.empty()) std::printf("successor %s\n", r.successor.c_str());
  std::printf("\n");
  if (!nodes.isOk()) {
    std::printf("(no daemon answered on %s)\n", statusSubject(config.cluster_id).c_str());
    return kExitOk;
  }
  std::printf("%-16s %-9s %-6s %-8s %-9s %-20s %s\n", "NODE", "ROLE", "EPOCH", "HEALTHY", "CANDIDATE", "VIP",
              "UPTIME");
  for (const auto& n : *nodes) {
    std::string vip = n.vip.address.empty() ? "-" : n.vip.address + (n.vip.held ? " (held)" : "");
    std::printf("%-16s %-9s %-6llu %-8s %-9s %-20s %llds\n", n.node_id.c_str(), n.role.c_str(),
                static_cast<unsigned long long>(n.epoch), n.healthy ? "yes" : "NO",
                n.candidate ? "yes" : "no", vip.c_str(), static_cast<long long>(n.uptime_ms / 1000));
  }
  for (const auto& n : *nodes) {
    if (n.peers.empty()) continue;
    std::printf("\nmesh peers of %s\n", n.node_id.c_str());
    printPeers(n.peers, "  ");
  }
  return kExitOk;
}

}  // namespace

void printPeers(const std::vector<PeerStatus>& peers, const char* indent) {
  std::printf("%s%-16s %-18s %-10s %-16s %-17s %s\n", indent, "PEER", "STATE", "RTT", "DIVISION",
              "INCARNATION", "ADDRESS");
  for (const PeerStatus& p : peers) {
    const std::string state = p.reason.empty() ? p.state : p.state + "/" + p.reason;
    char rtt[32] = "-";  // also before the first PING round trip was measured
    if ((p.state == "alive" || p.state == "suspect") && p.rtt_ms > 0) {
      std::snprintf(rtt, sizeof rtt, "%.2fms", p.rtt_ms);
    }
    std::printf("%s%-16s %-18s %-10s %-16s %-17llu %s\n", indent, p.id.c_str(), state.c_str(), rtt,
                p.division.empty() ? "-" : p.division.c_str(), static_cast<unsigned long long>(p.incarnation),
                p.address.empty() ? "-" : p.address.c_str());
  }
}

int runPeers(const Args& args) {
  Config config;
  if (!loadConfigOption(args, config)) return kExitConfig;
  setLogLevel("warn");
  if (!config.mesh.enabled()) {
    printError("peers: node " + config.node_id +
               " has no mesh (no \"mesh\" section with a listen address in " + args.options.at("config") +
               ")");
    return kExitFailure;
  }
  auto status = Manager::health(config, config.node_id, milliseconds(2000));
  if (!status.isOk()) {
    printError("peers: node " + config.node_id + " did not answer: " + status.status().toString());
    return kExitFailure;
  }
  if (args.has("json")) {
    Json::Value parsed;
    Json::Reader().parse(status->toJson(), parsed);
    Json::Value v(Json::objectValue);
    v["node"] = config.node_id;
    v["peers"] = parsed.isMember("peers") ? parsed["peers"] : Json::Value(Json::arrayValue);
    Json::StreamWriterBuilder w;
    w["indentation"] = "";
    std::printf("%s\n", Json::writeString(w, v).c_str());
    return kExitOk;
  }
  if (status->peers.empty()) {
    std::printf("(node %s knows no mesh peers yet)\n", config.node_id.c_str());
    return kExitOk;
  }
  printPeers(status->peers);
  return kExitOk;
}

int runStatus(const Args& args) {
  Config config;
  if (!loadConfigOption(args, config)) return kExitConfig;
  setLogLevel("warn");  // stdout is the answer; connection chatter would only be noise
  if (!args.has("watch")) return printStatusOnce(config, args.has("json"));
  for (;;) {  // until Ctrl-C
    if (!args.has("json")) std::printf("\033[H\033[2J");
    printStatusOnce(config, args.has("json"));
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

}  // namespace hacoord::cli
