// Control requests and replies over NATS (DESIGN §5): strict JSON, the Status code kept on the wire.
#pragma once

#include <string>
#include <string_view>

#include "hacoord/status.h"

namespace hacoord {

// The verbs a node serves on hacoord.<cluster>.control.<node>.<verb>.
inline constexpr std::string_view kVerbStepDown = "stepdown";             // rate-limited handover
inline constexpr std::string_view kVerbForceStepDown = "stepdown.force";  // operator only (NATS)
inline constexpr std::string_view kVerbPromote = "promote";
inline constexpr std::string_view kVerbJoin = "join";
inline constexpr std::string_view kVerbLeave = "leave";

struct ControlRequest {
  std::string successor;  // stepdown only: "" or a node id
  std::string requester;  // who asks, as they say (logged; the subject says what they may do)
  bool operator==(const ControlRequest&) const = default;
};

// The body is empty or a JSON object with only the keys the verb takes: stepdown and
// stepdown.force {"successor"?, "requester"?}, the others {"requester"?}. successor is "" or a valid
// node id; requester at most 128 printable ASCII characters. InvalidArgument naming the key.
Result<ControlRequest> decodeControlRequest(std::string_view verb, std::string_view body);
std::string encodeControlRequest(const ControlRequest& request);

// {"ok":true} or {"ok":false,"code":"FAILED_PRECONDITION","error":"..."}.
std::string encodeControlReply(const Status& status);
// The remote Status with its code (OK, or the code and message sent). A reply that is not one:
// DataLoss naming what is wrong.
Status decodeControlReply(std::string_view body);

}  // namespace hacoord
