// libFuzzer target: the lease record decoder (decodeLease) on arbitrary bytes from the KV bucket.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

// Included by its path on this branch (src/election/); follow it if the codec moves to src/nats/.
#include "nats/lease_codec.h"

// Besides not crashing: a record that decodes must encode to bytes that decode to the same
// record, or a node would write a lease it cannot read back. Compared as encoded bytes, not as
// records: jsoncpp writes invalid UTF-8 in a string as U+FFFD, so only such strings may change
// (the numbers, which fence, may not: the same bytes mean the same numbers).
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  hacoord::Result<hacoord::LeaseRecord> record = hacoord::decodeLease(bytes);
  if (!record.isOk()) return 0;
  const std::string encoded = hacoord::encodeLease(*record);
  hacoord::Result<hacoord::LeaseRecord> again = hacoord::decodeLease(encoded);
  if (!again.isOk() || hacoord::encodeLease(*again) != encoded) std::abort();
  return 0;
}
