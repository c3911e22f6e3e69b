// CommandHooks: see command_hooks.h.
#include "manager/command_hooks.h"

#include <algorithm>
#include <chrono>
#include <utility>
#include <vector>

#include "core/hook_runner.h"
#include "core/logging.h"
#include "core/shell.h"

namespace hacoord {

CommandHooks::CommandHooks(const Config& config)
    : cluster_(config.cluster_id),
      node_(config.node_id),
      commands_(config.hooks),
      limit_(config.election.hook_time_limit),
      daemon_log_(moduleLogger("daemon")),
      hooks_log_(moduleLogger("hooks")) {}

Status CommandHooks::onBecomeLeader(Epoch epoch) {
  daemon_log_->info("{} is now LEADER (epoch {})", node_, epoch.value());
  return run("onBecomeLeader", commands_.on_become_leader, epoch, node_, "elected", "become-leader");
}

Status CommandHooks::onLoseLeadership(Epoch epoch, LossReason reason) {
  daemon_log_->info("{} is no longer leader of epoch {} ({})", node_, epoch.value(), lossReasonName(reason));
  return run("onLoseLeadership", commands_.on_lose_leadership, epoch, "", lossReasonName(reason),
             "lose-leadership");
}

void CommandHooks::onLeaderChange(std::string_view leader, Epoch epoch) {
  daemon_log_->info("leader is now '{}' (epoch {})", leader, epoch.value());
  (void)run("onLeaderChange", commands_.on_leader_change, epoch, leader, leader.empty() ? "vacant" : "leader",
            "leader-change");
}

Status CommandHooks::run(std::string_view hook, const std::string& command, Epoch epoch,
                         std::string_view leader, std::string_view reason, std::string_view event) {
  if (command.empty()) return Status::ok();
  const std::vector<std::pair<std::string, std::string>> env = {
      {"HACOORD_CLUSTER", cluster_},
      {"HACOORD_NODE", node_},
      {"HACOORD_EPOCH", std::to_string(epoch.value())},
      {"HACOORD_LEADER", std::string(leader)},
      {"HACOORD_REASON", std::string(reason)},
      {"HACOORD_EVENT", std::string(event)},
  };
  // The limit counts from when the hook was queued (HookRunner): a command that waited behind a
  // slow one gets only what is left, so it never outlives its limit.
  milliseconds limit = limit_;
  if (const auto deadline = HookRunner::currentDeadline();
      deadline != std::chrono::steady_clock::time_point::max()) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left <= milliseconds(0)) {
      const std::string what = std::string(hook) + " command (epoch " + std::to_string(epoch.value()) +
                               "): not started: its time limit of " + std::to_string(limit_.count()) +
                               " ms passed while it waited behind another hook";
      hooks_log_->warn("{}", what);
      return deadlineExceeded(what);
    }
    limit = std::min(limit, left);
  }
  const ShellRun r =
      runShell(command, env, limit, [&](std::string_view line) { hooks_log_->info("{}: {}", hook, line); });
  if (r.ok()) {
    hooks_log_->debug("{} (epoch {}): exit 0", hook, epoch.value());
    return Status::ok();
  }
  std::string what = std::string(hook) + " command (epoch " + std::to_string(epoch.value()) + "): ";
  what += r.timed_out ? "no exit within " + std::to_string(limit.count()) + " ms (process group killed)"
                      : r.describe();
  hooks_log_->warn("{}", what);
  return internalError(what);
}

}  // namespace hacoord
