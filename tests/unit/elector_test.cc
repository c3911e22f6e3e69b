// Elector unit tests: scripted stories of DESIGN §3 on virtual time (no sleeps, no threads).
#include "election/elector.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/logging.h"
#include "support/fake_scheduler.h"
#include "support/in_memory_lease_store.h"

namespace hacoord {
namespace {

using std::chrono::milliseconds;
using test::FakeScheduler;
using test::InMemoryLeaseStore;
using test::LeaseServer;
using test::SimLoop;

constexpr milliseconds kTtl{2000};
constexpr milliseconds kRenew{500};
constexpr milliseconds kMargin{200};

// Records every callback; releases at once unless told to hold the release.
class Recorder final : public ElectorListener {
 public:
  void onBecomeLeader(Epoch epoch, TimePoint) override { events.push_back("become " + epoch.toString()); }
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

// The other nodes' floors, as a FloorExchange over NATS would gather them: those in `peers`.
struct TestExchange final : FloorExchange {
  explicit TestExchange(FakeScheduler& s) : scheduler(s) {}
  void gather(std::function<void(Epoch, milliseconds)> done) override {
    ++gathers;
    Epoch e;
    milliseconds l{0};
    for (auto* p : peers) {
      e = std::max(e, p->current());
      l = std::max(l, p->longestLease());
    }
    scheduler.post([done, e, l] { done(e, l); });
  }
  FakeScheduler& scheduler;
  std::vector<EpochFloor*> peers;
  int gathers = 0;
};

struct TestNode {
  TestNode(SimLoop& loop, LeaseServer& server, const std::string& id, EpochFloor& floor,
           bool candidate = true, const std::string& incarnation = "")
      : scheduler(loop), store(server, scheduler, id), exchange(scheduler) {
    ElectorConfig c;
    c.node_id = id;
    c.incarnation = incarnation.empty() ? id + "-inc" : incarnation;
    c.lease_ttl = kTtl;
    c.renew_interval = kRenew;
    c.cooldown = kTtl;
    c.safety_margin = kMargin;
    c.candidate = candidate;
    elector = std::make_unique<Elector>(c, loop, scheduler, store, floor, &exchange, listener);
  }
  FakeScheduler scheduler;
  InMemoryLeaseStore store;
  TestExchange exchange;
  Recorder listener;
  std::unique_ptr<Elector> elector;
};

// Each node's floor (its state file) outlives the node's process, like a file on its host.
class ElectorFixture : public ::testing::Test {
 protected:
  void SetUp() override { setLogLevel(std::getenv("HACOORD_TEST_VERBOSE") ? "debug" : "off"); }
  std::unique_ptr<TestNode> makeNode(const std::string& id, bool candidate = true,
                                     const std::string& incarnation = "") {
    return std::make_unique<TestNode>(loop, server, id, floors[id], candidate, incarnation);
  }
  // Runs until exactly one of `nodes` leads (false if none does by `deadline`); fails the test if
  // two ever lead at once on the way.
  bool runUntilOneLeads(const std::vector<TestNode*>& nodes, TimePoint deadline) {
    bool two = false;
    const bool one = loop.runUntilCondition(
        [&] {
          int leaders = 0;
          for (auto* n : nodes) leaders += n->elector->isLeader() ? 1 : 0;
          two = two || leaders > 1;
          return leaders == 1;
        },
        deadline);
    EXPECT_FALSE(two) << "two leaders at once";
    return one;
  }
  const LeaseRecord& record() const { return server.current().record; }

  SimLoop loop;
  LeaseServer server{loop};
  std::map<std::string, InMemoryEpochFloor> floors;
};

// Most tests start from a cluster whose last leader handed over: a vacant record of epoch 0, which
// a candidate takes at once. ElectorBootstrapTest starts from an absent key instead.
class ElectorTest : public ElectorFixture {
 protected:
  ElectorTest() {
    LeaseRecord vacant;
    vacant.lease = kTtl;
    server.put(vacant);
  }
};

class ElectorBootstrapTest : public ElectorFixture {};

TEST_F(ElectorTest, FirstNodeTakesTheVacantRecordWithEpochOneAndRenews) {
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
    if (h.entry.hasRecord() && h.entry.record.vacant() && !h.entry.record.epoch.isZero()) {
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
  EXPECT_TRUE(record().vacant());
  EXPECT_TRUE(record().epoch.isZero()) << "nobody ever campaigned";
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
  LeaseRecord odd{"x", "x-inc", Epoch(0), milliseconds(0), ""};
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

// --- The key going away or going back (DESIGN §3): "holder unknown", never "vacant" ----------

TEST_F(ElectorBootstrapTest, AnAbsentKeyMeansHolderUnknownAndTheFirstLeaderWaitsOneTtl) {
  auto a = makeNode("a");
  auto b = makeNode("b");
  a->elector->start();
  b->elector->start();
  const TimePoint started = loop.now();
  ASSERT_TRUE(runUntilOneLeads({a.get(), b.get()}, started + kTtl + kRenew));
  // A key with no record may belong to a bucket re-created a moment ago under a live leader.
  EXPECT_GE(loop.now(), started + kTtl);
  EXPECT_EQ(record().epoch, Epoch(1));
}

// An operator deletes (marker) or overwrites (garbage) the key while `a` leads: `b` must not take
// that as a vacancy. `a` cannot renew on its old revision and stops; `b` waits a whole TTL from
// what it saw.
void holderUnknownStory(ElectorFixture& f, SimLoop& loop, LeaseServer& server, TestNode& a, TestNode& b,
                        const std::function<void()>& fault) {
  a.elector->start();
  loop.runDue();
  b.elector->start();
  loop.advance(milliseconds(700));
  ASSERT_TRUE(a.elector->isLeader());
  fault();
  const TimePoint faulted = loop.now();
  loop.runUntil(faulted + kTtl - milliseconds(1));
  EXPECT_FALSE(b.elector->isLeader()) << "took over inside the holder's lease";
  EXPECT_FALSE(a.elector->isLeader()) << "kept leading on a record it can no longer renew";
  (void)f;
  loop.runUntilCondition([&] { return a.elector->isLeader() || b.elector->isLeader(); },
                         faulted + kTtl + kRenew + milliseconds(50));
  EXPECT_TRUE(a.elector->isLeader() || b.elector->isLeader());
  EXPECT_EQ(server.current().record.epoch, Epoch(2)) << "above the epoch the key forgot";
}

TEST_F(ElectorTest, ADeleteMarkerIsNotAVacancy) {
  auto a = makeNode("a");
  auto b = makeNode("b");
  holderUnknownStory(*this, loop, server, *a, *b, [&] { server.putMarker(); });
}

TEST_F(ElectorTest, AnUndecodableValueIsNotAVacancy) {
  auto a = makeNode("a");
  auto b = makeNode("b");
  holderUnknownStory(*this, loop, server, *a, *b, [&] { server.putUndecodable(); });
}

TEST_F(ElectorTest, ABucketReCreatedUnderALiveLeaderIsNotAVacancy) {
  // Revisions restart at 0: the follower's next poll finds an absent key at a LOWER revision.
  auto a = makeNode("a");
  auto b = makeNode("b");
  holderUnknownStory(*this, loop, server, *a, *b, [&] { server.resetBucket(); });
  EXPECT_EQ(server.resets(), 1);
}

// The bucket is deleted and re-created under a live leader, and another node wins in the new
// generation and writes up to the very revision the leader's term is at (the leader hears nothing:
// a deleted stream's watch just stops). The leader's renewal, and a release held back behind a
// slow write, must not land on that revision of the new generation: a release there would make
// the winner's live lease "vacant" and let a third node campaign inside it; a renewal would put
// an older epoch over a newer one. Every write names the generation its base came from.
void bucketResetUnderALeader(SimLoop& loop, LeaseServer& server, TestNode& a) {
  a.elector->start();
  loop.runDue();
  ASSERT_TRUE(a.elector->isLeader());
  const std::uint64_t revision = server.current().revision;
  server.resetBucket();
  const LeaseRecord winner{"x", "x-inc", Epoch(9), kTtl, ""};
  while (server.current().revision < revision) server.put(winner);
  ASSERT_EQ(server.current().revision, revision);
}

TEST_F(ElectorTest, ARenewalNeverLandsOnTheSameRevisionOfANewBucketGeneration) {
  auto a = makeNode("a");
  bucketResetUnderALeader(loop, server, *a);
  const std::uint64_t revision = server.current().revision;
  loop.advance(kRenew + milliseconds(50));
  EXPECT_EQ(record().holder, "x") << "the old leader's renewal replaced the new generation's record";
  EXPECT_EQ(server.current().revision, revision);
  EXPECT_FALSE(a->elector->isLeader()) << "a renewal refused for another generation is a lost lease";
}

TEST_F(ElectorTest, AReleaseNeverLandsOnTheSameRevisionOfANewBucketGeneration) {
  auto a = makeNode("a");
  bucketResetUnderALeader(loop, server, *a);
  const std::uint64_t revision = server.current().revision;
  Status result = internalError("not called");
  a->elector->stepDown("", [&](Status s) { result = s; });
  loop.advance(milliseconds(100));
  EXPECT_FALSE(result.isOk()) << "the release landed";
  EXPECT_EQ(record().holder, "x") << "the release made the new generation's live lease vacant";
  EXPECT_EQ(server.current().revision, revision);
}

TEST_F(ElectorTest, ALowerRevisionWithARecordRestartsTheTakeoverTimer) {
  // A lagging replica, or a re-created bucket someone wrote into: revision 1 after revision 9.
  auto b = makeNode("b");
  LeaseRecord held{"x", "x-inc", Epoch(3), kTtl, ""};
  for (int i = 0; i < 8; ++i) server.put(held);
  b->elector->start();
  loop.advance(milliseconds(1500));
  server.resetBucket();
  server.put(held);  // the same holder's record, now at revision 1
  const TimePoint went_back = loop.now();
  loop.runUntilCondition([&] { return b->elector->isLeader(); }, went_back + 2 * kTtl);
  ASSERT_TRUE(b->elector->isLeader());
  EXPECT_GE(loop.now(), went_back + kTtl) << "a revision that went back is news, not noise";
  EXPECT_EQ(record().epoch, Epoch(4));
}

TEST_F(ElectorTest, EpochsRiseAcrossALostBucketAndARestartOfEveryNode) {
  auto a = makeNode("a");
  auto b = makeNode("b");
  a->elector->start();
  loop.runDue();
  b->elector->start();
  loop.advance(milliseconds(100));
  for (int i = 0; i < 2; ++i) {  // two handovers to a named successor: epoch 3 now
    const bool a_leads = a->elector->isLeader();
    (a_leads ? a : b)->elector->stepDown(a_leads ? "b" : "a", [](Status) {});
    loop.advance(milliseconds(100));
  }
  ASSERT_EQ(record().epoch, Epoch(3));
  // Every process dies; the bucket is lost meanwhile; the state files survive.
  a->scheduler.crash();
  b->scheduler.crash();
  a.reset();
  b.reset();
  server.resetBucket();
  loop.advance(kTtl);
  a = makeNode("a", true, "a-inc2");
  b = makeNode("b", true, "b-inc2");
  a->elector->start();
  b->elector->start();
  ASSERT_TRUE(runUntilOneLeads({a.get(), b.get()}, loop.now() + kTtl + kRenew));
  EXPECT_EQ(record().epoch, Epoch(4)) << "epoch 1 again would be a fencing token reused";
}

TEST_F(ElectorTest, ANodeThatMissedTheLatestEpochsLearnsThemFromItsPeersFloors) {
  // c is down while a and b go up to epoch 3; then the bucket is lost. a and b stay up but leave
  // candidacy; c, whose own floor is 0, must not hand out epoch 1 again.
  auto a = makeNode("a");
  auto b = makeNode("b");
  a->elector->start();
  loop.runDue();
  b->elector->start();
  loop.advance(milliseconds(100));
  for (int i = 0; i < 2; ++i) {
    const bool a_leads = a->elector->isLeader();
    (a_leads ? a : b)->elector->stepDown(a_leads ? "b" : "a", [](Status) {});
    loop.advance(milliseconds(100));
  }
  ASSERT_EQ(record().epoch, Epoch(3));
  a->elector->setCandidate(false);
  b->elector->setCandidate(false);
  loop.advance(milliseconds(100));
  server.resetBucket();
  auto c = makeNode("c");
  c->exchange.peers = {&floors["a"], &floors["b"]};
  c->elector->start();
  ASSERT_TRUE(runUntilOneLeads({c.get()}, loop.now() + kTtl + kRenew));
  EXPECT_EQ(record().epoch, Epoch(4));
  EXPECT_EQ(c->exchange.gathers, 1);
  EXPECT_EQ(floors["c"].current(), Epoch(4));
}

// Sim seed 622, reduced: c gathers the floors while the node that knew the highest epoch is away,
// then leaves candidacy; that node comes back; when c joins again it must ask again, right before
// its write, instead of campaigning on the old answer and handing out an epoch that went back.
TEST_F(ElectorTest, FloorsAreGatheredRightBeforeTheCampaignNotReusedLater) {
  ASSERT_TRUE(floors["a"].raise(Epoch(9)).isOk());
  server.resetBucket();  // no record: only the nodes' floors remember epochs
  auto c = makeNode("c");
  c->elector->start();
  // The key never held a record: c waits a full TTL, asks (nobody answers), and would campaign...
  loop.runUntilCondition([&] { return c->exchange.gathers == 1; }, loop.now() + 2 * kTtl);
  ASSERT_EQ(c->exchange.gathers, 1);
  c->elector->setCandidate(false);  // ...but leaves candidacy before the answer is used
  loop.advance(milliseconds(100));
  EXPECT_EQ(c->store.writeCount(), 0u);
  c->exchange.peers = {&floors["a"]};  // a, which saw epoch 9, is reachable again
  c->elector->setCandidate(true);
  ASSERT_TRUE(runUntilOneLeads({c.get()}, loop.now() + 2 * kTtl));
  EXPECT_EQ(c->exchange.gathers, 2);
  EXPECT_EQ(record().epoch, Epoch(10)) << "campaigned on floors gathered before a came back";
}

TEST_F(ElectorTest, ANodeThatCannotRecordAnEpochNeverCampaigns) {
  floors["a"].setFailing(true);  // the state file cannot be written (a full disk)
  auto a = makeNode("a");
  a->elector->start();
  loop.advance(3 * kTtl);
  EXPECT_FALSE(a->elector->isLeader());
  EXPECT_EQ(a->store.writeCount(), 0u) << "an epoch left the node before it was recorded";
  floors["a"].setFailing(false);
  loop.runUntilCondition([&] { return a->elector->isLeader(); }, loop.now() + kTtl);
  EXPECT_TRUE(a->elector->isLeader());
  EXPECT_EQ(floors["a"].current(), Epoch(1));
}

TEST_F(ElectorTest, AStaleCompareAndSetAcceptedAnywayIsALostRace) {
  // nats-server 2.9 right after a stream-leader change: a and b campaign on the same revision; a's
  // write lands at R+1, b's is accepted too and lands at R+2 (the store tells b Aborted). Epoch 1
  // then belongs to a, whose next renewal fails; nobody may lead on b's stray record.
  auto a = makeNode("a");
  auto b = makeNode("b");
  server.doubleAcceptNext("b");
  a->elector->start();
  b->elector->start();
  loop.runDue();
  ASSERT_EQ(server.current().revision, 3u) << "both writes landed";
  EXPECT_EQ(record().holder, "b");
  const TimePoint stray = loop.now();
  // a saw b's newer record before its own answer came: it does not act on a superseded win.
  EXPECT_FALSE(a->listener.saw("become 1"));
  loop.runUntilCondition([&] { return a->elector->isLeader() || b->elector->isLeader(); },
                         stray + kTtl - milliseconds(1));
  EXPECT_FALSE(a->elector->isLeader() || b->elector->isLeader())
      << "someone led inside the stray record's lease";
  ASSERT_TRUE(runUntilOneLeads({a.get(), b.get()}, stray + kTtl + kRenew + milliseconds(50)));
  EXPECT_EQ(record().epoch, Epoch(2));
}

TEST_F(ElectorTest, WritesOfUnknownOutcomeAreRememberedOncePerAttempt) {
  // A long write outage where every answer is lost: the leader retries its renewal many times on
  // the same base revision; it remembers one attempt, with the earliest send time.
  auto a = makeNode("a");
  a->elector->start();
  loop.runDue();
  ASSERT_TRUE(a->elector->isLeader());
  server.setOpTimeout(milliseconds(50));
  server.setDropResponses(1.0);
  loop.advance(kTtl - kMargin - milliseconds(10));
  EXPECT_GE(a->store.writeCount(), 5u);
  EXPECT_LE(a->elector->inDoubtCount(), 1u);
}

}  // namespace
}  // namespace hacoord
