// Member record codec: round trip, and every refusal of member.h, each naming the field at fault.
#include "mesh/member.h"

#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <json/json.h>

namespace hacoord::mesh {
namespace {

const std::string kFp1(64, 'a');
const std::string kFp2 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

MemberRecord sample() {
  MemberRecord r;
  r.node = "node-1";
  r.incarnation = 18446744073709551615ull;  // the largest: no precision lost on the way
  r.addrs = {"10.0.0.1:7400", "[fd00::1]:7400", "db-1.example:7401"};
  r.division = "dc1/r2";
  r.type = "db";
  r.cert_sha256 = {kFp1, kFp2};
  r.meta_version = 42;
  r.proto = 3;
  return r;
}

Json::Value parse(const std::string& json) {
  Json::Value v;
  std::string errors;
  std::istringstream in(json);
  EXPECT_TRUE(Json::parseFromStream(Json::CharReaderBuilder(), in, &v, &errors)) << errors;
  return v;
}

std::string write(const Json::Value& v) { return Json::writeString(Json::StreamWriterBuilder(), v); }

TEST(MemberRecord, RoundTrips) {
  const MemberRecord r = sample();
  auto back = decodeMemberRecord("node-1", encodeMemberRecord(r));
  ASSERT_TRUE(back.isOk()) << back.status().toString();
  EXPECT_EQ(*back, r);

  MemberRecord minimal;
  minimal.node = "n";
  minimal.addrs = {"h:1"};
  auto min_back = decodeMemberRecord("n", encodeMemberRecord(minimal));
  ASSERT_TRUE(min_back.isOk()) << min_back.status().toString();
  EXPECT_EQ(*min_back, minimal);
}

TEST(MemberRecord, UsesTheDocumentedJsonKeysAndIgnoresUnknownOnes) {
  Json::Value v = parse(encodeMemberRecord(sample()));
  for (const char* key :
       {"node", "incarnation", "addrs", "division", "type", "certSha256", "metaVersion", "proto"}) {
    EXPECT_TRUE(v.isMember(key)) << key;
  }
  EXPECT_EQ(v.size(), 8u);
  v["futureField"] = "x";
  auto back = decodeMemberRecord("node-1", write(v));
  ASSERT_TRUE(back.isOk()) << back.status().toString();
  EXPECT_EQ(*back, sample());
}

// The sample's JSON with one field replaced (or removed, with a null `value`).
std::string withField(const std::string& key, const Json::Value& value) {
  Json::Value v = parse(encodeMemberRecord(sample()));
  if (value.isNull()) {
    v.removeMember(key);
  } else {
    v[key] = value;
  }
  return write(v);
}

Json::Value strings(const std::vector<std::string>& items) {
  Json::Value a(Json::arrayValue);
  for (const auto& s : items) a.append(s);
  return a;
}

struct Rejected {
  std::string name;
  std::string json;
  std::string field;  // the message must name it
};

TEST(MemberRecord, RefusesEveryMalformedRecordNamingTheField) {
  const Json::Value kMissing;  // null: remove the field
  Json::Value numbers(Json::arrayValue);
  numbers.append(7);
  const std::vector<Rejected> cases = {
      {"empty", "", "not a JSON object"},
      {"array", "[1,2]", "not a JSON object"},
      {"string", "\"x\"", "not a JSON object"},
      {"truncated", encodeMemberRecord(sample()).substr(0, 20), "not a JSON object"},
      {"deep nesting", std::string(5000, '[') + std::string(5000, ']'), "not a JSON object"},
      {"node missing", withField("node", kMissing), "node"},
      {"node mistyped", withField("node", 7), "node"},
      {"node of another key", withField("node", "node-2"), "node"},
      {"node empty", withField("node", ""), "node"},
      {"incarnation missing", withField("incarnation", kMissing), "incarnation"},
      {"incarnation a string", withField("incarnation", "1"), "incarnation"},
      {"incarnation negative", withField("incarnation", -1), "incarnation"},
      {"incarnation fractional", withField("incarnation", 1.5), "incarnation"},
      {"addrs missing", withField("addrs", kMissing), "addrs"},
      {"addrs not a list", withField("addrs", "h:1"), "addrs"},
      {"addrs empty", withField("addrs", Json::Value(Json::arrayValue)), "addrs"},
      {"addr without port", withField("addrs", strings({"h:1", "host"})), "addrs[1]"},
      {"addr port zero", withField("addrs", strings({"h:0"})), "addrs[0]"},
      {"addr port too big", withField("addrs", strings({"h:65536"})), "addrs[0]"},
      {"addr v6 without brackets", withField("addrs", strings({"fd00::1:7400"})), "addrs[0]"},
      {"addr with a space", withField("addrs", strings({"a b:1"})), "addrs[0]"},
      {"addr not a string", withField("addrs", numbers), "addrs[0]"},
      {"nine addrs", withField("addrs", strings(std::vector<std::string>(9, "h:1"))), "addrs"},
      {"division missing", withField("division", kMissing), "division"},
      {"division mistyped", withField("division", 1), "division"},
      {"division empty middle segment", withField("division", "dc1//r2"), "division"},
      {"division leading slash", withField("division", "/dc1"), "division"},
      {"division trailing slash", withField("division", "dc1/"), "division"},
      {"type missing", withField("type", kMissing), "type"},
      {"type mistyped", withField("type", Json::Value(Json::arrayValue)), "type"},
      {"certSha256 missing", withField("certSha256", kMissing), "certSha256"},
      {"certSha256 not a list", withField("certSha256", kFp1), "certSha256"},
      {"fingerprint upper case", withField("certSha256", strings({std::string(64, 'A')})), "certSha256[0]"},
      {"fingerprint short", withField("certSha256", strings({kFp1, std::string(63, 'a')})), "certSha256[1]"},
      {"fingerprint not hex", withField("certSha256", strings({std::string(64, 'g')})), "certSha256[0]"},
      {"nine fingerprints", withField("certSha256", strings(std::vector<std::string>(9, kFp1))),
       "certSha256"},
      {"metaVersion missing", withField("metaVersion", kMissing), "metaVersion"},
      {"metaVersion a string", withField("metaVersion", "3"), "metaVersion"},
      {"proto missing", withField("proto", kMissing), "proto"},
      {"proto zero", withField("proto", 0), "proto"},
      {"proto too big", withField("proto", 65536), "proto"},
      {"proto a bool", withField("proto", true), "proto"},
  };
  for (const auto& c : cases) {
    auto r = decodeMemberRecord("node-1", c.json);
    ASSERT_FALSE(r.isOk()) << c.name << ": accepted " << c.json.substr(0, 200);
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << c.name << ": " << r.status().toString();
    EXPECT_NE(r.status().message().find(c.field), std::string::npos)
        << c.name << ": the error does not name " << c.field << ": " << r.status().message();
    EXPECT_NE(r.status().message().find("m.node-1"), std::string::npos)
        << c.name << ": the error does not name the key: " << r.status().message();
  }
}

TEST(MemberRecord, AcceptsTheEdgesOfEachRule) {
  MemberRecord r = sample();
  r.addrs = std::vector<std::string>(8, "h:65535");
  r.cert_sha256 = std::vector<std::string>(8, kFp2);
  r.cert_sha256.clear();  // none yet (a record published before certificates exist)
  r.division = "";
  r.proto = 65535;
  auto back = decodeMemberRecord("node-1", encodeMemberRecord(r));
  ASSERT_TRUE(back.isOk()) << back.status().toString();
  EXPECT_EQ(*back, r);
  r.cert_sha256 = std::vector<std::string>(8, kFp2);
  r.division = "a";
  auto back8 = decodeMemberRecord("node-1", encodeMemberRecord(r));
  ASSERT_TRUE(back8.isOk()) << back8.status().toString();
  EXPECT_EQ(*back8, r);
}

}  // namespace
}  // namespace hacoord::mesh
