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
  s.version = "0.1.0";
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
  EXPECT_EQ(keys, (std::vector<std::string>{"candidate", "checks", "epoch", "healthy", "leader",
                                            "natsConnected", "nodeId", "role", "uptimeMs",
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

TEST(NodeStatusJson, IgnoresUnknownKeysForForwardCompatibility) {
  auto r = NodeStatus::fromJson(edited([](Json::Value& v) {
    v["futureField"] = 1;
    v["checks"][0]["latencyMs"] = 3;
  }));
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(*r, sample());
}

void expectRejected(const std::string& json, const std::string& needle) {
  auto r = NodeStatus::fromJson(json);
  ASSERT_FALSE(r.isOk()) << "accepted: " << json;
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find(needle), std::string::npos)
      << "message \"" << r.status().message() << "\" does not mention \"" << needle << "\"";
  EXPECT_EQ(r.status().message().find('\n'), std::string::npos) << r.status().message();
}

TEST(NodeStatusJson, RejectsGarbageWithAClearMessage) {
  expectRejected("", "not valid JSON");
  expectRejected("hello", "not valid JSON");
  expectRejected("{\"nodeId\":", "not valid JSON");
  expectRejected("[1,2]", "must be a JSON object");
  expectRejected("42", "must be a JSON object");
  expectRejected("{}", "nodeId: missing");
  expectRejected(edited([](Json::Value& v) { v.removeMember("version"); }), "version: missing");
  expectRejected(edited([](Json::Value& v) { v["nodeId"] = 7; }), "nodeId: must be a string");
  expectRejected(edited([](Json::Value& v) { v["role"] = "boss"; }), "role: must be leader, follower or stopped");
  expectRejected(edited([](Json::Value& v) { v["epoch"] = -1; }), "epoch: must be an integer >= 0");
  expectRejected(edited([](Json::Value& v) { v["epoch"] = 1.5; }), "epoch: must be an integer >= 0");
  expectRejected(edited([](Json::Value& v) { v["epoch"] = "3"; }), "epoch: must be an integer >= 0");
  expectRejected(edited([](Json::Value& v) { v["uptimeMs"] = -5; }), "uptimeMs: must be an integer >= 0");
  expectRejected(edited([](Json::Value& v) { v["natsConnected"] = "yes"; }), "natsConnected: must be a boolean");
  expectRejected(edited([](Json::Value& v) { v["vip"] = "192.0.2.10"; }), "vip: must be an object");
  expectRejected(edited([](Json::Value& v) { v["vip"].removeMember("held"); }), "vip.held: missing");
  expectRejected(edited([](Json::Value& v) { v["checks"] = Json::Value(Json::objectValue); }),
                 "checks: must be an array");
  expectRejected(edited([](Json::Value& v) { v["checks"][1] = 3; }), "checks[1]: must be an object");
  expectRejected(edited([](Json::Value& v) { v["checks"][1]["healthy"] = 1; }),
                 "checks[1].healthy: must be a boolean");
  expectRejected(edited([](Json::Value& v) { v["checks"][0]["consecutiveFailures"] = -1; }),
                 "checks[0].consecutiveFailures: must be an integer >= 0");
  expectRejected(edited([](Json::Value& v) { v["candidate"] = Json::Value(); }), "candidate: must be a boolean");
  // Two values for one key would be a guess either way.
  expectRejected(R"({"nodeId":"a","nodeId":"b"})", "not valid JSON");
}

// Found by tests/fuzz/status_fuzz: jsoncpp throws past 1000 levels of nesting, which used to
// abort whoever decoded the reply (the CLI, the manager).
TEST(NodeStatusJson, RejectsDeepNestingInsteadOfAborting) {
  expectRejected(std::string(1016, '['), "not valid JSON");
  expectRejected(R"({"nodeId":)" + std::string(5000, '{'), "not valid JSON");
}

}  // namespace
}  // namespace hacoord
