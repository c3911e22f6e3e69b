// System tests for VipManager: start errors, acquire/extend/release, lifetime, reconcile.
#include <linux/capability.h>
#include <sys/socket.h>

#include <functional>
#include <iostream>
#include <optional>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/eventually.h"
#include "vip/tests/netns_fixture.h"
#include "vip/vip_manager.h"

namespace hacoord {
namespace {

using ::testing::HasSubstr;
using vip::test::TestNetwork;
using namespace std::chrono_literals;

constexpr const char* kVip4 = "192.0.2.100";
constexpr const char* kVip6 = "2001:db8::100";

TimePoint now() { return leaseClockNow(); }

VipConfig vipConfig(const std::string& address, int netmask = -1) {
  VipConfig c;
  c.address = address;
  c.netmask = netmask;
  c.interface = "eth0";
  c.garp_count = 2;
  c.garp_interval = 50ms;
  c.garp_refresh = 60s;
  return c;
}

// The election defaults: TTL 2000, renew 500, margin 200 -> kernel lifetime 1 s.
VipTimings defaultTimings() { return VipTimings{}; }

// create() on a thread inside ns, so every socket of the manager belongs to ns.
Result<std::unique_ptr<VipManager>> createIn(const std::string& ns, const VipConfig& config,
                                             VipTimings timings = defaultTimings()) {
  return vip::test::inNetns(ns, [&] {
    return VipManager::create(config, timings, vip::test::vipScheduler(), vip::test::vipClock());
  });
}

bool presentIn(const std::string& ns, const std::string& address) {
  return vip::test::hasAddress(ns, "eth0", address);
}

// Polls (bounded) until `present` says the VIP is gone. Returns the start time of the last check
// that still found it (`since` if none did): the VIP was certainly there at that instant, so
// "last_seen < deadline" holds however late this thread was scheduled; a slow poller only makes
// last_seen earlier, never a kept VIP look gone. nullopt if it never went within `timeout`.
std::optional<TimePoint> lastSeenBeforeGone(const std::function<bool()>& present, TimePoint since,
                                            milliseconds timeout) {
  TimePoint last_seen = since;
  const bool gone = eventually(
      [&] {
        const TimePoint t = now();
        if (!present()) return true;
        last_seen = t;
        return false;
      },
      timeout, 5ms);
  if (!gone) return std::nullopt;
  return last_seen;
}

// --- Start-up errors: at create(), not at the first failover ---

TEST(VipManagerCreate, UnknownInterfaceIsInvalidArgument) {
  HACOORD_REQUIRE_NETNS();
  TestNetwork net;
  const std::string ns = net.addNamespace();
  VipConfig config = vipConfig(kVip4);
  config.interface = "nosuch0";
  auto manager = createIn(ns, config);
  ASSERT_FALSE(manager.isOk());
  EXPECT_EQ(manager.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(manager.status().message(), HasSubstr("nosuch0"));
  std::cout << "  create() said: " << manager.status().toString() << "\n";
}

TEST(VipManagerCreate, NonEthernetInterfaceIsRejected) {
  HACOORD_REQUIRE_NETNS();
  TestNetwork net;
  const std::string ns = net.addNamespace();
  VipConfig config = vipConfig(kVip4);
  config.interface = "lo";
  auto manager = createIn(ns, config);
  ASSERT_FALSE(manager.isOk());
  EXPECT_EQ(manager.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(manager.status().message(), HasSubstr("not an Ethernet interface"));
}

TEST(VipManagerCreate, WithoutCapNetAdminIsPermissionDenied) {
  HACOORD_REQUIRE_NETNS();
  TestNetwork net;
  const std::string ns = net.addLan(1)[0];
  // capset is per thread: only this throwaway thread (inside ns) loses the capability.
  auto manager = vip::test::inNetns(ns, [&] {
    vip::test::dropCapabilityOnThisThread(CAP_NET_ADMIN);
    return VipManager::create(vipConfig(kVip4), defaultTimings(), vip::test::vipScheduler(),
                              vip::test::vipClock());
  });
  ASSERT_FALSE(manager.isOk());
  EXPECT_EQ(manager.status().code(), StatusCode::kPermissionDenied);
  EXPECT_THAT(manager.status().message(), HasSubstr("CAP_NET_ADMIN"));
  EXPECT_FALSE(presentIn(ns, kVip4));
  std::cout << "  create() said: " << manager.status().toString() << "\n";
}

TEST(VipManagerCreate, WithoutCapNetRawIsPermissionDenied) {
  HACOORD_REQUIRE_NETNS();
  TestNetwork net;
  const std::string ns = net.addLan(1)[0];
  for (const char* address : {kVip4, kVip6}) {
    auto manager = vip::test::inNetns(ns, [&] {
      vip::test::dropCapabilityOnThisThread(CAP_NET_RAW);
      return VipManager::create(vipConfig(address), defaultTimings(), vip::test::vipScheduler(),
                                vip::test::vipClock());
    });
    ASSERT_FALSE(manager.isOk()) << address;
    EXPECT_EQ(manager.status().code(), StatusCode::kPermissionDenied) << address;
    EXPECT_THAT(manager.status().message(), HasSubstr("CAP_NET_RAW"));
    std::cout << "  create() said: " << manager.status().toString() << "\n";
  }
}

TEST(VipManagerCreate, BadAddressIsInvalidArgument) {
  HACOORD_REQUIRE_NETNS();
  TestNetwork net;
  const std::string ns = net.addLan(1)[0];
  EXPECT_EQ(createIn(ns, vipConfig("192.0.2.300")).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(createIn(ns, vipConfig(kVip4, 33)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(createIn(ns, vipConfig(kVip4, 0)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(createIn(ns, vipConfig("")).status().code(), StatusCode::kInvalidArgument);
}

// --- Acquire / release, IPv4 and IPv6, host and subnet prefixes ---

struct Case {
  const char* name;
  const char* address;
  int prefix;
  const char* shown;
};

class VipManagerCycle : public ::testing::TestWithParam<Case> {};

TEST_P(VipManagerCycle, AcquireThenReleaseWithTheConfiguredPrefix) {
  HACOORD_REQUIRE_NETNS();
  const Case c = GetParam();
  TestNetwork net;
  const std::string ns = net.addLan(1)[0];
  VipConfig config = vipConfig(c.address, c.prefix);
  config.garp_interval = 500ms;  // a burst run by the caller would take 500 ms
  auto manager = createIn(ns, config);
  ASSERT_TRUE(manager.isOk()) << manager.status().toString();
  VipManager& vip = **manager;
  EXPECT_EQ(vip.address(), c.address);
  EXPECT_FALSE(*vip.present());
  EXPECT_FALSE(vip.lastSeenPresent());

  const auto started = now();
  ASSERT_TRUE(vip.acquire(Epoch(3), now() + 1800ms).isOk());
  const auto acquire_us = std::chrono::duration_cast<std::chrono::microseconds>(now() - started).count();
  std::cout << "  acquire() took " << acquire_us << " us\n";
  EXPECT_LT(acquire_us, 300'000);  // the burst runs on the manager's thread, not the caller's
  // What status readers see without a netlink call follows every operation (checked before
  // present(), which would refresh it).
  EXPECT_TRUE(vip.lastSeenPresent());
  EXPECT_TRUE(*vip.present());
  auto line = vip::test::addressLine(ns, "eth0", c.address);
  ASSERT_TRUE(line);
  EXPECT_THAT(*line, HasSubstr(c.shown));
  EXPECT_THAT(*line, HasSubstr("valid_lft 1sec"));  // the kernel lease of the default timings
  VipMetrics m = vip.metrics();
  EXPECT_EQ(m.acquires, 1u);
  EXPECT_TRUE(m.held);
  EXPECT_EQ(m.epoch, 3u);

  ASSERT_TRUE(vip.release(Epoch(3)).isOk());
  EXPECT_FALSE(vip.lastSeenPresent());
  EXPECT_FALSE(*vip.present());
  EXPECT_FALSE(presentIn(ns, c.address));
  // Releasing an absent VIP is OK: a step-down after the kernel already expired it.
  EXPECT_TRUE(vip.release(Epoch(3)).isOk());
  m = vip.metrics();
  EXPECT_EQ(m.releases, 2u);
  EXPECT_FALSE(m.held);
  EXPECT_EQ(m.errors, 0u);
}

INSTANTIATE_TEST_SUITE_P(Prefixes, VipManagerCycle,
                         ::testing::Values(Case{"v4_host", kVip4, -1, "192.0.2.100/32"},
                                           Case{"v4_24", kVip4, 24, "192.0.2.100/24"},
                                           Case{"v6_host", kVip6, -1, "2001:db8::100/128"},
                                           Case{"v6_64", kVip6, 64, "2001:db8::100/64"}),
                         [](const ::testing::TestParamInfo<Case>& param_info) {
                           return std::string(param_info.param.name);
                         });

TEST(VipManager, ReleaseRemovesAVipLeftWithAnotherPrefix) {
  HACOORD_REQUIRE_NETNS();
  TestNetwork net;
  const std::string ns = net.addLan(1)[0];
  net.ip(ns, {"addr", "add", "192.0.2.100/24", "dev", "eth0"});
  auto manager = createIn(ns, vipConfig(kVip4));  // configured /32
  ASSERT_TRUE(manager.isOk());
  EXPECT_TRUE(*(*manager)->present());  // presence compares address bytes, not the prefix
  ASSERT_TRUE((*manager)->release(Epoch(1)).isOk());
  EXPECT_FALSE(presentIn(ns, kVip4));
}

// --- Kernel-enforced lease ---

class VipKernelLifetime : public ::testing::TestWithParam<const char*> {};

TEST_P(VipKernelLifetime, KernelRemovesTheVipWhenNobodyExtendsIt) {
  HACOORD_REQUIRE_NETNS();
  TestNetwork net;
  const std::string ns = net.addLan(1)[0];
  auto manager = createIn(ns, vipConfig(GetParam()));
  ASSERT_TRUE(manager.isOk());
  ASSERT_EQ((*manager)->kernelLifetime(), std::chrono::seconds(1));
  const auto acquired = now();
  // The lease as the elector hands it over: TTL 2000 - margin 200 after the winning write's send.
  const auto valid_until = acquired + 1800ms;
  ASSERT_TRUE((*manager)->acquire(Epoch(1), valid_until).isOk());
  ASSERT_TRUE(presentIn(ns, GetParam()));
  // As if the daemon were killed -9: the manager goes without release().
  manager = Status(StatusCode::kCancelled, "dropped");
  // DESIGN §4: the kernel lifetime ends before the leader's own deadline (valid_until, §3: TTL -
  // margin after the send of its last committed write), hence before any follower may take over;
  // that is what keeps a killed or frozen daemon's host from holding the VIP beside the next one.
  // The poll's bound (10 s) only ends a broken test; the deadline is checked on last_seen.
  const auto last_seen = lastSeenBeforeGone([&] { return presentIn(ns, GetParam()); }, acquired, 10000ms);
  ASSERT_TRUE(last_seen) << "the kernel kept the VIP for 10 s (lifetime 1 s)";
  const auto gone_ms = toMillis(now() - acquired);
  std::cout << "  kernel removed " << GetParam() << " within " << toMillis(*last_seen - acquired) << "-"
            << gone_ms << " ms after acquire (lifetime 1 s, deadline 1800 ms)\n";
  EXPECT_LT(*last_seen, valid_until) << "the VIP was still there " << toMillis(*last_seen - valid_until)
                                     << " ms after the lease it was added for ended";
  EXPECT_GE(gone_ms, 900);  // it was the lifetime, not something else
}

TEST_P(VipKernelLifetime, ExtendOnEveryRenewalKeepsTheVip) {
  HACOORD_REQUIRE_NETNS();
  TestNetwork net;
  const std::string ns = net.addLan(1)[0];
  auto manager = createIn(ns, vipConfig(GetParam()));
  ASSERT_TRUE(manager.isOk());
  VipManager& vip = **manager;
  ASSERT_TRUE(vip.acquire(Epoch(1), now() + 1800ms).isOk());
  // Nine renewals 300 ms apart; the VIP must never be missing in between.
  auto next_extend = now() + 300ms;
  TimePoint valid_until{};
  int extends = 0;
  int checks = 0;
  Duration slowest_extend{0};
  while (extends < 9) {
    if (now() >= next_extend) {
      const auto started = now();
      valid_until = started + 1800ms;  // as the elector would: TTL - margin after the renewal's send
      ASSERT_TRUE(vip.extend(Epoch(1), valid_until).isOk());
      slowest_extend = std::max(slowest_extend, now() - started);
      ++extends;
      next_extend = now() + 300ms;
    }
    auto present = vip.present();
    ASSERT_TRUE(present.isOk());
    ASSERT_TRUE(*present) << "VIP lost while being extended";
    ++checks;
    std::this_thread::sleep_for(10ms);  // pacing of the renewal schedule, not a wait on a condition
  }
  EXPECT_GE(vip.metrics().extends, 9u);
  std::cout << "  slowest extend(): "
            << std::chrono::duration_cast<std::chrono::microseconds>(slowest_extend).count() << " us\n";
  EXPECT_GT(checks, 30);
  // Renewals stop (a frozen leader). DESIGN §4: the lifetime set by the last extend ends before
  // that renewal's deadline (valid_until = TTL - margin after it); checked on the last instant the
  // VIP was seen, so a slow poller cannot fail it (the 10 s only ends a broken test).
  const auto stopped = now();
  const auto last_seen = lastSeenBeforeGone([&] { return *vip.present(); }, stopped, 10000ms);
  ASSERT_TRUE(last_seen) << "the kernel kept the VIP for 10 s after the last extend (lifetime 1 s)";
  std::cout << "  after the last extend the kernel removed it in " << toMillis(now() - stopped) << " ms\n";
  EXPECT_LT(*last_seen, valid_until) << "the VIP was still there " << toMillis(*last_seen - valid_until)
                                     << " ms after the last renewal's deadline";
}

INSTANTIATE_TEST_SUITE_P(Families, VipKernelLifetime, ::testing::Values(kVip4, kVip6),
                         [](const ::testing::TestParamInfo<const char*>& param_info) {
                           return std::string(param_info.index == 0 ? "v4" : "v6");
                         });

TEST(VipManager, ShortLeaseDefersTheAddUntilTheNextRenewal) {
  HACOORD_REQUIRE_NETNS();
  TestNetwork net;
  const std::string ns = net.addLan(1)[0];
  auto manager = createIn(ns, vipConfig(kVip4));
  ASSERT_TRUE(manager.isOk());
  VipManager& vip = **manager;
  // 1100 ms left - 300 ms slack < 1 s: any whole-second lifetime would outlive the lease.
  EXPECT_EQ(vip.acquire(Epoch(4), now() + 1100ms).code(), StatusCode::kDeadlineExceeded);
  EXPECT_FALSE(*vip.present());
  EXPECT_TRUE(vip.metrics().held);
  // A renewal that still leaves under a second changes nothing: no lifetime would end in time.
  ASSERT_TRUE(vip.extend(Epoch(4), now() + 1200ms).isOk());
  EXPECT_FALSE(*vip.present());
  EXPECT_EQ(vip.metrics().extends, 0u);
  // The next renewal with room for a whole second puts it on, and announces it.
  ASSERT_TRUE(vip.extend(Epoch(4), now() + 1800ms).isOk());
  EXPECT_TRUE(*vip.present());
  EXPECT_TRUE(eventually([&] { return vip.metrics().garps_sent >= 4; }, 2s));
  ASSERT_TRUE(vip.release(Epoch(4)).isOk());
}

TEST(VipManager, WithoutAFittingLifetimeTheVipIsPermanent) {
  HACOORD_REQUIRE_NETNS();
  TestNetwork net;
  const std::string ns = net.addLan(1)[0];
  // TTL 1000 - margin 100 - slack 300 = 600 ms: no whole second fits.
  auto manager = createIn(ns, vipConfig(kVip4), VipTimings{1000ms, 200ms, 100ms});
  ASSERT_TRUE(manager.isOk());
  EXPECT_EQ((*manager)->kernelLifetime(), std::nullopt);
  ASSERT_TRUE((*manager)->acquire(Epoch(1), now() + 900ms).isOk());
  auto line = vip::test::addressLine(ns, "eth0", kVip4);
  ASSERT_TRUE(line);
  EXPECT_THAT(*line, HasSubstr("valid_lft forever"));
  ASSERT_TRUE((*manager)->extend(Epoch(1), now() + 900ms).isOk());
  ASSERT_TRUE((*manager)->release(Epoch(1)).isOk());
  EXPECT_FALSE(presentIn(ns, kVip4));
}

// --- Epoch fencing of the VIP acts ---

TEST(VipManager, StaleEpochsAreRefused) {
  HACOORD_REQUIRE_NETNS();
  TestNetwork net;
  const std::string ns = net.addLan(1)[0];
  auto manager = createIn(ns, vipConfig(kVip4));
  ASSERT_TRUE(manager.isOk());
  VipManager& vip = **manager;
  ASSERT_TRUE(vip.acquire(Epoch(5), now() + 1800ms).isOk());
  // A late release from term 4 must not take term 5's VIP away.
  EXPECT_EQ(vip.release(Epoch(4)).code(), StatusCode::kAborted);
  EXPECT_TRUE(*vip.present());
  EXPECT_EQ(vip.extend(Epoch(6), now() + 1800ms).code(), StatusCode::kAborted);
  EXPECT_EQ(vip.acquire(Epoch(4), now() + 1800ms).code(), StatusCode::kAborted);
  EXPECT_EQ(vip.reconcile(false, Epoch(4), now()).code(), StatusCode::kAborted);
  EXPECT_TRUE(*vip.present());
  EXPECT_TRUE(vip.extend(Epoch(5), now() + 1800ms).isOk());
  ASSERT_TRUE(vip.release(Epoch(5)).isOk());
  EXPECT_EQ(vip.extend(Epoch(5), now() + 1800ms).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(vip.metrics().epoch, 5u);
}

// --- Reconcile ---

TEST(VipManager, ReconcileRemovesAnUnheldVipAndReAddsAMissingOne) {
  HACOORD_REQUIRE_NETNS();
  TestNetwork net;
  const std::string ns = net.addLan(1)[0];
  net.ip(ns, {"addr", "add", "192.0.2.100/32", "dev", "eth0"});  // left over from an earlier run
  auto manager = createIn(ns, vipConfig(kVip4));
  ASSERT_TRUE(manager.isOk());
  VipManager& vip = **manager;

  // At start this node does not lead: the leftover goes.
  ASSERT_TRUE(vip.reconcile(false, Epoch(0), now()).isOk());
  EXPECT_FALSE(presentIn(ns, kVip4));

  ASSERT_TRUE(vip.acquire(Epoch(2), now() + 1800ms).isOk());
  ASSERT_TRUE(eventually([&] { return vip.metrics().garps_sent >= 4; }, 2s));  // burst of 2 done
  net.ip(ns, {"addr", "del", "192.0.2.100/32", "dev", "eth0"});                // an operator removed it
  ASSERT_FALSE(*vip.present());
  ASSERT_TRUE(vip.reconcile(true, Epoch(2), now() + 1800ms).isOk());
  EXPECT_TRUE(presentIn(ns, kVip4));
  EXPECT_TRUE(eventually([&] { return vip.metrics().garps_sent >= 8; }, 2s)) << "re-add must announce again";

  // Present while the lease moved on to another node: removed, and no longer held.
  ASSERT_TRUE(vip.reconcile(false, Epoch(3), now()).isOk());
  EXPECT_FALSE(presentIn(ns, kVip4));
  EXPECT_FALSE(vip.metrics().held);
  EXPECT_EQ(vip.metrics().epoch, 3u);
}

TEST(VipManager, PeriodicRefreshReAddsAMissingVip) {
  HACOORD_REQUIRE_NETNS();
  TestNetwork net;
  const std::string ns = net.addLan(1)[0];
  VipConfig config = vipConfig(kVip6);
  config.garp_refresh = 300ms;
  // TTL 10 s: kernel lifetime 8 s, so only the refresh can bring the VIP back here.
  auto manager = createIn(ns, config, VipTimings{10000ms, 2500ms, 1000ms});
  ASSERT_TRUE(manager.isOk());
  VipManager& vip = **manager;
  ASSERT_TRUE(vip.acquire(Epoch(7), now() + 9000ms).isOk());
  net.ip(ns, {"addr", "del", "2001:db8::100/128", "dev", "eth0"});
  EXPECT_TRUE(eventually([&] { return presentIn(ns, kVip6); }, 2s)) << "refresh did not re-add the VIP";
  EXPECT_TRUE(eventually([&] { return vip.metrics().nas_sent >= 4; }, 2s));
  ASSERT_TRUE(vip.release(Epoch(7)).isOk());
}

TEST(VipManager, AnnouncementsAfterALinkFlapAreNotLost) {
  HACOORD_REQUIRE_NETNS();
  TestNetwork net;
  const std::string ns = net.addLan(1)[0];
  VipConfig config = vipConfig(kVip4);
  config.garp_refresh = 1000ms;
  auto manager = createIn(ns, config, VipTimings{10000ms, 2500ms, 1000ms});
  ASSERT_TRUE(manager.isOk());
  VipManager& vip = **manager;
  ASSERT_TRUE(vip.acquire(Epoch(5), now() + 9000ms).isOk());
  // The burst (2 x both ARP forms) is over; the first refresh is a second away: flap the link now.
  ASSERT_TRUE(eventually([&] { return vip.metrics().garps_sent >= 4; }, 2s));
  net.ip(ns, {"link", "set", "eth0", "down"});
  net.ip(ns, {"link", "set", "eth0", "up"});
  EXPECT_TRUE(eventually([&] { return vip.metrics().garps_sent >= 6; }, 3s))
      << "the refresh after the flap was not sent";
  EXPECT_EQ(vip.metrics().errors, 0u) << "an announcement failed after the link came back";
  ASSERT_TRUE(vip.release(Epoch(5)).isOk());
}

TEST(VipManager, PeriodicRefreshRemovesAVipThisNodeDoesNotHold) {
  HACOORD_REQUIRE_NETNS();
  TestNetwork net;
  const std::string ns = net.addLan(1)[0];
  VipConfig config = vipConfig(kVip4);
  config.garp_refresh = 300ms;
  auto manager = createIn(ns, config);
  ASSERT_TRUE(manager.isOk());
  net.ip(ns, {"addr", "add", "192.0.2.100/32", "dev", "eth0"});  // someone put it here
  EXPECT_TRUE(eventually([&] { return !presentIn(ns, kVip4); }, 2s))
      << "refresh left a VIP this node does not hold";
  EXPECT_EQ((*manager)->metrics().garps_sent, 0u);  // never announced what it does not hold
}

// --- Duplicate check ---

class VipDuplicateCheck : public ::testing::TestWithParam<const char*> {};

TEST_P(VipDuplicateCheck, AnotherHostAnsweringTheProbeIsAnError) {
  HACOORD_REQUIRE_NETNS();
  TestNetwork net;
  const auto hosts = net.addLan(2);
  const std::string& a = hosts[0];
  const std::string& other = hosts[1];
  const std::string address = GetParam();
  const std::string with_prefix = net.addHostAddress(other, address);
  VipConfig config = vipConfig(address);
  config.duplicate_check = true;
  auto manager = createIn(a, config);
  ASSERT_TRUE(manager.isOk());
  VipManager& vip = **manager;

  const auto started = now();
  Status s = vip.acquire(Epoch(1), now() + 1800ms);
  std::cout << "  acquire with a duplicate: " << s.toString() << " (" << toMillis(now() - started)
            << " ms)\n";
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists);
  EXPECT_THAT(s.message(), HasSubstr(vip::formatMac(vip::test::macOf(other, "eth0"))));
  EXPECT_EQ(vip.metrics().duplicate_conflicts, 1u);
  EXPECT_FALSE(vip.metrics().held);
  EXPECT_FALSE(presentIn(a, address));

  // Once the other host lets go, the probe finds nobody and the add goes ahead.
  net.ip(other, {"addr", "del", with_prefix, "dev", "eth0"});
  const auto second = now();
  ASSERT_TRUE(vip.acquire(Epoch(2), now() + 1800ms).isOk());
  std::cout << "  acquire without a duplicate: " << toMillis(now() - second) << " ms (probe window 100 ms)\n";
  EXPECT_TRUE(presentIn(a, address));
  EXPECT_EQ(vip.metrics().duplicate_conflicts, 1u);
  ASSERT_TRUE(vip.release(Epoch(2)).isOk());
}

INSTANTIATE_TEST_SUITE_P(Families, VipDuplicateCheck, ::testing::Values(kVip4, kVip6),
                         [](const ::testing::TestParamInfo<const char*>& param_info) {
                           return std::string(param_info.index == 0 ? "v4" : "v6");
                         });

}  // namespace
}  // namespace hacoord
