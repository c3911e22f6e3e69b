// The daemon with a mesh section: three Managers in this process (real nats-server, real mutual TLS
// on 127.0.0.1 with certificates from `hacoord certs` code), their status, /metrics and
// `hacoord peers`; a departure seen by the others; start-up errors that name the file.
#include <gtest/gtest.h>

#include <csignal>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "hacoord/manager.h"
#include "hacoord/mesh.h"
#include "mesh/certs.h"
#include "support/child_process.h"
#include "support/eventually.h"
#include "support/nats_server_fixture.h"

namespace hacoord {
namespace {

using namespace std::chrono_literals;
using test::NatsServer;

std::string describe(const test::RunResult& r) {
  return "exit " + std::to_string(r.exit_code) + (r.timed_out ? " (timed out)" : "") + "\nstdout:\n" + r.out +
         "\nstderr:\n" + r.err;
}

// The first line of `text` that starts with `prefix`, "" when none does.
std::string lineStartingWith(const std::string& text, const std::string& prefix) {
  std::size_t start = 0;
  while (start < text.size()) {
    const std::size_t end = std::min(text.find('\n', start), text.size());
    if (text.compare(start, prefix.size(), prefix) == 0) return text.substr(start, end - start);
    start = end + 1;
  }
  return "";
}

std::vector<std::string> linesOf(const std::string& text) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    const std::size_t end = std::min(text.find('\n', start), text.size());
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

test::RunResult hacoordCli(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {HACOORD_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  return test::runProcess(argv, 15000ms);
}

class MeshDaemonTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new NatsServer(); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    dir_ = test::makeTempDir("hacoord-mesh-daemon");
    ASSERT_TRUE(mesh::initCa(dir_ + "/ca").isOk());
  }
  void TearDown() override {
    managers_.clear();
    test::removeTree(dir_);
  }

  std::string clusterId() const {
    return (std::string("meshd-") + ::testing::UnitTest::GetInstance()->current_test_info()->name())
        .substr(0, 64);
  }

  // Writes the config file of `node` (with a mesh section unless `mesh` is false) and returns its
  // path; the certificate is issued on first use. `cert`: another certificate path than the issued one.
  std::string writeConfig(const std::string& node, bool with_mesh = true, const std::string& cert = "") {
    const std::string out = dir_ + "/" + node;
    if (with_mesh && !std::filesystem::exists(out + "/" + node + ".crt")) {
      mesh::IssueOptions io;
      io.cluster = clusterId();
      io.node = node;
      auto fp = mesh::issueCert(dir_ + "/ca", out, io);
      EXPECT_TRUE(fp.isOk()) << fp.status().toString();
    }
    std::string text = R"({"clusterId":")" + clusterId() + R"(","nodeId":")" + node + R"(","stateDir":")" +
                       test::testStateDir() + R"(","nats":{"servers":[")" + server_->url() +
                       R"("],"connectTimeoutMs":1000,"requestTimeoutMs":1000},)"
                       R"("election":{"leaseTtlMs":2000,"renewIntervalMs":400},)"
                       R"("http":{"listen":"127.0.0.1:0"},"log":{"level":"warn"})";
    if (with_mesh) {
      text += R"(,"mesh":{"listen":"127.0.0.1:0","ca":")" + out + R"(/ca.crt","cert":")" +
              (cert.empty() ? out + "/" + node + ".crt" : cert) + R"(","key":")" + out + "/" + node +
              R"(.key","division":"dc1/r)" + node.substr(1) +
              R"(","pingIntervalMs":200,"suspectAfterMs":600,"deadAfterMs":1000,"refreshMs":1000})";
    }
    text += "}";
    const std::string path = dir_ + "/" + node + ".json";
    test::writeTextFile(path, text);
    return path;
  }

  Manager& start(const std::string& node) {
    auto config = loadConfigFile(writeConfig(node));
    EXPECT_TRUE(config.isOk()) << config.status().toString();
    auto m = std::make_unique<Manager>(*config);
    Status s = m->start();
    EXPECT_TRUE(s.isOk()) << s.toString();
    managers_[node] = std::move(m);
    return *managers_[node];
  }

  static const PeerStatus* findPeer(const NodeStatus& s, const std::string& id) {
    for (const PeerStatus& p : s.peers) {
      if (p.id == id) return &p;
    }
    return nullptr;
  }

  static int alivePeers(const NodeStatus& s) {
    int n = 0;
    for (const PeerStatus& p : s.peers) n += p.state == "alive" ? 1 : 0;
    return n;
  }

  static NatsServer* server_;
  std::string dir_;
  std::map<std::string, std::unique_ptr<Manager>> managers_;
};

NatsServer* MeshDaemonTest::server_ = nullptr;

TEST_F(MeshDaemonTest, ThreeDaemonsSeeEachOtherInStatusMetricsAndPeersAndADeparture) {
  for (const char* n : {"n1", "n2", "n3"}) start(n);
  ASSERT_FALSE(HasFailure());
  for (auto& [id, m] : managers_) ASSERT_NE(m->mesh(), nullptr) << id;

  const bool all_alive = test::eventually(
      [&] {
        for (auto& [id, m] : managers_) {
          if (alivePeers(m->status()) != 2) return false;
        }
        return true;
      },
      15000ms);
  ASSERT_TRUE(all_alive) << "n1: " << managers_["n1"]->status().toJson()
                         << "\nn2: " << managers_["n2"]->status().toJson()
                         << "\nn3: " << managers_["n3"]->status().toJson();

  // The status carries what the mesh knows of each peer.
  const NodeStatus s1 = managers_["n1"]->status();
  ASSERT_EQ(s1.peers.size(), 2u) << s1.toJson();
  const PeerStatus* n2 = findPeer(s1, "n2");
  ASSERT_NE(n2, nullptr) << s1.toJson();
  EXPECT_EQ(n2->reason, "");
  EXPECT_EQ(n2->division, "dc1/r2");
  EXPECT_GT(n2->incarnation, 0u);
  EXPECT_FALSE(n2->address.empty()) << s1.toJson();
  // And survives the status JSON the CLI decodes.
  auto decoded = NodeStatus::fromJson(s1.toJson());
  ASSERT_TRUE(decoded.isOk()) << decoded.status().toString();
  EXPECT_EQ(decoded->peers, s1.peers);

  // The built-in method every daemon serves.
  mesh::CallOptions within2s;
  within2s.timeout = 2s;
  auto echoed = managers_["n1"]->mesh()->callSync("n3", "sys.ping", "hello n3", within2s);
  ASSERT_TRUE(echoed.isOk()) << echoed.status().toString();
  EXPECT_EQ(*echoed, "hello n3");

  // The election's epoch rides on the mesh's frames: a handler sees the caller's.
  ASSERT_TRUE(managers_["n3"]
                  ->mesh()
                  ->handle("test.epoch", [](const mesh::CallContext& ctx, std::string,
                                            mesh::Reply reply) { reply(std::to_string(ctx.senderEpoch())); })
                  .isOk());
  ASSERT_TRUE(test::eventually([&] { return managers_["n1"]->status().epoch > 0; }, 15000ms))
      << managers_["n1"]->status().toJson();
  std::string seen;
  const bool carried = test::eventually(
      [&] {
        auto r = managers_["n1"]->mesh()->callSync("n3", "test.epoch", "", within2s);
        seen = r.isOk() ? *r : r.status().toString();
        return seen == std::to_string(managers_["n1"]->status().epoch);
      },
      5000ms);
  EXPECT_TRUE(carried) << "n3's handler saw epoch " << seen << " from n1, whose status says "
                       << managers_["n1"]->status().toJson();

  // `hacoord peers` asks n1 over NATS.
  const std::string n1_config = dir_ + "/n1.json";
  const test::RunResult peers = hacoordCli({"peers", "--config", n1_config});
  ASSERT_EQ(peers.exit_code, 0) << describe(peers);
  for (const char* id : {"n2", "n3"}) {
    const std::string line = lineStartingWith(peers.out, std::string(id) + " ");
    EXPECT_NE(line.find(" alive "), std::string::npos) << id << " is not listed alive:\n" << describe(peers);
    EXPECT_NE(line.find(" dc1/r" + std::string(id).substr(1) + " "), std::string::npos)
        << id << "'s division is not listed:\n"
        << describe(peers);
  }
  EXPECT_EQ(peers.out.find("n1 "), std::string::npos) << "a node is not its own peer\n" << describe(peers);
  const test::RunResult peers_json = hacoordCli({"peers", "--config", n1_config, "--json"});
  ASSERT_EQ(peers_json.exit_code, 0) << describe(peers_json);
  EXPECT_NE(peers_json.out.find(R"("id":"n2")"), std::string::npos) << describe(peers_json);
  EXPECT_NE(peers_json.out.find(R"("state":"alive")"), std::string::npos) << describe(peers_json);

  // `hacoord ping` asks n1's daemon to ping n2 over the mesh: one line per round trip, a summary.
  const test::RunResult ping = hacoordCli({"ping", "--config", n1_config, "n2", "--count", "3"});
  ASSERT_EQ(ping.exit_code, 0) << describe(ping);
  int rtt_lines = 0;
  const std::regex rtt_line(R"(n1 -> n2: [0-9]+\.[0-9]{2} ms)");
  const std::regex summary(R"(3 of 3 answered: min [0-9.]+ / avg [0-9.]+ / p50 [0-9.]+ / max [0-9.]+ ms)");
  bool summarised = false;
  for (const std::string& line : linesOf(ping.out)) {
    rtt_lines += std::regex_match(line, rtt_line) ? 1 : 0;
    summarised = summarised || std::regex_match(line, summary);
  }
  EXPECT_EQ(rtt_lines, 3) << describe(ping);
  EXPECT_TRUE(summarised) << describe(ping);
  const test::RunResult ping_json = hacoordCli({"ping", "--config", n1_config, "n3", "--count=2", "--json"});
  ASSERT_EQ(ping_json.exit_code, 0) << describe(ping_json);
  EXPECT_TRUE(std::regex_search(ping_json.out, std::regex(R"("rttUs":\[[0-9]+,[0-9]+\])")))
      << describe(ping_json);
  EXPECT_NE(ping_json.out.find(R"("errors":[])"), std::string::npos) << describe(ping_json);
  // A node n1's mesh never saw: refused at once, naming it.
  const test::RunResult unknown = hacoordCli({"ping", "--config", n1_config, "n9"});
  EXPECT_EQ(unknown.exit_code, 1) << describe(unknown);
  ASSERT_EQ(unknown.errLines().size(), 1u) << describe(unknown);
  EXPECT_NE(unknown.errLines()[0].find("knows no peer n9"), std::string::npos) << describe(unknown);
  EXPECT_EQ(unknown.out, "") << describe(unknown);
  // A daemon that is not running: nobody answers on its subject.
  const test::RunResult nobody = hacoordCli({"ping", "--config", writeConfig("n4"), "n1"});
  EXPECT_EQ(nobody.exit_code, 1) << describe(nobody);
  ASSERT_EQ(nobody.errLines().size(), 1u) << describe(nobody);
  EXPECT_NE(nobody.errLines()[0].find("node n4 is down"), std::string::npos) << describe(nobody);

  // `hacoord status` lists every node's peers under the nodes table; --json carries them too.
  const test::RunResult status = hacoordCli({"status", "--config", n1_config});
  ASSERT_EQ(status.exit_code, 0) << describe(status);
  for (const char* id : {"n1", "n2", "n3"}) {
    ASSERT_NE(status.out.find(std::string("mesh peers of ") + id + "\n"), std::string::npos)
        << id << "\n"
        << describe(status);
  }
  const std::string n1_section = status.out.substr(status.out.find("mesh peers of n1\n"));
  EXPECT_NE(lineStartingWith(n1_section, "  n2 ").find(" alive "), std::string::npos) << describe(status);
  const test::RunResult status_json = hacoordCli({"status", "--config", n1_config, "--json"});
  ASSERT_EQ(status_json.exit_code, 0) << describe(status_json);
  EXPECT_NE(status_json.out.find(R"("peers":[{)"), std::string::npos) << describe(status_json);

  // /metrics of n1 has the mesh series (n1 sent one call, n3 served it). /metrics is served on hc-io
  // from a snapshot the daemon refreshes every ping interval: the counters show up within one.
  const int port = managers_["n1"]->httpPort();
  ASSERT_GT(port, 0);
  std::string body;
  const bool counted = test::eventually(
      [&] {
        auto metrics = test::httpGet(port, "/metrics");
        body = metrics ? metrics->body : "(no reply)";
        return metrics && metrics->status == 200 &&
               body.find("hacoord_mesh_calls_sent_total{node=\"n1\"} 0\n") == std::string::npos;
      },
      5000ms);
  EXPECT_TRUE(counted) << body;
  for (const char* needle :
       {"# TYPE hacoord_mesh_peers gauge", "hacoord_mesh_peers{node=\"n1\",state=\"alive\"} 2\n",
        "hacoord_mesh_peers{node=\"n1\",state=\"dead\"} 0\n",
        "hacoord_mesh_peer_rtt_seconds{node=\"n1\",peer=\"n2\"} ",
        "hacoord_mesh_peer_rtt_seconds{node=\"n1\",peer=\"n3\"} ",
        "hacoord_mesh_calls_sent_total{node=\"n1\"} ", "hacoord_mesh_calls_failed_total{node=\"n1\"} 0\n",
        "hacoord_mesh_calls_timed_out_total{node=\"n1\"} 0\n",
        "hacoord_mesh_requests_served_total{node=\"n1\"} ", "# TYPE hacoord_mesh_tls_refused_total counter",
        "hacoord_mesh_links_refused_identity_total{node=\"n1\"} 0\n"}) {
    EXPECT_NE(body.find(needle), std::string::npos) << needle << "\n" << body;
  }
  std::string n3_body;
  const bool served = test::eventually(
      [&] {
        auto metrics = test::httpGet(managers_["n3"]->httpPort(), "/metrics");
        n3_body = metrics ? metrics->body : "(no reply)";
        return metrics &&
               n3_body.find("hacoord_mesh_requests_served_total{node=\"n3\"} ") != std::string::npos &&
               n3_body.find("hacoord_mesh_requests_served_total{node=\"n3\"} 0\n") == std::string::npos;
      },
      5000ms);
  EXPECT_TRUE(served) << n3_body;

  // A planned stop: the others see n3 depart (GOAWAY, record deleted), not a partition.
  managers_["n3"]->stop();
  const bool departed = test::eventually(
      [&] {
        for (const char* id : {"n1", "n2"}) {
          const NodeStatus s = managers_[id]->status();
          const PeerStatus* p = findPeer(s, "n3");
          if (p == nullptr || p->state != "dead" || p->reason != "departed") return false;
        }
        return true;
      },
      10000ms);
  EXPECT_TRUE(departed) << "n1: " << managers_["n1"]->status().toJson()
                        << "\nn2: " << managers_["n2"]->status().toJson();
  const NodeStatus n1_now = managers_["n1"]->status();  // findPeer points into it: keep it alive
  const PeerStatus* still = findPeer(n1_now, "n2");
  ASSERT_NE(still, nullptr);
  EXPECT_EQ(still->state, "alive");
  const test::RunResult after = hacoordCli({"peers", "--config", n1_config});
  EXPECT_EQ(after.exit_code, 0) << describe(after);
  EXPECT_NE(lineStartingWith(after.out, "n3 ").find(" dead/departed "), std::string::npos) << describe(after);

  // Pinging the departed peer: refused with the reason n1 knows.
  const test::RunResult dead = hacoordCli({"ping", "--config", n1_config, "n3"});
  EXPECT_EQ(dead.exit_code, 1) << describe(dead);
  ASSERT_EQ(dead.errLines().size(), 1u) << describe(dead);
  EXPECT_NE(dead.errLines()[0].find("peer n3 is dead (departed)"), std::string::npos) << describe(dead);

  // The stopped node itself does not answer: one clear line, exit 1.
  const test::RunResult gone = hacoordCli({"peers", "--config", dir_ + "/n3.json"});
  EXPECT_EQ(gone.exit_code, 1) << describe(gone);
  ASSERT_EQ(gone.errLines().size(), 1u) << describe(gone);
  EXPECT_NE(gone.errLines()[0].find("n3 did not answer"), std::string::npos) << describe(gone);
}

// examples/mesh_rpc, one process per node: each answers the other's greeting over the mesh, names
// the caller by its certificate, and leaves cleanly after its rounds.
TEST_F(MeshDaemonTest, TheMeshRpcExampleGreetsAcrossTwoProcesses) {
  const std::string c1 = writeConfig("n1");
  const std::string c2 = writeConfig("n2");
  test::ChildProcess p1({HACOORD_EXAMPLE_MESH_RPC, c1, "30"});
  test::ChildProcess p2({HACOORD_EXAMPLE_MESH_RPC, c2, "30"});
  auto greeted = [](const std::string& from, const std::string& to) {
    return [=](const std::string& line) {
      return line == "all: " + to + " -> hello " + from + " (asked by " + from + "), from " + to;
    };
  };
  EXPECT_TRUE(p1.waitForLine(greeted("n1", "n2"), 20000ms)) << p1.stdoutText() << p1.stderrText();
  EXPECT_TRUE(p2.waitForLine(greeted("n2", "n1"), 20000ms)) << p2.stdoutText() << p2.stderrText();
  EXPECT_TRUE(
      p1.waitForLine([](const std::string& l) { return l.rfind("any: n2 -> hello n1", 0) == 0; }, 5000ms))
      << p1.stdoutText();
  p2.signal(SIGTERM);  // leaves cleanly: n1 sees it depart
  EXPECT_TRUE(p1.waitForLine([](const std::string& l) { return l == "peer n2 is dead"; }, 5000ms))
      << p1.stdoutText();
}

// SIGHUP's reload reads the mesh certificate again: a key that does not match is an error naming
// the file (the running certificate stays), a matching pair is taken and the mesh carries on.
TEST_F(MeshDaemonTest, AReloadRotatesTheMeshCertificate) {
  Manager& n1 = start("n1");
  start("n2");
  ASSERT_TRUE(test::eventually([&] { return alivePeers(managers_["n2"]->status()) == 1; }, 15000ms));
  auto config = loadConfigFile(dir_ + "/n1.json");
  ASSERT_TRUE(config.isOk()) << config.status().toString();
  mesh::IssueOptions io;
  io.cluster = clusterId();
  io.node = "n1";
  ASSERT_TRUE(mesh::issueCert(dir_ + "/ca", dir_ + "/n1-rotated", io).isOk());
  std::filesystem::rename(dir_ + "/n1-rotated/n1.crt", config->mesh.cert);
  const Status mismatched = n1.reload(*config);
  EXPECT_EQ(mismatched.code(), StatusCode::kInvalidArgument) << mismatched.toString();
  EXPECT_NE(mismatched.message().find(config->mesh.key), std::string::npos) << mismatched.toString();
  std::filesystem::rename(dir_ + "/n1-rotated/n1.key", config->mesh.key);
  const Status rotated = n1.reload(*config);
  EXPECT_TRUE(rotated.isOk()) << rotated.toString();
  mesh::CallOptions within2s;
  within2s.timeout = 2s;
  auto echoed = n1.mesh()->callSync("n2", "sys.ping", "after rotation", within2s);
  ASSERT_TRUE(echoed.isOk()) << echoed.status().toString();
}

TEST_F(MeshDaemonTest, WithoutAMeshSectionThereIsNoMeshAndPeersSaysSo) {
  auto config = loadConfigFile(writeConfig("n1", false));
  ASSERT_TRUE(config.isOk()) << config.status().toString();
  Manager m(*config);
  ASSERT_TRUE(m.start().isOk());
  EXPECT_EQ(m.mesh(), nullptr);
  EXPECT_TRUE(m.status().peers.empty());
  EXPECT_EQ(m.status().toJson().find("peers"), std::string::npos);
  auto metrics = test::httpGet(m.httpPort(), "/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("hacoord_leader{node=\"n1\"}"), std::string::npos) << metrics->body;
  EXPECT_EQ(metrics->body.find("hacoord_mesh_"), std::string::npos) << metrics->body;

  const test::RunResult r = hacoordCli({"peers", "--config", dir_ + "/n1.json"});
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  ASSERT_EQ(r.errLines().size(), 1u) << describe(r);
  EXPECT_NE(r.errLines()[0].find("has no mesh"), std::string::npos) << describe(r);

  // The daemon itself says it has no mesh (the CLI does not guess from its copy of the config).
  const test::RunResult ping = hacoordCli({"ping", "--config", dir_ + "/n1.json", "n2"});
  EXPECT_EQ(ping.exit_code, 1) << describe(ping);
  ASSERT_EQ(ping.errLines().size(), 1u) << describe(ping);
  EXPECT_NE(ping.errLines()[0].find("node n1 has no mesh"), std::string::npos) << describe(ping);

  // Usage errors: exit 2, one line naming what is wrong, nothing asked of the daemon.
  const test::RunResult zero = hacoordCli({"ping", "--config", dir_ + "/n1.json", "n2", "--count", "0"});
  EXPECT_EQ(zero.exit_code, 2) << describe(zero);
  ASSERT_EQ(zero.errLines().size(), 1u) << describe(zero);
  EXPECT_NE(zero.errLines()[0].find("--count 0 is not a number in 1..100"), std::string::npos)
      << describe(zero);
  const test::RunResult no_node = hacoordCli({"ping", "--config", dir_ + "/n1.json"});
  EXPECT_EQ(no_node.exit_code, 2) << describe(no_node);
  ASSERT_EQ(no_node.errLines().size(), 1u) << describe(no_node);
  EXPECT_NE(no_node.errLines()[0].find("exactly one NODE"), std::string::npos) << describe(no_node);
}

TEST_F(MeshDaemonTest, StartFailsNamingAMissingCertificateOrABusyAddress) {
  const std::string missing = dir_ + "/nowhere/n1.crt";
  auto config = loadConfigFile(writeConfig("n1", true, missing));
  ASSERT_TRUE(config.isOk()) << config.status().toString();
  Manager bad(*config);
  Status s = bad.start();
  ASSERT_FALSE(s.isOk());
  EXPECT_NE(s.message().find(missing), std::string::npos) << s.toString();
  EXPECT_EQ(bad.mesh(), nullptr);
  bad.stop();

  // A second node on the first one's mesh address.
  Manager& n2 = start("n2");
  ASSERT_NE(n2.mesh(), nullptr);
  const std::string busy = n2.mesh()->listenAddress();
  auto c3 = loadConfigFile(writeConfig("n3"));
  ASSERT_TRUE(c3.isOk()) << c3.status().toString();
  c3->mesh.listen = busy;
  Manager n3(*c3);
  Status s3 = n3.start();
  ASSERT_FALSE(s3.isOk());
  EXPECT_NE(s3.message().find(busy), std::string::npos) << s3.toString();
  n3.stop();
}

}  // namespace
}  // namespace hacoord
