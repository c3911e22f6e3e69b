// LeadershipBus: the order in which the VIP, the locks and the hooks hear of leadership, on virtual
// time with observers whose completions the test gives by hand.
#include "node/leadership.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/logging.h"
#include "support/fake_scheduler.h"

namespace hacoord {
namespace {

using test::FakeScheduler;
using test::SimLoop;
using Lines = std::vector<std::string>;

// Logs every call (into its own log and the shared one, in call order) and keeps each `done` until
// the test finishes it; with `auto_ok` it finishes every call OK later on the strand, as an observer
// on an executor of its own would.
class Scripted final : public LeadershipObserver {
 public:
  Scripted(std::string name, Lines& shared, FakeScheduler& strand)
      : name_(std::move(name)), shared_(shared), strand_(strand) {}

  std::string_view name() const override { return name_; }
  void onGained(Epoch epoch, TimePoint, std::function<void(Status)> done) override {
    note("gained " + epoch.toString());
    if (auto_ok) {
      strand_.post([done] { done(Status::ok()); });
    } else {
      gains[epoch.value()] = std::move(done);
    }
  }
  void onRenewed(Epoch epoch, TimePoint) override { note("renewed " + epoch.toString()); }
  void onLost(Epoch epoch, LossReason reason, std::function<void(Status)> done) override {
    note("lost " + epoch.toString() + " " + std::string(lossReasonName(reason)));
    if (auto_ok) {
      strand_.post([done] { done(Status::ok()); });
    } else {
      losses[epoch.value()] = std::move(done);
    }
  }
  void onLeaderChanged(const std::string& leader, Epoch epoch) override {
    note("leader '" + leader + "' " + epoch.toString());
  }

  Lines lines;                                                  // this observer's calls only
  std::map<std::uint64_t, std::function<void(Status)>> gains;   // unfinished onGained by epoch
  std::map<std::uint64_t, std::function<void(Status)>> losses;  // unfinished onLost by epoch
  bool auto_ok = false;

 private:
  void note(const std::string& what) {
    lines.push_back(what);
    shared_.push_back(name_ + " " + what);
  }

  std::string name_;
  Lines& shared_;
  FakeScheduler& strand_;
};

class LeadershipBusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    setLogLevel(std::getenv("HACOORD_TEST_VERBOSE") ? "debug" : "off");
    bus.add(vip);
    bus.add(locks);
    bus.add(hooks);
    bus.setStepDown([this](Epoch e, Status s) { step_downs.emplace_back(e.value(), s); });
  }

  // The elector's side: a loss whose release the test records.
  void lose(std::uint64_t epoch, LossReason reason = LossReason::kSteppedDown) {
    bus.lost(Epoch(epoch), reason, [this, epoch](bool ok) { released.emplace_back(epoch, ok); });
    loop.runDue();
  }
  void gain(std::uint64_t epoch) {
    bus.gained(Epoch(epoch), loop.now() + std::chrono::seconds(2));
    loop.runDue();
  }
  // Completes an observer's pending call (it must exist) and lets the bus react.
  void finishGain(Scripted& o, std::uint64_t epoch, Status s = Status::ok()) {
    auto it = o.gains.find(epoch);
    ASSERT_NE(it, o.gains.end()) << o.name() << " has no pending onGained(" << epoch << ")";
    auto done = std::move(it->second);
    o.gains.erase(it);
    done(std::move(s));
    loop.runDue();
  }
  void finishLoss(Scripted& o, std::uint64_t epoch, Status s = Status::ok()) {
    auto it = o.losses.find(epoch);
    ASSERT_NE(it, o.losses.end()) << o.name() << " has no pending onLost(" << epoch << ")";
    auto done = std::move(it->second);
    o.losses.erase(it);
    done(std::move(s));
    loop.runDue();
  }
  // Gains `epoch` through the whole chain.
  void gainAll(std::uint64_t epoch) {
    gain(epoch);
    finishGain(vip, epoch);
    finishGain(locks, epoch);
    finishGain(hooks, epoch);
  }

  SimLoop loop;
  FakeScheduler strand{loop};
  LeadershipBus bus{strand};
  Lines log;
  Scripted vip{"vip", log, strand};
  Scripted locks{"locks", log, strand};
  Scripted hooks{"hooks", log, strand};
  std::vector<std::pair<std::uint64_t, Status>> step_downs;
  std::vector<std::pair<std::uint64_t, bool>> released;
};

// (a) The VIP is up before the locks, and both before onBecomeLeader: each observer hears of the gain
// only once the one before it reported ready, however long that takes.
TEST_F(LeadershipBusTest, GainReachesEachObserverOnlyAfterThePreviousOneIsReady) {
  gain(1);
  EXPECT_EQ(log, (Lines{"vip gained 1"}));
  loop.advance(std::chrono::seconds(10));  // a slow VIP: nobody else moves meanwhile
  EXPECT_EQ(log, (Lines{"vip gained 1"}));

  finishGain(vip, 1);
  EXPECT_EQ(log, (Lines{"vip gained 1", "locks gained 1"}));
  finishGain(locks, 1);
  EXPECT_EQ(log, (Lines{"vip gained 1", "locks gained 1", "hooks gained 1"}));
  finishGain(hooks, 1);
  loop.runUntilIdle();
  EXPECT_EQ(log.size(), 3u);
  EXPECT_TRUE(step_downs.empty());
}

// (b) The VIP could not be brought up: the locks and the hooks never hear of that epoch, and the
// node steps down with the VIP's error. The failure belongs to that epoch only.
TEST_F(LeadershipBusTest, FailedGainStopsTheChainAndStepsDownWithThatEpoch) {
  gain(1);
  finishGain(vip, 1, Status(StatusCode::kUnavailable, "address 10.0.0.5 is in use"));
  loop.runUntilIdle();
  EXPECT_EQ(log, (Lines{"vip gained 1"}));
  log.clear();
  ASSERT_EQ(step_downs.size(), 1u);
  EXPECT_EQ(step_downs[0].first, 1u);
  EXPECT_EQ(step_downs[0].second.code(), StatusCode::kUnavailable);
  EXPECT_EQ(step_downs[0].second.message(), "address 10.0.0.5 is in use");
  // The failed gain does not clog the others' queues: news of the leader still reaches them.
  bus.leaderChanged("", Epoch(1));
  EXPECT_EQ(hooks.lines, (Lines{"leader '' 1"}));

  // A failure further down the chain stops it there: the hooks are not told.
  lose(1, LossReason::kHookFailed);
  finishLoss(vip, 1);
  EXPECT_EQ(log,
            (Lines{"vip leader '' 1", "locks leader '' 1", "hooks leader '' 1", "vip lost 1 hook-failed"}));
  log.clear();
  gain(2);
  finishGain(vip, 2);
  finishGain(locks, 2, Status(StatusCode::kInternal, "lock table full"));
  loop.runUntilIdle();
  EXPECT_EQ(log, (Lines{"vip gained 2", "locks gained 2"}));
  ASSERT_EQ(step_downs.size(), 2u);
  EXPECT_EQ(step_downs[1].first, 2u);
  EXPECT_EQ(step_downs[1].second.code(), StatusCode::kInternal);
}

// (c) The loss goes in the gain's order, each observer after the previous one let go (the VIP is
// off before onLoseLeadership runs), and the elector's release waits for the last one.
TEST_F(LeadershipBusTest, LossGoesInOrderEachAfterThePreviousFinished) {
  gainAll(1);
  log.clear();

  lose(1);
  EXPECT_EQ(log, (Lines{"vip lost 1 stepped-down"}));
  loop.advance(std::chrono::seconds(10));
  EXPECT_EQ(log, (Lines{"vip lost 1 stepped-down"}));
  EXPECT_TRUE(released.empty());

  finishLoss(vip, 1);
  EXPECT_EQ(log, (Lines{"vip lost 1 stepped-down", "locks lost 1 stepped-down"}));
  finishLoss(locks, 1);
  EXPECT_EQ(log,
            (Lines{"vip lost 1 stepped-down", "locks lost 1 stepped-down", "hooks lost 1 stepped-down"}));
  EXPECT_TRUE(released.empty()) << "released before onLoseLeadership finished";
  finishLoss(hooks, 1);
  loop.runUntilIdle();
  EXPECT_EQ(released, (std::vector<std::pair<std::uint64_t, bool>>{{1, true}}));
}

// (c) No onLost without an onGained: when the VIP could not be acquired the hooks never ran
// onBecomeLeader, so they must not run onLoseLeadership either, and the release does not wait for
// them.
TEST_F(LeadershipBusTest, LossReachesOnlyObserversThatWereToldOfTheGain) {
  gain(1);
  finishGain(vip, 1, Status(StatusCode::kUnavailable, "no such interface"));
  lose(1, LossReason::kHookFailed);
  finishLoss(vip, 1);
  loop.runUntilIdle();
  EXPECT_EQ(log, (Lines{"vip gained 1", "vip lost 1 hook-failed"}));
  EXPECT_EQ(released, (std::vector<std::pair<std::uint64_t, bool>>{{1, true}}));
}

// (d) A planned handover hands the lease over only if every observer let go: one failure (the VIP
// could not be removed) makes the release false, though the others are still told to stop.
TEST_F(LeadershipBusTest, ReleasedIsFalseIfAnyObserverFailedToLetGo) {
  std::uint64_t epoch = 0;
  for (Scripted* failing : {&vip, &locks, &hooks}) {
    SCOPED_TRACE(std::string(failing->name()) + " fails to let go");
    ++epoch;
    const std::string e = std::to_string(epoch);
    released.clear();
    gainAll(epoch);
    log.clear();
    lose(epoch);
    for (Scripted* o : {&vip, &locks, &hooks}) {
      finishLoss(*o, epoch, o == failing ? Status(StatusCode::kInternal, "still holding") : Status::ok());
    }
    loop.runUntilIdle();
    EXPECT_EQ(log, (Lines{"vip lost " + e + " stepped-down", "locks lost " + e + " stepped-down",
                          "hooks lost " + e + " stepped-down"}));
    EXPECT_EQ(released, (std::vector<std::pair<std::uint64_t, bool>>{{epoch, false}}));
  }
  // And true once all of them let go.
  released.clear();
  gainAll(4);
  lose(4);
  finishLoss(vip, 4);
  finishLoss(locks, 4);
  finishLoss(hooks, 4);
  EXPECT_EQ(released, (std::vector<std::pair<std::uint64_t, bool>>{{4, true}}));
}

// (e) Renewals and "the leader is you" wait behind the gain they belong to in each observer's
// queue: the hooks never hear of a renewal before onBecomeLeader. A change of leader that belongs to
// no gain (someone else leads) reaches everybody at once.
TEST_F(LeadershipBusTest, RenewedAndLeaderChangedNeverOvertakeTheirGain) {
  bus.leaderChanged("node2", Epoch(3));
  EXPECT_EQ(log, (Lines{"vip leader 'node2' 3", "locks leader 'node2' 3", "hooks leader 'node2' 3"}));
  log.clear();

  gain(4);
  bus.leaderChanged("node1", Epoch(4));
  bus.renewed(Epoch(4), loop.now() + std::chrono::seconds(3));
  loop.runDue();
  EXPECT_EQ(vip.lines, (Lines{"leader 'node2' 3", "gained 4", "leader 'node1' 4", "renewed 4"}));
  EXPECT_EQ(locks.lines, (Lines{"leader 'node2' 3"}));
  EXPECT_EQ(hooks.lines, (Lines{"leader 'node2' 3"}));

  finishGain(vip, 4);
  EXPECT_EQ(locks.lines, (Lines{"leader 'node2' 3", "gained 4", "leader 'node1' 4", "renewed 4"}));
  EXPECT_EQ(hooks.lines, (Lines{"leader 'node2' 3"}));
  finishGain(locks, 4);
  EXPECT_EQ(hooks.lines, (Lines{"leader 'node2' 3", "gained 4", "leader 'node1' 4", "renewed 4"}));

  // A renewal of an epoch whose chain failed never reaches the ones that were not told of it.
  log.clear();
  finishGain(hooks, 4);
  lose(4);
  finishLoss(vip, 4);
  finishLoss(locks, 4);
  finishLoss(hooks, 4);
  gain(5);
  finishGain(vip, 5, Status(StatusCode::kUnavailable, "arp"));
  bus.renewed(Epoch(5), loop.now() + std::chrono::seconds(3));
  loop.runUntilIdle();
  EXPECT_EQ(locks.lines.back(), "lost 4 stepped-down");
  EXPECT_EQ(hooks.lines.back(), "lost 4 stepped-down");
}

// (f) The lease is lost while the gain is still going down the chain (the locks are not ready):
// the hooks never hear of that leadership at all, those told let go in order, and the elector's
// release comes exactly once, even when the pending gain finishes afterwards.
TEST_F(LeadershipBusTest, LossDuringAPendingGainStopsTheGainAndReleasesOnce) {
  gain(1);
  finishGain(vip, 1);
  ASSERT_EQ(log, (Lines{"vip gained 1", "locks gained 1"}));

  lose(1, LossReason::kLeaseExpired);
  EXPECT_EQ(log, (Lines{"vip gained 1", "locks gained 1", "vip lost 1 lease-expired"}));
  finishLoss(vip, 1);
  EXPECT_EQ(log.back(), "locks lost 1 lease-expired");
  finishLoss(locks, 1);
  EXPECT_EQ(released, (std::vector<std::pair<std::uint64_t, bool>>{{1, true}}));

  finishGain(locks, 1);  // the locks' gain finishes late: too late for the hooks
  loop.runUntilIdle();
  EXPECT_TRUE(hooks.lines.empty()) << hooks.lines.front();
  EXPECT_EQ(released.size(), 1u);
  EXPECT_TRUE(step_downs.empty());
}

// (f) Same with the first observer still gaining: nobody after it is told, and the release waits
// for the VIP alone.
TEST_F(LeadershipBusTest, LossBeforeTheFirstObserverIsReadyReachesOnlyIt) {
  gain(1);
  lose(1, LossReason::kSuperseded);
  EXPECT_EQ(log, (Lines{"vip gained 1", "vip lost 1 superseded"}));
  EXPECT_TRUE(released.empty());
  finishGain(vip, 1);
  finishLoss(vip, 1);
  loop.runUntilIdle();
  EXPECT_EQ(log, (Lines{"vip gained 1", "vip lost 1 superseded"}));
  EXPECT_EQ(released, (std::vector<std::pair<std::uint64_t, bool>>{{1, true}}));
}

// (g) Quick successive leaderships (each observer finishing later on its own executor): every
// observer sees its events in order, an epoch lost before it reached an observer is skipped there
// entirely, and releases come in epoch order.
TEST_F(LeadershipBusTest, SeveralEpochsInARowKeepTheirOrder) {
  for (Scripted* o : {&vip, &locks, &hooks}) o->auto_ok = true;
  bus.gained(Epoch(1), loop.now());
  bus.lost(Epoch(1), LossReason::kSuperseded, [this](bool ok) { released.emplace_back(1, ok); });
  bus.gained(Epoch(2), loop.now());
  bus.renewed(Epoch(2), loop.now());
  bus.lost(Epoch(2), LossReason::kSteppedDown, [this](bool ok) { released.emplace_back(2, ok); });
  bus.gained(Epoch(3), loop.now());
  bus.renewed(Epoch(3), loop.now());
  loop.runUntilIdle();

  EXPECT_EQ(vip.lines, (Lines{"gained 1", "lost 1 superseded", "gained 2", "renewed 2", "lost 2 stepped-down",
                              "gained 3", "renewed 3"}));
  EXPECT_EQ(locks.lines, (Lines{"gained 3", "renewed 3"}));
  EXPECT_EQ(hooks.lines, (Lines{"gained 3", "renewed 3"}));
  EXPECT_EQ(released, (std::vector<std::pair<std::uint64_t, bool>>{{1, true}, {2, true}}));

  // And with every leadership going all the way through before the next.
  for (Scripted* o : {&vip, &locks, &hooks}) o->lines.clear();
  released.clear();
  bus.lost(Epoch(3), LossReason::kSteppedDown, [this](bool ok) { released.emplace_back(3, ok); });
  loop.runUntilIdle();
  for (std::uint64_t e = 4; e <= 6; ++e) {
    bus.gained(Epoch(e), loop.now());
    loop.runUntilIdle();
    bus.lost(Epoch(e), LossReason::kSteppedDown, [this, e](bool ok) { released.emplace_back(e, ok); });
    loop.runUntilIdle();
  }
  const Lines expected{"lost 3 stepped-down", "gained 4", "lost 4 stepped-down", "gained 5",
                       "lost 5 stepped-down", "gained 6", "lost 6 stepped-down"};
  EXPECT_EQ(vip.lines, expected);
  EXPECT_EQ(locks.lines, expected);
  EXPECT_EQ(hooks.lines, expected);
  EXPECT_EQ(released,
            (std::vector<std::pair<std::uint64_t, bool>>{{3, true}, {4, true}, {5, true}, {6, true}}));
  // Across observers, each loss finished in order: the hooks let go of 6 last.
  EXPECT_EQ(log.back(), "hooks lost 6 stepped-down");
  EXPECT_TRUE(step_downs.empty());
}

// The bus may be destroyed with calls outstanding (the node stops): a late `done` is harmless.
TEST(LeadershipBusLifetimeTest, LateCompletionAfterTheBusIsGoneIsIgnored) {
  SimLoop loop;
  FakeScheduler strand(loop);
  Lines log;
  Scripted vip("vip", log, strand);
  auto bus = std::make_unique<LeadershipBus>(strand);
  bus->add(vip);
  bool stepped_down = false;
  bus->setStepDown([&](Epoch, Status) { stepped_down = true; });
  bus->gained(Epoch(1), loop.now());
  ASSERT_EQ(vip.gains.size(), 1u);
  bus.reset();
  vip.gains.begin()->second(Status(StatusCode::kInternal, "late"));
  loop.runUntilIdle();
  EXPECT_FALSE(stepped_down);
}

}  // namespace
}  // namespace hacoord
