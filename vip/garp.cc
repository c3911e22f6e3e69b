// GARP, unsolicited NA and duplicate probes over raw sockets (notes §6, RFC 5227, RFC 4861).
#include "vip/garp.h"

#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace hacoord::vip {
namespace {

constexpr std::size_t kEthHeader = 14;
constexpr std::size_t kArpBody = 28;
constexpr std::size_t kIpv6Header = 40;
constexpr std::size_t kMinFrame = 60;  // Ethernet minimum without FCS: short frames are padded
constexpr std::uint8_t kIcmpv6NeighborSolicit = 135;
constexpr std::uint8_t kIcmpv6NeighborAdvert = 136;
constexpr std::uint8_t kOptTargetLinkAddr = 2;
constexpr std::uint8_t kNaFlagRouter = 0x80;
constexpr std::uint8_t kNaFlagSolicited = 0x40;
constexpr std::uint8_t kNaFlagOverride = 0x20;

void put16(std::vector<std::uint8_t>& out, std::uint16_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v & 0xff));
}
template <std::size_t N>
void putBytes(std::vector<std::uint8_t>& out, const std::array<std::uint8_t, N>& bytes) {
  out.insert(out.end(), bytes.begin(), bytes.end());
}
std::uint16_t get16(std::span<const std::uint8_t> in, std::size_t at) {
  return static_cast<std::uint16_t>((in[at] << 8) | in[at + 1]);
}
template <std::size_t N>
std::array<std::uint8_t, N> getBytes(std::span<const std::uint8_t> in, std::size_t at) {
  std::array<std::uint8_t, N> out{};
  std::memcpy(out.data(), in.data() + at, N);
  return out;
}

void putEthernet(std::vector<std::uint8_t>& out, const MacAddress& dst, const MacAddress& src,
                 std::uint16_t type) {
  putBytes(out, dst);
  putBytes(out, src);
  put16(out, type);
}

std::vector<std::uint8_t> arpFrame(const MacAddress& eth_dst, const MacAddress& mac, std::uint16_t op,
                                   const Ipv4Bytes& sender_ip, const MacAddress& target_mac,
                                   const Ipv4Bytes& target_ip) {
  std::vector<std::uint8_t> out;
  out.reserve(kMinFrame);
  putEthernet(out, eth_dst, mac, ETH_P_ARP);
  put16(out, 1);  // htype Ethernet
  put16(out, ETH_P_IP);
  out.push_back(6);  // hlen
  out.push_back(4);  // plen
  put16(out, op);
  putBytes(out, mac);
  putBytes(out, sender_ip);
  putBytes(out, target_mac);
  putBytes(out, target_ip);
  out.resize(kMinFrame, 0);
  return out;
}

// The solicited-node multicast group of target (RFC 4291 §2.7.1): ff02::1:ffXX:XXXX.
Ipv6Bytes solicitedNode(const Ipv6Bytes& target) {
  Ipv6Bytes group = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, target[13], target[14], target[15]};
  return group;
}

// ICMPv6 checksum over the IPv6 pseudo-header and the message (RFC 4443 §2.3).
std::uint16_t icmpv6Checksum(const Ipv6Bytes& src, const Ipv6Bytes& dst,
                             std::span<const std::uint8_t> message) {
  std::uint32_t sum = 0;
  auto add = [&sum](std::span<const std::uint8_t> bytes) {
    for (std::size_t i = 0; i < bytes.size(); i += 2) {
      std::uint32_t word = static_cast<std::uint32_t>(bytes[i]) << 8;
      if (i + 1 < bytes.size()) word |= bytes[i + 1];
      sum += word;
    }
  };
  add(src);
  add(dst);
  const std::uint32_t length = static_cast<std::uint32_t>(message.size());
  const std::array<std::uint8_t, 8> tail = {static_cast<std::uint8_t>(length >> 24),
                                            static_cast<std::uint8_t>(length >> 16),
                                            static_cast<std::uint8_t>(length >> 8),
                                            static_cast<std::uint8_t>(length),
                                            0,
                                            0,
                                            0,
                                            IPPROTO_ICMPV6};
  add(tail);
  add(message);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum & 0xffff);
}

Status errnoStatus(const std::string& what, int err) {
  std::string message = what + ": " + std::strerror(err);
  if (err == EPERM || err == EACCES) return {StatusCode::kPermissionDenied, message};
  if (err == EAGAIN || err == ENOBUFS || err == EINTR) return unavailable(message);
  if (err == ENETDOWN || err == ENXIO || err == ENODEV)
    return failedPrecondition(message + " (interface down?)");
  if (err == EADDRNOTAVAIL || err == EINVAL) return failedPrecondition(message);
  return internalError(message);
}

// Classic BPF programs swapped on the packet socket: it keeps its protocol for life, so "not
// listening" is a filter that drops everything rather than a rebind.
Status attachFilter(int fd, bool accept) {
  sock_filter code[] = {{BPF_RET | BPF_K, 0, 0, accept ? 0x40000u : 0u}};
  sock_fprog program{1, code};
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &program, sizeof program) != 0) {
    return errnoStatus("SO_ATTACH_FILTER", errno);
  }
  return Status::ok();
}

void drain(int fd) {
  std::uint8_t buffer[2048];
  while (recv(fd, buffer, sizeof buffer, MSG_DONTWAIT) > 0) {
  }
}

}  // namespace

std::vector<std::uint8_t> buildGratuitousArp(const MacAddress& mac, const Ipv4Bytes& ip, std::uint16_t op) {
  const MacAddress target_mac = op == kArpReply ? mac : MacAddress{};
  return arpFrame(kBroadcastMac, mac, op, ip, target_mac, ip);
}

std::vector<std::uint8_t> buildArpProbe(const MacAddress& mac, const Ipv4Bytes& ip) {
  return arpFrame(kBroadcastMac, mac, kArpRequest, Ipv4Bytes{}, MacAddress{}, ip);
}

std::vector<std::uint8_t> buildUnsolicitedNa(const MacAddress& mac, const Ipv6Bytes& target) {
  std::vector<std::uint8_t> out;
  out.reserve(32);
  out.push_back(kIcmpv6NeighborAdvert);
  out.push_back(0);  // code
  put16(out, 0);     // checksum: the kernel computes it for IPPROTO_ICMPV6 raw sockets
  // Override: replace whatever link-layer address a neighbour has cached. Not Solicited: nobody
  // asked, and a solicited NA to a multicast group would be dropped (RFC 4861 §7.1.2).
  out.push_back(kNaFlagOverride);
  out.push_back(0);
  out.push_back(0);
  out.push_back(0);
  putBytes(out, target);
  out.push_back(kOptTargetLinkAddr);
  out.push_back(1);  // length in units of 8 bytes
  putBytes(out, mac);
  return out;
}

std::vector<std::uint8_t> buildDadProbeFrame(const MacAddress& mac, const Ipv6Bytes& target) {
  const Ipv6Bytes source{};  // :: marks a DAD probe: no host updates its neighbour table from it
  const Ipv6Bytes group = solicitedNode(target);
  std::vector<std::uint8_t> ns;
  ns.push_back(kIcmpv6NeighborSolicit);
  ns.push_back(0);
  put16(ns, 0);
  ns.insert(ns.end(), 4, 0);  // reserved
  putBytes(ns, target);
  const std::uint16_t checksum = icmpv6Checksum(source, group, ns);
  ns[2] = static_cast<std::uint8_t>(checksum >> 8);
  ns[3] = static_cast<std::uint8_t>(checksum & 0xff);

  std::vector<std::uint8_t> out;
  const MacAddress eth_dst = {0x33, 0x33, group[12], group[13], group[14], group[15]};
  putEthernet(out, eth_dst, mac, ETH_P_IPV6);
  out.push_back(0x60);  // version 6, traffic class 0, flow label 0
  out.insert(out.end(), 3, 0);
  put16(out, static_cast<std::uint16_t>(ns.size()));
  out.push_back(IPPROTO_ICMPV6);
  out.push_back(255);  // RFC 4861: receivers drop ND messages with any other hop limit
  putBytes(out, source);
  putBytes(out, group);
  out.insert(out.end(), ns.begin(), ns.end());
  return out;
}

std::optional<ArpPacket> parseArpFrame(std::span<const std::uint8_t> frame) {
  if (frame.size() < kEthHeader + kArpBody) return std::nullopt;
  if (get16(frame, 12) != ETH_P_ARP) return std::nullopt;
  const std::size_t a = kEthHeader;
  if (get16(frame, a) != 1 || get16(frame, a + 2) != ETH_P_IP || frame[a + 4] != 6 || frame[a + 5] != 4) {
    return std::nullopt;
  }
  ArpPacket p;
  p.eth_dst = getBytes<6>(frame, 0);
  p.eth_src = getBytes<6>(frame, 6);
  p.op = get16(frame, a + 6);
  p.sender_mac = getBytes<6>(frame, a + 8);
  p.sender_ip = getBytes<4>(frame, a + 14);
  p.target_mac = getBytes<6>(frame, a + 18);
  p.target_ip = getBytes<4>(frame, a + 24);
  return p;
}

bool isArpConflict(const ArpPacket& packet, const Ipv4Bytes& ip, const MacAddress& own_mac) {
  if (packet.op != kArpRequest && packet.op != kArpReply) return false;
  return packet.sender_ip == ip && packet.sender_mac != own_mac;
}

std::optional<NeighborAdvert> parseNeighborAdvertFrame(std::span<const std::uint8_t> frame) {
  if (frame.size() < kEthHeader + kIpv6Header + 24) return std::nullopt;
  if (get16(frame, 12) != ETH_P_IPV6) return std::nullopt;
  const std::size_t ip = kEthHeader;
  if ((frame[ip] >> 4) != 6 || frame[ip + 6] != IPPROTO_ICMPV6) return std::nullopt;
  const std::size_t payload = get16(frame, ip + 4);
  const std::size_t icmp = ip + kIpv6Header;
  if (payload < 24 || icmp + payload > frame.size()) return std::nullopt;
  if (frame[icmp] != kIcmpv6NeighborAdvert || frame[icmp + 1] != 0) return std::nullopt;
  NeighborAdvert na;
  na.eth_dst = getBytes<6>(frame, 0);
  na.eth_src = getBytes<6>(frame, 6);
  na.hop_limit = frame[ip + 7];
  na.ip_src = getBytes<16>(frame, ip + 8);
  na.ip_dst = getBytes<16>(frame, ip + 24);
  const std::uint8_t flags = frame[icmp + 4];
  na.router = (flags & kNaFlagRouter) != 0;
  na.solicited = (flags & kNaFlagSolicited) != 0;
  na.override_flag = (flags & kNaFlagOverride) != 0;
  na.target = getBytes<16>(frame, icmp + 8);
  for (std::size_t at = icmp + 24; at + 2 <= icmp + payload;) {
    const std::size_t length = static_cast<std::size_t>(frame[at + 1]) * 8;
    if (length == 0 || at + length > icmp + payload) break;  // malformed: stop, keep what we have
    if (frame[at] == kOptTargetLinkAddr && length >= 8) na.target_lladdr = getBytes<6>(frame, at + 2);
    at += length;
  }
  return na;
}

bool isNaConflict(const NeighborAdvert& advert, const Ipv6Bytes& target, const MacAddress& own_mac) {
  if (advert.target != target) return false;
  const MacAddress claimed = advert.target_lladdr.value_or(advert.eth_src);
  return claimed != own_mac;
}

Result<std::unique_ptr<Announcer>> Announcer::open(const LinkInfo& link, int family) {
  // The packet socket's protocol is what the duplicate probe listens for: ARP or IPv6.
  const std::uint16_t listen = family == AF_INET ? ETH_P_ARP : ETH_P_IPV6;
  int packet_fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(listen));
  if (packet_fd < 0) {
    return errnoStatus("open AF_PACKET raw socket", errno);
  }
  auto closeOnError = [&](Status s) {
    close(packet_fd);
    return s;
  };
  if (Status s = attachFilter(packet_fd, false); !s.isOk()) return closeOnError(s);
  sockaddr_ll bound{};
  bound.sll_family = AF_PACKET;
  bound.sll_protocol = htons(listen);
  bound.sll_ifindex = link.ifindex;
  if (bind(packet_fd, reinterpret_cast<sockaddr*>(&bound), sizeof bound) != 0) {
    return closeOnError(errnoStatus("bind AF_PACKET socket to " + link.name, errno));
  }
  drain(packet_fd);  // frames queued between socket() and the drop-all filter

  int icmp6_fd = -1;
  if (family == AF_INET6) {
    icmp6_fd = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6);
    if (icmp6_fd < 0) {
      return closeOnError(errnoStatus("open ICMPv6 raw socket", errno));
    }
    auto fail = [&](const std::string& what) {
      Status s = errnoStatus(what, errno);
      close(icmp6_fd);
      return closeOnError(s);
    };
    // We only send: without this filter every ICMPv6 packet on the host would queue here.
    icmp6_filter filter;
    ICMP6_FILTER_SETBLOCKALL(&filter);
    if (setsockopt(icmp6_fd, IPPROTO_ICMPV6, ICMP6_FILTER, &filter, sizeof filter) != 0) {
      return fail("ICMP6_FILTER");
    }
    if (setsockopt(icmp6_fd, SOL_SOCKET, SO_BINDTODEVICE, link.name.c_str(),
                   static_cast<socklen_t>(link.name.size())) != 0) {
      return fail("SO_BINDTODEVICE " + link.name);
    }
    const int ifindex = link.ifindex;
    if (setsockopt(icmp6_fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &ifindex, sizeof ifindex) != 0) {
      return fail("IPV6_MULTICAST_IF");
    }
    const int hops = 255;  // RFC 4861 §7.1.2: receivers drop an NA with any other hop limit
    if (setsockopt(icmp6_fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof hops) != 0) {
      return fail("IPV6_MULTICAST_HOPS");
    }
    // Our own stack would only log "someone advertises our address" for a looped copy.
    const int loop = 0;
    if (setsockopt(icmp6_fd, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &loop, sizeof loop) != 0) {
      return fail("IPV6_MULTICAST_LOOP");
    }
  }
  return std::unique_ptr<Announcer>(new Announcer(link.ifindex, packet_fd, icmp6_fd));
}

Announcer::~Announcer() {
  close(packet_fd_);
  if (icmp6_fd_ >= 0) close(icmp6_fd_);
}

Status Announcer::sendFrame(const std::vector<std::uint8_t>& frame, const MacAddress& dst,
                            std::uint16_t ethertype) {
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_protocol = htons(ethertype);
  to.sll_ifindex = ifindex_;
  to.sll_halen = 6;
  std::memcpy(to.sll_addr, dst.data(), dst.size());
  // MSG_DONTWAIT: a full queue is reported (Unavailable), never waited on.
  auto send = [&] {
    return sendto(packet_fd_, frame.data(), frame.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&to),
                  sizeof to);
  };
  ssize_t sent = send();
  // A link that went down sets ENETDOWN on the packet socket, and the kernel reports it on the
  // next send even when the link is up again (and clears it then): once more, so a past flap
  // costs no announcement. A link still down fails the second send too.
  if (sent < 0 && errno == ENETDOWN) sent = send();
  if (sent < 0) return errnoStatus("send raw frame", errno);
  if (static_cast<std::size_t>(sent) != frame.size()) return internalError("short raw frame send");
  return Status::ok();
}

Status Announcer::sendGratuitousArp(const MacAddress& mac, const Ipv4Bytes& ip, std::uint16_t op) {
  return sendFrame(buildGratuitousArp(mac, ip, op), kBroadcastMac, ETH_P_ARP);
}

Status Announcer::sendUnsolicitedNa(const MacAddress& mac, const Ipv6Bytes& ip) {
  if (icmp6_fd_ < 0) return failedPrecondition("no ICMPv6 socket: the VIP is not IPv6");
  std::vector<std::uint8_t> body = buildUnsolicitedNa(mac, ip);
  sockaddr_in6 to{};
  to.sin6_family = AF_INET6;
  inet_pton(AF_INET6, "ff02::1", &to.sin6_addr);
  to.sin6_scope_id = static_cast<std::uint32_t>(ifindex_);
  iovec iov{body.data(), body.size()};
  // Source = the VIP on this interface, per packet: a socket bound once at start could not
  // follow the VIP being removed and added again, and the kernel refuses a source it does not hold.
  alignas(cmsghdr) std::uint8_t control[CMSG_SPACE(sizeof(in6_pktinfo))] = {};
  msghdr msg{};
  msg.msg_name = &to;
  msg.msg_namelen = sizeof to;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = IPPROTO_IPV6;
  cmsg->cmsg_type = IPV6_PKTINFO;
  cmsg->cmsg_len = CMSG_LEN(sizeof(in6_pktinfo));
  in6_pktinfo info{};
  std::memcpy(&info.ipi6_addr, ip.data(), ip.size());
  info.ipi6_ifindex = static_cast<unsigned>(ifindex_);
  std::memcpy(CMSG_DATA(cmsg), &info, sizeof info);
  ssize_t sent = sendmsg(icmp6_fd_, &msg, MSG_DONTWAIT);
  if (sent < 0) return errnoStatus("send neighbour advertisement", errno);
  return Status::ok();
}

Result<std::optional<MacAddress>> Announcer::probe(const MacAddress& mac, const IpPrefix& address,
                                                   std::chrono::milliseconds wait) {
  using Clock = std::chrono::steady_clock;
  std::vector<std::uint8_t> frame;
  MacAddress dst;
  std::uint16_t ethertype;
  if (address.family == AF_INET) {
    frame = buildArpProbe(mac, address.v4());
    dst = kBroadcastMac;
    ethertype = ETH_P_ARP;
  } else {
    Ipv6Bytes target;
    std::memcpy(target.data(), address.bytes.data(), target.size());
    frame = buildDadProbeFrame(mac, target);
    std::memcpy(dst.data(), frame.data(), dst.size());
    ethertype = ETH_P_IPV6;
  }
  if (Status s = attachFilter(packet_fd_, true); !s.isOk()) return s;
  std::optional<MacAddress> conflict;
  Status status = sendFrame(frame, dst, ethertype);
  const auto start = Clock::now();
  const auto deadline = start + wait;
  auto resend_at = start + wait / 2;  // a second probe: one lost frame must not hide a duplicate
  bool resent = false;
  while (status.isOk() && !conflict) {
    auto now = Clock::now();
    if (now >= deadline) break;
    if (!resent && now >= resend_at) {
      status = sendFrame(frame, dst, ethertype);
      resent = true;
      continue;
    }
    auto until = resent ? deadline : std::min(deadline, resend_at);
    int timeout_ms = static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(until - now).count());
    pollfd pfd{packet_fd_, POLLIN, 0};
    int ready = poll(&pfd, 1, timeout_ms);
    if (ready < 0 && errno != EINTR) {
      status = errnoStatus("poll duplicate probe", errno);
      break;
    }
    if (ready <= 0) continue;
    std::uint8_t buffer[2048];
    sockaddr_ll from{};
    socklen_t from_len = sizeof from;
    ssize_t n;
    while ((n = recvfrom(packet_fd_, buffer, sizeof buffer, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from),
                         &from_len)) > 0) {
      from_len = sizeof from;
      if (from.sll_pkttype == PACKET_OUTGOING) continue;  // our own probe
      std::span<const std::uint8_t> received(buffer, static_cast<std::size_t>(n));
      if (address.family == AF_INET) {
        if (auto arp = parseArpFrame(received); arp && isArpConflict(*arp, address.v4(), mac)) {
          conflict = arp->sender_mac;
          break;
        }
      } else {
        Ipv6Bytes target;
        std::memcpy(target.data(), address.bytes.data(), target.size());
        if (auto na = parseNeighborAdvertFrame(received); na && isNaConflict(*na, target, mac)) {
          conflict = na->target_lladdr.value_or(na->eth_src);
          break;
        }
      }
    }
  }
  Status restored = attachFilter(packet_fd_, false);
  drain(packet_fd_);
  if (!status.isOk()) return status;
  if (!restored.isOk()) return restored;
  return conflict;
}

}  // namespace hacoord::vip
