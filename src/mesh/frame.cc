// Mesh frame codec: header, fragmentation, bounded reassembly and the control payloads (DESIGN §6.2).
#include "mesh/frame.h"

#include <algorithm>
#include <array>
#include <limits>
#include <utility>

#include "core/invariant.h"

namespace hacoord::mesh {
namespace {

// Bytes of a frame after its len field that are header: version .. reserved.
constexpr std::size_t kHeaderAfterLen = kHeaderBytes - 4;
constexpr std::size_t kMaxU16 = std::numeric_limits<std::uint16_t>::max();

void putBe(std::string& out, std::uint64_t v, std::size_t size) {
  for (std::size_t i = size; i > 0; --i) {
    out.push_back(static_cast<char>((v >> (8 * (i - 1))) & 0xFF));
  }
}

std::uint64_t getBe(std::string_view bytes, std::size_t offset, std::size_t size) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < size; ++i) {
    v = (v << 8) | static_cast<unsigned char>(bytes[offset + i]);
  }
  return v;
}

// Informational strings (HELLO's node, GOAWAY's text) are cut to what a u16 length can say rather
// than refused: losing the tail of a log line is better than failing a handshake or a shutdown.
// The cut backs off to a UTF-8 boundary so the receiver never logs half a character.
std::string_view cutToU16(std::string_view s) {
  if (s.size() <= kMaxU16) return s;
  std::size_t n = kMaxU16;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

void putStr(std::string& out, std::string_view s) {
  HACOORD_INVARIANT(s.size() <= kMaxU16, "string of {} bytes does not fit a u16 length", s.size());
  putBe(out, s.size(), 2);
  out.append(s);
}

std::string hex(std::uint64_t v, int digits) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s = "0x";
  for (int i = digits - 1; i >= 0; --i) s.push_back(kDigits[(v >> (4 * i)) & 0xF]);
  return s;
}

// Reads big-endian fields from a payload. The first failure sticks and names the payload, the
// field and the sizes, so the caller checks once at the end (finish()).
class Reader {
 public:
  Reader(const char* what, std::string_view bytes) : what_(what), bytes_(bytes) {}

  std::uint64_t uint(const char* field, std::size_t size) {
    if (!have(field, size)) return 0;
    std::uint64_t v = getBe(bytes_, pos_, size);
    pos_ += size;
    last_ = field;
    return v;
  }
  std::int64_t int64(const char* field) { return static_cast<std::int64_t>(uint(field, 8)); }
  std::string str(const char* field) {
    const auto size = static_cast<std::size_t>(uint(field, 2));
    if (!have(field, size)) return {};
    std::string s(bytes_.substr(pos_, size));
    pos_ += size;
    last_ = field;
    return s;
  }
  void fail(std::string why) {
    if (status_.isOk()) status_ = invalidArgument(std::string(what_) + ": " + why);
  }
  bool ok() const { return status_.isOk(); }
  // Everything read: the sticky error, else trailing bytes are an error too (a peer that appends
  // fields we do not know speaks another version and must say so in HELLO).
  Status finish() {
    if (status_.isOk() && pos_ != bytes_.size()) {
      fail(std::to_string(bytes_.size() - pos_) + " trailing bytes after " + last_);
    }
    return status_;
  }

 private:
  bool have(const char* field, std::size_t size) {
    if (!status_.isOk()) return false;
    if (bytes_.size() - pos_ < size) {
      fail("truncated at " + std::string(field) + ": needs " + std::to_string(size) + " bytes at offset " +
           std::to_string(pos_) + ", " + std::to_string(bytes_.size() - pos_) + " left");
      return false;
    }
    return true;
  }

  const char* what_;
  std::string_view bytes_;
  std::size_t pos_ = 0;
  std::string last_ = "the start";
  Status status_;
};

void putHeader(std::string& out, const FrameHeader& h) {
  putBe(out, h.len, 4);
  putBe(out, h.version, 1);
  putBe(out, h.type, 1);
  putBe(out, h.flags, 1);
  putBe(out, h.lane, 1);
  putBe(out, h.id, 8);
  putBe(out, h.sender_epoch, 8);
  putBe(out, h.timeout_ms, 4);
  putBe(out, h.ext_len, 2);
  putBe(out, 0, 2);  // reserved
}

std::string messageLabel(std::uint8_t type, std::uint64_t id) {
  return std::string(frameTypeName(type)) + " message id " + std::to_string(id);
}

}  // namespace

bool isKnownOrIgnorableType(std::uint8_t type) {
  switch (static_cast<FrameType>(type)) {
    case FrameType::kHello:
    case FrameType::kPing:
    case FrameType::kPong:
    case FrameType::kGoAway:
    case FrameType::kRpcReq:
    case FrameType::kRpcResp:
    case FrameType::kRpcCancel:
    case FrameType::kMetaPush:
    case FrameType::kStreamOpen:
    case FrameType::kStreamData:
    case FrameType::kStreamWindow:
    case FrameType::kStreamRst:
      return true;
  }
  return (type >= kFirstLockType && type <= kLastStoreType) || type >= kFirstIgnorableType;
}

std::string_view frameTypeName(std::uint8_t type) {
  switch (static_cast<FrameType>(type)) {
    case FrameType::kHello:
      return "HELLO";
    case FrameType::kPing:
      return "PING";
    case FrameType::kPong:
      return "PONG";
    case FrameType::kGoAway:
      return "GOAWAY";
    case FrameType::kRpcReq:
      return "RPC_REQ";
    case FrameType::kRpcResp:
      return "RPC_RESP";
    case FrameType::kRpcCancel:
      return "RPC_CANCEL";
    case FrameType::kMetaPush:
      return "META_PUSH";
    case FrameType::kStreamOpen:
      return "STREAM_OPEN";
    case FrameType::kStreamData:
      return "STREAM_DATA";
    case FrameType::kStreamWindow:
      return "STREAM_WINDOW";
    case FrameType::kStreamRst:
      return "STREAM_RST";
  }
  // A string_view needs storage that outlives the call: one "0xNN" per byte value, built once.
  static const std::array<std::array<char, 4>, 256> kHex = [] {
    std::array<std::array<char, 4>, 256> table{};
    for (std::size_t i = 0; i < table.size(); ++i) {
      const std::string s = hex(i, 2);
      std::copy(s.begin(), s.end(), table[i].begin());
    }
    return table;
  }();
  return std::string_view(kHex[type].data(), kHex[type].size());
}

std::string_view goAwayReasonName(GoAwayReason r) {
  switch (r) {
    case GoAwayReason::kShutdown:
      return "SHUTDOWN";
    case GoAwayReason::kDuplicate:
      return "DUPLICATE";
    case GoAwayReason::kProtocol:
      return "PROTOCOL";
    case GoAwayReason::kFrameTooLarge:
      return "FRAME_TOO_LARGE";
    case GoAwayReason::kIdentity:
      return "IDENTITY";
    case GoAwayReason::kVersionMismatch:
      return "VERSION_MISMATCH";
  }
  return "UNKNOWN";
}

std::size_t Message::wireBytes() const {
  const std::size_t fragments =
      std::max<std::size_t>(1, (payload.size() + kMaxFragmentPayload - 1) / kMaxFragmentPayload);
  return fragments * kHeaderBytes + name.size() + payload.size();
}

Status encodeMessage(const Message& m, std::string& out) {
  // The encoder refuses what decodeHeader() would refuse, so a bad message fails at the sender,
  // naming the caller's mistake, instead of closing the connection at the receiver.
  if (m.name.size() > kMaxNameBytes) {
    return invalidArgument("message name is " + std::to_string(m.name.size()) + " bytes, at most " +
                           std::to_string(kMaxNameBytes));
  }
  const auto type = static_cast<std::uint8_t>(m.type);
  if (!isKnownOrIgnorableType(type)) {
    return invalidArgument("message type " + hex(type, 2) + " is not a known type (below " +
                           hex(kFirstIgnorableType, 2) + " types must be known)");
  }
  if (static_cast<unsigned>(m.lane) >= kLaneCount) {
    return invalidArgument("message lane " + std::to_string(static_cast<unsigned>(m.lane)) +
                           ", lanes are 0.." + std::to_string(kLaneCount - 1));
  }
  if ((m.flags & ~kKnownFlags) != 0) {
    return invalidArgument("message flags " + hex(m.flags, 2) + " have unknown bits " +
                           hex(m.flags & ~kKnownFlags, 2));
  }
  out.reserve(out.size() + m.wireBytes());
  std::size_t offset = 0;
  do {
    const std::size_t n = std::min(kMaxFragmentPayload, m.payload.size() - offset);
    const bool first = offset == 0;
    const bool last = offset + n == m.payload.size();
    const std::size_t name_bytes = first ? m.name.size() : 0;
    FrameHeader h;
    h.len = static_cast<std::uint32_t>(kHeaderAfterLen + name_bytes + n);
    h.type = type;
    h.flags = static_cast<std::uint8_t>((m.flags & ~kFlagEnd) | (last ? kFlagEnd : 0));
    h.lane = static_cast<std::uint8_t>(m.lane);
    h.id = m.id;
    h.sender_epoch = m.sender_epoch;
    h.timeout_ms = m.timeout_ms;
    h.ext_len = static_cast<std::uint16_t>(name_bytes);
    putHeader(out, h);
    if (first) out.append(m.name);
    out.append(m.payload, offset, n);
    offset += n;
  } while (offset < m.payload.size());
  return Status::ok();
}

Result<FrameHeader> decodeHeader(std::string_view bytes) {
  if (bytes.size() < kHeaderBytes) {
    return invalidArgument("frame header: needs " + std::to_string(kHeaderBytes) + " bytes, got " +
                           std::to_string(bytes.size()));
  }
  FrameHeader h;
  h.len = static_cast<std::uint32_t>(getBe(bytes, 0, 4));
  h.version = static_cast<std::uint8_t>(getBe(bytes, 4, 1));
  h.type = static_cast<std::uint8_t>(getBe(bytes, 5, 1));
  h.flags = static_cast<std::uint8_t>(getBe(bytes, 6, 1));
  h.lane = static_cast<std::uint8_t>(getBe(bytes, 7, 1));
  h.id = getBe(bytes, 8, 8);
  h.sender_epoch = getBe(bytes, 16, 8);
  h.timeout_ms = static_cast<std::uint32_t>(getBe(bytes, 24, 4));
  h.ext_len = static_cast<std::uint16_t>(getBe(bytes, 28, 2));
  const auto reserved = static_cast<std::uint16_t>(getBe(bytes, 30, 2));
  // Version first: another version may lay out the rest differently, and saying so is the useful
  // message.
  if (h.version != kFrameVersion) {
    return invalidArgument("frame header: version " + std::to_string(h.version) + ", expected " +
                           std::to_string(kFrameVersion));
  }
  if (h.len < kHeaderAfterLen || h.len > kMaxFrameLen) {
    return invalidArgument("frame header: len " + std::to_string(h.len) + " is outside " +
                           std::to_string(kHeaderAfterLen) + ".." + std::to_string(kMaxFrameLen));
  }
  if (h.ext_len > kMaxNameBytes) {
    return invalidArgument("frame header: ext_len " + std::to_string(h.ext_len) + " is above " +
                           std::to_string(kMaxNameBytes));
  }
  if (h.ext_len > h.len - kHeaderAfterLen) {
    return invalidArgument("frame header: ext_len " + std::to_string(h.ext_len) + " is more than len " +
                           std::to_string(h.len) + " leaves after the header (" +
                           std::to_string(h.len - kHeaderAfterLen) + ")");
  }
  if ((h.flags & ~kKnownFlags) != 0) {
    return invalidArgument("frame header: flags " + hex(h.flags, 2) + " have unknown bits " +
                           hex(h.flags & ~kKnownFlags, 2));
  }
  if (h.lane >= kLaneCount) {
    return invalidArgument("frame header: lane " + std::to_string(h.lane) + ", lanes are 0.." +
                           std::to_string(kLaneCount - 1));
  }
  if (reserved != 0) {
    return invalidArgument("frame header: reserved " + hex(reserved, 4) + ", must be 0");
  }
  if (!isKnownOrIgnorableType(h.type)) {
    return invalidArgument("frame header: type " + hex(h.type, 2) + " is unknown (types below " +
                           hex(kFirstIgnorableType, 2) + " must be known)");
  }
  // A payload-less fragment after the first would let a peer hold a partial message open forever
  // without sending bytes; that is bounded by kMaxOpenMessages, so it is not refused here.
  return h;
}

// ---- FrameDecoder

FrameDecoder::FrameDecoder(std::size_t max_message_bytes) : max_message_bytes_(max_message_bytes) {}

void FrameDecoder::feed(std::string_view bytes) {
  // A failed stream is going to be closed: holding what still arrives would only cost memory.
  if (!failed_.isOk()) return;
  compact();
  input_.append(bytes);
}

std::size_t FrameDecoder::bufferedBytes() const { return input_.size() - input_pos_ + partial_bytes_; }

void FrameDecoder::compact() {
  if (input_pos_ == input_.size()) {
    input_.clear();
    input_pos_ = 0;
  } else if (input_pos_ > 0 && input_pos_ >= input_.size() / 2) {
    // Moving the unread tail when it is at most half of the buffer keeps the copying amortized
    // O(1) per byte while the consumed prefix never outgrows what is still unread.
    input_.erase(0, input_pos_);
    input_pos_ = 0;
  }
  // A caller that once fed a large block must not keep its capacity for the connection's life.
  if (input_.capacity() > 4 * kMaxFrameLen && input_.size() <= kMaxFrameLen) input_.shrink_to_fit();
}

Status FrameDecoder::fail(Status s) {
  failed_ = std::move(s);
  input_.clear();
  input_.shrink_to_fit();
  input_pos_ = 0;
  partial_.clear();
  partial_bytes_ = 0;
  return failed_;
}

Result<std::optional<Message>> FrameDecoder::next() {
  if (!failed_.isOk()) return failed_;
  for (;;) {
    std::string_view avail(input_);
    avail.remove_prefix(input_pos_);
    if (avail.size() < kHeaderBytes) break;
    // The header is checked before its len is trusted: a frame of 4 GiB is refused with 32 bytes
    // buffered, never waited for.
    auto header = decodeHeader(avail.substr(0, kHeaderBytes));
    if (!header.isOk()) return fail(header.status());
    const std::size_t frame_bytes = 4 + static_cast<std::size_t>(header->len);
    if (avail.size() < frame_bytes) break;
    const std::string_view name = avail.substr(kHeaderBytes, header->ext_len);
    const std::string_view payload =
        avail.substr(kHeaderBytes + header->ext_len, frame_bytes - kHeaderBytes - header->ext_len);
    auto message = reassemble(*header, name, payload);
    input_pos_ += frame_bytes;
    if (!message.isOk()) return fail(message.status());
    if (message->has_value()) {
      compact();
      return message;
    }
  }
  compact();
  return std::optional<Message>();
}

Result<std::optional<Message>> FrameDecoder::reassemble(const FrameHeader& h, std::string_view name,
                                                        std::string_view payload) {
  const auto key = std::make_pair(h.type, h.id);
  const bool end = (h.flags & kFlagEnd) != 0;
  // A sender sends one message per lane at a time, so it never has more than kLaneCount messages
  // in flight: the partial ones together stay within kLaneCount x max_message_bytes.
  const std::size_t partial_cap = max_message_bytes_ > std::numeric_limits<std::size_t>::max() / kLaneCount
                                      ? std::numeric_limits<std::size_t>::max()
                                      : max_message_bytes_ * kLaneCount;
  if (!end && payload.size() + name.size() > partial_cap - std::min(partial_cap, partial_bytes_)) {
    return resourceExhausted(messageLabel(h.type, h.id) + ": partial messages would hold " +
                             std::to_string(partial_bytes_ + payload.size() + name.size()) +
                             " bytes, above " + std::to_string(partial_cap) + " (" +
                             std::to_string(kLaneCount) + " x max_message_bytes)");
  }
  auto it = partial_.find(key);
  if (it == partial_.end()) {
    if (payload.size() > max_message_bytes_) {
      return resourceExhausted(messageLabel(h.type, h.id) + " is at least " + std::to_string(payload.size()) +
                               " bytes, above max_message_bytes " + std::to_string(max_message_bytes_));
    }
    if (!end && partial_.size() >= kMaxOpenMessages) {
      return resourceExhausted(messageLabel(h.type, h.id) + " would be partial message " +
                               std::to_string(partial_.size() + 1) + ", above the limit of " +
                               std::to_string(kMaxOpenMessages) + " open at once");
    }
    Message m;
    m.type = static_cast<FrameType>(h.type);
    m.flags = static_cast<std::uint8_t>(h.flags & ~kFlagEnd);
    m.lane = static_cast<Lane>(h.lane);
    m.id = h.id;
    m.sender_epoch = h.sender_epoch;
    m.timeout_ms = h.timeout_ms;
    m.name.assign(name);
    m.payload.assign(payload);
    if (end) return std::optional<Message>(std::move(m));
    partial_bytes_ += m.name.size() + m.payload.size();
    partial_.emplace(key, Partial{std::move(m)});
    return std::optional<Message>();
  }
  Message& m = it->second.message;
  // Fragments of one message share everything the encoder writes on each of them; a change means
  // a broken or lying sender, and guessing which value to keep would hide it.
  if (h.ext_len != 0) {
    return invalidArgument(messageLabel(h.type, h.id) + ": a continuation fragment carries a name (ext_len " +
                           std::to_string(h.ext_len) + "); only the first may");
  }
  if (h.lane != static_cast<std::uint8_t>(m.lane)) {
    return invalidArgument(messageLabel(h.type, h.id) + ": a fragment changes lane from " +
                           std::to_string(static_cast<unsigned>(m.lane)) + " to " + std::to_string(h.lane));
  }
  if ((h.flags & ~kFlagEnd) != m.flags) {
    return invalidArgument(messageLabel(h.type, h.id) + ": a fragment changes flags from " + hex(m.flags, 2) +
                           " to " + hex(h.flags & ~kFlagEnd, 2));
  }
  // Compared before appending: the limit holds for what is buffered, not only for what is kept.
  if (payload.size() > max_message_bytes_ - m.payload.size()) {
    return resourceExhausted(messageLabel(h.type, h.id) + " is at least " +
                             std::to_string(m.payload.size() + payload.size()) +
                             " bytes, above max_message_bytes " + std::to_string(max_message_bytes_));
  }
  m.payload.append(payload);
  partial_bytes_ += payload.size();
  // A higher epoch on any frame matters to the receiver (it re-reads the lease record).
  m.sender_epoch = std::max(m.sender_epoch, h.sender_epoch);
  if (!end) return std::optional<Message>();
  partial_bytes_ -= m.name.size() + m.payload.size();
  std::optional<Message> done(std::move(m));
  partial_.erase(it);
  return done;
}

// ---- Control payloads

std::string encodeHello(const Hello& h) {
  std::string out;
  putBe(out, h.proto_min, 2);
  putBe(out, h.proto_max, 2);
  putStr(out, cutToU16(h.node));
  putBe(out, h.incarnation, 8);
  putBe(out, h.epoch, 8);
  putBe(out, h.ping_interval_ms, 4);
  putBe(out, h.features, 8);
  putBe(out, h.meta_version, 8);
  putBe(out, h.max_message_bytes, 4);
  return out;
}

Result<Hello> decodeHello(std::string_view payload) {
  Reader r("HELLO", payload);
  Hello h;
  h.proto_min = static_cast<std::uint16_t>(r.uint("proto_min", 2));
  h.proto_max = static_cast<std::uint16_t>(r.uint("proto_max", 2));
  h.node = r.str("node");
  h.incarnation = r.uint("incarnation", 8);
  h.epoch = r.uint("epoch", 8);
  h.ping_interval_ms = static_cast<std::uint32_t>(r.uint("ping_interval_ms", 4));
  h.features = r.uint("features", 8);
  h.meta_version = r.uint("meta_version", 8);
  h.max_message_bytes = static_cast<std::uint32_t>(r.uint("max_message_bytes", 4));
  if (Status s = r.finish(); !s.isOk()) return s;
  return h;
}

std::optional<std::uint16_t> negotiateVersion(const Hello& a, const Hello& b) {
  const std::uint16_t high = std::min(a.proto_max, b.proto_max);
  const std::uint16_t low = std::max(a.proto_min, b.proto_min);
  if (high < low) return std::nullopt;
  return high;
}

std::string encodePing(const Ping& p) {
  std::string out;
  putBe(out, static_cast<std::uint64_t>(p.sent_ns), 8);
  return out;
}

Result<Ping> decodePing(std::string_view payload) {
  Reader r("PING", payload);
  Ping p;
  p.sent_ns = r.int64("sent_ns");
  if (Status s = r.finish(); !s.isOk()) return s;
  return p;
}

std::string encodePong(const Pong& p) {
  std::string out;
  putBe(out, static_cast<std::uint64_t>(p.echoed_ns), 8);
  putBe(out, p.in_flight, 4);
  putBe(out, p.queued_bytes, 8);
  putBe(out, static_cast<std::uint64_t>(p.wall_unix_ms), 8);
  return out;
}

Result<Pong> decodePong(std::string_view payload) {
  Reader r("PONG", payload);
  Pong p;
  p.echoed_ns = r.int64("echoed_ns");
  p.in_flight = static_cast<std::uint32_t>(r.uint("in_flight", 4));
  p.queued_bytes = r.uint("queued_bytes", 8);
  p.wall_unix_ms = r.int64("wall_unix_ms");
  if (Status s = r.finish(); !s.isOk()) return s;
  return p;
}

std::string encodeGoAway(const GoAway& g) {
  std::string out;
  putBe(out, static_cast<std::uint8_t>(g.reason), 1);
  putStr(out, cutToU16(g.text));
  return out;
}

Result<GoAway> decodeGoAway(std::string_view payload) {
  Reader r("GOAWAY", payload);
  GoAway g;
  // Any reason byte is kept: the connection closes whatever it is, and refusing a newer peer's
  // reason would lose its text, the only explanation the operator gets.
  g.reason = static_cast<GoAwayReason>(r.uint("reason", 1));
  g.text = r.str("text");
  if (Status s = r.finish(); !s.isOk()) return s;
  return g;
}

std::string encodeError(const Status& s) {
  std::string out;
  putBe(out, static_cast<std::uint8_t>(s.code()), 1);
  putStr(out, cutToU16(s.message()));
  return out;
}

Status decodeError(std::string_view payload) {
  Reader r("error payload", payload);
  const auto code = r.uint("code", 1);
  std::string text = r.str("text");
  if (Status s = r.finish(); !s.isOk()) return s;
  if (code == 0 || code > static_cast<std::uint64_t>(kLastStatusCode)) {
    // OK is no error, and an unknown code has no meaning here: either way the call failed, and the
    // code is kept in the text for whoever reads the log.
    return internalError(
        "peer sent an error with " +
        std::string(code == 0 ? "status code 0 (OK)" : "unknown status code " + std::to_string(code)) + ": " +
        text);
  }
  return Status(static_cast<StatusCode>(code), std::move(text));
}

std::string encodeMeta(const MetaPush& m) {
  HACOORD_INVARIANT(m.entries.size() <= kMaxU16, "META_PUSH with {} entries does not fit a u16 count",
                    m.entries.size());
  std::string out;
  putBe(out, m.version, 8);
  putBe(out, m.entries.size(), 2);
  for (const auto& [key, value] : m.entries) {
    putStr(out, key);
    putStr(out, value);
  }
  return out;
}

Result<MetaPush> decodeMeta(std::string_view payload) {
  Reader r("META_PUSH", payload);
  MetaPush m;
  m.version = r.uint("version", 8);
  const auto count = static_cast<std::size_t>(r.uint("count", 2));
  std::size_t total = 0;
  for (std::size_t i = 0; i < count && r.ok(); ++i) {
    std::string key = r.str("key");
    std::string value = r.str("value");
    if (!r.ok()) break;
    total += key.size() + value.size();
    if (total > kMaxMetaBytes) {
      r.fail("keys and values add up to more than " + std::to_string(kMaxMetaBytes) + " bytes (" +
             std::to_string(total) + " by entry " + std::to_string(i) + " of " + std::to_string(count) + ")");
      break;
    }
    // A repeated key has no single meaning: which value wins would depend on the decoder.
    if (!m.entries.emplace(std::move(key), std::move(value)).second) {
      r.fail("entry " + std::to_string(i) + " repeats a key");
      break;
    }
  }
  if (Status s = r.finish(); !s.isOk()) return s;
  return m;
}

}  // namespace hacoord::mesh
