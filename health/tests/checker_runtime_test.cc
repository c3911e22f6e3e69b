// HealthChecker wired as in the daemon: a StrandScheduler on the Runtime, the lease clock, real probes.
#include "health/checker.h"

#include <utility>  // before Asio: Boost 1.74 under C++20 needs it

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>

#include <gtest/gtest.h>

#include "core/runtime.h"
#include "health/tests/local_services.h"
#include "support/eventually.h"

namespace hacoord {
namespace {

using namespace std::chrono_literals;
using namespace test;

class CheckerRuntimeTest : public ::testing::Test {
 protected:
  ~CheckerRuntimeTest() override {
    if (checker_) strand_->runSync([this] { checker_->stop(); });
    strand_->shutdown();
    checker_.reset();
    probes_.reset();
    runtime_.stop();
  }

  void make(std::vector<HealthCheckConfig> checks, milliseconds fail_after) {
    checker_ = std::make_unique<HealthChecker>(std::move(checks), fail_after, clock_, *strand_, *probes_);
    checker_->setOnChange([this](bool healthy) {
      if (!strand_->inStrand()) off_strand_ = true;
      healthy ? ++turned_healthy_ : ++turned_unhealthy_;
    });
    checker_->setOnFailedTooLong([this] {
      if (!strand_->inStrand()) off_strand_ = true;
      ++failed_too_long_;
    });
  }
  void onStrand(std::function<void()> task) { ASSERT_TRUE(strand_->runSync(std::move(task))); }

  Runtime runtime_{1};
  LeaseClock clock_;
  std::unique_ptr<StrandScheduler> strand_ = runtime_.makeStrand();
  std::unique_ptr<AsioProbeRunner> probes_ = std::make_unique<AsioProbeRunner>(runtime_.io());
  std::unique_ptr<HealthChecker> checker_;
  std::atomic<int> turned_healthy_{0};
  std::atomic<int> turned_unhealthy_{0};
  std::atomic<int> failed_too_long_{0};
  std::atomic<bool> off_strand_{false};
};

TEST_F(CheckerRuntimeTest, MixedChecksAgainstLocalServices) {
  int port = 0;
  int listener = listenLoopback(16, &port);
  TinyHttpServer web("HTTP/1.0 200 OK\r\n\r\n");
  HealthCheckConfig t = tcpCheck("127.0.0.1:" + std::to_string(port));
  t.interval = 20ms;
  HealthCheckConfig h = httpCheck(web.url("/ready"));
  h.interval = 20ms;
  HealthCheckConfig c = commandCheck("cmd", "true", 1000ms, 20ms);
  make({t, h, c}, 60000ms);
  onStrand([this] { checker_->start(); });
  EXPECT_TRUE(eventually(
      [&] {
        auto s = checker_->states();
        return std::all_of(s.begin(), s.end(),
                           [](const CheckStatus& x) { return x.consecutive_passes >= 3; });
      },
      5000ms));
  EXPECT_TRUE(checker_->healthy());
  EXPECT_EQ(checker_->states()[0].type, "tcp");
  EXPECT_EQ(checker_->states()[1].type, "http");
  EXPECT_EQ(checker_->states()[2].type, "command");
  EXPECT_GE(web.requests(), 3);
  // The TCP service goes away: fall (3) failures later the node is unhealthy.
  ::close(listener);
  EXPECT_TRUE(eventually([&] { return !checker_->healthy(); }, 5000ms));
  auto s = checker_->states();
  EXPECT_FALSE(s[0].healthy);
  EXPECT_EQ(s[0].last_result.rfind("fail: connect to 127.0.0.1:", 0), 0u) << s[0].last_result;
  EXPECT_TRUE(s[1].healthy);
  EXPECT_TRUE(s[2].healthy);
  EXPECT_TRUE(eventually([&] { return turned_unhealthy_.load() == 1; }, 5000ms));
  EXPECT_FALSE(off_strand_.load()) << "a callback ran off the scheduler";
}

TEST_F(CheckerRuntimeTest, FailingLongEnoughFiresOnceOnTheStrand) {
  HealthCheckConfig down = commandCheck("down", "false", 1000ms, 20ms);
  down.fall = 1;
  make({down}, 300ms);
  const TimePoint t0 = clock_.now();
  onStrand([this] { checker_->start(); });
  ASSERT_TRUE(eventually([&] { return failed_too_long_.load() == 1; }, 5000ms));
  ASSERT_TRUE(checker_->unhealthySince().has_value());
  EXPECT_GE(*checker_->unhealthySince(), t0) << "unhealthySince() is on the lease clock";
  EXPECT_TRUE(checker_->failedLongerThan(300ms));
  EXPECT_FALSE(checker_->failedLongerThan(600s));
  const int failures = checker_->states()[0].consecutive_failures;
  ASSERT_TRUE(
      eventually([&] { return checker_->states()[0].consecutive_failures >= failures + 10; }, 5000ms));
  EXPECT_EQ(failed_too_long_.load(), 1);
  EXPECT_EQ(turned_unhealthy_.load(), 1);
  EXPECT_FALSE(off_strand_.load()) << "a callback ran off the scheduler";
}

TEST_F(CheckerRuntimeTest, StopKillsASlowCommandAndAFastCheckWasNeverDelayed) {
  TempDir dir;
  HealthCheckConfig slow =
      commandCheck("slow", "echo $$ > " + dir.file("slow") + "; exec sleep 30", 15000ms, 20000ms);
  HealthCheckConfig fast = commandCheck("fast", "true", 1000ms, 20ms);
  make({slow, fast}, 1000ms);
  onStrand([this] { checker_->start(); });
  ASSERT_TRUE(eventually([&] { return pidFrom(dir.file("slow")) > 0; }, 5000ms));
  EXPECT_TRUE(eventually([&] { return checker_->states()[1].consecutive_passes >= 10; }, 5000ms))
      << "the fast check made only " << checker_->states()[1].consecutive_passes << " runs";
  EXPECT_EQ(checker_->states()[0].last_result, "pending");
  onStrand([this] { checker_->stop(); });
  // The kill does not wait out the slow check's 15 s timeout.
  EXPECT_TRUE(eventually([&] { return processReaped(pidFrom(dir.file("slow"))); }, 5000ms));
  EXPECT_EQ(checker_->states()[0].last_result, "pending");  // a cancelled run is not a result
  // start() after stop() runs the checks again.
  const int passes = checker_->states()[1].consecutive_passes;
  onStrand([this] { checker_->start(); });
  EXPECT_TRUE(eventually([&] { return checker_->states()[1].consecutive_passes > passes; }, 5000ms));
}

}  // namespace
}  // namespace hacoord
