// `hacoord health|promote|demote|join|leave|init`: requests to running daemons, and a sample config.
#include <cstdio>
#include <fstream>

#include "cli/cli.h"
#include "hacoord/manager.h"

namespace hacoord::cli {
namespace {

// What `hacoord init` writes: every section, commented, valid as it stands.
constexpr const char* kSampleConfig =
    R"(// hacoord node configuration (JSON with // comments). Reference: docs/configuration.md
{
  // Nodes with the same clusterId elect one leader. Ids: [A-Za-z0-9_-], at most 64 characters.
  "clusterId": "%CLUSTER%",
  "nodeId": "%NODE%",

  // The highest epoch (fencing token) this node has seen, kept across restarts so that epochs
  // never repeat. A persistent directory the daemon can write (systemd: StateDirectory=hacoord).
  "stateDir": "/var/lib/hacoord",

  "nats": {
    // Every server of the NATS cluster; tls:// selects TLS.
    "servers": ["nats://127.0.0.1:4222"]
    // "credentials": "/etc/hacoord/node.creds",
    // or, instead of credentials: "user": "hacoord", "passwordFile": "/etc/hacoord/nats-password",
    // "tls": { "ca": "/etc/hacoord/ca.pem", "cert": "/etc/hacoord/node.pem", "key": "/etc/hacoord/node.key" }
  },

  "election": {
    // A crashed leader is replaced within leaseTtlMs. On a 3-node NATS cluster (bucketReplicas 3)
    // a NATS server crash stops KV writes for ~6 s: a TTL under ~10 s then moves leadership.
    "leaseTtlMs": 2000,
    "renewIntervalMs": 500,   // less than half the TTL
    "bucketReplicas": 1,
    "candidate": true         // false: observe only, until `hacoord join`
  },

  // The virtual IP that follows the leader. Needs CAP_NET_ADMIN and CAP_NET_RAW.
  // Remove this section to run without a VIP.
  "vip": {
    "address": "192.0.2.100",
    "netmask": 32,
    "interface": "eth0"
  },

  "health": {
    // A leader whose checks fail for failAfterMs hands over; a failing node does not campaign.
    // e.g. [{ "name": "postgres", "type": "command", "command": "pg_isready -q", "intervalMs": 1000 }]
    "checks": [],
    "failAfterMs": 3000
  },

  // Shell commands (/bin/sh -c) on leadership changes, each within election.hookTimeLimitMs, with
  // HACOORD_CLUSTER, HACOORD_NODE, HACOORD_EPOCH, HACOORD_LEADER and HACOORD_REASON set; output
  // goes to the log. onBecomeLeader runs after the VIP is added (non-zero exit: step down);
  // onLoseLeadership after it is removed (non-zero exit: the lease is left to expire, not handed over).
  // "hooks": {
  //   "onBecomeLeader": "/etc/hacoord/become-leader.sh",
  //   "onLoseLeadership": "/etc/hacoord/lose-leadership.sh",
  //   "onLeaderChange": ""
  // },

  // /healthz, /readyz and Prometheus /metrics.
  "http": { "listen": "127.0.0.1:9180" },

  "log": { "level": "info" }
}
)";

std::string replaceAll(std::string text, const std::string& from, const std::string& to) {
  for (auto pos = text.find(from); pos != std::string::npos; pos = text.find(from, pos + to.size())) {
    text.replace(pos, from.size(), to);
  }
  return text;
}

int report(const std::string& what, const Status& s) {
  if (!s.isOk()) {
    printError(what + ": " + s.toString());
    return kExitFailure;
  }
  std::printf("%s: ok\n", what.c_str());
  return kExitOk;
}

}  // namespace

int runControl(const Args& args) {
  Config config;
  if (!loadConfigOption(args, config)) return kExitConfig;
  const std::string node = args.positional.empty() ? "" : args.positional.front();
  const std::string& cmd = args.command;
  if (cmd == "health") {
    if (node.empty()) return printError("health: NODE is required"), kExitUsage;
    auto s = Manager::health(config, node, milliseconds(2000));
    if (!s.isOk()) return printError("health " + node + ": " + s.status().toString()), kExitFailure;
    if (args.has("json")) {
      std::printf("%s\n", s->toJson().c_str());
    } else {
      std::printf(
          "node      %s\nrole      %s\nleader    %s\nepoch     %llu\nhealthy   %s\n"
          "candidate %s\nnats      %s\n",
          s->node_id.c_str(), s->role.c_str(), s->leader.c_str(), static_cast<unsigned long long>(s->epoch),
          s->healthy ? "yes" : "no", s->candidate ? "yes" : "no",
          s->nats_connected ? "connected" : "disconnected");
      if (s->hooks_overrunning) std::printf("hooks     a hook is past its time limit\n");
      if (!s->vip.address.empty()) {
        std::printf("vip       %s (%s)\n", s->vip.address.c_str(), s->vip.held ? "held" : "not held");
      }
      for (const auto& c : s->checks) {
        std::printf("check     %-16s %-4s %s\n", c.name.c_str(), c.healthy ? "ok" : "FAIL",
                    c.last_result.c_str());
      }
      if (!s->peers.empty()) {
        std::printf("mesh peers\n");
        printPeers(s->peers, "  ");
      }
    }
    return s->healthy ? kExitOk : kExitFailure;
  }
  // --force: past the handover rate limit (one per election.cooldownMs across the cluster); the
  // leader accepts it only from the operator's NATS user (stepdown.force).
  ControlOptions options;
  options.force = args.has("force");
  if (cmd == "promote") {
    if (node.empty()) return printError("promote: NODE is required"), kExitUsage;
    return report("promote " + node, Manager::promote(config, node, options));
  }
  if (cmd == "demote")
    return report("demote" + (node.empty() ? "" : " " + node), Manager::demote(config, node, options));
  if (options.force) return printError(cmd + ": --force is for promote and demote"), kExitUsage;
  const std::string target = node.empty() ? config.node_id : node;
  if (cmd == "join") return report("join " + target, Manager::join(config, target));
  if (cmd == "leave") return report("leave " + target, Manager::leave(config, target));
  printError("unknown command '" + cmd + "'");
  return kExitUsage;
}

int runInit(const Args& args) {
  auto get = [&](const char* key, const char* fallback) {
    auto it = args.options.find(key);
    return it == args.options.end() ? std::string(fallback) : it->second;
  };
  const std::string cluster = get("cluster", "demo");
  const std::string node = get("node", "node1");
  if (!isValidId(cluster) || !isValidId(node)) {
    printError("init: --cluster and --node must be [A-Za-z0-9_-]{1,64}");
    return kExitUsage;
  }
  const std::string text = replaceAll(replaceAll(kSampleConfig, "%CLUSTER%", cluster), "%NODE%", node);
  if (args.positional.empty()) {
    std::fputs(text.c_str(), stdout);
    return kExitOk;
  }
  const std::string& path = args.positional.front();
  if (std::ifstream(path).good() && !args.has("force")) {
    printError("init: " + path + " exists (use --force to overwrite)");
    return kExitFailure;
  }
  std::ofstream out(path);
  out << text;
  if (!out.good()) {
    printError("init: cannot write " + path);
    return kExitFailure;
  }
  std::printf("wrote %s\n", path.c_str());
  return kExitOk;
}

}  // namespace hacoord::cli
