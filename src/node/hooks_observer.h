// HooksObserver: the application's Hooks as the last LeadershipObserver, on the hc-hooks thread.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string_view>

#include "core/hook_runner.h"
#include "hacoord/hooks.h"
#include "node/leadership.h"

namespace hacoord {

// onBecomeLeader is followed at once by a first onLeaseRenewed with the lease's deadline.
// Renewals that pile up behind a slow hook are coalesced: only the latest is delivered.
class HooksObserver final : public LeadershipObserver {
 public:
  HooksObserver(std::shared_ptr<Hooks> hooks, HookRunner& runner);

  std::string_view name() const override { return "the application's hooks"; }
  void onGained(Epoch epoch, TimePoint valid_until, std::function<void(Status)> done) override;
  void onRenewed(Epoch epoch, TimePoint valid_until) override;
  void onLost(Epoch epoch, LossReason reason, std::function<void(Status)> done) override;
  void onLeaderChanged(const std::string& leader, Epoch epoch) override;

 private:
  struct Renewal {
    Epoch epoch;
    TimePoint valid_until;
  };
  void queueRenewal(Epoch epoch, TimePoint valid_until);

  std::shared_ptr<Hooks> hooks_;
  HookRunner& runner_;
  std::mutex mutex_;
  std::optional<Renewal> pending_;  // the latest renewal not delivered yet (under mutex_)
};

}  // namespace hacoord
