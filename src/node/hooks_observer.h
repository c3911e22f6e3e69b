// HooksObserver: the application's Hooks as the last LeadershipObserver, on the hc-hooks thread.
#pragma once

#include <memory>
#include <mutex>
#include <string_view>

#include "core/hook_runner.h"
#include "hacoord/hooks.h"
#include "node/leadership.h"

namespace hacoord {

// onBecomeLeader is followed at once by a first onLeaseRenewed with the lease's deadline.
// Renewals of one epoch that pile up behind a slow hook are coalesced: only the latest is
// delivered. Renewals of different epochs never are (each stays after its own onBecomeLeader).
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
  // The renewal a queued call will deliver, while it can still be updated (under mutex_).
  std::shared_ptr<Renewal> pending_;
};

}  // namespace hacoord
