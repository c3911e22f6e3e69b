// NetlinkAddress: add, extend, delete and look up one interface address with libnl-route-3.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "hacoord/status.h"

struct nl_sock;  // libnl stays out of every vip header, so users of hacoord_vip never see it

namespace hacoord::vip {

using MacAddress = std::array<std::uint8_t, 6>;
std::string formatMac(const MacAddress& mac);  // "aa:bb:cc:dd:ee:ff"

// One address and its prefix length, in network byte order.
struct IpPrefix {
  int family = 0;                        // AF_INET or AF_INET6
  std::array<std::uint8_t, 16> bytes{};  // IPv4 uses the first 4
  int prefix_len = 0;

  std::size_t size() const;
  std::string addressText() const;                // "192.0.2.100", "2001:db8::100"
  std::string toString() const;                   // "192.0.2.100/32"
  bool sameAddress(const IpPrefix& other) const;  // family and bytes; the prefix is ignored
  std::array<std::uint8_t, 4> v4() const;
};

// Parses a bare address (no prefix, no zone). prefix_len -1 means a host prefix (32 or 128).
Result<IpPrefix> parseIpPrefix(const std::string& address, int prefix_len);

struct LinkInfo {
  int ifindex = 0;
  std::string name;
  MacAddress mac{};
  unsigned arp_type = 0;  // ARPHRD_*; GARP and NA need ARPHRD_ETHER
  bool up = false;        // IFF_UP
};

// What the kernel reports for an address it holds. Lifetimes are the seconds left;
// kForever means no lifetime (a permanent address).
inline constexpr std::uint32_t kForever = 0xFFFFFFFFu;
struct AddressState {
  int prefix_len = 0;
  std::uint32_t valid_lifetime = kForever;
  std::uint32_t preferred_lifetime = kForever;
};

// A NETLINK_ROUTE socket bound to the network namespace of the thread that called open().
// Not thread-safe: the owner serialises calls (VipManager holds its mutex).
class NetlinkAddress {
 public:
  static Result<std::unique_ptr<NetlinkAddress>> open();
  ~NetlinkAddress();
  NetlinkAddress(const NetlinkAddress&) = delete;
  NetlinkAddress& operator=(const NetlinkAddress&) = delete;

  // NotFound for an unknown interface.
  Result<LinkInfo> link(const std::string& name);
  // Sends an RTM_SETLINK that changes nothing: the kernel checks CAP_NET_ADMIN (in the user
  // namespace owning this network namespace) before it looks at the request, so this is the
  // exact permission an address change needs, tested without changing anything.
  Status checkAdminPermission(int ifindex);

  // lifetime_s: valid and preferred lifetime in whole seconds (IFA_CACHEINFO); nullopt = forever.
  // add() uses NLM_F_EXCL: AlreadyExists when the address is already on the interface.
  Status add(int ifindex, const IpPrefix& address, std::optional<std::uint32_t> lifetime_s);
  // NLM_F_REPLACE: updates the lifetime of a present address (libnl also sets NLM_F_CREATE, so an
  // absent one is created; callers that must announce a new address check find() first).
  Status replace(int ifindex, const IpPrefix& address, std::optional<std::uint32_t> lifetime_s);
  // Deletes with address.prefix_len, which must be the prefix the address has (else NotFound).
  Status remove(int ifindex, const IpPrefix& address);
  // Walks the address cache and compares ifindex and address bytes, so any prefix matches
  // (rtnl_addr_get only finds the address under the identical prefix).
  Result<std::optional<AddressState>> find(int ifindex, const IpPrefix& address);

 private:
  explicit NetlinkAddress(nl_sock* sock) : sock_(sock) {}
  Status write(int ifindex, const IpPrefix& address, std::optional<std::uint32_t> lifetime_s, int flags,
               const char* what);

  nl_sock* sock_;
};

}  // namespace hacoord::vip
