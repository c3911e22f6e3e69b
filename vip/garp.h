// Gratuitous ARP, unsolicited NA and duplicate probes: frame builders, parsers and the raw sockets.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "hacoord/status.h"
#include "vip/netlink_address.h"

namespace hacoord::vip {

using Ipv4Bytes = std::array<std::uint8_t, 4>;
using Ipv6Bytes = std::array<std::uint8_t, 16>;

inline constexpr MacAddress kBroadcastMac = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
inline constexpr std::uint16_t kArpRequest = 1;
inline constexpr std::uint16_t kArpReply = 2;

// --- Frame builders (pure; unit-tested) ---

// Broadcast gratuitous ARP, sender = target = ip, padded to the 60-byte Ethernet minimum.
// Request form: tha = 00:00:00:00:00:00 (as keepalived sends it).
// Reply form: tha = our own MAC. Linux treats an unsolicited *reply* as gratuitous only when
// tha == sha (arp_process(): is_garp), which lets it override a neighbour entry inside locktime.
std::vector<std::uint8_t> buildGratuitousArp(const MacAddress& mac, const Ipv4Bytes& ip, std::uint16_t op);
// RFC 5227 probe: sender ip 0.0.0.0 so no neighbour table learns anything from it; target = ip.
// A host holding ip answers with a unicast reply to our MAC.
std::vector<std::uint8_t> buildArpProbe(const MacAddress& mac, const Ipv4Bytes& ip);
// ICMPv6 body of an unsolicited NA: Override set (Solicited and Router clear), target = ip, and a
// target link-layer address option. The kernel adds the IPv6 header and the checksum.
std::vector<std::uint8_t> buildUnsolicitedNa(const MacAddress& mac, const Ipv6Bytes& target);
// Whole Ethernet frame of an RFC 4862 DAD probe: NS from :: to the solicited-node group of target,
// hop limit 255, no source link-layer option, checksum filled in. A host holding target answers
// with an NA to ff02::1. Sent through AF_PACKET because a socket cannot send from ::.
std::vector<std::uint8_t> buildDadProbeFrame(const MacAddress& mac, const Ipv6Bytes& target);

// --- Parsers (for the duplicate probe and the tests) ---

struct ArpPacket {
  MacAddress eth_src{}, eth_dst{};
  std::uint16_t op = 0;
  MacAddress sender_mac{}, target_mac{};
  Ipv4Bytes sender_ip{}, target_ip{};
};
// An Ethernet/IPv4 ARP frame, or nullopt for anything else.
std::optional<ArpPacket> parseArpFrame(std::span<const std::uint8_t> frame);
// True when another MAC claims ip: a reply or announcement with sender ip = ip from a MAC not ours.
bool isArpConflict(const ArpPacket& packet, const Ipv4Bytes& ip, const MacAddress& own_mac);

struct NeighborAdvert {
  MacAddress eth_src{}, eth_dst{};
  Ipv6Bytes ip_src{}, ip_dst{};
  int hop_limit = 0;
  bool router = false, solicited = false, override_flag = false;
  Ipv6Bytes target{};
  std::optional<MacAddress> target_lladdr;  // option type 2
};
// An Ethernet/IPv6 frame carrying an ICMPv6 NA (no extension headers), or nullopt.
std::optional<NeighborAdvert> parseNeighborAdvertFrame(std::span<const std::uint8_t> frame);
// True when another MAC advertises target (by its link-layer option, else the Ethernet source).
bool isNaConflict(const NeighborAdvert& advert, const Ipv6Bytes& target, const MacAddress& own_mac);

// --- Sockets ---

// The raw sockets for one interface, all opened by open(): a socket keeps the network namespace it
// was created in, so later calls from any thread act where open() ran. open() is also the
// CAP_NET_RAW check (PermissionDenied). Not thread-safe: VipManager serialises the calls.
class Announcer {
 public:
  static Result<std::unique_ptr<Announcer>> open(const LinkInfo& link, int family);
  ~Announcer();
  Announcer(const Announcer&) = delete;
  Announcer& operator=(const Announcer&) = delete;

  Status sendGratuitousArp(const MacAddress& mac, const Ipv4Bytes& ip, std::uint16_t op);
  // Sent from ip (IPV6_PKTINFO), so ip must be configured and not tentative.
  Status sendUnsolicitedNa(const MacAddress& mac, const Ipv6Bytes& ip);
  // Sends a duplicate probe (ARP probe or DAD NS) twice, wait/2 apart, and listens for `wait`.
  // Returns the MAC of another host that answered for address, or nullopt.
  Result<std::optional<MacAddress>> probe(const MacAddress& mac, const IpPrefix& address,
                                          std::chrono::milliseconds wait);

 private:
  Announcer(int ifindex, int packet_fd, int icmp6_fd)
      : ifindex_(ifindex), packet_fd_(packet_fd), icmp6_fd_(icmp6_fd) {}
  Status sendFrame(const std::vector<std::uint8_t>& frame, const MacAddress& dst, std::uint16_t ethertype);
  Status bindPacket(std::uint16_t ethertype);

  int ifindex_;
  int packet_fd_;  // AF_PACKET SOCK_RAW; protocol 0 (receives nothing) except while probing
  int icmp6_fd_;   // IPv6 VIPs only: ICMPv6 raw socket, all input filtered out; else -1
};

}  // namespace hacoord::vip
