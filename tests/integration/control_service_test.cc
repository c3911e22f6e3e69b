// ControlService against a real nats-server: the handover rate limit (one `stepdown` per cooldown,
// `stepdown.force` exempt), strict decoding with the code on the wire, and the requester in the log.
#include "node/control_service.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/logging.h"
#include "core/runtime.h"
#include "nats/nats_connection.h"
#include "nats/nats_control.h"
#include "node/control_codec.h"
#include "support/eventually.h"
#include "support/log_capture.h"
#include "support/nats_server_fixture.h"

namespace hacoord {
namespace {

using namespace std::chrono_literals;

constexpr milliseconds kCooldown = 5000ms;

// The service's clock, moved by the test (read on the strand thread).
class StepClock final : public Clock {
 public:
  TimePoint now() const override { return TimePoint(Duration(ns_.load())); }
  void advance(Duration d) { ns_ += d.count(); }

 private:
  std::atomic<Duration::rep> ns_{Duration(1000s).count()};
};

class ControlServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Only the control module speaks, and only into this test's sink.
    setLogLevel(std::getenv("HACOORD_TEST_VERBOSE") ? "debug" : "off");
    log_.emplace("control");

    server_ = std::make_unique<test::NatsServer>();
    const NatsConfig c = test::testNatsConfig({server_->url()});
    auto s = NatsConnection::connect(c, "node-side");
    ASSERT_TRUE(s.isOk()) << s.status().toString();
    node_conn_ = std::move(s).value();
    auto q = NatsConnection::connect(c, "cli-side");
    ASSERT_TRUE(q.isOk()) << q.status().toString();
    cli_conn_ = std::move(q).value();

    ControlActions actions;
    actions.step_down = [this](const std::string& successor, std::function<void(Status)> done) {
      {
        std::lock_guard lock(mutex_);
        handovers_.push_back(successor);
      }
      if (hold_step_down_) {
        std::lock_guard lock(mutex_);
        held_.push_back(std::move(done));
        return;
      }
      done(step_down_result_);
    };
    actions.promote = [](const std::string&) { return Status::ok(); };
    actions.set_candidate = [](bool, std::function<void()> applied) { applied(); };
    actions.handed_over_at = [this] {
      std::lock_guard lock(mutex_);
      return handed_over_at_;
    };
    auto svc = ControlService::start(*node_conn_, "c1", "n1", kCooldown, clock_, *strand_, *blocking_,
                                     std::move(actions));
    ASSERT_TRUE(svc.isOk()) << svc.status().toString();
    service_ = std::move(svc).value();
  }
  void TearDown() override {
    service_.reset();
    log_.reset();
    setLogLevel("off");
  }

  // The CLI's side: send `body` to the verb and decode the answer.
  Status ask(const std::string& verb, const std::string& body = "") {
    auto reply = natsRequest(*cli_conn_, controlSubject("c1", "n1", verb), body, 5000ms);
    if (!reply.isOk()) return reply.status();
    return decodeControlReply(*reply);
  }
  std::vector<std::string> handovers() {
    std::lock_guard lock(mutex_);
    return handovers_;
  }

  Runtime runtime_;
  std::unique_ptr<StrandScheduler> strand_ = runtime_.makeStrand();
  std::unique_ptr<StrandScheduler> blocking_ = runtime_.makeBlockingLane();
  StepClock clock_;
  std::optional<test::LogCapture> log_;  // the control module's messages, from SetUp on
  std::unique_ptr<test::NatsServer> server_;
  std::unique_ptr<NatsConnection> node_conn_;
  std::unique_ptr<NatsConnection> cli_conn_;
  std::unique_ptr<ControlService> service_;
  std::mutex mutex_;
  std::vector<std::string> handovers_;
  Status step_down_result_;                  // what the node's stepDown answers (set before asking)
  std::atomic<bool> hold_step_down_{false};  // keep stepDown's `done` in held_ (a slow handover)
  std::vector<std::function<void(Status)>> held_;
  TimePoint handed_over_at_{};  // when a handover gave the node its term (TimePoint{}: none)
};

// Two rate-limited stepdowns sent together: the second arrives while the first handover is still
// under way (its cooldown has not started yet) and must be refused all the same.
TEST_F(ControlServiceTest, ASecondStepDownDuringAHandoverInProgressIsRefused) {
  hold_step_down_ = true;
  std::atomic<int> first_code{-1};
  std::thread first([&] { first_code = static_cast<int>(ask("stepdown").code()); });
  ASSERT_TRUE(test::eventually(
      [&] {
        std::lock_guard lock(mutex_);
        return held_.size() == 1;
      },
      5000ms));
  const Status second = ask("stepdown", R"({"successor":"n2"})");
  EXPECT_EQ(second.code(), StatusCode::kFailedPrecondition) << second.toString();
  EXPECT_NE(second.message().find("a handover is in progress"), std::string::npos) << second.toString();
  std::function<void(Status)> done;
  {
    std::lock_guard lock(mutex_);
    done = std::move(held_.front());
  }
  strand_->post([done] { done(Status::ok()); });
  first.join();
  EXPECT_EQ(first_code.load(), static_cast<int>(StatusCode::kOk));
  EXPECT_EQ(handovers().front(), "");
}

TEST_F(ControlServiceTest, SecondStepDownWithinTheCooldownIsRefusedNamingIt) {
  ASSERT_TRUE(ask("stepdown", R"({"requester":"script-a"})").isOk());
  clock_.advance(1200ms);
  const Status second = ask("stepdown", R"({"successor":"n2","requester":"script-b"})");
  EXPECT_EQ(second.code(), StatusCode::kFailedPrecondition) << second.toString();
  EXPECT_EQ(second.message(),
            "the last handover took place 1200 ms ago; at most one per election.cooldownMs (5000 ms) "
            "unless forced by the operator (hacoord demote/promote --force)");
  EXPECT_EQ(handovers(), (std::vector<std::string>{""})) << "the refused one must not hand over";

  // Until the very end of the cooldown...
  clock_.advance(kCooldown - 1200ms - 1ms);
  EXPECT_EQ(ask("stepdown").code(), StatusCode::kFailedPrecondition);
  // ...and not a moment longer.
  clock_.advance(1ms);
  EXPECT_TRUE(ask("stepdown", R"({"successor":"n3"})").isOk());
  EXPECT_EQ(handovers(), (std::vector<std::string>{"", "n3"}));

  // Who asked is in the log, refused or not.
  EXPECT_TRUE(log_->contains("stepdown requested by 'script-a' on hacoord.c1.control.n1.stepdown"))
      << log_->text();
  EXPECT_TRUE(log_->contains("stepdown to n2 requested by 'script-b'")) << log_->text();
  EXPECT_TRUE(log_->contains("requested by '(not given)'")) << log_->text();
  EXPECT_TRUE(log_->contains("stepdown refused: FAILED_PRECONDITION")) << log_->text();
}

// The limit holds across the cluster: the node that handed over is no longer leader, so the new
// leader counts from the handover that gave it its term. Otherwise a script asking whoever leads
// now could bounce leadership from node to node, one handover after another.
TEST_F(ControlServiceTest, ALeaderThatTookOverInAHandoverRefusesAnotherUntilACooldownLater) {
  {
    std::lock_guard lock(mutex_);
    handed_over_at_ = clock_.now();
  }
  clock_.advance(300ms);
  const Status early = ask("stepdown", R"({"requester":"script"})");
  EXPECT_EQ(early.code(), StatusCode::kFailedPrecondition) << early.toString();
  EXPECT_EQ(
      early.message(),
      "this node took over in a handover 300 ms ago; at most one handover per election.cooldownMs (5000 ms) "
      "unless forced by the operator (hacoord demote/promote --force)");
  EXPECT_TRUE(handovers().empty());
  EXPECT_TRUE(ask("stepdown.force").isOk()) << "the operator may always move it";
  clock_.advance(kCooldown - 300ms);
  EXPECT_TRUE(ask("stepdown").isOk());
  EXPECT_EQ(handovers().size(), 2u);
}

TEST_F(ControlServiceTest, ForcedStepDownIsNotRateLimitedAndDoesNotStartACooldown) {
  ASSERT_TRUE(ask("stepdown").isOk());
  clock_.advance(10ms);
  const Status forced = ask("stepdown.force", R"({"successor":"n2","requester":"operator"})");
  EXPECT_TRUE(forced.isOk()) << forced.toString();
  EXPECT_TRUE(ask("stepdown.force").isOk());
  EXPECT_EQ(handovers(), (std::vector<std::string>{"", "n2", ""}));
  EXPECT_TRUE(log_->contains("stepdown.force to n2 requested by 'operator'")) << log_->text();

  // Forced handovers do not count: once the plain one's cooldown is over, a plain one goes.
  clock_.advance(kCooldown);
  EXPECT_TRUE(ask("stepdown").isOk());
}

// The cooldown counts from the last handover that succeeded: a refused one (not the leader) does
// not hold the next attempt back.
TEST_F(ControlServiceTest, FailedStepDownDoesNotStartTheCooldown) {
  step_down_result_ = failedPrecondition("not the leader");
  const Status refused = ask("stepdown");
  EXPECT_EQ(refused.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(refused.message(), "not the leader");
  step_down_result_ = Status::ok();
  clock_.advance(1ms);
  EXPECT_TRUE(ask("stepdown").isOk());
  EXPECT_EQ(handovers().size(), 2u);
}

// A malformed request is refused before anything happens, with its code on the wire, and does
// not use up the rate limit.
TEST_F(ControlServiceTest, MalformedRequestIsInvalidArgumentAndDoesNothing) {
  const Status bad = ask("stepdown", R"({"successor":"../x"})");
  EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.message(),
            "control request: successor: must be a node id ([A-Za-z0-9_-], 1 to 64 characters)");
  EXPECT_EQ(ask("join", R"({"successor":"n2"})").code(), StatusCode::kInvalidArgument);
  // The leader as its own successor would skip its cooldown and win again at once.
  const Status self = ask("stepdown", R"({"successor":"n1"})");
  EXPECT_EQ(self.code(), StatusCode::kInvalidArgument) << self.toString();
  EXPECT_EQ(self.message(), "successor n1 is this node, the one handing over");
  EXPECT_TRUE(handovers().empty());
  EXPECT_TRUE(ask("stepdown").isOk());
  EXPECT_TRUE(ask("join").isOk());
  EXPECT_TRUE(ask("leave").isOk());
  EXPECT_TRUE(ask("promote").isOk());
}

}  // namespace
}  // namespace hacoord
