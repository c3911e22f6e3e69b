// Mesh wire format: byte layout, fragmentation, bounded reassembly and the control payload codecs.
#include "mesh/frame.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace hacoord::mesh {
namespace {

using ::testing::HasSubstr;

void putBe(std::string& out, std::uint64_t v, int size) {
  for (int i = size - 1; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

// A frame written field by field, independently of the codec, so a test can break any one field.
struct RawFrame {
  std::optional<std::uint32_t> len;  // default: what the name and payload need
  std::uint8_t version = kFrameVersion;
  std::uint8_t type = static_cast<std::uint8_t>(FrameType::kRpcReq);
  std::uint8_t flags = kFlagEnd;
  std::uint8_t lane = 1;
  std::uint64_t id = 7;
  std::uint64_t sender_epoch = 3;
  std::uint32_t timeout_ms = 500;
  std::optional<std::uint16_t> ext_len;  // default: name.size()
  std::uint16_t reserved = 0;
  std::string name = "m";
  std::string payload = "p";

  std::string bytes() const {
    std::string out;
    putBe(out, len.value_or(static_cast<std::uint32_t>(28 + name.size() + payload.size())), 4);
    putBe(out, version, 1);
    putBe(out, type, 1);
    putBe(out, flags, 1);
    putBe(out, lane, 1);
    putBe(out, id, 8);
    putBe(out, sender_epoch, 8);
    putBe(out, timeout_ms, 4);
    putBe(out, ext_len.value_or(static_cast<std::uint16_t>(name.size())), 2);
    putBe(out, reserved, 2);
    return out + name + payload;
  }
};

std::string encoded(const Message& m) {
  std::string out;
  const Status s = encodeMessage(m, out);
  EXPECT_TRUE(s.isOk()) << s.toString();
  return out;
}

std::string patterned(std::size_t size) {
  std::string s(size, '\0');
  for (std::size_t i = 0; i < size; ++i) s[i] = static_cast<char>((i * 31 + i / 251) & 0xFF);
  return s;
}

Message rpc(std::uint64_t id, std::size_t payload_bytes, std::string name = "kv.get") {
  Message m;
  m.type = FrameType::kRpcReq;
  m.flags = kFlagNoReply;
  m.lane = Lane::kRpc;
  m.id = id;
  m.sender_epoch = 42;
  m.timeout_ms = 1500;
  m.name = std::move(name);
  m.payload = patterned(payload_bytes);
  return m;
}

// Every message the decoder yields from `bytes` fed at once; fails the test on an error.
std::vector<Message> decodeAll(FrameDecoder& decoder, std::string_view bytes) {
  decoder.feed(bytes);
  std::vector<Message> out;
  for (;;) {
    auto next = decoder.next();
    EXPECT_TRUE(next.isOk()) << next.status().toString();
    if (!next.isOk() || !next->has_value()) return out;
    out.push_back(std::move(**next));
  }
}

// The error that the decoder reports for `bytes` (fed at once, messages before it taken).
Status firstError(FrameDecoder& decoder, std::string_view bytes) {
  decoder.feed(bytes);
  for (;;) {
    auto next = decoder.next();
    if (!next.isOk()) return next.status();
    if (!next->has_value()) return Status::ok();
  }
}

TEST(MeshFrameTest, MessagesRoundTripAcrossFragmentBoundaries) {
  for (std::size_t size : {std::size_t{0}, std::size_t{1}, kMaxFragmentPayload - 1, kMaxFragmentPayload,
                           kMaxFragmentPayload + 1, 2 * kMaxFragmentPayload, std::size_t{1024 * 1024}}) {
    SCOPED_TRACE("payload bytes " + std::to_string(size));
    const Message m = rpc(9, size);
    const std::string bytes = encoded(m);
    EXPECT_EQ(bytes.size(), m.wireBytes());
    const std::size_t fragments = size == 0 ? 1 : (size + kMaxFragmentPayload - 1) / kMaxFragmentPayload;
    EXPECT_EQ(bytes.size(), fragments * kHeaderBytes + m.name.size() + size);
    FrameDecoder decoder;
    auto got = decodeAll(decoder, bytes);
    ASSERT_EQ(got.size(), 1U);
    EXPECT_EQ(got[0], m);
    EXPECT_EQ(decoder.bufferedBytes(), 0U);
  }
}

TEST(MeshFrameTest, HeaderLayoutIsByteExact) {
  Message m;
  m.type = FrameType::kRpcResp;
  m.flags = kFlagError;
  m.lane = Lane::kStream;
  m.id = 0x0102030405060708;
  m.sender_epoch = 0x1112131415161718;
  m.timeout_ms = 0x21222324;
  m.name = "ab";
  m.payload = "xyz";
  const std::string expected(
      "\x00\x00\x00\x21"                  // len: 28 + 2 + 3 = 33
      "\x01\x11\x03\x02"                  // version, type RPC_RESP, flags ERROR|END, lane stream
      "\x01\x02\x03\x04\x05\x06\x07\x08"  // id
      "\x11\x12\x13\x14\x15\x16\x17\x18"  // sender_epoch
      "\x21\x22\x23\x24"                  // timeout_ms
      "\x00\x02\x00\x00"                  // ext_len, reserved
      "abxyz",
      37);
  EXPECT_EQ(encoded(m), expected);
  auto header = decodeHeader(expected);
  ASSERT_TRUE(header.isOk()) << header.status().toString();
  EXPECT_EQ(header->len, 33U);
  EXPECT_EQ(header->version, 1);
  EXPECT_EQ(header->type, 0x11);
  EXPECT_EQ(header->flags, kFlagError | kFlagEnd);
  EXPECT_EQ(header->lane, 2);
  EXPECT_EQ(header->id, 0x0102030405060708U);
  EXPECT_EQ(header->sender_epoch, 0x1112131415161718U);
  EXPECT_EQ(header->timeout_ms, 0x21222324U);
  EXPECT_EQ(header->ext_len, 2);
}

TEST(MeshFrameTest, FragmentsCarryTheNameFirstAndEndLast) {
  const Message m = rpc(5, 2 * kMaxFragmentPayload + 10);
  const std::string bytes = encoded(m);
  std::vector<FrameHeader> headers;
  for (std::size_t pos = 0; pos < bytes.size();) {
    auto h = decodeHeader(std::string_view(bytes).substr(pos));
    ASSERT_TRUE(h.isOk()) << h.status().toString();
    headers.push_back(*h);
    pos += 4 + h->len;
  }
  ASSERT_EQ(headers.size(), 3U);
  const std::vector<std::size_t> payloads = {kMaxFragmentPayload, kMaxFragmentPayload, 10};
  for (std::size_t i = 0; i < headers.size(); ++i) {
    SCOPED_TRACE("fragment " + std::to_string(i));
    const bool last = i + 1 == headers.size();
    EXPECT_EQ(headers[i].ext_len, i == 0 ? m.name.size() : 0U);
    EXPECT_EQ(headers[i].len, 28 + headers[i].ext_len + payloads[i]);
    EXPECT_EQ(headers[i].flags, kFlagNoReply | (last ? kFlagEnd : 0));
    EXPECT_EQ(headers[i].id, 5U);
    EXPECT_EQ(headers[i].lane, static_cast<std::uint8_t>(Lane::kRpc));
  }
}

TEST(MeshFrameTest, EncoderRefusesWhatTheDecoderWould) {
  Message m = rpc(1, 3, std::string(kMaxNameBytes + 1, 'n'));
  std::string out;
  Status s = encodeMessage(m, out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "message name is 256 bytes, at most 255");
  EXPECT_TRUE(out.empty());
  m.name = std::string(kMaxNameBytes, 'n');
  EXPECT_TRUE(encodeMessage(m, out).isOk());

  m = rpc(1, 3);
  m.type = static_cast<FrameType>(0x60);
  EXPECT_EQ(encodeMessage(m, out).message(),
            "message type 0x60 is not a known type (below 0x80 types must be known)");
  m = rpc(1, 3);
  m.lane = static_cast<Lane>(4);
  EXPECT_EQ(encodeMessage(m, out).message(), "message lane 4, lanes are 0..3");
  m = rpc(1, 3);
  m.flags = 0x30;
  EXPECT_EQ(encodeMessage(m, out).message(), "message flags 0x30 have unknown bits 0x30");
}

struct RejectedHeader {
  std::string what;
  RawFrame frame;
  std::string message;
};

TEST(MeshFrameTest, RejectsBadHeadersNamingFieldAndValue) {
  auto with = [](auto change) {
    RawFrame f;
    change(f);
    return f;
  };
  const std::vector<RejectedHeader> table = {
      {"version 0", with([](RawFrame& f) { f.version = 0; }), "frame header: version 0, expected 1"},
      {"version 2", with([](RawFrame& f) { f.version = 2; }), "frame header: version 2, expected 1"},
      {"len below the header", with([](RawFrame& f) { f.len = 27; }),
       "frame header: len 27 is outside 28..65819"},
      {"len above the largest frame", with([](RawFrame& f) { f.len = kMaxFrameLen + 1; }),
       "frame header: len 65820 is outside 28..65819"},
      {"len 4 GiB", with([](RawFrame& f) { f.len = 0xFFFFFFFF; }),
       "frame header: len 4294967295 is outside 28..65819"},
      {"ext_len above 255", with([](RawFrame& f) { f.ext_len = 256; }),
       "frame header: ext_len 256 is above 255"},
      {"ext_len beyond len", with([](RawFrame& f) { f.ext_len = 3; }),
       "frame header: ext_len 3 is more than len 30 leaves after the header (2)"},
      {"unknown flag", with([](RawFrame& f) { f.flags = kFlagEnd | 0x10; }),
       "frame header: flags 0x11 have unknown bits 0x10"},
      {"high flag", with([](RawFrame& f) { f.flags = 0x80; }),
       "frame header: flags 0x80 have unknown bits 0x80"},
      {"lane 4", with([](RawFrame& f) { f.lane = 4; }), "frame header: lane 4, lanes are 0..3"},
      {"lane 255", with([](RawFrame& f) { f.lane = 255; }), "frame header: lane 255, lanes are 0..3"},
      {"reserved", with([](RawFrame& f) { f.reserved = 1; }), "frame header: reserved 0x0001, must be 0"},
      {"type 0", with([](RawFrame& f) { f.type = 0; }),
       "frame header: type 0x00 is unknown (types below 0x80 must be known)"},
      {"type 0x13", with([](RawFrame& f) { f.type = 0x13; }),
       "frame header: type 0x13 is unknown (types below 0x80 must be known)"},
      {"type 0x60", with([](RawFrame& f) { f.type = 0x60; }),
       "frame header: type 0x60 is unknown (types below 0x80 must be known)"},
      {"type 0x7f", with([](RawFrame& f) { f.type = 0x7f; }),
       "frame header: type 0x7f is unknown (types below 0x80 must be known)"},
  };
  // The unchanged frame is valid, so each row fails for its one change.
  ASSERT_TRUE(decodeHeader(RawFrame{}.bytes()).isOk());
  for (const auto& row : table) {
    SCOPED_TRACE(row.what);
    auto h = decodeHeader(row.frame.bytes());
    ASSERT_FALSE(h.isOk());
    EXPECT_EQ(h.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(h.status().message(), row.message);
    FrameDecoder decoder;
    const Status s = firstError(decoder, row.frame.bytes());
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(s.message(), row.message);
  }
  auto shorter = decodeHeader(RawFrame{}.bytes().substr(0, 31));
  EXPECT_EQ(shorter.status().message(), "frame header: needs 32 bytes, got 31");
}

TEST(MeshFrameTest, TypesBelow0x80MustBeKnownAndOthersAreDelivered) {
  for (int t = 0; t < 256; ++t) {
    const auto type = static_cast<std::uint8_t>(t);
    const bool named =
        (t >= 0x01 && t <= 0x04) || (t >= 0x10 && t <= 0x12) || t == 0x20 || (t >= 0x30 && t <= 0x33);
    const bool expected = named || (t >= 0x40 && t <= 0x5F) || t >= 0x80;
    EXPECT_EQ(isKnownOrIgnorableType(type), expected) << "type " << t;
  }
  for (std::uint8_t type : {std::uint8_t{0x45}, std::uint8_t{0x5F}, std::uint8_t{0x80}, std::uint8_t{0x9a},
                            std::uint8_t{0xC0}, std::uint8_t{0xEF}, std::uint8_t{0xFF}}) {
    RawFrame f;
    f.type = type;
    FrameDecoder decoder;
    auto got = decodeAll(decoder, f.bytes());
    ASSERT_EQ(got.size(), 1U) << "type " << int(type);
    EXPECT_EQ(static_cast<std::uint8_t>(got[0].type), type);
    EXPECT_EQ(got[0].payload, "p");
  }
  EXPECT_EQ(frameTypeName(0x01), "HELLO");
  EXPECT_EQ(frameTypeName(0x10), "RPC_REQ");
  EXPECT_EQ(frameTypeName(0x20), "META_PUSH");
  EXPECT_EQ(frameTypeName(0x33), "STREAM_RST");
  EXPECT_EQ(frameTypeName(0x9a), "0x9a");
  EXPECT_EQ(frameTypeName(0x00), "0x00");
  EXPECT_EQ(frameTypeName(0xff), "0xff");
}

std::vector<Message> sampleStream() {
  std::vector<Message> messages;
  messages.push_back(rpc(1, 0));
  messages.push_back(rpc(3, 100, ""));
  messages.push_back(rpc(5, kMaxFragmentPayload + 1));
  Message ping;
  ping.payload = encodePing(Ping{123});
  messages.push_back(ping);
  messages.push_back(rpc(7, 3 * kMaxFragmentPayload + 17, std::string(kMaxNameBytes, 'x')));
  Message app = rpc(9, 50);
  app.type = static_cast<FrameType>(0xC3);
  messages.push_back(app);
  return messages;
}

std::string encodedStream(const std::vector<Message>& messages) {
  std::string bytes;
  for (const auto& m : messages) bytes += encoded(m);
  return bytes;
}

TEST(MeshFrameTest, DecodesFedOneByteAtATime) {
  const auto messages = sampleStream();
  const std::string bytes = encodedStream(messages);
  FrameDecoder decoder;
  std::vector<Message> got;
  for (char c : bytes) {
    decoder.feed(std::string_view(&c, 1));
    auto next = decoder.next();
    ASSERT_TRUE(next.isOk()) << next.status().toString();
    if (next->has_value()) got.push_back(std::move(**next));
    // Never more than one frame of unread input plus the partial message.
    ASSERT_LE(decoder.bufferedBytes(), kMaxFrameLen + 4 + 4 * kMaxFragmentPayload);
  }
  EXPECT_EQ(got, messages);
  EXPECT_EQ(decoder.bufferedBytes(), 0U);
}

TEST(MeshFrameTest, DecodesFedInRandomChunks) {
  const auto messages = sampleStream();
  const std::string bytes = encodedStream(messages);
  for (unsigned seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 random(seed);
    std::uniform_int_distribution<std::size_t> chunk(1, 3 * kMaxFragmentPayload);
    FrameDecoder decoder;
    std::vector<Message> got;
    for (std::size_t pos = 0; pos < bytes.size();) {
      const std::size_t n = std::min(chunk(random), bytes.size() - pos);
      decoder.feed(std::string_view(bytes).substr(pos, n));
      pos += n;
      for (;;) {
        auto next = decoder.next();
        ASSERT_TRUE(next.isOk()) << next.status().toString();
        if (!next->has_value()) break;
        got.push_back(std::move(**next));
      }
    }
    EXPECT_EQ(got, messages);
  }
}

// Splits encoded bytes into their frames.
std::vector<std::string> framesOf(const std::string& bytes) {
  std::vector<std::string> frames;
  for (std::size_t pos = 0; pos < bytes.size();) {
    auto h = decodeHeader(std::string_view(bytes).substr(pos));
    EXPECT_TRUE(h.isOk());
    frames.push_back(bytes.substr(pos, 4 + h->len));
    pos += 4 + h->len;
  }
  return frames;
}

TEST(MeshFrameTest, ReassemblesInterleavedMessagesPerTypeAndId) {
  // Lanes interleave fragments on the wire; the same id under another type is another message.
  const Message a = rpc(11, 2 * kMaxFragmentPayload + 1);
  Message b = rpc(11, kMaxFragmentPayload + 5, "other");
  b.type = FrameType::kRpcResp;
  b.flags = 0;
  const Message c = rpc(13, 10);
  const auto fa = framesOf(encoded(a));
  const auto fb = framesOf(encoded(b));
  ASSERT_EQ(fa.size(), 3U);
  ASSERT_EQ(fb.size(), 2U);
  const std::string wire = fa[0] + fb[0] + encoded(c) + fa[1] + fb[1] + fa[2];
  FrameDecoder decoder;
  decoder.feed(wire.substr(0, fa[0].size() + fb[0].size()));
  auto none = decoder.next();
  ASSERT_TRUE(none.isOk());
  EXPECT_FALSE(none->has_value());
  // The partial messages are counted in what the decoder holds.
  EXPECT_EQ(decoder.bufferedBytes(), a.name.size() + b.name.size() + 2 * kMaxFragmentPayload);
  auto got = decodeAll(decoder, wire.substr(fa[0].size() + fb[0].size()));
  EXPECT_EQ(got, (std::vector<Message>{c, b, a}));
  EXPECT_EQ(decoder.bufferedBytes(), 0U);
}

TEST(MeshFrameTest, KeepsTheHighestEpochOfTheFragments) {
  const Message m = rpc(3, kMaxFragmentPayload + 1);
  auto frames = framesOf(encoded(m));
  ASSERT_EQ(frames.size(), 2U);
  // The second fragment says epoch 0x99 (byte 23 is the epoch's lowest).
  frames[1][23] = static_cast<char>(0x99);
  FrameDecoder decoder;
  auto got = decodeAll(decoder, frames[0] + frames[1]);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].sender_epoch, 0x99U);
}

TEST(MeshFrameTest, RefusesFragmentsThatDisagreeWithTheFirst) {
  RawFrame first;
  first.flags = kFlagNoReply;
  struct Row {
    std::string what;
    RawFrame next;
    std::string message;
  };
  RawFrame named = first;
  named.flags |= kFlagEnd;
  RawFrame lane = first;
  lane.name = "";
  lane.lane = 2;
  RawFrame flags = first;
  flags.name = "";
  flags.flags = kFlagEnd;
  const std::vector<Row> table = {
      {"name again", named,
       "RPC_REQ message id 7: a continuation fragment carries a name (ext_len 1); only the first may"},
      {"lane", lane, "RPC_REQ message id 7: a fragment changes lane from 1 to 2"},
      {"flags", flags, "RPC_REQ message id 7: a fragment changes flags from 0x04 to 0x00"},
  };
  for (const auto& row : table) {
    SCOPED_TRACE(row.what);
    FrameDecoder decoder;
    const Status s = firstError(decoder, first.bytes() + row.next.bytes());
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(s.message(), row.message);
  }
}

TEST(MeshFrameTest, RefusesA4GiBFrameWithOnlyItsHeaderBuffered) {
  RawFrame f;
  f.len = 0xFFFFFFFF;
  const std::string header = f.bytes().substr(0, kHeaderBytes);
  FrameDecoder decoder;
  // One byte short of a header: nothing to judge yet.
  decoder.feed(header.substr(0, kHeaderBytes - 1));
  auto wait = decoder.next();
  ASSERT_TRUE(wait.isOk());
  EXPECT_FALSE(wait->has_value());
  EXPECT_EQ(decoder.bufferedBytes(), kHeaderBytes - 1);
  decoder.feed(header.substr(kHeaderBytes - 1));
  auto refused = decoder.next();
  ASSERT_FALSE(refused.isOk());
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(refused.status().message(), "frame header: len 4294967295 is outside 28..65819");
  // What the peer keeps sending is not held.
  decoder.feed(std::string(1 << 20, 'z'));
  EXPECT_EQ(decoder.bufferedBytes(), 0U);
}

TEST(MeshFrameTest, MessageAboveMaxMessageBytesIsResourceExhaustedNamingBothSizes) {
  const std::size_t limit = 100000;
  const Message m = rpc(21, 150000);
  FrameDecoder decoder(limit);
  const Status s = firstError(decoder, encoded(m));
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  // The second fragment takes it to 131072 bytes, past the 100000 limit.
  EXPECT_EQ(s.message(), "RPC_REQ message id 21 is at least 131072 bytes, above max_message_bytes 100000");
  EXPECT_EQ(decoder.bufferedBytes(), 0U);

  // One unfragmented frame above a small limit.
  FrameDecoder small(1000);
  const Status one = firstError(small, encoded(rpc(23, 1001)));
  EXPECT_EQ(one.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(one.message(), "RPC_REQ message id 23 is at least 1001 bytes, above max_message_bytes 1000");

  // Exactly at the limit is accepted, fragmented or not.
  for (std::size_t at : {std::size_t{1000}, 2 * kMaxFragmentPayload + 3}) {
    FrameDecoder exact(at);
    auto got = decodeAll(exact, encoded(rpc(25, at)));
    ASSERT_EQ(got.size(), 1U);
    EXPECT_EQ(got[0].payload.size(), at);
  }
}

// 64 open messages just under the limit each would hold 64 x 16 MiB: the partial messages
// together are capped at kLaneCount x max_message_bytes (a sender has one message per lane open).
TEST(MeshFrameTest, PartialMessagesTogetherStayWithinLaneCountTimesTheLimit) {
  FrameDecoder decoder(1000);
  std::string wire;
  for (std::uint64_t id = 1; id <= static_cast<std::uint64_t>(kLaneCount); ++id) {
    RawFrame f;
    f.flags = 0;
    f.id = id;
    f.name = "";
    f.payload = std::string(990, 'x');
    wire += f.bytes();
  }
  EXPECT_TRUE(decodeAll(decoder, wire).empty());  // 4 x 990 bytes: within 4 x 1000
  RawFrame one_more;
  one_more.flags = 0;
  one_more.id = 99;
  one_more.name = "";
  one_more.payload = std::string(100, 'x');
  const Status s = firstError(decoder, one_more.bytes());
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(s.message(),
            "RPC_REQ message id 99: partial messages would hold 4060 bytes, above 4000 (4 x "
            "max_message_bytes)");
  EXPECT_EQ(decoder.bufferedBytes(), 0U) << "a failed decoder keeps nothing";
}

TEST(MeshFrameTest, TooManyOpenPartialMessagesIsResourceExhausted) {
  FrameDecoder decoder;
  std::string wire;
  for (std::uint64_t id = 1; id <= FrameDecoder::kMaxOpenMessages; ++id) {
    RawFrame f;
    f.flags = 0;  // no END: the message stays open
    f.id = id;
    wire += f.bytes();
  }
  EXPECT_TRUE(decodeAll(decoder, wire).empty());
  // A complete one-frame message still gets through at the limit: it never opens.
  RawFrame whole;
  whole.id = 1000;
  EXPECT_EQ(decodeAll(decoder, whole.bytes()).size(), 1U);
  RawFrame one_more;
  one_more.flags = 0;
  one_more.id = 999;
  const Status s = firstError(decoder, one_more.bytes());
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(s.message(),
            "RPC_REQ message id 999 would be partial message 65, above the limit of 64 open at once");
}

TEST(MeshFrameTest, StaysFailedAfterAnError) {
  FrameDecoder decoder;
  RawFrame bad;
  bad.reserved = 7;
  const Status first = firstError(decoder, bad.bytes());
  ASSERT_EQ(first.code(), StatusCode::kInvalidArgument);
  decoder.feed(encoded(rpc(1, 10)));
  for (int i = 0; i < 2; ++i) {
    auto next = decoder.next();
    ASSERT_FALSE(next.isOk());
    EXPECT_EQ(next.status().message(), first.message());
  }
  EXPECT_EQ(decoder.bufferedBytes(), 0U);
}

TEST(MeshFrameTest, ErrorPayloadKeepsEveryCodeAndMessage) {
  for (int c = 1; c <= static_cast<int>(kLastStatusCode); ++c) {
    const Status s(static_cast<StatusCode>(c),
                   "went wrong: " + std::string(statusCodeName(static_cast<StatusCode>(c))));
    const Status back = decodeError(encodeError(s));
    EXPECT_EQ(back.code(), s.code());
    EXPECT_EQ(back.message(), s.message());
  }
  const Status ok_code = decodeError(encodeError(Status::ok()));
  EXPECT_EQ(ok_code.code(), StatusCode::kInternal);
  EXPECT_EQ(ok_code.message(), "peer sent an error with status code 0 (OK): ");
  std::string unknown = encodeError(Status(StatusCode::kAborted, "x"));
  unknown[0] = static_cast<char>(200);
  const Status odd = decodeError(unknown);
  EXPECT_EQ(odd.code(), StatusCode::kInternal);
  EXPECT_EQ(odd.message(), "peer sent an error with unknown status code 200: x");
  // A text that a u16 cannot hold is cut, at a UTF-8 boundary.
  const std::string longer = std::string(65534, 'a') + "\xC3\xA9" + "tail";
  const Status cut = decodeError(encodeError(Status(StatusCode::kUnavailable, longer)));
  EXPECT_EQ(cut.code(), StatusCode::kUnavailable);
  EXPECT_EQ(cut.message(), std::string(65534, 'a'));
}

TEST(MeshFrameTest, ControlPayloadsRoundTrip) {
  Hello h;
  h.proto_min = 1;
  h.proto_max = 3;
  h.node = "node-b_7";
  h.incarnation = 0xFEDCBA9876543210;
  h.epoch = 77;
  h.ping_interval_ms = 250;
  h.features = 0x8000000000000001;
  h.meta_version = 12;
  h.max_message_bytes = 16u << 20;
  auto hello = decodeHello(encodeHello(h));
  ASSERT_TRUE(hello.isOk()) << hello.status().toString();
  EXPECT_EQ(*hello, h);
  EXPECT_EQ(encodeHello(Hello{}).size(), 2 + 2 + 2 + 8 + 8 + 4 + 8 + 8 + 4U);

  for (std::int64_t ns : {std::int64_t{0}, std::int64_t{-1}, INT64_MIN, INT64_MAX}) {
    auto ping = decodePing(encodePing(Ping{ns}));
    ASSERT_TRUE(ping.isOk());
    EXPECT_EQ(ping->sent_ns, ns);
  }
  const Pong p{-5, 0xFFFFFFFF, 1ULL << 40, 1700000000123};
  auto pong = decodePong(encodePong(p));
  ASSERT_TRUE(pong.isOk());
  EXPECT_EQ(*pong, p);

  for (int r = 1; r <= 6; ++r) {
    const GoAway g{static_cast<GoAwayReason>(r), "because " + std::to_string(r)};
    auto back = decodeGoAway(encodeGoAway(g));
    ASSERT_TRUE(back.isOk());
    EXPECT_EQ(*back, g);
  }
  EXPECT_EQ(goAwayReasonName(GoAwayReason::kShutdown), "SHUTDOWN");
  EXPECT_EQ(goAwayReasonName(GoAwayReason::kFrameTooLarge), "FRAME_TOO_LARGE");
  EXPECT_EQ(goAwayReasonName(GoAwayReason::kVersionMismatch), "VERSION_MISMATCH");
  EXPECT_EQ(goAwayReasonName(static_cast<GoAwayReason>(99)), "UNKNOWN");
  // A newer peer's reason is kept, so its text is not lost.
  auto newer = decodeGoAway(encodeGoAway(GoAway{static_cast<GoAwayReason>(99), "new"}));
  ASSERT_TRUE(newer.isOk());
  EXPECT_EQ(static_cast<int>(newer->reason), 99);

  MetaPush m;
  m.version = 4;
  m.entries = {{"zone", "eu-1"}, {"", "empty key"}, {"role", ""}, {std::string("\0k", 2), "\xff"}};
  auto meta = decodeMeta(encodeMeta(m));
  ASSERT_TRUE(meta.isOk()) << meta.status().toString();
  EXPECT_EQ(*meta, m);
  auto empty = decodeMeta(encodeMeta(MetaPush{}));
  ASSERT_TRUE(empty.isOk());
  EXPECT_EQ(*empty, MetaPush{});
}

TEST(MeshFrameTest, MetaPushAbove64KiBIsRefused) {
  MetaPush at_limit;
  at_limit.entries = {{"a", std::string(32767, 'v')}, {"b", std::string(32767, 'w')}};  // 65536 bytes
  auto ok = decodeMeta(encodeMeta(at_limit));
  ASSERT_TRUE(ok.isOk()) << ok.status().toString();
  EXPECT_EQ(*ok, at_limit);
  MetaPush over = at_limit;
  over.entries["c"] = "";  // one more byte of key
  auto refused = decodeMeta(encodeMeta(over));
  ASSERT_FALSE(refused.isOk());
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(refused.status().message(),
            "META_PUSH: keys and values add up to more than 65536 bytes (65537 by entry 2 of 3)");
}

TEST(MeshFrameTest, MetaPushRefusesARepeatedKey) {
  std::string bytes;
  putBe(bytes, 1, 8);
  putBe(bytes, 2, 2);
  for (int i = 0; i < 2; ++i) {
    putBe(bytes, 1, 2);
    bytes += "k";
    putBe(bytes, 1, 2);
    bytes += std::to_string(i);
  }
  auto refused = decodeMeta(bytes);
  ASSERT_FALSE(refused.isOk());
  EXPECT_EQ(refused.status().message(), "META_PUSH: entry 1 repeats a key");
}

// Each payload codec: every strict prefix is truncation, one more byte is trailing.
TEST(MeshFrameTest, PayloadsRefuseTruncationAndTrailingBytes) {
  struct Codec {
    std::string name;
    std::string valid;
    std::function<Status(std::string_view)> decode;
  };
  auto statusOf = [](auto result) { return result.status(); };
  MetaPush meta;
  meta.version = 2;
  meta.entries = {{"k", "value"}, {"k2", "v2"}};
  const std::vector<Codec> codecs = {
      {"HELLO", encodeHello(Hello{1, 2, "n1", 3, 4, 5, 6, 7, 8}),
       [&](std::string_view b) { return statusOf(decodeHello(b)); }},
      {"PING", encodePing(Ping{9}), [&](std::string_view b) { return statusOf(decodePing(b)); }},
      {"PONG", encodePong(Pong{1, 2, 3, 4}), [&](std::string_view b) { return statusOf(decodePong(b)); }},
      {"GOAWAY", encodeGoAway(GoAway{GoAwayReason::kDuplicate, "dup"}),
       [&](std::string_view b) { return statusOf(decodeGoAway(b)); }},
      {"META_PUSH", encodeMeta(meta), [&](std::string_view b) { return statusOf(decodeMeta(b)); }},
      {"error payload", encodeError(Status(StatusCode::kNotFound, "no such")),
       [&](std::string_view b) {
         // decodeError returns the peer's error itself; a malformed payload is InvalidArgument
         // whose message starts with the payload's name.
         return decodeError(b);
       }},
  };
  for (const auto& codec : codecs) {
    SCOPED_TRACE(codec.name);
    const Status whole = codec.decode(codec.valid);
    // The valid error payload decodes to the error it carries.
    EXPECT_EQ(whole.code(), codec.name == "error payload" ? StatusCode::kNotFound : StatusCode::kOk);
    for (std::size_t n = 0; n < codec.valid.size(); ++n) {
      const Status s = codec.decode(std::string_view(codec.valid).substr(0, n));
      EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << "prefix of " << n;
      EXPECT_THAT(s.message(), HasSubstr(codec.name + ": truncated at ")) << "prefix of " << n;
    }
    const Status trailing = codec.decode(codec.valid + "!");
    EXPECT_EQ(trailing.code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(trailing.message(), HasSubstr(codec.name + ": 1 trailing bytes after "));
  }
  EXPECT_EQ(decodePing("1234567").status().message(),
            "PING: truncated at sent_ns: needs 8 bytes at offset 0, 7 left");
  EXPECT_EQ(decodeGoAway(encodeGoAway(GoAway{}) + "xy").status().message(),
            "GOAWAY: 2 trailing bytes after text");
}

TEST(MeshFrameTest, NegotiatesTheHighestCommonVersion) {
  struct Row {
    std::uint16_t a_min, a_max, b_min, b_max;
    std::optional<std::uint16_t> expected;
  };
  const std::vector<Row> table = {
      {1, 1, 1, 1, 1},
      {1, 3, 1, 2, 2},
      {1, 3, 2, 5, 3},
      {2, 5, 1, 3, 3},
      {1, 1, 2, 2, std::nullopt},
      {3, 4, 1, 2, std::nullopt},
      {1, 9, 9, 9, 9},
      {0, 0, 0, 0, 0},
      {5, 1, 1, 5, std::nullopt},  // a range upside down has no version
  };
  for (const auto& r : table) {
    Hello a;
    a.proto_min = r.a_min;
    a.proto_max = r.a_max;
    Hello b;
    b.proto_min = r.b_min;
    b.proto_max = r.b_max;
    EXPECT_EQ(negotiateVersion(a, b), r.expected)
        << r.a_min << ".." << r.a_max << " vs " << r.b_min << ".." << r.b_max;
    EXPECT_EQ(negotiateVersion(b, a), r.expected) << "swapped";
  }
}

}  // namespace
}  // namespace hacoord::mesh
