// Manager: the HA daemon around a Node (VIP, health checks, status and control over NATS, HTTP),
// and the client calls the CLI makes to running daemons.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "hacoord/config.h"
#include "hacoord/hooks.h"
#include "hacoord/node.h"
#include "hacoord/node_status.h"
#include "hacoord/status.h"

namespace hacoord {

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
  // SIGHUP: new log level and health checks. Other changes need a restart (they are ignored).
  Status reload(const Config& config);
  // The daemon's main loop: start(), then wait for signals. SIGHUP reloads `config_path`;
  // SIGTERM / SIGINT stop() (planned handover) and return OK. Blocks those signals in the calling
  // thread before any thread starts, so call it from main() before creating other threads.
  Status runDaemon(const std::string& config_path);

  NodeStatus status() const;
  Node& node();
  // The HTTP listener's port (0 when none): lets tests and tools use "host:0".
  int httpPort() const;

  // --- Client side: requests to running daemons over NATS; these never join the election. ---
  // Every node's status, gathered for `window`. Unavailable when no node answers.
  static Result<std::vector<NodeStatus>> clusterStatus(const Config& config, milliseconds window);
  static Result<NodeStatus> health(const Config& config, const std::string& node,
                                   milliseconds timeout);
  // Asks `node` to take over from the live leader (planned handover to it).
  static Status promote(const Config& config, const std::string& node);
  // Asks `node` ("" = the current leader) to hand over.
  static Status demote(const Config& config, const std::string& node);
  // Makes `node` enter (join) or leave candidacy without stopping it.
  static Status join(const Config& config, const std::string& node);
  static Status leave(const Config& config, const std::string& node);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hacoord
