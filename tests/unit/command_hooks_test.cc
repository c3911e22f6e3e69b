// The daemon's notify hooks (CommandHooks over runShell) with a real /bin/sh: environment, exit
// codes, output into the log, the time limit killing the whole process group.
#include "manager/command_hooks.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>
#include <thread>
#include <sstream>
#include <string>

#include "core/hook_runner.h"
#include "core/runtime.h"
#include "core/shell.h"
#include "support/eventually.h"
#include "support/log_capture.h"

namespace hacoord {
namespace {

using namespace std::chrono_literals;

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class CommandHooksTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/hacoord-hooks-XXXXXX";
    ASSERT_NE(::mkdtemp(templ), nullptr);
    dir_ = templ;
    config_.cluster_id = "c1";
    config_.node_id = "n1";
    config_.election.hook_time_limit = 2000ms;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::string dir_;
  test::LogCapture log_{"hooks"};
  Config config_;
};

TEST_F(CommandHooksTest, EachHookGetsTheDocumentedEnvironment) {
  const std::string out = dir_ + "/env";
  const std::string dump =
      "echo \"$HACOORD_EVENT cluster=$HACOORD_CLUSTER node=$HACOORD_NODE "
      "epoch=$HACOORD_EPOCH leader=$HACOORD_LEADER reason=$HACOORD_REASON\" >> " +
      out;
  config_.hooks.on_become_leader = dump;
  config_.hooks.on_lose_leadership = dump;
  config_.hooks.on_leader_change = dump;
  CommandHooks hooks(config_);
  EXPECT_TRUE(hooks.onBecomeLeader(Epoch(7)).isOk());
  hooks.onLeaderChange("n2", Epoch(8));
  EXPECT_TRUE(hooks.onLoseLeadership(Epoch(7), LossReason::kSteppedDown).isOk());
  hooks.onLeaderChange("", Epoch(9));
  EXPECT_EQ(readFile(out),
            "become-leader cluster=c1 node=n1 epoch=7 leader=n1 reason=elected\n"
            "leader-change cluster=c1 node=n1 epoch=8 leader=n2 reason=leader\n"
            "lose-leadership cluster=c1 node=n1 epoch=7 leader= reason=stepped-down\n"
            "leader-change cluster=c1 node=n1 epoch=9 leader= reason=vacant\n");
}

TEST_F(CommandHooksTest, NoCommandConfiguredIsASuccessThatRunsNothing) {
  CommandHooks hooks(config_);
  EXPECT_TRUE(hooks.onBecomeLeader(Epoch(1)).isOk());
  EXPECT_TRUE(hooks.onLoseLeadership(Epoch(1), LossReason::kLeaseExpired).isOk());
  EXPECT_TRUE(log_.lines().empty()) << log_.text();
}

TEST_F(CommandHooksTest, NonZeroExitIsAFailureNamingTheHookAndTheExit) {
  config_.hooks.on_become_leader = "exit 3";
  config_.hooks.on_lose_leadership = "kill -TERM $$";
  CommandHooks hooks(config_);
  const Status become = hooks.onBecomeLeader(Epoch(4));
  EXPECT_FALSE(become.isOk());
  EXPECT_EQ(become.message(), "onBecomeLeader command (epoch 4): exit 3");
  const Status lose = hooks.onLoseLeadership(Epoch(4), LossReason::kStopped);
  EXPECT_FALSE(lose.isOk());
  EXPECT_EQ(lose.message(), "onLoseLeadership command (epoch 4): killed by signal 15");
  EXPECT_TRUE(log_.contains("onBecomeLeader command (epoch 4): exit 3")) << log_.text();
}

TEST_F(CommandHooksTest, StdoutAndStderrGoToTheLogLineByLineWithTheHooksName) {
  config_.hooks.on_become_leader = "echo promoting; echo 'replica lag 0' >&2; printf 'no newline'";
  CommandHooks hooks(config_);
  ASSERT_TRUE(hooks.onBecomeLeader(Epoch(2)).isOk());
  EXPECT_TRUE(log_.contains("onBecomeLeader: promoting")) << log_.text();
  EXPECT_TRUE(log_.contains("onBecomeLeader: replica lag 0")) << log_.text();
  EXPECT_TRUE(log_.contains("onBecomeLeader: no newline")) << log_.text();
}

// A hung hook is killed at the limit, with everything it started (its process group), and the
// call returns a failure instead of holding hc-hooks forever.
TEST_F(CommandHooksTest, AHookPastTheLimitIsKilledWithItsChildren) {
  const std::string pid_file = dir_ + "/child.pid";
  config_.election.hook_time_limit = 300ms;
  config_.hooks.on_lose_leadership = "sleep 30 & echo $! > " + pid_file + "; wait";
  CommandHooks hooks(config_);
  const auto t0 = std::chrono::steady_clock::now();
  const Status s = hooks.onLoseLeadership(Epoch(5), LossReason::kSteppedDown);
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_FALSE(s.isOk());
  EXPECT_EQ(s.message(), "onLoseLeadership command (epoch 5): no exit within 300 ms (process group killed)");
  EXPECT_LT(took, 10s);
  const std::string pid_text = readFile(pid_file);
  ASSERT_FALSE(pid_text.empty());
  const pid_t child = std::stoi(pid_text);
  // The background sleep was in the hook's process group: gone (or a zombie reaped by init soon).
  EXPECT_TRUE(test::eventually(
      [&] {
        if (::kill(child, 0) != 0) return true;
        const std::string stat = readFile("/proc/" + std::to_string(child) + "/stat");
        return stat.find(") Z ") != std::string::npos;
      },
      5000ms))
      << "the hook's background child " << child << " survived the kill";
}

// Queued behind a slow hook, a command gets only what is left of its limit (counted from its
// queueing, as the HookRunner counts it): it never runs past the moment the election was told it
// failed. One whose whole limit passed in the queue is not started at all.
TEST_F(CommandHooksTest, ACommandQueuedBehindASlowHookGetsOnlyWhatIsLeftOfItsLimit) {
  config_.election.hook_time_limit = 1000ms;
  const std::string started = dir_ + "/started";
  config_.hooks.on_lose_leadership = "touch " + started + "; sleep 30";
  config_.hooks.on_become_leader = "touch " + started + "-become; sleep 30";
  Runtime runtime;
  auto strand = runtime.makeStrand();
  HookRunner runner(*strand, config_.election.hook_time_limit);
  auto hooks = std::make_shared<CommandHooks>(config_);
  std::atomic<int> finished{0};
  // A C++ hook busy for 300 ms (a slow promote), then the command: at most 700 ms left for it.
  runner.run("slow", [] {
    std::this_thread::sleep_for(300ms);
    return Status::ok();
  });
  runner.run("onLoseLeadership", [&] {
    EXPECT_FALSE(hooks->onLoseLeadership(Epoch(3), LossReason::kSteppedDown).isOk());
    ++finished;
    return Status::ok();
  });
  // Busy past the whole limit (it starts at ~1000 ms): the next command must not start.
  runner.run("slower", [] {
    std::this_thread::sleep_for(1100ms);
    return Status::ok();
  });
  runner.run("onBecomeLeader", [&] {
    EXPECT_EQ(hooks->onBecomeLeader(Epoch(4)).code(), StatusCode::kDeadlineExceeded);
    ++finished;
    return Status::ok();
  });
  ASSERT_TRUE(test::eventually([&] { return finished.load() == 2; }, 10s)) << log_.text();
  runner.shutdown();
  EXPECT_TRUE(std::filesystem::exists(started));
  std::smatch m;
  const std::string text = log_.text();
  const std::regex within("onLoseLeadership command \\(epoch 3\\): no exit within ([0-9]+) ms");
  ASSERT_TRUE(std::regex_search(text, m, within)) << text;
  EXPECT_LE(std::stoi(m[1].str()), 700) << "the command got its whole limit again after waiting 300 ms";
  EXPECT_FALSE(std::filesystem::exists(started + "-become")) << "started after its limit had passed";
  EXPECT_TRUE(log_.contains("onBecomeLeader command (epoch 4): not started")) << text;
}

TEST_F(CommandHooksTest, TheDaemonsEnvironmentIsPassedOnAndOverriddenByOurs) {
  ::setenv("HACOORD_TEST_INHERITED", "yes", 1);
  ::setenv("HACOORD_NODE", "stale", 1);
  const std::string out = dir_ + "/env";
  config_.hooks.on_become_leader = "echo \"$HACOORD_TEST_INHERITED $HACOORD_NODE\" > " + out;
  CommandHooks hooks(config_);
  ASSERT_TRUE(hooks.onBecomeLeader(Epoch(1)).isOk());
  ::unsetenv("HACOORD_TEST_INHERITED");
  ::unsetenv("HACOORD_NODE");
  EXPECT_EQ(readFile(out), "yes n1\n");
}

TEST(RunShellTest, ACommandThatCannotBeFoundIsExit127WithTheShellsMessageInTheOutput) {
  std::string lines;
  const ShellRun r =
      runShell("/nonexistent/hook", {}, 2000ms, [&](std::string_view l) { lines += std::string(l) + "\n"; });
  EXPECT_TRUE(r.started);
  EXPECT_EQ(r.exit_code, 127);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(lines.find("/nonexistent/hook"), std::string::npos) << lines;
}

TEST(RunShellTest, AnOverlongLineIsCutIntoPiecesNotBufferedWithoutBound) {
  std::size_t longest = 0;
  std::size_t total = 0;
  const ShellRun r = runShell("head -c 100000 /dev/zero | tr '\\0' x", {}, 5000ms, [&](std::string_view l) {
    longest = std::max(longest, l.size());
    total += l.size();
  });
  EXPECT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(total, 100000u);
  EXPECT_LE(longest, 4096u);
}

}  // namespace
}  // namespace hacoord
