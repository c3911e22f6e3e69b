// HealthService: the NATS health/status responders and the two request helpers built on them.
#include "health/health_service.h"

#include <algorithm>
#include <exception>

#include <json/json.h>

#include "core/logging.h"
#include "hacoord/config.h"
#include "nats/nats_connection.h"
#include "nats/nats_control.h"

namespace hacoord {
namespace {

constinit const ModuleLog kLog("health");

// The reply when the provider failed: the asker learns why instead of waiting out a timeout.
std::string errorJson(const std::string& what) {
  Json::Value v(Json::objectValue);
  v["error"] = what;
  Json::StreamWriterBuilder writer;
  writer["indentation"] = "";
  return Json::writeString(writer, v);
}

// The "error" of an {"error": ...} reply, or "" for anything else.
std::string providerError(const std::string& reply) {
  if (reply.find("\"error\"") == std::string::npos) return "";  // the common case: skip parsing
  Json::CharReaderBuilder builder;
  Json::Value v;
  std::string ignored;
  std::unique_ptr<Json::CharReader> reader(builder.newCharReader());
  if (!reader->parse(reply.data(), reply.data() + reply.size(), &v, &ignored) || !v.isObject() ||
      v.isMember("nodeId") || !v["error"].isString()) {
    return "";
  }
  return v["error"].asString();
}

NatsResponder::Handler answerWith(HealthService::StatusProvider provider, std::string subject) {
  return [provider = std::move(provider), subject = std::move(subject)](std::string,
                                                                        NatsResponder::ReplyFn reply) {
    std::string answer;
    try {
      answer = provider().toJson();
    } catch (const std::exception& e) {
      kLog->error("status provider failed on {}: {}", subject, e.what());
      answer = errorJson(std::string("status provider failed: ") + e.what());
    } catch (...) {
      kLog->error("status provider failed on {}", subject);
      answer = errorJson("status provider failed");
    }
    reply(std::move(answer));
  };
}

// Ids become subject tokens: a '.', '*' or '>' would address other subjects (or be refused by
// the server as a publish subject), so anything outside [A-Za-z0-9_-] is refused here.
Status checkIds(const std::string& cluster, const std::string& node) {
  if (!isValidId(cluster)) return invalidArgument("cluster id \"" + cluster + "\" is not [A-Za-z0-9_-]+");
  if (!isValidId(node)) return invalidArgument("node id \"" + node + "\" is not [A-Za-z0-9_-]+");
  return Status::ok();
}

}  // namespace

Result<std::unique_ptr<HealthService>> HealthService::start(NatsConnection& connection,
                                                            const std::string& cluster,
                                                            const std::string& node_id,
                                                            StatusProvider provider) {
  if (Status ids = checkIds(cluster, node_id); !ids.isOk()) return ids;
  std::unique_ptr<HealthService> service(new HealthService());
  const std::string health = healthSubject(cluster, node_id);
  auto h = NatsResponder::subscribe(connection, health, answerWith(provider, health));
  if (!h.isOk()) return h.status();
  service->health_ = std::move(h).value();
  const std::string status = statusSubject(cluster);
  auto s = NatsResponder::subscribe(connection, status, answerWith(std::move(provider), status));
  if (!s.isOk()) return s.status();  // the health responder unsubscribes as `service` goes
  service->status_ = std::move(s).value();
  kLog->info("answering {} and {}", health, status);
  return service;
}

HealthService::~HealthService() = default;

Result<NodeStatus> queryNode(NatsConnection& connection, const std::string& cluster, const std::string& node,
                             milliseconds timeout) {
  if (Status ids = checkIds(cluster, node); !ids.isOk()) return ids;
  const std::string subject = healthSubject(cluster, node);
  auto reply = natsRequest(connection, subject, "", timeout);
  if (!reply.isOk()) {
    const Status& st = reply.status();
    // NotFound = NATS_NO_RESPONDERS: the server knows no subscriber, so the node's process (or
    // its NATS link) is gone. That is the answer, not an error to retry.
    if (st.code() == StatusCode::kNotFound) {
      return unavailable("node " + node + " is down: no responders on " + subject);
    }
    if (st.code() == StatusCode::kDeadlineExceeded) {
      return deadlineExceeded("node " + node + " did not answer within " + std::to_string(timeout.count()) +
                              " ms (subscribed but not responding)");
    }
    return Status(st.code(), "asking node " + node + ": " + st.message());
  }
  if (std::string err = providerError(*reply); !err.empty()) {
    return internalError("node " + node + " could not report its status: " + err);
  }
  auto status = NodeStatus::fromJson(*reply);
  if (!status.isOk()) {
    return Status(StatusCode::kDataLoss,
                  "node " + node + " sent an unreadable status: " + status.status().message());
  }
  if (status->node_id != node) {
    // Two processes configured with one node id would do this: worth an error, never a guess.
    return Status(StatusCode::kDataLoss,
                  "asked node " + node + " on " + subject + " but node " + status->node_id + " answered");
  }
  return status;
}

Result<std::vector<NodeStatus>> gatherStatus(NatsConnection& connection, const std::string& cluster,
                                             milliseconds window) {
  if (!isValidId(cluster)) return invalidArgument("cluster id \"" + cluster + "\" is not [A-Za-z0-9_-]+");
  const std::string subject = statusSubject(cluster);
  auto replies = natsGather(connection, subject, "", window);
  if (!replies.isOk()) {
    const Status& st = replies.status();
    if (st.code() == StatusCode::kNotFound) {
      return unavailable("no node of cluster " + cluster + " answered: no responders on " + subject);
    }
    return st;
  }
  std::vector<NodeStatus> out;
  for (const std::string& r : *replies) {
    if (std::string err = providerError(r); !err.empty()) {
      kLog->warn("a node on {} could not report its status: {}", subject, err);
      continue;
    }
    auto parsed = NodeStatus::fromJson(r);
    if (!parsed.isOk()) {
      kLog->warn("unreadable reply on {}: {}", subject, parsed.status().message());
      continue;
    }
    out.push_back(std::move(parsed).value());
  }
  std::sort(out.begin(), out.end(),
            [](const NodeStatus& a, const NodeStatus& b) { return a.node_id < b.node_id; });
  return out;
}

}  // namespace hacoord
