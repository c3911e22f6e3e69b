// NetlinkAddress: libnl-route-3 calls for the VIP, with the traps of notes §5 in one place.
#include "vip/netlink_address.h"

#include <arpa/inet.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <net/if.h>

#include <cstdio>
#include <cstring>

#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>

namespace hacoord::vip {
namespace {

// libnl returns negative NLE_* codes; the caller's reaction depends on the Status code.
Status fromNl(int err, const std::string& what) {
  const int code = err < 0 ? -err : err;
  std::string message = what + ": " + nl_geterror(err);
  switch (code) {
    case NLE_EXIST:
      return {StatusCode::kAlreadyExists, message};
    case NLE_PERM:
      return {StatusCode::kPermissionDenied, message + " (needs CAP_NET_ADMIN)"};
    // EACCES, e.g. an IPv6 address on an interface with IPv6 disabled: not a capability problem.
    case NLE_NOACCESS:
      return failedPrecondition(message);
    // NLE_NOADDR's text is the misleading "Invalid address for specified address family".
    case NLE_NOADDR:
      return notFound(what + ": address not present (with this prefix)");
    case NLE_OBJ_NOTFOUND:
    case NLE_NODEV:
      return notFound(message);
    case NLE_AGAIN:
    case NLE_BUSY:
    case NLE_NOMEM:
    case NLE_INTR:
    case NLE_DUMP_INTR:
      return unavailable(message);
    default:
      return internalError(message);
  }
}

// Owning wrappers: every libnl object here is reference-counted or freed by a matching call.
struct AddrPut {
  void operator()(nl_addr* a) const { nl_addr_put(a); }
};
struct RtnlAddrPut {
  void operator()(rtnl_addr* a) const { rtnl_addr_put(a); }
};
struct LinkPut {
  void operator()(rtnl_link* l) const { rtnl_link_put(l); }
};
struct CacheFree {
  void operator()(nl_cache* c) const { nl_cache_free(c); }
};
using NlAddrPtr = std::unique_ptr<nl_addr, AddrPut>;
using RtnlAddrPtr = std::unique_ptr<rtnl_addr, RtnlAddrPut>;

Result<RtnlAddrPtr> buildAddress(int ifindex, const IpPrefix& address,
                                 std::optional<std::uint32_t> lifetime_s) {
  NlAddrPtr local(nl_addr_build(address.family, address.bytes.data(), address.size()));
  if (!local) return internalError("nl_addr_build failed");
  // rtnl_addr_set_local copies the prefix length from the nl_addr: set it there first.
  nl_addr_set_prefixlen(local.get(), address.prefix_len);
  RtnlAddrPtr a(rtnl_addr_alloc());
  if (!a) return internalError("rtnl_addr_alloc failed");
  rtnl_addr_set_ifindex(a.get(), ifindex);
  if (int err = rtnl_addr_set_local(a.get(), local.get()); err < 0) return fromNl(err, "rtnl_addr_set_local");
  rtnl_addr_set_prefixlen(a.get(), address.prefix_len);
  // Never rtnl_addr_set_label(NULL): it segfaults (strlen). The kernel default label is fine.
  if (address.family == AF_INET6) {
    // No duplicate address detection: the address is usable at once (never "tentative"), which
    // the unsolicited NA needs as its source, and failover must not wait ~1 s for DAD.
    rtnl_addr_set_flags(a.get(), IFA_F_NODAD);
  }
  if (lifetime_s) {
    // IFA_CACHEINFO: the kernel deletes the address by itself when the valid lifetime runs out.
    rtnl_addr_set_valid_lifetime(a.get(), *lifetime_s);
    rtnl_addr_set_preferred_lifetime(a.get(), *lifetime_s);
  }
  return a;
}

}  // namespace

std::string formatMac(const MacAddress& mac) {
  char text[18];
  std::snprintf(text, sizeof text, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4],
                mac[5]);
  return text;
}

std::size_t IpPrefix::size() const { return family == AF_INET ? 4 : 16; }

std::string IpPrefix::addressText() const {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, bytes.data(), text, sizeof text);
  return text;
}

std::string IpPrefix::toString() const { return addressText() + "/" + std::to_string(prefix_len); }

bool IpPrefix::sameAddress(const IpPrefix& other) const {
  return family == other.family && std::memcmp(bytes.data(), other.bytes.data(), size()) == 0;
}

std::array<std::uint8_t, 4> IpPrefix::v4() const { return {bytes[0], bytes[1], bytes[2], bytes[3]}; }

Result<IpPrefix> parseIpPrefix(const std::string& address, int prefix_len) {
  IpPrefix out;
  if (address.find('\0') != std::string::npos) return invalidArgument("VIP address contains a NUL byte");
  if (inet_pton(AF_INET, address.c_str(), out.bytes.data()) == 1) {
    out.family = AF_INET;
  } else if (inet_pton(AF_INET6, address.c_str(), out.bytes.data()) == 1) {
    out.family = AF_INET6;
  } else {
    return invalidArgument("VIP address '" + address + "' is not an IPv4 or IPv6 address");
  }
  const int max_len = out.family == AF_INET ? 32 : 128;
  if (prefix_len == -1) prefix_len = max_len;  // a host route: never shares a subnet (notes §5)
  if (prefix_len < 0 || prefix_len > max_len) {
    return invalidArgument("VIP prefix length " + std::to_string(prefix_len) + " out of range 0.." +
                           std::to_string(max_len));
  }
  out.prefix_len = prefix_len;
  return out;
}

Result<std::unique_ptr<NetlinkAddress>> NetlinkAddress::open() {
  nl_sock* sock = nl_socket_alloc();
  if (!sock) return internalError("nl_socket_alloc failed");
  if (int err = nl_connect(sock, NETLINK_ROUTE); err < 0) {
    nl_socket_free(sock);
    return fromNl(err, "connect NETLINK_ROUTE");
  }
  return std::unique_ptr<NetlinkAddress>(new NetlinkAddress(sock));
}

NetlinkAddress::~NetlinkAddress() { nl_socket_free(sock_); }  // also closes the socket

Result<LinkInfo> NetlinkAddress::link(const std::string& name) {
  rtnl_link* raw = nullptr;
  // One RTM_GETLINK for this name rather than a dump of every link on a busy host.
  if (int err = rtnl_link_get_kernel(sock_, 0, name.c_str(), &raw); err < 0) {
    if (err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV) return notFound("no interface named '" + name + "'");
    return fromNl(err, "look up interface '" + name + "'");
  }
  std::unique_ptr<rtnl_link, LinkPut> l(raw);
  LinkInfo info;
  info.ifindex = rtnl_link_get_ifindex(l.get());
  info.name = name;
  info.arp_type = rtnl_link_get_arptype(l.get());
  info.up = (rtnl_link_get_flags(l.get()) & IFF_UP) != 0;
  if (nl_addr* mac = rtnl_link_get_addr(l.get()); mac && nl_addr_get_len(mac) == info.mac.size()) {
    std::memcpy(info.mac.data(), nl_addr_get_binary_addr(mac), info.mac.size());
  }
  return info;
}

Status NetlinkAddress::checkAdminPermission(int ifindex) {
  nl_msg* msg = nlmsg_alloc_simple(RTM_SETLINK, 0);
  if (!msg) return internalError("nlmsg_alloc failed");
  // ifi_flags = ifi_change = 0 and no attributes: do_setlink() has nothing to change.
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = ifindex;
  if (int err = nlmsg_append(msg, &ifi, sizeof ifi, NLMSG_ALIGNTO); err < 0) {
    nlmsg_free(msg);
    return fromNl(err, "build RTM_SETLINK");
  }
  int err = nl_send_sync(sock_, msg);  // frees msg; waits for the kernel's ack
  if (err == -NLE_PERM)
    return {StatusCode::kPermissionDenied, std::string("no-op RTM_SETLINK: ") + nl_geterror(err)};
  if (err < 0) return fromNl(err, "netlink permission check (no-op RTM_SETLINK)");
  return Status::ok();
}

Status NetlinkAddress::write(int ifindex, const IpPrefix& address, std::optional<std::uint32_t> lifetime_s,
                             int flags, const char* what) {
  auto a = buildAddress(ifindex, address, lifetime_s);
  if (!a.isOk()) return a.status();
  if (int err = rtnl_addr_add(sock_, a->get(), flags); err < 0) {
    return fromNl(err, std::string(what) + " " + address.toString());
  }
  return Status::ok();
}

Status NetlinkAddress::add(int ifindex, const IpPrefix& address, std::optional<std::uint32_t> lifetime_s) {
  return write(ifindex, address, lifetime_s, NLM_F_EXCL, "add");
}

Status NetlinkAddress::replace(int ifindex, const IpPrefix& address,
                               std::optional<std::uint32_t> lifetime_s) {
  return write(ifindex, address, lifetime_s, NLM_F_REPLACE, "replace");
}

Status NetlinkAddress::remove(int ifindex, const IpPrefix& address) {
  auto a = buildAddress(ifindex, address, std::nullopt);
  if (!a.isOk()) return a.status();
  if (int err = rtnl_addr_delete(sock_, a->get(), 0); err < 0) {
    return fromNl(err, "delete " + address.toString());
  }
  return Status::ok();
}

Result<std::optional<AddressState>> NetlinkAddress::find(int ifindex, const IpPrefix& address) {
  nl_cache* raw = nullptr;
  if (int err = rtnl_addr_alloc_cache(sock_, &raw); err < 0) return fromNl(err, "dump addresses");
  std::unique_ptr<nl_cache, CacheFree> cache(raw);
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj; obj = nl_cache_get_next(obj)) {
    auto* a = reinterpret_cast<rtnl_addr*>(obj);
    if (rtnl_addr_get_ifindex(a) != ifindex || rtnl_addr_get_family(a) != address.family) continue;
    nl_addr* local = rtnl_addr_get_local(a);
    if (!local || nl_addr_get_len(local) != address.size()) continue;
    if (std::memcmp(nl_addr_get_binary_addr(local), address.bytes.data(), address.size()) != 0) continue;
    AddressState state;
    state.prefix_len = rtnl_addr_get_prefixlen(a);
    state.valid_lifetime = rtnl_addr_get_valid_lifetime(a);
    state.preferred_lifetime = rtnl_addr_get_preferred_lifetime(a);
    return std::optional<AddressState>(state);
  }
  return std::optional<AddressState>();
}

}  // namespace hacoord::vip
