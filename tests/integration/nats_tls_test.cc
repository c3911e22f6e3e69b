// NatsConnection over mutual TLS against a real nats-server with --tlsverify and openssl-made certificates.
#include <chrono>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "support/runtime_scheduler.h"
#include "nats/nats_connection.h"
#include "nats/nats_control.h"
#include "nats/nats_lease_store.h"
#include "support/nats_server_fixture.h"

namespace hacoord {
namespace {

using namespace std::chrono_literals;

class NatsTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = test::makeTempDir("hacoord-tls");
    certs_ = test::makeTestCerts(dir_);
  }
  static void TearDownTestSuite() { test::removeTree(dir_); }

  void SetUp() override {
    test::NatsServerOptions o;
    o.tls = certs_;
    o.tls_verify = true;
    server_ = std::make_unique<test::NatsServer>(o);
  }

  NatsConfig config() const {
    NatsConfig c;
    c.servers = {server_->url()};
    c.connect_timeout = 2000ms;
    return c;
  }

  static inline std::string dir_;
  static inline test::TlsMaterial certs_;
  std::unique_ptr<test::NatsServer> server_;
};

TEST_F(NatsTlsTest, MutualTlsConnectsAndCarriesKvAndRequests) {
  NatsConfig c = config();
  c.tls.ca = certs_.ca;
  c.tls.cert = certs_.client_cert;
  c.tls.key = certs_.client_key;
  auto conn = NatsConnection::connect(c, "mtls");
  ASSERT_TRUE(conn.isOk()) << conn.status().toString();
  EXPECT_TRUE((*conn)->connected());

  test::RuntimeScheduler scheduler;
  auto store = NatsLeaseStore::open(**conn, "HACOORD_tls", 1, scheduler);
  ASSERT_TRUE(store.isOk()) << store.status().toString();
  auto snap = readLeaseOnce(**conn, "HACOORD_tls");
  ASSERT_TRUE(snap.isOk()) << snap.status().toString();
  EXPECT_EQ(snap->entry.revision, 0u);

  auto responder =
      NatsResponder::subscribe(**conn, "tls.echo", [](std::string b, NatsResponder::ReplyFn r) { r(b); });
  ASSERT_TRUE(responder.isOk());
  auto reply = natsRequest(**conn, "tls.echo", "secret", 2000ms);
  ASSERT_TRUE(reply.isOk()) << reply.status().toString();
  EXPECT_EQ(*reply, "secret");
}

TEST_F(NatsTlsTest, WithoutAClientCertificateTheConnectFailsClearly) {
  NatsConfig c = config();
  c.tls.ca = certs_.ca;
  auto conn = NatsConnection::connect(c, "no-client-cert");
  ASSERT_FALSE(conn.isOk());
  EXPECT_EQ(conn.status().code(), StatusCode::kUnavailable);
  const std::string& msg = conn.status().message();
  EXPECT_NE(msg.find("cannot connect to NATS at " + server_->url()), std::string::npos) << msg;
  EXPECT_NE(msg.find("certificate"), std::string::npos) << msg;
}

TEST_F(NatsTlsTest, WithoutTheCaTheServerIsNotTrusted) {
  NatsConfig c = config();
  c.tls.cert = certs_.client_cert;
  c.tls.key = certs_.client_key;
  auto conn = NatsConnection::connect(c, "no-ca");
  ASSERT_FALSE(conn.isOk());
  EXPECT_EQ(conn.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(conn.status().message().find("SSL"), std::string::npos) << conn.status().message();
}

TEST_F(NatsTlsTest, PlainClientAgainstATlsServerFailsClearly) {
  auto conn = NatsConnection::connect(config(), "plain");
  ASSERT_FALSE(conn.isOk());
  EXPECT_EQ(conn.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(conn.status().message().find(server_->url()), std::string::npos);
}

TEST_F(NatsTlsTest, AKeyFileThatIsMissingIsInvalidArgument) {
  NatsConfig c = config();
  c.tls.ca = certs_.ca;
  c.tls.cert = certs_.client_cert;
  c.tls.key = dir_ + "/missing.key";
  auto conn = NatsConnection::connect(c, "bad-key");
  ASSERT_FALSE(conn.isOk());
  EXPECT_EQ(conn.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(conn.status().message().find("missing.key"), std::string::npos) << conn.status().message();
}

}  // namespace
}  // namespace hacoord
