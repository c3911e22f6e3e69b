// System tests for the announcements on the wire: GARP, NA, burst and refresh, repointing.
#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <iostream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "vip/garp.h"
#include "support/eventually.h"
#include "vip/tests/netns_fixture.h"
#include "vip/vip_manager.h"

namespace hacoord {
namespace {

using vip::test::Capture;
using vip::test::Frame;
using vip::test::TestNetwork;
using namespace std::chrono_literals;

constexpr const char* kVip4 = "192.0.2.100";
constexpr const char* kVip6 = "2001:db8::100";

TimePoint now() { return leaseClockNow(); }

VipConfig announceConfig(const std::string& address) {
  VipConfig c;
  c.address = address;
  c.interface = "eth0";
  c.garp_count = 3;
  c.garp_interval = 100ms;
  c.garp_refresh = 400ms;
  return c;
}

std::unique_ptr<VipManager> createIn(const std::string& ns, const VipConfig& config) {
  auto manager = vip::test::inNetns(ns, [&] {
    return VipManager::create(config, VipTimings{}, vip::test::vipScheduler(), vip::test::vipClock());
  });
  if (!manager.isOk()) {
    ADD_FAILURE() << manager.status().toString();
    return nullptr;
  }
  return std::move(*manager);
}

vip::Ipv4Bytes v4(const char* text) {
  vip::Ipv4Bytes out{};
  inet_pton(AF_INET, text, out.data());
  return out;
}
vip::Ipv6Bytes v6(const char* text) {
  vip::Ipv6Bytes out{};
  inet_pton(AF_INET6, text, out.data());
  return out;
}

long long msBetween(const Frame& a, const Frame& b) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(b.at - a.at).count();
}

TEST(VipAnnounce, GratuitousArpRequestAndReplyFormsInABurstThenRefresh) {
  HACOORD_REQUIRE_NETNS();
  TestNetwork net;
  const auto hosts = net.addLan(2);
  const std::string& owner = hosts[0];
  const std::string& peer = hosts[1];
  const vip::MacAddress owner_mac = vip::test::macOf(owner, "eth0");
  Capture capture(peer, "eth0");
  auto manager = createIn(owner, announceConfig(kVip4));
  ASSERT_TRUE(manager);

  std::vector<Frame> requests, replies;
  auto classify = [&](const std::vector<Frame>& frames) {
    requests.clear();
    replies.clear();
    for (const auto& f : frames) {
      auto arp = vip::parseArpFrame(f.bytes);
      if (!arp || arp->sender_ip != v4(kVip4)) continue;
      (arp->op == vip::kArpRequest ? requests : replies).push_back(f);
    }
  };
  ASSERT_TRUE(manager->acquire(Epoch(9), now() + 1800ms).isOk());
  // Burst of 3 (100 ms apart), then the first refresh 400 ms later: 4 of each form.
  capture.collect(
      [&](const std::vector<Frame>& frames) {
        classify(frames);
        return requests.size() >= 4 && replies.size() >= 4;
      },
      3s);
  ASSERT_GE(requests.size(), 4u);
  ASSERT_GE(replies.size(), 4u);
  for (const auto& f : requests) {
    auto arp = *vip::parseArpFrame(f.bytes);
    EXPECT_EQ(arp.eth_dst, vip::kBroadcastMac);
    EXPECT_EQ(arp.eth_src, owner_mac);
    EXPECT_EQ(arp.sender_mac, owner_mac);
    EXPECT_EQ(arp.target_ip, v4(kVip4));  // sender = target = VIP
    EXPECT_EQ(arp.target_mac, vip::MacAddress{});
  }
  for (const auto& f : replies) {
    auto arp = *vip::parseArpFrame(f.bytes);
    EXPECT_EQ(arp.eth_dst, vip::kBroadcastMac);
    EXPECT_EQ(arp.sender_mac, owner_mac);
    EXPECT_EQ(arp.target_ip, v4(kVip4));
    EXPECT_EQ(arp.target_mac, owner_mac);
  }
  const long long burst_ms = msBetween(requests[0], requests[2]);
  const long long refresh_ms = msBetween(requests[2], requests[3]);
  std::cout << "  burst: 3 requests over " << burst_ms << " ms; refresh " << refresh_ms << " ms after\n";
  EXPECT_GE(burst_ms, 180);  // 2 intervals of 100 ms
  EXPECT_LT(burst_ms, 1000);
  EXPECT_GE(refresh_ms, 350);  // garp_refresh 400 ms
  // The capture can see the fourth pair before the sender has counted it: poll the counter.
  EXPECT_TRUE(eventually([&] { return manager->metrics().garps_sent >= 8u; }, 2s))
      << "garps_sent = " << manager->metrics().garps_sent;
  EXPECT_EQ(manager->metrics().epoch, 9u);
  ASSERT_TRUE(manager->release(Epoch(9)).isOk());
}

TEST(VipAnnounce, UnsolicitedNeighbourAdvertisementWithOverride) {
  HACOORD_REQUIRE_NETNS();
  TestNetwork net;
  const auto hosts = net.addLan(2);
  const std::string& owner = hosts[0];
  const std::string& peer = hosts[1];
  const vip::MacAddress owner_mac = vip::test::macOf(owner, "eth0");
  Capture capture(peer, "eth0");
  auto manager = createIn(owner, announceConfig(kVip6));
  ASSERT_TRUE(manager);
  ASSERT_TRUE(manager->acquire(Epoch(2), now() + 1800ms).isOk());

  std::vector<vip::NeighborAdvert> adverts;
  capture.collect(
      [&](const std::vector<Frame>& frames) {
        adverts.clear();
        for (const auto& f : frames) {
          auto na = vip::parseNeighborAdvertFrame(f.bytes);
          if (na && na->target == v6(kVip6)) adverts.push_back(*na);
        }
        return adverts.size() >= 3;
      },
      3s);
  ASSERT_GE(adverts.size(), 3u);
  const vip::MacAddress all_nodes_mac = {0x33, 0x33, 0, 0, 0, 1};
  for (const auto& na : adverts) {
    EXPECT_EQ(na.eth_src, owner_mac);
    EXPECT_EQ(na.eth_dst, all_nodes_mac);
    EXPECT_EQ(na.ip_src, v6(kVip6));
    EXPECT_EQ(na.ip_dst, v6("ff02::1"));
    EXPECT_EQ(na.hop_limit, 255);
    EXPECT_TRUE(na.override_flag);
    EXPECT_FALSE(na.solicited);
    EXPECT_FALSE(na.router);
    ASSERT_TRUE(na.target_lladdr);
    EXPECT_EQ(*na.target_lladdr, owner_mac);
  }
  EXPECT_TRUE(eventually([&] { return manager->metrics().nas_sent >= 3u; }, 2s))
      << "nas_sent = " << manager->metrics().nas_sent;
  EXPECT_EQ(manager->metrics().garps_sent, 0u);
  ASSERT_TRUE(manager->release(Epoch(2)).isOk());
}

// The failover the announcements exist for: a peer's cached entry moves to the new owner at once,
// before the peer sends anything.
// Three hosts on a LAN: the old owner holds the VIP, the new owner will take it over, and the
// peer talks to it.
class VipRepoint : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    HACOORD_REQUIRE_NETNS();
    const auto hosts = net_.addLan(3);
    new_owner_ = hosts[0];
    peer_ = hosts[1];
    old_owner_ = hosts[2];
    old_mac_ = vip::test::macOf(old_owner_, "eth0");
    with_prefix_ = net_.addHostAddress(old_owner_, address());
  }
  std::string address() const { return GetParam(); }
  std::optional<vip::MacAddress> peerEntry() const {
    return vip::test::neighbourMac(peer_, "eth0", address());
  }
  // The peer talks to the VIP until it has cached the old owner's MAC.
  bool peerCachesTheOldOwner() const {
    return eventually(
        [&] {
          vip::test::nudge(peer_, address());
          return peerEntry() == old_mac_;
        },
        5s, 100ms);
  }
  // Failover: the old owner lets go, `manager` (on the new owner) acquires.
  Status failOverTo(VipManager& manager) {
    net_.ip(old_owner_, {"addr", "del", with_prefix_, "dev", "eth0"});
    return manager.acquire(Epoch(11), now() + 1800ms);
  }

  TestNetwork net_;
  std::string new_owner_, peer_, old_owner_, with_prefix_;
  vip::MacAddress old_mac_{};
};

TEST_P(VipRepoint, PeerNeighbourEntryMovesToTheNewOwner) {
  const vip::MacAddress new_mac = vip::test::macOf(new_owner_, "eth0");
  auto manager = createIn(new_owner_, announceConfig(address()));
  ASSERT_TRUE(manager);
  ASSERT_TRUE(peerCachesTheOldOwner());

  const auto acquired = now();
  ASSERT_TRUE(failOverTo(*manager).isOk());
  EXPECT_TRUE(eventually([&] { return peerEntry() == new_mac; }, 2s, 5ms))
      << "peer still points at " << vip::formatMac(peerEntry().value_or(old_mac_));
  std::cout << "  peer's entry for " << address() << " moved to the new MAC " << toMillis(now() - acquired)
            << " ms after acquire\n";
  ASSERT_TRUE(manager->release(Epoch(11)).isOk());
}

// Control for the test above: with no announcements the entry keeps the old MAC, so the move
// there is the GARP/NA's doing and not something the peer did by itself.
TEST_P(VipRepoint, WithoutAnnouncementsThePeerKeepsTheOldMac) {
  VipConfig config = announceConfig(address());
  config.garp_count = 0;
  config.garp_refresh = 60s;
  auto manager = createIn(new_owner_, config);
  ASSERT_TRUE(manager);
  ASSERT_TRUE(peerCachesTheOldOwner());
  ASSERT_TRUE(failOverTo(*manager).isOk());
  // An observation window (proving an absence needs one): 500 ms, 100x the GARP case above.
  EXPECT_FALSE(eventually([&] { return peerEntry() != old_mac_; }, 500ms, 10ms));
  EXPECT_EQ(manager->metrics().garps_sent + manager->metrics().nas_sent, 0u);
  ASSERT_TRUE(manager->release(Epoch(11)).isOk());
}

INSTANTIATE_TEST_SUITE_P(Families, VipRepoint, ::testing::Values(kVip4, kVip6),
                         [](const ::testing::TestParamInfo<const char*>& param_info) {
                           return std::string(param_info.index == 0 ? "v4" : "v6");
                         });

}  // namespace
}  // namespace hacoord
