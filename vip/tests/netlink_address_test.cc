// System tests for NetlinkAddress: add, find, replace, delete on a real kernel in a netns.
#include <sys/socket.h>

#include <gtest/gtest.h>

#include "vip/netlink_address.h"
#include "vip/tests/netns_fixture.h"

namespace hacoord::vip {
namespace {

using test::TestNetwork;

struct Case {
  const char* name;
  const char* address;
  int prefix;  // -1: host prefix
  const char* shown;
};

class NetlinkAddressTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    HACOORD_REQUIRE_NETNS();
    ns_ = net_.addLan(1)[0];
    auto nl = test::inNetns(ns_, [] { return NetlinkAddress::open(); });
    ASSERT_TRUE(nl.isOk()) << nl.status().toString();
    nl_ = std::move(*nl);
    auto link = nl_->link("eth0");
    ASSERT_TRUE(link.isOk()) << link.status().toString();
    link_ = *link;
  }

  TestNetwork net_;
  std::string ns_;
  std::unique_ptr<NetlinkAddress> nl_;  // opened in ns_, used from the test thread
  LinkInfo link_;
};

TEST_P(NetlinkAddressTest, AddFindRemoveCycle) {
  const Case c = GetParam();
  auto address = parseIpPrefix(c.address, c.prefix);
  ASSERT_TRUE(address.isOk());
  EXPECT_EQ(link_.mac, test::macOf(ns_, "eth0"));
  EXPECT_TRUE(link_.up);

  auto before = nl_->find(link_.ifindex, *address);
  ASSERT_TRUE(before.isOk());
  EXPECT_FALSE(*before);

  ASSERT_TRUE(nl_->add(link_.ifindex, *address, std::nullopt).isOk());
  auto after = nl_->find(link_.ifindex, *address);
  ASSERT_TRUE(after.isOk());
  ASSERT_TRUE(*after);
  EXPECT_EQ((*after)->prefix_len, address->prefix_len);
  EXPECT_EQ((*after)->valid_lifetime, kForever);
  auto line = test::addressLine(ns_, "eth0", c.address);
  ASSERT_TRUE(line);
  EXPECT_NE(line->find(c.shown), std::string::npos) << *line;
  if (address->family == AF_INET6) {
    EXPECT_NE(line->find("nodad"), std::string::npos) << *line;
  }

  // NLM_F_EXCL: a second add is refused, not silently merged.
  EXPECT_EQ(nl_->add(link_.ifindex, *address, std::nullopt).code(), StatusCode::kAlreadyExists);

  ASSERT_TRUE(nl_->remove(link_.ifindex, *address).isOk());
  EXPECT_FALSE(*nl_->find(link_.ifindex, *address));
  EXPECT_FALSE(test::hasAddress(ns_, "eth0", c.address));
  // Deleting an absent address is NotFound here (VipManager turns it into OK).
  EXPECT_EQ(nl_->remove(link_.ifindex, *address).code(), StatusCode::kNotFound);
}

TEST_P(NetlinkAddressTest, LifetimeIsSetAndReplaced) {
  const Case c = GetParam();
  auto address = parseIpPrefix(c.address, c.prefix);
  ASSERT_TRUE(address.isOk());
  ASSERT_TRUE(nl_->add(link_.ifindex, *address, 30u).isOk());
  auto state = nl_->find(link_.ifindex, *address);
  ASSERT_TRUE(state.isOk() && *state);
  EXPECT_LE((*state)->valid_lifetime, 30u);
  EXPECT_GE((*state)->valid_lifetime, 28u);
  EXPECT_LE((*state)->preferred_lifetime, 30u);

  // NLM_F_REPLACE shortens (or extends) the lifetime of the present address.
  ASSERT_TRUE(nl_->replace(link_.ifindex, *address, 10u).isOk());
  state = nl_->find(link_.ifindex, *address);
  ASSERT_TRUE(state.isOk() && *state);
  EXPECT_LE((*state)->valid_lifetime, 10u);
  EXPECT_GE((*state)->valid_lifetime, 8u);
  auto line = test::addressLine(ns_, "eth0", c.address);
  ASSERT_TRUE(line);
  EXPECT_NE(line->find("valid_lft"), std::string::npos);
  EXPECT_EQ(line->find("valid_lft forever"), std::string::npos) << *line;

  // Without a lifetime the replace makes it permanent again.
  ASSERT_TRUE(nl_->replace(link_.ifindex, *address, std::nullopt).isOk());
  EXPECT_EQ((*nl_->find(link_.ifindex, *address))->valid_lifetime, kForever);
  ASSERT_TRUE(nl_->remove(link_.ifindex, *address).isOk());
}

INSTANTIATE_TEST_SUITE_P(Prefixes, NetlinkAddressTest,
                         ::testing::Values(Case{"v4_host", "192.0.2.100", -1, "192.0.2.100/32"},
                                           Case{"v4_24", "192.0.2.100", 24, "192.0.2.100/24"},
                                           Case{"v6_host", "2001:db8::100", -1, "2001:db8::100/128"},
                                           Case{"v6_64", "2001:db8::100", 64, "2001:db8::100/64"}),
                         [](const ::testing::TestParamInfo<Case>& param_info) {
                           return std::string(param_info.param.name);
                         });

TEST(NetlinkAddress, FindIgnoresPrefixButDeleteNeedsIt) {
  HACOORD_REQUIRE_NETNS();
  TestNetwork net;
  const std::string ns = net.addLan(1)[0];
  auto nl = test::inNetns(ns, [] { return NetlinkAddress::open(); });
  ASSERT_TRUE(nl.isOk());
  const int ifindex = (*nl)->link("eth0")->ifindex;
  net.ip(ns, {"addr", "add", "192.0.2.100/24", "dev", "eth0"});
  auto host = *parseIpPrefix("192.0.2.100", -1);
  auto found = (*nl)->find(ifindex, host);
  ASSERT_TRUE(found.isOk() && *found);
  EXPECT_EQ((*found)->prefix_len, 24);
  // The trap of notes §5: the /32 delete does not touch the /24 address.
  EXPECT_EQ((*nl)->remove(ifindex, host).code(), StatusCode::kNotFound);
  EXPECT_TRUE(test::hasAddress(ns, "eth0", "192.0.2.100"));
  EXPECT_TRUE((*nl)->remove(ifindex, *parseIpPrefix("192.0.2.100", 24)).isOk());
  EXPECT_FALSE(test::hasAddress(ns, "eth0", "192.0.2.100"));
}

TEST(NetlinkAddress, UnknownInterfaceIsNotFound) {
  HACOORD_REQUIRE_NETNS();
  TestNetwork net;
  const std::string ns = net.addNamespace();
  auto nl = test::inNetns(ns, [] { return NetlinkAddress::open(); });
  ASSERT_TRUE(nl.isOk());
  EXPECT_EQ((*nl)->link("nosuch0").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE((*nl)->link("lo").isOk());
}

}  // namespace
}  // namespace hacoord::vip
