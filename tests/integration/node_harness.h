// Shared pieces of the in-process Node tests: a two-leader monitor, node configs, hook checks.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "hacoord/config.h"
#include "hacoord/hooks.h"
#include "hacoord/node.h"
#include "hacoord/status.h"
#include "support/eventually.h"
#include "support/nats_server_fixture.h"
#include "support/recording_hooks.h"

namespace hacoord::test {

using namespace std::chrono_literals;
inline long long msSince(SteadyTime t) {
  return std::chrono::duration_cast<milliseconds>(steadyNow() - t).count();
}
inline long long msBetween(SteadyTime from, SteadyTime to) {
  return std::chrono::duration_cast<milliseconds>(to - from).count();
}

// A cluster id no other test of this process uses: "<prefix>-<test name>-<n>".
inline std::string uniqueClusterId(const std::string& prefix) {
  static std::atomic<int> counter{0};
  std::string name = "t";
  if (const auto* info = ::testing::UnitTest::GetInstance()->current_test_info()) {
    name = info->name();
  }
  std::string id = prefix + "-" + name + "-" + std::to_string(++counter);
  for (char& c : id) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) c = '_';
  }
  return id.substr(0, 64);
}

struct Timing {
  milliseconds ttl{1000};
  milliseconds renew{250};
  milliseconds cooldown{0};  // 0 = ttl
  milliseconds margin{0};    // 0 = ttl / 10
};

// A node config with test timings: short connect / request timeouts and fast reconnects, so an
// outage is noticed and healed quickly.
inline Config makeNodeConfig(const std::string& cluster, const std::string& node,
                             const std::vector<std::string>& servers, Timing t = {}) {
  Config c;
  c.cluster_id = cluster;
  c.node_id = node;
  c.state_dir = testStateDir();
  c.nats = testNatsConfig(servers);
  c.nats.request_timeout = 500ms;
  c.election.lease_ttl = t.ttl;
  c.election.renew_interval = t.renew;
  c.election.cooldown = t.cooldown.count() > 0 ? t.cooldown : t.ttl;
  c.election.safety_margin = t.margin.count() > 0 ? t.margin : t.ttl / 10;
  c.election.hook_time_limit = 2000ms;
  return c;
}

// Checks one node's hook sequence: becomes and losses alternate, each loss names the epoch of the
// become before it, leader epochs strictly rise, and onLeaderChange epochs never go back.
inline void expectConsistentHooks(const std::string& node, const RecordingHooks& hooks) {
  const auto events = hooks.events();
  bool leading = false;
  Epoch leading_epoch;
  Epoch last_become;
  Epoch last_change;
  for (const auto& e : events) {
    switch (e.kind) {
      case HookEvent::Kind::kBecome:
        EXPECT_FALSE(leading) << node << ": become without a loss before it: " << hooks.trace();
        EXPECT_GT(e.epoch, last_become) << node << ": leader epochs must rise: " << hooks.trace();
        leading = true;
        leading_epoch = e.epoch;
        last_become = e.epoch;
        break;
      case HookEvent::Kind::kLose:
        EXPECT_TRUE(leading) << node << ": loss without a become: " << hooks.trace();
        EXPECT_EQ(e.epoch, leading_epoch) << node << ": loss of another epoch: " << hooks.trace();
        leading = false;
        break;
      case HookEvent::Kind::kChange:
        EXPECT_GE(e.epoch, last_change) << node << ": leader-change epoch went back: " << hooks.trace();
        last_change = e.epoch;
        break;
    }
  }
}

// Samples isLeader() of every node on a thread of its own and records any sample in which two
// are leader at once. A sample counts only if reading all nodes took < 200 us: a real handover
// needs several NATS round trips between processes' threads, so a fast sample is a true instant,
// while one the machine preempted half-way could pair an old "true" with a new one.
// It also keeps the runs of samples with the same set of leaders, so a test can check that the
// monitor watched a handover (saw the old leader, then the new one, close together) rather than
// passing on a sample taken somewhere else.
class LeaderMonitor {
 public:
  // Consecutive counted samples with the same leaders (bit i: node i).
  struct Run {
    std::uint32_t leaders;
    SteadyTime first;
    SteadyTime last;
  };

  explicit LeaderMonitor(std::vector<const Node*> nodes)
      : nodes_(std::move(nodes)), last_true_(nodes_.size()), started_(steadyNow()) {
    thread_ = std::thread([this] { run(); });
  }
  ~LeaderMonitor() { stop(); }
  LeaderMonitor(const LeaderMonitor&) = delete;
  LeaderMonitor& operator=(const LeaderMonitor&) = delete;

  // The runs that ended at or after `after` ("{0,2} +12..+30 ms" relative to `after`), for messages.
  std::string describeRuns(SteadyTime after) const {
    std::lock_guard lock(mutex_);
    std::string out;
    for (const auto& r : runs_) {
      if (r.last < after) continue;
      out += "{";
      for (std::size_t i = 0; i < nodes_.size(); ++i) {
        if (r.leaders & (1u << i)) out += nodes_[i]->nodeId() + (r.leaders >> (i + 1) ? "," : "");
      }
      out += "} " + std::to_string(std::chrono::duration_cast<milliseconds>(r.first - after).count()) + ".." +
             std::to_string(std::chrono::duration_cast<milliseconds>(r.last - after).count()) + " ms; ";
    }
    return out;
  }

  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    std::lock_guard lock(mutex_);
    if (!stopped_) stopped_ = steadyNow();
  }
  long samples() const { return samples_; }
  int maxLeaders() const { return max_leaders_; }
  std::string violation() const {
    std::lock_guard lock(mutex_);
    return violation_;
  }
  // Start of the last sample in which node `i` answered isLeader() == true (nullopt: never).
  // The start precedes the call, so the node's lease was still valid at some instant after it.
  std::optional<SteadyTime> lastLeaderSample(std::size_t i) const {
    std::lock_guard lock(mutex_);
    return last_true_.at(i);
  }
  // How long the monitor has watched (until stop()).
  milliseconds watched() const {
    std::lock_guard lock(mutex_);
    return std::chrono::duration_cast<milliseconds>((stopped_ ? *stopped_ : steadyNow()) - started_);
  }
  // The handover from node `from` to node `to` that began at or after `after`, as sampled: the time
  // from the last sample in which `from` alone led to the first in which `to` alone led, with only
  // leaderless samples between. nullopt if the monitor did not see those two samples in that order.
  std::optional<milliseconds> handoverBracket(std::size_t from, std::size_t to, SteadyTime after) const {
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < runs_.size(); ++i) {
      if (runs_[i].leaders != (1u << to) || runs_[i].first < after) continue;
      std::size_t j = i;
      while (j > 0 && runs_[j - 1].leaders == 0) --j;
      if (j == 0 || runs_[j - 1].leaders != (1u << from)) return std::nullopt;
      return std::chrono::duration_cast<milliseconds>(runs_[i].first - runs_[j - 1].last);
    }
    return std::nullopt;
  }

 private:
  void run() {
    while (!stop_) {
      const auto t0 = steadyNow();
      int leaders = 0;
      std::string who;
      std::vector<bool> is_leader(nodes_.size());
      for (std::size_t i = 0; i < nodes_.size(); ++i) {
        if (nodes_[i]->isLeader()) {
          is_leader[i] = true;
          ++leaders;
          who += nodes_[i]->nodeId() + "(epoch " + nodes_[i]->epoch().toString() + ") ";
        }
      }
      {
        std::lock_guard lock(mutex_);
        for (std::size_t i = 0; i < nodes_.size(); ++i) {
          if (is_leader[i]) last_true_[i] = t0;
        }
      }
      if (steadyNow() - t0 < std::chrono::microseconds(200)) {
        ++samples_;
        if (leaders > max_leaders_) max_leaders_ = leaders;
        std::uint32_t mask = 0;
        for (std::size_t i = 0; i < nodes_.size(); ++i) {
          if (is_leader[i]) mask |= 1u << i;
        }
        {
          std::lock_guard lock(mutex_);
          if (runs_.empty() || runs_.back().leaders != mask) {
            runs_.push_back({mask, t0, t0});
          } else {
            runs_.back().last = t0;
          }
        }
        if (leaders > 1) {
          std::lock_guard lock(mutex_);
          if (violation_.empty()) violation_ = "two leaders at once: " + who;
        }
      }
      std::this_thread::sleep_for(1ms);  // the sampling period, like eventually()'s poll
    }
  }

  std::vector<const Node*> nodes_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<long> samples_{0};
  std::atomic<int> max_leaders_{0};
  mutable std::mutex mutex_;
  std::string violation_;
  std::vector<std::optional<SteadyTime>> last_true_;
  std::vector<Run> runs_;
  const SteadyTime started_;
  std::optional<SteadyTime> stopped_;
};

// Exactly one node is leader, and every node names it with the same epoch.
inline bool singleAgreedLeader(const std::vector<std::unique_ptr<Node>>& nodes, std::string* leader = nullptr,
                               Epoch* epoch = nullptr) {
  const Node* found = nullptr;
  for (const auto& n : nodes) {
    if (n->isLeader()) {
      if (found != nullptr) return false;
      found = n.get();
    }
  }
  if (found == nullptr) return false;
  const Epoch e = found->epoch();
  for (const auto& n : nodes) {
    if (n->leader() != found->nodeId() || n->epoch() != e) return false;
  }
  if (leader) *leader = found->nodeId();
  if (epoch) *epoch = e;
  return true;
}

inline std::string describeNodes(const std::vector<std::unique_ptr<Node>>& nodes) {
  std::string out;
  for (const auto& n : nodes) {
    out += n->nodeId() + "[" + std::string(roleName(n->role())) + (n->isLeader() ? ",LEADER" : "") +
           " leader='" + n->leader() + "' epoch " + n->epoch().toString() + "] ";
  }
  return out;
}

// `cond` stays true for the whole of `period` (checked every `poll`); false at the first breach.
inline bool holdsFor(const std::function<bool()>& cond, milliseconds period, milliseconds poll = 10ms) {
  return !eventually([&] { return !cond(); }, period, poll);
}

}  // namespace hacoord::test
