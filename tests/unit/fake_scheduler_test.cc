// Tests of the virtual-time support: SimLoop ordering, FakeScheduler cancel/pause/crash, DriftClock.
#include "support/fake_scheduler.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace hacoord {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;
using test::DriftClock;
using test::FakeScheduler;
using test::SimLoop;

TEST(SimLoopTest, StartsAtAFixedNonZeroTimeAndOnlyMovesWhenDriven) {
  SimLoop loop;
  EXPECT_EQ(loop.now(), SimLoop::kStart);
  EXPECT_GT(loop.now().time_since_epoch(), seconds(0));
  EXPECT_FALSE(loop.runOne());
  EXPECT_EQ(loop.now(), SimLoop::kStart);
  loop.advance(milliseconds(250));
  EXPECT_EQ(loop.elapsed(), milliseconds(250));
}

TEST(SimLoopTest, RunsEventsByTimeThenInsertionOrder) {
  SimLoop loop;
  std::vector<std::string> ran;
  loop.scheduleAfter(milliseconds(20), [&] { ran.push_back("b@20"); });
  loop.scheduleAfter(milliseconds(10), [&] { ran.push_back("a@10"); });
  loop.scheduleAfter(milliseconds(20), [&] { ran.push_back("c@20"); });
  loop.scheduleAfter(milliseconds(0), [&] { ran.push_back("now"); });
  EXPECT_EQ(loop.pending(), 4u);
  EXPECT_EQ(loop.nextEventTime(), loop.now());
  loop.runUntil(loop.now() + milliseconds(20));
  EXPECT_EQ(ran, (std::vector<std::string>{"now", "a@10", "b@20", "c@20"}));
  EXPECT_EQ(loop.steps(), 4u);
  EXPECT_EQ(loop.pending(), 0u);
  EXPECT_EQ(loop.nextEventTime(), TimePoint::max());
}

TEST(SimLoopTest, RunOneMovesTimeToTheEventAndThePastIsClampedToNow) {
  SimLoop loop;
  TimePoint seen{};
  loop.scheduleAfter(milliseconds(30), [&] { seen = loop.now(); });
  ASSERT_TRUE(loop.runOne());
  EXPECT_EQ(seen, SimLoop::kStart + milliseconds(30));
  // Scheduling in the past runs "now", never moves time back.
  loop.schedule(SimLoop::kStart, [&] { seen = loop.now(); });
  ASSERT_TRUE(loop.runOne());
  EXPECT_EQ(seen, SimLoop::kStart + milliseconds(30));
}

TEST(SimLoopTest, AdvanceRunsWhatIsDueAndLeavesTheRest) {
  SimLoop loop;
  int ran = 0;
  loop.scheduleAfter(milliseconds(100), [&] { ++ran; });
  loop.scheduleAfter(milliseconds(101), [&] { ++ran; });
  loop.advance(milliseconds(100));
  EXPECT_EQ(ran, 1);
  EXPECT_EQ(loop.elapsed(), milliseconds(100));
  EXPECT_EQ(loop.pending(), 1u);
}

TEST(SimLoopTest, EventsScheduledByEventsAtTheSameTimeRunAfterTheQueuedOnes) {
  SimLoop loop;
  std::vector<int> ran;
  loop.scheduleAfter(milliseconds(5), [&] {
    ran.push_back(1);
    loop.scheduleAfter(milliseconds(0), [&] { ran.push_back(3); });
  });
  loop.scheduleAfter(milliseconds(5), [&] { ran.push_back(2); });
  loop.advance(milliseconds(5));
  EXPECT_EQ(ran, (std::vector<int>{1, 2, 3}));
}

TEST(SimLoopTest, CancelDropsAQueuedEventAndIsIdempotent) {
  SimLoop loop;
  int ran = 0;
  const auto id = loop.scheduleAfter(milliseconds(1), [&] { ++ran; });
  loop.cancel(id);
  loop.cancel(id);
  loop.cancel(12345);
  EXPECT_EQ(loop.pending(), 0u);
  loop.advance(milliseconds(10));
  EXPECT_EQ(ran, 0);
}

TEST(SimLoopTest, RunUntilConditionStopsAtTheFirstEventThatSatisfiesIt) {
  SimLoop loop;
  int count = 0;
  for (int i = 1; i <= 10; ++i) loop.scheduleAfter(milliseconds(i), [&] { ++count; });
  EXPECT_TRUE(loop.runUntilCondition([&] { return count == 3; }, loop.now() + seconds(1)));
  EXPECT_EQ(loop.elapsed(), milliseconds(3));
  EXPECT_FALSE(loop.runUntilCondition([&] { return count == 100; }, loop.now() + milliseconds(4)));
  EXPECT_EQ(count, 7);
  EXPECT_TRUE(loop.runUntilIdle());
  EXPECT_EQ(count, 10);
}

TEST(SimLoopTest, TheHookRunsAfterEveryEvent) {
  SimLoop loop;
  std::vector<std::uint64_t> at_steps;
  loop.setAfterEachEvent([&] { at_steps.push_back(loop.steps()); });
  loop.scheduleAfter(milliseconds(1), [] {});
  loop.scheduleAfter(milliseconds(2), [] {});
  loop.advance(milliseconds(5));
  EXPECT_EQ(at_steps, (std::vector<std::uint64_t>{1, 2}));
}

TEST(FakeSchedulerTest, PostRunsAtTheSameTimeAfterAlreadyQueuedTasksAndNeverInline) {
  SimLoop loop;
  FakeScheduler s(loop);
  std::vector<int> ran;
  s.post([&] { ran.push_back(1); });
  s.runAfter(milliseconds(0), [&] { ran.push_back(2); });
  s.post([&] {
    ran.push_back(3);
    s.post([&] { ran.push_back(5); });
  });
  s.post([&] { ran.push_back(4); });
  EXPECT_TRUE(ran.empty());
  EXPECT_EQ(s.pending(), 4u);
  loop.runDue();
  EXPECT_EQ(ran, (std::vector<int>{1, 2, 3, 4, 5}));
  EXPECT_EQ(loop.elapsed(), nanoseconds(0));
}

TEST(FakeSchedulerTest, RunAfterFiresOnTimeAndCancelDropsIt) {
  SimLoop loop;
  FakeScheduler s(loop);
  std::vector<std::string> ran;
  s.runAfter(milliseconds(200), [&] { ran.push_back("200"); });
  const auto id = s.runAfter(milliseconds(100), [&] { ran.push_back("100"); });
  s.runAfter(milliseconds(-5), [&] { ran.push_back("negative=now"); });
  s.cancel(id);
  s.cancel(id);  // no-op
  loop.advance(milliseconds(199));
  EXPECT_EQ(ran, (std::vector<std::string>{"negative=now"}));
  loop.advance(milliseconds(1));
  EXPECT_EQ(ran, (std::vector<std::string>{"negative=now", "200"}));
  EXPECT_EQ(s.pending(), 0u);
}

TEST(FakeSchedulerTest, PausedSchedulerRunsNothingAndCatchesUpInDueOrderOnResume) {
  SimLoop loop;
  FakeScheduler a(loop);
  FakeScheduler b(loop);
  std::vector<std::string> ran;
  a.runAfter(milliseconds(30), [&] { ran.push_back("a30"); });
  a.runAfter(milliseconds(10), [&] { ran.push_back("a10"); });
  a.runAfter(milliseconds(500), [&] { ran.push_back("a500"); });
  b.runAfter(milliseconds(20), [&] { ran.push_back("b20"); });
  a.pause();
  loop.advance(milliseconds(5));
  a.post([&] { ran.push_back("a-posted@5"); });
  loop.advance(milliseconds(95));
  EXPECT_EQ(ran, (std::vector<std::string>{"b20"})) << "only the other node ran";
  EXPECT_TRUE(a.paused());
  EXPECT_EQ(a.pending(), 4u);

  a.resume();
  loop.runDue();
  EXPECT_EQ(ran, (std::vector<std::string>{"b20", "a-posted@5", "a10", "a30"}));
  EXPECT_EQ(loop.elapsed(), milliseconds(100)) << "catching up takes no virtual time";
  loop.advance(milliseconds(400));
  EXPECT_EQ(ran.back(), "a500") << "timers not yet due keep their time";
}

TEST(FakeSchedulerTest, CancelWorksOnATaskHeldByAPause) {
  SimLoop loop;
  FakeScheduler s(loop);
  int ran = 0;
  const auto id = s.runAfter(milliseconds(10), [&] { ++ran; });
  s.pause();
  loop.advance(milliseconds(20));
  s.cancel(id);
  s.resume();
  loop.advance(milliseconds(1));
  EXPECT_EQ(ran, 0);
}

TEST(FakeSchedulerTest, CrashDropsEverythingForeverUntilRestart) {
  SimLoop loop;
  FakeScheduler s(loop);
  int ran = 0;
  s.runAfter(milliseconds(10), [&] { ++ran; });
  s.post([&] { ++ran; });
  s.pause();
  loop.advance(milliseconds(20));  // both held by the pause
  s.runAfter(milliseconds(50), [&] { ++ran; });
  s.crash();
  EXPECT_TRUE(s.crashed());
  EXPECT_EQ(s.pending(), 0u);
  s.post([&] { ++ran; });  // a dead process runs nothing
  s.resume();
  loop.advance(seconds(1));
  EXPECT_EQ(ran, 0);
  EXPECT_EQ(loop.pending(), 0u);

  s.restart();
  s.post([&] { ++ran; });
  loop.runDue();
  EXPECT_EQ(ran, 1);
}

TEST(FakeSchedulerTest, DestroyingASchedulerWithdrawsItsEvents) {
  SimLoop loop;
  int ran = 0;
  {
    FakeScheduler s(loop);
    s.runAfter(milliseconds(10), [&] { ++ran; });
    EXPECT_EQ(loop.pending(), 1u);
  }
  EXPECT_EQ(loop.pending(), 0u);
  loop.advance(milliseconds(20));
  EXPECT_EQ(ran, 0);
}

TEST(FakeSchedulerTest, RunAtGlobalDeliversAtThatTimeSubjectToPause) {
  SimLoop loop;
  FakeScheduler s(loop);
  TimePoint ran_at{};
  s.runAtGlobal(loop.now() + milliseconds(40), [&] { ran_at = loop.now(); });
  s.pause();
  loop.advance(milliseconds(60));
  EXPECT_EQ(ran_at, TimePoint{});
  s.resume();
  loop.runDue();
  EXPECT_EQ(ran_at, SimLoop::kStart + milliseconds(60));
}

TEST(DriftClockTest, RunsAtItsRateFromItsOwnOrigin) {
  SimLoop loop;
  loop.advance(seconds(3));
  const TimePoint origin = TimePoint(seconds(77));
  DriftClock fast(loop, 1.001, origin);
  DriftClock slow(loop, 0.999, origin);
  DriftClock exact(loop, 1.0, origin);
  EXPECT_EQ(fast.now(), origin);
  loop.advance(seconds(10));
  EXPECT_EQ(fast.now(), origin + seconds(10) + milliseconds(10));
  EXPECT_EQ(slow.now(), origin + seconds(10) - milliseconds(10));
  EXPECT_EQ(exact.now(), origin + seconds(10));
  EXPECT_NEAR(fast.rate(), 1.001, 1e-12);
}

TEST(DriftClockTest, TimersOnADriftingClockNeverFireEarlyOnThatClock) {
  for (double rate : {0.975, 0.9999999, 1.0, 1.0000001, 1.0005, 1.025}) {
    SimLoop loop;
    DriftClock clock(loop, rate, TimePoint(seconds(5)));
    FakeScheduler s(loop, &clock);
    // Odd delays and odd start times, to hit every rounding case.
    for (int i = 1; i < 200; ++i) {
      loop.advance(nanoseconds(7919 * i));
      const Duration delay = nanoseconds(1'000'003 * i + i * i);
      const TimePoint local_start = clock.now();
      const TimePoint global_start = loop.now();
      TimePoint local_fired{};
      TimePoint global_fired{};
      s.runAfter(delay, [&] {
        local_fired = clock.now();
        global_fired = loop.now();
      });
      loop.runUntilIdle();
      ASSERT_GE(local_fired - local_start, delay) << "rate " << rate << " i " << i;
      // ...and not more than a few ns late on it.
      ASSERT_LE(local_fired - local_start, delay + nanoseconds(4)) << "rate " << rate;
      ASSERT_NEAR(static_cast<double>((global_fired - global_start).count()),
                  static_cast<double>(delay.count()) / rate, 3.0);
    }
  }
}

TEST(DriftClockTest, GlobalTimeOfALocalDeadline) {
  SimLoop loop;
  DriftClock clock(loop, 1.02, TimePoint(seconds(50)));
  const TimePoint local_deadline = clock.now() + milliseconds(1020);
  const TimePoint global = clock.globalTimeOf(local_deadline);
  EXPECT_NEAR(static_cast<double>((global - loop.now()).count()), 1e9, 3.0);
  loop.runUntil(global);
  EXPECT_GE(clock.now(), local_deadline);
  EXPECT_EQ(clock.globalTimeOf(local_deadline - seconds(1)), loop.now()) << "the past maps to now";
}

}  // namespace
}  // namespace hacoord
