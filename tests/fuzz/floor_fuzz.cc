// libFuzzer target: decodeFloorReply on arbitrary bytes, as a node receives other nodes' (possibly
// lying) answers on hacoord.<cluster>.floor before a campaign.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "hacoord/lease.h"
#include "nats/floor_reply.h"

// Besides not crashing: a reply that decodes stays within the bounds every node relies on (an
// epoch at most Epoch::kMax, a lease at most kMaxLease), and encodes to a body that decodes to the
// same reply.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  auto reply = hacoord::decodeFloorReply(body);
  if (!reply.isOk()) return 0;
  if (reply->epoch.value() > hacoord::Epoch::kMax || reply->lease > hacoord::kMaxLease ||
      reply->lease.count() < 0) {
    std::abort();
  }
  auto again = hacoord::decodeFloorReply(hacoord::encodeFloorReply(*reply));
  if (!again.isOk() || !(*again == *reply)) std::abort();
  return 0;
}
