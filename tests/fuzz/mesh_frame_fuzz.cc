// libFuzzer target: a FrameDecoder on arbitrary bytes (what a peer, or anyone reaching the port
// past TLS, can send), and every control payload codec on each message it yields.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "mesh/frame.h"

namespace {

using namespace hacoord::mesh;  // NOLINT: a fuzz target names most of the namespace

void check(bool ok) {
  if (!ok) std::abort();
}

// encode(decode(x)) must decode to the same value: a field written and read differently (order,
// width, sign) aborts here rather than corrupting a peer's view of us.
template <typename Decode, typename Encode>
void roundTrip(std::string_view payload, Decode decode, Encode encode) {
  auto value = decode(payload);
  if (!value.isOk()) {
    check(value.status().code() == hacoord::StatusCode::kInvalidArgument &&
          !value.status().message().empty());
    return;
  }
  auto again = decode(encode(*value));
  check(again.isOk() && *again == *value);
}

void checkPayloads(const Message& m) {
  const std::string_view p = m.payload;
  roundTrip(p, decodeHello, encodeHello);
  roundTrip(p, decodePing, encodePing);
  roundTrip(p, decodePong, encodePong);
  roundTrip(p, decodeGoAway, encodeGoAway);
  roundTrip(p, decodeMeta, encodeMeta);
  if (auto hello = decodeHello(p); hello.isOk() && hello->proto_min <= hello->proto_max) {
    check(negotiateVersion(*hello, *hello) == hello->proto_max);
  }
  if (auto meta = decodeMeta(p); meta.isOk()) {
    std::size_t total = 0;
    for (const auto& [key, value] : meta->entries) total += key.size() + value.size();
    check(total <= kMaxMetaBytes);
  }
  // An error payload always decodes to a failure; re-encoded it keeps code and text (a text above
  // what a u16 holds, possible only with the "unknown code" prefix, is cut by design).
  const hacoord::Status error = decodeError(p);
  check(!error.isOk());
  const hacoord::Status again = decodeError(encodeError(error));
  check(again.code() == error.code());
  if (error.message().size() <= 0xFFFF) check(again.message() == error.message());
}

// A decoded message re-encodes (it passed every header check) to exactly wireBytes() bytes, and
// those decode to the same message.
void checkMessage(const Message& m) {
  check(m.name.size() <= kMaxNameBytes);
  check((m.flags & kFlagEnd) == 0);
  std::string bytes;
  check(encodeMessage(m, bytes).isOk());
  check(bytes.size() == m.wireBytes());
  FrameDecoder decoder;
  decoder.feed(bytes);
  auto back = decoder.next();
  check(back.isOk() && back->has_value() && **back == m);
  auto rest = decoder.next();
  check(rest.isOk() && !rest->has_value() && decoder.bufferedBytes() == 0);
  checkPayloads(m);
}

}  // namespace

// The first byte picks the decoder's message limit (odd: small, so reassembly limits are reached
// with short inputs) and how the rest is cut into feed() calls, the way reads from a socket are.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t control = data[0];
  const std::string_view stream(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::size_t max_message =
      (control & 1) != 0 ? 1 + std::size_t{control} * 97 : kDefaultMaxMessageBytes;
  FrameDecoder decoder(max_message);
  // What the decoder may hold between calls: less than one frame unread plus the open messages.
  const std::size_t bound = 4 + kMaxFrameLen + FrameDecoder::kMaxOpenMessages * (kMaxNameBytes + max_message);
  std::size_t pos = 0;
  while (pos < stream.size()) {
    std::size_t chunk = stream.size() - pos;
    if (control > 1)
      chunk = std::min(chunk, 1 + (static_cast<std::size_t>(stream[pos] & 0xFF) * control) % 4099);
    decoder.feed(stream.substr(pos, chunk));
    pos += chunk;
    for (;;) {
      auto next = decoder.next();
      if (!next.isOk()) {
        // Failed for good, holding nothing, and saying why.
        const hacoord::StatusCode code = next.status().code();
        check(code == hacoord::StatusCode::kInvalidArgument ||
              code == hacoord::StatusCode::kResourceExhausted);
        check(!next.status().message().empty() && decoder.bufferedBytes() == 0);
        decoder.feed(stream.substr(0, 64));
        auto still = decoder.next();
        check(!still.isOk() && still.status().message() == next.status().message());
        return 0;
      }
      if (!next->has_value()) break;
      check((*next)->payload.size() <= max_message);
      checkMessage(**next);
    }
    check(decoder.bufferedBytes() <= bound);
  }
  return 0;
}
