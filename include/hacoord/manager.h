// Manager: the HA daemon around a Node (VIP, health checks, status and control over NATS, HTTP),
// and the client calls the CLI makes to running daemons.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "hacoord/config.h"
#include "hacoord/hooks.h"
#include "hacoord/mesh.h"
#include "hacoord/node.h"
#include "hacoord/node_status.h"
#include "hacoord/status.h"

namespace hacoord {

// How a control request is made.
struct ControlOptions {
  // The operator overrides the handover rate limit (at most one per election.cooldownMs): sent on
  // control.<node>.stepdown.force, which only the operator's NATS user may publish.
  bool force = false;
  // Logged by the daemon that serves the request ("cli:<user>@<host>" by default).
  std::string requester;
};

// What a daemon's `sys.ping` round trips to one mesh peer measured (hacoord ping).
struct MeshPingResult {
  std::string node;                  // the daemon that pinged
  std::string peer;                  // the peer it pinged
  std::vector<std::int64_t> rtt_us;  // one per ping that was answered, in order
  std::vector<std::string> errors;   // one per ping that failed ("ping 2: ...")
};

class Manager {
 public:
  // `hooks` are the application's; the Manager runs the VIP around them (VIP on after the lease is
  // won and before onBecomeLeader; VIP off before onLoseLeadership, i.e. before the release).
  explicit Manager(Config config, std::shared_ptr<Hooks> hooks = nullptr);
  ~Manager();  // stop()
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  // Checks the VIP prerequisites (interface, CAP_NET_ADMIN / CAP_NET_RAW) first, so that a host
  // that could never hold the VIP fails now and not at failover; removes a stale VIP; then starts
  // the node, the health checks, the health/status/control responders and the HTTP listener.
  Status start();
  // Planned handover if leader (VIP off first), then everything stops. Idempotent.
  void stop();
  // SIGHUP: new log level and health checks, and the mesh's CA, certificate and key read again
  // from their files (rotated in place). Other changes need a restart (they are ignored). An error
  // (a mesh file unusable: the running certificate stays) is returned after the rest reloaded.
  Status reload(const Config& config);
  // The daemon's main loop: start(), then wait for signals. SIGHUP reloads `config_path`;
  // SIGTERM / SIGINT stop() (planned handover) and return OK; one that arrives during start() or a
  // reload waits for it and is then a planned handover too (never a default-action death). Blocks
  // those signals in the calling thread; threads inherit the mask, so call blockDaemonSignals()
  // first thing in main(), before any thread exists (hacoord daemon does).
  Status runDaemon(const std::string& config_path);
  // Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (and the threads it creates later).
  static void blockDaemonSignals();
  // Undoes blockDaemonSignals() in the calling thread (a program that blocked them first thing
  // and then turned out not to run the daemon).
  static void unblockDaemonSignals();

  NodeStatus status() const;
  Node& node();
  // The peer mesh (config section "mesh"), started with the node; nullptr when not configured or
  // before start(). Register application handlers on it (the daemon serves "sys.ping" itself).
  Mesh* mesh();
  // The HTTP listener's port (0 when none): lets tests and tools use "host:0".
  int httpPort() const;

  // --- Client side: requests to running daemons over NATS; these never join the election. ---
  // Every node's status, gathered for `window`. Unavailable when no node answers.
  static Result<std::vector<NodeStatus>> clusterStatus(const Config& config, milliseconds window);
  static Result<NodeStatus> health(const Config& config, const std::string& node, milliseconds timeout);
  // Asks the config's node (its daemon, on hacoord.<c>.health.<node>.meshping) to call `sys.ping`
  // on mesh peer `peer` `count` times (1..kMaxMeshPings, 1 s each) and report the round trips.
  // Unavailable when the daemon does not answer; FailedPrecondition naming why it could not ping
  // (no mesh, unknown or dead peer); InvalidArgument for a bad id or count.
  static constexpr int kMaxMeshPings = 100;
  static Result<MeshPingResult> meshPing(const Config& config, const std::string& peer, int count);
  // Asks the live leader to hand over to `node` (checked first: up and a candidate).
  static Status promote(const Config& config, const std::string& node, const ControlOptions& options = {});
  // Asks `node` ("" = the current leader) to hand over.
  static Status demote(const Config& config, const std::string& node, const ControlOptions& options = {});
  // Makes `node` enter (join) or leave candidacy without stopping it.
  static Status join(const Config& config, const std::string& node, const ControlOptions& options = {});
  static Status leave(const Config& config, const std::string& node, const ControlOptions& options = {});

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hacoord
