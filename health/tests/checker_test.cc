// HealthChecker on virtual time: rise/fall, fail_after, schedule, reload and stop, with scripted probes.
#include "health/checker.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <ostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "support/eventually.h"
#include "support/fake_scheduler.h"

namespace hacoord {

// Readable failure messages (found by argument-dependent lookup).
void PrintTo(const CheckStatus& s, std::ostream* os) {
  *os << "{" << s.name << ", " << s.type << ", " << (s.healthy ? "healthy" : "unhealthy") << ", \""
      << s.last_result << "\", passes " << s.consecutive_passes << ", failures " << s.consecutive_failures
      << "}";
}

namespace {

using namespace std::chrono_literals;
using test::FakeScheduler;
using test::SimLoop;

// Probes that follow a script per check name: each run takes `duration` of virtual time and ends
// with the next letter of `plan` (P pass, F fail; the last letter repeats). Completions arrive on
// the loop, never inside start(); a cancelled run completes (at once) with "cancelled".
class ScriptedProbes final : public ProbeRunner {
 public:
  explicit ScriptedProbes(SimLoop& loop) : loop_(loop) {}
  ~ScriptedProbes() override {
    for (auto& [id, run] : runs_) {
      if (run.event != 0) loop_.cancel(run.event);
    }
  }

  void script(const std::string& check, std::string plan, Duration duration = 10ms) {
    scripts_[check] = Script{std::move(plan), duration, 0};
  }

  std::uint64_t start(const HealthCheckConfig& check, Done done) override {
    const std::uint64_t id = next_id_++;
    Script& s = scripts_[check.name];
    if (s.plan.empty()) s.plan = "P";
    const char letter = s.plan[std::min(s.runs, s.plan.size() - 1)];
    ++s.runs;
    starts_[check.name].push_back(loop_.now());
    timeouts_[check.name].push_back(check.timeout);
    Run& run = runs_[id];
    run.check = check.name;
    run.done = std::move(done);
    const CheckOutcome outcome =
        letter == 'P' ? CheckOutcome{true, ""} : CheckOutcome{false, "scripted failure"};
    run.event = loop_.scheduleAfter(s.duration, [this, id, outcome] { complete(id, outcome); });
    return id;
  }

  void cancel(std::uint64_t id) override {
    auto it = runs_.find(id);
    if (it == runs_.end() || it->second.event == 0) return;
    loop_.cancel(it->second.event);
    ++cancelled_[it->second.check];
    it->second.event = loop_.scheduleAfter(0ms, [this, id] { complete(id, {false, "cancelled"}); });
  }

  // When each run of `check` started.
  std::vector<TimePoint> starts(const std::string& check) const {
    auto it = starts_.find(check);
    return it == starts_.end() ? std::vector<TimePoint>{} : it->second;
  }
  int runs(const std::string& check) const { return static_cast<int>(starts(check).size()); }
  int cancelled(const std::string& check) const {
    auto it = cancelled_.find(check);
    return it == cancelled_.end() ? 0 : it->second;
  }
  int inFlight() const { return static_cast<int>(runs_.size()); }
  // The timeout the last run of `check` was started with.
  milliseconds lastTimeout(const std::string& check) const {
    auto it = timeouts_.find(check);
    return it == timeouts_.end() ? milliseconds(0) : it->second.back();
  }

 private:
  struct Script {
    std::string plan;
    Duration duration{};
    std::size_t runs = 0;
  };
  struct Run {
    std::string check;
    Done done;
    SimLoop::EventId event = 0;
  };

  void complete(std::uint64_t id, const CheckOutcome& outcome) {
    auto it = runs_.find(id);
    ASSERT_NE(it, runs_.end()) << "a run completed twice";
    Done done = std::move(it->second.done);
    runs_.erase(it);
    done(outcome);
  }

  SimLoop& loop_;
  std::uint64_t next_id_ = 1;
  std::map<std::string, Script> scripts_;
  std::map<std::string, std::vector<TimePoint>> starts_;
  std::map<std::string, std::vector<milliseconds>> timeouts_;
  std::map<std::string, int> cancelled_;
  std::map<std::uint64_t, Run> runs_;
};

HealthCheckConfig check(const std::string& name, milliseconds interval = 1000ms, int rise = 2, int fall = 3) {
  HealthCheckConfig c;
  c.name = name;
  c.type = HealthCheckConfig::Type::kCommand;
  c.command = "probe " + name;
  c.interval = interval;
  c.timeout = interval;
  c.rise = rise;
  c.fall = fall;
  return c;
}

// What the callbacks saw, with the virtual time of each.
struct Events {
  std::vector<std::pair<bool, Duration>> changes;  // (healthy, elapsed)
  std::vector<Duration> failed_too_long;           // elapsed
};

class CheckerTest : public ::testing::Test {
 protected:
  CheckerTest() : scheduler_(loop_), probes_(loop_) {}

  // A checker on the fake scheduler whose callbacks go into events_.
  std::unique_ptr<HealthChecker> make(std::vector<HealthCheckConfig> checks, milliseconds fail_after) {
    auto c = std::make_unique<HealthChecker>(std::move(checks), fail_after, loop_, scheduler_, probes_);
    c->setOnChange([this](bool healthy) { events_.changes.emplace_back(healthy, loop_.elapsed()); });
    c->setOnFailedTooLong([this] { events_.failed_too_long.push_back(loop_.elapsed()); });
    return c;
  }
  CheckStatus state(const HealthChecker& c, const std::string& name) {
    for (const auto& s : c.states()) {
      if (s.name == name) return s;
    }
    ADD_FAILURE() << "no check " << name;
    return {};
  }
  Duration since(TimePoint t) const { return t - SimLoop::kStart; }

  SimLoop loop_;
  FakeScheduler scheduler_;
  ScriptedProbes probes_;
  Events events_;
};

TEST_F(CheckerTest, WithoutChecksIsHealthyAndRunsNothing) {
  auto checker = make({}, 1000ms);
  checker->start();
  loop_.advance(10s);
  EXPECT_TRUE(checker->healthy());
  EXPECT_TRUE(checker->states().empty());
  EXPECT_FALSE(checker->unhealthySince().has_value());
  EXPECT_FALSE(checker->failedLongerThan(0ms));
  EXPECT_TRUE(events_.changes.empty());
  checker->stop();
  checker->stop();  // idempotent
}

TEST_F(CheckerTest, StartsHealthyAndPendingAndRunsEveryCheckAtOnce) {
  probes_.script("db", "F", 300ms);
  probes_.script("web", "F", 300ms);
  auto checker = make({check("db"), check("web", 500ms)}, 1000ms);
  EXPECT_TRUE(checker->healthy());
  ASSERT_EQ(checker->states().size(), 2u);
  EXPECT_EQ(state(*checker, "db"), (CheckStatus{"db", "command", true, "pending", 0, 0}));
  EXPECT_EQ(probes_.runs("db"), 0) << "nothing runs before start()";

  checker->start();
  EXPECT_EQ(probes_.runs("db"), 1) << "the first run starts in start() itself";
  EXPECT_EQ(probes_.runs("web"), 1);
  loop_.advance(299ms);
  EXPECT_EQ(state(*checker, "db").last_result, "pending");
  loop_.advance(1ms);
  EXPECT_EQ(state(*checker, "db"), (CheckStatus{"db", "command", true, "fail: scripted failure", 0, 1}));
  EXPECT_TRUE(checker->healthy()) << "one failure of fall=3 is not unhealthy yet";
}

TEST_F(CheckerTest, RiseAndFallCountConsecutiveResults) {
  // Runs at 0, 1, 2, ... s, each taking 100 ms: 1 F, 2 F, 3 P (resets the failures), 4-6 F F F
  // (fall=3: unhealthy after run 6), 7 P (rise=2: still unhealthy), 8 P (healthy), then passes.
  probes_.script("plan", "FFPFFFPP", 100ms);
  auto checker = make({check("plan", 1000ms, /*rise=*/2, /*fall=*/3)}, 60s);
  checker->start();
  loop_.advance(5s + 99ms);
  EXPECT_TRUE(checker->healthy());
  EXPECT_EQ(state(*checker, "plan").consecutive_failures, 2);
  loop_.advance(1ms);  // run 6 ends
  EXPECT_FALSE(checker->healthy());
  EXPECT_FALSE(state(*checker, "plan").healthy);
  EXPECT_EQ(checker->unhealthySince(), loop_.now());
  loop_.advance(1s);  // run 7 ends: one pass
  EXPECT_FALSE(checker->healthy());
  EXPECT_EQ(state(*checker, "plan").consecutive_passes, 1);
  loop_.advance(1s);  // run 8 ends
  EXPECT_TRUE(checker->healthy());
  EXPECT_FALSE(checker->unhealthySince().has_value());
  loop_.advance(3s);
  EXPECT_EQ(events_.changes, (std::vector<std::pair<bool, Duration>>{{false, 5100ms}, {true, 7100ms}}));
  EXPECT_EQ(state(*checker, "plan"), (CheckStatus{"plan", "command", true, "pass", 5, 0}));
}

TEST_F(CheckerTest, TheVerdictIsUnhealthyWhileAnyCheckIs) {
  probes_.script("good", "P");
  probes_.script("bad", "F");
  auto checker = make({check("good", 1000ms, 1, 1), check("bad", 1000ms, 1, 1)}, 60s);
  checker->start();
  loop_.advance(500ms);
  EXPECT_FALSE(checker->healthy());
  EXPECT_TRUE(state(*checker, "good").healthy);
  EXPECT_FALSE(state(*checker, "bad").healthy);
}

TEST_F(CheckerTest, FailAfterFiresOncePerUnhealthyPeriod) {
  // fall=1, rise=1: unhealthy from the first run's end (10 ms) until a pass, healthy again at 5 s,
  // unhealthy again at 6 s.
  probes_.script("svc", "FFFFFPF", 10ms);
  auto checker = make({check("svc", 1000ms, 1, 1)}, 2000ms);
  checker->start();
  loop_.advance(10ms);
  ASSERT_FALSE(checker->healthy());
  loop_.advance(1999ms);
  EXPECT_TRUE(events_.failed_too_long.empty()) << "fired before fail_after";
  EXPECT_FALSE(checker->failedLongerThan(2000ms));
  loop_.advance(1ms);
  EXPECT_EQ(events_.failed_too_long, (std::vector<Duration>{2010ms}));
  EXPECT_TRUE(checker->failedLongerThan(2000ms));
  EXPECT_FALSE(checker->failedLongerThan(2001ms));
  loop_.advance(3s);  // still failing until 5.01 s: no second call for the same period
  EXPECT_EQ(events_.failed_too_long.size(), 1u);
  EXPECT_TRUE(checker->healthy());
  loop_.advance(3s);  // unhealthy again from 6.01 s: a new period, a new call at 8.01 s
  EXPECT_EQ(events_.failed_too_long, (std::vector<Duration>{2010ms, 8010ms}));
  EXPECT_EQ(events_.changes,
            (std::vector<std::pair<bool, Duration>>{{false, 10ms}, {true, 5010ms}, {false, 6010ms}}));
}

TEST_F(CheckerTest, RecoveringBeforeFailAfterDoesNotFire) {
  probes_.script("blip", "FPP", 10ms);
  auto checker = make({check("blip", 500ms, 2, 1)}, 2000ms);
  checker->start();
  loop_.advance(10s);
  EXPECT_EQ(events_.changes, (std::vector<std::pair<bool, Duration>>{{false, 10ms}, {true, 1010ms}}));
  EXPECT_TRUE(events_.failed_too_long.empty());
  EXPECT_FALSE(checker->unhealthySince().has_value());
  EXPECT_FALSE(checker->failedLongerThan(0ms));
}

TEST_F(CheckerTest, IntervalIsStartToStartAndAnOverrunIsFollowedAtOnce) {
  probes_.script("slow", "P", 300ms);
  probes_.script("slower", "P", 1500ms);  // overruns its 1 s interval
  auto checker = make({check("slow"), check("slower")}, 1000ms);
  checker->start();
  loop_.advance(3500ms);
  const TimePoint t0 = SimLoop::kStart;
  EXPECT_EQ(probes_.starts("slow"), (std::vector<TimePoint>{t0, t0 + 1s, t0 + 2s, t0 + 3s}));
  EXPECT_EQ(probes_.starts("slower"), (std::vector<TimePoint>{t0, t0 + 1500ms, t0 + 3000ms}));
}

TEST_F(CheckerTest, ASlowCheckDoesNotDelayAFastOne) {
  probes_.script("slow", "P", 20s);
  probes_.script("fast", "P", 1ms);
  auto checker = make({check("slow", 30s), check("fast", 20ms)}, 1000ms);
  checker->start();
  loop_.advance(1s);
  EXPECT_EQ(state(*checker, "fast").consecutive_passes, 50);
  EXPECT_EQ(state(*checker, "slow").last_result, "pending");
}

// SIGHUP: a reload must not touch a check it did not change. The unhealthy "bad" check keeps its
// failure streak and verdict, the node stays unhealthy since the same instant, its run in flight
// and its next start stand, and the handover deadline (fail_after) is not pushed back.
TEST_F(CheckerTest, ReloadKeepsUnchangedChecksWhateverElseChanges) {
  probes_.script("bad", "F", 100ms);
  probes_.script("good", "P", 100ms);
  probes_.script("gone", "P", 100ms);
  HealthCheckConfig bad = check("bad", 1000ms, 2, 2);
  HealthCheckConfig good = check("good");
  auto checker = make({good, bad, check("gone")}, 10s);
  checker->start();
  loop_.advance(4050ms);  // bad: 4 failures, unhealthy since 1.1 s; runs 5 in flight
  ASSERT_FALSE(checker->healthy());
  const CheckStatus bad_before = state(*checker, "bad");
  const CheckStatus good_before = state(*checker, "good");
  const auto since = checker->unhealthySince();
  ASSERT_EQ(bad_before.consecutive_failures, 4);

  HealthCheckConfig good_changed = good;
  good_changed.command = "probe good --deep";
  checker->replaceChecks({bad, good_changed, check("new")}, 10s);  // reordered, one changed,
  EXPECT_EQ(state(*checker, "bad"), bad_before);                   // one removed, one added
  EXPECT_FALSE(checker->healthy());
  EXPECT_EQ(checker->unhealthySince(), since);
  EXPECT_EQ(state(*checker, "good"), (CheckStatus{"good", "command", true, "pending", 0, 0}));
  EXPECT_EQ(probes_.cancelled("bad"), 0) << "the unchanged check's run in flight was cancelled";
  EXPECT_EQ(probes_.cancelled("good"), 1);
  EXPECT_EQ(probes_.cancelled("gone"), 1);
  EXPECT_EQ(probes_.runs("new"), 1) << "a new check runs at once";

  loop_.advance(50ms);  // bad's run 5 ends and counts
  EXPECT_EQ(state(*checker, "bad").consecutive_failures, 5);
  const TimePoint t0 = SimLoop::kStart;
  loop_.advance(1s);
  EXPECT_EQ(state(*checker, "good").last_result, "pass") << "the changed check ran afresh";
  EXPECT_EQ(probes_.starts("bad"), (std::vector<TimePoint>{t0, t0 + 1s, t0 + 2s, t0 + 3s, t0 + 4s, t0 + 5s}));
  loop_.advance(7s);  // 12.1 s: fail_after counts from the original 1.1 s
  EXPECT_EQ(events_.failed_too_long, (std::vector<Duration>{11100ms}));
  EXPECT_EQ(events_.changes, (std::vector<std::pair<bool, Duration>>{{false, 1100ms}}));
}

// The reload bug: editing only how a check is scheduled or counted (interval, timeout, rise,
// fall) reset it to healthy "pending", so a leader failing its checks became healthy again and
// its fail_after handover started over on every such SIGHUP. The probe is the same: its history
// stays, judged by the new thresholds.
TEST_F(CheckerTest, ReloadChangingOnlyTimingOrThresholdsKeepsTheHistory) {
  probes_.script("db", "F", 100ms);
  HealthCheckConfig db = check("db", 1000ms, 2, 3);
  auto checker = make({db}, 10s);
  checker->start();
  loop_.advance(3050ms);  // 3 failures: unhealthy since 2.1 s; run 4 in flight
  ASSERT_FALSE(checker->healthy());
  const auto since = checker->unhealthySince();

  HealthCheckConfig retuned = db;
  retuned.fall = 5;
  retuned.rise = 3;
  retuned.interval = 2000ms;
  retuned.timeout = 1500ms;
  checker->replaceChecks({retuned}, 10s);
  EXPECT_EQ(state(*checker, "db"), (CheckStatus{"db", "command", false, "fail: scripted failure", 0, 3}));
  EXPECT_FALSE(checker->healthy());
  EXPECT_EQ(checker->unhealthySince(), since);
  EXPECT_EQ(probes_.cancelled("db"), 0);
  loop_.advance(50ms);  // run 4 (started at 3 s) ends; the next starts 2 s after it, at 5 s
  EXPECT_EQ(state(*checker, "db").consecutive_failures, 4);
  loop_.advance(2s);
  const TimePoint t0 = SimLoop::kStart;
  EXPECT_EQ(probes_.starts("db"), (std::vector<TimePoint>{t0, t0 + 1s, t0 + 2s, t0 + 3s, t0 + 5s}));
  EXPECT_EQ(probes_.lastTimeout("db"), 1500ms);
  loop_.advance(8s);
  EXPECT_EQ(events_.failed_too_long, (std::vector<Duration>{12100ms})) << "handover postponed";
  EXPECT_EQ(events_.changes, (std::vector<std::pair<bool, Duration>>{{false, 2100ms}}));
}

TEST_F(CheckerTest, ReloadWithLowerThresholdsJudgesTheStreakAtOnce) {
  probes_.script("db", "PPFFF", 10ms);
  auto checker = make({check("db", 1000ms, 2, 5)}, 10s);
  checker->start();
  loop_.advance(4500ms);  // P P F F F: healthy, 3 failures of fall=5
  ASSERT_TRUE(checker->healthy());
  HealthCheckConfig stricter = check("db", 1000ms, 2, 3);
  checker->replaceChecks({stricter}, 10s);
  EXPECT_FALSE(checker->healthy()) << "3 failures in a row reach the new fall=3";
  loop_.runDue();
  EXPECT_EQ(events_.changes, (std::vector<std::pair<bool, Duration>>{{false, 4500ms}}));
}

TEST_F(CheckerTest, ReloadWithANewFailAfterMovesThePendingDeadline) {
  probes_.script("db", "F", 10ms);
  auto checker = make({check("db", 1000ms, 1, 1)}, 10s);
  checker->start();
  loop_.advance(1s);  // unhealthy since 10 ms
  checker->replaceChecks({check("db", 1000ms, 1, 1)}, 3s);
  EXPECT_EQ(checker->failAfter(), 3s);
  loop_.advance(2009ms);
  EXPECT_TRUE(events_.failed_too_long.empty());
  loop_.advance(1ms);
  EXPECT_EQ(events_.failed_too_long, (std::vector<Duration>{3010ms}));
}

TEST_F(CheckerTest, ARemovedFailingCheckMakesTheNodeHealthy) {
  probes_.script("bad", "F", 10ms);
  auto checker = make({check("good"), check("bad", 1000ms, 1, 1)}, 10s);
  checker->start();
  loop_.advance(100ms);
  ASSERT_FALSE(checker->healthy());
  checker->replaceChecks({check("good")}, 10s);
  EXPECT_TRUE(checker->healthy());
  loop_.advance(20s);
  EXPECT_EQ(events_.changes, (std::vector<std::pair<bool, Duration>>{{false, 10ms}, {true, 100ms}}));
  EXPECT_TRUE(events_.failed_too_long.empty());
}

TEST_F(CheckerTest, ReloadAddsChecksToAnEmptyCheckerAndWaitsForStartWhenStopped) {
  probes_.script("db", "F", 10ms);
  auto checker = make({}, 10s);
  checker->replaceChecks({check("db", 1000ms, 1, 1)}, 10s);  // stopped: nothing runs yet
  loop_.advance(5s);
  EXPECT_EQ(probes_.runs("db"), 0);
  EXPECT_EQ(state(*checker, "db").last_result, "pending");
  checker->start();
  checker->replaceChecks({check("db", 1000ms, 1, 1), check("web")}, 10s);  // running: at once
  EXPECT_EQ(probes_.runs("web"), 1);
  EXPECT_EQ(probes_.runs("db"), 1) << "an unchanged check is not started a second time";
  loop_.advance(10ms);
  EXPECT_FALSE(checker->healthy());
}

TEST_F(CheckerTest, StopInTheMiddleOfARunCancelsItAndNothingRunsAfterwards) {
  probes_.script("db", "F", 500ms);
  probes_.script("web", "F", 100ms);
  auto checker = make({check("db", 1000ms, 1, 1), check("web", 1000ms, 1, 1)}, 1000ms);
  checker->start();
  loop_.advance(200ms);  // web failed at 100 ms (node unhealthy); db's run is in flight
  ASSERT_FALSE(checker->healthy());
  checker->stop();
  EXPECT_EQ(probes_.cancelled("db"), 1);
  loop_.advance(1h);
  EXPECT_EQ(probes_.inFlight(), 0) << "every run completed exactly once";
  EXPECT_EQ(probes_.runs("db"), 1);
  EXPECT_EQ(probes_.runs("web"), 1);
  EXPECT_EQ(state(*checker, "db").last_result, "pending") << "a cancelled run is not a result";
  EXPECT_EQ(scheduler_.pending(), 0u) << "a timer or task of the checker is still queued";
  EXPECT_TRUE(events_.failed_too_long.empty()) << "fail_after fired after stop()";
  EXPECT_EQ(events_.changes, (std::vector<std::pair<bool, Duration>>{{false, 100ms}}));

  checker->start();  // resumes: counters kept, the deadline runs again from the same instant
  EXPECT_EQ(probes_.runs("db"), 2);
  loop_.advance(10ms);
  EXPECT_EQ(events_.failed_too_long, (std::vector<Duration>{1h + 200ms}))
      << "a deadline long past fires at once on start()";
}

TEST_F(CheckerTest, CallbacksQueuedBeforeStopAreDropped) {
  probes_.script("db", "F", 10ms);
  auto checker = make({check("db", 1000ms, 1, 1)}, 1000ms);
  checker->start();
  // Run the completion only: the verdict changes and onChange is queued behind it.
  loop_.runUntilCondition([&] { return !checker->healthy(); }, loop_.now() + 1s);
  ASSERT_FALSE(checker->healthy());
  checker->stop();
  loop_.advance(10s);
  EXPECT_TRUE(events_.changes.empty());
}

TEST_F(CheckerTest, DestroyedWithARunInFlightIgnoresItsCompletion) {
  probes_.script("db", "F", 500ms);
  auto checker = make({check("db")}, 1000ms);
  checker->start();
  loop_.advance(100ms);
  checker.reset();  // stop(): the completion ("cancelled") still arrives, to nobody
  loop_.advance(10s);
  EXPECT_EQ(probes_.inFlight(), 0);
  EXPECT_EQ(scheduler_.pending(), 0u);
}

TEST_F(CheckerTest, ReadersSeeTheStateFromAnyThread) {
  probes_.script("db", "F", 10ms);
  auto checker = make({check("db", 100ms, 1, 1)}, 1000ms);
  checker->start();
  std::atomic<bool> done{false};
  std::atomic<int> reads{0};
  std::thread reader([&] {  // a NATS status responder, say
    while (!done) {
      (void)checker->healthy();
      (void)checker->states();
      (void)checker->unhealthySince();
      (void)checker->failAfter();
      ++reads;
    }
  });
  ASSERT_TRUE(eventually([&] { return reads.load() > 0; }, 5000ms)) << "the reader never ran";
  loop_.advance(5s);  // the state changes while the reader reads
  done = true;
  reader.join();
  EXPECT_FALSE(checker->healthy());
  EXPECT_EQ(state(*checker, "db").consecutive_failures, 50);
}

}  // namespace
}  // namespace hacoord
