// Process-level failover: hacoord_test_node children killed -9, frozen (SIGSTOP) and stopped (SIGTERM).
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <iostream>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "nats/nats_connection.h"
#include "nats/nats_lease_store.h"
#include "support/child_process.h"
#include "support/eventually.h"
#include "support/nats_server_fixture.h"

namespace hacoord::test {
namespace {

using namespace std::chrono_literals;

// The test node's "t": steady-clock ms, i.e. CLOCK_MONOTONIC, the same clock as ours.
double monotonicMs() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct NodeEvent {
  std::string event;  // started, become_leader, lose_leadership, leader_change, acting, stopped...
  double t = 0;
  std::uint64_t epoch = 0;
  std::string reason;
  std::string leader;
};

std::optional<NodeEvent> parseEvent(const std::string& line) {
  auto fields = parseFlatJson(line);
  if (!fields || !fields->count("event") || !fields->count("t")) return std::nullopt;
  NodeEvent e;
  e.event = (*fields)["event"];
  e.t = std::stod((*fields)["t"]);
  if (fields->count("epoch")) e.epoch = std::stoull((*fields)["epoch"]);
  if (fields->count("reason")) e.reason = (*fields)["reason"];
  if (fields->count("leader")) e.leader = (*fields)["leader"];
  return e;
}

// One hacoord_test_node child with its own config file.
class TestNodeProcess {
 public:
  TestNodeProcess(std::string id, const std::string& config_path)
      : id_(std::move(id)), child_({HACOORD_TEST_NODE, "--config", config_path}) {}

  const std::string& id() const { return id_; }
  ChildProcess& child() { return child_; }

  std::vector<NodeEvent> events() const {
    std::vector<NodeEvent> out;
    for (const auto& line : child_.lines()) {
      if (auto e = parseEvent(line)) out.push_back(*e);
    }
    return out;
  }
  std::optional<NodeEvent> find(const std::string& event, std::uint64_t epoch) const {
    for (const auto& e : events()) {
      if (e.event == event && e.epoch == epoch) return e;
    }
    return std::nullopt;
  }
  bool has(const std::string& event) const {
    for (const auto& e : events()) {
      if (e.event == event) return true;
    }
    return false;
  }
  // Leads now: became leader of its highest epoch, has not lost it, and acts under it.
  std::optional<std::uint64_t> leadingEpoch() const {
    std::uint64_t become = 0;
    bool lost = false;
    bool acting = false;
    for (const auto& e : events()) {
      if (e.event == "become_leader" && e.epoch > become) {
        become = e.epoch;
        lost = false;
        acting = false;
      } else if (e.event == "lose_leadership" && e.epoch == become) {
        lost = true;
      } else if (e.event == "acting" && e.epoch == become) {
        acting = true;
      }
    }
    if (become == 0 || lost || !acting) return std::nullopt;
    return become;
  }
  std::string dump() const {
    return "--- " + id_ + " stdout (last 3000):\n" + tail(child_.stdoutText()) + "\n--- " + id_ +
           " stderr (last 3000):\n" + tail(child_.stderrText()) + "\n";
  }

 private:
  static std::string tail(const std::string& s) {
    return s.size() > 3000 ? "..." + s.substr(s.size() - 3000) : s;
  }

  std::string id_;
  ChildProcess child_;
};

// Every revision of the lease key with the server's stamp, read every 5 ms on a connection of its
// own. A renewal lives a renew interval, so none is missed; a record overwritten within 5 ms (a
// handover's vacant record) may be, which revisions() shows as a gap in the revision numbers.
class LeaseRecorder {
 public:
  struct Revision {
    std::uint64_t revision = 0;
    std::int64_t created_ns = 0;
    LeaseRecord record;
  };

  LeaseRecorder(const std::string& server_url, std::string bucket) : bucket_(std::move(bucket)) {
    auto connection = NatsConnection::connect(testNatsConfig({server_url}), "test-lease-recorder");
    EXPECT_TRUE(connection.isOk()) << connection.status().toString();
    if (!connection.isOk()) return;
    connection_ = std::move(*connection);
    thread_ = std::thread([this] { run(); });
  }
  ~LeaseRecorder() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  LeaseRecorder(const LeaseRecorder&) = delete;
  LeaseRecorder& operator=(const LeaseRecorder&) = delete;

  std::vector<Revision> revisions() const {
    std::lock_guard lock(mutex_);
    return revisions_;
  }

 private:
  void run() {
    while (!stop_) {
      auto snap = readLeaseOnce(*connection_, bucket_);
      if (snap.isOk() && snap->entry.revision != 0 && snap->entry.hasRecord()) {
        std::lock_guard lock(mutex_);
        if (revisions_.empty() || revisions_.back().revision != snap->entry.revision) {
          revisions_.push_back({snap->entry.revision, snap->created_unix_ns, snap->entry.record});
        }
      }
      std::this_thread::sleep_for(5ms);  // the read's pace, not a wait for a condition
    }
  }

  const std::string bucket_;
  std::unique_ptr<NatsConnection> connection_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mutex_;
  std::vector<Revision> revisions_;
};

// DESIGN §3 "Follower takeover": a lease that was not handed over may be taken only after the
// record's leaseMs with no new revision. The winner's timer starts when it sees the last revision,
// after the server stamped it, and its write is stamped after it was sent: so the first revision of
// epoch + 1 is stamped at least leaseMs after the revision it replaced (one server clock for both;
// exact, whatever the load). Returns the wait in ms.
long long expectTakeoverWaitedTheLease(const LeaseRecorder& recorder, std::uint64_t epoch) {
  std::vector<LeaseRecorder::Revision> revs;
  // The winner's hook ran after its write; the recorder reads every 5 ms: wait (bounded) for it.
  eventually(
      [&] {
        revs = recorder.revisions();
        return std::any_of(revs.begin(), revs.end(),
                           [&](const auto& r) { return r.record.epoch == Epoch(epoch + 1); });
      },
      2000ms, 5ms);
  for (std::size_t i = 0; i < revs.size(); ++i) {
    if (revs[i].record.epoch != Epoch(epoch + 1) || revs[i].record.vacant()) continue;
    if (i == 0 || revs[i - 1].revision + 1 != revs[i].revision) {
      ADD_FAILURE() << "the recorder missed the revision before " << revs[i].revision;
      return -1;
    }
    const auto& prev = revs[i - 1];
    EXPECT_EQ(prev.record.epoch, Epoch(epoch));
    EXPECT_FALSE(prev.record.vacant()) << "epoch " << epoch << " was handed over, not left to expire";
    const std::int64_t waited_ns = revs[i].created_ns - prev.created_ns;
    const std::int64_t lease_ns = std::chrono::nanoseconds(prev.record.lease).count();
    EXPECT_GE(waited_ns, lease_ns) << revs[i].record.holder << " took epoch " << epoch + 1 << " "
                                   << waited_ns / 1000000.0 << " ms after the last revision of epoch "
                                   << epoch << " (leaseMs " << prev.record.lease.count() << ")";
    return waited_ns / 1000000;
  }
  ADD_FAILURE() << "the recorder saw no revision of epoch " << epoch + 1;
  return -1;
}

class ProcessTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new NatsServer(); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override { dir_ = makeTempDir("hacoord-proc"); }
  void TearDown() override {
    if (HasFailure()) {
      for (auto& n : nodes_) std::cerr << n->dump();
    }
    nodes_.clear();  // SIGKILL + reap whatever still runs
    removeTree(dir_);
  }

  std::string clusterId() const {
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    return "proc-" + name;
  }
  std::string bucket() const { return "HACOORD_" + clusterId(); }

  void startNodes(int count, int ttl_ms, int renew_ms) {
    const std::string cluster = clusterId();
    for (int i = 0; i < count; ++i) {
      const std::string id = "p" + std::to_string(i);
      const std::string path = dir_ + "/" + id + ".json";
      writeTextFile(path, R"({"clusterId":")" + cluster + R"(","nodeId":")" + id + R"(","stateDir":")" +
                              dir_ + R"(","nats":{"servers":[")" + server_->url() +
                              R"("],"connectTimeoutMs":1000,"requestTimeoutMs":500,)"
                              R"("reconnectWaitMs":50,"reconnectWaitMaxMs":250},)"
                              R"("election":{"leaseTtlMs":)" +
                              std::to_string(ttl_ms) + R"(,"renewIntervalMs":)" + std::to_string(renew_ms) +
                              R"(},"log":{"level":"info"}})");
      nodes_.push_back(std::make_unique<TestNodeProcess>(id, path));
    }
    for (auto& n : nodes_) {
      ASSERT_TRUE(eventually([&] { return n->has("started"); }, 10000ms)) << "node did not start\n"
                                                                          << n->dump();
    }
  }

  // Waits until exactly one process leads (and acts); returns its index and epoch.
  std::pair<std::size_t, std::uint64_t> waitForLeader(milliseconds timeout) {
    std::size_t index = nodes_.size();
    std::uint64_t epoch = 0;
    const bool ok = eventually(
        [&] {
          int leaders = 0;
          for (std::size_t i = 0; i < nodes_.size(); ++i) {
            if (nodes_[i]->child().exited()) continue;
            if (auto e = nodes_[i]->leadingEpoch()) {
              ++leaders;
              index = i;
              epoch = *e;
            }
          }
          return leaders == 1;
        },
        timeout, 5ms);
    EXPECT_TRUE(ok) << "no single leading process";
    return {index, epoch};
  }

  // Waits until process `index` has acted as leader of `epoch` for `period`: it has renewed a few
  // times, so a fault now hits a leader in its steady state, not one that just won.
  void waitActingFor(std::size_t index, std::uint64_t epoch, milliseconds period) {
    const auto become = nodes_[index]->find("become_leader", epoch);
    ASSERT_TRUE(become);
    ASSERT_TRUE(eventually(
        [&] {
          for (const auto& e : nodes_[index]->events()) {
            if (e.event == "acting" && e.epoch == epoch &&
                e.t > become->t + static_cast<double>(period.count())) {
              return true;
            }
          }
          return false;
        },
        period + 5000ms))
        << nodes_[index]->dump();
  }

  // The become_leader of `epoch` by any process other than `except`: (index, event).
  std::optional<std::pair<std::size_t, NodeEvent>> waitForBecome(std::uint64_t epoch, std::size_t except,
                                                                 milliseconds timeout) {
    std::optional<std::pair<std::size_t, NodeEvent>> found;
    eventually(
        [&] {
          for (std::size_t i = 0; i < nodes_.size(); ++i) {
            if (i == except) continue;
            if (auto e = nodes_[i]->find("become_leader", epoch)) {
              found = {i, *e};
              return true;
            }
          }
          return false;
        },
        timeout, 2ms);
    return found;
  }

  // The fencing invariant across processes: each epoch has one leader, and every "acting" line of
  // epoch E was printed before any process became leader of a later epoch.
  void expectNoOverlappingLeadership() {
    std::map<std::uint64_t, std::pair<std::string, double>> becomes;  // epoch -> (node, t)
    for (auto& n : nodes_) {
      for (const auto& e : n->events()) {
        if (e.event != "become_leader") continue;
        auto [it, inserted] = becomes.emplace(e.epoch, std::make_pair(n->id(), e.t));
        EXPECT_TRUE(inserted) << "epoch " << e.epoch << " led by both " << it->second.first << " and "
                              << n->id();
      }
    }
    long acting_lines = 0;
    for (auto& n : nodes_) {
      for (const auto& e : n->events()) {
        if (e.event != "acting") continue;
        ++acting_lines;
        auto own = becomes.find(e.epoch);
        ASSERT_NE(own, becomes.end())
            << n->id() << " acts under epoch " << e.epoch << " that nobody became leader of";
        EXPECT_EQ(own->second.first, n->id())
            << n->id() << " acts under " << own->second.first << "'s epoch " << e.epoch;
        for (auto later = becomes.upper_bound(e.epoch); later != becomes.end(); ++later) {
          EXPECT_LT(e.t, later->second.second)
              << n->id() << " acted under epoch " << e.epoch << " at t=" << e.t << ", "
              << (e.t - later->second.second) << " ms after " << later->second.first
              << " became leader of epoch " << later->first;
        }
      }
    }
    EXPECT_GT(acting_lines, 0);
  }

  static NatsServer* server_;
  std::string dir_;
  std::vector<std::unique_ptr<TestNodeProcess>> nodes_;
};

NatsServer* ProcessTest::server_ = nullptr;

TEST_F(ProcessTest, KillNineOfTheLeaderFailsOverWithinTheTtl) {
  constexpr int kTtl = 2000;  // a loaded sanitizer build cannot lose it by accident
  ASSERT_NO_FATAL_FAILURE(startNodes(3, kTtl, 400));
  const auto [leader, epoch] = waitForLeader(10000ms);
  ASSERT_LT(leader, nodes_.size());
  ASSERT_NO_FATAL_FAILURE(waitActingFor(leader, epoch, 600ms));
  const LeaseRecorder recorder(server_->url(), bucket());

  const double t_kill = monotonicMs();
  nodes_[leader]->child().kill9();
  const auto next = waitForBecome(epoch + 1, leader, milliseconds(kTtl + 2000));
  ASSERT_TRUE(next) << "no takeover within TTL + 2 s";
  const double takeover = next->second.t - t_kill;
  RecordProperty("takeover_ms", std::to_string(static_cast<long long>(takeover)));
  EXPECT_LT(takeover, kTtl + 2000);
  // The followers had to wait for the lease to run out: exactly, on the server's stamps.
  RecordProperty("lease_waited_ms", std::to_string(expectTakeoverWaitedTheLease(recorder, epoch)));
  const auto [now_leader, now_epoch] = waitForLeader(5000ms);
  EXPECT_EQ(now_leader, next->first);
  EXPECT_EQ(now_epoch, epoch + 1);
  expectNoOverlappingLeadership();
}

TEST_F(ProcessTest, FrozenLeaderIsReplacedAndNeverActsAfterItsSuccessorStarts) {
  constexpr int kTtl = 2000;  // a loaded sanitizer build cannot lose it by accident
  ASSERT_NO_FATAL_FAILURE(startNodes(3, kTtl, 400));
  const auto [leader, epoch] = waitForLeader(10000ms);
  ASSERT_LT(leader, nodes_.size());
  TestNodeProcess& frozen = *nodes_[leader];
  ASSERT_NO_FATAL_FAILURE(waitActingFor(leader, epoch, 600ms));
  const LeaseRecorder recorder(server_->url(), bucket());

  const double t_stop = monotonicMs();
  ASSERT_TRUE(frozen.child().signal(SIGSTOP));
  const auto next = waitForBecome(epoch + 1, leader, milliseconds(kTtl + 3000));
  // Resume before any assertion can return: a stopped child would stay stopped.
  const bool resumed = frozen.child().signal(SIGCONT);
  ASSERT_TRUE(next) << "no takeover from the frozen leader";
  ASSERT_TRUE(resumed);
  RecordProperty("takeover_ms", std::to_string(static_cast<long long>(next->second.t - t_stop)));
  RecordProperty("lease_waited_ms", std::to_string(expectTakeoverWaitedTheLease(recorder, epoch)));

  // Awake again, it notices its lease ran out (by its own clock) and follows the new leader.
  ASSERT_TRUE(eventually([&] { return frozen.find("lose_leadership", epoch).has_value(); }, 5000ms))
      << frozen.dump();
  EXPECT_EQ(frozen.find("lose_leadership", epoch)->reason, "lease-expired") << frozen.dump();
  ASSERT_TRUE(eventually(
      [&] {
        for (const auto& e : frozen.events()) {
          if (e.event == "leader_change" && e.leader == nodes_[next->first]->id()) return true;
        }
        return false;
      },
      5000ms))
      << frozen.dump();
  // Let its acting thread run several 20 ms rounds after the resume: ping it over stdin until it
  // answers with a time 200 ms past the resume.
  const double t_resumed = monotonicMs();
  ASSERT_TRUE(eventually(
      [&] {
        frozen.child().writeLine("join");
        for (const auto& e : frozen.events()) {
          if (e.event == "result" && e.t > t_resumed + 200) return true;
        }
        return false;
      },
      5000ms, 50ms))
      << frozen.dump();
  for (const auto& e : frozen.events()) {
    if (e.event == "acting") {
      EXPECT_LT(e.t, next->second.t) << "the frozen leader acted after its successor took over";
    }
  }
  const auto [now_leader, now_epoch] = waitForLeader(5000ms);
  EXPECT_EQ(now_leader, next->first);
  EXPECT_EQ(now_epoch, epoch + 1);
  expectNoOverlappingLeadership();
}

TEST_F(ProcessTest, SigtermOfTheLeaderIsAFastPlannedHandover) {
  constexpr int kTtl = 3000;  // expiry moves the lease >= TTL - renew = 2.25 s after the signal
  ASSERT_NO_FATAL_FAILURE(startNodes(3, kTtl, 750));
  const auto [leader, epoch] = waitForLeader(10000ms);
  ASSERT_LT(leader, nodes_.size());
  TestNodeProcess& old = *nodes_[leader];
  ASSERT_NO_FATAL_FAILURE(waitActingFor(leader, epoch, 1600ms));

  const double t_term = monotonicMs();
  ASSERT_TRUE(old.child().signal(SIGTERM));
  const auto next = waitForBecome(epoch + 1, leader, milliseconds(kTtl + 3000));
  ASSERT_TRUE(next) << old.dump();
  const double takeover = next->second.t - t_term;
  RecordProperty("takeover_ms", std::to_string(static_cast<long long>(takeover)));
  EXPECT_LT(takeover, kTtl / 2) << "SIGTERM should hand over, not let the lease expire";

  ASSERT_TRUE(old.child().waitExit(5000ms)) << old.dump();
  ASSERT_TRUE(old.child().waitOutputClosed(2000ms)) << old.dump();  // its last lines are read
  EXPECT_EQ(old.child().exitCode(), 0);
  const auto lose = old.find("lose_leadership", epoch);
  ASSERT_TRUE(lose) << old.dump();
  EXPECT_EQ(lose->reason, "stopped");
  EXPECT_LT(lose->t, next->second.t);
  EXPECT_TRUE(old.has("stopped"));
  expectNoOverlappingLeadership();
}

}  // namespace
}  // namespace hacoord::test
