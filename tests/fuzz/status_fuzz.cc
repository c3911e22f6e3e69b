// libFuzzer target: the node status decoder (NodeStatus::fromJson) on arbitrary reply bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "hacoord/node_status.h"

// Besides not crashing: a status that decodes must encode to JSON that decodes to the same status
// (a node's reply is what the CLI and the manager decode). Compared as encoded JSON: jsoncpp writes
// invalid UTF-8 in a string as U+FFFD, so only such strings may change.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  hacoord::Result<hacoord::NodeStatus> status = hacoord::NodeStatus::fromJson(json);
  if (!status.isOk()) return 0;
  const std::string encoded = status->toJson();
  hacoord::Result<hacoord::NodeStatus> again = hacoord::NodeStatus::fromJson(encoded);
  if (!again.isOk() || again->toJson() != encoded) std::abort();
  return 0;
}
