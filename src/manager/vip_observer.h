// VipObserver: the VIP follows leadership events on a strand of its own, never behind the hooks.
#pragma once

#include <string_view>

#include "hacoord/scheduler.h"
#include "node/leadership.h"
#include "vip/vip_manager.h"

namespace hacoord {

// Told of leadership before the application's hooks (LeadershipBus order): the VIP is up before
// onBecomeLeader runs and gone before onLoseLeadership runs. Renewals extend the kernel lifetime
// at once, on the VIP's strand, however long a hook takes. Everything the VIP does (acquire,
// extend, release, and its own refresh/reconcile timers) runs on that one strand, so no reconcile
// can interleave with a handover.
class VipObserver final : public LeadershipObserver {
 public:
  VipObserver(VipManager& vip, Scheduler& strand) : vip_(vip), strand_(strand) {}

  std::string_view name() const override { return "the VIP"; }
  void onGained(Epoch epoch, TimePoint valid_until, std::function<void(Status)> done) override;
  void onRenewed(Epoch epoch, TimePoint valid_until) override;
  void onLost(Epoch epoch, LossReason reason, std::function<void(Status)> done) override;
  void onLeaderChanged(const std::string&, Epoch) override {}

 private:
  VipManager& vip_;
  Scheduler& strand_;
};

}  // namespace hacoord
