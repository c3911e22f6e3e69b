// HooksObserver on a real HookRunner: renewals piling up behind a slow hook are coalesced within
// one epoch only, so the application never hears of a term out of order.
#include "node/hooks_observer.h"

#include <chrono>
#include <future>
#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/runtime.h"
#include "support/eventually.h"

namespace hacoord {
namespace {

using namespace std::chrono_literals;

// Records every call; the first onBecomeLeader blocks until the test opens the gate (a slow
// database promote).
class SlowHooks final : public Hooks {
 public:
  Status onBecomeLeader(Epoch epoch) override {
    note("become " + epoch.toString());
    if (!blocked_once_) {
      blocked_once_ = true;
      gate_.wait();
    }
    return Status::ok();
  }
  Status onLoseLeadership(Epoch epoch, LossReason) override {
    note("lose " + epoch.toString());
    return Status::ok();
  }
  void onLeaseRenewed(Epoch epoch, TimePoint) override { note("renewed " + epoch.toString()); }
  void open() { promise_.set_value(); }
  std::vector<std::string> calls() {
    std::lock_guard lock(mutex_);
    return calls_;
  }

 private:
  void note(std::string call) {
    std::lock_guard lock(mutex_);
    calls_.push_back(std::move(call));
  }
  std::mutex mutex_;
  std::vector<std::string> calls_;
  bool blocked_once_ = false;  // hc-hooks only
  std::promise<void> promise_;
  std::shared_future<void> gate_{promise_.get_future().share()};
};

TEST(HooksObserverTest, RenewalsAreCoalescedWithinAnEpochNeverAcrossOne) {
  Runtime runtime;
  auto strand = runtime.makeStrand();
  auto hooks = std::make_shared<SlowHooks>();
  HookRunner runner(*strand, 10s, [](bool) {});
  HooksObserver observer(hooks, runner);
  const TimePoint t{};
  observer.onGained(Epoch(5), t, [](Status) {});  // blocks in onBecomeLeader(5)
  ASSERT_TRUE(eventually([&] { return hooks->calls().size() == 1; }, 5000ms));
  observer.onRenewed(Epoch(5), t);
  observer.onRenewed(Epoch(5), t);  // coalesced with the one queued by onGained
  observer.onLost(Epoch(5), LossReason::kLeaseExpired, [](Status) {});
  observer.onGained(Epoch(6), t, [](Status) {});
  observer.onRenewed(Epoch(6), t);
  hooks->open();
  const std::vector<std::string> expected{"become 5", "renewed 5", "lose 5", "become 6", "renewed 6"};
  EXPECT_TRUE(eventually([&] { return hooks->calls().size() >= expected.size(); }, 5000ms));
  runner.shutdown();
  EXPECT_EQ(hooks->calls(), expected) << "a renewal of epoch 6 before epoch 5 was lost and 6 gained";
}

}  // namespace
}  // namespace hacoord
