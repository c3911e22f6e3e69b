// Runtime and StrandScheduler: ordering, timers on the lease clock, cancel, guarded shutdown.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <time.h>

#include "core/runtime.h"
#include "support/eventually.h"

namespace hacoord {
namespace {

using namespace std::chrono_literals;

TEST(LeaseClockTest, IsBootTimeAndNeverBehindTheMonotonicClock) {
  timespec mono{};
  ::clock_gettime(CLOCK_MONOTONIC, &mono);
  const TimePoint lease = leaseClockNow();
  const auto mono_ns = std::chrono::seconds(mono.tv_sec) + std::chrono::nanoseconds(mono.tv_nsec);
  // CLOCK_BOOTTIME = CLOCK_MONOTONIC + time suspended: never smaller.
  EXPECT_GE(lease.time_since_epoch(), mono_ns);
  EXPECT_GE(leaseClockNow(), lease);
}

TEST(RuntimeTest, NamesEveryThreadItStarts) {
  Runtime runtime(2);
  const auto names = runtime.threadNames();
  EXPECT_EQ(names, (std::vector<std::string>{"hc-io", "hc-block", "hc-block"}));
  // The kernel knows them by these names too.
  std::promise<std::string> name;
  boost::asio::post(runtime.io(), [&] {
    char buf[16] = {0};
    pthread_getname_np(pthread_self(), buf, sizeof buf);
    name.set_value(buf);
  });
  EXPECT_EQ(name.get_future().get(), "hc-io");
}

TEST(StrandSchedulerTest, RunsPostedTasksInOrderOneAtATime) {
  Runtime runtime(2);
  auto lane = runtime.makeBlockingLane();  // two threads under it: the strand must serialise
  std::vector<int> order;
  std::atomic<int> inside{0};
  std::atomic<bool> overlapped{false};
  for (int i = 0; i < 200; ++i) {
    lane->post([&, i] {
      if (inside.fetch_add(1) != 0) overlapped = true;
      order.push_back(i);
      inside.fetch_sub(1);
    });
  }
  ASSERT_TRUE(lane->runSync([] {}));
  EXPECT_FALSE(overlapped);
  ASSERT_EQ(order.size(), 200u);
  for (int i = 0; i < 200; ++i) EXPECT_EQ(order[static_cast<std::size_t>(i)], i);
}

TEST(StrandSchedulerTest, TimersFireAfterTheirDelayInDueOrder) {
  Runtime runtime;
  auto strand = runtime.makeStrand();
  std::mutex m;
  std::vector<int> fired;
  const TimePoint t0 = leaseClockNow();
  std::vector<TimePoint> at(3);
  for (int i : {2, 0, 1}) {
    strand->runAfter(milliseconds(20 + 30 * i), [&, i] {
      std::lock_guard lock(m);
      fired.push_back(i);
      at[static_cast<std::size_t>(i)] = leaseClockNow();
    });
  }
  ASSERT_TRUE(test::eventually(
      [&] {
        std::lock_guard lock(m);
        return fired.size() == 3;
      },
      5s));
  std::lock_guard lock(m);
  EXPECT_EQ(fired, (std::vector<int>{0, 1, 2}));
  for (int i = 0; i < 3; ++i) EXPECT_GE(at[static_cast<std::size_t>(i)] - t0, milliseconds(20 + 30 * i));
}

TEST(StrandSchedulerTest, ACancelledTimerNeverRunsEvenIfAlreadyDue) {
  Runtime runtime;
  auto strand = runtime.makeStrand();
  std::atomic<int> runs{0};
  // Cancel from inside the strand after the timer is due: its expiry may already be queued.
  ASSERT_TRUE(strand->runSync([&] {
    const auto id = strand->runAfter(Duration::zero(), [&] { ++runs; });
    std::this_thread::sleep_for(5ms);  // let the expiry be queued behind this task
    strand->cancel(id);
  }));
  std::atomic<bool> later{false};
  strand->runAfter(30ms, [&] { later = true; });
  ASSERT_TRUE(test::eventually([&] { return later.load(); }, 5s));
  EXPECT_EQ(runs.load(), 0);
}

TEST(StrandSchedulerTest, NothingRunsAfterShutdownAndShutdownWaitsForTheRunningTask) {
  Runtime runtime;
  auto strand = runtime.makeStrand();
  std::atomic<bool> started{false};
  std::atomic<bool> finished{false};
  std::atomic<int> after{0};
  strand->post([&] {
    started = true;
    std::this_thread::sleep_for(50ms);
    finished = true;
  });
  strand->post([&] { ++after; });
  strand->runAfter(1ms, [&] { ++after; });
  ASSERT_TRUE(test::eventually([&] { return started.load(); }, 5s));
  strand->shutdown();
  EXPECT_TRUE(finished.load()) << "shutdown() returned while a task of the strand still ran";
  strand->post([&] { ++after; });
  EXPECT_EQ(strand->runAfter(1ms, [&] { ++after; }), 0u);
  EXPECT_FALSE(strand->runSync([&] { ++after; }));
  EXPECT_EQ(after.load(), 0);
}

TEST(StrandSchedulerTest, ShutdownFromInsideItsOwnTaskDoesNotDeadlock) {
  Runtime runtime;
  auto strand = runtime.makeStrand();
  std::atomic<bool> done{false};
  strand->post([&] {
    strand->shutdown();
    done = true;
  });
  ASSERT_TRUE(test::eventually([&] { return done.load(); }, 5s));
}

}  // namespace
}  // namespace hacoord
