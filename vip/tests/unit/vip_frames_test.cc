// Unit tests for the GARP / NA / probe frames and their parsers: exact bytes, no network.
#include <arpa/inet.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include "vip/garp.h"
#include "vip/netlink_address.h"

namespace hacoord::vip {
namespace {

const MacAddress kMac = {0x02, 0x00, 0x5e, 0x10, 0x20, 0x30};
const MacAddress kOther = {0x02, 0x00, 0x5e, 0xaa, 0xbb, 0xcc};
const Ipv4Bytes kVip4 = {192, 0, 2, 100};

Ipv6Bytes v6(const char* text) {
  Ipv6Bytes out{};
  EXPECT_EQ(inet_pton(AF_INET6, text, out.data()), 1);
  return out;
}

// One's-complement sum of the pseudo-header and message: 0xffff when the checksum is right.
std::uint16_t checksumResidue(const std::vector<std::uint8_t>& frame) {
  const std::size_t ip = 14, icmp = 54;
  const std::size_t length = static_cast<std::size_t>((frame[ip + 4] << 8) | frame[ip + 5]);
  std::uint32_t sum = 0;
  auto add = [&sum](const std::uint8_t* p, std::size_t n) {
    for (std::size_t i = 0; i < n; i += 2)
      sum += static_cast<std::uint32_t>((p[i] << 8) | (i + 1 < n ? p[i + 1] : 0));
  };
  add(&frame[ip + 8], 32);
  sum += static_cast<std::uint32_t>(length);
  sum += frame[ip + 6];
  add(&frame[icmp], length);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(sum);
}

TEST(GarpFrames, RequestFormHasSenderEqualTargetAndZeroTargetMac) {
  auto frame = buildGratuitousArp(kMac, kVip4, kArpRequest);
  ASSERT_EQ(frame.size(), 60u);  // padded to the Ethernet minimum
  auto p = parseArpFrame(frame);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->eth_dst, kBroadcastMac);
  EXPECT_EQ(p->eth_src, kMac);
  EXPECT_EQ(p->op, kArpRequest);
  EXPECT_EQ(p->sender_mac, kMac);
  EXPECT_EQ(p->sender_ip, kVip4);
  EXPECT_EQ(p->target_ip, kVip4);
  EXPECT_EQ(p->target_mac, MacAddress{});
  // Fixed header bytes: htype 1, ptype 0x0800, hlen 6, plen 4.
  EXPECT_EQ(frame[12], 0x08);
  EXPECT_EQ(frame[13], 0x06);
  EXPECT_EQ(frame[14], 0x00);
  EXPECT_EQ(frame[15], 0x01);
  EXPECT_EQ(frame[16], 0x08);
  EXPECT_EQ(frame[17], 0x00);
  EXPECT_EQ(frame[18], 6);
  EXPECT_EQ(frame[19], 4);
}

TEST(GarpFrames, ReplyFormCarriesOwnMacAsTarget) {
  auto p = parseArpFrame(buildGratuitousArp(kMac, kVip4, kArpReply));
  ASSERT_TRUE(p);
  EXPECT_EQ(p->op, kArpReply);
  EXPECT_EQ(p->sender_ip, kVip4);
  EXPECT_EQ(p->target_ip, kVip4);
  EXPECT_EQ(p->target_mac, kMac);  // Linux counts a reply as gratuitous only when tha == sha
  EXPECT_EQ(p->eth_dst, kBroadcastMac);
}

TEST(GarpFrames, ProbeUsesZeroSenderIp) {
  auto p = parseArpFrame(buildArpProbe(kMac, kVip4));
  ASSERT_TRUE(p);
  EXPECT_EQ(p->op, kArpRequest);
  EXPECT_EQ(p->sender_ip, Ipv4Bytes{});
  EXPECT_EQ(p->target_ip, kVip4);
  EXPECT_EQ(p->sender_mac, kMac);
  EXPECT_FALSE(isArpConflict(*p, kVip4, kOther));  // a probe claims nothing
}

TEST(GarpFrames, ConflictIsAnotherMacClaimingTheIp) {
  // The reply a holder sends to our probe: sender = VIP at its MAC, target 0.0.0.0 at ours.
  auto reply = parseArpFrame(buildGratuitousArp(kOther, kVip4, kArpReply));
  ASSERT_TRUE(reply);
  EXPECT_TRUE(isArpConflict(*reply, kVip4, kMac));
  EXPECT_FALSE(isArpConflict(*reply, kVip4, kOther));  // our own announcement
  EXPECT_FALSE(isArpConflict(*reply, Ipv4Bytes{192, 0, 2, 101}, kMac));
}

TEST(GarpFrames, ParserRejectsOtherFrames) {
  auto frame = buildGratuitousArp(kMac, kVip4, kArpRequest);
  EXPECT_FALSE(parseArpFrame(std::span<const std::uint8_t>(frame.data(), 41)));
  frame[13] = 0x00;  // ethertype 0x0800: IPv4, not ARP
  EXPECT_FALSE(parseArpFrame(frame));
}

TEST(NaFrames, UnsolicitedNaBody) {
  const Ipv6Bytes target = v6("2001:db8::100");
  auto body = buildUnsolicitedNa(kMac, target);
  ASSERT_EQ(body.size(), 32u);
  EXPECT_EQ(body[0], 136);
  EXPECT_EQ(body[1], 0);
  EXPECT_EQ(body[4], 0x20);  // Override only
  EXPECT_EQ(std::vector<std::uint8_t>(body.begin() + 8, body.begin() + 24),
            std::vector<std::uint8_t>(target.begin(), target.end()));
  EXPECT_EQ(body[24], 2);  // target link-layer address option
  EXPECT_EQ(body[25], 1);
  EXPECT_EQ(MacAddress({body[26], body[27], body[28], body[29], body[30], body[31]}), kMac);
}

TEST(NaFrames, ParseAnNaFrameWithHeaders) {
  // Wrap the body the kernel would send in Ethernet + IPv6 headers, as a capture sees it.
  const Ipv6Bytes target = v6("2001:db8::100");
  const Ipv6Bytes all_nodes = v6("ff02::1");
  auto body = buildUnsolicitedNa(kMac, target);
  std::vector<std::uint8_t> frame = {0x33, 0x33, 0, 0, 0, 1};
  frame.insert(frame.end(), kMac.begin(), kMac.end());
  frame.insert(frame.end(), {0x86, 0xdd, 0x60, 0, 0, 0, 0, static_cast<std::uint8_t>(body.size()), 58, 255});
  frame.insert(frame.end(), target.begin(), target.end());
  frame.insert(frame.end(), all_nodes.begin(), all_nodes.end());
  frame.insert(frame.end(), body.begin(), body.end());
  auto na = parseNeighborAdvertFrame(frame);
  ASSERT_TRUE(na);
  EXPECT_TRUE(na->override_flag);
  EXPECT_FALSE(na->solicited);
  EXPECT_FALSE(na->router);
  EXPECT_EQ(na->hop_limit, 255);
  EXPECT_EQ(na->target, target);
  EXPECT_EQ(na->ip_src, target);
  EXPECT_EQ(na->ip_dst, all_nodes);
  ASSERT_TRUE(na->target_lladdr);
  EXPECT_EQ(*na->target_lladdr, kMac);
  EXPECT_TRUE(isNaConflict(*na, target, kOther));
  EXPECT_FALSE(isNaConflict(*na, target, kMac));
  EXPECT_FALSE(isNaConflict(*na, v6("2001:db8::101"), kOther));
}

TEST(NaFrames, DadProbeFrame) {
  const Ipv6Bytes target = v6("2001:db8::1:2345");
  auto frame = buildDadProbeFrame(kMac, target);
  ASSERT_EQ(frame.size(), 14u + 40u + 24u);
  // Ethernet multicast for the solicited-node group ff02::1:ff01:2345.
  EXPECT_EQ(MacAddress({frame[0], frame[1], frame[2], frame[3], frame[4], frame[5]}),
            MacAddress({0x33, 0x33, 0xff, 0x01, 0x23, 0x45}));
  EXPECT_EQ(frame[14 + 6], 58);   // next header ICMPv6
  EXPECT_EQ(frame[14 + 7], 255);  // hop limit
  EXPECT_EQ(std::vector<std::uint8_t>(frame.begin() + 22, frame.begin() + 38),
            std::vector<std::uint8_t>(16, 0));
  const Ipv6Bytes group = v6("ff02::1:ff01:2345");
  EXPECT_EQ(std::vector<std::uint8_t>(frame.begin() + 38, frame.begin() + 54),
            std::vector<std::uint8_t>(group.begin(), group.end()));
  EXPECT_EQ(frame[54], 135);
  EXPECT_EQ(checksumResidue(frame), 0xffff);
  EXPECT_FALSE(parseNeighborAdvertFrame(frame));  // an NS is not an NA
}

TEST(IpPrefix, ParseDefaultsToHostPrefix) {
  auto v4 = parseIpPrefix("192.0.2.100", -1);
  ASSERT_TRUE(v4.isOk());
  EXPECT_EQ(v4->family, AF_INET);
  EXPECT_EQ(v4->prefix_len, 32);
  EXPECT_EQ(v4->toString(), "192.0.2.100/32");
  auto v6p = parseIpPrefix("2001:DB8::100", 64);
  ASSERT_TRUE(v6p.isOk());
  EXPECT_EQ(v6p->family, AF_INET6);
  EXPECT_EQ(v6p->toString(), "2001:db8::100/64");
  EXPECT_EQ(parseIpPrefix("2001:db8::100", -1)->prefix_len, 128);
  EXPECT_TRUE(v4->sameAddress(*parseIpPrefix("192.0.2.100", 24)));
  EXPECT_FALSE(v4->sameAddress(*parseIpPrefix("192.0.2.101", 32)));
}

TEST(IpPrefix, ParseRejectsBadInput) {
  EXPECT_EQ(parseIpPrefix("300.1.1.1", -1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(parseIpPrefix("192.0.2.1/24", -1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(parseIpPrefix("192.0.2.1", 33).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(parseIpPrefix("2001:db8::1", 129).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(parseIpPrefix("", -1).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hacoord::vip
