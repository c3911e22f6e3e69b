// FloorReply codec: strict JSON in, bounded values (a lying node cannot push the epoch space to
// its end nor make every node wait forever).
#include "nats/floor_reply.h"

#include <json/json.h>

#include "core/json_reader.h"
#include "hacoord/lease.h"

namespace hacoord {

std::string encodeFloorReply(const FloorReply& reply) {
  Json::Value v(Json::objectValue);
  v["epoch"] = Json::UInt64(reply.epoch.value());
  v["leaseMs"] = Json::Int64(reply.lease.count());
  Json::StreamWriterBuilder writer;
  writer["indentation"] = "";
  return Json::writeString(writer, v);
}

Result<FloorReply> decodeFloorReply(std::string_view body) {
  json::Rules rules;
  rules.max_bytes = 4096;  // a floor reply is ~40 bytes
  rules.max_depth = 4;
  auto doc = json::Document::parse(body, rules);
  if (!doc.isOk()) return invalidArgument("floor reply: " + doc.status().message());
  json::Problems problems;
  FloorReply reply;
  if (auto top = doc->root(problems).object(json::kIgnoreUnknownKeys)) {
    std::uint64_t epoch = 0;
    long long lease = 0;
    top->require("epoch", epoch);
    top->require("leaseMs", lease, 0LL, static_cast<long long>(kMaxLease.count()));
    if (epoch > Epoch::kMax) top->fail("epoch", "must be at most " + std::to_string(Epoch::kMax));
    reply.epoch = Epoch(epoch);
    reply.lease = milliseconds(lease);
  }
  if (!problems.ok()) return problems.toStatus("floor reply");
  return reply;
}

}  // namespace hacoord
