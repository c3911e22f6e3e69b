// hacoord::Mesh end to end: real nats-server (members bucket), real mutual TLS on 127.0.0.1,
// certificates from `hacoord certs` code; 3 and 5 nodes in this process.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "hacoord/mesh.h"
#include "mesh/certs.h"
#include "support/eventually.h"
#include "support/nats_server_fixture.h"

namespace hacoord {
namespace {

using namespace std::chrono_literals;
using test::NatsServer;

mesh::CallOptions within(Duration d) {
  mesh::CallOptions o;
  o.timeout = d;
  return o;
}

class MeshTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/hacoord-mesh-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_TRUE(mesh::initCa(dir_ + "/ca").isOk());
    server_ = std::make_unique<NatsServer>();
  }
  void TearDown() override {
    meshes_.clear();
    std::filesystem::remove_all(dir_);
  }

  Config configFor(const std::string& node, const std::string& division = "") {
    const std::string out = dir_ + "/" + node;
    if (!std::filesystem::exists(out + "/" + node + ".crt")) {
      mesh::IssueOptions io;
      io.cluster = "meshtest";
      io.node = node;
      auto fp = mesh::issueCert(dir_ + "/ca", out, io);
      EXPECT_TRUE(fp.isOk()) << fp.status().toString();
    }
    Config c;
    c.nats = test::testNatsConfig({server_->url()});
    c.state_dir = test::testStateDir();
    c.cluster_id = "meshtest";
    c.node_id = node;
    c.mesh.listen = "127.0.0.1:0";
    c.mesh.ca = out + "/ca.crt";
    c.mesh.cert = out + "/" + node + ".crt";
    c.mesh.key = out + "/" + node + ".key";
    c.mesh.division = division;
    c.mesh.ping_interval = 200ms;
    c.mesh.suspect_after = 600ms;
    c.mesh.dead_after = 1000ms;
    c.mesh.refresh = 1000ms;
    return c;
  }

  Mesh& start(const std::string& node, const std::string& division = "") {
    auto m = Mesh::create(configFor(node, division));
    EXPECT_TRUE(m.isOk()) << m.status().toString();
    auto& mesh = *m;
    EXPECT_TRUE(
        mesh->handle("echo", [node](const mesh::CallContext& ctx, std::string req,
                                    mesh::Reply reply) { reply(node + ":" + ctx.peer() + ":" + req); })
            .isOk());
    EXPECT_TRUE(mesh->start().isOk());
    meshes_[node] = std::move(mesh);
    return *meshes_[node];
  }

  bool allAlive(Duration timeout = 10s) {
    return test::eventually(
        [&] {
          for (auto& [a, ma] : meshes_) {
            for (auto& [b, mb] : meshes_) {
              if (a == b) continue;
              auto p = ma->peer(b);
              if (!p || p->state != mesh::PeerState::kAlive) return false;
            }
          }
          return true;
        },
        std::chrono::duration_cast<milliseconds>(timeout));
  }

  std::string dir_;
  std::unique_ptr<NatsServer> server_;
  std::map<std::string, std::unique_ptr<Mesh>> meshes_;
};

TEST_F(MeshTest, ThreeNodesConnectOverMutualTlsAndCallEachOther) {
  start("n1");
  start("n2");
  start("n3");
  ASSERT_TRUE(allAlive());
  for (auto& [a, ma] : meshes_) {
    for (auto& [b, mb] : meshes_) {
      if (a == b) continue;
      auto r = ma->callSync(b, "echo", "hi", within(2s));
      ASSERT_TRUE(r.isOk()) << a << "->" << b << ": " << r.status().toString();
      // The handler saw the caller's certificate identity.
      EXPECT_EQ(*r, b + ":" + a + ":hi");
    }
  }
  auto replies = meshes_["n1"]->allSync("echo", "x", within(2s));
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[0].peer, "n2");
  EXPECT_TRUE(replies[0].reply.isOk());
  EXPECT_EQ(replies[1].peer, "n3");
  auto any = meshes_["n2"]->anySync("echo", "y", within(2s));
  ASSERT_TRUE(any.reply.isOk()) << any.reply.status().toString();
  EXPECT_TRUE(any.peer == "n1" || any.peer == "n3");
  auto p = meshes_["n1"]->peer("n2");
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->connected);
  EXPECT_NE(p->address.find("127.0.0.1"), std::string::npos);
  EXPECT_GT(p->incarnation, 0u);
}

TEST_F(MeshTest, ErrorsKeepTheirCodeAndUnknownPeersFailFast) {
  Mesh& a = start("n1");
  Mesh& b = start("n2");
  ASSERT_TRUE(b.handle("fail", [](const mesh::CallContext&, std::string, mesh::Reply reply) {
                 reply(Status(StatusCode::kFailedPrecondition, "not the leader"));
               }).isOk());
  ASSERT_TRUE(allAlive());
  auto r = a.callSync("n2", "fail", "", within(2s));
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(r.status().message(), "not the leader");
  auto missing = a.callSync("n2", "nope", "", within(2s));
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  auto unknown = a.callSync("n9", "echo", "", within(2s));
  EXPECT_EQ(unknown.status().code(), StatusCode::kUnavailable);
  auto hang_start = std::chrono::steady_clock::now();
  ASSERT_TRUE(b.handle("hang", [](const mesh::CallContext&, std::string, mesh::Reply) {}).isOk());
  auto hung = a.callSync("n2", "hang", "", within(300ms));
  EXPECT_EQ(hung.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_LT(std::chrono::steady_clock::now() - hang_start, 2s);
}

TEST_F(MeshTest, AStoppedPeerIsDepartedAndARestartedOneComesBackWithANewIncarnation) {
  start("n1");
  start("n2");
  start("n3");
  ASSERT_TRUE(allAlive());
  const auto before = meshes_["n1"]->peer("n3")->incarnation;
  meshes_["n3"]->stop();
  ASSERT_TRUE(test::eventually(
      [&] {
        auto p = meshes_["n1"]->peer("n3");
        return p && p->state == mesh::PeerState::kDead && p->reason == mesh::DeadReason::kDeparted;
      },
      5s));
  // all() does not wait for it.
  auto replies = meshes_["n1"]->allSync("echo", "x", within(2s));
  ASSERT_EQ(replies.size(), 1u);
  meshes_.erase("n3");
  start("n3");
  ASSERT_TRUE(allAlive());
  EXPECT_GT(meshes_["n1"]->peer("n3")->incarnation, before);
  EXPECT_TRUE(meshes_["n1"]->callSync("n3", "echo", "back", within(2s)).isOk());
}

TEST_F(MeshTest, FiveNodesWithDivisionsAndMetadata) {
  start("n1", "dc1/r1");
  start("n2", "dc1/r1");
  start("n3", "dc1/r2");
  start("n4", "dc1/r20");
  start("n5", "dc2");
  ASSERT_TRUE(allAlive(15s));
  mesh::PeerFilter f;
  f.division = "dc1/r2";
  auto replies = meshes_["n1"]->allSync("echo", "x", within(2s), f);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].peer, "n3");
  f.division = "dc1";
  EXPECT_EQ(meshes_["n5"]->allSync("echo", "x", within(2s), f).size(), 4u);
  ASSERT_TRUE(meshes_["n2"]->setMeta("role", "replica").isOk());
  EXPECT_TRUE(test::eventually(
      [&] {
        auto p = meshes_["n4"]->peer("n2");
        return p && p->meta.count("role") != 0 && p->meta.at("role") == "replica";
      },
      5s));
  EXPECT_GE(meshes_["n5"]->broadcast("echo", "all of you"), 4u);
}

TEST_F(MeshTest, ALargeMessageCrossesFragmentedAndAnOversizeOneIsRefusedNamingBothSizes) {
  Mesh& a = start("n1");
  start("n2");
  ASSERT_TRUE(allAlive());
  std::string big(5 * 1024 * 1024, 'z');
  auto r = a.callSync("n2", "echo", big, within(10s));
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->size(), big.size() + 6);  // "n2:n1:" prefix
  auto over = a.callSync("n2", "echo", std::string(17 * 1024 * 1024, 'q'), within(5s));
  EXPECT_EQ(over.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(over.status().message().find("16777216"), std::string::npos) << over.status().message();
}

// DESIGN §6.2: a small RPC never waits behind bulk data. A 4 MiB request and then a 64 B one on the
// same connection: the small one overtakes the big one's fragments (large messages go on the
// stream lane) and reaches n2 first. n2 serves one at a time, in arrival order, so the order its
// handler sees is the order they arrived; on one lane the small one would wait for all 64
// fragments of the big one.
TEST_F(MeshTest, ASmallRequestOvertakesALargeOneOnTheSameConnection) {
  Mesh& n1 = start("n1");
  Mesh& n2 = start("n2");
  ASSERT_TRUE(allAlive());
  std::mutex mu;
  std::vector<std::size_t> arrived;
  mesh::HandlerOptions one_at_a_time;
  one_at_a_time.max_concurrency = 1;
  ASSERT_TRUE(n2.handle(
                    "mark",
                    [&](const mesh::CallContext&, std::string request, mesh::Reply reply) {
                      {
                        std::lock_guard lock(mu);
                        arrived.push_back(request.size());
                      }
                      reply(std::string());
                    },
                    one_at_a_time)
                  .isOk());
  std::atomic<int> done{0};
  auto count = [&](Result<std::string> r) {
    EXPECT_TRUE(r.isOk()) << r.status().toString();
    ++done;
  };
  n1.call("n2", "mark", std::string(4 * 1024 * 1024, 'b'), within(10s), count);
  n1.call("n2", "mark", std::string(64, 's'), within(10s), count);
  ASSERT_TRUE(test::eventually([&] { return done.load() == 2; }, 15000ms));
  std::lock_guard lock(mu);
  EXPECT_EQ(arrived, (std::vector<std::size_t>{64, 4 * 1024 * 1024}));
}

// A node's own certificate must name it: another node's (or another cluster's) is refused at
// create and at reload, saying whose it is, instead of every peer refusing the node later.
TEST_F(MeshTest, AnotherNodesCertificateIsRefusedAtCreateAndAtReload) {
  Config n1 = configFor("n1");
  configFor("n2");  // issues n2's certificate
  Config wrong = n1;
  wrong.mesh.cert = dir_ + "/n2/n2.crt";
  wrong.mesh.key = dir_ + "/n2/n2.key";
  auto refused = Mesh::create(wrong);
  ASSERT_FALSE(refused.isOk());
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("is node 'n2''s certificate, not this node's ('n1')"),
            std::string::npos)
      << refused.status().toString();

  Mesh& mesh = start("n1");
  std::filesystem::copy_file(dir_ + "/n2/n2.crt", n1.mesh.cert,
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(dir_ + "/n2/n2.key", n1.mesh.key,
                             std::filesystem::copy_options::overwrite_existing);
  const Status reload = mesh.reloadCredentials();
  EXPECT_EQ(reload.code(), StatusCode::kInvalidArgument) << reload.toString();
  EXPECT_NE(reload.message().find("not this node's"), std::string::npos) << reload.toString();
}

// Certificate rotation (SIGHUP in the daemon): n1's files are replaced in place and reloaded. A
// key that does not match is refused and changes nothing; the open link survives the first
// rotation (the record lists the new certificate and the one it replaced); after a second one,
// which drops the original from the record, a restarted n2 still connects to n1: n1 presents a
// new certificate, not the one it started with.
TEST_F(MeshTest, ACertificateRotatedInPlaceIsUsedForNewConnectionsAndKeepsOpenOnes) {
  Mesh& n1 = start("n1");
  start("n2");
  ASSERT_TRUE(allAlive());
  const std::string cert = dir_ + "/n1/n1.crt";
  const std::string key = dir_ + "/n1/n1.key";
  int issued = 0;
  auto reissue = [&](bool with_key) {
    const std::string out = dir_ + "/n1-new" + std::to_string(++issued);
    mesh::IssueOptions io;
    io.cluster = "meshtest";
    io.node = "n1";
    auto fp = mesh::issueCert(dir_ + "/ca", out, io);
    ASSERT_TRUE(fp.isOk()) << fp.status().toString();
    std::filesystem::rename(out + "/n1.crt", cert);
    if (with_key) std::filesystem::rename(out + "/n1.key", key);
  };
  std::atomic<int> n1_lost{0};
  meshes_["n2"]->onPeerEvent([&](const mesh::PeerInfo& p) {
    if (p.id == "n1" && p.state != mesh::PeerState::kAlive) ++n1_lost;
  });

  // A new certificate without its key: refused, nothing changes.
  const auto original = mesh::fingerprintOfPemFile(cert);
  ASSERT_TRUE(original.isOk());
  reissue(false);
  const Status mismatched = n1.reloadCredentials();
  EXPECT_EQ(mismatched.code(), StatusCode::kInvalidArgument) << mismatched.toString();
  EXPECT_NE(mismatched.message().find(key), std::string::npos) << mismatched.toString();

  reissue(true);
  const Status first = n1.reloadCredentials();
  ASSERT_TRUE(first.isOk()) << first.toString();
  EXPECT_FALSE(test::eventually([&] { return n1_lost.load() > 0; }, 2500ms))
      << "n2 dropped the link n1 made with its previous certificate";
  auto r = n1.callSync("n2", "echo", "after rotation", within(2s));
  ASSERT_TRUE(r.isOk()) << r.status().toString();

  reissue(true);
  ASSERT_TRUE(n1.reloadCredentials().isOk());
  meshes_.erase("n2");
  start("n2");
  ASSERT_TRUE(allAlive()) << "n2 refused n1's rotated certificate";
  r = meshes_["n2"]->callSync("n1", "echo", "new link", within(2s));
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_NE(*mesh::fingerprintOfPemFile(cert), *original);
}

}  // namespace
}  // namespace hacoord
