// The hacoord command line against a real nats-server: exit codes, one-line errors, daemon + status.
#include <gtest/gtest.h>

#include "hacoord/config.h"
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include "mesh/certs.h"
#include "support/child_process.h"
#include "support/eventually.h"
#include "support/nats_server_fixture.h"

namespace hacoord::test {
namespace {

using namespace std::chrono_literals;

constexpr milliseconds kRunLimit = 15000ms;  // no CLI call may hang longer than this

std::string describe(const RunResult& r) {
  return "exit " + std::to_string(r.exit_code) + (r.timed_out ? " (timed out)" : "") + " after " +
         std::to_string(r.elapsed.count()) + " ms\nstdout:\n" + r.out + "\nstderr:\n" + r.err;
}

RunResult hacoord(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {HACOORD_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  return runProcess(argv, kRunLimit);
}

class CliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new NatsServer(); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override { dir_ = makeTempDir("hacoord-cli"); }
  void TearDown() override {
    if (daemon_ && HasFailure()) {
      std::cerr << "--- daemon stderr:\n" << daemon_->stderrText() << "\n";
    }
    daemon_.reset();
    removeTree(dir_);
  }

  std::string clusterId() const {
    // Ids are at most 64 characters: long test names are cut (they stay unique in their first 60).
    return (std::string("cli-") + ::testing::UnitTest::GetInstance()->current_test_info()->name())
        .substr(0, 64);
  }
  // A valid config for node `node` of this test's cluster on `url`.
  // `extra`: more top-level members, e.g. R"("hooks":{...})".
  std::string writeConfig(const std::string& node, const std::string& url, const std::string& extra = "") {
    const std::string path = dir_ + "/" + node + ".json";
    writeTextFile(path, R"({"clusterId":")" + clusterId() + R"(","nodeId":")" + node + R"(","stateDir":")" +
                            dir_ + R"(","nats":{"servers":[")" + url +
                            R"("],"connectTimeoutMs":1000,"requestTimeoutMs":1000},)"
                            R"("election":{"leaseTtlMs":1000,"renewIntervalMs":250})" +
                            (extra.empty() ? "" : "," + extra) + "}");
    return path;
  }
  // Starts daemon_ on `path` and waits until `hacoord status` names `node` the leader.
  ::testing::AssertionResult startDaemonAndWaitUntilItLeads(const std::string& path,
                                                            const std::string& node) {
    daemon_ =
        std::make_unique<ChildProcess>(std::vector<std::string>{HACOORD_BINARY, "daemon", "--config", path});
    RunResult last;
    const bool leads = eventually(
        [&] {
          last = hacoord({"status", "--config", path, "--json"});
          auto parsed = parseFlatJson(last.out);
          return last.exit_code == 0 && parsed && (*parsed)["leader"] == node;
        },
        10000ms, 50ms);
    if (leads) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << node << " never led: " << describe(last) << "\n"
                                         << daemon_->stderrText();
  }
  std::string writeRaw(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    writeTextFile(path, text);
    return path;
  }

  static NatsServer* server_;
  std::string dir_;
  std::unique_ptr<ChildProcess> daemon_;
};

NatsServer* CliTest::server_ = nullptr;

TEST_F(CliTest, VersionExitsZero) {
  const RunResult r = hacoord({"version"});
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(r.out.rfind("hacoord ", 0), 0u) << describe(r);
  EXPECT_EQ(r.err, "") << describe(r);
}

TEST_F(CliTest, UnknownCommandIsAUsageErrorOnOneLine) {
  const RunResult r = hacoord({"frobnicate"});
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  ASSERT_EQ(r.errLines().size(), 1u) << describe(r);
  EXPECT_NE(r.errLines()[0].find("frobnicate"), std::string::npos) << describe(r);
  EXPECT_EQ(r.out, "") << describe(r);
}

TEST_F(CliTest, StatusWithABadConfigNamesTheFileAndTheJsonPath) {
  const std::string path =
      writeRaw("bad.json", R"({"clusterId":"c","nodeId":"n","nats":{"servers":["nats://127.0.0.1:4222"]},)"
                           R"("election":{"leaseTtlMs":"fast"}})");
  const RunResult r = hacoord({"status", "--config", path});
  EXPECT_EQ(r.exit_code, 3) << describe(r);
  ASSERT_EQ(r.errLines().size(), 1u) << describe(r);
  EXPECT_NE(r.errLines()[0].find("bad.json: election.leaseTtlMs: "), std::string::npos) << describe(r);
  EXPECT_NE(r.errLines()[0].find("election.leaseTtlMs"), std::string::npos) << describe(r);

  const RunResult missing = hacoord({"status", "--config", dir_ + "/nope.json"});
  EXPECT_EQ(missing.exit_code, 3) << describe(missing);
  ASSERT_EQ(missing.errLines().size(), 1u) << describe(missing);
  EXPECT_NE(missing.errLines()[0].find("nope.json"), std::string::npos) << describe(missing);
}

TEST_F(CliTest, StatusWithoutNatsFailsQuicklyWithOneClearLine) {
  const int port = freeLoopbackPort();  // nothing listens there
  const std::string path = writeConfig("n1", "nats://127.0.0.1:" + std::to_string(port));
  const RunResult r = hacoord({"status", "--config", path});
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_LT(r.elapsed.count(), 5000) << describe(r);
  ASSERT_EQ(r.errLines().size(), 1u) << describe(r);
  EXPECT_NE(r.errLines()[0].find("127.0.0.1:" + std::to_string(port)), std::string::npos) << describe(r);
}

TEST_F(CliTest, StatusBeforeAnyNodeRanSaysTheBucketDoesNotExist) {
  const std::string path = writeConfig("n1", server_->url());
  const RunResult r = hacoord({"status", "--config", path});
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  ASSERT_EQ(r.errLines().size(), 1u) << describe(r);
  EXPECT_NE(r.errLines()[0].find("bucket HACOORD_" + clusterId()), std::string::npos) << describe(r);
  EXPECT_NE(r.errLines()[0].find("does not exist"), std::string::npos) << describe(r);
}

TEST_F(CliTest, DaemonLeadsStatusShowsItAndSigtermHandsOver) {
  const std::string path = writeConfig("d1", server_->url());
  daemon_ =
      std::make_unique<ChildProcess>(std::vector<std::string>{HACOORD_BINARY, "daemon", "--config", path});

  std::map<std::string, std::string> status;
  RunResult last;
  const bool leads = eventually(
      [&] {
        last = hacoord({"status", "--config", path, "--json"});
        if (last.exit_code != 0) return false;
        auto parsed = parseFlatJson(last.out);
        if (!parsed) return false;
        status = *parsed;
        return status["leader"] == "d1";
      },
      10000ms, 50ms);
  ASSERT_TRUE(leads) << describe(last);
  EXPECT_GE(std::stoull(status["epoch"]), 1u) << last.out;
  EXPECT_EQ(status["vacant"], "false") << last.out;
  EXPECT_EQ(status["cluster"], clusterId()) << last.out;
  const std::string epoch = status["epoch"];

  // (Retried like the JSON one: a slow process start can make a live lease look old.)
  RunResult human;
  EXPECT_TRUE(eventually(
      [&] {
        human = hacoord({"status", "--config", path});
        return human.exit_code == 0 && human.out.find("leader    d1\n") != std::string::npos;
      },
      10000ms, 50ms))
      << describe(human);
  EXPECT_NE(human.out.find("epoch     " + epoch + "\n"), std::string::npos) << describe(human);

  // SIGTERM: planned handover, exit 0, the record left vacant under the same epoch.
  ASSERT_TRUE(daemon_->signal(SIGTERM));
  ASSERT_TRUE(daemon_->waitExit(10000ms)) << daemon_->stderrText();
  EXPECT_EQ(daemon_->exitCode(), 0) << daemon_->stderrText();
  const RunResult after = hacoord({"status", "--config", path, "--json"});
  ASSERT_EQ(after.exit_code, 0) << describe(after);
  EXPECT_NE(after.out.find("\"vacant\":true"), std::string::npos) << describe(after);
  auto parsed = parseFlatJson(after.out);
  ASSERT_TRUE(parsed) << after.out;
  EXPECT_EQ((*parsed)["holder"], "") << after.out;
  EXPECT_EQ((*parsed)["leader"], "") << after.out;
  EXPECT_EQ((*parsed)["epoch"], epoch) << after.out;

  const RunResult vacant_human = hacoord({"status", "--config", path});
  EXPECT_EQ(vacant_human.exit_code, 0) << describe(vacant_human);
  EXPECT_NE(vacant_human.out.find("vacant"), std::string::npos) << describe(vacant_human);
}

// `hacoord init` writes a commented sample that the loader accepts as it stands, and never
// overwrites a file without --force.
TEST_F(CliTest, InitWritesACommentedSampleThatLoads) {
  const std::string path = dir_ + "/init.json";
  const RunResult r = hacoord({"init", "--cluster", "prod", "--node", "db1", path});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  auto loaded = loadConfigFile(path);
  ASSERT_TRUE(loaded.isOk()) << loaded.status().toString();
  EXPECT_EQ(loaded->cluster_id, "prod");
  EXPECT_EQ(loaded->node_id, "db1");
  EXPECT_TRUE(loaded->vip.enabled());
  const RunResult again = hacoord({"init", path});
  EXPECT_EQ(again.exit_code, 1) << describe(again);
  EXPECT_NE(again.err.find("exists"), std::string::npos) << describe(again);
  const RunResult bad = hacoord({"init", "--node", "no spaces"});
  EXPECT_EQ(bad.exit_code, 2) << describe(bad);
}

unsigned fileMode(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0xffffu;
}

TEST_F(CliTest, CertsInitCaAndIssueWriteKeysPrivatelyAndNeverOverwrite) {
  const std::string ca = dir_ + "/ca";
  const RunResult init = hacoord({"certs", "init-ca", "--dir", ca});
  ASSERT_EQ(init.exit_code, 0) << describe(init);
  EXPECT_NE(init.out.find("wrote " + ca + "/ca.key"), std::string::npos) << describe(init);
  EXPECT_NE(init.out.find("wrote " + ca + "/ca.crt"), std::string::npos) << describe(init);
  EXPECT_EQ(fileMode(ca), 0700u);
  EXPECT_EQ(fileMode(ca + "/ca.key"), 0600u);
  EXPECT_EQ(fileMode(ca + "/ca.crt"), 0644u);

  const RunResult issue = hacoord({"certs", "issue", "--dir", ca, "--cluster", "prod", "--node", "db1"});
  ASSERT_EQ(issue.exit_code, 0) << describe(issue);
  const std::string out = ca + "/db1";  // the documented default
  for (const std::string name : {"db1.key", "db1.crt", "ca.crt"}) {
    EXPECT_NE(issue.out.find("wrote " + out + "/" + name), std::string::npos) << name << "\n"
                                                                              << describe(issue);
  }
  EXPECT_EQ(fileMode(out + "/db1.key"), 0600u);
  EXPECT_EQ(fileMode(out + "/db1.crt"), 0644u);
  EXPECT_EQ(fileMode(out + "/ca.crt"), 0644u);
  EXPECT_FALSE(std::filesystem::exists(out + "/ca.key"));
  EXPECT_NE(issue.out.find("identity hacoord://prod/db1\n"), std::string::npos) << describe(issue);
  auto fingerprint = mesh::fingerprintOfPemFile(out + "/db1.crt");
  ASSERT_TRUE(fingerprint.isOk()) << fingerprint.status().toString();
  EXPECT_NE(issue.out.find("sha256 " + *fingerprint + "\n"), std::string::npos) << describe(issue);

  // Nothing is overwritten: the same files are refused, byte for byte unchanged, exit 1.
  const std::string key_before = readTextFile(out + "/db1.key");
  const std::string ca_key_before = readTextFile(ca + "/ca.key");
  const RunResult again = hacoord({"certs", "issue", "--dir", ca, "--cluster", "prod", "--node", "db1"});
  EXPECT_EQ(again.exit_code, 1) << describe(again);
  ASSERT_EQ(again.errLines().size(), 1u) << describe(again);
  EXPECT_NE(again.err.find(out + "/db1.key already exists"), std::string::npos) << describe(again);
  EXPECT_EQ(readTextFile(out + "/db1.key"), key_before);
  const RunResult init_again = hacoord({"certs", "init-ca", "--dir", ca});
  EXPECT_EQ(init_again.exit_code, 1) << describe(init_again);
  EXPECT_NE(init_again.err.find(ca + "/ca.key already exists"), std::string::npos) << describe(init_again);
  EXPECT_EQ(readTextFile(ca + "/ca.key"), ca_key_before);

  // The CA directory is never a node directory.
  const RunResult into_ca =
      hacoord({"certs", "issue", "--dir", ca, "--cluster", "prod", "--node", "db2", "--out", ca});
  EXPECT_EQ(into_ca.exit_code, 1) << describe(into_ca);
  EXPECT_NE(into_ca.err.find("CA directory"), std::string::npos) << describe(into_ca);
  EXPECT_FALSE(std::filesystem::exists(ca + "/db2.key"));

  // Usage errors: exit 2, one line naming what is wrong.
  const std::vector<std::pair<std::vector<std::string>, std::string>> usage = {
      {{"certs"}, "missing subcommand"},
      {{"certs", "sign"}, "unknown subcommand 'sign'"},
      {{"certs", "init-ca"}, "--dir is required"},
      {{"certs", "init-ca", "--dir", ca, "--node", "x"}, "does not take --node"},
      {{"certs", "issue", "--dir", ca, "--node", "db3"}, "--cluster is required"},
      {{"certs", "issue", "--dir", ca, "--cluster", "prod"}, "--node is required"},
      {{"certs", "issue", "--dir", ca, "--cluster", "prod", "--node", "a b"}, "--node 'a b' has ' '"},
      {{"certs", "issue", "--dir", ca, "--cluster", "-p", "--node", "db3"}, "--cluster '-p' starts with '-'"},
      {{"certs", "issue", "--dir", ca, "--cluster", "prod", "--node", "db3", "--force"},
       "does not take --force"},
  };
  for (const auto& [args, text] : usage) {
    const RunResult r = hacoord(args);
    EXPECT_EQ(r.exit_code, 2) << describe(r);
    ASSERT_EQ(r.errLines().size(), 1u) << describe(r);
    EXPECT_NE(r.err.find(text), std::string::npos) << text << "\n" << describe(r);
  }
  EXPECT_FALSE(std::filesystem::exists(ca + "/db3"));
}

// The notify hooks of a daemon config (keepalived's notify_master / notify_backup): the documented
// environment, output into the daemon's log under the hook's name, become before lose, and a
// SIGTERM handover that runs onLoseLeadership before the record is left vacant.
TEST_F(CliTest, DaemonRunsTheNotifyHooksInOrderWithTheirEnvironment) {
  const std::string events = dir_ + "/events";
  const std::string extra =
      R"("hooks":{"onBecomeLeader":"echo become $HACOORD_NODE $HACOORD_EPOCH $HACOORD_REASON >> )" + events +
      R"(; echo promoted-for-test","onLoseLeadership":"echo lose $HACOORD_EPOCH $HACOORD_REASON >> )" +
      events + R"(","onLeaderChange":"echo change $HACOORD_LEADER $HACOORD_EPOCH >> )" + events + R"("})";
  const std::string path = writeConfig("h1", server_->url(), extra);
  daemon_ =
      std::make_unique<ChildProcess>(std::vector<std::string>{HACOORD_BINARY, "daemon", "--config", path});
  std::string text;
  ASSERT_TRUE(eventually(
      [&] {
        text = readTextFile(events);
        return text.find("become h1 ") != std::string::npos;
      },
      10000ms))
      << text << "\n"
      << daemon_->stderrText();
  ASSERT_TRUE(eventually(
      [&] { return daemon_->stderrText().find("onBecomeLeader: promoted-for-test") != std::string::npos; },
      5000ms))
      << daemon_->stderrText();
  ASSERT_TRUE(daemon_->signal(SIGTERM));
  ASSERT_TRUE(daemon_->waitExit(10000ms)) << daemon_->stderrText();
  EXPECT_EQ(daemon_->exitCode(), 0) << daemon_->stderrText();
  text = readTextFile(events);
  const auto become = text.find("become h1 1 elected\n");
  const auto lose = text.find("lose 1 stopped\n");
  ASSERT_NE(become, std::string::npos) << text;
  ASSERT_NE(lose, std::string::npos) << text;
  EXPECT_LT(become, lose) << text;
  EXPECT_NE(text.find("change h1 1\n"), std::string::npos) << text;
  const RunResult after = hacoord({"status", "--config", path, "--json"});
  EXPECT_NE(after.out.find("\"vacant\":true"), std::string::npos) << describe(after);
}

// A failing onLoseLeadership (the service could not be stopped) must not hand the lease over: on
// SIGTERM the record keeps the old holder and is left to expire, as after a crash.
TEST_F(CliTest, AFailingLoseHookLeavesTheLeaseToExpireInsteadOfReleasingIt) {
  const std::string path = writeConfig(
      "h2", server_->url(), R"("hooks":{"onLoseLeadership":"echo cannot stop the service; exit 1"})");
  ASSERT_TRUE(startDaemonAndWaitUntilItLeads(path, "h2"));
  ASSERT_TRUE(daemon_->signal(SIGTERM));
  ASSERT_TRUE(daemon_->waitExit(10000ms)) << daemon_->stderrText();
  EXPECT_NE(daemon_->stderrText().find("onLoseLeadership: cannot stop the service"), std::string::npos)
      << daemon_->stderrText();
  const RunResult after = hacoord({"status", "--config", path, "--json"});
  ASSERT_EQ(after.exit_code, 0) << describe(after);
  auto parsed = parseFlatJson(after.out);
  ASSERT_TRUE(parsed) << after.out;
  EXPECT_EQ((*parsed)["holder"], "h2") << "the lease was released although the hook failed: " << after.out;
  EXPECT_EQ((*parsed)["vacant"], "false") << after.out;
}

// A non-zero onBecomeLeader makes the node step down (and say why in its log).
TEST_F(CliTest, AFailingBecomeHookStepsTheDaemonDown) {
  const std::string path = writeConfig("h3", server_->url(), R"("hooks":{"onBecomeLeader":"exit 4"})");
  daemon_ =
      std::make_unique<ChildProcess>(std::vector<std::string>{HACOORD_BINARY, "daemon", "--config", path});
  ASSERT_TRUE(eventually(
      [&] {
        const std::string err = daemon_->stderrText();
        return err.find("onBecomeLeader command (epoch 1): exit 4") != std::string::npos &&
               err.find("steps down from epoch 1") != std::string::npos;
      },
      10000ms))
      << daemon_->stderrText();
}

// SIGTERM while the daemon is still starting (connected to NATS, not yet serving), or right behind
// a SIGHUP reload, is a planned stop with exit 0: never the default action (exit 143).
TEST_F(CliTest, SigtermDuringStartOrReloadIsAPlannedStop) {
  const std::string path = writeConfig("s1", server_->url());
  daemon_ =
      std::make_unique<ChildProcess>(std::vector<std::string>{HACOORD_BINARY, "daemon", "--config", path});
  ASSERT_TRUE(eventually([&] { return daemon_->stderrText().find("connected to NATS") != std::string::npos; },
                         10000ms, 1ms))
      << daemon_->stderrText();
  ASSERT_TRUE(daemon_->signal(SIGTERM));
  ASSERT_TRUE(daemon_->waitExit(10000ms)) << daemon_->stderrText();
  EXPECT_EQ(daemon_->exitCode(), 0) << daemon_->stderrText();

  daemon_ =
      std::make_unique<ChildProcess>(std::vector<std::string>{HACOORD_BINARY, "daemon", "--config", path});
  ASSERT_TRUE(eventually(
      [&] { return daemon_->stderrText().find("health checks started") != std::string::npos; }, 10000ms))
      << daemon_->stderrText();
  ASSERT_TRUE(daemon_->signal(SIGHUP));
  ASSERT_TRUE(daemon_->signal(SIGTERM));
  ASSERT_TRUE(daemon_->waitExit(10000ms)) << daemon_->stderrText();
  EXPECT_EQ(daemon_->exitCode(), 0) << daemon_->stderrText();
}

// One runtime: the daemon's thread count does not grow with its health checks (no thread per
// check, per scheduler or per queue), and every thread hacoord names is one of the documented ones.
TEST_F(CliTest, DaemonThreadsAreTheDocumentedOnesWhateverTheChecks) {
  auto threads = [&](int checks) {
    std::string list;
    for (int i = 0; i < checks; ++i) {
      list += std::string(i ? "," : "") + R"({"name":"c)" + std::to_string(i) +
              R"(","type":"command","command":"true","intervalMs":200,"timeoutMs":100})";
    }
    const std::string path =
        writeConfig("t" + std::to_string(checks), server_->url(), R"("health":{"checks":[)" + list + "]}");
    ChildProcess d({HACOORD_BINARY, "daemon", "--config", path});
    std::map<std::string, int> names;
    EXPECT_TRUE(eventually(
        [&] {
          if (d.stderrText().find("became leader") == std::string::npos) return false;
          names.clear();
          std::error_code ec;
          for (const auto& t :
               std::filesystem::directory_iterator("/proc/" + std::to_string(d.pid()) + "/task", ec)) {
            std::string comm = readTextFile(t.path().string() + "/comm");
            if (!comm.empty() && comm.back() == '\n') comm.pop_back();
            ++names[comm];
          }
          return !names.empty();
        },
        10000ms))
        << d.stderrText();
    d.signal(SIGTERM);
    EXPECT_TRUE(d.waitExit(10000ms));
    return names;
  };
  const auto one = threads(1);
  const auto eight = threads(8);
  int total_one = 0;
  int total_eight = 0;
  for (const auto& [name, n] : one) total_one += n;
  for (const auto& [name, n] : eight) total_eight += n;
  EXPECT_EQ(total_one, total_eight) << "threads grow with the number of checks";
  for (const auto& [name, n] : eight) {
    if (!name.starts_with("hc-")) continue;  // nats.c's threads keep their creator's name
    EXPECT_TRUE(name == "hc-io" || name == "hc-block" || name == "hc-hooks" || name == "hc-kvread" ||
                name == "hc-kvwrite" || name == "hc-kvwatch")
        << "undocumented thread " << name;
  }
  EXPECT_EQ(eight.count("hc-hooks") ? eight.at("hc-hooks") : 0, 1);
  EXPECT_EQ(eight.count("hc-kvwrite") ? eight.at("hc-kvwrite") : 0, 1);
  EXPECT_EQ(eight.count("hc-kvwatch") ? eight.at("hc-kvwatch") : 0, 1);
  EXPECT_GE(eight.count("hc-block") ? eight.at("hc-block") : 0, 2);
}

// SIGHUP reloads the checks: a check added by a reload that fails makes `hacoord health` exit 1
// naming it, while the unchanged check keeps its run of passes (its rise/fall state survives).
TEST_F(CliTest, SighupReloadsChecksAndHealthExitsOneWhenUnhealthy) {
  const std::string flag = dir_ + "/up";
  writeTextFile(flag, "");
  const std::string keep =
      R"({"name":"keep","type":"command","command":"true","intervalMs":100,"timeoutMs":50})";
  const std::string path = writeConfig("r1", server_->url(), R"("health":{"checks":[)" + keep + "]}");
  daemon_ =
      std::make_unique<ChildProcess>(std::vector<std::string>{HACOORD_BINARY, "daemon", "--config", path});
  // The consecutive passes of check `name` in a `health --json` answer (-1 when not there).
  auto passes = [](const std::string& json, const std::string& name) {
    const auto at = json.find("\"name\":\"" + name + "\"");
    if (at == std::string::npos) return -1;
    const auto object = json.rfind('{', at);
    const auto field = json.find("\"consecutivePasses\":", object);
    return field == std::string::npos ? -1 : std::stoi(json.substr(field + 20));
  };
  RunResult h;
  ASSERT_TRUE(eventually(
      [&] {
        h = hacoord({"health", "--config", path, "r1", "--json"});
        return h.exit_code == 0 && passes(h.out, "keep") >= 5;
      },
      10000ms, 50ms))
      << describe(h);
  const int kept_before = passes(h.out, "keep");
  const std::string added = R"({"name":"flag","type":"command","command":"test -e )" + flag +
                            R"(","intervalMs":100,"timeoutMs":50,"fall":1})";
  writeConfig("r1", server_->url(), R"("health":{"checks":[)" + keep + "," + added + "]}");
  ASSERT_TRUE(daemon_->signal(SIGHUP));
  ASSERT_TRUE(eventually(
      [&] {
        h = hacoord({"health", "--config", path, "r1", "--json"});
        return h.out.find("\"flag\"") != std::string::npos;
      },
      10000ms, 50ms))
      << describe(h) << daemon_->stderrText();
  EXPECT_EQ(h.exit_code, 0) << "the new passing check must not make the node unhealthy: " << describe(h);
  // The kept check's passes went on counting across the reload (not reset).
  EXPECT_GE(passes(h.out, "keep"), kept_before) << h.out;

  std::filesystem::remove(flag);
  ASSERT_TRUE(eventually(
      [&] {
        h = hacoord({"health", "--config", path, "r1"});
        return h.exit_code == 1;
      },
      10000ms, 50ms))
      << describe(h);
  EXPECT_NE(h.out.find("healthy   no"), std::string::npos) << describe(h);
  EXPECT_NE(h.out.find("flag"), std::string::npos) << describe(h);
  EXPECT_NE(h.out.find("FAIL"), std::string::npos) << describe(h);

  // A config that does not load is logged and the running one kept.
  writeTextFile(path, "{ not json");
  ASSERT_TRUE(daemon_->signal(SIGHUP));
  ASSERT_TRUE(eventually(
      [&] { return daemon_->stderrText().find("SIGHUP: keeping the running config") != std::string::npos; },
      5000ms))
      << daemon_->stderrText();
  EXPECT_FALSE(daemon_->exited()) << daemon_->stderrText();
}

// An onLoseLeadership that overruns its time limit during a planned handover: the record stays
// held by the old leader (left to expire), never released while the service may still be up.
TEST_F(CliTest, ALoseHookPastItsLimitDuringAHandoverKeepsTheRecordHeld) {
  const std::string path =
      writeRaw("o1.json", R"({"clusterId":")" + clusterId() + R"(","nodeId":"o1","stateDir":")" + dir_ +
                              R"(","nats":{"servers":[")" + server_->url() +
                              R"("]},)"
                              R"("election":{"leaseTtlMs":1000,"renewIntervalMs":250,"hookTimeLimitMs":300},)"
                              R"("hooks":{"onLoseLeadership":"sleep 5"}})");
  ASSERT_TRUE(startDaemonAndWaitUntilItLeads(path, "o1"));
  ASSERT_TRUE(daemon_->signal(SIGTERM));
  ASSERT_TRUE(daemon_->waitExit(10000ms)) << daemon_->stderrText();
  // Killed within its limit counted from its queueing (a little less than 300 ms of its own).
  EXPECT_TRUE(std::regex_search(
      daemon_->stderrText(), std::regex("onLoseLeadership command \\(epoch 1\\): no exit within [0-9]+ ms")))
      << daemon_->stderrText();
  const RunResult after = hacoord({"status", "--config", path, "--json"});
  auto parsed = parseFlatJson(after.out);
  ASSERT_TRUE(parsed) << describe(after);
  EXPECT_EQ((*parsed)["holder"], "o1") << "released although the hook overran: " << after.out;
}

// Mutual TLS set up only through the JSON config (nats.tls.ca/cert/key): the daemon leads, the CLI
// reads the status over TLS, and after a nats-server restart the daemon reconnects over TLS and
// leads again (its watch and renewals work on the new connection).
// One handover per cooldown across the cluster, end to end through the CLI: the lone daemon's
// first term began on an empty bucket (no handover), so a demote goes; the term it then takes
// back (a released lease: a handover) refuses a plain demote, and `--force` goes past the limit.
TEST_F(CliTest, DemoteIsRateLimitedAcrossHandoversAndForceGoesPastIt) {
  const std::string path = writeRaw(
      "f1.json", R"({"clusterId":")" + clusterId() + R"(","nodeId":"f1","stateDir":")" + dir_ +
                     R"(","nats":{"servers":[")" + server_->url() +
                     R"("]},"election":{"leaseTtlMs":1000,"renewIntervalMs":250,"cooldownMs":60000}})");
  ASSERT_TRUE(startDaemonAndWaitUntilItLeads(path, "f1"));
  const RunResult first = hacoord({"demote", "--config", path});
  ASSERT_EQ(first.exit_code, 0) << describe(first);
  // Alone, it takes its released lease back after a vacant TTL.
  RunResult status;
  ASSERT_TRUE(eventually(
      [&] {
        status = hacoord({"status", "--config", path, "--json"});
        auto parsed = parseFlatJson(status.out);
        return parsed && (*parsed)["leader"] == "f1" && (*parsed)["epoch"] == "2";
      },
      10000ms, 50ms))
      << describe(status);
  const RunResult plain = hacoord({"demote", "--config", path});
  EXPECT_EQ(plain.exit_code, 1) << describe(plain);
  EXPECT_NE(plain.err.find("took over in a handover"), std::string::npos) << describe(plain);
  const RunResult forced = hacoord({"demote", "--config", path, "--force"});
  EXPECT_EQ(forced.exit_code, 0) << describe(forced);
  const RunResult misuse = hacoord({"join", "--config", path, "--force"});
  EXPECT_EQ(misuse.exit_code, 2) << describe(misuse);
  EXPECT_NE(misuse.err.find("--force is for promote and demote"), std::string::npos) << describe(misuse);
}

TEST_F(CliTest, DaemonOverMutualTlsFromTheJsonConfigReconnectsAfterAServerRestart) {
  NatsServerOptions options;
  options.tls = makeTestCerts(dir_);
  NatsServer tls_server(options);
  const TlsMaterial& m = *options.tls;
  const std::string tls =
      R"("tls":{"ca":")" + m.ca + R"(","cert":")" + m.client_cert + R"(","key":")" + m.client_key + R"("})";
  const std::string path = writeRaw(
      "tls.json", R"({"clusterId":")" + clusterId() + R"(","nodeId":"t1","stateDir":")" + dir_ +
                      R"(","nats":{"servers":["tls://127.0.0.1:)" + std::to_string(tls_server.port()) +
                      R"("],"connectTimeoutMs":1000,"requestTimeoutMs":1000,"reconnectWaitMs":50,)"
                      R"("reconnectWaitMaxMs":250,)" +
                      tls + R"(},"election":{"leaseTtlMs":1000,"renewIntervalMs":250}})");
  ASSERT_TRUE(startDaemonAndWaitUntilItLeads(path, "t1"));
  tls_server.restart();
  ASSERT_TRUE(eventually(
      [&] { return daemon_->stderrText().find("reconnected to NATS") != std::string::npos; }, 15000ms))
      << daemon_->stderrText();
  RunResult last;
  ASSERT_TRUE(eventually(
      [&] {
        last = hacoord({"health", "--config", path, "t1", "--json"});
        return last.exit_code == 0 && last.out.find("\"role\":\"leader\"") != std::string::npos;
      },
      15000ms, 100ms))
      << describe(last) << daemon_->stderrText();
  // A client without a certificate is refused by the server (mutual TLS is really on).
  const std::string plain =
      writeRaw("plain.json", R"({"clusterId":")" + clusterId() +
                                 R"(","nodeId":"p1","nats":{"servers":["tls://127.0.0.1:)" +
                                 std::to_string(tls_server.port()) +
                                 R"("],"connectTimeoutMs":1000,"tls":{"ca":")" + m.ca + R"("}}})");
  const RunResult refused = hacoord({"status", "--config", plain});
  EXPECT_EQ(refused.exit_code, 1) << describe(refused);
  ASSERT_TRUE(daemon_->signal(SIGTERM));
  ASSERT_TRUE(daemon_->waitExit(10000ms)) << daemon_->stderrText();
  EXPECT_EQ(daemon_->exitCode(), 0) << daemon_->stderrText();
}

// Every control command reports a node that is not running as down, quickly, exit 1.
TEST_F(CliTest, ControlCommandsReportAMissingNodeAsDown) {
  const std::string path = writeConfig("c1", server_->url());
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"health", "--config", path, "ghost"},
        std::vector<std::string>{"promote", "--config", path, "ghost"},
        std::vector<std::string>{"demote", "--config", path, "ghost"},
        std::vector<std::string>{"join", "--config", path, "ghost"},
        std::vector<std::string>{"leave", "--config", path, "ghost"}}) {
    const RunResult r = hacoord(args);
    EXPECT_EQ(r.exit_code, 1) << args[0] << ": " << describe(r);
    ASSERT_EQ(r.errLines().size(), 1u) << args[0] << ": " << describe(r);
    EXPECT_NE(r.errLines()[0].find("down"), std::string::npos) << args[0] << ": " << describe(r);
    EXPECT_LT(r.elapsed, std::chrono::milliseconds(5000)) << args[0];
  }
}

TEST_F(CliTest, DaemonWithABadConfigExitsThree) {
  const std::string path = writeRaw("bad.json", R"({"clusterId":"c","nodeId":"n"})");
  ChildProcess daemon({HACOORD_BINARY, "daemon", "--config", path});
  ASSERT_TRUE(daemon.waitExit(kRunLimit)) << "daemon with a bad config kept running";
  EXPECT_EQ(daemon.exitCode(), 3) << daemon.stderrText();
  daemon.waitOutputClosed(2000ms);
  const std::string err = daemon.stderrText();
  // One line naming the file and the JSON path.
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_NE(err.find("bad.json: nats.servers: "), std::string::npos) << err;
}

TEST_F(CliTest, DaemonWithoutNatsExitsOneQuickly) {
  const int port = freeLoopbackPort();
  const std::string path = writeConfig("d1", "nats://127.0.0.1:" + std::to_string(port));
  const RunResult r = hacoord({"daemon", "--config", path});
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_LT(r.elapsed.count(), 5000) << describe(r);
  EXPECT_NE(r.err.find("127.0.0.1:" + std::to_string(port)), std::string::npos) << describe(r);
}

}  // namespace
}  // namespace hacoord::test
