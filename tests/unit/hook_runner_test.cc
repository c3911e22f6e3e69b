// HookRunner on its real hc-hooks thread, results on a real strand: limits counted from queue time,
// overrun reports, exceptions, shutdown, and exactly one `done` per call whatever happens.
#include "core/hook_runner.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/logging.h"
#include "core/runtime.h"
#include "support/eventually.h"

namespace hacoord {
namespace {

using namespace std::chrono_literals;

constexpr auto kWait = 10s;  // the bound of every eventually(): only a broken runner reaches it

// A hook that blocks until the test opens the gate (a wedged onBecomeLeader script).
class Gate {
 public:
  HookRunner::Hook hook(Status result = Status::ok()) {
    return [this, result] {
      entered_ = true;
      future_.wait();
      return result;
    };
  }
  bool entered() const { return entered_; }
  void open() {
    if (!opened_.exchange(true)) promise_.set_value();
  }
  ~Gate() { open(); }

 private:
  std::promise<void> promise_;
  std::shared_future<void> future_{promise_.get_future().share()};
  std::atomic<bool> entered_{false};
  std::atomic<bool> opened_{false};
};

// Every `done` per call name, and every overrun report, as the strand saw them.
class Results {
 public:
  HookRunner::Done done(const std::string& name) {
    return [this, name](Status s) {
      std::lock_guard lock(mutex_);
      statuses_[name].push_back(std::move(s));
    };
  }
  std::function<void(bool)> overrun() {
    return [this](bool on) {
      std::lock_guard lock(mutex_);
      overruns_.push_back(on);
    };
  }
  int count(const std::string& name) const {
    std::lock_guard lock(mutex_);
    auto it = statuses_.find(name);
    return it == statuses_.end() ? 0 : static_cast<int>(it->second.size());
  }
  // The first status `name` got (call only once count(name) > 0).
  Status first(const std::string& name) const {
    std::lock_guard lock(mutex_);
    return statuses_.at(name).front();
  }
  std::vector<bool> overruns() const {
    std::lock_guard lock(mutex_);
    return overruns_;
  }
  bool arrived(const std::string& name) const {
    return eventually([&] { return count(name) > 0; }, kWait);
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::vector<Status>> statuses_;
  std::vector<bool> overruns_;
};

class HookRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override { setLogLevel(std::getenv("HACOORD_TEST_VERBOSE") ? "debug" : "off"); }
  // Lets everything already posted to the strand run (a late `done` would show up after this).
  void flush() {
    ASSERT_TRUE(strand->runSync([] {}));
  }
  // True once `runner` refuses new calls with Cancelled: shutdown() has begun and taken the queue
  // (both under one lock). Call while the running hook is held, so a queued probe cannot finish.
  bool refusesNewCalls(HookRunner& runner) {
    for (int i = 0; i < 500; ++i) {
      const std::string name = "probe" + std::to_string(i);
      runner.run(
          name, [] { return Status::ok(); }, results.done(name));
      if (eventually(
              [&] { return results.count(name) > 0 && results.first(name).code() == StatusCode::kCancelled; },
              20ms)) {
        return true;
      }
    }
    return false;
  }

  Runtime runtime;
  std::unique_ptr<StrandScheduler> strand = runtime.makeStrand();
  Results results;
};

TEST_F(HookRunnerTest, PassesTheHookStatusThroughInOrder) {
  HookRunner runner(*strand, 10s, results.overrun());
  std::mutex m;
  std::vector<int> order;
  for (int i = 0; i < 5; ++i) {
    runner.run(
        "h" + std::to_string(i),
        [&, i] {
          std::lock_guard lock(m);
          order.push_back(i);
          return i == 3 ? Status(StatusCode::kFailedPrecondition, "not ready") : Status::ok();
        },
        results.done("h" + std::to_string(i)));
  }
  ASSERT_TRUE(results.arrived("h4"));
  runner.shutdown();
  flush();
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(results.count("h" + std::to_string(i)), 1) << i;
  EXPECT_TRUE(results.first("h0").isOk());
  EXPECT_EQ(results.first("h3").code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(results.first("h3").message(), "not ready");
  EXPECT_TRUE(results.overruns().empty()) << "no hook passed its limit";
  EXPECT_EQ(runner.overrunning(), 0);
}

// (a) The limit starts at queue time: a hook stuck behind a wedged one times out on its own limit,
// though it never started (else a wedged hook would hold every later reaction back unseen).
TEST_F(HookRunnerTest, QueuedHookTimesOutFromQueueTimeThoughItNeverStarted) {
  HookRunner runner(*strand, 200ms, results.overrun());
  Gate gate;
  std::atomic<bool> second_ran{false};
  runner.run("wedged", gate.hook(), results.done("wedged"));
  runner.run(
      "behind",
      [&] {
        second_ran = true;
        return Status::ok();
      },
      results.done("behind"));

  ASSERT_TRUE(results.arrived("behind"));
  EXPECT_FALSE(second_ran) << "the second hook must not have started: the first is still wedged";
  EXPECT_TRUE(gate.entered());
  EXPECT_EQ(results.first("behind").code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(results.first("behind").message(), "hook behind did not finish within its time limit of 200 ms");
  ASSERT_TRUE(results.arrived("wedged"));
  EXPECT_EQ(results.first("wedged").code(), StatusCode::kDeadlineExceeded);

  // Once the wedged one returns the late one still runs (a thread cannot be cut short), but its
  // caller already had its answer: no second `done`.
  gate.open();
  ASSERT_TRUE(eventually([&] { return second_ran.load() && runner.overrunning() == 0; }, kWait));
  runner.shutdown();
  flush();
  EXPECT_EQ(results.count("wedged"), 1);
  EXPECT_EQ(results.count("behind"), 1);
}

// (b) One report when the first call passes its limit, one when the last overrunning call returns;
// overrunning() counts the calls past their limit in between.
TEST_F(HookRunnerTest, ReportsOverrunOnceWhenItStartsAndOnceWhenItEnds) {
  HookRunner runner(*strand, 150ms, results.overrun());
  Gate gate;
  Gate second_gate;
  runner.run("wedged", gate.hook(Status(StatusCode::kInternal, "late failure")), results.done("wedged"));
  runner.run("behind", second_gate.hook(), results.done("behind"));
  ASSERT_TRUE(results.arrived("behind"));
  flush();
  EXPECT_EQ(runner.overrunning(), 2);
  EXPECT_EQ(results.overruns(), (std::vector<bool>{true})) << "one report for both overruns";

  gate.open();  // the wedged one returns; the one behind it now runs and is still past its limit
  ASSERT_TRUE(eventually([&] { return second_gate.entered(); }, kWait));
  EXPECT_EQ(runner.overrunning(), 1);
  flush();
  EXPECT_EQ(results.overruns(), (std::vector<bool>{true})) << "still overrunning: no all-clear yet";
  // Its late status is not reported: its caller was told DeadlineExceeded already.
  EXPECT_EQ(results.count("wedged"), 1);
  EXPECT_EQ(results.first("wedged").code(), StatusCode::kDeadlineExceeded);

  second_gate.open();
  ASSERT_TRUE(eventually([&] { return runner.overrunning() == 0; }, kWait));
  ASSERT_TRUE(eventually([&] { return results.overruns().size() == 2; }, kWait));
  EXPECT_EQ(results.overruns(), (std::vector<bool>{true, false}));

  // A new overrun after the all-clear is reported again.
  Gate third;
  runner.run("again", third.hook(), results.done("again"));
  ASSERT_TRUE(results.arrived("again"));
  flush();
  EXPECT_EQ(results.overruns(), (std::vector<bool>{true, false, true}));
  third.open();
  ASSERT_TRUE(eventually([&] { return results.overruns().size() == 4; }, kWait));
  EXPECT_EQ(results.overruns(), (std::vector<bool>{true, false, true, false}));
}

// (c) A hook that throws is an Internal error naming the hook and the exception, and the runner
// goes on with the next hook.
TEST_F(HookRunnerTest, HookThatThrowsIsInternalAndTheRunnerGoesOn) {
  HookRunner runner(*strand, 10s, results.overrun());
  runner.run(
      "std", []() -> Status { throw std::runtime_error("disk full"); }, results.done("std"));
  runner.run(
      "other", []() -> Status { throw 42; }, results.done("other"));
  runner.run(
      "next", [] { return Status::ok(); }, results.done("next"));
  ASSERT_TRUE(results.arrived("next"));
  runner.shutdown();
  flush();
  EXPECT_EQ(results.first("std").code(), StatusCode::kInternal);
  EXPECT_EQ(results.first("std").message(), "hook std threw: disk full");
  EXPECT_EQ(results.first("other").code(), StatusCode::kInternal);
  EXPECT_EQ(results.first("other").message(), "hook other threw a non-standard exception");
  EXPECT_TRUE(results.first("next").isOk());
  for (const char* name : {"std", "other", "next"}) EXPECT_EQ(results.count(name), 1) << name;
}

// (d) shutdown() drops what is queued: each dropped call hears Cancelled once and never runs; the
// running hook is waited for and reports its own status; calls after shutdown are Cancelled too.
TEST_F(HookRunnerTest, ShutdownCancelsQueuedCallsOnceEachAndWaitsForTheRunningOne) {
  auto runner = std::make_unique<HookRunner>(*strand, 10s, results.overrun());
  Gate gate;
  std::atomic<int> ran_queued{0};
  runner->run("running", gate.hook(), results.done("running"));
  for (const char* name : {"q1", "q2", "q3"}) {
    runner->run(
        name,
        [&] {
          ++ran_queued;
          return Status::ok();
        },
        results.done(name));
  }
  ASSERT_TRUE(eventually([&] { return gate.entered(); }, kWait));

  std::thread stopper([&] { runner->shutdown(); });
  ASSERT_TRUE(refusesNewCalls(*runner));
  gate.open();
  stopper.join();
  runner->shutdown();  // idempotent
  runner.reset();
  flush();

  EXPECT_EQ(ran_queued, 0);
  EXPECT_EQ(results.count("running"), 1);
  EXPECT_TRUE(results.first("running").isOk()) << results.first("running").toString();
  for (const char* name : {"q1", "q2", "q3"}) {
    ASSERT_EQ(results.count(name), 1) << name;
    EXPECT_EQ(results.first(name).code(), StatusCode::kCancelled) << name;
    EXPECT_EQ(results.first(name).message(), std::string("hook ") + name + " not run: shutting down");
  }
  EXPECT_TRUE(results.overruns().empty());
}

// (e) Exactly one `done` per call, whatever ends it: returned in time, returned late, thrown,
// timed out while queued and then dropped by shutdown, refused after shutdown.
// An application that stops its node from inside a hook destroys the runner on the hook thread:
// the thread cannot join itself, so it is detached and must end without touching the freed runner
// (ASan in CI turns a use after free into a failure here).
TEST_F(HookRunnerTest, ARunnerDestroyedFromInsideItsOwnHookEndsItsThreadCleanly) {
  auto hooks_threads = [] {
    int n = 0;
    std::error_code ec;
    for (const auto& t : std::filesystem::directory_iterator("/proc/self/task", ec)) {
      std::ifstream comm(t.path() / "comm");
      std::string name;
      std::getline(comm, name);
      n += name == "hc-hooks" ? 1 : 0;
    }
    return n;
  };
  ASSERT_EQ(hooks_threads(), 0);
  auto runner = std::make_unique<HookRunner>(*strand, 10s, results.overrun());
  std::atomic<bool> destroyed{false};
  runner->run("stops-its-node", [&] {
    runner.reset();
    destroyed = true;
    return Status::ok();
  });
  ASSERT_TRUE(eventually([&] { return destroyed.load(); }, 5000ms));
  EXPECT_TRUE(eventually([&] { return hooks_threads() == 0; }, 5000ms))
      << "the detached hook thread never ended";
  flush();
}

// The same, with the limit passing after the runner is gone: the running call's limit timer
// must not fire on the freed runner (the strand outlives it; ASan turns a use after free into a
// failure). The wait lets the 500 ms limit pass; it waits for no condition.
TEST_F(HookRunnerTest, ALimitPassingAfterTheRunnerWasDestroyedFromInsideItsHookTouchesNothing) {
  auto runner = std::make_unique<HookRunner>(*strand, 500ms, results.overrun());
  std::atomic<bool> destroyed{false};
  runner->run(
      "stops-its-node",
      [&] {
        runner.reset();
        destroyed = true;
        return Status::ok();
      },
      results.done("stops-its-node"));
  ASSERT_TRUE(eventually([&] { return destroyed.load(); }, 5000ms));
  std::this_thread::sleep_for(1000ms);
  flush();
  EXPECT_EQ(results.count("stops-its-node"), 0) << "a done after the runner was destroyed";
  EXPECT_TRUE(results.overruns().empty());
}

// A hook learns when its limit ends, counted from its queueing, so what it starts can be killed
// then (CommandHooks); outside a hook there is none.
TEST_F(HookRunnerTest, AHookSeesTheDeadlineOfItsOwnQueueTime) {
  EXPECT_EQ(HookRunner::currentDeadline(), std::chrono::steady_clock::time_point::max());
  HookRunner runner(*strand, 2000ms, results.overrun());
  Gate gate;
  const auto queued = std::chrono::steady_clock::now();
  runner.run("slow", gate.hook());
  std::atomic<std::int64_t> left_ms{-1};
  runner.run(
      "second",
      [&] {
        left_ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(HookRunner::currentDeadline() - queued)
                .count();
        return Status::ok();
      },
      results.done("second"));
  ASSERT_TRUE(eventually([&] { return gate.entered(); }, kWait));
  gate.open();
  ASSERT_TRUE(results.arrived("second"));
  EXPECT_GE(left_ms.load(), 2000);
  EXPECT_LT(left_ms.load(), 2500) << "the deadline counts from the queueing, not the start";
}

TEST_F(HookRunnerTest, EveryCallGetsExactlyOneDone) {
  auto runner = std::make_unique<HookRunner>(*strand, 200ms, results.overrun());
  Gate first_gate;
  Gate wedge;
  runner->run(
      "in-time", [] { return Status::ok(); }, results.done("in-time"));
  runner->run(
      "throws", []() -> Status { throw std::logic_error("x"); }, results.done("throws"));
  runner->run("late", first_gate.hook(), results.done("late"));
  runner->run("wedge", wedge.hook(), results.done("wedge"));
  runner->run(
      "timed-out-then-dropped", [] { return Status::ok(); }, results.done("timed-out-then-dropped"));
  ASSERT_TRUE(results.arrived("timed-out-then-dropped"));
  first_gate.open();  // "late" returns after its limit; "wedge" starts, already past its limit
  ASSERT_TRUE(eventually([&] { return wedge.entered(); }, kWait));

  std::thread stopper([&] { runner->shutdown(); });
  ASSERT_TRUE(refusesNewCalls(*runner));
  wedge.open();
  stopper.join();
  runner->run(
      "after-shutdown", [] { return Status::ok(); }, results.done("after-shutdown"));
  ASSERT_TRUE(results.arrived("after-shutdown"));
  runner.reset();
  flush();

  const std::map<std::string, StatusCode> expected{
      {"in-time", StatusCode::kOk},
      {"throws", StatusCode::kInternal},
      {"late", StatusCode::kDeadlineExceeded},
      {"wedge", StatusCode::kDeadlineExceeded},
      {"timed-out-then-dropped", StatusCode::kDeadlineExceeded},
      {"after-shutdown", StatusCode::kCancelled},
  };
  for (const auto& [name, code] : expected) {
    ASSERT_EQ(results.count(name), 1) << name;
    EXPECT_EQ(results.first(name).code(), code) << name << ": " << results.first(name).toString();
  }
  // Both overruns ended (the wedge returned, the dropped one was let go): the all-clear came.
  EXPECT_EQ(results.overruns(), (std::vector<bool>{true, false}));
}

}  // namespace
}  // namespace hacoord
