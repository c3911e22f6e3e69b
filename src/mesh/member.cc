// Member record JSON codec (jsoncpp). Strict on every field it knows; unknown fields are ignored
// for forward compatibility. Every refusal names the field.
#include "mesh/member.h"

#include <algorithm>
#include <cstddef>
#include <string_view>

#include <json/json.h>

#include "core/host_port.h"
#include "core/json_reader.h"

namespace hacoord::mesh {
namespace {

constexpr std::size_t kMaxListSize = 8;  // addrs and certSha256
constexpr std::size_t kFingerprintChars = 64;

Status refuse(const std::string& key_node, const std::string& what) {
  return Status(StatusCode::kDataLoss, "member record m." + key_node + ": " + what);
}

// What is wrong with a dial address ("" when it is "host:port" or "[v6]:port", port 1..65535), by
// the project's one parser.
std::string addrProblem(std::string_view addr) {
  auto parsed = parseHostPort(addr);
  return parsed.isOk() ? "" : "is not host:port (" + parsed.status().message() + ")";
}

std::string fingerprintProblem(std::string_view s) {
  const bool hex = std::all_of(s.begin(), s.end(),
                               [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
  return s.size() == kFingerprintChars && hex ? ""
                                              : "is not a SHA-256 fingerprint (64 lower-case hex digits)";
}

// "" (none) or segments joined by '/', none of them empty.
bool isDivision(std::string_view s) {
  if (s.empty()) return true;
  std::size_t start = 0;
  for (;;) {
    const auto slash = s.find('/', start);
    const auto end = slash == std::string_view::npos ? s.size() : slash;
    if (end == start) return false;
    if (slash == std::string_view::npos) return true;
    start = slash + 1;
  }
}

}  // namespace

std::string encodeMemberRecord(const MemberRecord& r) {
  Json::Value v(Json::objectValue);
  v["node"] = r.node;
  v["incarnation"] = Json::UInt64(r.incarnation);
  v["addrs"] = Json::Value(Json::arrayValue);
  for (const auto& a : r.addrs) v["addrs"].append(a);
  v["division"] = r.division;
  v["type"] = r.type;
  v["certSha256"] = Json::Value(Json::arrayValue);
  for (const auto& f : r.cert_sha256) v["certSha256"].append(f);
  v["metaVersion"] = Json::UInt64(r.meta_version);
  v["proto"] = Json::UInt(r.proto);
  Json::StreamWriterBuilder writer;
  writer["indentation"] = "";
  return Json::writeString(writer, v);
}

Result<MemberRecord> decodeMemberRecord(const std::string& key_node, const std::string& json) {
  Json::Value v;
  if (!json::parseObject(json, v)) return refuse(key_node, "not a JSON object");

  MemberRecord r;
  auto str = [&](const char* key, std::string& out) -> Status {
    if (!v.isMember(key)) return refuse(key_node, std::string("missing field ") + key);
    if (!v[key].isString()) return refuse(key_node, std::string("field ") + key + " is not a string");
    out = v[key].asString();
    return Status::ok();
  };
  auto u64 = [&](const char* key, std::uint64_t& out) -> Status {
    if (!v.isMember(key)) return refuse(key_node, std::string("missing field ") + key);
    // isUInt64 also accepts a double with an integral value (1e3); only integers are records.
    if (!v[key].isIntegral() || !v[key].isUInt64()) {
      return refuse(key_node, std::string("field ") + key + " is not an unsigned 64-bit integer");
    }
    out = v[key].asUInt64();
    return Status::ok();
  };
  // A list of at most kMaxListSize strings, each checked by `problem` ("" when it is fine).
  auto list = [&](const char* key, std::vector<std::string>& out,
                  std::string (*problem)(std::string_view)) -> Status {
    if (!v.isMember(key)) return refuse(key_node, std::string("missing field ") + key);
    const Json::Value& a = v[key];
    if (!a.isArray()) return refuse(key_node, std::string("field ") + key + " is not an array");
    if (a.size() > kMaxListSize) {
      return refuse(key_node, std::string("field ") + key + " has " + std::to_string(a.size()) +
                                  " entries (at most " + std::to_string(kMaxListSize) + ")");
    }
    for (Json::ArrayIndex i = 0; i < a.size(); ++i) {
      const std::string at = std::string("field ") + key + "[" + std::to_string(i) + "]";
      if (!a[i].isString()) return refuse(key_node, at + " is not a string");
      std::string s = a[i].asString();
      if (std::string p = problem(s); !p.empty())
        return refuse(key_node, at + " \"" + s.substr(0, 80) + "\" " + p);
      out.push_back(std::move(s));
    }
    return Status::ok();
  };

  if (Status s = str("node", r.node); !s.isOk()) return s;
  if (r.node.empty() || r.node != key_node) {
    return refuse(key_node, "field node \"" + r.node.substr(0, 80) + "\" does not match the key's node \"" +
                                key_node + "\"");
  }
  if (Status s = u64("incarnation", r.incarnation); !s.isOk()) return s;
  if (Status s = list("addrs", r.addrs, addrProblem); !s.isOk()) return s;
  if (r.addrs.empty()) return refuse(key_node, "field addrs is empty (a member must be reachable)");
  if (Status s = str("division", r.division); !s.isOk()) return s;
  if (!isDivision(r.division)) {
    return refuse(key_node, "field division \"" + r.division.substr(0, 80) + "\" has an empty segment");
  }
  if (Status s = str("type", r.type); !s.isOk()) return s;
  if (Status s = list("certSha256", r.cert_sha256, fingerprintProblem); !s.isOk()) {
    return s;
  }
  if (Status s = u64("metaVersion", r.meta_version); !s.isOk()) return s;
  std::uint64_t proto = 0;
  if (Status s = u64("proto", proto); !s.isOk()) return s;
  if (proto < 1 || proto > 0xffff) {
    return refuse(key_node, "field proto " + std::to_string(proto) + " is not a protocol version (1..65535)");
  }
  r.proto = static_cast<std::uint16_t>(proto);
  return r;
}

}  // namespace hacoord::mesh
