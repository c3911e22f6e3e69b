// election_bench: percentiles of lease op latency, planned handover and crash takeover on a real nats-server.
//
// A benchmark, not a test: it prints numbers and never fails on slow ones. It exits non-zero only
// when something failed outright (a write refused, a handover or takeover that never came, a child
// that would not start). All traffic stays on 127.0.0.1.
//
// Clocks: every time is std::chrono::steady_clock, which on Linux is CLOCK_MONOTONIC, the clock
// hacoord_test_node stamps its JSON lines with; so times taken in the children compare directly
// with times taken here.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <json/json.h>
#include <nats/nats.h>

#include "bench_report.h"
#include "support/runtime_scheduler.h"
#include "core/logging.h"
#include "hacoord/config.h"
#include "hacoord/hooks.h"
#include "hacoord/lease.h"
#include "hacoord/node.h"
#include "nats/nats_connection.h"
#include "nats/nats_lease_store.h"
#include "support/eventually.h"
#include "support/nats_server_fixture.h"

namespace hacoord::bench {
namespace {

using namespace std::chrono_literals;
using SteadyTime = std::chrono::steady_clock::time_point;

SteadyTime now() { return std::chrono::steady_clock::now(); }

double msBetween(SteadyTime from, SteadyTime to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

// ---------------------------------------------------------------------------------------------
// Options

constexpr const char* kUsage =
    "usage: hacoord_election_bench [options]\n"
    "\n"
    "Runs N nodes against a local nats-server (started here unless --nats is given) and prints\n"
    "percentiles of lease op latency, planned handover and crash takeover as a markdown table.\n"
    "\n"
    "  --rounds N           acquire / renew rounds (default 200)\n"
    "  --handover-rounds N  planned handovers with in-process nodes (default 50; 0 skips)\n"
    "  --crash-rounds N     kill -9 of the leader among child processes (default 20; 0 skips)\n"
    "  --nodes N            nodes in the handover and crash groups (default 3, at least 2)\n"
    "  --ttl-ms MS          lease TTL (default 2000)\n"
    "  --renew-ms MS        renew interval (default 500)\n"
    "  --cooldown-ms MS     cooldown after a stepDown (default 100, so rounds repeat quickly)\n"
    "  --nats URL           use this server instead of starting one (buckets are deleted after)\n"
    "  --node-binary PATH   child for the crash rounds (default: the built hacoord_test_node)\n"
    "  --seed N             seed of the random pauses between rounds (default: random)\n"
    "  --log-level LEVEL    hacoord log level in this process (default warn)\n"
    "  --quick              smoke run: 20 / 5 / 3 rounds unless given explicitly\n"
    "\n"
    "exit codes: 0 ran (whatever the numbers), 1 something failed outright, 2 usage error\n";

struct Options {
  int rounds = 200;
  int handover_rounds = 50;
  int crash_rounds = 20;
  int nodes = 3;
  int ttl_ms = 2000;
  int renew_ms = 500;
  int cooldown_ms = 100;
  std::string nats_url;  // "" = start our own nats-server
  std::string node_binary = HACOORD_TEST_NODE;
  std::string log_level = "warn";
  std::uint64_t seed = 0;
  bool quick = false;
};

// Returns false (with `error` set, or empty for --help) when the program should not run.
bool parseOptions(int argc, char** argv, Options& o, std::string& error) {
  std::optional<int> rounds, handover_rounds, crash_rounds;
  bool seed_given = false;
  for (int i = 1; i < argc; ++i) {
    std::string name = argv[i];
    std::optional<std::string> inline_value;
    if (const auto eq = name.find('='); eq != std::string::npos) {
      inline_value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    auto value = [&]() -> std::string {
      if (inline_value) return *inline_value;
      if (i + 1 >= argc) throw std::invalid_argument(name + " needs a value");
      return argv[++i];
    };
    auto number = [&](long long lo, long long hi) -> long long {
      const std::string v = value();
      std::size_t used = 0;
      long long n = 0;
      try {
        n = std::stoll(v, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != v.size() || v.empty() || n < lo || n > hi) {
        throw std::invalid_argument(name + " wants a number from " + std::to_string(lo) + " to " +
                                    std::to_string(hi) + ", got '" + v + "'");
      }
      return n;
    };
    try {
      if (name == "--help" || name == "-h") {
        error.clear();
        return false;
      } else if (name == "--quick") {
        o.quick = true;
      } else if (name == "--rounds") {
        rounds = static_cast<int>(number(1, 1000000));
      } else if (name == "--handover-rounds") {
        handover_rounds = static_cast<int>(number(0, 100000));
      } else if (name == "--crash-rounds") {
        crash_rounds = static_cast<int>(number(0, 100000));
      } else if (name == "--nodes") {
        o.nodes = static_cast<int>(number(2, 32));
      } else if (name == "--ttl-ms") {
        o.ttl_ms = static_cast<int>(number(1, 3600000));
      } else if (name == "--renew-ms") {
        o.renew_ms = static_cast<int>(number(1, 3600000));
      } else if (name == "--cooldown-ms") {
        o.cooldown_ms = static_cast<int>(number(1, 3600000));
      } else if (name == "--nats") {
        o.nats_url = value();
      } else if (name == "--node-binary") {
        o.node_binary = value();
      } else if (name == "--seed") {
        o.seed = static_cast<std::uint64_t>(number(0, INT64_MAX));
        seed_given = true;
      } else if (name == "--log-level") {
        o.log_level = value();
      } else {
        throw std::invalid_argument("unknown option " + name);
      }
    } catch (const std::invalid_argument& e) {
      error = e.what();
      return false;
    }
  }
  // Explicit counts win over --quick, whatever their order on the command line.
  o.rounds = rounds.value_or(o.quick ? 20 : o.rounds);
  o.handover_rounds = handover_rounds.value_or(o.quick ? 5 : o.handover_rounds);
  o.crash_rounds = crash_rounds.value_or(o.quick ? 3 : o.crash_rounds);
  if (!seed_given) o.seed = std::random_device{}();
  if (!setLogLevel(o.log_level)) {
    error = "unknown log level '" + o.log_level + "'";
    return false;
  }
  return true;
}

// The election settings every node of the benchmark runs with.
Config nodeConfig(const Options& o, const std::string& url, const std::string& cluster_id,
                  const std::string& node_id) {
  Config c;
  c.cluster_id = cluster_id;
  c.node_id = node_id;
  c.nats.servers = {url};
  c.election.lease_ttl = milliseconds(o.ttl_ms);
  c.election.renew_interval = milliseconds(o.renew_ms);
  c.election.cooldown = milliseconds(o.cooldown_ms);
  // The same default the config file gives (TTL / 10), so the bench runs what a daemon would.
  c.election.safety_margin = std::max(milliseconds(1), milliseconds(o.ttl_ms / 10));
  return c;
}

// ---------------------------------------------------------------------------------------------
// Event logs: threads append stamped events, the bench thread waits for the one it needs.

template <typename T>
class EventLog {
 public:
  void add(T event) {
    {
      std::lock_guard lock(mutex_);
      events_.push_back(std::move(event));
    }
    cv_.notify_all();
  }
  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return events_.size();
  }
  // The first event at index >= `from` that matches, waiting for it until `deadline`.
  std::optional<T> waitFor(std::size_t from, const std::function<bool(const T&)>& match,
                           SteadyTime deadline) {
    std::unique_lock lock(mutex_);
    std::size_t next = from;
    for (;;) {
      for (; next < events_.size(); ++next) {
        if (match(events_[next])) return events_[next];
      }
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && next == events_.size()) {
        return std::nullopt;
      }
    }
  }
  std::vector<T> snapshot() const {
    std::lock_guard lock(mutex_);
    return events_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<T> events_;
};

// One revision of the lease key as the bench's own watch saw it, stamped on arrival.
struct Observed {
  SteadyTime t;
  LeaseEntry entry;
};

// Watches a cluster's lease key through a connection and store of its own, like a follower would.
class Observer {
 public:
  Observer(std::unique_ptr<NatsConnection> connection, std::unique_ptr<NatsLeaseStore> store)
      : connection_(std::move(connection)), store_(std::move(store)) {
    store_->watch([this](const LeaseEntry& e) { log_.add({now(), e}); });
  }
  ~Observer() {
    store_->close();  // before the connection it uses
    store_.reset();
    connection_.reset();
  }
  Observer(const Observer&) = delete;
  Observer& operator=(const Observer&) = delete;

  static Result<std::unique_ptr<Observer>> open(const std::string& url, const std::string& bucket,
                                                Scheduler& scheduler) {
    NatsConfig nc;
    nc.servers = {url};
    auto connection = NatsConnection::connect(nc, "hacoord-bench-observer");
    if (!connection.isOk()) return connection.status();
    auto store = NatsLeaseStore::open(**connection, bucket, 1, scheduler);
    if (!store.isOk()) return store.status();
    return std::make_unique<Observer>(std::move(*connection), std::move(*store));
  }

  EventLog<Observed>& log() { return log_; }
  // The highest revision seen so far (the watch may deliver the current value again).
  std::optional<Observed> latest() const {
    std::optional<Observed> best;
    for (const auto& o : log_.snapshot()) {
      if (!best || o.entry.revision > best->entry.revision) best = o;
    }
    return best;
  }

 private:
  std::unique_ptr<NatsConnection> connection_;
  std::unique_ptr<NatsLeaseStore> store_;
  EventLog<Observed> log_;
};

// ---------------------------------------------------------------------------------------------
// Lease op latency: the two writes the elector does on a healthy cluster, timed from the call to
// the callback on the scheduler (which is what the elector waits for).

struct TimedWrite {
  Result<std::uint64_t> result;
  double ms;
};

// Every write names the bucket generation its base came from, as the elector's writes do (the
// store checks the stream's creation time before the publish and again after the ack).
TimedWrite timedWrite(NatsLeaseStore& store, const LeaseRecord& record, std::uint64_t expected,
                      std::uint64_t generation) {
  using Outcome = std::pair<Result<std::uint64_t>, SteadyTime>;
  auto promise = std::make_shared<std::promise<Outcome>>();
  auto future = promise->get_future();
  const SteadyTime t0 = now();
  store.write(record, expected, generation, [promise](Result<std::uint64_t> r) {
    promise->set_value({std::move(r), now()});
  });
  if (future.wait_for(10s) != std::future_status::ready) {
    return {deadlineExceeded("no write callback within 10 s"), 0};
  }
  auto [result, t1] = future.get();
  return {std::move(result), msBetween(t0, t1)};
}

constexpr const char* kAcquire = "lease op: acquire (CAS vacant → held, epoch+1)";
constexpr const char* kRenew = "lease op: renew (CAS same epoch)";

void runLeaseOps(const Options& o, const std::string& url, const std::string& cluster_id,
                 Scheduler& scheduler, std::mt19937_64& rng, Report& report, Failures& failures) {
  Metric& acquire = report.add(kAcquire);
  Metric& renew = report.add(kRenew);
  std::fprintf(stderr, "election_bench: lease ops: %d rounds\n", o.rounds);
  NatsConfig nc;
  nc.servers = {url};
  auto connection = NatsConnection::connect(nc, "hacoord-bench-ops");
  if (!connection.isOk()) return failures.add("lease ops: connect: " + connection.status().toString());
  Config bucket_of;
  bucket_of.cluster_id = cluster_id;
  auto opened = NatsLeaseStore::open(**connection, bucket_of.bucketName(), 1, scheduler);
  if (!opened.isOk()) return failures.add("lease ops: open bucket: " + opened.status().toString());
  NatsLeaseStore& store = **opened;

  LeaseRecord held;
  held.holder = "bench";
  held.incarnation = "bench-" + std::to_string(::getpid());
  held.epoch = Epoch(1);
  held.lease = milliseconds(o.ttl_ms);
  LeaseRecord vacant = held;
  vacant.holder.clear();
  vacant.incarnation.clear();

  // A pause before each timed write, so it starts from an idle process and server like a real
  // renewal does every renew interval, rather than riding on the previous write's warm path.
  std::uniform_int_distribution<int> gap_us(1000, 10000);
  auto idle = [&] { std::this_thread::sleep_for(std::chrono::microseconds(gap_us(rng))); };
  std::uint64_t revision = 0;
  std::uint64_t generation = 0;
  {
    auto promise = std::make_shared<std::promise<Result<LeaseEntry>>>();
    auto future = promise->get_future();
    store.read([promise](Result<LeaseEntry> r) { promise->set_value(std::move(r)); });
    if (future.wait_for(10s) != std::future_status::ready) return failures.add("lease ops: no read callback");
    auto entry = future.get();
    if (!entry.isOk()) return failures.add("lease ops: read: " + entry.status().toString());
    generation = entry->generation;
  }
  auto step = [&](const LeaseRecord& record, Metric* into, const char* what) {
    TimedWrite w = timedWrite(store, record, revision, generation);
    if (!w.result.isOk()) {
      failures.add(std::string("lease ops: ") + what + " at rev " + std::to_string(revision) + ": " +
                   w.result.status().toString());
      return false;
    }
    revision = *w.result;
    if (into != nullptr) into->ms.push_back(w.ms);
    return true;
  };

  // First acquire is the Create on the absent key; then a few untimed renewals to warm up.
  bool ok = step(held, nullptr, "create");
  for (int i = 0; ok && i < 10; ++i) ok = step(held, nullptr, "warm-up renew");
  for (int i = 0; ok && i < o.rounds; ++i) {
    vacant.epoch = held.epoch;  // a release keeps the epoch (DESIGN §3)
    ok = step(vacant, nullptr, "release");
    held.epoch = held.epoch.next();
    idle();
    ok = ok && step(held, &acquire, "acquire");
    idle();
    ok = ok && step(held, &renew, "renew");
  }
  store.close();  // `opened` is destroyed before `connection`: the store goes first
}

// ---------------------------------------------------------------------------------------------
// Planned handover: N in-process Nodes; a round is stepDown() on the leader until another node's
// onBecomeLeader, and until every other node's onLeaderChange names it.

enum class HookKind { kBecome, kLose, kChange };

struct HookEvent {
  int node;
  HookKind kind;
  SteadyTime t;
  std::string leader;
  Epoch epoch;
};

// Stamps each hook on entry: the time the application would learn it.
class RecordingHooks final : public Hooks {
 public:
  RecordingHooks(int node, EventLog<HookEvent>& log) : node_(node), log_(log) {}
  Status onBecomeLeader(Epoch epoch) override {
    log_.add({node_, HookKind::kBecome, now(), "", epoch});
    return Status::ok();
  }
  Status onLoseLeadership(Epoch epoch, LossReason) override {
    log_.add({node_, HookKind::kLose, now(), "", epoch});
    return Status::ok();
  }
  void onLeaderChange(std::string_view leader, Epoch epoch) override {
    log_.add({node_, HookKind::kChange, now(), std::string(leader), epoch});
  }

 private:
  const int node_;
  EventLog<HookEvent>& log_;
};

constexpr const char* kHoLose = "handover: stepDown → old leader's onLoseLeadership";
constexpr const char* kHoVacant = "handover: stepDown → vacant record seen (watch)";
constexpr const char* kHoReturn = "handover: stepDown() returned";
constexpr const char* kHoSeen = "handover: stepDown → new holder seen (watch)";
constexpr const char* kHoBecome = "handover: stepDown → new leader's onBecomeLeader";
constexpr const char* kHoAll = "handover: stepDown → all others' onLeaderChange(new)";

// The node that leads with every node agreeing on it and its epoch, or -1.
int stableLeader(const std::vector<std::unique_ptr<Node>>& nodes) {
  int leader = -1;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    if (!nodes[i]->isLeader()) continue;
    if (leader >= 0) return -1;
    leader = static_cast<int>(i);
  }
  if (leader < 0) return -1;
  const Node& l = *nodes[static_cast<std::size_t>(leader)];
  for (const auto& n : nodes) {
    if (n->leader() != l.nodeId() || n->epoch() != l.epoch()) return -1;
  }
  return leader;
}

void runHandover(const Options& o, const std::string& url, const std::string& cluster_id,
                 Scheduler& scheduler, std::mt19937_64& rng, Report& report, Failures& failures) {
  Metric& lose = report.add(kHoLose);
  Metric& vacant = report.add(kHoVacant);
  Metric& returned = report.add(kHoReturn);
  Metric& seen = report.add(kHoSeen);
  Metric& become = report.add(kHoBecome);
  Metric& all = report.add(kHoAll);
  std::fprintf(stderr, "election_bench: planned handover: %d nodes, %d rounds\n", o.nodes, o.handover_rounds);

  Config probe = nodeConfig(o, url, cluster_id, "n0");
  auto observer = Observer::open(url, probe.bucketName(), scheduler);
  if (!observer.isOk()) return failures.add("handover: observer: " + observer.status().toString());
  Observer& watch = **observer;

  EventLog<HookEvent> hooks;
  std::vector<std::unique_ptr<Node>> nodes;
  for (int i = 0; i < o.nodes; ++i) {
    auto node = std::make_unique<Node>(nodeConfig(o, url, cluster_id, "n" + std::to_string(i)),
                                       std::make_shared<RecordingHooks>(i, hooks));
    if (Status s = node->start(); !s.isOk()) {
      return failures.add("handover: start node n" + std::to_string(i) + ": " + s.toString());
    }
    nodes.push_back(std::move(node));
  }

  const auto settle_limit = milliseconds(3 * o.ttl_ms + 5000);
  // Past the old leader's cooldown (else a 2-node group would wait it out, which is not handover
  // time), then a random part of a renew interval, so stepDown meets renewals at every phase.
  std::uniform_int_distribution<int> pause_ms(o.cooldown_ms + 10, o.cooldown_ms + 10 + o.renew_ms);
  int vacant_missed = 0;
  for (int round = 0; round < o.handover_rounds; ++round) {
    int leader = -1;
    if (!test::eventually([&] { return (leader = stableLeader(nodes)) >= 0; }, settle_limit, 2ms)) {
      return failures.add("handover round " + std::to_string(round) + ": no agreed leader within " +
                          std::to_string(settle_limit.count()) + " ms");
    }
    std::this_thread::sleep_for(milliseconds(pause_ms(rng)));
    if ((leader = stableLeader(nodes)) < 0) {
      --round;  // something moved during the pause (it should not): settle and go again
      continue;
    }
    Node& old_leader = *nodes[static_cast<std::size_t>(leader)];
    const Epoch old_epoch = old_leader.epoch();
    const std::size_t hook_mark = hooks.size();
    const std::size_t watch_mark = watch.log().size();

    const SteadyTime t0 = now();
    const Status s = old_leader.stepDown();
    const SteadyTime t_return = now();
    if (!s.isOk()) {
      failures.add("handover round " + std::to_string(round) + ": stepDown on " + old_leader.nodeId() + ": " +
                   s.toString());
      continue;
    }
    const SteadyTime deadline = t0 + settle_limit;
    auto new_leader = hooks.waitFor(
        hook_mark,
        [&](const HookEvent& e) {
          return e.kind == HookKind::kBecome && e.node != leader && e.epoch > old_epoch;
        },
        deadline);
    if (!new_leader) {
      failures.add("handover round " + std::to_string(round) + ": no new leader within " +
                   std::to_string(settle_limit.count()) + " ms of stepDown on " + old_leader.nodeId());
      continue;
    }
    const std::string new_id = nodes[static_cast<std::size_t>(new_leader->node)]->nodeId();
    const Epoch new_epoch = new_leader->epoch;
    std::optional<SteadyTime> all_known = t0;
    for (int i = 0; i < o.nodes && all_known; ++i) {
      if (i == new_leader->node) continue;
      auto told = hooks.waitFor(
          hook_mark,
          [&](const HookEvent& e) {
            return e.node == i && e.kind == HookKind::kChange && e.leader == new_id && e.epoch == new_epoch;
          },
          deadline);
      all_known = told ? std::optional(std::max(*all_known, told->t)) : std::nullopt;
    }
    auto lost = hooks.waitFor(
        hook_mark, [&](const HookEvent& e) { return e.node == leader && e.kind == HookKind::kLose; },
        deadline);
    auto taken = watch.log().waitFor(
        watch_mark,
        [&](const Observed& ob) {
          return ob.entry.record.holder == new_id && ob.entry.record.epoch == new_epoch;
        },
        deadline);
    // One watcher delivers in revision order: once the new holder is in, the vacant record is
    // either already there or never coming, so it is looked up without waiting.
    auto released = watch.log().waitFor(
        watch_mark,
        [&](const Observed& ob) {
          return ob.entry.exists() && ob.entry.record.vacant() && ob.entry.record.epoch == old_epoch;
        },
        taken ? now() : deadline);
    if (taken && !released) {
      // Not a failure: with History 1 the new holder's acquire replaces the vacant revision in the
      // stream, and a consumer that had not yet sent it skips it. Followers are not harmed (the
      // acquire they race for, or lose, is the newer revision), but the row would be biased if
      // the misses were dropped silently, so they are counted.
      ++vacant_missed;
    }
    if (!all_known || !lost || !taken) {
      std::string seen_text;  // what the watch did deliver, to tell a miss from a late delivery
      const auto observed = watch.log().snapshot();
      for (std::size_t i = watch_mark; i < observed.size(); ++i) {
        const LeaseEntry& e = observed[i].entry;
        seen_text += " rev " + std::to_string(e.revision) + " '" + e.record.holder + "' epoch " +
                     e.record.epoch.toString() + " at +" + std::to_string(msBetween(t0, observed[i].t)) +
                     " ms;";
      }
      failures.add("handover round " + std::to_string(round) + " (" + old_leader.nodeId() + " epoch " +
                   old_epoch.toString() + " -> " + new_id + " epoch " + new_epoch.toString() + "): " +
                   (!all_known ? "not every node learnt the new leader"
                    : !lost    ? "the old leader's onLoseLeadership never ran"
                               : "the watch never delivered the new holder") +
                   "; watch delivered:" + seen_text);
      continue;
    }
    lose.ms.push_back(msBetween(t0, lost->t));
    if (released) vacant.ms.push_back(msBetween(t0, released->t));
    returned.ms.push_back(msBetween(t0, t_return));
    seen.ms.push_back(msBetween(t0, taken->t));
    become.ms.push_back(msBetween(t0, new_leader->t));
    all.ms.push_back(msBetween(t0, *all_known));
    if ((round + 1) % 10 == 0) {
      std::fprintf(stderr, "election_bench: handover %d/%d\n", round + 1, o.handover_rounds);
    }
  }
  // Node::stop() hands over if leading; done here so the observer outlives every node.
  nodes.clear();
  if (vacant_missed > 0) {
    report.note("The bench's watch never delivered the vacant record in " + std::to_string(vacant_missed) +
                " of " + std::to_string(o.handover_rounds) +
                " handovers: the new leader's acquire, written within about a millisecond, replaced "
                "it (bucket History 1) before the server sent it to this consumer. The \"vacant "
                "record seen\" row holds only the rounds where it was delivered.");
  }
}

// ---------------------------------------------------------------------------------------------
// Crash takeover: N hacoord_test_node children; kill -9 the leader, time until another takes over.

struct ChildEvent {
  int child;
  SteadyTime t;  // the child's own stamp (CLOCK_MONOTONIC), not the time the line arrived
  std::string event;
  std::string leader;
  Epoch epoch;
};

// One child process with its stdout on a pipe read by a thread of ours. Only this PID is signalled.
class ChildNode {
 public:
  ChildNode(int index, std::string node_id, std::string config_path, std::string log_path,
            EventLog<ChildEvent>& log)
      : index_(index),
        node_id_(std::move(node_id)),
        config_path_(std::move(config_path)),
        log_path_(std::move(log_path)),
        log_(log) {}
  ~ChildNode() { terminate(); }
  ChildNode(const ChildNode&) = delete;
  ChildNode& operator=(const ChildNode&) = delete;

  const std::string& nodeId() const { return node_id_; }
  const std::string& logPath() const { return log_path_; }
  bool running() const { return pid_ > 0; }
  bool started() const { return started_; }
  bool exited() const { return exited_; }
  // Epoch of its last become_leader not followed by a lose_leadership; 0 if none.
  std::uint64_t leaderEpoch() const { return leader_epoch_; }

  // fork + exec; everything the child needs is prepared before fork(), because only
  // async-signal-safe calls are allowed between fork and exec in a process with threads.
  Status start(const std::string& binary) {
    if (running()) return Status::ok();
    started_ = false;
    exited_ = false;
    leader_epoch_ = 0;
    std::vector<std::string> args = {binary, "--config", config_path_};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return internalError(std::string("pipe2: ") + std::strerror(errno));
    const int err_fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (err_fd < 0 || null_fd < 0) {
      for (int fd : {out[0], out[1], err_fd, null_fd}) {
        if (fd >= 0) ::close(fd);
      }
      return internalError("cannot open " + log_path_ + " or /dev/null");
    }
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) {
      // The node must not outlive a bench that dies (forked from the main thread, which lives
      // as long as the bench does).
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(126);
      ::dup2(out[1], STDOUT_FILENO);
      ::dup2(err_fd, STDERR_FILENO);
      ::dup2(null_fd, STDIN_FILENO);  // EOF: the child's command thread just ends
      ::close_range(3, ~0U, 0);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    ::close(err_fd);
    ::close(null_fd);
    if (pid < 0) {
      ::close(out[0]);
      return internalError(std::string("fork: ") + std::strerror(errno));
    }
    pid_ = pid;
    reader_ = std::thread([this, fd = out[0]] { readLoop(fd); });
    return Status::ok();
  }

  // SIGKILL and reap; returns once the child's stdout has been read to the end.
  void kill9() {
    if (!running()) return;
    ::kill(pid_, SIGKILL);
    reap();
  }

  // SIGTERM (a planned handover if it leads), SIGKILL if it is not gone within 5 s.
  void terminate() {
    if (!running()) return;
    ::kill(pid_, SIGTERM);
    const bool gone = test::eventually(
        [&] {
          int status = 0;
          return ::waitpid(pid_, &status, WNOHANG) == pid_;
        },
        5000ms, 5ms);
    if (gone) {
      pid_ = -1;
      if (reader_.joinable()) reader_.join();
      return;
    }
    kill9();
  }

 private:
  void reap() {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    if (reader_.joinable()) reader_.join();
  }

  void readLoop(int fd) {
    Json::CharReaderBuilder builder;
    std::unique_ptr<Json::CharReader> reader(builder.newCharReader());
    std::string buffer;
    char chunk[4096];
    for (;;) {
      const ssize_t n = ::read(fd, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      buffer.append(chunk, static_cast<std::size_t>(n));
      std::size_t eol;
      while ((eol = buffer.find('\n')) != std::string::npos) {
        handleLine(*reader, buffer.substr(0, eol));
        buffer.erase(0, eol + 1);
      }
    }
    ::close(fd);
    exited_ = true;
    log_.add({index_, now(), "exit", "", Epoch()});
  }

  void handleLine(Json::CharReader& reader, const std::string& line) {
    Json::Value v;
    std::string errors;
    if (!reader.parse(line.data(), line.data() + line.size(), &v, &errors) || !v.isObject()) return;
    const std::string event = v["event"].asString();
    if (event == "acting") return;  // 50 a second from the leader: not needed here
    const std::chrono::duration<double, std::milli> t(v["t"].asDouble());
    ChildEvent e{index_, SteadyTime(std::chrono::duration_cast<SteadyTime::duration>(t)), event,
                 v["leader"].asString(), Epoch(v["epoch"].asUInt64())};
    if (event == "started") started_ = true;
    if (event == "become_leader") leader_epoch_ = e.epoch.value();
    if (event == "lose_leadership") leader_epoch_ = 0;
    log_.add(std::move(e));
  }

  const int index_;
  const std::string node_id_;
  const std::string config_path_;
  const std::string log_path_;
  EventLog<ChildEvent>& log_;
  pid_t pid_ = -1;
  std::thread reader_;
  std::atomic<bool> started_{false};
  std::atomic<bool> exited_{false};
  std::atomic<std::uint64_t> leader_epoch_{0};
};

constexpr const char* kCrPhase = "crash: last renewal seen → kill";
constexpr const char* kCrSeen = "crash: kill → new holder seen (watch)";
constexpr const char* kCrBecome = "crash: kill → new leader's onBecomeLeader (takeover)";
constexpr const char* kCrOverTtl = "crash: takeover − TTL";
constexpr const char* kCrOverExpiry = "crash: lease expiry → new leader's onBecomeLeader";

void writeChildConfig(const Options& o, const std::string& path, const std::string& url,
                      const std::string& cluster_id, const std::string& node_id) {
  Json::Value c(Json::objectValue);
  c["clusterId"] = cluster_id;
  c["nodeId"] = node_id;
  c["stateDir"] = path.substr(0, path.rfind('/'));
  c["nats"]["servers"].append(url);
  c["election"]["leaseTtlMs"] = o.ttl_ms;
  c["election"]["renewIntervalMs"] = o.renew_ms;
  c["election"]["cooldownMs"] = o.cooldown_ms;
  std::ofstream(path) << Json::writeString(Json::StreamWriterBuilder(), c) << "\n";
}

std::string tail(const std::string& path, std::size_t bytes = 1500) {
  std::string text = readFile(path);
  return text.size() > bytes ? "..." + text.substr(text.size() - bytes) : text;
}

void runCrash(const Options& o, const std::string& url, const std::string& cluster_id, Scheduler& scheduler,
              std::mt19937_64& rng, Report& report, Failures& failures) {
  Metric& phase = report.add(kCrPhase);
  Metric& seen = report.add(kCrSeen);
  Metric& become = report.add(kCrBecome);
  Metric& over_ttl = report.add(kCrOverTtl);
  Metric& over_expiry = report.add(kCrOverExpiry);
  std::fprintf(stderr, "election_bench: crash takeover: %d child nodes, %d rounds\n", o.nodes,
               o.crash_rounds);
  if (::access(o.node_binary.c_str(), X_OK) != 0) {
    return failures.add("crash: node binary " + o.node_binary + " is not executable");
  }
  Config probe = nodeConfig(o, url, cluster_id, "c0");
  auto observer = Observer::open(url, probe.bucketName(), scheduler);
  if (!observer.isOk()) return failures.add("crash: observer: " + observer.status().toString());
  Observer& watch = **observer;

  const std::string dir = test::makeTempDir("hacoord-bench");
  EventLog<ChildEvent> events;
  std::vector<std::unique_ptr<ChildNode>> children;
  bool failed = false;
  auto fail = [&](const std::string& what) {
    failed = true;
    std::string logs;
    for (const auto& c : children) logs += "\n--- " + c->nodeId() + " stderr:\n" + tail(c->logPath());
    failures.add(what + logs);
  };
  auto startChild = [&](ChildNode& c) {
    if (Status s = c.start(o.node_binary); !s.isOk())
      return fail("crash: start " + c.nodeId() + ": " + s.toString());
    if (!test::eventually([&] { return c.started() || c.exited(); }, 15000ms, 2ms) || !c.started()) {
      fail("crash: " + c.nodeId() + " did not start");
    }
  };
  for (int i = 0; i < o.nodes && !failed; ++i) {
    const std::string id = "c" + std::to_string(i);
    const std::string config_path = dir + "/" + id + ".json";
    writeChildConfig(o, config_path, url, cluster_id, id);
    children.push_back(std::make_unique<ChildNode>(i, id, config_path, dir + "/" + id + ".log", events));
    startChild(*children.back());
  }

  const auto settle_limit = milliseconds(3 * o.ttl_ms + 5000);
  // A random wait of one to two renew intervals, so kills land at every phase of the renewal.
  std::uniform_int_distribution<int> pause_ms(o.renew_ms, 2 * o.renew_ms);
  for (int round = 0; round < o.crash_rounds && !failed; ++round) {
    // Settled: the record names a running child that has said it leads under that epoch.
    int leader = -1;
    Epoch epoch;
    auto settled = [&] {
      auto latest = watch.latest();
      if (!latest || !latest->entry.exists() || latest->entry.record.vacant()) return false;
      for (std::size_t i = 0; i < children.size(); ++i) {
        const ChildNode& c = *children[i];
        if (!c.started() || c.exited()) return false;
        if (c.nodeId() == latest->entry.record.holder &&
            c.leaderEpoch() == latest->entry.record.epoch.value()) {
          leader = static_cast<int>(i);
          epoch = latest->entry.record.epoch;
        }
      }
      return leader >= 0;
    };
    if (!test::eventually(
            [&] {
              leader = -1;
              return settled();
            },
            settle_limit, 2ms)) {
      fail("crash round " + std::to_string(round) + ": no settled leader within " +
           std::to_string(settle_limit.count()) + " ms");
      break;
    }
    std::this_thread::sleep_for(milliseconds(pause_ms(rng)));
    ChildNode& victim = *children[static_cast<std::size_t>(leader)];
    const std::size_t watch_mark = watch.log().size();
    const std::size_t event_mark = events.size();

    const SteadyTime t0 = now();
    victim.kill9();
    const SteadyTime deadline = t0 + settle_limit;
    auto taken = watch.log().waitFor(
        watch_mark,
        [&](const Observed& ob) {
          return ob.entry.exists() && !ob.entry.record.vacant() &&
                 ob.entry.record.holder != victim.nodeId() && ob.entry.record.epoch > epoch;
        },
        deadline);
    if (!taken) {
      fail("crash round " + std::to_string(round) + ": no takeover within " +
           std::to_string(settle_limit.count()) + " ms of killing " + victim.nodeId());
      break;
    }
    auto acted = events.waitFor(
        event_mark,
        [&](const ChildEvent& e) {
          return e.event == "become_leader" && e.epoch == taken->entry.record.epoch;
        },
        deadline);
    // The victim's last renewal: its newest revision before the takeover (it may have landed
    // just after the kill: the bytes were already on their way).
    std::optional<Observed> last;
    for (const auto& ob : watch.log().snapshot()) {
      if (ob.entry.revision >= taken->entry.revision) continue;
      if (ob.entry.record.holder == victim.nodeId() && ob.entry.record.epoch == epoch &&
          (!last || ob.entry.revision > last->entry.revision)) {
        last = ob;
      }
    }
    if (!acted || !last) {
      fail(
          "crash round " + std::to_string(round) + ": " +
          (!acted ? "the new holder never printed become_leader" : "the watch missed the victim's renewals"));
      break;
    }
    const double takeover = msBetween(t0, acted->t);
    const SteadyTime expiry = last->t + last->entry.record.lease;
    phase.ms.push_back(msBetween(last->t, t0));
    seen.ms.push_back(msBetween(t0, taken->t));
    become.ms.push_back(takeover);
    over_ttl.ms.push_back(takeover - o.ttl_ms);
    over_expiry.ms.push_back(msBetween(expiry, acted->t));
    // Bring the victim back (a new incarnation, same node id) so the group stays N strong.
    startChild(victim);
    if ((round + 1) % 5 == 0) {
      std::fprintf(stderr, "election_bench: crash %d/%d\n", round + 1, o.crash_rounds);
    }
  }
  children.clear();  // SIGTERM each, reaped, before the observer and the temp dir go
  if (failed) {
    std::fprintf(stderr, "election_bench: crash logs kept in %s\n", dir.c_str());
  } else {
    test::removeTree(dir);
  }
}

// Best effort: leave nothing behind on a server we did not start.
void deleteBuckets(const std::string& url, const std::vector<std::string>& cluster_ids) {
  NatsConfig nc;
  nc.servers = {url};
  auto connection = NatsConnection::connect(nc, "hacoord-bench-cleanup");
  if (!connection.isOk()) return;
  for (const auto& id : cluster_ids) {
    Config c;
    c.cluster_id = id;
    const std::string bucket = c.bucketName();
    js_DeleteKeyValue((*connection)->js(), bucket.c_str());
  }
}

void printGoal(const Report& report, const char* metric, double p, double limit_ms, const std::string& goal) {
  const auto v = report.pct(metric, p);
  if (!v) {
    std::printf("- goal: %s: not measured\n", goal.c_str());
    return;
  }
  std::printf("- goal: %s: %s (p%g = %.2f ms)\n", goal.c_str(), *v <= limit_ms ? "met" : "NOT met", p, *v);
}

int run(const Options& o) {
  const SteadyTime started = now();
  if (Status valid = validateConfig(nodeConfig(o, "nats://127.0.0.1:4222", "bench", "n0")); !valid.isOk()) {
    std::fprintf(stderr, "election_bench: %s\n", valid.toString().c_str());
    return 2;
  }
  std::unique_ptr<test::NatsServer> server;
  std::string url = o.nats_url;
  if (url.empty()) {
    try {
      server = std::make_unique<test::NatsServer>();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "election_bench: FAILED: cannot start nats-server: %s\n", e.what());
      return 1;
    }
    url = server->url();
  }
  std::fprintf(stderr, "election_bench: nats-server at %s, seed %llu\n", url.c_str(),
               static_cast<unsigned long long>(o.seed));

  // Declared before everything that posts to it, so it is stopped last.
  test::RuntimeScheduler scheduler;
  std::mt19937_64 rng(o.seed);
  Report report;
  Failures failures("election_bench");
  const std::string run_id = std::to_string(::getpid());
  const std::vector<std::string> cluster_ids = {"bench_ops_" + run_id, "bench_handover_" + run_id,
                                                "bench_crash_" + run_id};
  runLeaseOps(o, url, cluster_ids[0], scheduler, rng, report, failures);
  if (o.handover_rounds > 0) runHandover(o, url, cluster_ids[1], scheduler, rng, report, failures);
  if (o.crash_rounds > 0) runCrash(o, url, cluster_ids[2], scheduler, rng, report, failures);
  if (!o.nats_url.empty()) deleteBuckets(url, cluster_ids);
  const double total_s = msBetween(started, now()) / 1000.0;

  std::printf("## hacoord election benchmark\n\n");
  std::printf("%s\n", machineLine().c_str());
  if (server) {
    std::printf(
        "- nats-server %s started by the bench on 127.0.0.1 (JetStream file store in a temp "
        "dir); buckets with 1 replica; nats.c %s\n",
        natsServerVersion(*server).c_str(), nats_GetVersion());
  } else {
    std::printf(
        "- external nats-server at %s (version not queried); buckets with 1 replica; "
        "nats.c %s\n",
        url.c_str(), nats_GetVersion());
  }
  std::printf("- hacoord %s (%s); %d nodes; TTL %d ms, renew %d ms, cooldown %d ms, margin %d ms\n",
              HACOORD_VERSION, HACOORD_BUILD_TYPE, o.nodes, o.ttl_ms, o.renew_ms, o.cooldown_ms,
              std::max(1, o.ttl_ms / 10));
  std::printf(
      "- rounds: %d lease ops, %d handovers (in-process nodes), %d crashes (kill -9 of a "
      "hacoord_test_node child); seed %llu; run time %.1f s\n\n",
      o.rounds, o.handover_rounds, o.crash_rounds, static_cast<unsigned long long>(o.seed), total_s);
  report.printTable();
  std::printf("\n");
  printGoal(report, kHoBecome, 50, 10.0, "planned handover p50 under 10 ms");
  printGoal(report, kCrBecome, 99, o.ttl_ms + 50.0,
            "crash takeover within TTL + 50 ms (" + std::to_string(o.ttl_ms + 50) + " ms) at p99");
  for (const auto& n : report.notes()) std::printf("\n%s\n", n.c_str());
  std::printf(
      "\nPercentiles are nearest-rank (below n = 100, p99 is the max). A crash takeover is "
      "TTL minus the time since the victim's last renewal: the lease expiry row is hacoord's "
      "own share.\n");
  if (failures.any()) {
    std::printf("\n%zu outright failure(s); the table holds the rounds that completed:\n",
                failures.list().size());
    for (const auto& f : failures.list()) {
      std::printf("- %s\n", f.substr(0, f.find('\n')).c_str());
    }
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace hacoord::bench

int main(int argc, char** argv) {
  return hacoord::bench::benchMain<hacoord::bench::Options>("election_bench", hacoord::bench::kUsage, argc,
                                                            argv, hacoord::bench::parseOptions,
                                                            hacoord::bench::run);
}
