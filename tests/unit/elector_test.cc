// Elector unit tests: scripted stories of DESIGN §3 on virtual time (no sleeps, no threads).
#include "election/elector.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "support/fake_scheduler.h"
#include "support/in_memory_lease_store.h"

namespace hacoord {
namespace {

using test::FakeScheduler;
using test::InMemoryLeaseStore;
using test::LeaseServer;
using test::SimLoop;
using std::chrono::milliseconds;

constexpr milliseconds kTtl{2000};
constexpr milliseconds kRenew{500};
constexpr milliseconds kMargin{200};

// Records every callback; releases at once unless told to hold the release.
class Recorder final : public ElectorListener {
 public:
  void onBecomeLeader(Epoch epoch) override { events.push_back("become " + epoch.toString()); }
  void onLoseLeadership(Epoch epoch, LossReason reason, std::function<void(bool)> released) override {
    events.push_back("lose " + epoch.toString() + " " + std::string(lossReasonName(reason)));
    if (hold_release) {
      pending_release = std::move(released);
    } else {
      released(true);
    }
  }
  void onLeaderChange(const std::string& leader, Epoch epoch) override {
    events.push_back("leader '" + leader + "' " + epoch.toString());
  }
  bool saw(const std::string& event) const {
    for (const auto& e : events) {
      if (e == event) return true;
    }
    return false;
  }

  std::vector<std::string> events;
  bool hold_release = false;
  std::function<void(bool)> pending_release;
};

struct TestNode {
  TestNode(SimLoop& loop, LeaseServer& server, const std::string& id, bool candidate = true)
      : scheduler(loop), store(server, scheduler, id) {
    ElectorConfig c;
    c.node_id = id;
    c.incarnation = id + "-inc";
    c.lease_ttl = kTtl;
    c.renew_interval = kRenew;
    c.cooldown = kTtl;
    c.safety_margin = kMargin;
    c.candidate = candidate;
    elector = std::make_unique<Elector>(c, loop, scheduler, store, listener);
  }
  FakeScheduler scheduler;
  InMemoryLeaseStore store;
  Recorder listener;
  std::unique_ptr<Elector> elector;
};

class ElectorTest : public ::testing::Test {
 protected:
  std::unique_ptr<TestNode> makeNode(const std::string& id, bool candidate = true) {
    return std::make_unique<TestNode>(loop, server, id, candidate);
  }
  const LeaseRecord& record() const { return server.current().record; }

  SimLoop loop;
  LeaseServer server{loop};
};

TEST_F(ElectorTest, FirstNodeCreatesTheRecordWithEpochOneAndRenews) {
  auto a = makeNode("a");
  a->elector->start();
  loop.runDue();
  ASSERT_TRUE(a->elector->isLeader());
  EXPECT_EQ(record().holder, "a");
  EXPECT_EQ(record().incarnation, "a-inc");
  EXPECT_EQ(record().epoch, Epoch(1));
  EXPECT_EQ(record().lease, kTtl);
  EXPECT_TRUE(a->listener.saw("become 1"));
  EXPECT_TRUE(a->listener.saw("leader 'a' 1"));

  const auto rev = server.current().revision;
  loop.advance(milliseconds(10'000));
  EXPECT_TRUE(a->elector->isLeader());
  EXPECT_EQ(record().epoch, Epoch(1)) << "renewals keep the epoch";
  EXPECT_GE(server.current().revision, rev + 19) << "one renewal every 500 ms";
  EXPECT_GT(a->elector->snapshot().valid_until, loop.now() + kTtl - kMargin - kRenew - milliseconds(1));
}

TEST_F(ElectorTest, LeaderSelfFencesAtSendTimeOfLastCommittedWritePlusTtlMinusMargin) {
  auto a = makeNode("a");
  a->elector->start();
  loop.runDue();
  ASSERT_TRUE(a->elector->isLeader());
  loop.advance(milliseconds(100));
  const TimePoint last_commit_sent = loop.now() - milliseconds(100);  // the acquire, at t=0
  server.partition("a", true);  // every later write fails: Unavailable after the op timeout
  loop.runUntil(last_commit_sent + kTtl - kMargin - milliseconds(1));
  // Renewals at 500/1000/1500 ms failed, so the deadline is still the acquire's.
  EXPECT_TRUE(a->elector->isLeader());
  loop.runUntil(last_commit_sent + kTtl - kMargin);
  EXPECT_FALSE(a->elector->isLeader());
  EXPECT_TRUE(a->listener.saw("lose 1 lease-expired"));
}

TEST_F(ElectorTest, FollowerTakesOverOneLeaseAfterItsLastObservationWithTheNextEpoch) {
  auto a = makeNode("a");
  a->elector->start();
  loop.runDue();
  auto b = makeNode("b");
  b->elector->start();
  loop.advance(milliseconds(1000));
  ASSERT_TRUE(a->elector->isLeader());
  EXPECT_FALSE(b->elector->isLeader());
  EXPECT_TRUE(b->listener.saw("leader 'a' 1"));

  a->scheduler.crash();  // kill -9: no more renewals
  const TimePoint crash = loop.now();
  loop.runUntilCondition([&] { return b->elector->isLeader(); }, crash + kTtl + milliseconds(100));
  ASSERT_TRUE(b->elector->isLeader());
  // b saw a's last renewal at most one renew interval before the crash; the takeover jitter
  // (against simultaneous writes) adds at most min(renew / 4, 40 ms).
  EXPECT_GE(loop.now(), crash + kTtl - kRenew);
  EXPECT_LE(loop.now(), crash + kTtl + milliseconds(40));
  EXPECT_EQ(record().holder, "b");
  EXPECT_EQ(record().epoch, Epoch(2));
  EXPECT_TRUE(b->listener.saw("become 2"));
}

TEST_F(ElectorTest, PlannedHandoverReleasesWithEpochKeptAndAnotherNodeTakesOverAtOnce) {
  auto a = makeNode("a");
  auto b = makeNode("b");
  a->elector->start();
  loop.runDue();
  b->elector->start();
  loop.advance(milliseconds(700));
  Status result = internalError("not called");
  a->elector->stepDown("", [&](Status s) { result = s; });
  EXPECT_FALSE(a->elector->isLeader()) << "stops acting before the lease is released";
  loop.runDue();
  EXPECT_TRUE(result.isOk()) << result.toString();
  EXPECT_TRUE(a->listener.saw("lose 1 stepped-down"));
  EXPECT_TRUE(b->elector->isLeader()) << "the watch delivers the vacant record at once";
  EXPECT_EQ(record().holder, "b");
  EXPECT_EQ(record().epoch, Epoch(2));
  // The release itself is in the history: vacant, epoch kept.
  bool saw_vacant = false;
  for (const auto& h : server.history()) {
    if (h.entry.exists() && h.entry.record.vacant()) {
      saw_vacant = true;
      EXPECT_EQ(h.entry.record.epoch, Epoch(1));
    }
  }
  EXPECT_TRUE(saw_vacant);
}

TEST_F(ElectorTest, StepDownOnAFollowerIsFailedPrecondition) {
  auto a = makeNode("a");
  auto b = makeNode("b");
  a->elector->start();
  loop.runDue();
  b->elector->start();
  loop.runDue();
  Status result;
  b->elector->stepDown("", [&](Status s) { result = s; });
  EXPECT_EQ(result.code(), StatusCode::kFailedPrecondition);
}

TEST_F(ElectorTest, SuccessorGetsPriorityOthersHoldBackOneRenewInterval) {
  auto a = makeNode("a");
  auto b = makeNode("b");
  auto c = makeNode("c");
  a->elector->start();
  loop.runDue();
  b->elector->start();
  c->elector->start();
  loop.advance(milliseconds(100));
  a->elector->stepDown("c", [](Status) {});
  loop.runDue();
  EXPECT_TRUE(c->elector->isLeader());
  EXPECT_FALSE(b->elector->isLeader());
  EXPECT_EQ(record().holder, "c");
}

TEST_F(ElectorTest, OthersTakeAVacantLeaseWhoseSuccessorNeverComes) {
  auto a = makeNode("a");
  auto b = makeNode("b");
  a->elector->start();
  loop.runDue();
  b->elector->start();
  loop.advance(milliseconds(100));
  a->elector->stepDown("ghost", [](Status) {});
  loop.runDue();
  const TimePoint released = loop.now();
  EXPECT_FALSE(b->elector->isLeader()) << "holds back for the successor";
  loop.runUntilCondition([&] { return b->elector->isLeader(); }, released + kRenew + milliseconds(1));
  EXPECT_TRUE(b->elector->isLeader());
  EXPECT_GE(loop.now(), released + kRenew);
}

TEST_F(ElectorTest, NodeInCooldownDoesNotRetakeButALoneNodeRecoversAfterAVacantTtl) {
  auto a = makeNode("a");
  a->elector->start();
  loop.runDue();
  a->elector->stepDown("", [](Status) {});
  loop.runDue();
  const TimePoint released = loop.now();
  ASSERT_TRUE(record().vacant());
  loop.runUntil(released + kTtl - milliseconds(1));
  EXPECT_FALSE(a->elector->isLeader()) << "cooldown holds";
  loop.runUntilCondition([&] { return a->elector->isLeader(); }, released + kTtl + kRenew);
  EXPECT_TRUE(a->elector->isLeader()) << "vacant for a whole TTL: anyone may take it";
  EXPECT_EQ(record().epoch, Epoch(2));
}

TEST_F(ElectorTest, ReleaseWaitsForTheLoseHookAndIsSkippedIfTheHookDidNotConfirm) {
  auto a = makeNode("a");
  auto b = makeNode("b");
  a->elector->start();
  loop.runDue();
  b->elector->start();
  loop.advance(milliseconds(100));
  a->listener.hold_release = true;
  Status result;
  a->elector->stepDown("", [&](Status s) { result = s; });
  loop.advance(milliseconds(300));
  EXPECT_EQ(record().holder, "a") << "not released while the hook runs (the VIP may be up)";
  EXPECT_FALSE(b->elector->isLeader());
  ASSERT_TRUE(a->listener.pending_release);
  a->listener.pending_release(false);  // the hook overran its time limit
  loop.runDue();
  EXPECT_EQ(result.code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(record().holder, "a") << "left to expire instead";
  // b takes over only once the lease expires.
  loop.runUntilCondition([&] { return b->elector->isLeader(); }, loop.now() + kTtl + kRenew);
  EXPECT_TRUE(b->elector->isLeader());
  EXPECT_EQ(record().epoch, Epoch(2));
}

TEST_F(ElectorTest, RenewLosingTheCompareAndSetStepsDownAtOnce) {
  auto a = makeNode("a");
  a->elector->start();
  loop.runDue();
  ASSERT_TRUE(a->elector->isLeader());
  // An operator (or a buggy peer) overwrites the record.
  LeaseRecord other{"x", "x-inc", Epoch(7), kTtl, ""};
  server.put(other);
  loop.runDue();
  EXPECT_FALSE(a->elector->isLeader());
  EXPECT_TRUE(a->listener.saw("lose 1 superseded"));
  EXPECT_TRUE(a->listener.saw("leader 'x' 7"));
  // And when x's lease runs out, a takes over above x's epoch.
  loop.runUntilCondition([&] { return a->elector->isLeader(); }, loop.now() + kTtl + kRenew);
  EXPECT_EQ(record().epoch, Epoch(8));
}

TEST_F(ElectorTest, AcquireWhoseAnswerIsLostIsAdoptedFromItsSendTime) {
  auto a = makeNode("a");
  server.dropNextWriteResponse("a");
  a->elector->start();
  const TimePoint sent = loop.now();
  loop.runUntilCondition([&] { return a->elector->isLeader(); }, sent + kTtl);
  ASSERT_TRUE(a->elector->isLeader());
  EXPECT_EQ(record().epoch, Epoch(1)) << "adopted, not re-acquired";
  EXPECT_LE(a->elector->snapshot().valid_until, sent + kTtl - kMargin + kRenew);
}

TEST_F(ElectorTest, RenewWhoseAnswerIsLostDoesNotCauseASpuriousStepDown) {
  auto a = makeNode("a");
  a->elector->start();
  loop.runDue();
  server.dropNextWriteResponse("a");  // the next renewal lands, its answer does not
  loop.advance(milliseconds(5000));
  EXPECT_TRUE(a->elector->isLeader());
  EXPECT_FALSE(a->listener.saw("lose 1 superseded"));
  EXPECT_EQ(record().epoch, Epoch(1));
}

TEST_F(ElectorTest, NonCandidateObservesButNeverCampaignsUntilItJoins) {
  auto a = makeNode("a", /*candidate=*/false);
  a->elector->start();
  loop.advance(milliseconds(10'000));
  EXPECT_FALSE(a->elector->isLeader());
  EXPECT_FALSE(server.current().exists());
  a->elector->setCandidate(true);
  loop.runDue();
  EXPECT_TRUE(a->elector->isLeader());
}

TEST_F(ElectorTest, LeavingCandidacyWhileLeaderHandsOver) {
  auto a = makeNode("a");
  auto b = makeNode("b");
  a->elector->start();
  loop.runDue();
  b->elector->start();
  loop.advance(milliseconds(100));
  a->elector->setCandidate(false);
  loop.runDue();
  EXPECT_FALSE(a->elector->isLeader());
  EXPECT_TRUE(b->elector->isLeader());
  EXPECT_FALSE(a->elector->snapshot().candidate);
}

TEST_F(ElectorTest, StopWhileLeaderHandsOverThenStopsEverything) {
  auto a = makeNode("a");
  auto b = makeNode("b");
  a->elector->start();
  loop.runDue();
  b->elector->start();
  loop.advance(milliseconds(100));
  bool stopped = false;
  a->elector->stop([&] { stopped = true; });
  loop.runDue();
  EXPECT_TRUE(stopped);
  EXPECT_TRUE(a->listener.saw("lose 1 stopped"));
  EXPECT_EQ(a->elector->snapshot().role, Role::kStopped);
  EXPECT_TRUE(b->elector->isLeader());
  const auto writes = a->store.writeCount();
  loop.advance(milliseconds(5000));
  EXPECT_EQ(a->store.writeCount(), writes) << "a stopped node writes nothing";
}

TEST_F(ElectorTest, RecordOfAPreviousIncarnationIsNotMineAndExpiresNormally) {
  // Same nodeId, other incarnation (the process restarted): must wait, then take epoch+1.
  LeaseRecord old{"a", "a-old", Epoch(4), kTtl, ""};
  server.put(old);
  auto a = makeNode("a");
  a->elector->start();
  loop.runDue();
  const TimePoint started = loop.now();
  EXPECT_FALSE(a->elector->isLeader());
  loop.runUntilCondition([&] { return a->elector->isLeader(); }, started + kTtl + kRenew);
  EXPECT_TRUE(a->elector->isLeader());
  EXPECT_GE(loop.now(), started + kTtl);
  EXPECT_EQ(record().epoch, Epoch(5));
}

TEST_F(ElectorTest, RecordWithoutLeaseDurationUsesOwnTtl) {
  LeaseRecord odd{"(undecodable)", "", Epoch(0), milliseconds(0), ""};
  server.put(odd);
  auto a = makeNode("a");
  a->elector->start();
  loop.runDue();
  const TimePoint started = loop.now();
  loop.runUntilCondition([&] { return a->elector->isLeader(); }, started + kTtl + kRenew);
  EXPECT_TRUE(a->elector->isLeader());
  EXPECT_GE(loop.now(), started + kTtl);
}

TEST_F(ElectorTest, PausedLeaderIsNotLeaderPastItsDeadlineAndFencesFirstOnResume) {
  auto a = makeNode("a");
  auto b = makeNode("b");
  a->elector->start();
  loop.runDue();
  b->elector->start();
  loop.advance(milliseconds(100));
  a->scheduler.pause();  // SIGSTOP
  loop.runUntilCondition([&] { return b->elector->isLeader(); }, loop.now() + kTtl + kRenew);
  ASSERT_TRUE(b->elector->isLeader());
  EXPECT_FALSE(a->elector->isLeader()) << "checks its deadline against the clock, not its state";
  a->scheduler.resume();  // SIGCONT
  loop.runDue();
  EXPECT_TRUE(a->listener.saw("lose 1 lease-expired"));
  EXPECT_TRUE(b->elector->isLeader());
  EXPECT_EQ(record().holder, "b");
  EXPECT_EQ(record().epoch, Epoch(2));
}

}  // namespace
}  // namespace hacoord
