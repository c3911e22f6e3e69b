// LeadershipBus: the elector's leadership events, delivered in order to the parts that act on them.
//
// Subscribers (LeadershipObserver) are, in order: the VIP (the Manager's), later the locks and the
// store, and last the application's hooks. Each runs on an executor of its own (the VIP on its
// strand, the hooks on hc-hooks), so a slow hook never delays VIP upkeep, and the bus itself runs on
// the elector's strand and never blocks.
//
// Order (DESIGN §4, README "hooks"):
//  - gained: each observer is told only once every observer before it has finished gaining OK (the
//    VIP is up before onBecomeLeader runs). A failure stops the chain (later observers never hear
//    of that epoch) and makes the node step down.
//  - lost: only observers that were told of the gain hear of the loss, in the same order, each
//    once the one before finished (the VIP is off before onLoseLeadership runs). The elector's
//    `released` gets true only if every one of them reported OK: otherwise a planned handover
//    leaves the lease to expire instead of handing it over while something may still be live.
//  - renewed and leader-changed: to every observer at once, behind its own earlier events (an
//    observer never hears of a renewal or of "the leader is you" before the gain it belongs to).
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "election/elector.h"
#include "hacoord/epoch.h"
#include "hacoord/hooks.h"
#include "hacoord/scheduler.h"
#include "hacoord/status.h"

namespace hacoord {

// Calls arrive on the bus's strand and must return at once; `done` may be called later, from any
// thread, exactly once.
class LeadershipObserver {
 public:
  virtual ~LeadershipObserver() = default;
  virtual std::string_view name() const = 0;
  // This node leads `epoch` until `valid_until` (lease clock). done(OK) once ready (the VIP is on).
  virtual void onGained(Epoch epoch, TimePoint valid_until, std::function<void(Status)> done) = 0;
  // A renewal was confirmed: the lease now runs until `valid_until`.
  virtual void onRenewed(Epoch epoch, TimePoint valid_until) = 0;
  // Stop acting for `epoch`. done(OK) once leader-only resources are gone.
  virtual void onLost(Epoch epoch, LossReason reason, std::function<void(Status)> done) = 0;
  // The cluster's leader is now `leader` ("" while vacant or unknown).
  virtual void onLeaderChanged(const std::string& leader, Epoch epoch) = 0;
};

class LeadershipBus {
 public:
  // `strand` is the elector's scheduler: every method is called there.
  explicit LeadershipBus(Scheduler& strand);
  ~LeadershipBus();
  LeadershipBus(const LeadershipBus&) = delete;
  LeadershipBus& operator=(const LeadershipBus&) = delete;

  // Before the first event; in delivery order.
  void add(LeadershipObserver& observer);
  // How a failed gain makes the node step down (the elector's stepDown with kHookFailed).
  void setStepDown(std::function<void(Epoch, Status)> step_down) { step_down_ = std::move(step_down); }

  void gained(Epoch epoch, TimePoint valid_until);
  void renewed(Epoch epoch, TimePoint valid_until);
  void lost(Epoch epoch, LossReason reason, std::function<void(bool released)> released);
  void leaderChanged(const std::string& leader, Epoch epoch);

 private:
  struct Event {
    enum class Kind { kGain, kRenew, kLose, kChange } kind;
    Epoch epoch;
    TimePoint until{};
    LossReason reason = LossReason::kStopped;
    std::string leader;
  };
  struct Slot {
    LeadershipObserver* observer = nullptr;
    std::deque<Event> queue;
    Epoch told;       // the epoch whose onGained was delivered (0: none)
    Epoch gained_ok;  // the epoch whose onGained finished OK
    Epoch lost_done;  // the epoch whose onLost finished (or was skipped)
  };
  struct Release {
    Epoch epoch;
    std::function<void(bool)> released;
    bool ok = true;
  };

  void enqueue(const Event& event);
  void pump();
  bool deliver(std::size_t index);  // false: the head of the slot's queue must wait
  void finishRelease();

  Scheduler& strand_;
  std::vector<Slot> slots_;
  std::function<void(Epoch, Status)> step_down_;
  Epoch ended_;   // the latest epoch lost: its pending gains are dropped
  Epoch failed_;  // the latest epoch whose gain chain failed
  std::deque<Release> releases_;
  bool pumping_ = false;
  bool pump_again_ = false;
  std::shared_ptr<bool> alive_;
};

// The elector's listener that feeds the bus, plus the snapshot and counters a Node publishes.
class BusListener : public ElectorListener {
 public:
  explicit BusListener(LeadershipBus& bus) : bus_(bus) {}
  void onBecomeLeader(Epoch epoch, TimePoint valid_until) override { bus_.gained(epoch, valid_until); }
  void onLoseLeadership(Epoch epoch, LossReason reason, std::function<void(bool)> released) override {
    bus_.lost(epoch, reason, std::move(released));
  }
  void onLeaderChange(const std::string& leader, Epoch epoch) override { bus_.leaderChanged(leader, epoch); }
  void onRenewed(Epoch epoch, TimePoint valid_until, Duration latency) override {
    (void)latency;
    bus_.renewed(epoch, valid_until);
  }

 private:
  LeadershipBus& bus_;
};

}  // namespace hacoord
