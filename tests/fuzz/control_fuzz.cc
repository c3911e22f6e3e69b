// libFuzzer target: the control codec (decodeControlRequest / decodeControlReply) on arbitrary bytes,
// as a node receives them on its control subjects and the CLI receives the node's answer.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "node/control_codec.h"

namespace {

// The first byte picks what the rest is: a request body for one of the verbs, or a reply.
constexpr std::string_view kVerbs[] = {hacoord::kVerbStepDown, hacoord::kVerbForceStepDown,
                                       hacoord::kVerbPromote, hacoord::kVerbJoin, hacoord::kVerbLeave};
constexpr std::size_t kChoices = sizeof(kVerbs) / sizeof(kVerbs[0]) + 1;

}  // namespace

// Besides not crashing: a request that decodes must encode to a body that decodes, for the same
// verb, to the same request; a reply (any Status decodeControlReply returns, DataLoss included)
// must encode to a reply that decodes to the same code and encodes the same again. Replies are
// compared as encoded JSON: jsoncpp writes invalid UTF-8 in a string as U+FFFD, so only such
// messages may change.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t choice = data[0] % kChoices;
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  if (choice < kChoices - 1) {
    const std::string_view verb = kVerbs[choice];
    hacoord::Result<hacoord::ControlRequest> request = hacoord::decodeControlRequest(verb, body);
    if (!request.isOk()) {
      if (request.status().code() != hacoord::StatusCode::kInvalidArgument) std::abort();
      return 0;
    }
    const std::string encoded = hacoord::encodeControlRequest(*request);
    hacoord::Result<hacoord::ControlRequest> again = hacoord::decodeControlRequest(verb, encoded);
    if (!again.isOk() || !(*again == *request)) std::abort();
    return 0;
  }
  const hacoord::Status reply = hacoord::decodeControlReply(body);
  const std::string encoded = hacoord::encodeControlReply(reply);
  const hacoord::Status again = hacoord::decodeControlReply(encoded);
  if (again.code() != reply.code() || hacoord::encodeControlReply(again) != encoded) std::abort();
  return 0;
}
