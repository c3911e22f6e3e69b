// examples/basic: the smallest useful embedding of hacoord: act only while leading, under an epoch.
//
//   hacoord_example_basic node.json
// Starts a Node from a config file, prints leadership events, and does "leader work" (here: a log
// line tagged with the fencing epoch) only while isLeader() is true. Ctrl-C hands over cleanly.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <thread>

#include "hacoord/node.h"

namespace {

std::atomic<bool> g_stop{false};

class AppHooks final : public hacoord::Hooks {
 public:
  hacoord::Status onBecomeLeader(hacoord::Epoch epoch) override {
    // Start the primary workload here; pass `epoch` along so downstream systems can fence.
    std::printf("became leader, epoch %llu\n", static_cast<unsigned long long>(epoch.value()));
    return hacoord::Status::ok();  // an error here makes the node step down
  }
  hacoord::Status onLoseLeadership(hacoord::Epoch epoch, hacoord::LossReason reason) override {
    // Stop the primary workload here; on a planned handover the lease is released after this.
    std::printf("lost leadership of epoch %llu (%s)\n", static_cast<unsigned long long>(epoch.value()),
                std::string(hacoord::lossReasonName(reason)).c_str());
    return hacoord::Status::ok();  // an error here keeps the lease from being handed over
  }
  void onLeaderChange(std::string_view leader, hacoord::Epoch epoch) override {
    std::printf("leader is '%.*s' (epoch %llu)\n", static_cast<int>(leader.size()), leader.data(),
                static_cast<unsigned long long>(epoch.value()));
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CONFIG.json\n", argv[0]);
    return 2;
  }
  auto config = hacoord::loadConfigFile(argv[1]);
  if (!config.isOk()) {
    std::fprintf(stderr, "%s\n", config.status().message().c_str());
    return 3;
  }
  std::signal(SIGINT, [](int) { g_stop = true; });
  std::signal(SIGTERM, [](int) { g_stop = true; });

  hacoord::Node node(*config, std::make_shared<AppHooks>());
  if (hacoord::Status s = node.start(); !s.isOk()) {
    std::fprintf(stderr, "cannot start: %s\n", s.toString().c_str());
    return 1;
  }
  while (!g_stop) {
    if (node.isLeader()) {
      std::printf("working as leader under epoch %llu\n",
                  static_cast<unsigned long long>(node.epoch().value()));
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  node.stop();  // planned handover: another node takes over within milliseconds
  return 0;
}
