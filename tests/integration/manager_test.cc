// Manager integration tests: HTTP endpoints, join/leave over NATS, health checks driving candidacy.
#include "hacoord/manager.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "support/eventually.h"
#include "support/log_capture.h"
#include "support/nats_server_fixture.h"

namespace hacoord {
namespace {

using namespace std::chrono_literals;
using test::NatsServer;

class ManagerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new NatsServer(); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  Config config(const std::string& node) const {
    Config c;
    c.cluster_id =
        (std::string("mgr-") + ::testing::UnitTest::GetInstance()->current_test_info()->name()).substr(0, 64);
    c.node_id = node;
    c.state_dir = test::testStateDir();
    c.nats.servers = {server_->url()};
    // A TTL that a loaded sanitizer build cannot miss by accident: these tests count epochs.
    c.election.lease_ttl = 2000ms;
    c.election.renew_interval = 400ms;
    c.election.cooldown = 2000ms;
    c.election.safety_margin = 200ms;
    c.http_listen = "127.0.0.1:0";
    c.log_level = "warn";
    return c;
  }

  std::unique_ptr<Manager> start(Config c) {
    auto m = std::make_unique<Manager>(std::move(c));
    Status s = m->start();
    EXPECT_TRUE(s.isOk()) << s.toString();
    return m;
  }

  static int leaders(const std::vector<Manager*>& all) {
    int n = 0;
    for (auto* m : all) n += m->node().isLeader() ? 1 : 0;
    return n;
  }

  static NatsServer* server_;
};

NatsServer* ManagerTest::server_ = nullptr;

TEST_F(ManagerTest, HttpEndpointsReportLeadershipAndMetrics) {
  auto a = start(config("a"));
  ASSERT_TRUE(eventually([&] { return a->node().isLeader(); }, 5000ms));
  const int port = a->httpPort();
  ASSERT_GT(port, 0);

  auto healthz = test::httpGet(port, "/healthz");
  ASSERT_TRUE(healthz);
  EXPECT_EQ(healthz->status, 200) << healthz->body;
  auto readyz = test::httpGet(port, "/readyz");
  ASSERT_TRUE(readyz);
  EXPECT_EQ(readyz->status, 200) << readyz->body;
  EXPECT_NE(readyz->body.find("leader"), std::string::npos);
  ASSERT_TRUE(eventually(
      [&] {
        auto m = test::httpGet(port, "/metrics");
        return m && m->body.find("hacoord_lease_renew_seconds_count{node=\"a\"} 0") == std::string::npos;
      },
      5000ms))
      << "no renewal was counted";
  auto metrics = test::httpGet(port, "/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  for (const char* needle :
       {"hacoord_leader{node=\"a\"} 1", "hacoord_epoch{node=\"a\"} 1",
        "hacoord_leadership_transitions_total{node=\"a\",to=\"leader\"} 1",
        "hacoord_lease_renew_seconds_bucket{node=\"a\",le=\"+Inf\"}",
        "# TYPE hacoord_lease_renew_seconds histogram", "hacoord_nats_connected{node=\"a\"} 1"}) {
    EXPECT_NE(metrics->body.find(needle), std::string::npos) << needle << "\n" << metrics->body;
  }
  auto missing = test::httpGet(port, "/nope");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
}

TEST_F(ManagerTest, LeaveHandsOverAndJoinRestoresCandidacyOverNats) {
  auto a = start(config("a"));
  ASSERT_TRUE(eventually([&] { return a->node().isLeader(); }, 5000ms));
  auto b = start(config("b"));
  ASSERT_TRUE(eventually([&] { return b->node().leader() == "a"; }, 5000ms));

  ASSERT_TRUE(Manager::leave(config("cli"), "a").isOk());
  ASSERT_TRUE(eventually([&] { return b->node().isLeader(); }, 2000ms)) << "a did not hand over";
  // b took over in a handover a moment ago (well inside its 2 s cooldown): a plain demote is
  // refused (one handover per cooldown across the cluster); the operator's forced one goes below.
  const Status plain = Manager::demote(config("cli"), "");
  EXPECT_EQ(plain.code(), StatusCode::kFailedPrecondition) << plain.toString();
  EXPECT_NE(plain.message().find("took over in a handover"), std::string::npos) << plain.toString();
  EXPECT_FALSE(a->status().candidate);

  auto all = Manager::clusterStatus(config("cli"), 1500ms);
  ASSERT_TRUE(all.isOk()) << all.status().toString();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].node_id, "a");
  EXPECT_EQ((*all)[0].role, "follower");
  EXPECT_EQ((*all)[1].role, "leader");

  ControlOptions forced;
  forced.force = true;
  // a is not a candidate: after b hands over too, a must not take the lease.
  ASSERT_TRUE(Manager::demote(config("cli"), "", forced).isOk());
  ASSERT_TRUE(eventually([&] { return b->node().isLeader(); }, 3000ms)) << "b is the only candidate";
  EXPECT_FALSE(a->node().isLeader());

  ASSERT_TRUE(Manager::join(config("cli"), "a").isOk());
  ASSERT_TRUE(Manager::promote(config("cli"), "a", forced).isOk());
  ASSERT_TRUE(eventually([&] { return a->node().isLeader(); }, 2000ms));
  EXPECT_EQ(leaders({a.get(), b.get()}), 1);
}

// A plain promote reaches the leader through the promoted node: the leader's log names who asked,
// not only the node that passed it on.
TEST_F(ManagerTest, APromoteNamesItsRequesterInTheLeadersLog) {
  auto a = start(config("a"));
  ASSERT_TRUE(eventually([&] { return a->node().isLeader(); }, 5000ms));
  auto b = start(config("b"));
  ASSERT_TRUE(eventually([&] { return b->node().leader() == "a"; }, 5000ms));
  test::LogCapture control_log("control");
  // The client calls set the process's log level from their config (warn for "info"): keep info.
  Config cli = config("cli");
  cli.log_level = "debug";
  ControlOptions options;
  options.requester = "ops-script";
  ASSERT_TRUE(Manager::promote(cli, "b", options).isOk());
  ASSERT_TRUE(eventually([&] { return b->node().isLeader(); }, 2000ms));
  EXPECT_TRUE(control_log.contains("stepdown to b requested by 'ops-script via node:b'"))
      << control_log.text();
}

TEST_F(ManagerTest, FailingChecksKeepAFollowerOutAndMakeALeaderHandOverAfterFailAfter) {
  const std::string flag = test::makeTempDir("hacoord-mgr") + "/healthy";
  HealthCheckConfig check;
  check.name = "flag";
  check.type = HealthCheckConfig::Type::kCommand;
  check.command = "test -e " + flag;
  check.interval = 50ms;
  check.timeout = 50ms;
  check.rise = 1;
  check.fall = 1;

  Config ca = config("a");
  ca.health.checks = {check};  // a's check fails from the start: the flag file does not exist
  ca.health.fail_after = 500ms;
  auto a = start(ca);
  ASSERT_TRUE(eventually([&] { return !a->status().healthy; }, 3000ms));
  auto b = start(config("b"));
  ASSERT_TRUE(eventually([&] { return b->node().isLeader(); }, 5000ms));
  EXPECT_FALSE(a->node().isLeader()) << "an unhealthy node campaigned";

  // a becomes healthy, takes over by promote, then its check fails: it leads on through the
  // grace period, then hands over.
  {
    std::FILE* f = std::fopen(flag.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fclose(f);
  }
  ASSERT_TRUE(eventually([&] { return a->status().healthy; }, 3000ms));
  // Candidacy follows health a few thread hops later: until then a refuses the promote.
  ASSERT_TRUE(eventually([&] { return Manager::promote(config("cli"), "a").isOk(); }, 3000ms, 50ms));
  ASSERT_TRUE(eventually([&] { return a->node().isLeader(); }, 3000ms));
  const auto removed_at = std::chrono::steady_clock::now();
  std::remove(flag.c_str());
  ASSERT_TRUE(eventually([&] { return !a->status().healthy; }, 3000ms));
  ASSERT_TRUE(eventually([&] { return b->node().isLeader(); }, 5000ms)) << "a kept leading";
  // Unhealthy no sooner than the flag went, then failAfterMs (500) of grace.
  EXPECT_GE(std::chrono::steady_clock::now() - removed_at, 500ms) << "handed over before failAfterMs";
  EXPECT_FALSE(a->node().isLeader());
  test::removeTree(flag.substr(0, flag.rfind('/')));
}

TEST_F(ManagerTest, HealthOfANodeThatIsNotRunningIsDownAtOnce) {
  const auto t0 = std::chrono::steady_clock::now();
  auto h = Manager::health(config("cli"), "ghost", 5000ms);
  EXPECT_EQ(h.status().code(), StatusCode::kUnavailable) << h.status().toString();
  EXPECT_NE(h.status().message().find("down"), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2000ms) << "waited for the timeout";
}

}  // namespace
}  // namespace hacoord
