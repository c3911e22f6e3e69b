// Control codec: the strict JSON reader for requests, the status code by name for replies.
#include "node/control_codec.h"

#include <json/json.h>

#include "core/json_reader.h"
#include "hacoord/config.h"

namespace hacoord {
namespace {

constexpr std::size_t kMaxRequester = 128;
constexpr std::size_t kMaxBody = 4096;

json::Rules controlRules() {
  json::Rules rules;
  rules.max_bytes = kMaxBody;
  rules.max_depth = 4;
  return rules;
}

std::string compact(const Json::Value& v) {
  Json::StreamWriterBuilder w;
  w["indentation"] = "";
  return Json::writeString(w, v);
}

bool printable(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

}  // namespace

Result<ControlRequest> decodeControlRequest(std::string_view verb, std::string_view body) {
  ControlRequest request;
  const bool stepdown = verb == kVerbStepDown || verb == kVerbForceStepDown;
  if (!stepdown && verb != kVerbPromote && verb != kVerbJoin && verb != kVerbLeave) {
    return invalidArgument("control request: unknown verb '" + std::string(verb) + "'");
  }
  if (body.empty()) return request;
  auto doc = json::Document::parse(body, controlRules());
  if (!doc.isOk()) return invalidArgument("control request: " + doc.status().message());
  json::Problems problems;
  auto root = stepdown ? doc->root(problems).object({"successor", "requester"})
                       : doc->root(problems).object({"requester"});
  if (root) {
    if (stepdown && root->read("successor", request.successor) && !request.successor.empty() &&
        !isValidId(request.successor)) {
      root->fail("successor", "must be a node id ([A-Za-z0-9_-], 1 to 64 characters)");
    }
    if (root->read("requester", request.requester) &&
        (request.requester.size() > kMaxRequester || !printable(request.requester))) {
      root->fail("requester", "must be at most 128 printable ASCII characters");
    }
  }
  if (!problems.ok()) return problems.toStatus("control request");
  return request;
}

std::string encodeControlRequest(const ControlRequest& request) {
  Json::Value v(Json::objectValue);
  if (!request.successor.empty()) v["successor"] = request.successor;
  if (!request.requester.empty()) v["requester"] = request.requester;
  return compact(v);
}

std::string encodeControlReply(const Status& status) {
  Json::Value v(Json::objectValue);
  v["ok"] = status.isOk();
  if (!status.isOk()) {
    v["code"] = std::string(statusCodeName(status.code()));
    v["error"] = status.message();
  }
  return compact(v);
}

Status decodeControlReply(std::string_view body) {
  json::Rules rules = controlRules();
  rules.max_bytes = 64 * 1024;
  auto doc = json::Document::parse(body, rules);
  if (!doc.isOk()) return Status(StatusCode::kDataLoss, "control reply: " + doc.status().message());
  json::Problems problems;
  bool ok = false;
  std::string code;
  std::string error;
  if (auto root = doc->root(problems).object(json::kIgnoreUnknownKeys)) {
    root->require("ok", ok);
    if (!ok) {
      root->require("code", code);
      root->read("error", error);
    }
  }
  if (!problems.ok()) return Status(StatusCode::kDataLoss, problems.toStatus("control reply").message());
  if (ok) return Status::ok();
  for (int c = static_cast<int>(StatusCode::kCancelled); c <= static_cast<int>(kLastStatusCode); ++c) {
    if (statusCodeName(static_cast<StatusCode>(c)) == code) {
      return Status(static_cast<StatusCode>(c), error);
    }
  }
  return Status(StatusCode::kDataLoss, "control reply: unknown code \"" + code + "\": " + error);
}

}  // namespace hacoord
