// Nodes on a 3-server NATS cluster (R3 bucket): losing the bucket's stream leader never makes two leaders.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hacoord/node.h"
#include "integration/node_harness.h"
#include "support/eventually.h"
#include "support/nats_server_fixture.h"

namespace hacoord::test {
namespace {

class NatsClusterElectionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { cluster_ = new NatsCluster(3); }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void TearDown() override {
    monitor_.reset();
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      expectConsistentHooks(nodes_[i]->nodeId(), *hooks_[i]);
    }
    nodes_.clear();
    hooks_.clear();
  }

  Node& addNode(Config config) {
    hooks_.push_back(std::make_shared<RecordingHooks>());
    nodes_.push_back(std::make_unique<Node>(std::move(config), hooks_.back()));
    return *nodes_.back();
  }

  static NatsCluster* cluster_;
  std::vector<std::shared_ptr<RecordingHooks>> hooks_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::unique_ptr<LeaderMonitor> monitor_;
};

NatsCluster* NatsClusterElectionTest::cluster_ = nullptr;

TEST_F(NatsClusterElectionTest, BucketWithOtherReplicasIsRefused) {
  const std::string cluster = uniqueClusterId("cl-replicas");
  Config r1 = makeNodeConfig(cluster, "a", cluster_->urls());
  r1.election.bucket_replicas = 1;
  Node& first = addNode(r1);
  const Status s1 = first.start();
  ASSERT_TRUE(s1.isOk()) << s1.toString();

  Config r3 = makeNodeConfig(cluster, "b", cluster_->urls());
  r3.election.bucket_replicas = 3;
  Node other(r3);
  const Status s3 = other.start();
  EXPECT_EQ(s3.code(), StatusCode::kInvalidArgument) << s3.toString();
  EXPECT_NE(s3.message().find("HACOORD_" + cluster), std::string::npos) << s3.toString();
  EXPECT_NE(s3.message().find("another configuration"), std::string::npos) << s3.toString();
}

// DESIGN §3: a 3-node NATS cluster stops KV writes for about 6 s when the bucket's stream leader
// crashes. With a TTL under that the leadership may move, but never to two nodes at once, and a
// single leader must exist again once the stream has a new leader.
TEST_F(NatsClusterElectionTest, KillingTheStreamLeaderNeverGivesTwoLeaders) {
  const std::string cluster = uniqueClusterId("cl-kill");
  const Timing timing{2000ms, 500ms};
  for (int i = 0; i < 3; ++i) {
    Config c = makeNodeConfig(cluster, "n" + std::to_string(i), cluster_->urls(), timing);
    c.election.bucket_replicas = 3;
    addNode(c);
  }
  for (auto& n : nodes_) {
    const Status s = n->start();
    ASSERT_TRUE(s.isOk()) << n->nodeId() << ": " << s.toString();
  }
  ASSERT_TRUE(eventually([&] { return singleAgreedLeader(nodes_); }, 15000ms)) << describeNodes(nodes_);
  std::vector<const Node*> raw;
  for (auto& n : nodes_) raw.push_back(n.get());
  monitor_ = std::make_unique<LeaderMonitor>(raw);

  const std::string stream = "KV_HACOORD_" + cluster;
  const int victim = cluster_->streamLeader(stream);
  ASSERT_GE(victim, 0) << "no stream leader for " << stream;
  std::string before_leader;
  Epoch before_epoch;
  ASSERT_TRUE(singleAgreedLeader(nodes_, &before_leader, &before_epoch));

  const auto t0 = steadyNow();
  cluster_->kill9(victim);
  const int successor = cluster_->streamLeader(stream, 30000ms);
  ASSERT_GE(successor, 0) << "the stream found no new leader";
  EXPECT_NE(successor, victim);
  const long long stream_leader_ms = msSince(t0);
  RecordProperty("stream_leader_ms", std::to_string(stream_leader_ms));

  // A single leader that keeps renewing (stable for two TTLs) within 30 s of the crash.
  const auto deadline = t0 + 30s;
  bool stable = false;
  std::string leader;
  Epoch epoch;
  while (!stable && steadyNow() < deadline) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - steadyNow());
    if (!eventually([&] { return singleAgreedLeader(nodes_, &leader, &epoch); }, left)) break;
    stable = holdsFor(
        [&] {
          std::string who;
          Epoch e;
          return singleAgreedLeader(nodes_, &who, &e) && who == leader && e == epoch;
        },
        2 * timing.ttl);
  }
  ASSERT_TRUE(stable) << "no stable single leader 30 s after the stream leader died: "
                      << describeNodes(nodes_);
  RecordProperty("recovered_ms", std::to_string(msSince(t0)));
  RecordProperty("leadership_moved", epoch != before_epoch ? "yes" : "no");
  EXPECT_GE(epoch, before_epoch);
  // Without a stream leader no renewal can land: once that lasted a whole TTL the old lease is
  // over, and the leadership now held must be a new epoch (the old leader fenced itself).
  if (stream_leader_ms > timing.ttl.count()) {
    EXPECT_GT(epoch, before_epoch) << "writes stopped for " << stream_leader_ms << " ms (TTL "
                                   << timing.ttl.count()
                                   << " ms) yet the same epoch still leads: " << describeNodes(nodes_);
  }
  // Each epoch went to one node only, whatever the stream did meanwhile.
  std::map<std::uint64_t, std::string> holder_of;
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    for (const HookEvent& e : hooks_[i]->events()) {
      if (e.kind != HookEvent::Kind::kBecome) continue;
      const auto [it, fresh] = holder_of.emplace(e.epoch.value(), nodes_[i]->nodeId());
      EXPECT_TRUE(fresh || it->second == nodes_[i]->nodeId())
          << "epoch " << e.epoch.value() << " went to " << it->second << " and to " << nodes_[i]->nodeId();
    }
  }
  EXPECT_TRUE(holder_of.count(epoch.value()))
      << "the leader of epoch " << epoch.value() << " never ran onBecomeLeader";
  monitor_->stop();
  EXPECT_EQ(monitor_->violation(), "");
  EXPECT_LE(monitor_->maxLeaders(), 1);
  EXPECT_GT(monitor_->samples(), 100);
  cluster_->restart(victim);  // leave a whole cluster for whatever runs next
}

}  // namespace
}  // namespace hacoord::test
