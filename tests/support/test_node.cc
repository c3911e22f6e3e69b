// hacoord_test_node: embeds a Node and prints every hook as a JSON line, for process-level tests.
//
// stdout lines: {"event":"become_leader"|"lose_leadership"|"leader_change"|"acting"|"result"|...,
//                "t": steady-clock ms (CLOCK_MONOTONIC: comparable between processes on one host)}
// "acting" is printed every 20 ms while isLeader() is true: the test checks that no process acts
// under an epoch after another process became leader. stdin takes: stepdown, promote, join, leave.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <unistd.h>

#include "hacoord/node.h"

using namespace hacoord;

namespace {

std::mutex g_out;

double nowMs() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void emit(const std::string& fields) {
  std::lock_guard lock(g_out);
  std::printf("{\"t\":%.3f,%s}\n", nowMs(), fields.c_str());
  std::fflush(stdout);
}

class PrintingHooks final : public Hooks {
 public:
  PrintingHooks(bool fail_become, int slow_lose_ms)
      : fail_become_(fail_become), slow_lose_ms_(slow_lose_ms) {}
  Status onBecomeLeader(Epoch epoch) override {
    emit("\"event\":\"become_leader\",\"epoch\":" + epoch.toString());
    if (fail_become_) return internalError("test node told to fail onBecomeLeader");
    return Status::ok();
  }
  Status onLoseLeadership(Epoch epoch, LossReason reason) override {
    emit("\"event\":\"lose_leadership\",\"epoch\":" + epoch.toString() + ",\"reason\":\"" +
         std::string(lossReasonName(reason)) + "\"");
    if (slow_lose_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(slow_lose_ms_));
    return Status::ok();
  }
  void onLeaderChange(std::string_view leader, Epoch epoch) override {
    emit("\"event\":\"leader_change\",\"leader\":\"" + std::string(leader) +
         "\",\"epoch\":" + epoch.toString());
  }

 private:
  bool fail_become_;
  int slow_lose_ms_;
};

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  bool fail_become = false;
  int slow_lose_ms = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--config" && i + 1 < argc)
      config_path = argv[++i];
    else if (a == "--fail-become-leader")
      fail_become = true;
    else if (a == "--slow-lose-ms" && i + 1 < argc)
      slow_lose_ms = std::stoi(argv[++i]);
  }
  auto config = loadConfigFile(config_path);
  if (!config.isOk()) {
    std::fprintf(stderr, "test_node: %s\n", config.status().message().c_str());
    return 3;
  }
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  Node node(*config, std::make_shared<PrintingHooks>(fail_become, slow_lose_ms));
  if (Status s = node.start(); !s.isOk()) {
    std::fprintf(stderr, "test_node: %s\n", s.toString().c_str());
    return 1;
  }
  emit("\"event\":\"started\",\"node\":\"" + node.nodeId() + "\",\"incarnation\":\"" + node.incarnation() +
       "\"");

  std::thread([&node] {
    for (;;) {
      // Time first: if isLeader() is then true, the node was leader at that time or later, so
      // "acting at t" never claims a moment after leadership ended.
      const double t = nowMs();
      const Epoch before = node.epoch();
      if (node.isLeader() && node.epoch() == before) {
        std::lock_guard lock(g_out);
        std::printf("{\"t\":%.3f,\"event\":\"acting\",\"epoch\":%s}\n", t, before.toString().c_str());
        std::fflush(stdout);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }).detach();
  std::thread([&node] {
    std::string line;
    while (std::getline(std::cin, line)) {
      Status s;
      if (line == "stepdown")
        s = node.stepDown();
      else if (line == "promote")
        s = node.promote();
      else if (line == "join")
        node.setCandidate(true);
      else if (line == "leave")
        node.setCandidate(false);
      else
        s = invalidArgument("unknown command " + line);
      emit("\"event\":\"result\",\"cmd\":\"" + line + "\",\"ok\":" + (s.isOk() ? "true" : "false"));
    }
  }).detach();

  int sig = 0;
  sigwait(&signals, &sig);
  node.stop();
  emit("\"event\":\"stopped\"");
  std::fflush(stdout);
  _exit(0);  // the stdin and acting threads are detached and blocked: do not run destructors
}
