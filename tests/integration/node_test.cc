// Node against a real nats-server: election, planned handover, promote, hooks, NATS outages, TLS.
#include "hacoord/node.h"

#include <gtest/gtest.h>
#include <nats/nats.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <chrono>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/logging.h"
#include "integration/node_harness.h"
#include "nats/nats_connection.h"
#include "nats/nats_control.h"
#include "nats/nats_lease_store.h"
#include "node/control_codec.h"
#include "node/state_file.h"
#include "support/eventually.h"
#include "support/nats_server_fixture.h"

namespace hacoord::test {
namespace {

// Planned-handover timings: a TTL long enough that a takeover within fastTakeover() can only
// come from the handover (release + watch), never from the lease expiring.
constexpr Timing kHandoverTiming{6000ms, 1500ms};
// A lease left to expire moves no sooner than TTL - renew after the leader's last renewal, so
// a takeover inside half the TTL came from a handover. (A handover takes a few ms; the bound is
// loose because sanitizer builds on a busy machine are slow, not because handovers are.)
constexpr milliseconds fastTakeover(const Timing& t) { return t.ttl / 2; }
constexpr milliseconds kFastTakeover = fastTakeover(kHandoverTiming);

class NodeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // HACOORD_TEST_LOG_LEVEL=debug shows the election's every step when a test needs explaining.
    if (const char* level = std::getenv("HACOORD_TEST_LOG_LEVEL")) setLogLevel(level);
    server_ = new NatsServer();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  void TearDown() override {
    stopAllNodes();
    own_.reset();
  }

  // Checks every node's hook sequence, then stops the nodes (planned handovers, disconnect).
  void stopAllNodes() {
    monitor_.reset();
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      expectConsistentHooks(nodes_[i]->nodeId(), *hooks_[i]);
    }
    nodes_.clear();
    hooks_.clear();
  }

  std::vector<std::string> servers() const { return {server_->url()}; }

  Node& addNode(const std::string& cluster, const std::string& id, Timing timing,
                std::vector<std::string> servers_list = {}) {
    if (servers_list.empty()) servers_list = servers();
    return addNodeWithConfig(makeNodeConfig(cluster, id, servers_list, timing));
  }
  Node& addNodeWithConfig(Config config) {
    hooks_.push_back(std::make_shared<RecordingHooks>());
    nodes_.push_back(std::make_unique<Node>(std::move(config), hooks_.back()));
    return *nodes_.back();
  }
  void startAll() {
    for (auto& n : nodes_) {
      const Status s = n->start();
      ASSERT_TRUE(s.isOk()) << n->nodeId() << ": " << s.toString();
    }
  }
  // Three nodes n0..n2 of `cluster` with kHandoverTiming, monitored and started; the index of
  // their settled leader (nodes_.size() after a failure).
  std::size_t startHandoverTrio(const std::string& cluster) {
    for (int i = 0; i < 3; ++i) addNode(cluster, "n" + std::to_string(i), kHandoverTiming);
    startMonitor();
    startAll();
    if (HasFatalFailure()) return nodes_.size();
    return settledLeader();
  }
  void startMonitor() {
    std::vector<const Node*> raw;
    for (auto& n : nodes_) raw.push_back(n.get());
    monitor_ = std::make_unique<LeaderMonitor>(raw);
  }
  // The monitor must have watched closely, or "never two leaders" proves little: at least
  // `min_samples`, and one counted sample per kMonitorDensity watched on average (it samples every
  // ~1 ms; the factor leaves room for a loaded machine and sanitizer builds).
  static constexpr milliseconds kMonitorDensity{20};
  void expectMonitorClean(long min_samples = 1) {
    ASSERT_TRUE(monitor_);
    monitor_->stop();
    EXPECT_EQ(monitor_->violation(), "");
    EXPECT_LE(monitor_->maxLeaders(), 1);
    const long dense = static_cast<long>(monitor_->watched() / kMonitorDensity);
    EXPECT_GE(monitor_->samples(), std::max(min_samples, dense))
        << "the monitor hardly ran: " << monitor_->samples() << " samples in " << monitor_->watched().count()
        << " ms";
  }
  // The monitor watched this handover: a sample with `from` alone leading, then (only leaderless
  // samples between) one with `to` alone leading, at most kMonitorBracket apart. A handover takes a
  // few ms and the monitor samples every ~1 ms (brackets of 8-35 ms measured here, 272 ms with the
  // system test running beside it); the bound leaves room for a starved thread on a loaded machine
  // while still tying the "never two leaders" verdict to this very handover.
  static constexpr milliseconds kMonitorBracket{1000};
  void expectHandoverWatched(std::size_t from, std::size_t to, SteadyTime after) {
    ASSERT_TRUE(monitor_);
    // The test saw `to` lead; the monitor's next counted sample may still be to come.
    std::optional<milliseconds> bracket;
    eventually([&] { return (bracket = monitor_->handoverBracket(from, to, after)).has_value(); }, 2000ms);
    ASSERT_TRUE(bracket) << "the monitor did not see " << nodes_[from]->nodeId() << " and then "
                         << nodes_[to]->nodeId() << " lead alone: " << monitor_->describeRuns(after);
    EXPECT_LE(*bracket, kMonitorBracket)
        << "the monitor saw the handover only between samples " << bracket->count()
        << " ms apart: " << monitor_->describeRuns(after);
    RecordProperty("monitor_bracket_ms", std::to_string(bracket->count()));
  }
  // Waits (bounded) until exactly one node leads and all agree; returns its index.
  std::size_t settledLeader(milliseconds timeout = 10000ms) {
    const bool settled = eventually([&] { return singleAgreedLeader(nodes_); }, timeout);
    EXPECT_TRUE(settled) << "no single agreed leader: " << describeNodes(nodes_);
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      if (nodes_[i]->isLeader()) return i;
    }
    return nodes_.size();
  }
  // Index of a node other than `except` that is leader now, or nodes_.size().
  std::size_t otherLeader(std::size_t except) const {
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      if (i != except && nodes_[i]->isLeader()) return i;
    }
    return nodes_.size();
  }

  static NatsServer* server_;
  std::unique_ptr<NatsServer> own_;  // a test's private server (restarted, killed, TLS)
  std::vector<std::shared_ptr<RecordingHooks>> hooks_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::unique_ptr<LeaderMonitor> monitor_;
};

NatsServer* NodeTest::server_ = nullptr;

// A number `"key": N` from the server's monitor page `path`, after the text `anchor`; -1 if none.
long monitorNumber(const NatsServer& server, const std::string& path, const std::string& anchor,
                   const std::string& key) {
  auto reply = httpGet(server.monitorPort(), path, 500ms);
  if (!reply || reply->status != 200) return -1;
  auto pos = reply->body.find(anchor);
  if (pos == std::string::npos) return -1;
  pos = reply->body.find("\"" + key + "\"", pos);
  if (pos == std::string::npos) return -1;
  pos = reply->body.find(':', pos);
  if (pos == std::string::npos) return -1;
  return std::strtol(reply->body.c_str() + pos + 1, nullptr, 10);
}

// --- Election ----------------------------------------------------------------------------------

class NodeElectionTest : public NodeTest, public ::testing::WithParamInterface<int> {};

TEST_P(NodeElectionTest, ExactlyOneLeaderAndAllAgree) {
  const int count = GetParam();
  const std::string cluster = uniqueClusterId("elect" + std::to_string(count));
  const Timing timing{2000ms, 400ms};
  for (int i = 0; i < count; ++i) addNode(cluster, "n" + std::to_string(i), timing);
  startMonitor();
  ASSERT_NO_FATAL_FAILURE(startAll());

  const std::size_t leader = settledLeader();
  ASSERT_LT(leader, nodes_.size());
  const Epoch epoch = nodes_[leader]->epoch();
  EXPECT_GE(epoch, Epoch(1));
  EXPECT_EQ(nodes_[leader]->role(), Role::kLeader);
  // Renewals keep the same leader well past several TTLs: no flapping, no second leader.
  EXPECT_TRUE(holdsFor(
      [&] {
        std::string who;
        Epoch e;
        return singleAgreedLeader(nodes_, &who, &e) && who == nodes_[leader]->nodeId() && e == epoch;
      },
      2 * timing.ttl))
      << describeNodes(nodes_);
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    const bool is_leader = i == leader;
    const auto become = is_leader ? hooks_[i]->await(HookEvent::Kind::kBecome, epoch)
                                  : hooks_[i]->find(HookEvent::Kind::kBecome, epoch);
    EXPECT_EQ(become.has_value(), is_leader) << nodes_[i]->nodeId() << ": " << hooks_[i]->trace();
    if (!is_leader) {
      EXPECT_EQ(nodes_[i]->role(), Role::kFollower);
    }
  }
  expectMonitorClean(200);
}

INSTANTIATE_TEST_SUITE_P(Sizes, NodeElectionTest, ::testing::Values(1, 3, 5),
                         [](const ::testing::TestParamInfo<int>& param) {
                           return std::to_string(param.param) + "nodes";
                         });

// --- Planned handovers -------------------------------------------------------------------------

TEST_F(NodeTest, StepDownHandsOverAfterTheHookAndBeforeTheLeaseExpires) {
  const std::string cluster = uniqueClusterId("stepdown");
  const std::size_t old = startHandoverTrio(cluster);
  ASSERT_LT(old, nodes_.size());
  const Epoch epoch = nodes_[old]->epoch();
  const std::string old_id = nodes_[old]->nodeId();

  // Inside onLoseLeadership, read the record straight from NATS: it must still be ours.
  NatsConfig reader_config = makeNodeConfig(cluster, "reader", servers()).nats;
  reader_config.request_timeout = 1500ms;
  auto reader = NatsConnection::connect(reader_config, "test-reader");
  ASSERT_TRUE(reader.isOk()) << reader.status().toString();
  std::mutex seen_mutex;
  std::optional<LeaseRecord> seen_in_hook;
  hooks_[old]->setOnLose([&](Epoch, LossReason) {
    auto snap = readLeaseOnce(**reader, "HACOORD_" + cluster);
    std::lock_guard lock(seen_mutex);
    if (snap.isOk()) seen_in_hook = snap->entry.record;
  });
  // The hook uses locals of this test: unhook before they go, even on an early return.
  struct Unhook {
    RecordingHooks& hooks;
    ~Unhook() { hooks.setOnLose(nullptr); }
  } unhook{*hooks_[old]};

  const auto t0 = steadyNow();
  const Status s = nodes_[old]->stepDown();
  ASSERT_TRUE(s.isOk()) << s.toString();
  EXPECT_FALSE(nodes_[old]->isLeader());
  std::size_t next = nodes_.size();
  ASSERT_TRUE(eventually([&] { return (next = otherLeader(old)) < nodes_.size(); }, 5000ms, 1ms))
      << describeNodes(nodes_);
  const long long takeover_ms = msSince(t0);
  EXPECT_LT(takeover_ms, kFastTakeover.count()) << "a planned handover should not wait for expiry";
  RecordProperty("takeover_ms", std::to_string(takeover_ms));
  EXPECT_EQ(nodes_[next]->epoch(), epoch.next());
  expectHandoverWatched(old, next, t0);

  {
    std::lock_guard lock(seen_mutex);
    ASSERT_TRUE(seen_in_hook.has_value()) << "the hook could not read the record";
    EXPECT_EQ(seen_in_hook->holder, old_id) << "the record was released before the hook ran";
    EXPECT_EQ(seen_in_hook->epoch, epoch);
  }
  const auto lose = hooks_[old]->find(HookEvent::Kind::kLose, epoch);
  const auto become = hooks_[next]->await(HookEvent::Kind::kBecome, epoch.next());
  ASSERT_TRUE(lose && become) << hooks_[old]->trace() << " / " << hooks_[next]->trace();
  EXPECT_EQ(lose->reason, LossReason::kSteppedDown);
  EXPECT_LE(lose->t_end, become->t) << "the successor led before the old leader's hook returned";

  // Old leader: become(E), lose(E), then it learns of the new leader. New leader: its own become
  // is followed by the announcement of itself.
  ASSERT_TRUE(eventually(
      [&] {
        for (const auto& e : hooks_[old]->events()) {
          if (e.kind == HookEvent::Kind::kChange && e.leader == nodes_[next]->nodeId()) return true;
        }
        return false;
      },
      3000ms));
  auto indexOf = [](const std::vector<HookEvent>& ev, auto pred) {
    for (std::size_t i = 0; i < ev.size(); ++i) {
      if (pred(ev[i])) return static_cast<long>(i);
    }
    return -1L;
  };
  const auto old_events = hooks_[old]->events();
  const long i_become = indexOf(
      old_events, [&](const HookEvent& e) { return e.kind == HookEvent::Kind::kBecome && e.epoch == epoch; });
  const long i_lose = indexOf(
      old_events, [&](const HookEvent& e) { return e.kind == HookEvent::Kind::kLose && e.epoch == epoch; });
  const long i_change = indexOf(old_events, [&](const HookEvent& e) {
    return e.kind == HookEvent::Kind::kChange && e.leader == nodes_[next]->nodeId();
  });
  EXPECT_TRUE(i_become >= 0 && i_become < i_lose && i_lose < i_change) << hooks_[old]->trace();
  const auto new_events = hooks_[next]->events();
  const long n_become = indexOf(new_events, [&](const HookEvent& e) {
    return e.kind == HookEvent::Kind::kBecome && e.epoch == epoch.next();
  });
  const long n_self = indexOf(new_events, [&](const HookEvent& e) {
    return e.kind == HookEvent::Kind::kChange && e.leader == nodes_[next]->nodeId();
  });
  EXPECT_TRUE(n_become >= 0 && n_become < n_self) << hooks_[next]->trace();

  // Not leader any more: a second stepDown is refused.
  EXPECT_EQ(nodes_[old]->stepDown().code(), StatusCode::kFailedPrecondition);
  settledLeader();
  expectMonitorClean();
}

// The operator's forced handover to `successor` (stepdown.force on the leader): what
// `hacoord promote --force` sends, past the rate limit of one handover per cooldown.
Status forcePromote(const std::vector<std::string>& servers, const std::string& cluster,
                    const std::string& leader, const std::string& successor) {
  auto conn = NatsConnection::connect(makeNodeConfig(cluster, "operator", servers).nats, "test-operator");
  if (!conn.isOk()) return conn.status();
  ControlRequest request;
  request.successor = successor;
  request.requester = "test-operator";
  auto reply = natsRequest(**conn, controlSubject(cluster, leader, std::string(kVerbForceStepDown)),
                           encodeControlRequest(request), 5000ms);
  if (!reply.isOk()) return reply.status();
  return decodeControlReply(*reply);
}

TEST_F(NodeTest, PromoteMakesThatFollowerTheLeader) {
  const std::string cluster = uniqueClusterId("promote");
  const std::size_t old = startHandoverTrio(cluster);
  ASSERT_LT(old, nodes_.size());
  const Epoch epoch = nodes_[old]->epoch();
  EXPECT_TRUE(nodes_[old]->promote().isOk()) << "promote of the leader itself is a no-op";

  // Both followers in turn: the chosen one must win, never the other.
  std::size_t current = old;
  Epoch current_epoch = epoch;
  for (int round = 0; round < 2; ++round) {
    const std::size_t chosen = (current + 1) % nodes_.size();
    ASSERT_NE(chosen, current);
    auto t0 = steadyNow();
    Status s = nodes_[chosen]->promote();
    if (round == 1) {
      // The leader took over in round 0's handover a moment ago: one handover per cooldown across
      // the cluster refuses a node's promote; the operator's forced one goes.
      EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.toString();
      EXPECT_NE(s.message().find("took over in a handover"), std::string::npos) << s.toString();
      t0 = steadyNow();
      s = forcePromote(servers(), cluster, nodes_[current]->nodeId(), nodes_[chosen]->nodeId());
    }
    ASSERT_TRUE(s.isOk()) << nodes_[chosen]->nodeId() << ": " << s.toString();
    ASSERT_TRUE(eventually([&] { return nodes_[chosen]->isLeader(); }, 5000ms, 1ms)) << describeNodes(nodes_);
    EXPECT_LT(msSince(t0), kFastTakeover.count());
    EXPECT_EQ(nodes_[chosen]->epoch(), current_epoch.next()) << "someone else led in between";
    expectHandoverWatched(current, chosen, t0);
    const auto lose = hooks_[current]->find(HookEvent::Kind::kLose, current_epoch);
    ASSERT_TRUE(lose) << hooks_[current]->trace();
    EXPECT_EQ(lose->reason, LossReason::kSteppedDown);
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      if (i == chosen) continue;
      EXPECT_FALSE(hooks_[i]->find(HookEvent::Kind::kBecome, current_epoch.next()))
          << nodes_[i]->nodeId() << " took the lease meant for " << nodes_[chosen]->nodeId();
    }
    current = chosen;
    current_epoch = current_epoch.next();
    settledLeader();
  }
  expectMonitorClean();
}

TEST_F(NodeTest, StopOfTheLeaderIsAPlannedHandover) {
  const std::string cluster = uniqueClusterId("stop");
  const std::size_t old = startHandoverTrio(cluster);
  ASSERT_LT(old, nodes_.size());
  const Epoch epoch = nodes_[old]->epoch();

  const auto t0 = steadyNow();
  nodes_[old]->stop();
  EXPECT_LT(msSince(t0), kFastTakeover.count()) << "stop() of a leader should only take a handover";
  EXPECT_EQ(nodes_[old]->role(), Role::kStopped);
  EXPECT_FALSE(nodes_[old]->isLeader());
  std::size_t next = nodes_.size();
  ASSERT_TRUE(eventually([&] { return (next = otherLeader(old)) < nodes_.size(); }, 5000ms, 1ms))
      << describeNodes(nodes_);
  EXPECT_LT(msSince(t0), kFastTakeover.count());
  EXPECT_EQ(nodes_[next]->epoch(), epoch.next());
  expectHandoverWatched(old, next, t0);
  const auto lose = hooks_[old]->find(HookEvent::Kind::kLose, epoch);
  ASSERT_TRUE(lose) << hooks_[old]->trace();
  EXPECT_EQ(lose->reason, LossReason::kStopped);
  const auto become = hooks_[next]->await(HookEvent::Kind::kBecome, epoch.next());
  ASSERT_TRUE(become);
  EXPECT_LE(lose->t_end, become->t);
  nodes_[old]->stop();  // idempotent
  EXPECT_EQ(nodes_[old]->stepDown().code(), StatusCode::kFailedPrecondition);
  expectMonitorClean();
}

TEST_F(NodeTest, LeaveAndJoinCandidacy) {
  const std::string cluster = uniqueClusterId("candidacy");
  const Timing timing{4000ms, 1000ms};
  addNode(cluster, "a", timing);
  addNode(cluster, "b", timing);
  startMonitor();
  ASSERT_NO_FATAL_FAILURE(startAll());
  const std::size_t first = settledLeader();
  ASSERT_LT(first, nodes_.size());
  const std::size_t second = 1 - first;
  const Epoch epoch = nodes_[first]->epoch();

  // Leaving while leader hands over at once.
  auto t0 = steadyNow();
  nodes_[first]->setCandidate(false);
  ASSERT_TRUE(eventually([&] { return nodes_[second]->isLeader(); }, 5000ms, 1ms)) << describeNodes(nodes_);
  EXPECT_LT(msSince(t0), fastTakeover(timing).count());
  EXPECT_EQ(nodes_[second]->epoch(), epoch.next());
  expectHandoverWatched(first, second, t0);
  ASSERT_TRUE(hooks_[first]->find(HookEvent::Kind::kLose, epoch));
  EXPECT_EQ(hooks_[first]->find(HookEvent::Kind::kLose, epoch)->reason, LossReason::kSteppedDown);

  // Nobody is a candidate: the lease stays vacant well past a TTL.
  nodes_[second]->setCandidate(false);
  ASSERT_TRUE(eventually([&] { return !nodes_[second]->isLeader(); }, 3000ms));
  EXPECT_TRUE(holdsFor([&] { return !nodes_[0]->isLeader() && !nodes_[1]->isLeader(); }, timing.ttl + 1000ms))
      << "a node that left candidacy took the lease: " << describeNodes(nodes_);
  EXPECT_EQ(nodes_[0]->leader(), "");

  // Joining again: the first node takes the vacant lease (its cooldown has passed).
  t0 = steadyNow();
  nodes_[first]->setCandidate(true);
  ASSERT_TRUE(eventually([&] { return nodes_[first]->isLeader(); }, timing.ttl + 3000ms))
      << describeNodes(nodes_);
  EXPECT_EQ(nodes_[first]->epoch(), epoch.next().next());
  nodes_[second]->setCandidate(true);
  std::string who;
  ASSERT_TRUE(eventually([&] { return singleAgreedLeader(nodes_, &who); }, 5000ms));
  EXPECT_EQ(who, nodes_[first]->nodeId()) << "joining must not unseat a live leader";
  expectMonitorClean(500);
}

TEST_F(NodeTest, FailingBecomeLeaderHookStepsDownAndAnotherTakesOver) {
  const std::string cluster = uniqueClusterId("hookfail");
  Node& bad = addNode(cluster, "bad", kHandoverTiming);
  hooks_[0]->fail_become = true;
  ASSERT_TRUE(bad.start().isOk());
  // Alone, it wins epoch 1 (after one TTL: on a key that never held a record nobody can vouch
  // that no holder exists), its hook refuses, and it hands the lease back.
  ASSERT_TRUE(eventually(
      [&] {
        auto e = hooks_[0]->find(HookEvent::Kind::kLose, Epoch(1));
        return e.has_value();
      },
      kHandoverTiming.ttl + 5000ms))
      << hooks_[0]->trace();
  EXPECT_EQ(hooks_[0]->find(HookEvent::Kind::kLose, Epoch(1))->reason, LossReason::kHookFailed);
  EXPECT_FALSE(bad.isLeader());

  // A healthy node started now takes the vacant lease at once (the bad one is in cooldown).
  Node& good = addNode(cluster, "good", kHandoverTiming);
  const auto t0 = steadyNow();
  ASSERT_TRUE(good.start().isOk());
  ASSERT_TRUE(eventually([&] { return good.isLeader(); }, 5000ms, 1ms)) << describeNodes(nodes_);
  EXPECT_LT(msSince(t0), kFastTakeover.count() + 1000);
  EXPECT_EQ(good.epoch(), Epoch(2));
  std::string who;
  EXPECT_TRUE(eventually([&] { return singleAgreedLeader(nodes_, &who); }, 3000ms));
  EXPECT_EQ(who, "good");
}

// --- NATS outages ------------------------------------------------------------------------------

TEST_F(NodeTest, NatsRestartKeepsOneLeaderAndTheWatchStillDelivers) {
  own_ = std::make_unique<NatsServer>();
  NatsServer& own = *own_;
  const std::string cluster = uniqueClusterId("restart");
  // Renew interval 9 s: after the restart, three handovers each taken over in < 2 s cannot all
  // come from the 9 s polling backstop (chance about 1 %); they prove the watch was restored.
  const Timing timing{20000ms, 9000ms, 20000ms, 1000ms};
  for (int i = 0; i < 3; ++i) addNode(cluster, "n" + std::to_string(i), timing, {own.url()});
  // One at a time: n0 wins alone and the others find its live record, so nobody has just lost a
  // compare-and-set race (a loser waits renew / 4 = 1 s before it may campaign again).
  ASSERT_TRUE(nodes_[0]->start().isOk());
  ASSERT_TRUE(eventually([&] { return nodes_[0]->isLeader(); }, timing.ttl + 5000ms));
  ASSERT_TRUE(nodes_[1]->start().isOk());
  ASSERT_TRUE(nodes_[2]->start().isOk());
  std::size_t current = settledLeader();
  ASSERT_EQ(current, 0u);
  startMonitor();

  const auto t0 = steadyNow();
  own.restart();
  RecordProperty("outage_ms", std::to_string(msSince(t0)));
  // The ephemeral consumers of the watchers died with the server. Every node must reconnect and
  // build a new watcher before a handover can prove anything about the watch.
  ASSERT_TRUE(eventually(
      [&] {
        return monitorNumber(own, "/connz", "", "num_connections") == 3 &&
               monitorNumber(own, "/jsz?accounts=true&streams=true", "KV_HACOORD_" + cluster,
                             "consumer_count") >= 3;
      },
      10000ms, 20ms))
      << "nodes did not reconnect and watch again";
  RecordProperty("rewatch_ms", std::to_string(msSince(t0)));
  current = settledLeader(timing.ttl + 5000ms);
  ASSERT_LT(current, nodes_.size());

  constexpr long long kWatchBound = 2000;
  auto handover = [&](const std::string& what, std::size_t from, std::optional<std::size_t> to) {
    const Epoch e = nodes_[from]->epoch();
    const auto t1 = steadyNow();
    // The promotes follow a handover at once: the operator's forced path (the rate limit of one
    // handover per cooldown across the cluster would refuse a plain one; ControlServiceTest).
    const Status s = to ? forcePromote({own.url()}, cluster, nodes_[from]->nodeId(), nodes_[*to]->nodeId())
                        : nodes_[from]->stepDown();
    ASSERT_TRUE(s.isOk()) << what << ": " << s.toString();
    std::size_t next = nodes_.size();
    ASSERT_TRUE(eventually([&] { return (next = otherLeader(from)) < nodes_.size(); }, 15000ms, 1ms))
        << what << ": " << describeNodes(nodes_);
    const long long ms = msSince(t1);
    RecordProperty(what + "_takeover_ms", std::to_string(ms));
    EXPECT_LT(ms, kWatchBound) << what << ": takeover after the restart looks like polling";
    if (to) {
      EXPECT_EQ(next, *to) << what << ": another node took the lease";
    }
    expectHandoverWatched(from, next, t1);
    EXPECT_EQ(nodes_[next]->epoch(), e.next());
    current = next;
    ASSERT_LT(settledLeader(), nodes_.size());
  };
  // 1. stepDown: one follower wins (the other may lose the race and back off: never chosen below).
  const std::size_t first = current;
  ASSERT_NO_FATAL_FAILURE(handover("stepdown", current, std::nullopt));
  const std::size_t winner = current;
  // 2. promote the old leader (it released, it raced nobody), 3. promote the winner of step 1.
  ASSERT_NO_FATAL_FAILURE(handover("promote1", current, first));
  ASSERT_NO_FATAL_FAILURE(handover("promote2", current, winner));
  expectMonitorClean(20);
}

TEST_F(NodeTest, LeaderSelfFencesWhenNatsIsDownLongerThanTheTtl) {
  own_ = std::make_unique<NatsServer>();
  NatsServer& own = *own_;
  const std::string cluster = uniqueClusterId("fence");
  const Timing timing{1000ms, 250ms, 1000ms, 100ms};
  addNode(cluster, "a", timing, {own.url()});
  addNode(cluster, "b", timing, {own.url()});
  ASSERT_NO_FATAL_FAILURE(startAll());
  const std::size_t leader = settledLeader();
  ASSERT_LT(leader, nodes_.size());
  const Epoch epoch = nodes_[leader]->epoch();
  startMonitor();
  // Let the monitor see the leader before the outage.
  ASSERT_TRUE(eventually([&] { return monitor_->lastLeaderSample(leader).has_value(); }, 2000ms));

  own.kill9();
  // Every write the leader got confirmed was sent before now: its lease ends by this deadline.
  const auto dead = steadyNow();
  const auto deadline = dead + timing.ttl - timing.margin;

  ASSERT_TRUE(eventually([&] { return hooks_[leader]->find(HookEvent::Kind::kLose, epoch).has_value(); },
                         timing.ttl + 3000ms))
      << "no onLoseLeadership while NATS is down: " << hooks_[leader]->trace();
  const auto lose = *hooks_[leader]->find(HookEvent::Kind::kLose, epoch);
  EXPECT_EQ(lose.reason, LossReason::kLeaseExpired);
  // The hook runs on hacoord's own threads: allow for a busy machine, but not for a renewal.
  EXPECT_LT(msBetween(deadline, lose.t), 1000) << "the hook came long after the deadline";
  EXPECT_FALSE(nodes_[leader]->isLeader());
  const auto last_true = monitor_->lastLeaderSample(leader);
  ASSERT_TRUE(last_true.has_value());
  EXPECT_LT(*last_true, deadline) << "isLeader() was still true " << msBetween(deadline, *last_true)
                                  << " ms after the deadline";
  EXPECT_FALSE(hooks_[1 - leader]->find(HookEvent::Kind::kBecome, epoch.next()))
      << "a follower led while NATS was down";

  // NATS back (same port, same store): one leader again, under a higher epoch.
  own.start();
  std::string who;
  Epoch now_epoch;
  ASSERT_TRUE(eventually([&] { return singleAgreedLeader(nodes_, &who, &now_epoch); }, timing.ttl + 8000ms))
      << describeNodes(nodes_);
  EXPECT_GT(now_epoch, epoch);
  expectMonitorClean(200);
}

// --- Start-up errors ---------------------------------------------------------------------------

TEST_F(NodeTest, StartWithoutServerIsUnavailableQuickly) {
  const int port = freeLoopbackPort();  // nothing listens there
  Config config =
      makeNodeConfig(uniqueClusterId("noserver"), "a", {"nats://127.0.0.1:" + std::to_string(port)});
  Node node(config);
  const auto t0 = steadyNow();
  const Status s = node.start();
  EXPECT_LT(msSince(t0), 10000) << "start() must fail, not retry forever";
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.toString();
  EXPECT_NE(s.message().find("127.0.0.1:" + std::to_string(port)), std::string::npos)
      << "the error should name the server: " << s.toString();
  EXPECT_EQ(s.message().find('\n'), std::string::npos) << "one line: " << s.toString();
  EXPECT_FALSE(node.isLeader());
  node.stop();  // never started: a no-op
}

TEST_F(NodeTest, StartRefusesABucketWithAnotherConfiguration) {
  const std::string cluster = uniqueClusterId("bucketcfg");
  const std::string bucket = "HACOORD_" + cluster;
  // Someone created the bucket by hand with history 5.
  {
    auto conn = NatsConnection::connect(makeNodeConfig(cluster, "x", servers()).nats, "test-admin");
    ASSERT_TRUE(conn.isOk()) << conn.status().toString();
    kvConfig cfg;
    kvConfig_Init(&cfg);
    cfg.Bucket = bucket.c_str();
    cfg.History = 5;
    cfg.StorageType = js_FileStorage;
    kvStore* kv = nullptr;
    ASSERT_EQ(js_CreateKeyValue(&kv, (*conn)->js(), &cfg), NATS_OK) << nats_GetLastError(nullptr);
    kvStore_Destroy(kv);
  }
  Node node(makeNodeConfig(cluster, "a", servers()));
  const Status s = node.start();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.toString();
  EXPECT_NE(s.message().find(bucket), std::string::npos) << s.toString();
  EXPECT_NE(s.message().find("another configuration"), std::string::npos) << s.toString();

  // Replicas 3 on a server that is not clustered: refused with the reason, not retried forever.
  Config r3 = makeNodeConfig(uniqueClusterId("replicas"), "a", servers());
  r3.election.bucket_replicas = 3;
  Node node3(r3);
  const Status s3 = node3.start();
  EXPECT_EQ(s3.code(), StatusCode::kInvalidArgument) << s3.toString();
  EXPECT_NE(s3.message().find("replica"), std::string::npos) << s3.toString();
}

// --- The bucket deleted while nodes run -------------------------------------------------------

// Deletes the lease bucket of `cluster` as an operator would, on a connection of its own.
void deleteLeaseBucket(const std::vector<std::string>& servers, const std::string& cluster) {
  auto conn = NatsConnection::connect(makeNodeConfig(cluster, "x", servers).nats, "test-admin");
  ASSERT_TRUE(conn.isOk()) << conn.status().toString();
  const std::string bucket = "HACOORD_" + cluster;
  ASSERT_TRUE(test::deleteKvBucket(**conn, bucket)) << nats_GetLastError(nullptr);
}

// A temporary state directory per test (the epoch floors), removed at the end.
struct TempStateDir {
  std::string path = makeTempDir("hacoord-state");
  ~TempStateDir() { removeTree(path); }
};

TEST_F(NodeTest, DeletedBucketIsRecreatedAndExactlyOneLeaderComesBackAtAHigherEpoch) {
  const std::string cluster = uniqueClusterId("bucketgone");
  const Timing timing{1000ms, 250ms};
  TempStateDir state;
  for (int i = 0; i < 3; ++i) {
    Config c = makeNodeConfig(cluster, "n" + std::to_string(i), servers(), timing);
    c.state_dir = state.path;
    addNodeWithConfig(c);
  }
  startMonitor();
  ASSERT_NO_FATAL_FAILURE(startAll());
  const std::size_t first = settledLeader();
  ASSERT_LT(first, nodes_.size());
  const Epoch before = nodes_[first]->epoch();

  const auto before_delete = steadyNow();
  ASSERT_NO_FATAL_FAILURE(deleteLeaseBucket(servers(), cluster));
  const auto t0 = steadyNow();
  // The old leader can no longer renew (its base is gone): it stops; the others wait a full TTL
  // from seeing the re-created, empty bucket, then one of them wins above every epoch seen.
  std::string leader;
  Epoch epoch;
  ASSERT_TRUE(
      eventually([&] { return singleAgreedLeader(nodes_, &leader, &epoch) && epoch > before; }, 15000ms))
      << "no single leader above epoch " << before.value()
      << " after the bucket was deleted: " << describeNodes(nodes_);
  std::cout << "[ bucket ] leader " << leader << " at epoch " << epoch.value() << " (was " << before.value()
            << ") " << msSince(t0) << " ms after the delete\n";
  // Never sooner than a TTL after the delete: an empty re-created bucket means "holder unknown",
  // not "vacant" (the old holder may still be inside its lease).
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i]->nodeId() != leader) continue;
    const auto became = hooks_[i]->find(HookEvent::Kind::kBecome, epoch);
    ASSERT_TRUE(became) << hooks_[i]->trace();
    EXPECT_GE(became->t - before_delete, timing.ttl)
        << "the new leader took over a re-created bucket before a TTL had passed";
  }
  // It stays: no flapping on the new bucket.
  EXPECT_TRUE(holdsFor(
      [&] {
        std::string who;
        Epoch e;
        return singleAgreedLeader(nodes_, &who, &e) && who == leader && e == epoch;
      },
      2 * timing.ttl))
      << describeNodes(nodes_);
  expectMonitorClean(200);
}

// A node whose floor says 9 (its state file) does not campaign; another one that never saw an
// epoch finds the bucket deleted and empty: it must ask the floors and go above 9.
TEST_F(NodeTest, CampaignOnAnEmptyBucketGoesAboveEveryNodesFloor) {
  const std::string cluster = uniqueClusterId("floors");
  const Timing timing{1000ms, 250ms};
  TempStateDir state;
  {
    auto floor = StateFile::open(state.path, cluster, "a");
    ASSERT_TRUE(floor.isOk()) << floor.status().toString();
    ASSERT_TRUE((*floor)->raise(Epoch(9), 1000ms).isOk());
  }
  Config a = makeNodeConfig(cluster, "a", servers(), timing);
  a.state_dir = state.path;
  a.election.candidate = false;
  Config b = makeNodeConfig(cluster, "b", servers(), timing);
  b.state_dir = state.path;
  addNodeWithConfig(a);
  addNodeWithConfig(b);
  startMonitor();
  ASSERT_NO_FATAL_FAILURE(startAll());
  EXPECT_EQ(nodes_[1]->epoch(), Epoch(0)) << "b starts knowing no epoch";
  ASSERT_NO_FATAL_FAILURE(deleteLeaseBucket(servers(), cluster));

  ASSERT_TRUE(eventually([&] { return nodes_[1]->isLeader(); }, 10000ms)) << describeNodes(nodes_);
  EXPECT_GT(nodes_[1]->epoch(), Epoch(9)) << "b campaigned without asking a's floor";
  EXPECT_FALSE(nodes_[0]->isLeader());
  expectMonitorClean();
}

// --- TLS ---------------------------------------------------------------------------------------

TEST_F(NodeTest, ElectsOverMutualTlsAndRefusesAClientWithoutCertificate) {
  const std::string dir = makeTempDir("hacoord-tls");
  struct Cleanup {
    std::string dir;
    ~Cleanup() { removeTree(dir); }
  } cleanup{dir};
  const TlsMaterial tls = makeTestCerts(dir);
  NatsServerOptions options;
  options.tls = tls;
  options.tls_verify = true;
  own_ = std::make_unique<NatsServer>(options);
  NatsServer& own = *own_;
  const std::string cluster = uniqueClusterId("tls");
  for (const char* id : {"a", "b"}) {
    Config c = makeNodeConfig(cluster, id, {own.url()});
    c.nats.tls.ca = tls.ca;
    c.nats.tls.cert = tls.client_cert;
    c.nats.tls.key = tls.client_key;
    addNodeWithConfig(c);
  }
  ASSERT_NO_FATAL_FAILURE(startAll());
  ASSERT_LT(settledLeader(), nodes_.size());

  Config no_cert = makeNodeConfig(cluster, "c", {own.url()});
  no_cert.nats.tls.ca = tls.ca;
  Node rejected(no_cert);
  const auto t0 = steadyNow();
  const Status s = rejected.start();
  EXPECT_LT(msSince(t0), 30000) << "start() must fail, not retry forever";
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.toString();
  EXPECT_NE(s.message().find("certificate"), std::string::npos)
      << "the error should point at the client certificate: " << s.toString();
}

}  // namespace
}  // namespace hacoord::test
