// Mesh wire format (DESIGN §6.2): 32-byte frame header, fragments, messages and the control payloads.
//
// Everything here is pure: bytes in, values or a Status out. It is the first code that touches
// bytes from the network, so every decoder is bounded (no allocation larger than the limits below
// before the bytes are there) and fuzzed (tests/fuzz/mesh_frame_fuzz.cc).
//
// Frame layout, big-endian (notes/mesh-locks-store.md §1.4):
//   off size field
//   0   4    len: bytes after this field (28 header bytes + ext + payload)
//   4   1    version (kFrameVersion)
//   5   1    type (FrameType)
//   6   1    flags (kFlag*)
//   7   1    lane (Lane)
//   8   8    id: request or stream id (the dialer uses odd ids, the acceptor even ones)
//   16  8    sender_epoch: the highest leader epoch the sender has seen
//   24  4    timeout_ms: remaining time to the request's deadline (relative: clocks never compared)
//   28  2    ext_len: bytes of the name (method or service) that follow the header, at most 255
//   30  2    reserved, must be 0
//   32  ext_len name, then the payload (the rest of len)
// A message (Message) larger than kMaxFragmentPayload is cut into fragments that share type, lane
// and id; all but the last have no kFlagEnd, the last has it. The name travels in the first
// fragment only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hacoord/status.h"

namespace hacoord::mesh {

inline constexpr std::size_t kHeaderBytes = 32;
inline constexpr std::uint8_t kFrameVersion = 1;
inline constexpr std::size_t kMaxNameBytes = 255;
// Payload bytes per fragment (the name is extra). A frame whose len says more is refused before
// anything is buffered.
inline constexpr std::size_t kMaxFragmentPayload = 64 * 1024;
inline constexpr std::size_t kMaxFrameLen = kHeaderBytes - 4 + kMaxNameBytes + kMaxFragmentPayload;
// Default for Mesh's maxMessageBytes: the largest reassembled message either end accepts.
inline constexpr std::size_t kDefaultMaxMessageBytes = 16 * 1024 * 1024;

enum class FrameType : std::uint8_t {
  kHello = 0x01,
  kPing = 0x02,
  kPong = 0x03,
  kGoAway = 0x04,
  kRpcReq = 0x10,
  kRpcResp = 0x11,
  kRpcCancel = 0x12,
  kMetaPush = 0x20,
  kStreamOpen = 0x30,
  kStreamData = 0x31,
  kStreamWindow = 0x32,
  kStreamRst = 0x33,
  // 0x40-0x4F locks, 0x50-0x5F store (issue 8); 0xC0-0xEF the application's range.
};
// Types below this that the decoder does not know are a protocol error; unknown types at or above
// it are delivered and ignored by the receiver (room for extensions).
inline constexpr std::uint8_t kFirstIgnorableType = 0x80;
inline constexpr std::uint8_t kFirstLockType = 0x40;
inline constexpr std::uint8_t kLastStoreType = 0x5F;
inline constexpr std::uint8_t kFirstAppType = 0xC0;
inline constexpr std::uint8_t kLastAppType = 0xEF;
// True for the named types above, the lock/store range and everything >= kFirstIgnorableType.
bool isKnownOrIgnorableType(std::uint8_t type);
std::string_view frameTypeName(std::uint8_t type);  // "RPC_REQ", ..., "0x9a" for others

inline constexpr std::uint8_t kFlagEnd = 0x01;        // last fragment of a message
inline constexpr std::uint8_t kFlagError = 0x02;      // RPC_RESP carrying an ErrorReply
inline constexpr std::uint8_t kFlagNoReply = 0x04;    // RPC_REQ that wants no response (broadcast)
inline constexpr std::uint8_t kFlagEndStream = 0x08;  // STREAM_DATA: the sender half-closed
inline constexpr std::uint8_t kKnownFlags = 0x0F;     // other bits set: protocol error

enum class Lane : std::uint8_t { kControl = 0, kRpc = 1, kStream = 2, kSync = 3 };
inline constexpr int kLaneCount = 4;

// One whole message, as the mesh logic sees it (a Link fragments and reassembles).
struct Message {
  FrameType type = FrameType::kPing;
  std::uint8_t flags = 0;  // kFlagError / kFlagNoReply / kFlagEndStream; kFlagEnd is the codec's
  Lane lane = Lane::kControl;
  std::uint64_t id = 0;
  std::uint64_t sender_epoch = 0;
  std::uint32_t timeout_ms = 0;
  std::string name;  // method or service, <= kMaxNameBytes
  std::string payload;

  std::size_t wireBytes() const;  // what encodeMessage() produces
  bool operator==(const Message&) const = default;
};

struct FrameHeader {
  std::uint32_t len = 0;
  std::uint8_t version = kFrameVersion;
  std::uint8_t type = 0;
  std::uint8_t flags = 0;
  std::uint8_t lane = 0;
  std::uint64_t id = 0;
  std::uint64_t sender_epoch = 0;
  std::uint32_t timeout_ms = 0;
  std::uint16_t ext_len = 0;
};

// Appends the frames of `m` to `out` (fragments of at most kMaxFragmentPayload payload bytes; an
// empty payload is one frame). InvalidArgument for a name longer than kMaxNameBytes, and for what
// decodeHeader() would refuse (unknown type below kFirstIgnorableType, lane, unknown flag bits);
// kFlagEnd in m.flags is ignored.
Status encodeMessage(const Message& m, std::string& out);

// Parses and checks the 32 bytes at `bytes` (which must hold at least kHeaderBytes). Errors
// (InvalidArgument, message names the field and value): version != kFrameVersion, len < 28 or
// > kMaxFrameLen, ext_len > kMaxNameBytes or > len - 28, unknown flag bits, lane >= kLaneCount,
// reserved != 0, a type below kFirstIgnorableType that isKnownOrIgnorableType() refuses.
Result<FrameHeader> decodeHeader(std::string_view bytes);

// Incremental decoder for one connection's byte stream: feed() what the socket read, then take
// whole messages with next(). Fragments are reassembled per (type, id); a message whose fragments
// add up to more than max_message_bytes fails with ResourceExhausted naming both sizes, and so
// does more than kMaxOpenMessages partial messages at once or partial messages holding more than
// kLaneCount x max_message_bytes (a sender has one message per lane in flight). After an error the decoder
// stays failed (the connection must be closed). Memory held is bounded by the limits. Fragments after the
// first must carry no name and the first's lane and flags (END aside), or the stream fails with
// InvalidArgument; the message keeps the first fragment's timeout_ms and the highest sender_epoch of its
// fragments.
class FrameDecoder {
 public:
  static constexpr std::size_t kMaxOpenMessages = 64;

  explicit FrameDecoder(std::size_t max_message_bytes = kDefaultMaxMessageBytes);

  void feed(std::string_view bytes);
  // A whole message, nullopt when more bytes are needed, or the error that broke the stream.
  Result<std::optional<Message>> next();
  std::size_t bufferedBytes() const;  // bytes held (unparsed input + partial messages)

 private:
  struct Partial {
    Message message;
  };
  // Drops consumed input so the buffer holds about what is still unread.
  void compact();
  // Records the error, frees everything held and returns the error (next() returns it from now on).
  Status fail(Status s);
  // Adds one checked frame to its partial message; the message once its last fragment is in.
  Result<std::optional<Message>> reassemble(const FrameHeader& h, std::string_view name,
                                            std::string_view payload);
  std::size_t max_message_bytes_;
  std::string input_;
  std::size_t input_pos_ = 0;
  std::map<std::pair<std::uint8_t, std::uint64_t>, Partial> partial_;
  std::size_t partial_bytes_ = 0;
  Status failed_;
};

// ---- Control payloads. Strings are u16-length-prefixed, maps u16 count; all big-endian. Every
// decoder refuses trailing bytes and truncation with InvalidArgument (DataLoss is for storage).

// Hello's node and GoAway's text are informational: above 65535 bytes they are cut (at a UTF-8
// boundary) rather than refused.
struct Hello {
  std::uint16_t proto_min = 1;
  std::uint16_t proto_max = 1;
  std::string node;  // informational: the id is the certificate's, never this
  std::uint64_t incarnation = 0;
  std::uint64_t epoch = 0;
  std::uint32_t ping_interval_ms = 1000;
  std::uint64_t features = 0;
  std::uint64_t meta_version = 0;
  // The largest message it accepts (its maxMessageBytes): a sender keeps to it, so one oversize
  // request or reply fails alone instead of closing the connection. 0: not said.
  std::uint32_t max_message_bytes = 0;
  bool operator==(const Hello&) const = default;
};
std::string encodeHello(const Hello& h);
Result<Hello> decodeHello(std::string_view payload);
// The version both speak: min(max_a, max_b) if it is >= max(min_a, min_b), else nullopt.
std::optional<std::uint16_t> negotiateVersion(const Hello& a, const Hello& b);

struct Ping {
  std::int64_t sent_ns = 0;  // the sender's steady clock, echoed back (never compared across hosts)
  bool operator==(const Ping&) const = default;
};
struct Pong {
  std::int64_t echoed_ns = 0;
  std::uint32_t in_flight = 0;     // handlers running or queued at the responder
  std::uint64_t queued_bytes = 0;  // bytes waiting in the responder's send queue to us
  std::int64_t wall_unix_ms = 0;   // informational (HLC skew checks in issue 8)
  bool operator==(const Pong&) const = default;
};
std::string encodePing(const Ping& p);
Result<Ping> decodePing(std::string_view payload);
std::string encodePong(const Pong& p);
Result<Pong> decodePong(std::string_view payload);

enum class GoAwayReason : std::uint8_t {
  kShutdown = 1,         // the sender is stopping (departed)
  kDuplicate = 2,        // another connection between the pair won
  kProtocol = 3,         // malformed frame, unknown type, bad HELLO
  kFrameTooLarge = 4,    // a frame or message above the limits
  kIdentity = 5,         // certificate not in the members record
  kVersionMismatch = 6,  // no common protocol version
};
std::string_view goAwayReasonName(GoAwayReason r);
struct GoAway {
  GoAwayReason reason = GoAwayReason::kShutdown;
  std::string text;
  bool operator==(const GoAway&) const = default;
};
std::string encodeGoAway(const GoAway& g);
Result<GoAway> decodeGoAway(std::string_view payload);

// RPC_RESP with kFlagError: the Status, code and message intact (u8 code, u16 len, text; a text
// longer than 65535 bytes is cut). An unknown or OK code decodes as kInternal naming the code.
std::string encodeError(const Status& s);
Status decodeError(std::string_view payload);

struct MetaPush {
  std::uint64_t version = 0;
  std::map<std::string, std::string> entries;
  bool operator==(const MetaPush&) const = default;
};
inline constexpr std::size_t kMaxMetaBytes = 64 * 1024;  // keys + values
// Mesh checks sizes before it sends: a key or value above 65535 bytes (or more than 65535 entries)
// cannot be encoded and aborts. Above kMaxMetaBytes in total is encoded, and the receiver refuses it.
std::string encodeMeta(const MetaPush& m);
Result<MetaPush> decodeMeta(std::string_view payload);  // refuses more than kMaxMetaBytes

}  // namespace hacoord::mesh
