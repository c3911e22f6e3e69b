// NATS request/reply against a real nats-server: replies, late replies, no responders, teardown races.
#include "nats/nats_control.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "support/runtime_scheduler.h"
#include "nats/nats_connection.h"
#include "support/eventually.h"
#include "support/nats_server_fixture.h"

namespace hacoord {
namespace {

using namespace std::chrono_literals;

class NatsControlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<test::NatsServer>();
    NatsConfig c;
    c.servers = {server_->url()};
    auto r = NatsConnection::connect(c, "responder-side");
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    responder_conn_ = std::move(r).value();
    auto q = NatsConnection::connect(c, "requester-side");
    ASSERT_TRUE(q.isOk()) << q.status().toString();
    requester_conn_ = std::move(q).value();
  }

  Result<std::unique_ptr<NatsResponder>> respond(const std::string& subject, NatsResponder::Handler handler) {
    return NatsResponder::subscribe(*responder_conn_, subject, std::move(handler));
  }

  std::unique_ptr<test::NatsServer> server_;
  std::unique_ptr<NatsConnection> responder_conn_;
  std::unique_ptr<NatsConnection> requester_conn_;
};

TEST(NatsControlSubjects, FollowTheDesign) {
  EXPECT_EQ(controlSubject("prod", "node-1", "stepdown"), "hacoord.prod.control.node-1.stepdown");
  EXPECT_EQ(controlSubject("prod", "node-1", "promote"), "hacoord.prod.control.node-1.promote");
  EXPECT_EQ(healthSubject("prod", "node-1"), "hacoord.prod.health.node-1");
  EXPECT_EQ(statusSubject("prod"), "hacoord.prod.status");
}

TEST_F(NatsControlTest, ResponderAnswersARequest) {
  const std::string subject = controlSubject("c1", "n1", "stepdown");
  auto responder = respond(subject, [](std::string body, NatsResponder::ReplyFn reply) {
    reply("{\"ok\":true,\"echo\":\"" + body + "\"}");
  });
  ASSERT_TRUE(responder.isOk()) << responder.status().toString();
  EXPECT_EQ((*responder)->subject(), subject);
  auto reply = natsRequest(*requester_conn_, subject, "hi", 2000ms);
  ASSERT_TRUE(reply.isOk()) << reply.status().toString();
  EXPECT_EQ(*reply, "{\"ok\":true,\"echo\":\"hi\"}");
}

TEST_F(NatsControlTest, AReplyMayComeLaterFromAnotherThreadAndOnlyOnce) {
  test::RuntimeScheduler worker;
  auto responder = respond("later", [&](std::string body, NatsResponder::ReplyFn reply) {
    // The usual shape: hand the work to the node's scheduler, answer from there.
    worker.runAfter(20ms, [body, reply] {
      reply("first:" + body);
      reply("second:" + body);  // ignored
    });
  });
  ASSERT_TRUE(responder.isOk());
  for (int i = 0; i < 3; ++i) {
    auto reply = natsRequest(*requester_conn_, "later", std::to_string(i), 2000ms);
    ASSERT_TRUE(reply.isOk()) << reply.status().toString();
    EXPECT_EQ(*reply, "first:" + std::to_string(i));
  }
  responder = internalError("gone");  // unsubscribe before the worker stops
  worker.stop();
}

TEST_F(NatsControlTest, NoResponderIsNotFoundAtOnce) {
  const auto t0 = std::chrono::steady_clock::now();
  auto reply = natsRequest(*requester_conn_, "hacoord.c1.control.ghost.stepdown", "x", 3000ms);
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(reply.isOk());
  EXPECT_EQ(reply.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(reply.status().message(), "no responders on hacoord.c1.control.ghost.stepdown");
  EXPECT_LT(took, 500ms) << "no responders must not wait for the timeout";
}

TEST_F(NatsControlTest, SilentResponderIsDeadlineExceeded) {
  std::mutex mutex;
  std::vector<NatsResponder::ReplyFn> kept;  // never called before the timeout
  auto responder = respond("silent", [&](std::string, NatsResponder::ReplyFn reply) {
    std::lock_guard lock(mutex);
    kept.push_back(std::move(reply));
  });
  ASSERT_TRUE(responder.isOk());
  auto reply = natsRequest(*requester_conn_, "silent", "x", 200ms);
  ASSERT_FALSE(reply.isOk());
  EXPECT_EQ(reply.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_NE(reply.status().message().find("silent"), std::string::npos);
  ASSERT_TRUE(eventually(
      [&] {
        std::lock_guard lock(mutex);
        return kept.size() == 1;
      },
      2000ms))
      << "the handler never saw the request";
  responder = internalError("gone");
  // A reply after the responder is gone is dropped quietly.
  std::lock_guard lock(mutex);
  ASSERT_EQ(kept.size(), 1u);
  kept.front()("too late");
}

TEST_F(NatsControlTest, ADestroyedResponderNoLongerAnswers) {
  auto responder = respond("bye", [](std::string, NatsResponder::ReplyFn reply) { reply("here"); });
  ASSERT_TRUE(responder.isOk());
  ASSERT_TRUE(natsRequest(*requester_conn_, "bye", "", 2000ms).isOk());
  responder = internalError("gone");
  ASSERT_TRUE(eventually(
      [&] {
        return natsRequest(*requester_conn_, "bye", "", 500ms).status().code() == StatusCode::kNotFound;
      },
      3000ms));
}

TEST_F(NatsControlTest, DestroyingRacesWithRequestsAndLateReplies) {
  std::atomic<bool> stop{false};
  std::atomic<int> answered{0};
  std::thread requester([&] {
    while (!stop) {
      if (natsRequest(*requester_conn_, "race", "x", 100ms).isOk()) ++answered;
    }
  });
  test::RuntimeScheduler late;  // replies that may land after their responder is gone
  for (int round = 0; round < 20; ++round) {
    auto captured = std::make_shared<std::atomic<int>>(0);
    auto responder = respond("race", [&late, captured](std::string, NatsResponder::ReplyFn reply) {
      ++*captured;
      reply("now");
      late.post([reply] { reply("again"); });
    });
    ASSERT_TRUE(responder.isOk());
    eventually([&] { return captured->load() > 0; }, 1000ms, 1ms);
    responder = internalError("gone");  // while requests keep arriving
  }
  stop = true;
  requester.join();
  late.stop();
  EXPECT_GT(answered.load(), 0);
}

TEST_F(NatsControlTest, AHandlerMayDestroyItsOwnResponder) {
  std::unique_ptr<NatsResponder> self;
  std::atomic<bool> done{false};
  auto responder = respond("self", [&](std::string, NatsResponder::ReplyFn reply) {
    reply("last words");
    self.reset();  // must not wait for itself
    done = true;
  });
  ASSERT_TRUE(responder.isOk());
  self = std::move(responder).value();
  auto reply = natsRequest(*requester_conn_, "self", "", 2000ms);
  ASSERT_TRUE(reply.isOk()) << reply.status().toString();
  EXPECT_EQ(*reply, "last words");
  EXPECT_TRUE(eventually([&] { return done.load(); }, 2000ms));
}

TEST_F(NatsControlTest, AThrowingHandlerDoesNotKillTheResponder) {
  std::atomic<int> calls{0};
  auto responder = respond("throws", [&](std::string body, NatsResponder::ReplyFn reply) {
    if (++calls == 1) throw std::runtime_error("boom");
    reply(body);
  });
  ASSERT_TRUE(responder.isOk());
  EXPECT_EQ(natsRequest(*requester_conn_, "throws", "a", 200ms).status().code(),
            StatusCode::kDeadlineExceeded);
  auto reply = natsRequest(*requester_conn_, "throws", "b", 2000ms);
  ASSERT_TRUE(reply.isOk()) << reply.status().toString();
  EXPECT_EQ(*reply, "b");
}

TEST_F(NatsControlTest, GatherCollectsEveryResponder) {
  std::vector<std::unique_ptr<NatsResponder>> nodes;
  for (int i = 0; i < 3; ++i) {
    auto r = respond(statusSubject("c1"),
                     [i](std::string, NatsResponder::ReplyFn reply) { reply("node-" + std::to_string(i)); });
    ASSERT_TRUE(r.isOk());
    nodes.push_back(std::move(r).value());
  }
  auto replies = natsGather(*requester_conn_, statusSubject("c1"), "", 1500ms);
  ASSERT_TRUE(replies.isOk()) << replies.status().toString();
  std::sort(replies->begin(), replies->end());
  EXPECT_EQ(*replies, (std::vector<std::string>{"node-0", "node-1", "node-2"}));
}

TEST_F(NatsControlTest, GatherWithNobodyIsNotFoundAtOnce) {
  const auto t0 = std::chrono::steady_clock::now();
  auto replies = natsGather(*requester_conn_, statusSubject("empty"), "", 2000ms);
  EXPECT_EQ(replies.status().code(), StatusCode::kNotFound);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 500ms);
}

TEST_F(NatsControlTest, RequestWhileDisconnectedIsUnavailableAtOnce) {
  server_->kill9();
  ASSERT_TRUE(eventually([&] { return !requester_conn_->connected(); }, 5000ms));
  const auto t0 = std::chrono::steady_clock::now();
  auto reply = natsRequest(*requester_conn_, "anything", "", 2000ms);
  EXPECT_EQ(reply.status().code(), StatusCode::kUnavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 500ms);
}

}  // namespace
}  // namespace hacoord
