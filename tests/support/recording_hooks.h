// RecordingHooks: the application's Hooks as a test sees them: every call recorded with its
// steady-clock times, failures on demand. One helper for every test that drives a Node or Manager.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hacoord/hooks.h"
#include "hacoord/status.h"
#include "support/eventually.h"

namespace hacoord::test {

using SteadyTime = std::chrono::steady_clock::time_point;
inline SteadyTime steadyNow() { return std::chrono::steady_clock::now(); }

struct HookEvent {
  enum class Kind { kBecome, kLose, kChange };
  Kind kind;
  Epoch epoch;
  LossReason reason = LossReason::kStopped;  // kLose only
  std::string leader;                        // kChange only
  SteadyTime t;                              // when the hook was entered
  SteadyTime t_end;                          // when it returned
};

inline std::string describe(const HookEvent& e) {
  switch (e.kind) {
    case HookEvent::Kind::kBecome:
      return "become(" + e.epoch.toString() + ")";
    case HookEvent::Kind::kLose:
      return "lose(" + e.epoch.toString() + "," + std::string(lossReasonName(e.reason)) + ")";
    case HookEvent::Kind::kChange:
      return "change('" + e.leader + "'," + e.epoch.toString() + ")";
  }
  return "?";
}

// Records every hook call with steady-clock times. Optional behaviour for tests: fail
// onBecomeLeader, or run a function inside onLoseLeadership (e.g. read the lease record).
class RecordingHooks final : public Hooks {
 public:
  Status onBecomeLeader(Epoch epoch) override {
    HookEvent e{HookEvent::Kind::kBecome, epoch, LossReason::kStopped, "", steadyNow(), {}};
    const bool fail = fail_become.load();
    e.t_end = steadyNow();
    add(e);
    if (fail) return internalError("test hook refuses leadership of epoch " + epoch.toString());
    return Status::ok();
  }
  Status onLoseLeadership(Epoch epoch, LossReason reason) override {
    HookEvent e{HookEvent::Kind::kLose, epoch, reason, "", steadyNow(), {}};
    std::function<void(Epoch, LossReason)> fn;
    {
      std::lock_guard lock(mutex_);
      fn = on_lose_;
    }
    if (fn) fn(epoch, reason);
    e.t_end = steadyNow();
    add(e);
    if (fail_lose.load()) return internalError("test hook could not stop epoch " + epoch.toString());
    return Status::ok();
  }
  void onLeaderChange(std::string_view leader, Epoch epoch) override {
    add({HookEvent::Kind::kChange, epoch, LossReason::kStopped, std::string(leader), steadyNow(),
         steadyNow()});
  }

  void setOnLose(std::function<void(Epoch, LossReason)> fn) {
    std::lock_guard lock(mutex_);
    on_lose_ = std::move(fn);
  }

  std::vector<HookEvent> events() const {
    std::lock_guard lock(mutex_);
    return events_;
  }
  std::optional<HookEvent> find(HookEvent::Kind kind, Epoch epoch) const {
    std::lock_guard lock(mutex_);
    for (const auto& e : events_) {
      if (e.kind == kind && e.epoch == epoch) return e;
    }
    return std::nullopt;
  }
  // Hooks run on the node's hook thread, after role() already changed: a test that saw the role
  // change waits here for the hook rather than reading events at once.
  std::optional<HookEvent> await(HookEvent::Kind kind, Epoch epoch,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(3)) const {
    std::optional<HookEvent> found;
    eventually([&] { return (found = find(kind, epoch)).has_value(); }, timeout,
               std::chrono::milliseconds(1));
    return found;
  }
  std::string trace() const {
    std::string out;
    for (const auto& e : events()) out += describe(e) + " ";
    return out;
  }

  std::atomic<bool> fail_become{false};
  std::atomic<bool> fail_lose{false};

 private:
  void add(const HookEvent& e) {
    std::lock_guard lock(mutex_);
    events_.push_back(e);
  }

  mutable std::mutex mutex_;
  std::vector<HookEvent> events_;
  std::function<void(Epoch, LossReason)> on_lose_;
};

}  // namespace hacoord::test
