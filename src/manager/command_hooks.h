// CommandHooks: the daemon's Hooks. Logs every leadership event and runs the notify commands of
// the config's `hooks` section (keepalived's notify_master/notify_backup) through /bin/sh -c.
//
// Each command gets HACOORD_CLUSTER, HACOORD_NODE, HACOORD_EPOCH, HACOORD_LEADER and
// HACOORD_REASON (and HACOORD_EVENT: become-leader, lose-leadership, leader-change) in its
// environment; its stdout and stderr go line by line to the daemon's log under the "hooks" logger,
// prefixed with the hook's name. It is killed (its whole process group) at election.hookTimeLimitMs.
//  - onBecomeLeader: runs after the VIP is up; anything but exit 0 makes the node step down.
//  - onLoseLeadership: runs after the VIP is down; anything but exit 0 (or a timeout) keeps the
//    lease from being handed over: it is left to expire, as after a crash.
//  - onLeaderChange: informational; its outcome is logged only.
//
// Threading: called on hc-hooks, one call at a time (Hooks' contract); each call blocks that thread
// for at most the time limit. The node's own HookRunner counts the same limit from queue time and
// takes the node out of candidacy while a call overruns.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "hacoord/config.h"
#include "hacoord/hooks.h"

namespace spdlog {
class logger;
}  // namespace spdlog

namespace hacoord {

class CommandHooks final : public Hooks {
 public:
  explicit CommandHooks(const Config& config);
  Status onBecomeLeader(Epoch epoch) override;
  Status onLoseLeadership(Epoch epoch, LossReason reason) override;
  void onLeaderChange(std::string_view leader, Epoch epoch) override;

 private:
  Status run(std::string_view hook, const std::string& command, Epoch epoch, std::string_view leader,
             std::string_view reason, std::string_view event);

  std::string cluster_;
  std::string node_;
  NotifyHooksConfig commands_;
  milliseconds limit_;
  std::shared_ptr<spdlog::logger> daemon_log_;
  std::shared_ptr<spdlog::logger> hooks_log_;
};

}  // namespace hacoord
