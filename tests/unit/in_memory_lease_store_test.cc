// Tests of the in-memory lease store: CAS semantics, delivery, partitions, lost replies, stale reads.
#include "support/in_memory_lease_store.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "support/fake_scheduler.h"

namespace hacoord {
namespace {

using std::chrono::milliseconds;
using test::FakeScheduler;
using test::InMemoryLeaseStore;
using test::LeaseServer;
using test::SimLoop;

LeaseRecord rec(const std::string& holder, std::uint64_t epoch) {
  LeaseRecord r;
  r.holder = holder;
  r.incarnation = holder + "-1";
  r.epoch = Epoch(epoch);
  r.lease = milliseconds(2000);
  return r;
}

class InMemoryLeaseStoreTest : public ::testing::Test {
 protected:
  // Blocks (in virtual time) until the callback of a write ran; returns what it got.
  Result<std::uint64_t> writeAndWait(InMemoryLeaseStore& store, const LeaseRecord& r,
                                     std::uint64_t expected) {
    std::optional<Result<std::uint64_t>> got;
    store.write(r, expected, std::nullopt, [&](Result<std::uint64_t> res) { got = std::move(res); });
    EXPECT_FALSE(got.has_value()) << "callbacks never run inline";
    loop.runUntilCondition([&] { return got.has_value(); }, loop.now() + milliseconds(10'000));
    EXPECT_TRUE(got.has_value());
    return got ? *got : Result<std::uint64_t>(internalError("no answer"));
  }
  Result<LeaseEntry> readAndWait(InMemoryLeaseStore& store) {
    std::optional<Result<LeaseEntry>> got;
    store.read([&](Result<LeaseEntry> res) { got = std::move(res); });
    EXPECT_FALSE(got.has_value()) << "callbacks never run inline";
    loop.runUntilCondition([&] { return got.has_value(); }, loop.now() + milliseconds(10'000));
    EXPECT_TRUE(got.has_value());
    return got ? *got : Result<LeaseEntry>(internalError("no answer"));
  }

  SimLoop loop;
  LeaseServer server{loop, 42};
  FakeScheduler sa{loop};
  FakeScheduler sb{loop};
  InMemoryLeaseStore a{server, sa, "a"};
  InMemoryLeaseStore b{server, sb, "b"};
};

TEST_F(InMemoryLeaseStoreTest, CreateOnlyWhenAbsentThenCasOnTheRevision) {
  auto r0 = readAndWait(a);
  ASSERT_TRUE(r0.isOk());
  EXPECT_FALSE(r0->exists());

  auto w1 = writeAndWait(a, rec("a", 1), 0);
  ASSERT_TRUE(w1.isOk());
  EXPECT_EQ(*w1, 1u);
  EXPECT_EQ(loop.elapsed(), milliseconds(0)) << "zero-delay mode by default";

  auto again = writeAndWait(b, rec("b", 1), 0);
  EXPECT_EQ(again.status().code(), StatusCode::kAborted) << "create on an existing key";
  auto stale = writeAndWait(b, rec("b", 2), 7);
  EXPECT_EQ(stale.status().code(), StatusCode::kAborted);

  auto w2 = writeAndWait(b, rec("b", 2), 1);
  ASSERT_TRUE(w2.isOk());
  EXPECT_EQ(*w2, 2u) << "revision rises by exactly one per successful write";
  auto lost = writeAndWait(a, rec("a", 1), 1);
  EXPECT_EQ(lost.status().code(), StatusCode::kAborted);

  auto r = readAndWait(a);
  ASSERT_TRUE(r.isOk());
  EXPECT_EQ(r->revision, 2u);
  EXPECT_EQ(r->record, rec("b", 2));
  EXPECT_EQ(server.current().revision, 2u);
  EXPECT_EQ(server.history().size(), 3u);
  ASSERT_EQ(server.writeLog().size(), 5u);
  EXPECT_EQ(server.writeLog()[1].revision, 0u);
  EXPECT_EQ(server.writeLog()[1].client_saw, StatusCode::kAborted);
  EXPECT_EQ(server.writeLog()[3].revision, 2u);
  EXPECT_EQ(server.writeLog()[3].node, "b");
}

TEST_F(InMemoryLeaseStoreTest, WatchGetsTheCurrentValueThenEveryRevisionInOrder) {
  server.put(rec("x", 1));
  std::vector<std::uint64_t> seen;
  b.watch([&](const LeaseEntry& e) { seen.push_back(e.revision); });
  EXPECT_TRUE(seen.empty());
  loop.runDue();
  EXPECT_EQ(seen, (std::vector<std::uint64_t>{1}));
  server.setWatchDelay(milliseconds(0), milliseconds(300));
  ASSERT_TRUE(writeAndWait(a, rec("a", 2), 1).isOk());
  ASSERT_TRUE(writeAndWait(a, rec("a", 2), 2).isOk());
  ASSERT_TRUE(writeAndWait(a, rec("a", 2), 3).isOk());
  loop.advance(milliseconds(400));
  EXPECT_EQ(seen, (std::vector<std::uint64_t>{1, 2, 3, 4})) << "random delays never reorder";
}

TEST_F(InMemoryLeaseStoreTest, DelaysApplyTheWriteAtSendPlusRequestDelayAndAnswerLater) {
  server.setRequestDelay(milliseconds(30), milliseconds(30));
  server.setResponseDelay(milliseconds(20), milliseconds(20));
  std::optional<Result<std::uint64_t>> got;
  a.write(rec("a", 1), 0, std::nullopt, [&](Result<std::uint64_t> r) { got = r; });
  loop.advance(milliseconds(29));
  EXPECT_FALSE(server.current().exists());
  loop.advance(milliseconds(1));
  EXPECT_TRUE(server.current().exists()) << "applied on arrival";
  EXPECT_EQ(server.writeLog()[0].applied_at, SimLoop::kStart + milliseconds(30));
  EXPECT_FALSE(got.has_value());
  loop.advance(milliseconds(20));
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(got->isOk());
}

TEST_F(InMemoryLeaseStoreTest, CasIsCheckedAgainstTheStateWhenTheRequestArrives) {
  server.setRequestDelay(milliseconds(50), milliseconds(50));
  std::optional<Result<std::uint64_t>> got;
  a.write(rec("a", 1), 0, std::nullopt, [&](Result<std::uint64_t> r) { got = r; });
  loop.advance(milliseconds(10));
  server.put(rec("op", 1));  // lands first
  loop.advance(milliseconds(100));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->status().code(), StatusCode::kAborted);
  EXPECT_EQ(server.current().record.holder, "op");
}

TEST_F(InMemoryLeaseStoreTest, PartitionedClientGetsUnavailableAfterTheTimeoutAndNoWatchEvents) {
  server.setOpTimeout(milliseconds(300));
  std::vector<std::uint64_t> seen;
  a.watch([&](const LeaseEntry& e) { seen.push_back(e.revision); });
  server.partition("a", true);
  EXPECT_TRUE(server.isPartitioned("a"));
  std::optional<Result<LeaseEntry>> read;
  std::optional<Result<std::uint64_t>> wrote;
  a.read([&](Result<LeaseEntry> r) { read = r; });
  a.write(rec("a", 1), 0, std::nullopt, [&](Result<std::uint64_t> r) { wrote = r; });
  ASSERT_TRUE(writeAndWait(b, rec("b", 1), 0).isOk());
  loop.advance(milliseconds(299));
  EXPECT_FALSE(read.has_value());
  EXPECT_FALSE(wrote.has_value());
  loop.advance(milliseconds(1));
  ASSERT_TRUE(read.has_value() && wrote.has_value());
  EXPECT_EQ(read->status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(wrote->status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(server.current().record.holder, "b") << "the partitioned write never arrived";

  server.partition("a", false);
  ASSERT_TRUE(writeAndWait(b, rec("b", 1), 1).isOk());
  loop.runDue();
  EXPECT_EQ(seen, (std::vector<std::uint64_t>{2})) << "rev 1 was missed for good, rev 2 arrives";
}

TEST_F(InMemoryLeaseStoreTest, AWriteInFlightWhenThePartitionStartsLandsButItsReplyIsLost) {
  server.setOpTimeout(milliseconds(500));
  server.setRequestDelay(milliseconds(10), milliseconds(10));
  server.setResponseDelay(milliseconds(50), milliseconds(50));
  std::optional<Result<std::uint64_t>> got;
  a.write(rec("a", 1), 0, std::nullopt, [&](Result<std::uint64_t> r) { got = r; });
  loop.advance(milliseconds(20));  // applied at 10
  EXPECT_EQ(server.current().record.holder, "a");
  server.partition("a", true);  // the reply (due at 60) is cut off
  loop.advance(milliseconds(100));
  EXPECT_FALSE(got.has_value());
  loop.advance(milliseconds(400));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->status().code(), StatusCode::kDeadlineExceeded) << "outcome unknown, yet it landed";
}

TEST_F(InMemoryLeaseStoreTest, ARequestThatArrivesDuringAPartitionIsLost) {
  server.setOpTimeout(milliseconds(500));
  server.setRequestDelay(milliseconds(100), milliseconds(100));
  std::optional<Result<std::uint64_t>> got;
  a.write(rec("a", 1), 0, std::nullopt, [&](Result<std::uint64_t> r) { got = r; });
  loop.advance(milliseconds(50));
  server.partition("a", true);
  loop.advance(milliseconds(450));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->status().code(), StatusCode::kUnavailable);
  EXPECT_FALSE(server.current().exists());
  EXPECT_FALSE(server.writeLog()[0].reached_server);
}

TEST_F(InMemoryLeaseStoreTest, DroppedResponseMeansAppliedButDeadlineExceeded) {
  server.setOpTimeout(milliseconds(400));
  server.dropNextWriteResponse("a");
  auto w = writeAndWait(a, rec("a", 1), 0);
  EXPECT_EQ(w.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(loop.elapsed(), milliseconds(400));
  EXPECT_EQ(server.current().revision, 1u) << "the write landed";
  EXPECT_EQ(server.writeLog()[0].revision, 1u);
  EXPECT_EQ(server.writeLog()[0].client_saw, StatusCode::kDeadlineExceeded);
  // Only the next one: the following write is answered.
  EXPECT_TRUE(writeAndWait(a, rec("a", 1), 1).isOk());

  server.setDropResponses(1.0);
  EXPECT_EQ(writeAndWait(a, rec("a", 1), 2).status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(server.current().revision, 3u);
  EXPECT_EQ(readAndWait(a).status().code(), StatusCode::kDeadlineExceeded);
}

TEST_F(InMemoryLeaseStoreTest, AReplySlowerThanTheTimeoutIsADeadlineExceeded) {
  server.setOpTimeout(milliseconds(100));
  server.setResponseDelay(milliseconds(150), milliseconds(150));
  auto w = writeAndWait(a, rec("a", 1), 0);
  EXPECT_EQ(w.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(loop.elapsed(), milliseconds(100));
  loop.advance(milliseconds(200));
  EXPECT_EQ(server.current().revision, 1u);
}

TEST_F(InMemoryLeaseStoreTest, FailNextFailsExactlyTheNextOperationsOfThatNode) {
  server.failNext("a", unavailable("injected"));
  server.failNext("a", aborted("injected"));
  EXPECT_EQ(writeAndWait(a, rec("a", 1), 0).status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(readAndWait(b).isOk()) << "other nodes are untouched";
  EXPECT_EQ(readAndWait(a).status().code(), StatusCode::kAborted);
  EXPECT_TRUE(writeAndWait(a, rec("a", 1), 0).isOk());
  EXPECT_FALSE(server.writeLog()[0].reached_server);
}

TEST_F(InMemoryLeaseStoreTest, StaleReadsReturnAnOlderStateWithinTheBound) {
  server.put(rec("x", 1));
  loop.advance(milliseconds(100));
  server.put(rec("y", 2));
  loop.advance(milliseconds(100));
  server.put(rec("z", 3));
  server.setStaleReads(milliseconds(90));
  std::vector<std::uint64_t> revisions;
  for (int i = 0; i < 200; ++i) {
    auto r = readAndWait(a);
    ASSERT_TRUE(r.isOk());
    revisions.push_back(r->revision);
  }
  bool saw2 = false;
  bool saw3 = false;
  for (auto rev : revisions) {
    EXPECT_TRUE(rev == 2 || rev == 3) << "never older than 90 ms: got " << rev;
    saw2 |= rev == 2;
    saw3 |= rev == 3;
  }
  EXPECT_TRUE(saw2 && saw3);
  EXPECT_EQ(server.stateAt(SimLoop::kStart + milliseconds(50)).revision, 1u);
  EXPECT_EQ(server.stateAt(SimLoop::kStart - milliseconds(50)).revision, 0u);
}

TEST_F(InMemoryLeaseStoreTest, PausedNodeGetsRepliesOnlyOnResume) {
  std::optional<Result<std::uint64_t>> got;
  a.write(rec("a", 1), 0, std::nullopt, [&](Result<std::uint64_t> r) { got = r; });
  sa.pause();
  loop.advance(milliseconds(1000));
  EXPECT_TRUE(server.current().exists()) << "the request left before the pause";
  EXPECT_FALSE(got.has_value());
  sa.resume();
  loop.runDue();
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(got->isOk());
}

TEST_F(InMemoryLeaseStoreTest, CloseDropsEverythingButAWriteOnTheWireStillLands) {
  server.setRequestDelay(milliseconds(10), milliseconds(10));
  bool called = false;
  std::vector<std::uint64_t> seen;
  a.watch([&](const LeaseEntry& e) { seen.push_back(e.revision); });
  a.write(rec("a", 1), 0, std::nullopt, [&](Result<std::uint64_t>) { called = true; });
  a.close();
  a.close();  // idempotent
  EXPECT_TRUE(a.closed());
  a.read([&](Result<LeaseEntry>) { called = true; });
  loop.advance(milliseconds(100));
  EXPECT_FALSE(called);
  EXPECT_TRUE(seen.empty());
  EXPECT_EQ(server.current().revision, 1u) << "kill -9 does not recall a packet";
}

TEST_F(InMemoryLeaseStoreTest, ADestroyedClientsRepliesAreDroppedSafely) {
  server.setRequestDelay(milliseconds(10), milliseconds(10));
  server.setResponseDelay(milliseconds(10), milliseconds(10));
  FakeScheduler sc(loop);
  bool called = false;
  {
    InMemoryLeaseStore c(server, sc, "c");
    c.watch([&](const LeaseEntry&) { called = true; });
    c.write(rec("c", 1), 0, std::nullopt, [&](Result<std::uint64_t>) { called = true; });
    c.read([&](Result<LeaseEntry>) { called = true; });
  }
  loop.advance(milliseconds(100));
  EXPECT_FALSE(called);
  EXPECT_EQ(server.current().record.holder, "c");
}

TEST_F(InMemoryLeaseStoreTest, SameSeedSameHistory) {
  auto run = [](std::uint64_t seed) {
    SimLoop l;
    LeaseServer s(l, seed);
    FakeScheduler sch(l);
    InMemoryLeaseStore c(s, sch, "c");
    s.setRequestDelay(milliseconds(0), milliseconds(50));
    s.setResponseDelay(milliseconds(0), milliseconds(50));
    s.setDropResponses(0.3);
    std::vector<long long> trace;
    for (int i = 0; i < 50; ++i) {
      c.write(rec("c", 1), s.current().revision, std::nullopt, [&](Result<std::uint64_t> r) {
        trace.push_back(static_cast<long long>(r.status().code()) * 1'000'000'000LL + toMillis(l.elapsed()));
      });
      l.advance(milliseconds(20));
    }
    l.advance(milliseconds(1000));
    return trace;
  };
  EXPECT_EQ(run(7), run(7));
  EXPECT_NE(run(7), run(8));
}

}  // namespace
}  // namespace hacoord
