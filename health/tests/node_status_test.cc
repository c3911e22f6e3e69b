// NodeStatus JSON: exact camelCase keys, round trip, and clear errors for garbage.
#include "hacoord/node_status.h"

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <json/json.h>

namespace hacoord {
namespace {

NodeStatus sample() {
  NodeStatus s;
  s.node_id = "node-1";
  s.role = "leader";
  s.leader = "node-1";
  s.epoch = 18446744073709551615ull;  // the whole uint64 range survives
  s.uptime_ms = 123456789012;
  s.nats_connected = true;
  s.vip = {"192.0.2.10", true};
  s.checks = {{"db", "command", true, "pass", 5, 0},
              {"web", "http", false, "fail: HTTP 500 Internal Server Error", 0, 3}};
  s.healthy = false;
  s.candidate = false;
  s.hooks_overrunning = true;
  s.version = "0.1.0";
  s.peers = {{"n2", "alive", "", "dc1/r2", "db", 7, 1.25, 3.5, "127.0.0.1:4100"},
             {"n3", "dead", "departed", "", "", 18446744073709551615ull, 0, 0, ""}};
  return s;
}

Json::Value parse(const std::string& text) {
  Json::Value v;
  Json::CharReaderBuilder b;
  std::string errors;
  std::unique_ptr<Json::CharReader> r(b.newCharReader());
  EXPECT_TRUE(r->parse(text.data(), text.data() + text.size(), &v, &errors)) << errors;
  return v;
}

// Re-serialises `v` after `edit`, for garbage built from a valid document.
std::string edited(const std::function<void(Json::Value&)>& edit) {
  Json::Value v = parse(sample().toJson());
  edit(v);
  Json::StreamWriterBuilder w;
  return Json::writeString(w, v);
}

TEST(NodeStatusJson, UsesTheDesignKeys) {
  Json::Value v = parse(sample().toJson());
  std::vector<std::string> keys = v.getMemberNames();
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(keys, (std::vector<std::string>{"candidate", "checks", "epoch", "healthy", "hooksOverrunning",
                                            "leader", "natsConnected", "nodeId", "peers", "role", "uptimeMs",
                                            "version", "vip"}));
  EXPECT_EQ(v["nodeId"].asString(), "node-1");
  EXPECT_EQ(v["epoch"].asUInt64(), 18446744073709551615ull);
  EXPECT_EQ(v["uptimeMs"].asInt64(), 123456789012);
  EXPECT_EQ(v["vip"]["address"].asString(), "192.0.2.10");
  EXPECT_TRUE(v["vip"]["held"].asBool());
  ASSERT_EQ(v["checks"].size(), 2u);
  EXPECT_EQ(v["checks"][1]["name"].asString(), "web");
  EXPECT_EQ(v["checks"][1]["type"].asString(), "http");
  EXPECT_FALSE(v["checks"][1]["healthy"].asBool());
  EXPECT_EQ(v["checks"][1]["lastResult"].asString(), "fail: HTTP 500 Internal Server Error");
  EXPECT_EQ(v["checks"][1]["consecutivePasses"].asInt(), 0);
  EXPECT_EQ(v["checks"][1]["consecutiveFailures"].asInt(), 3);
  ASSERT_EQ(v["peers"].size(), 2u);
  std::vector<std::string> peer_keys = v["peers"][0].getMemberNames();
  std::sort(peer_keys.begin(), peer_keys.end());
  EXPECT_EQ(peer_keys, (std::vector<std::string>{"address", "division", "id", "incarnation", "reason",
                                                 "rttMs", "rttP99Ms", "state", "type"}));
  EXPECT_EQ(v["peers"][0]["state"].asString(), "alive");
  EXPECT_DOUBLE_EQ(v["peers"][0]["rttMs"].asDouble(), 1.25);
  EXPECT_EQ(v["peers"][1]["reason"].asString(), "departed");
  EXPECT_EQ(v["peers"][1]["incarnation"].asUInt64(), 18446744073709551615ull);
  // One line: replies travel as single NATS messages and are logged as such.
  EXPECT_EQ(sample().toJson().find('\n'), std::string::npos);
}

TEST(NodeStatusJson, RoundTrips) {
  const NodeStatus s = sample();
  auto back = NodeStatus::fromJson(s.toJson());
  ASSERT_TRUE(back.isOk()) << back.status().toString();
  EXPECT_EQ(*back, s);

  NodeStatus empty;  // defaults: no checks, no VIP, no leader
  empty.node_id = "n";
  empty.role = "stopped";
  auto back_empty = NodeStatus::fromJson(empty.toJson());
  ASSERT_TRUE(back_empty.isOk()) << back_empty.status().toString();
  EXPECT_EQ(*back_empty, empty);
}

// A node from before hooksOverrunning existed still decodes (as not overrunning).
TEST(NodeStatusJson, HooksOverrunningIsOptionalForOlderNodes) {
  auto r = NodeStatus::fromJson(edited([](Json::Value& v) { v.removeMember("hooksOverrunning"); }));
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_FALSE(r->hooks_overrunning);
  auto bad = NodeStatus::fromJson(edited([](Json::Value& v) { v["hooksOverrunning"] = "yes"; }));
  EXPECT_FALSE(bad.isOk());
}

void expectRejected(const std::string& json, const std::string& prefix);

// A node from before the mesh (or without one) sends no peers: no peers, not an error.
TEST(NodeStatusJson, PeersAreOptionalButStrictWhenPresent) {
  auto r = NodeStatus::fromJson(edited([](Json::Value& v) { v.removeMember("peers"); }));
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_TRUE(r->peers.empty());
  NodeStatus without = sample();
  without.peers.clear();
  EXPECT_EQ(without.toJson().find("peers"), std::string::npos);
  // An integer rtt is a number too.
  auto integral = NodeStatus::fromJson(edited([](Json::Value& v) { v["peers"][0]["rttMs"] = 2; }));
  ASSERT_TRUE(integral.isOk()) << integral.status().toString();
  EXPECT_EQ(integral->peers[0].rtt_ms, 2.0);

  expectRejected(edited([](Json::Value& v) { v["peers"] = "n2"; }),
                 "status JSON: peers: expected an array of objects, got string");
  expectRejected(edited([](Json::Value& v) { v["peers"][1] = 3; }),
                 "status JSON: peers[1]: expected an object, got number");
  expectRejected(edited([](Json::Value& v) { v["peers"][0].removeMember("id"); }),
                 "status JSON: peers[0].id: required");
  expectRejected(edited([](Json::Value& v) { v["peers"][0]["state"] = "zombie"; }),
                 "status JSON: peers[0].state: must be connecting, alive, suspect or dead (got \"zombie\")");
  expectRejected(edited([](Json::Value& v) { v["peers"][1]["reason"] = "bored"; }),
                 "status JSON: peers[1].reason: must be empty, unreachable, departed, restarted, identity or "
                 "protocol (got \"bored\")");
  expectRejected(edited([](Json::Value& v) { v["peers"][0]["incarnation"] = -1; }),
                 "status JSON: peers[0].incarnation: ");
  expectRejected(edited([](Json::Value& v) { v["peers"][0]["rttMs"] = "1.5"; }),
                 "status JSON: peers[0].rttMs: expected a number, got string");
  expectRejected(edited([](Json::Value& v) { v["peers"][0]["rttP99Ms"] = -1.5; }),
                 "status JSON: peers[0].rttP99Ms: must be at least 0");
  expectRejected(edited([](Json::Value& v) { v["peers"][0]["address"] = Json::Value(); }),
                 "status JSON: peers[0].address: expected a string, got null");
}

TEST(NodeStatusJson, IgnoresUnknownKeysForForwardCompatibility) {
  auto r = NodeStatus::fromJson(edited([](Json::Value& v) {
    v["futureField"] = 1;
    v["checks"][0]["latencyMs"] = 3;
    v["peers"][0]["load"] = 4;
  }));
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(*r, sample());
}

// The message starts with `prefix` (the whole message where it does not quote jsoncpp or a number).
void expectRejected(const std::string& json, const std::string& prefix) {
  auto r = NodeStatus::fromJson(json);
  ASSERT_FALSE(r.isOk()) << "accepted: " << json;
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(r.status().message().starts_with(prefix))
      << "message \"" << r.status().message() << "\" does not start with \"" << prefix << "\"";
  EXPECT_EQ(r.status().message().find('\n'), std::string::npos) << r.status().message();
}

TEST(NodeStatusJson, RejectsGarbageWithAClearMessage) {
  expectRejected("", "status JSON: not valid JSON: line 1, column 1: ");
  expectRejected("hello", "status JSON: not valid JSON: line 1, column 1: ");
  expectRejected("{\"nodeId\":", "status JSON: not valid JSON: line 1, column ");
  expectRejected("42", "status JSON: not valid JSON: line 1, column 1: ");
  expectRejected("[1,2]", "status JSON: (root): expected an object, got array");
  expectRejected("{}", "status JSON: nodeId: required");
  expectRejected(edited([](Json::Value& v) { v.removeMember("version"); }), "status JSON: version: required");
  expectRejected(edited([](Json::Value& v) { v["nodeId"] = 7; }),
                 "status JSON: nodeId: expected a string, got number");
  expectRejected(edited([](Json::Value& v) { v["role"] = "boss"; }),
                 "status JSON: role: must be leader, follower or stopped (got \"boss\")");
  expectRejected(edited([](Json::Value& v) { v["epoch"] = -1; }),
                 "status JSON: epoch: must be at least 0, got -1");
  expectRejected(edited([](Json::Value& v) { v["epoch"] = 1.5; }),
                 "status JSON: epoch: expected an integer, got a number with a fraction or exponent");
  expectRejected(edited([](Json::Value& v) { v["epoch"] = "3"; }),
                 "status JSON: epoch: expected an integer, got string");
  expectRejected(edited([](Json::Value& v) { v["uptimeMs"] = -5; }),
                 "status JSON: uptimeMs: must be at least 0, got -5");
  expectRejected(edited([](Json::Value& v) { v["natsConnected"] = "yes"; }),
                 "status JSON: natsConnected: expected a boolean (true or false), got string");
  expectRejected(edited([](Json::Value& v) { v["vip"] = "192.0.2.10"; }),
                 "status JSON: vip: expected an object, got string");
  expectRejected(edited([](Json::Value& v) { v["vip"].removeMember("held"); }),
                 "status JSON: vip.held: required");
  expectRejected(edited([](Json::Value& v) { v["checks"] = Json::Value(Json::objectValue); }),
                 "status JSON: checks: expected an array of objects, got object");
  expectRejected(edited([](Json::Value& v) { v["checks"][1] = 3; }),
                 "status JSON: checks[1]: expected an object, got number");
  expectRejected(edited([](Json::Value& v) { v["checks"][1]["healthy"] = 1; }),
                 "status JSON: checks[1].healthy: expected a boolean (true or false), got number");
  expectRejected(edited([](Json::Value& v) { v["checks"][0]["consecutiveFailures"] = -1; }),
                 "status JSON: checks[0].consecutiveFailures: must be between 0 and 2147483647, got -1");
  expectRejected(edited([](Json::Value& v) { v["candidate"] = Json::Value(); }),
                 "status JSON: candidate: expected a boolean (true or false), got null");
  // Two values for one key would be a guess either way.
  expectRejected(R"({"nodeId":"a","nodeId":"b"})", "status JSON: not valid JSON: line 1, column ");
}

// The first offending key in reading order is named, however many follow.
TEST(NodeStatusJson, NamesTheFirstOffendingKey) {
  expectRejected(edited([](Json::Value& v) {
                   v["epoch"] = "x";
                   v["version"] = 1;
                   v["checks"][0]["name"] = false;
                 }),
                 "status JSON: epoch: expected an integer, got string");
  expectRejected(edited([](Json::Value& v) {
                   v["checks"][1]["name"] = false;
                   v["version"] = 1;
                 }),
                 "status JSON: checks[1].name: expected a string, got boolean");
}

// An epoch beyond 64 bits is not silently cut; a bigger count than int holds is refused.
TEST(NodeStatusJson, NumbersOutOfRangeAreRejected) {
  std::string text = sample().toJson();
  const std::string epoch = "\"epoch\":18446744073709551615";
  ASSERT_NE(text.find(epoch), std::string::npos) << text;
  text.replace(text.find(epoch), epoch.size(), "\"epoch\":18446744073709551616");
  expectRejected(text, "status JSON: epoch: must be at most 18446744073709551615, got ");
  expectRejected(
      edited([](Json::Value& v) { v["checks"][0]["consecutivePasses"] = Json::Int64(1) << 31; }),
      "status JSON: checks[0].consecutivePasses: must be between 0 and 2147483647, got 2147483648");
}

// Found by tests/fuzz/status_fuzz: jsoncpp throws past 1000 levels of nesting, which used to
// abort whoever decoded the reply (the CLI, the manager).
TEST(NodeStatusJson, RejectsDeepNestingInsteadOfAborting) {
  expectRejected(std::string(1016, '['), "status JSON: not valid JSON");
  expectRejected(R"({"nodeId":)" + std::string(5000, '{'), "status JSON: not valid JSON");
}

}  // namespace
}  // namespace hacoord
