// TlsTransport over real TLS on 127.0.0.1: identity, refusals by reason, frame limits, lanes, close.
#include "mesh/tls_transport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "core/runtime.h"
#include "mesh/certs.h"
#include "support/eventually.h"
#include "support/nats_server_fixture.h"

namespace hacoord::mesh {
namespace {

using namespace std::chrono_literals;

constexpr auto kWait = 10s;
const std::string kCluster = "c1";
const std::string kAlpnWire = "\x09hacoord/1";

// What one link delivered, in order ("m" entries and one "closed" at the end).
struct Recorder {
  std::mutex mu;
  std::vector<Message> messages;
  std::vector<Status> closes;
  std::vector<std::string> order;  // "m:<index>" or "closed"

  std::size_t messageCount() {
    std::lock_guard lock(mu);
    return messages.size();
  }
  std::size_t closeCount() {
    std::lock_guard lock(mu);
    return closes.size();
  }
};

LinkEvents recordTo(const std::shared_ptr<Recorder>& r) {
  LinkEvents e;
  e.on_message = [r](Message m) {
    std::lock_guard lock(r->mu);
    r->order.push_back("m:" + std::to_string(r->messages.size()));
    r->messages.push_back(std::move(m));
  };
  e.on_closed = [r](const Status& s) {
    std::lock_guard lock(r->mu);
    r->order.push_back("closed");
    r->closes.push_back(s);
  };
  return e;
}

// The inbound links a transport accepted, each started with a Recorder.
struct Accepted {
  std::mutex mu;
  std::vector<std::shared_ptr<Link>> links;
  std::vector<std::shared_ptr<Recorder>> recorders;

  std::size_t count() {
    std::lock_guard lock(mu);
    return links.size();
  }
  std::shared_ptr<Link> link(std::size_t i) {
    std::lock_guard lock(mu);
    return links.at(i);
  }
  std::shared_ptr<Recorder> recorder(std::size_t i) {
    std::lock_guard lock(mu);
    return recorders.at(i);
  }
};

Message smallMessage(Lane lane, std::uint64_t id, std::string payload) {
  Message m;
  m.type = FrameType::kRpcReq;
  m.lane = lane;
  m.id = id;
  m.timeout_ms = 0;  // a transport ages a request's timeout: 0 stays 0, so messages compare equal
  m.name = "test.echo";
  m.payload = std::move(payload);
  return m;
}

std::string patterned(std::size_t n, unsigned seed) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) {
    s[i] = static_cast<char>((i * 131 + seed) & 0xff);
  }
  return s;
}

int portOf(const std::string& addr) { return std::stoi(addr.substr(addr.rfind(':') + 1)); }

// A blocking TCP connection to 127.0.0.1:port with a 5 s receive timeout (reads never hang).
// A plain TCP connection to `addr` (on 127.0.0.1), from `source` (another loopback address: the
// whole 127/8 is local on Linux) when given.
int connectTcp(const std::string& addr, const char* source = nullptr) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (source != nullptr) {
    sockaddr_in from{};
    from.sin_family = AF_INET;
    ::inet_pton(AF_INET, source, &from.sin_addr);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof(from)) != 0) {
      ::close(fd);
      return -1;
    }
  }
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(portOf(addr)));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

// Reads until EOF, error or the receive timeout; true when the peer closed (EOF or reset).
bool readUntilClosed(int fd) {
  char buf[4096];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n == 0) {
      return true;
    }
    if (n < 0) {
      return errno == ECONNRESET;
    }
  }
}

// A hand-made TLS client (OpenSSL, blocking) for what TlsTransport itself would never send.
struct RawTlsClient {
  int fd = -1;
  SSL_CTX* ctx = nullptr;
  SSL* ssl = nullptr;
  bool connected = false;
  std::string error;

  // `alpn`: the protocols offered, in ALPN wire format ("" offers none).
  RawTlsClient(const std::string& addr, const NodeFiles& files, const std::string& alpn, int max_version) {
    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_max_proto_version(ctx, max_version);
    SSL_CTX_load_verify_locations(ctx, files.ca().c_str(), nullptr);
    SSL_CTX_use_certificate_chain_file(ctx, files.cert().c_str());
    SSL_CTX_use_PrivateKey_file(ctx, files.key().c_str(), SSL_FILETYPE_PEM);
    fd = connectTcp(addr);
    if (fd < 0) {
      error = "cannot connect to " + addr;
      return;
    }
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (!alpn.empty()) {
      SSL_set_alpn_protos(ssl, reinterpret_cast<const unsigned char*>(alpn.data()),
                          static_cast<unsigned int>(alpn.size()));
    }
    connected = SSL_connect(ssl) == 1;
    if (!connected) {
      char buf[256];
      ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
      error = buf;
    }
  }
  ~RawTlsClient() {
    if (ssl != nullptr) {
      SSL_free(ssl);
    }
    if (ctx != nullptr) {
      SSL_CTX_free(ctx);
    }
    if (fd >= 0) {
      ::close(fd);
    }
  }
  RawTlsClient(const RawTlsClient&) = delete;
  RawTlsClient& operator=(const RawTlsClient&) = delete;

  bool write(const std::string& bytes) {
    return SSL_write(ssl, bytes.data(), static_cast<int>(bytes.size())) == static_cast<int>(bytes.size());
  }
  // Everything the server sends until it closes (or the 5 s receive timeout).
  std::string readAll() {
    std::string out;
    char buf[4096];
    while (true) {
      const int n = SSL_read(ssl, buf, sizeof(buf));
      if (n <= 0) {
        return out;
      }
      out.append(buf, static_cast<std::size_t>(n));
    }
  }
  // Closes the socket with a reset, as a killed process with unread data would.
  void kill() {
    linger l{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    ::close(fd);
    fd = -1;
  }
};

std::string frameHeader(std::uint32_t len, std::uint8_t type, std::uint8_t flags) {
  std::string h(kHeaderBytes, '\0');
  h[0] = static_cast<char>(len >> 24);
  h[1] = static_cast<char>(len >> 16);
  h[2] = static_cast<char>(len >> 8);
  h[3] = static_cast<char>(len);
  h[4] = static_cast<char>(kFrameVersion);
  h[5] = static_cast<char>(type);
  h[6] = static_cast<char>(flags);
  return h;
}

class TlsTransportTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = test::makeTempDir("hacoord-mesh-tls");
    ASSERT_TRUE(initCa(dir_ + "/ca").isOk());
    ASSERT_TRUE(initCa(dir_ + "/ca2").isOk());
    auto issue = [](const std::string& ca, const std::string& out, const std::string& cluster,
                    const std::string& name, const std::function<void(IssueOptions&)>& tweak = nullptr) {
      IssueOptions o;
      o.cluster = cluster;
      o.node = name;
      if (tweak) {
        tweak(o);
      }
      auto r = issueCert(dir_ + "/" + ca, dir_ + "/" + out, o);
      ASSERT_TRUE(r.isOk()) << name << ": " << r.status().toString();
    };
    for (const char* name : {"a", "b", "c"}) {
      issue("ca", "nodes", kCluster, name);
    }
    issue("ca2", "stranger", kCluster, "stranger");
    issue("ca", "bad", kCluster, "expired", [](IssueOptions& o) {
      o.validity = 1h;
      o.not_before_offset = -48h;
    });
    issue("ca", "bad", kCluster, "twosans",
          [](IssueOptions& o) { o.extra_uri_sans = {"hacoord://" + kCluster + "/x"}; });
    issue("ca", "bad", kCluster, "nosan", [](IssueOptions& o) { o.omit_uri_san = true; });
    issue("ca", "bad", "c2", "othercluster");
  }
  static void TearDownTestSuite() { test::removeTree(dir_); }

  void TearDown() override {
    // Links hold their transport's shared state, which holds on_accept: drop them first.
    strand_->runSync([this] {
      for (auto* a : accepted_) {
        std::lock_guard lock(a->mu);
        a->links.clear();
      }
      dialed_links_.clear();
    });
    transports_.clear();
    strand_->shutdown();
  }

  static NodeFiles node(const std::string& name) {
    if (name == "stranger") {
      return NodeFiles{dir_ + "/stranger", name};
    }
    if (name == "a" || name == "b" || name == "c") {
      return NodeFiles{dir_ + "/nodes", name};
    }
    return NodeFiles{dir_ + "/bad", name};
  }

  // A transport for `node` (its own name), trusting the cluster CA.
  TlsTransport& transport(const std::string& name, TlsTransport::Options extra = {}) {
    const NodeFiles f = node(name);
    TlsTransport::Options o = std::move(extra);
    o.cluster = kCluster;
    o.node = name;
    o.ca_file = dir_ + "/ca/ca.crt";
    o.cert_file = f.cert();
    o.key_file = f.key();
    auto t = TlsTransport::create(runtime_.io(), *strand_, o);
    EXPECT_TRUE(t.isOk()) << t.status().toString();
    transports_.push_back(std::move(t).value());
    return *transports_.back();
  }

  // listen() on `t`, starting every accepted link with a Recorder.
  std::shared_ptr<Accepted> listen(TlsTransport& t) {
    auto acc = std::make_shared<Accepted>();
    accepted_.push_back(acc.get());
    accepted_keep_.push_back(acc);
    const Status s = t.listen([acc](std::shared_ptr<Link> link) {
      auto r = std::make_shared<Recorder>();
      link->start(recordTo(r));
      std::lock_guard lock(acc->mu);
      acc->links.push_back(std::move(link));
      acc->recorders.push_back(std::move(r));
    });
    EXPECT_TRUE(s.isOk()) << s.toString();
    EXPECT_NE(portOf(t.listenAddress()), 0) << t.listenAddress();
    return acc;
  }

  // b dials a (which listens with `a_options`): b's side of the link (null if the dial failed) and
  // what a accepted, once a has it.
  struct Linked {
    TlsTransport* a = nullptr;
    std::shared_ptr<Accepted> acc;
    std::shared_ptr<Link> link;
  };
  Linked linkBToA(TlsTransport::Options a_options = {}) {
    Linked out;
    out.a = &transport("a", std::move(a_options));
    out.acc = listen(*out.a);
    auto dialed = dial(transport("b"), "a", out.a->listenAddress());
    EXPECT_TRUE(dialed.isOk()) << dialed.status().toString();
    if (!dialed.isOk()) return out;
    EXPECT_TRUE(eventually([&] { return out.acc->count() == 1; }, kWait)) << "a accepted no link";
    out.link = std::move(dialed).value();
    return out;
  }

  Result<std::shared_ptr<Link>> dial(TlsTransport& t, const std::string& node, const std::string& addr,
                                     Duration timeout = 5s) {
    auto promise = std::make_shared<std::promise<Result<std::shared_ptr<Link>>>>();
    auto future = promise->get_future();
    strand_->runSync([&] {
      t.dial(node, {addr}, timeout,
             [promise](Result<std::shared_ptr<Link>> r) { promise->set_value(std::move(r)); });
    });
    if (future.wait_for(kWait) != std::future_status::ready) {
      return Status(StatusCode::kDeadlineExceeded, "dial's done did not run within 10 s");
    }
    auto r = future.get();
    if (r.isOk()) {
      strand_->runSync([&] { dialed_links_.push_back(r.value()); });
    }
    return r;
  }

  void send(const std::shared_ptr<Link>& link, Message m) {
    bool ok = false;
    strand_->runSync([&] { ok = link->send(std::move(m)); });
    ASSERT_TRUE(ok) << "send() refused the message";
  }

  // Expects `t` to count exactly one refusal, under `reason`.
  static void expectOneRefusal(TlsTransport& t, RefusedReason reason) {
    const bool counted = eventually([&] { return !t.refusals().empty(); }, kWait);
    ASSERT_TRUE(counted) << "no refusal counted";
    const auto refusals = t.refusals();
    std::string got;
    for (const auto& [r, n] : refusals) {
      got += std::string(refusedReasonName(r)) + "=" + std::to_string(n) + " ";
    }
    EXPECT_EQ(refusals, (std::map<RefusedReason, std::uint64_t>{{reason, 1}}))
        << "expected one " << refusedReasonName(reason) << " refusal, got " << got;
  }

  static inline std::string dir_;
  Runtime runtime_{1};
  std::unique_ptr<StrandScheduler> strand_ = runtime_.makeStrand();
  std::vector<std::unique_ptr<TlsTransport>> transports_;
  std::vector<Accepted*> accepted_;
  std::vector<std::shared_ptr<Accepted>> accepted_keep_;
  std::vector<std::shared_ptr<Link>> dialed_links_;  // on the strand
};

TEST_F(TlsTransportTest, DialAndAcceptCarryMessagesBothWaysInOrder) {
  TlsTransport& a = transport("a");
  TlsTransport& b = transport("b");
  auto acc = listen(a);

  auto dialed = dial(b, "a", a.listenAddress());
  ASSERT_TRUE(dialed.isOk()) << dialed.status().toString();
  std::shared_ptr<Link> ba = dialed.value();
  ASSERT_TRUE(eventually([&] { return acc->count() == 1; }, kWait)) << "a accepted no link";
  std::shared_ptr<Link> ab = acc->link(0);

  EXPECT_EQ(ba->peerId(), "a");
  EXPECT_EQ(ab->peerId(), "b");
  EXPECT_TRUE(ba->dialed());
  EXPECT_FALSE(ab->dialed());
  EXPECT_EQ(ba->fingerprint(), fingerprintOfPemFile(node("a").cert()).value());
  EXPECT_EQ(ab->fingerprint(), fingerprintOfPemFile(node("b").cert()).value());
  EXPECT_EQ(ba->remoteAddress(), a.listenAddress());
  EXPECT_EQ(a.counters().connections_accepted, 1u);
  EXPECT_EQ(b.counters().connections_dialed, 1u);

  auto at_b = std::make_shared<Recorder>();
  strand_->runSync([&] { ba->start(recordTo(at_b)); });
  auto at_a = acc->recorder(0);

  // One lane, so the order is the send order: small ones, 5 MiB (80 fragments), small ones.
  std::vector<Message> sent;
  for (int i = 0; i < 300; ++i) {
    sent.push_back(smallMessage(Lane::kRpc, static_cast<std::uint64_t>(i), "small " + std::to_string(i)));
  }
  sent.push_back(smallMessage(Lane::kRpc, 1000, patterned(5 * 1024 * 1024, 7)));
  for (int i = 300; i < 600; ++i) {
    sent.push_back(smallMessage(Lane::kRpc, static_cast<std::uint64_t>(i), "small " + std::to_string(i)));
  }
  strand_->runSync([&] {
    for (const Message& m : sent) {
      EXPECT_TRUE(ba->send(m));
      EXPECT_TRUE(ab->send(m));
    }
  });
  ASSERT_TRUE(eventually([&] { return at_a->messageCount() == sent.size(); }, kWait))
      << "a got " << at_a->messageCount() << " of " << sent.size();
  ASSERT_TRUE(eventually([&] { return at_b->messageCount() == sent.size(); }, kWait))
      << "b got " << at_b->messageCount() << " of " << sent.size();
  for (auto* r : {at_a.get(), at_b.get()}) {
    std::lock_guard lock(r->mu);
    for (std::size_t i = 0; i < sent.size(); ++i) {
      ASSERT_EQ(r->messages[i], sent[i]) << "message " << i << " differs (id " << r->messages[i].id << ", "
                                         << r->messages[i].payload.size() << " bytes)";
    }
    EXPECT_TRUE(r->closes.empty());
  }
  EXPECT_TRUE(eventually([&] { return ba->queuedBytes() == 0 && ab->queuedBytes() == 0; }, kWait));
  EXPECT_GT(a.counters().bytes_in, 5u * 1024 * 1024);
  EXPECT_GT(b.counters().bytes_out, 5u * 1024 * 1024);
  EXPECT_TRUE(a.refusals().empty());
  EXPECT_TRUE(b.refusals().empty());
}

class RefusalTest : public TlsTransportTest {
 protected:
  // `client` dials a; a counts one refusal under `reason` and accepts nothing.
  void expectRefusedByServer(const std::string& client, RefusedReason reason) {
    TlsTransport& a = transport("a");
    auto acc = listen(a);
    TlsTransport& c = transport(client);
    // The dialer waits for the acceptor's verdict (its session ticket), so it gets no link either.
    auto dialed = dial(c, "a", a.listenAddress(), 3s);
    ASSERT_FALSE(dialed.isOk()) << client << " got a link that a refused";
    EXPECT_NE(dialed.status().message().find("the peer refused the connection"), std::string::npos)
        << dialed.status().toString();
    EXPECT_EQ(c.counters().connections_dialed, 0u);
    EXPECT_TRUE(c.refusals().empty()) << "the dialer counted the acceptor's refusal as its own";
    expectOneRefusal(a, reason);
    EXPECT_EQ(acc->count(), 0u) << "a refused connection became a link";
    EXPECT_EQ(a.counters().connections_accepted, 0u);
  }
};

TEST_F(RefusalTest, CertificateFromAnotherCa) { expectRefusedByServer("stranger", RefusedReason::kWrongCa); }
TEST_F(RefusalTest, ExpiredCertificate) { expectRefusedByServer("expired", RefusedReason::kExpired); }
TEST_F(RefusalTest, TwoUriSans) { expectRefusedByServer("twosans", RefusedReason::kSan); }
TEST_F(RefusalTest, NoUriSan) { expectRefusedByServer("nosan", RefusedReason::kSan); }
TEST_F(RefusalTest, SanOfAnotherCluster) { expectRefusedByServer("othercluster", RefusedReason::kSan); }

TEST_F(RefusalTest, DialerDemandsTheNodeItDialed) {
  TlsTransport& c = transport("c");
  auto acc = listen(c);
  TlsTransport& b = transport("b");
  auto r = dial(b, "b", c.listenAddress());  // dialing "b", but the server's certificate says "c"
  ASSERT_FALSE(r.isOk()) << "the dial to b reached c and made a link";
  EXPECT_NE(r.status().message().find("dialed node 'b' but the certificate names 'c'"), std::string::npos)
      << r.status().toString();
  expectOneRefusal(b, RefusedReason::kSan);
  EXPECT_EQ(b.counters().connections_dialed, 0u);
  EXPECT_EQ(acc->count(), 0u);
}

TEST_F(RefusalTest, PlaintextClient) {
  TlsTransport& a = transport("a");
  auto acc = listen(a);
  const int fd = connectTcp(a.listenAddress());
  ASSERT_GE(fd, 0);
  const std::string garbage = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  ASSERT_EQ(::write(fd, garbage.data(), garbage.size()), static_cast<ssize_t>(garbage.size()));
  EXPECT_TRUE(readUntilClosed(fd)) << "the server did not close the plaintext connection";
  ::close(fd);
  expectOneRefusal(a, RefusedReason::kTlsHandshake);
  EXPECT_EQ(acc->count(), 0u);
}

TEST_F(RefusalTest, Tls12OnlyClient) {
  TlsTransport& a = transport("a");
  auto acc = listen(a);
  RawTlsClient client(a.listenAddress(), node("b"), kAlpnWire, TLS1_2_VERSION);
  EXPECT_FALSE(client.connected) << "a TLS 1.2 handshake succeeded";
  expectOneRefusal(a, RefusedReason::kTlsHandshake);
  EXPECT_EQ(acc->count(), 0u);
}

TEST_F(RefusalTest, ClientWithoutAlpn) {
  TlsTransport& a = transport("a");
  auto acc = listen(a);
  RawTlsClient client(a.listenAddress(), node("b"), "", TLS1_3_VERSION);
  expectOneRefusal(a, RefusedReason::kAlpn);
  EXPECT_EQ(acc->count(), 0u);
}

TEST_F(RefusalTest, SilentClientTimesOut) {
  TlsTransport::Options o;
  o.handshake_timeout = 200ms;
  TlsTransport& a = transport("a", o);
  auto acc = listen(a);
  const int fd = connectTcp(a.listenAddress());
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(readUntilClosed(fd)) << "a client that never spoke was not dropped";
  ::close(fd);
  expectOneRefusal(a, RefusedReason::kTlsHandshake);
  EXPECT_EQ(acc->count(), 0u);
}

TEST_F(RefusalTest, ClientOfferingOnlyAnotherAlpn) {
  TlsTransport& a = transport("a");
  auto acc = listen(a);
  RawTlsClient client(a.listenAddress(), node("b"), "\x02h2\x08http/1.1", TLS1_3_VERSION);
  EXPECT_FALSE(client.connected) << "the server selected an ALPN other than hacoord/1";
  expectOneRefusal(a, RefusedReason::kAlpn);
  EXPECT_EQ(acc->count(), 0u);
}

TEST_F(RefusalTest, HandshakesAboveTheCapAreClosedAtOnce) {
  TlsTransport::Options o;
  o.max_concurrent_handshakes = 2;
  o.handshake_timeout = 30s;
  TlsTransport& a = transport("a", o);
  auto acc = listen(a);
  std::vector<int> silent;
  for (int i = 0; i < 2; ++i) {
    silent.push_back(connectTcp(a.listenAddress()));
    ASSERT_GE(silent.back(), 0);
  }
  // Both silent clients hold a handshake slot (30 s each): the third is closed unread.
  const int third = connectTcp(a.listenAddress());
  ASSERT_GE(third, 0);
  EXPECT_TRUE(readUntilClosed(third)) << "a connection above the handshake cap was kept";
  ::close(third);
  EXPECT_EQ(a.counters().handshakes_over_cap, 1u);
  for (int fd : silent) {
    ::close(fd);
  }
}

// Review of the mesh: silent connections from one host took every handshake slot, so peers could
// not connect (an unauthenticated denial of service). One address gets a few slots; the rest of
// its connections are closed unread, and a peer from another address still gets through.
TEST_F(RefusalTest, SilentConnectionsFromOneAddressDoNotLockPeersOut) {
  TlsTransport::Options o;
  o.max_concurrent_handshakes = 16;
  o.max_handshakes_per_address = 4;
  o.handshake_timeout = 30s;
  TlsTransport& a = transport("a", o);
  TlsTransport& b = transport("b");
  auto acc = listen(a);
  std::vector<int> silent;
  for (int i = 0; i < 20; ++i) {  // more than the global cap
    silent.push_back(connectTcp(a.listenAddress(), "127.0.0.2"));
    ASSERT_GE(silent.back(), 0) << "cannot bind 127.0.0.2: " << std::strerror(errno);
  }
  ASSERT_TRUE(eventually([&] { return a.counters().handshakes_over_cap == 16; }, kWait))
      << a.counters().handshakes_over_cap;
  // The attacker's connections above its quota were closed unread.
  EXPECT_TRUE(readUntilClosed(silent.back())) << "a connection above the address's quota was kept";
  auto dialed = dial(b, "a", a.listenAddress());  // from 127.0.0.1
  ASSERT_TRUE(dialed.isOk()) << dialed.status().toString();
  EXPECT_TRUE(eventually([&] { return acc->count() == 1; }, kWait)) << "a accepted no link";
  for (int fd : silent) {
    ::close(fd);
  }
}

class FrameLimitTest : public TlsTransportTest {
 protected:
  // a listens; b links to it with a transport (the connection that must survive); then a raw
  // client with b's certificate sends `bad` and must be closed with GOAWAY(`reason`).
  void expectBadFrameClosesOnlyThatConnection(const std::string& bad, GoAwayReason reason) {
    TlsTransport& a = transport("a");
    auto acc = listen(a);
    TlsTransport& b = transport("b");
    auto good = dial(b, "a", a.listenAddress());
    ASSERT_TRUE(good.isOk()) << good.status().toString();
    ASSERT_TRUE(eventually([&] { return acc->count() == 1; }, kWait));

    RawTlsClient raw(a.listenAddress(), node("b"), kAlpnWire, TLS1_3_VERSION);
    ASSERT_TRUE(raw.connected) << raw.error;
    ASSERT_TRUE(eventually([&] { return acc->count() == 2; }, kWait))
        << "the raw client's link was not accepted";
    ASSERT_TRUE(raw.write(bad));
    const std::string reply = raw.readAll();  // GOAWAY, then the server closes

    FrameDecoder decoder;
    decoder.feed(reply);
    auto first = decoder.next();
    ASSERT_TRUE(first.isOk() && first.value().has_value())
        << "no whole frame before the close (" << reply.size() << " bytes)";
    ASSERT_EQ(first.value()->type, FrameType::kGoAway);
    auto goaway = decodeGoAway(first.value()->payload);
    ASSERT_TRUE(goaway.isOk());
    EXPECT_EQ(goaway->reason, reason) << goaway->text;

    auto bad_rec = acc->recorder(1);
    ASSERT_TRUE(eventually([&] { return bad_rec->closeCount() == 1; }, kWait)) << "the bad link never closed";
    EXPECT_EQ(a.counters().frames_refused, (std::map<GoAwayReason, std::uint64_t>{{reason, 1}}));

    // The other connection on the same transport still carries messages.
    auto good_rec = acc->recorder(0);
    send(good.value(), smallMessage(Lane::kRpc, 1, "still here"));
    ASSERT_TRUE(eventually([&] { return good_rec->messageCount() == 1; }, kWait));
    EXPECT_EQ(good_rec->closeCount(), 0u);
  }
};

TEST_F(FrameLimitTest, LenFfffffffClosesThatConnection) {
  expectBadFrameClosesOnlyThatConnection(frameHeader(0xFFFFFFFFu, 0x10, kFlagEnd),
                                         GoAwayReason::kFrameTooLarge);
}

TEST_F(FrameLimitTest, UnknownTypeBelow0x80ClosesThatConnection) {
  ASSERT_FALSE(isKnownOrIgnorableType(0x05));
  expectBadFrameClosesOnlyThatConnection(frameHeader(kHeaderBytes - 4, 0x05, kFlagEnd),
                                         GoAwayReason::kProtocol);
}

TEST_F(TlsTransportTest, MessageAboveTheReceiversLimitClosesWithGoAway) {
  TlsTransport::Options small;
  small.max_message_bytes = 1024 * 1024;
  const Linked linked = linkBToA(small);
  ASSERT_NE(linked.link, nullptr);
  TlsTransport& a = *linked.a;
  const auto& acc = linked.acc;
  const auto& link = linked.link;
  auto at_b = std::make_shared<Recorder>();
  strand_->runSync([&] { link->start(recordTo(at_b)); });

  send(link, smallMessage(Lane::kStream, 1, patterned(2 * 1024 * 1024, 5)));
  ASSERT_TRUE(eventually([&] { return at_b->closeCount() == 1; }, kWait)) << "the sender's link stayed open";
  ASSERT_TRUE(eventually([&] { return acc->recorder(0)->closeCount() == 1; }, kWait));
  EXPECT_EQ(acc->recorder(0)->messageCount(), 0u) << "part of the oversize message was delivered";
  EXPECT_EQ(a.counters().frames_refused,
            (std::map<GoAwayReason, std::uint64_t>{{GoAwayReason::kFrameTooLarge, 1}}));
  {
    std::lock_guard lock(acc->recorder(0)->mu);
    EXPECT_EQ(acc->recorder(0)->closes[0].code(), StatusCode::kResourceExhausted)
        << acc->recorder(0)->closes[0].toString();
  }
  std::lock_guard lock(at_b->mu);
  ASSERT_EQ(at_b->messages.size(), 1u) << "the sender got no GOAWAY";
  auto g = decodeGoAway(at_b->messages[0].payload);
  ASSERT_TRUE(g.isOk());
  EXPECT_EQ(g->reason, GoAwayReason::kFrameTooLarge) << g->text;
  EXPECT_NE(at_b->closes[0].message().find(std::string(goAwayReasonName(GoAwayReason::kFrameTooLarge))),
            std::string::npos)
      << at_b->closes[0].toString();
}

TEST_F(TlsTransportTest, SmallRpcOvertakesQueuedBulkStream) {
  TlsTransport::Options big;
  big.max_message_bytes = 64 * 1024 * 1024;
  const Linked linked = linkBToA(big);
  ASSERT_NE(linked.link, nullptr);
  const auto& acc = linked.acc;
  const auto& link = linked.link;
  auto rec = acc->recorder(0);

  Message bulk = smallMessage(Lane::kStream, 1, patterned(50 * 1024 * 1024, 3));
  bulk.type = FrameType::kStreamData;
  const Message rpc = smallMessage(Lane::kRpc, 2, "urgent");
  strand_->runSync([&] {
    EXPECT_TRUE(link->send(bulk));
    EXPECT_GT(link->queuedBytes(), 50u * 1024 * 1024);
    EXPECT_TRUE(link->send(rpc));
  });
  ASSERT_TRUE(eventually([&] { return rec->messageCount() == 2; }, 30s)) << "got " << rec->messageCount();
  std::lock_guard lock(rec->mu);
  EXPECT_EQ(rec->messages[0].lane, Lane::kRpc)
      << "the small rpc message waited for the 50 MiB stream message";
  EXPECT_EQ(rec->messages[0], rpc);
  EXPECT_EQ(rec->messages[1].payload.size(), bulk.payload.size());
  EXPECT_TRUE(rec->messages[1] == bulk) << "the bulk message arrived damaged";
}

// A request's timeout_ms leaves with what remains of it: the time it waited in its lane behind
// 60 MiB is taken off, so the receiver never gets more time than the caller has left.
TEST_F(TlsTransportTest, ARequestsTimeoutIsAgedByItsWaitInTheLane) {
  TlsTransport::Options big;
  big.max_message_bytes = 64 * 1024 * 1024;
  const Linked linked = linkBToA(big);
  ASSERT_NE(linked.link, nullptr);
  const auto& acc = linked.acc;
  const auto& link = linked.link;
  auto rec = acc->recorder(0);
  Message ahead = smallMessage(Lane::kRpc, 1, patterned(60 * 1024 * 1024, 5));
  Message waiting = smallMessage(Lane::kRpc, 2, "behind");
  waiting.timeout_ms = 5;  // 60 MiB through TLS takes far longer than 5 ms
  Message fresh = smallMessage(Lane::kRpc, 3, "later");
  fresh.timeout_ms = 60000;
  strand_->runSync([&] {
    EXPECT_TRUE(link->send(ahead));
    EXPECT_TRUE(link->send(waiting));
  });
  ASSERT_TRUE(eventually([&] { return rec->messageCount() == 2; }, 30s)) << "got " << rec->messageCount();
  strand_->runSync([&] { EXPECT_TRUE(link->send(fresh)); });
  ASSERT_TRUE(eventually([&] { return rec->messageCount() == 3; }, kWait));
  std::lock_guard lock(rec->mu);
  EXPECT_EQ(rec->messages[1].id, 2u);
  EXPECT_EQ(rec->messages[1].timeout_ms, 0u) << "the request kept the time it spent queued";
  EXPECT_EQ(rec->messages[1].payload, "behind");
  EXPECT_GT(rec->messages[2].timeout_ms, 50000u);
  EXPECT_LE(rec->messages[2].timeout_ms, 60000u);
}

// Rotation: the files are replaced in place and reloaded. A key that does not match the new
// certificate is refused and changes nothing; after a good reload a new connection sees the new
// certificate while the one opened before keeps working.
TEST_F(TlsTransportTest, ReloadedCredentialsAreUsedForNewConnectionsAndOpenOnesStay) {
  const std::string d = dir_ + "/rotate";
  std::filesystem::create_directories(d);
  std::filesystem::copy_file(node("a").cert(), d + "/a.crt");
  std::filesystem::copy_file(node("a").key(), d + "/a.key");
  TlsTransport::Options o;
  o.cluster = kCluster;
  o.node = "a";
  o.ca_file = dir_ + "/ca/ca.crt";
  o.cert_file = d + "/a.crt";
  o.key_file = d + "/a.key";
  auto created = TlsTransport::create(runtime_.io(), *strand_, o);
  ASSERT_TRUE(created.isOk()) << created.status().toString();
  transports_.push_back(std::move(created).value());
  TlsTransport& a = *transports_.back();
  auto acc = listen(a);
  TlsTransport& b = transport("b");
  auto before = dial(b, "a", a.listenAddress());
  ASSERT_TRUE(before.isOk()) << before.status().toString();
  const auto old_fp = fingerprintOfPemFile(d + "/a.crt");

  IssueOptions io;
  io.cluster = kCluster;
  io.node = "a";
  auto new_fp = issueCert(dir_ + "/ca", d + "/new", io);
  ASSERT_TRUE(new_fp.isOk()) << new_fp.status().toString();
  std::filesystem::rename(d + "/new/a.crt", d + "/a.crt");
  auto refused = a.reloadCredentials();  // the old key with the new certificate
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument) << refused.status().toString();
  auto still_old = dial(b, "a", a.listenAddress());
  ASSERT_TRUE(still_old.isOk()) << still_old.status().toString();
  EXPECT_EQ(still_old.value()->fingerprint(), *old_fp);

  std::filesystem::rename(d + "/new/a.key", d + "/a.key");
  auto reloaded = a.reloadCredentials();
  ASSERT_TRUE(reloaded.isOk()) << reloaded.status().toString();
  EXPECT_EQ(*reloaded, *new_fp);
  auto after = dial(b, "a", a.listenAddress());
  ASSERT_TRUE(after.isOk()) << after.status().toString();
  EXPECT_EQ(after.value()->fingerprint(), *new_fp);
  // The link opened before the rotation still carries messages.
  ASSERT_TRUE(eventually([&] { return acc->count() == 3; }, kWait));
  auto at_a = acc->recorder(0);
  auto at_b = std::make_shared<Recorder>();
  strand_->runSync([&] {
    before.value()->start(recordTo(at_b));
    EXPECT_TRUE(before.value()->send(smallMessage(Lane::kRpc, 9, "still here")));
  });
  EXPECT_TRUE(eventually([&] { return at_a->messageCount() == 1; }, kWait));
}

TEST_F(TlsTransportTest, CloseSendsGoAwayAndClosesOnce) {
  const Linked linked = linkBToA();
  ASSERT_NE(linked.link, nullptr);
  const auto& acc = linked.acc;
  const auto& link = linked.link;
  auto at_a = acc->recorder(0);
  auto at_b = std::make_shared<Recorder>();
  const Message last = smallMessage(Lane::kStream, 9, "queued before close");
  strand_->runSync([&] {
    link->start(recordTo(at_b));
    EXPECT_TRUE(link->send(last));
    link->close(GoAwayReason::kShutdown, "bye");
    EXPECT_FALSE(link->send(last)) << "send() accepted a message after close()";
  });

  ASSERT_TRUE(eventually([&] { return at_a->closeCount() >= 1 && at_b->closeCount() >= 1; }, kWait))
      << "on_closed: a " << at_a->closeCount() << ", b " << at_b->closeCount();
  // A barrier on the strand: anything a second on_closed would have posted by now has run.
  strand_->runSync([] {});
  {
    std::lock_guard lock(at_a->mu);
    ASSERT_EQ(at_a->closes.size(), 1u);
    ASSERT_EQ(at_a->messages.size(), 2u) << "a expected the queued message, then GOAWAY";
    EXPECT_EQ(at_a->messages[0], last);
    EXPECT_EQ(at_a->messages[1].type, FrameType::kGoAway);
    auto g = decodeGoAway(at_a->messages[1].payload);
    ASSERT_TRUE(g.isOk());
    EXPECT_EQ(*g, (GoAway{GoAwayReason::kShutdown, "bye"}));
    EXPECT_EQ(at_a->order, (std::vector<std::string>{"m:0", "m:1", "closed"}));
    EXPECT_EQ(at_a->closes[0].code(), StatusCode::kUnavailable) << at_a->closes[0].toString();
    EXPECT_NE(at_a->closes[0].message().find(
                  "GOAWAY(" + std::string(goAwayReasonName(GoAwayReason::kShutdown)) + ") bye"),
              std::string::npos)
        << at_a->closes[0].toString();
  }
  {
    std::lock_guard lock(at_b->mu);
    ASSERT_EQ(at_b->closes.size(), 1u);
    EXPECT_EQ(at_b->closes[0].code(), StatusCode::kCancelled) << at_b->closes[0].toString();
    EXPECT_NE(at_b->closes[0].message().find("bye"), std::string::npos) << at_b->closes[0].toString();
  }
}

TEST_F(TlsTransportTest, KilledPeerClosesWithAnErrorOnce) {
  TlsTransport& a = transport("a");
  auto acc = listen(a);
  RawTlsClient raw(a.listenAddress(), node("b"), kAlpnWire, TLS1_3_VERSION);
  ASSERT_TRUE(raw.connected) << raw.error;
  ASSERT_TRUE(eventually([&] { return acc->count() == 1; }, kWait));
  auto rec = acc->recorder(0);
  // Something the raw client never reads, so that the kernel resets the connection on close.
  send(acc->link(0), smallMessage(Lane::kRpc, 1, "unread"));
  ASSERT_TRUE(eventually([&] { return acc->link(0)->queuedBytes() == 0; }, kWait));
  raw.kill();
  ASSERT_TRUE(eventually([&] { return rec->closeCount() >= 1; }, kWait))
      << "no on_closed after the peer died";
  strand_->runSync([] {});
  std::lock_guard lock(rec->mu);
  ASSERT_EQ(rec->closes.size(), 1u);
  EXPECT_EQ(rec->closes[0].code(), StatusCode::kUnavailable) << rec->closes[0].toString();
  EXPECT_NE(rec->closes[0].message().find("failed"), std::string::npos)
      << "expected an I/O error, got " << rec->closes[0].toString();
}

// A bound TCP port with no listener: connecting to it is refused at once.
struct ClosedPort {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  std::string addr;
  ClosedPort() {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
    socklen_t len = sizeof(sa);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
    addr = "127.0.0.1:" + std::to_string(ntohs(sa.sin_port));
  }
  ~ClosedPort() { ::close(fd); }
};

TEST_F(TlsTransportTest, DialTriesAddressesInOrder) {
  TlsTransport& a = transport("a");
  auto acc = listen(a);
  TlsTransport& b = transport("b");
  ClosedPort closed;
  auto promise = std::make_shared<std::promise<Result<std::shared_ptr<Link>>>>();
  auto future = promise->get_future();
  strand_->runSync([&] {
    b.dial("a", {"not an address", closed.addr, a.listenAddress()}, 5s,
           [promise](Result<std::shared_ptr<Link>> r) { promise->set_value(std::move(r)); });
  });
  ASSERT_EQ(future.wait_for(kWait), std::future_status::ready);
  auto r = future.get();
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r.value()->remoteAddress(), a.listenAddress());
  strand_->runSync([&] { dialed_links_.push_back(r.value()); });

  auto none = dial(b, "a", closed.addr);
  ASSERT_FALSE(none.isOk());
  EXPECT_EQ(none.status().code(), StatusCode::kUnavailable) << none.status().toString();
  EXPECT_NE(none.status().message().find(closed.addr), std::string::npos) << none.status().toString();
}

TEST_F(TlsTransportTest, DialTimesOutOnASilentListener) {
  TlsTransport& b = transport("b");
  const int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
  ASSERT_EQ(::listen(lfd, 4), 0);
  socklen_t len = sizeof(sa);
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&sa), &len);
  const std::string addr = "127.0.0.1:" + std::to_string(ntohs(sa.sin_port));
  auto r = dial(b, "a", addr, 300ms);  // the handshake timeout (3 s) is longer
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded) << r.status().toString();
  ::close(lfd);
}

TEST_F(TlsTransportTest, StopClosesTheListenerAndKeepsLinks) {
  TlsTransport& a = transport("a");
  auto acc = listen(a);
  const std::string addr = a.listenAddress();
  TlsTransport& b = transport("b");
  auto link = dial(b, "a", addr);
  ASSERT_TRUE(link.isOk()) << link.status().toString();
  ASSERT_TRUE(eventually([&] { return acc->count() == 1; }, kWait));

  strand_->runSync([&] {
    a.stop();
    b.stop();
  });
  EXPECT_TRUE(eventually(
      [&] {
        const int fd = connectTcp(addr);
        if (fd >= 0) {
          ::close(fd);
        }
        return fd < 0;
      },
      kWait))
      << "still accepting on " << addr << " after stop()";
  TlsTransport& c = transport("c");
  auto r = dial(c, "a", addr, 2s);
  EXPECT_FALSE(r.isOk()) << "a dial reached a stopped transport";
  EXPECT_EQ(acc->count(), 1u);

  // The link made before stop() still carries messages.
  send(link.value(), smallMessage(Lane::kRpc, 1, "after stop"));
  auto rec = acc->recorder(0);
  ASSERT_TRUE(eventually([&] { return rec->messageCount() == 1; }, kWait))
      << "stop() broke an established link";
  EXPECT_EQ(rec->closeCount(), 0u);
}

TEST_F(TlsTransportTest, StopCancelsDialsInProgress) {
  TlsTransport& b = transport("b");
  // A listener that accepts TCP and never speaks TLS: the dial waits in its handshake (30 s).
  const int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
  ASSERT_EQ(::listen(lfd, 4), 0);
  socklen_t len = sizeof(sa);
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&sa), &len);
  const std::string addr = "127.0.0.1:" + std::to_string(ntohs(sa.sin_port));

  auto promise = std::make_shared<std::promise<Result<std::shared_ptr<Link>>>>();
  auto future = promise->get_future();
  strand_->runSync([&] {
    b.dial("a", {addr}, 30s,
           [promise](Result<std::shared_ptr<Link>> r) { promise->set_value(std::move(r)); });
  });
  strand_->runSync([&] { b.stop(); });
  ASSERT_EQ(future.wait_for(kWait), std::future_status::ready) << "stop() did not end the dial";
  auto r = future.get();
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().code(), StatusCode::kCancelled) << r.status().toString();
  ::close(lfd);
}

}  // namespace
}  // namespace hacoord::mesh
