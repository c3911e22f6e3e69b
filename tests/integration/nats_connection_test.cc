// NatsConnection against real nats-servers: clear connect failures, server lists, reconnect events.
#include "nats/nats_connection.h"

#include <atomic>
#include <chrono>
#include <string>

#include <gtest/gtest.h>

#include "support/eventually.h"
#include "support/nats_server_fixture.h"

namespace hacoord {
namespace {

using namespace std::chrono_literals;
using test::NatsServer;

using test::testNatsConfig;

TEST(NatsConnectionTest, NothingListeningIsUnavailableWithOneClearLine) {
  const std::string url = "nats://127.0.0.1:" + std::to_string(test::freeLoopbackPort());
  const auto t0 = std::chrono::steady_clock::now();
  auto conn = NatsConnection::connect(testNatsConfig({url}), "nobody-home");
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(conn.isOk());
  EXPECT_EQ(conn.status().code(), StatusCode::kUnavailable);
  const std::string& msg = conn.status().message();
  EXPECT_NE(msg.find("cannot connect to NATS at " + url + ": "), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
  EXPECT_LT(took, 3000ms) << "an initial connect must not retry forever";
}

TEST(NatsConnectionTest, SeveralDeadServersAreAllNamed) {
  const std::string a = "nats://127.0.0.1:" + std::to_string(test::freeLoopbackPort());
  const std::string b = "nats://127.0.0.1:" + std::to_string(test::freeLoopbackPort());
  auto conn = NatsConnection::connect(testNatsConfig({a, b}), "nobody-home");
  ASSERT_FALSE(conn.isOk());
  EXPECT_NE(conn.status().message().find(a + "," + b), std::string::npos) << conn.status().message();
}

TEST(NatsConnectionTest, NoServersOrBadFilesAreInvalidArgument) {
  auto none = NatsConnection::connect(testNatsConfig({}), "empty");
  EXPECT_EQ(none.status().code(), StatusCode::kInvalidArgument);

  NatsConfig bad_ca = testNatsConfig({"nats://127.0.0.1:4222"});
  bad_ca.tls.ca = "/nonexistent/ca.pem";
  auto ca = NatsConnection::connect(bad_ca, "bad-ca");
  EXPECT_EQ(ca.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(ca.status().message().find("/nonexistent/ca.pem"), std::string::npos) << ca.status().message();
}

TEST(NatsConnectionTest, ADeadServerInTheListIsSkipped) {
  NatsServer server;
  const std::string dead = "nats://127.0.0.1:" + std::to_string(test::freeLoopbackPort());
  auto conn = NatsConnection::connect(testNatsConfig({dead, server.url()}), "skipper");
  ASSERT_TRUE(conn.isOk()) << conn.status().toString();
  EXPECT_TRUE((*conn)->connected());
  EXPECT_EQ((*conn)->connectedUrl(), server.url());
  EXPECT_NE((*conn)->js(), nullptr);
  EXPECT_NE((*conn)->raw(), nullptr);
}

TEST(NatsConnectionTest, ReportsDisconnectAndReconnectButNotItsOwnClose) {
  NatsServer server;
  std::atomic<int> disconnected{0};
  std::atomic<int> reconnected{0};
  std::atomic<int> closed{0};
  ConnectionEvents events;
  events.onDisconnected = [&] { ++disconnected; };
  events.onReconnected = [&] { ++reconnected; };
  events.onClosed = [&] { ++closed; };
  auto conn = NatsConnection::connect(testNatsConfig({server.url()}), "events", std::move(events));
  ASSERT_TRUE(conn.isOk()) << conn.status().toString();

  server.kill9();
  ASSERT_TRUE(eventually([&] { return disconnected.load() == 1; }, 5000ms));
  EXPECT_FALSE((*conn)->connected());
  EXPECT_EQ((*conn)->connectedUrl(), "");

  server.start();
  ASSERT_TRUE(eventually([&] { return reconnected.load() == 1; }, 5000ms));
  EXPECT_TRUE((*conn)->connected());

  conn = internalError("drop it");  // destroys the connection
  EXPECT_EQ(closed.load(), 0);
  EXPECT_EQ(disconnected.load(), 1);
}

TEST(NatsConnectionTest, KeepsReconnectingThroughALongerOutage) {
  NatsServer server;
  std::atomic<int> reconnected{0};
  ConnectionEvents events;
  events.onReconnected = [&] { ++reconnected; };
  auto conn = NatsConnection::connect(testNatsConfig({server.url()}), "patient", std::move(events));
  ASSERT_TRUE(conn.isOk());
  server.stop();
  ASSERT_TRUE(eventually([&] { return !(*conn)->connected(); }, 5000ms));
  // Several backoff rounds pass (50, 100, 200, 400, 400 ms ...) while nothing answers.
  EXPECT_FALSE(eventually([&] { return (*conn)->connected(); }, 1500ms));
  server.start();
  // At most one capped delay (400 ms) plus the connect itself.
  EXPECT_TRUE(eventually([&] { return reconnected.load() == 1; }, 3000ms));
}

}  // namespace
}  // namespace hacoord
