// Lease record JSON codec (jsoncpp). Strict on types; unknown fields are ignored for forward compat.
#include "nats/lease_codec.h"

#include <exception>
#include <memory>

#include <json/json.h>

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
  Json::CharReaderBuilder builder;
  Json::Value v;
  std::string errors;
  std::unique_ptr<Json::CharReader> reader(builder.newCharReader());
  bool parsed = false;
  try {
    parsed = reader->parse(bytes.data(), bytes.data() + bytes.size(), &v, &errors);
  } catch (const std::exception&) {
    // jsoncpp throws, rather than fails, on nesting deeper than its stackLimit (1000): garbage in
    // the bucket must not abort every node that reads it (fuzzing found it in the status decoder).
    parsed = false;
  }
  if (!parsed || !v.isObject()) {
    return Status(StatusCode::kDataLoss, "lease record is not a JSON object");
  }
  auto str = [&](const char* key, std::string& out) -> bool {
    if (!v.isMember(key)) return true;
    if (!v[key].isString()) return false;
    out = v[key].asString();
    return true;
  };
  LeaseRecord r;
  if (!str("holder", r.holder) || !str("incarnation", r.incarnation) || !str("successor", r.successor)) {
    return Status(StatusCode::kDataLoss, "lease record has a non-string holder/incarnation/successor");
  }
  if (!v["epoch"].isUInt64()) return Status(StatusCode::kDataLoss, "lease record has no valid epoch");
  r.epoch = Epoch(v["epoch"].asUInt64());
  if (!v["leaseMs"].isInt64() || v["leaseMs"].asInt64() <= 0) {
    return Status(StatusCode::kDataLoss, "lease record has no positive leaseMs");
  }
  r.lease = milliseconds(v["leaseMs"].asInt64());
  return r;
}

}  // namespace hacoord
