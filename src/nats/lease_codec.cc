// Lease record JSON codec (jsoncpp). Strict on types; unknown fields are ignored for forward compat.
#include "nats/lease_codec.h"

#include <json/json.h>

#include "core/json_reader.h"

namespace hacoord {

std::string encodeLease(const LeaseRecord& record) {
  Json::Value v(Json::objectValue);
  v["holder"] = record.holder;
  v["incarnation"] = record.incarnation;
  v["epoch"] = Json::UInt64(record.epoch.value());
  v["leaseMs"] = Json::Int64(record.lease.count());
  v["successor"] = record.successor;
  Json::StreamWriterBuilder writer;
  writer["indentation"] = "";
  return Json::writeString(writer, v);
}

Result<LeaseRecord> decodeLease(std::string_view bytes) {
  Json::Value v;
  if (!json::parseObject(bytes, v)) {
    return Status(StatusCode::kDataLoss, "lease record is not a JSON object");
  }
  // `required`: a record without its holder is not "vacant" (that is holder "", written by a
  // handover): it is not a lease record, and the holder is unknown.
  auto str = [&](const char* key, std::string& out, bool required) -> bool {
    if (!v.isMember(key)) return !required;
    if (!v[key].isString()) return false;
    out = v[key].asString();
    return true;
  };
  LeaseRecord r;
  if (!str("holder", r.holder, true) || !str("incarnation", r.incarnation, true) ||
      !str("successor", r.successor, false)) {
    return Status(StatusCode::kDataLoss,
                  "lease record lacks a string holder or incarnation, or has a non-string successor");
  }
  if (!v["epoch"].isUInt64() || v["epoch"].asUInt64() > Epoch::kMax) {
    return Status(StatusCode::kDataLoss,
                  "lease record has no valid epoch (an integer 0.." + std::to_string(Epoch::kMax) + ")");
  }
  r.epoch = Epoch(v["epoch"].asUInt64());
  if (!v["leaseMs"].isInt64() || v["leaseMs"].asInt64() <= 0 || v["leaseMs"].asInt64() > kMaxLease.count()) {
    return Status(StatusCode::kDataLoss,
                  "lease record has no valid leaseMs (1.." + std::to_string(kMaxLease.count()) + ")");
  }
  r.lease = milliseconds(v["leaseMs"].asInt64());
  return r;
}

}  // namespace hacoord
