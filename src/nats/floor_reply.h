// FloorReply: what a node answers on hacoord.<cluster>.floor, and its strict JSON codec (no NATS:
// the fuzz target builds it alone).
#pragma once

#include <string>
#include <string_view>

#include "hacoord/clock.h"
#include "hacoord/epoch.h"
#include "hacoord/status.h"

namespace hacoord {

// The reply: {"epoch":N,"leaseMs":M}.
struct FloorReply {
  Epoch epoch;
  milliseconds lease{0};
  bool operator==(const FloorReply&) const = default;
};
std::string encodeFloorReply(const FloorReply& reply);
// Strict: a JSON object with an unsigned integer "epoch" and an integer "leaseMs" >= 0 (other keys
// are ignored: a newer node may add some). InvalidArgument naming the problem otherwise.
Result<FloorReply> decodeFloorReply(std::string_view body);

}  // namespace hacoord
