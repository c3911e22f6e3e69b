// The Manager with a real VIP inside a network namespace the test creates, against the
// application's hooks: the VIP is up before onBecomeLeader runs, stays up without a gap while a
// slow onBecomeLeader (a database promote) runs longer than the kernel lifetime, and is gone
// before onLoseLeadership runs. nats-server runs inside the namespace too (its loopback).
#include "hacoord/manager.h"

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "hacoord/node.h"
#include "support/eventually.h"
#include "support/nats_server_fixture.h"
#include "vip/tests/netns_fixture.h"

namespace hacoord {
namespace {

using namespace std::chrono_literals;
using vip::test::TestNetwork;

constexpr const char* kVip = "192.0.2.100";
constexpr auto kSlowPromote = 3000ms;  // three times the kernel lifetime of the default timings

// Looks at the interface from inside each hook (`ip -n`, a process of its own).
class VipWatchingHooks final : public Hooks {
 public:
  explicit VipWatchingHooks(std::string ns) : ns_(std::move(ns)) {}

  Status onBecomeLeader(Epoch) override {
    vip_at_become_ = vip::test::hasAddress(ns_, "eth0", kVip);
    in_become_ = true;
    std::this_thread::sleep_for(kSlowPromote);  // the slow promote itself, not a wait for a condition
    in_become_ = false;
    become_done_ = true;
    return Status::ok();
  }
  Status onLoseLeadership(Epoch, LossReason) override {
    vip_at_lose_ = vip::test::hasAddress(ns_, "eth0", kVip);
    lose_done_ = true;
    return Status::ok();
  }

  const std::string ns_;
  std::atomic<bool> vip_at_become_{false};
  std::atomic<bool> in_become_{false};
  std::atomic<bool> become_done_{false};
  std::atomic<bool> vip_at_lose_{true};
  std::atomic<bool> lose_done_{false};
};

TEST(ManagerVipTest, VipIsUpBeforeAndThroughASlowBecomeHookAndGoneBeforeTheLoseHook) {
  HACOORD_REQUIRE_NETNS();
  TestNetwork net;
  const std::string ns = net.addLan(1)[0];
  const std::string state_dir = test::makeTempDir("hacoord-mvip");
  auto hooks = std::make_shared<VipWatchingHooks>(ns);

  // Everything made on a thread inside the namespace that lives as long as the test: nats-server
  // (its child: the fixture's parent-death signal follows the thread that started it) and every
  // thread and socket of the Manager.
  struct Owner {
    std::unique_ptr<test::NatsServer> server;
    std::unique_ptr<Manager> manager;
    std::promise<Status> started;
    std::promise<void> finish;
    std::thread thread;
    ~Owner() {
      finish.set_value();
      if (thread.joinable()) thread.join();
    }
  } owner;
  owner.thread = std::thread([&] {
    vip::test::enterNetns(ns);
    owner.server = std::make_unique<test::NatsServer>();
    Config c;
    c.cluster_id = "mvip";
    c.node_id = "m1";
    c.state_dir = state_dir;
    c.nats = test::testNatsConfig({owner.server->url()});
    c.election.hook_time_limit = 10s;
    c.vip.address = kVip;
    c.vip.interface = "eth0";
    c.vip.garp_count = 1;
    owner.manager = std::make_unique<Manager>(c, hooks);
    owner.started.set_value(owner.manager->start());
    owner.finish.get_future().wait();
    owner.manager.reset();
    owner.server.reset();
  });
  const Status started = owner.started.get_future().get();
  ASSERT_TRUE(started.isOk()) << started.toString();
  Manager* manager = owner.manager.get();

  // The first leader of a new cluster waits one TTL (holder unknown), then wins.
  ASSERT_TRUE(test::eventually([&] { return hooks->in_become_.load(); }, 10s));
  EXPECT_TRUE(hooks->vip_at_become_.load()) << "onBecomeLeader ran before the VIP was up";
  // While the slow hook runs, renewals keep extending the 1 s kernel lifetime on the VIP's own
  // lane: sampled every 10 ms, it never goes missing (an expiry would leave it gone until the next
  // renewal re-added it, a gap of hundreds of milliseconds).
  int samples = 0;
  int missing = 0;
  while (!hooks->become_done_.load()) {
    ++samples;
    if (!vip::test::hasAddress(ns, "eth0", kVip) && hooks->in_become_.load()) ++missing;
    std::this_thread::sleep_for(10ms);  // the sampling pace
  }
  EXPECT_GT(samples, 20);
  EXPECT_EQ(missing, 0) << "the VIP went missing " << missing << " times while onBecomeLeader ran";
  ASSERT_TRUE(manager->node().isLeader());

  // A planned handover: the VIP goes first, then onLoseLeadership.
  ASSERT_TRUE(manager->node().stepDown().isOk());
  ASSERT_TRUE(test::eventually([&] { return hooks->lose_done_.load(); }, 10s));
  EXPECT_FALSE(hooks->vip_at_lose_.load()) << "onLoseLeadership ran while the VIP was still up";
  EXPECT_FALSE(vip::test::hasAddress(ns, "eth0", kVip));

  manager->stop();
  test::removeTree(state_dir);
}

}  // namespace
}  // namespace hacoord
