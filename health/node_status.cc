// NodeStatus <-> JSON (jsoncpp): strict on types so a garbled reply is an error, not a default.
#include "hacoord/node_status.h"

#include <exception>
#include <memory>

#include <json/json.h>

namespace hacoord {
namespace {

// Reads fields of one JSON object; the first problem is kept and later reads become no-ops, so
// the parser reads straight through and reports the first offending key.
class FieldReader {
 public:
  FieldReader(const Json::Value& object, std::string path, std::string* error)
      : object_(object), path_(std::move(path)), error_(error) {}

  void str(const char* key, std::string& out) {
    if (const Json::Value* v = get(key)) {
      if (!v->isString()) return fail(key, "must be a string");
      out = v->asString();
    }
  }
  void boolean(const char* key, bool& out) {
    if (const Json::Value* v = get(key)) {
      if (!v->isBool()) return fail(key, "must be a boolean");
      out = v->asBool();
    }
  }
  void uint64(const char* key, uint64_t& out) {
    if (const Json::Value* v = get(key)) {
      // isUInt64() alone also accepts an integral double such as 3.0; keep to integers.
      if (!(v->isIntegral() && v->isUInt64())) return fail(key, "must be an integer >= 0");
      out = v->asUInt64();
    }
  }
  void int64(const char* key, int64_t& out) {
    if (const Json::Value* v = get(key)) {
      if (!(v->isIntegral() && v->isInt64() && v->asInt64() >= 0)) {
        return fail(key, "must be an integer >= 0");
      }
      out = v->asInt64();
    }
  }
  void count(const char* key, int& out) {
    if (const Json::Value* v = get(key)) {
      if (!(v->isIntegral() && v->isInt() && v->asInt() >= 0)) {
        return fail(key, "must be an integer >= 0");
      }
      out = v->asInt();
    }
  }
  // The member when present (and no earlier error), else null after recording "missing".
  const Json::Value* get(const char* key) {
    if (!error_->empty()) return nullptr;
    const Json::Value* v = object_.find(key, key + std::char_traits<char>::length(key));
    if (v == nullptr) fail(key, "missing");
    return v;
  }
  void fail(const std::string& key, const std::string& reason) {
    if (error_->empty()) *error_ = path(key) + ": " + reason;
  }
  std::string path(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

 private:
  const Json::Value& object_;
  std::string path_;
  std::string* error_;
};

}  // namespace

std::string NodeStatus::toJson() const {
  Json::Value v(Json::objectValue);
  v["nodeId"] = node_id;
  v["role"] = role;
  v["leader"] = leader;
  v["epoch"] = Json::UInt64(epoch);
  v["uptimeMs"] = Json::Int64(uptime_ms);
  v["natsConnected"] = nats_connected;
  Json::Value vip_json(Json::objectValue);
  vip_json["address"] = vip.address;
  vip_json["held"] = vip.held;
  v["vip"] = std::move(vip_json);
  Json::Value checks_json(Json::arrayValue);
  for (const CheckStatus& c : checks) {
    Json::Value cj(Json::objectValue);
    cj["name"] = c.name;
    cj["type"] = c.type;
    cj["healthy"] = c.healthy;
    cj["lastResult"] = c.last_result;
    cj["consecutivePasses"] = c.consecutive_passes;
    cj["consecutiveFailures"] = c.consecutive_failures;
    checks_json.append(std::move(cj));
  }
  v["checks"] = std::move(checks_json);
  v["healthy"] = healthy;
  v["candidate"] = candidate;
  v["version"] = version;
  Json::StreamWriterBuilder writer;
  writer["indentation"] = "";
  return Json::writeString(writer, v);
}

Result<NodeStatus> NodeStatus::fromJson(std::string_view json) {
  Json::CharReaderBuilder builder;
  builder["collectComments"] = false;
  builder["rejectDupKeys"] = true;  // two "role"s would be ambiguous: refuse rather than guess
  Json::Value root;
  std::string parse_errors;
  std::unique_ptr<Json::CharReader> reader(builder.newCharReader());
  bool parsed = false;
  try {
    parsed = reader->parse(json.data(), json.data() + json.size(), &root, &parse_errors);
  } catch (const std::exception& e) {
    // jsoncpp throws, rather than fails, on nesting deeper than its stackLimit (1000): a garbled
    // reply must not abort the CLI or the manager (found by tests/fuzz/status_fuzz).
    parse_errors = e.what();
  }
  if (!parsed) {
    // jsoncpp's text is multi-line ("* Line 1, Column 1\n  Syntax error..."): keep it on one line.
    std::string one_line;
    for (char ch : parse_errors) {
      if (ch == '\n') {
        if (!one_line.empty() && one_line.back() != ' ') one_line += ' ';
      } else {
        one_line += ch;
      }
    }
    while (!one_line.empty() && one_line.back() == ' ') one_line.pop_back();
    return invalidArgument("status JSON: not valid JSON: " + one_line);
  }
  if (!root.isObject()) return invalidArgument("status JSON: must be a JSON object");

  NodeStatus s;
  std::string error;
  FieldReader top(root, "", &error);
  top.str("nodeId", s.node_id);
  top.str("role", s.role);
  if (error.empty() && s.role != "leader" && s.role != "follower" && s.role != "stopped") {
    top.fail("role", "must be leader, follower or stopped (got \"" + s.role + "\")");
  }
  top.str("leader", s.leader);
  top.uint64("epoch", s.epoch);
  top.int64("uptimeMs", s.uptime_ms);
  top.boolean("natsConnected", s.nats_connected);
  if (const Json::Value* vip = top.get("vip")) {
    if (!vip->isObject()) {
      top.fail("vip", "must be an object");
    } else {
      FieldReader vr(*vip, "vip", &error);
      vr.str("address", s.vip.address);
      vr.boolean("held", s.vip.held);
    }
  }
  if (const Json::Value* checks = top.get("checks")) {
    if (!checks->isArray()) {
      top.fail("checks", "must be an array");
    } else {
      for (Json::ArrayIndex i = 0; i < checks->size() && error.empty(); ++i) {
        const Json::Value& item = (*checks)[i];
        const std::string path = "checks[" + std::to_string(i) + "]";
        if (!item.isObject()) {
          top.fail(path, "must be an object");
          break;
        }
        CheckStatus c;
        FieldReader cr(item, path, &error);
        cr.str("name", c.name);
        cr.str("type", c.type);
        cr.boolean("healthy", c.healthy);
        cr.str("lastResult", c.last_result);
        cr.count("consecutivePasses", c.consecutive_passes);
        cr.count("consecutiveFailures", c.consecutive_failures);
        s.checks.push_back(std::move(c));
      }
    }
  }
  top.boolean("healthy", s.healthy);
  top.boolean("candidate", s.candidate);
  top.str("version", s.version);
  if (!error.empty()) return invalidArgument("status JSON: " + error);
  return s;
}

}  // namespace hacoord
