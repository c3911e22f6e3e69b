// NatsFloorExchange against a real nats-server: strict replies, gather across nodes, garbage ignored.
#include "nats/nats_floor_exchange.h"

#include "hacoord/lease.h"

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <utility>

#include <gtest/gtest.h>

#include "support/runtime_scheduler.h"
#include "nats/nats_connection.h"
#include "nats/nats_control.h"
#include "support/nats_server_fixture.h"

namespace hacoord {
namespace {

using namespace std::chrono_literals;
using test::NatsServer;
using test::testNatsConfig;

TEST(FloorReplyTest, RoundTripsAndRefusesAnythingElse) {
  const FloorReply r{Epoch(Epoch::kMax), kMaxLease};  // the largest accepted
  auto back = decodeFloorReply(encodeFloorReply(r));
  ASSERT_TRUE(back.isOk()) << back.status().toString();
  EXPECT_EQ(*back, r);
  auto extra = decodeFloorReply(R"({"epoch":3,"leaseMs":0,"newer":"field"})");
  ASSERT_TRUE(extra.isOk()) << extra.status().toString();
  EXPECT_EQ(extra->epoch, Epoch(3));
  for (const char* bad :
       {"", "nope", "[]", "{}", R"({"epoch":3})", R"({"leaseMs":3})", R"({"epoch":-1,"leaseMs":0})",
        R"({"epoch":1.5,"leaseMs":0})", R"({"epoch":"9","leaseMs":0})", R"({"epoch":1,"leaseMs":-5})",
        R"({"epoch":1,"leaseMs":1e3})",
        // A lying node must not push every floor to the end of the epoch space (no campaign
        // could go above it) nor make every node wait forever once the holder is unknown.
        R"({"epoch":4611686018427387905,"leaseMs":0})", R"({"epoch":18446744073709551615,"leaseMs":0})",
        R"({"epoch":1,"leaseMs":86400001})"}) {
    auto r2 = decodeFloorReply(bad);
    EXPECT_FALSE(r2.isOk()) << "accepted: " << bad;
    EXPECT_EQ(r2.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

class NatsFloorExchangeTest : public ::testing::Test {
 protected:
  std::unique_ptr<NatsConnection> connect(const std::string& name) {
    auto c = NatsConnection::connect(testNatsConfig({server_.url()}), name);
    EXPECT_TRUE(c.isOk()) << c.status().toString();
    return c.isOk() ? std::move(c).value() : nullptr;
  }

  // Gathers through `exchange` and waits (bounded) for the callback on the elector scheduler.
  std::pair<Epoch, milliseconds> gather(NatsFloorExchange& exchange) {
    auto promise = std::make_shared<std::promise<std::pair<Epoch, milliseconds>>>();
    auto future = promise->get_future();
    auto on_elector = std::make_shared<std::atomic<bool>>(false);
    exchange.gather([this, promise, on_elector](Epoch e, milliseconds lease) {
      on_elector->store(elector_.inSchedulerThread());
      promise->set_value({e, lease});
    });
    EXPECT_EQ(future.wait_for(5s), std::future_status::ready) << "no gather callback";
    EXPECT_TRUE(on_elector->load()) << "the callback must run on the elector's scheduler";
    return future.get();
  }

  test::RuntimeScheduler elector_;
  test::RuntimeScheduler blocking_;
  NatsServer server_;
};

TEST_F(NatsFloorExchangeTest, GatherTakesTheHighestFloorAndIgnoresGarbage) {
  auto conn_a = connect("floor-a");
  auto conn_b = connect("floor-b");
  auto conn_x = connect("floor-garbage");
  ASSERT_TRUE(conn_a && conn_b && conn_x);
  InMemoryEpochFloor floor_a;
  InMemoryEpochFloor floor_b;
  ASSERT_TRUE(floor_a.raise(Epoch(9), 1500ms).isOk());
  PublishedEpochFloor published_a(floor_a);  // a loaded its floor before starting
  PublishedEpochFloor published_b(floor_b);
  auto a = NatsFloorExchange::start(*conn_a, "fx", published_a, elector_, blocking_);
  auto b = NatsFloorExchange::start(*conn_b, "fx", published_b, elector_, blocking_);
  ASSERT_TRUE(a.isOk() && b.isOk());
  EXPECT_LE((*b)->window(), NatsFloorExchange::kMaxWindow);
  // Someone answers the floor subject with garbage, and with a bigger epoch in a wrong shape.
  auto garbage = NatsResponder::subscribe(
      *conn_x, floorSubject("fx"),
      [](std::string, NatsResponder::ReplyFn reply) { reply(R"({"epoch":"99","leaseMs":1})"); });
  ASSERT_TRUE(garbage.isOk());

  auto [epoch, lease] = gather(**b);
  EXPECT_EQ(epoch, Epoch(9));
  EXPECT_EQ(lease, 1500ms);

  // b's own raises are told to the others at once (the elector raises on its strand).
  elector_.runSync([&] { ASSERT_TRUE(published_b.raise(Epoch(12), 800ms).isOk()); });
  auto [epoch2, lease2] = gather(**a);
  EXPECT_EQ(epoch2, Epoch(12));
  EXPECT_EQ(lease2, 1500ms);

  // Another cluster's subject is not asked.
  InMemoryEpochFloor floor_c;
  PublishedEpochFloor published_c(floor_c);
  auto c = NatsFloorExchange::start(*conn_x, "other", published_c, elector_, blocking_);
  ASSERT_TRUE(c.isOk());
  auto [epoch3, lease3] = gather(**c);
  EXPECT_EQ(epoch3, Epoch(0));
  EXPECT_EQ(lease3, 0ms);
}

TEST_F(NatsFloorExchangeTest, NoCallbackAfterTheExchangeIsGone) {
  auto conn = connect("floor-gone");
  ASSERT_TRUE(conn);
  InMemoryEpochFloor floor;
  PublishedEpochFloor published(floor);
  auto ex = NatsFloorExchange::start(*conn, "gone", published, elector_, blocking_);
  ASSERT_TRUE(ex.isOk());
  std::atomic<int> calls{0};
  blocking_.runSync([&] {
    (*ex)->gather([&](Epoch, milliseconds) { ++calls; });
    ex->reset();  // destroyed before the queued gather runs
  });
  blocking_.runSync([] {});
  elector_.runSync([] {});
  EXPECT_EQ(calls.load(), 0);
}

}  // namespace
}  // namespace hacoord
