// NATS authorization: nats-server run with config/nats-server-auth.conf; who may steer the cluster.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nats/nats.h>

#include "hacoord/node_status.h"
#include "nats/nats_connection.h"
#include "nats/nats_control.h"
#include "nats/nats_lease_store.h"
#include "support/child_process.h"
#include "support/eventually.h"
#include "support/nats_server_fixture.h"

namespace hacoord::test {
namespace {

using namespace std::chrono_literals;

// The sample's cluster and node names: the test runs the sample as shipped, only its passwords
// and store directory filled in.
constexpr const char* kCluster = "demo";
constexpr const char* kBucket = "HACOORD_demo";
constexpr const char* kLeaseSubject = "$KV.HACOORD_demo.leader";
const std::vector<std::string> kNodes = {"node1", "node2", "node3"};
constexpr milliseconds kRunLimit = 20000ms;  // no CLI call may hang longer than this

std::string readText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string randomPassword() {
  static std::mt19937_64 rng{std::random_device{}()};
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 32; ++i) out += hex[rng() % 16];
  return out;
}

// Replaces the one occurrence of `from`; fails the test when the sample no longer has it.
bool replaceOnce(std::string& text, const std::string& from, const std::string& to) {
  auto at = text.find(from);
  if (at == std::string::npos) return false;
  text.replace(at, from.size(), to);
  return text.find(from) == std::string::npos;
}

std::string describe(const RunResult& r) {
  return "exit " + std::to_string(r.exit_code) + (r.timed_out ? " (timed out)" : "") + " after " +
         std::to_string(r.elapsed.count()) + " ms\nstdout:\n" + r.out + "\nstderr:\n" + r.err;
}

RunResult hacoord(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {HACOORD_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  return runProcess(argv, kRunLimit);
}

class NatsAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = makeTempDir("hacoord-auth");
    // Fill in the sample: a password per user, the store directory. Ports come from the fixture.
    std::string conf = readText(std::string(HACOORD_SOURCE_DIR) + "/config/nats-server-auth.conf");
    ASSERT_FALSE(conf.empty()) << "config/nats-server-auth.conf missing";
    for (const std::string user :
         {"hacoord-node1", "hacoord-node2", "hacoord-node3", "hacoord-operator", "hacoord-observer"}) {
      passwords_[user] = randomPassword();
      ASSERT_TRUE(replaceOnce(conf, "REPLACE-" + user + "-password", passwords_[user]))
          << "the sample has no single password placeholder for " << user;
    }
    ASSERT_EQ(conf.find("password: \"REPLACE-"), std::string::npos) << "a placeholder is left";
    ASSERT_TRUE(replaceOnce(conf, "/var/lib/nats/jetstream", dir_ + "/js"));
    writeTextFile(dir_ + "/nats-server.conf", conf);
    NatsServerOptions options;
    options.config_file = dir_ + "/nats-server.conf";
    server_ = std::make_unique<NatsServer>(options);
  }

  void TearDown() override {
    if (HasFailure()) {
      for (auto& [id, d] : daemons_) {
        std::cerr << "--- " << id << " stdout:\n"
                  << d->stdoutText() << "\n--- stderr:\n"
                  << d->stderrText() << "\n";
      }
      if (server_) std::cerr << "--- nats-server log:\n" << server_->logTail(6000) << "\n";
    }
    daemons_.clear();
    server_.reset();
    removeTree(dir_);
  }

  // nats://user:password@127.0.0.1:port. TODO(lead): nats.user/passwordFile once parsed.
  std::string urlFor(const std::string& user) {
    return "nats://" + user + ":" + passwords_.at(user) + "@127.0.0.1:" + std::to_string(server_->port());
  }

  // A config for `node_id` that connects as `user`.
  std::string writeConfig(const std::string& node_id, const std::string& user) {
    const std::string path = dir_ + "/" + node_id + "-" + user + ".json";
    writeTextFile(path, R"({"clusterId":")" + std::string(kCluster) + R"(","nodeId":")" + node_id +
                            R"(","stateDir":")" + dir_ + R"(","nats":{"servers":[")" + urlFor(user) +
                            R"("],"connectTimeoutMs":1000,"requestTimeoutMs":500,)"
                            R"("reconnectWaitMs":50,"reconnectWaitMaxMs":250},)"
                            R"("election":{"leaseTtlMs":2000,"renewIntervalMs":500},)"
                            R"("log":{"level":"info"}})");
    return path;
  }

  // A password file of mode `mode` holding `text`.
  std::string writePasswordFile(const std::string& name, const std::string& text, mode_t mode) {
    const std::string path = dir_ + "/" + name;
    writeTextFile(path, text);
    ::chmod(path.c_str(), mode);
    return path;
  }

  // The supported client side: nats.user + nats.passwordFile (mode 0600).
  NatsConfig natsConfigFor(const std::string& user) {
    NatsConfig c = testNatsConfig({server_->url()});
    c.user = user;
    c.password_file = writePasswordFile(user + ".password", passwords_.at(user) + "\n", 0600);
    return c;
  }

  std::unique_ptr<NatsConnection> connectAs(const std::string& user) {
    auto conn = NatsConnection::connect(natsConfigFor(user), "test-" + user);
    EXPECT_TRUE(conn.isOk()) << conn.status().toString();
    return conn.isOk() ? std::move(*conn) : nullptr;
  }

  void startDaemons() {
    for (const auto& node : kNodes) {
      daemons_[node] = std::make_unique<ChildProcess>(std::vector<std::string>{
          HACOORD_BINARY, "daemon", "--config", writeConfig(node, "hacoord-" + node)});
    }
  }

  // `hacoord status --json` as the observer.
  std::map<std::string, std::string> observedStatus() {
    const RunResult r = hacoord({"status", "--json", "--config", observer_config_});
    if (r.exit_code != 0) return {};
    auto parsed = parseFlatJson(r.out);
    return parsed ? *parsed : std::map<std::string, std::string>{};
  }

  // Waits until the observer sees a leader other than `other_than` that every daemon agrees on.
  std::pair<std::string, std::uint64_t> waitForLeader(const std::string& other_than, milliseconds timeout) {
    std::map<std::string, std::string> status;
    const bool ok = eventually(
        [&] {
          status = observedStatus();
          return !status["leader"].empty() && status["leader"] != other_than;
        },
        timeout, 50ms);
    EXPECT_TRUE(ok) << "no leader (other than '" << other_than << "') within " << timeout.count() << " ms";
    if (!ok) return {"", 0};
    return {status["leader"], std::stoull(status["epoch"])};
  }

  LeaseRecord readRecord(NatsConnection& conn) {
    auto snapshot = readLeaseOnce(conn, kBucket);
    EXPECT_TRUE(snapshot.isOk()) << snapshot.status().toString();
    return snapshot.isOk() ? snapshot->entry.record : LeaseRecord{};
  }

  std::string dir_;
  std::map<std::string, std::string> passwords_;
  std::unique_ptr<NatsServer> server_;
  std::map<std::string, std::unique_ptr<ChildProcess>> daemons_;
  std::string observer_config_;
};

// The client side alone: a password file must be private, non-empty and readable; the password
// is its first line; credentials the server refuses are named as such at connect; a password in
// a server URL never shows up in what hacoord prints.
TEST_F(NatsAuthTest, PasswordFilesAndRefusedCredentialsAreClearErrors) {
  NatsConfig c = natsConfigFor("hacoord-observer");

  c.password_file = writePasswordFile("open.password", passwords_["hacoord-observer"], 0644);
  auto open = NatsConnection::connect(c, "t");
  EXPECT_EQ(open.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(open.status().message().find(c.password_file), std::string::npos) << open.status().message();
  EXPECT_NE(open.status().message().find("0644"), std::string::npos) << open.status().message();

  c.password_file = writePasswordFile("group.password", passwords_["hacoord-observer"], 0640);
  auto group = NatsConnection::connect(c, "t");
  EXPECT_EQ(group.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(group.status().message().find("0640"), std::string::npos) << group.status().message();

  c.password_file = writePasswordFile("empty.password", "\n", 0600);
  auto empty = NatsConnection::connect(c, "t");
  EXPECT_EQ(empty.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(empty.status().message().find(c.password_file), std::string::npos) << empty.status().message();

  c.password_file = dir_ + "/missing.password";
  auto missing = NatsConnection::connect(c, "t");
  EXPECT_EQ(missing.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(missing.status().message().find(c.password_file), std::string::npos)
      << missing.status().message();

  // First line only, its newline stripped: the server accepts exactly the password.
  c.password_file =
      writePasswordFile("good.password", passwords_["hacoord-observer"] + "\nsecond line ignored\n", 0600);
  auto good = NatsConnection::connect(c, "t");
  ASSERT_TRUE(good.isOk()) << good.status().toString();
  EXPECT_EQ((*good)->userName(), "hacoord-observer");

  // A wrong password: refused at connect, said so, at once.
  c.password_file = writePasswordFile("wrong.password", "not-the-password\n", 0600);
  const auto t0 = std::chrono::steady_clock::now();
  auto wrong = NatsConnection::connect(c, "t");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3000ms);
  EXPECT_EQ(wrong.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(wrong.status().message().find("authorization violation"), std::string::npos)
      << wrong.status().message();
  EXPECT_NE(wrong.status().message().find("hacoord-observer"), std::string::npos) << wrong.status().message();

  // No credentials at all.
  auto anonymous = NatsConnection::connect(testNatsConfig({server_->url()}), "t");
  EXPECT_EQ(anonymous.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(anonymous.status().message().find("authorization violation"), std::string::npos)
      << anonymous.status().message();

  // URL credentials: the password is in no message, no URL hacoord reports.
  const std::string secret = passwords_["hacoord-observer"];
  auto by_url = NatsConnection::connect(testNatsConfig({urlFor("hacoord-observer")}), "t");
  ASSERT_TRUE(by_url.isOk()) << by_url.status().toString();
  EXPECT_EQ((*by_url)->userName(), "hacoord-observer");
  EXPECT_EQ((*by_url)->connectedUrl().find(secret), std::string::npos) << (*by_url)->connectedUrl();
  EXPECT_NE((*by_url)->connectedUrl().find("hacoord-observer:***@"), std::string::npos)
      << (*by_url)->connectedUrl();
  EXPECT_EQ((*by_url)->serversText().find(secret), std::string::npos);
  const std::string wrong_url =
      "nats://hacoord-observer:" + secret + "x@127.0.0.1:" + std::to_string(server_->port());
  auto refused = NatsConnection::connect(testNatsConfig({wrong_url}), "t");
  EXPECT_NE(refused.status().message().find("authorization violation"), std::string::npos)
      << refused.status().message();
  EXPECT_EQ(refused.status().message().find(secret), std::string::npos) << refused.status().message();
}

// Three daemons, each with its own user, elect a leader under the sample's permissions. The
// observer reads but cannot steer or write; a node cannot act as another node or delete the
// bucket; the operator can hand over; SIGTERM of the leader hands over. Every refusal is checked
// on what the server did (record, leader, who received what), not only on the message.
TEST_F(NatsAuthTest, OnlyTheRightUsersMaySteerTheCluster) {
  observer_config_ = writeConfig("observer", "hacoord-observer");
  const std::string operator_config = writeConfig("operator", "hacoord-operator");
  startDaemons();

  // The cluster works under least privilege: one leader, seen by the observer's `hacoord status`.
  auto [leader, epoch] = waitForLeader("", 15000ms);
  ASSERT_FALSE(leader.empty());
  const RunResult table = hacoord({"status", "--config", observer_config_});
  ASSERT_EQ(table.exit_code, 0) << describe(table);
  EXPECT_NE(table.out.find("leader    " + leader + "\n"), std::string::npos) << describe(table);
  EXPECT_TRUE(eventually(
      [&] {
        const RunResult health = hacoord({"health", "--json", "--config", observer_config_, leader});
        return health.exit_code == 0 && health.out.find("\"role\":\"leader\"") != std::string::npos;
      },
      5000ms, 100ms))
      << "the observer may ask a node's health";
  // ... and for a node's mesh round trips (`hacoord ping`, config naming that node): these daemons
  // have no mesh, which the node itself answers (so the observer reached it and it subscribed).
  const std::string observer_as_leader = writeConfig(leader, "hacoord-observer");
  const std::string other = leader == "node1" ? "node2" : "node1";
  const RunResult ping = hacoord({"ping", "--config", observer_as_leader, other});
  EXPECT_EQ(ping.exit_code, 1) << describe(ping);
  EXPECT_NE(ping.err.find("node " + leader + " has no mesh"), std::string::npos) << describe(ping);

  // The observer cannot make the leader step down: refused by the server, said so, at once.
  const RunResult demote = hacoord({"demote", "--config", observer_config_});
  EXPECT_EQ(demote.exit_code, 1) << describe(demote);
  EXPECT_NE(demote.err.find("permission denied: user hacoord-observer may not publish to "
                            "hacoord.demo.control." +
                            leader + ".stepdown"),
            std::string::npos)
      << describe(demote);
  EXPECT_EQ(demote.errLines().size(), 1u) << "one error, one line\n" << describe(demote);
  EXPECT_LT(demote.elapsed, 4000ms) << "a refusal must not wait for the request timeout\n"
                                    << describe(demote);
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"promote", "--config", observer_config_, "node2"},
        std::vector<std::string>{"leave", "--config", observer_config_, leader},
        std::vector<std::string>{"join", "--config", observer_config_, "node3"}}) {
    const RunResult r = hacoord(args);
    EXPECT_EQ(r.exit_code, 1) << args[0] << ": " << describe(r);
    EXPECT_NE(r.err.find("permission denied: user hacoord-observer"), std::string::npos)
        << args[0] << ": " << describe(r);
  }
  // None of it reached the leader: it keeps leading under the same epoch.
  EXPECT_FALSE(eventually(
      [&] {
        auto s = observedStatus();
        return !s.empty() && (s["leader"] != leader || std::stoull(s["epoch"]) != epoch);
      },
      1500ms, 100ms))
      << "the leader changed after refused control requests";

  // The observer cannot write the lease key: the server refuses the publish, the record stays.
  auto observer = connectAs("hacoord-observer");
  ASSERT_TRUE(observer);
  {
    const std::uint64_t mark = observer->refusalMark();
    const std::string forged =
        R"({"holder":"mallory","incarnation":"x","epoch":999,"leaseMs":60000,"successor":""})";
    natsMsg* msg = nullptr;
    ASSERT_EQ(natsMsg_Create(&msg, kLeaseSubject, nullptr, forged.data(), static_cast<int>(forged.size())),
              NATS_OK);
    jsPubAck* ack = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    const natsStatus s = js_PublishMsg(&ack, observer->js(), msg, nullptr, &jerr);
    natsMsg_Destroy(msg);
    jsPubAck_Destroy(ack);
    EXPECT_NE(s, NATS_OK) << "JetStream acknowledged the observer's lease write";
    EXPECT_TRUE(eventually(
        [&] { return observer->publishRefused(kLeaseSubject, mark).code() == StatusCode::kPermissionDenied; },
        2000ms))
        << "the server did not refuse the observer's publish to " << kLeaseSubject;
    const LeaseRecord record = readRecord(*observer);
    EXPECT_EQ(record.holder, leader);
    EXPECT_EQ(record.epoch.value(), epoch);
  }
  // ... nor delete the bucket.
  EXPECT_NE(js_DeleteKeyValue(observer->js(), kBucket), NATS_OK);

  // A node may not pose as another: its subscriptions to the leader's health and control subjects
  // are refused, so only the real node answers there. It may not publish to another node's
  // health subject or members key, nor send the operator's verbs; nor delete the bucket.
  const std::string victim = leader;
  const std::string impostor_node = victim == "node2" ? "node3" : "node2";
  auto impostor = connectAs("hacoord-" + impostor_node);
  ASSERT_TRUE(impostor);
  std::atomic<int> intercepted{0};
  std::vector<std::unique_ptr<NatsResponder>> fakes;
  for (const std::string& subject : {healthSubject(kCluster, victim), meshPingSubject(kCluster, victim),
                                     controlSubject(kCluster, victim, "stepdown")}) {
    auto fake = NatsResponder::subscribe(*impostor, subject, [&](std::string, NatsResponder::ReplyFn reply) {
      ++intercepted;
      reply("{\"ok\":true}");
    });
    ASSERT_TRUE(fake.isOk()) << fake.status().toString();  // refused asynchronously, by the server
    fakes.push_back(std::move(*fake));
  }
  for (int i = 0; i < 5; ++i) {
    const RunResult health = hacoord({"health", "--json", "--config", observer_config_, victim});
    EXPECT_EQ(health.exit_code, 0) << describe(health);
    auto parsed = parseFlatJson(health.out);
    ASSERT_TRUE(parsed) << describe(health);
    EXPECT_EQ((*parsed)["nodeId"], victim) << describe(health);
  }
  const RunResult victim_ping = hacoord({"ping", "--config", writeConfig(victim, "hacoord-observer"), other});
  EXPECT_NE(victim_ping.err.find("node " + victim + " has no mesh"), std::string::npos)
      << describe(victim_ping);
  EXPECT_EQ(intercepted.load(), 0) << "the server delivered " << victim << "'s requests to " << impostor_node;

  for (const std::string& subject :
       {healthSubject(kCluster, victim), meshPingSubject(kCluster, victim),
        meshPingSubject(kCluster, impostor_node), std::string("$KV.HACOORD_demo_MEMBERS.m.") + victim,
        controlSubject(kCluster, victim, "stepdown.force"), controlSubject(kCluster, victim, "leave"),
        controlSubject(kCluster, victim, "promote")}) {
    auto r = impostor->request(subject, "", 3000ms);
    EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied) << subject << ": " << r.status().toString();
    EXPECT_EQ(r.status().message(),
              "permission denied: user hacoord-" + impostor_node + " may not publish to " + subject);
  }
  // Its own members key is allowed (no bucket yet, so JetStream has no responder for it: NotFound,
  // not PermissionDenied).
  auto own_key = impostor->request("$KV.HACOORD_demo_MEMBERS.m." + impostor_node, "", 3000ms);
  EXPECT_EQ(own_key.status().code(), StatusCode::kNotFound) << own_key.status().toString();
  EXPECT_NE(js_DeleteKeyValue(impostor->js(), kBucket), NATS_OK);
  {
    const LeaseRecord record = readRecord(*observer);
    EXPECT_EQ(record.holder, leader) << "the bucket or the leader went away";
    EXPECT_EQ(record.epoch.value(), epoch);
  }
  fakes.clear();
  impostor.reset();

  // The operator's `hacoord promote`/`demote` is obeyed: a planned handover to another node.
  // stepdown.force is the operator's: allowed (a node that does not exist has no responder).
  auto op = connectAs("hacoord-operator");
  ASSERT_TRUE(op);
  auto force = op->request(controlSubject(kCluster, "ghost", "stepdown.force"), "", 3000ms);
  EXPECT_EQ(force.status().code(), StatusCode::kNotFound) << force.status().toString();
  op.reset();
  const RunResult op_demote = hacoord({"demote", "--config", operator_config});
  ASSERT_EQ(op_demote.exit_code, 0) << describe(op_demote);
  auto [second, second_epoch] = waitForLeader(leader, 10000ms);
  ASSERT_FALSE(second.empty());
  EXPECT_GT(second_epoch, epoch);

  // SIGTERM of the leader hands over to one of the others.
  ASSERT_TRUE(daemons_.at(second)->signal(SIGTERM));
  ASSERT_TRUE(daemons_.at(second)->waitExit(10000ms));
  EXPECT_EQ(daemons_.at(second)->exitCode(), 0) << daemons_.at(second)->stderrText();
  auto [third, third_epoch] = waitForLeader(second, 10000ms);
  ASSERT_FALSE(third.empty());
  EXPECT_GT(third_epoch, second_epoch);

  // The sample grants the daemons all they use: none of them was refused anything, and none of
  // them printed its password.
  for (auto& [id, d] : daemons_) {
    const std::string logs = d->stdoutText() + d->stderrText();
    EXPECT_EQ(logs.find("permission denied"), std::string::npos) << id << ":\n" << logs;
    EXPECT_EQ(logs.find(passwords_.at("hacoord-" + id)), std::string::npos) << id << " logged its password";
  }
  const std::string server_log = server_->logTail(1 << 20);
  for (const auto& node : kNodes) {
    // The impostor's refusals were provoked by the test; a daemon's own would show here too.
    if (node == impostor_node) continue;
    EXPECT_EQ(server_log.find("User \"hacoord-" + node + "\""), std::string::npos)
        << "nats-server refused something to hacoord-" << node << ":\n"
        << server_log;
  }
}

}  // namespace
}  // namespace hacoord::test
