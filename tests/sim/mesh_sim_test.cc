// Seeded simulation of N meshes under faults, with invariant checks after every event (DESIGN §8).
//
// Five MeshCores run on their own FakeSchedulers over one SimLoop and one FakeMeshNetwork. A
// seeded chaos schedule partitions pairs (one way and both), heals, resets connections, changes
// delays, duplicates messages, crashes nodes (kill -9) and restarts them with a new incarnation,
// stops them cleanly, cuts nodes from the members bucket, stalls their worker pools (handlers
// wait there for seconds, as behind blocking handlers), and meanwhile every node makes calls
// (echo, slow, hanging, failing handlers), broadcasts, `all` and `any`. After every event:
//   (c) every call completes at most once, and no call is still open after its deadline;
//       `all` completes once, by its deadline, with one reply per peer it started with;
//   (l) between any pair there is at most one open connection, except for the moment two dials
//       cross: a second connection may live at most 1 s (duplicate resolution);
//   (h) a handler never runs a request whose deadline had passed when it started.
// After the chaos, with everything healed and every node running: (s) every node sees every
// other alive within a bound, over exactly one connection per pair, and a call from every node to
// every other succeeds.
//
// HACOORD_SIM_SEED=<n> replays one seed, HACOORD_SIM_SEEDS=<count> and HACOORD_SIM_STEPS=<chaos
// actions per seed> size the run.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/logging.h"
#include "mesh/mesh_core.h"
#include "support/sim_mesh.h"

namespace hacoord::mesh {
namespace {

using namespace std::chrono_literals;
using test::SimMesh;

std::uint64_t envOr(const char* name, std::uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : fallback;
}

class MeshSim {
 public:
  explicit MeshSim(std::uint64_t seed) : seed_(seed), rng_(seed), sim_(seed * 7919 + 1) {
    for (int i = 0; i < 5; ++i) ids_.push_back("n" + std::to_string(i + 1));
    sim_.loop().setAfterEachEvent([this] { check(); });
  }

  void run(std::uint64_t steps) {
    for (const auto& id : ids_) startNode(id);
    for (std::uint64_t i = 0; i < steps && failures_.empty(); ++i) {
      chaos();
      std::uniform_int_distribution<int> gap(1, 400);
      sim_.loop().advance(std::chrono::milliseconds(gap(rng_)));
    }
    if (!failures_.empty()) return;
    // Heal everything and bring every node back.
    sim_.net().healAll();
    sim_.net().options().duplicate_probability = 0;
    for (const auto& id : ids_) {
      sim_.net().cutFromMembers(id, false);
      if (!sim_.running(id)) startNode(id);
      sim_.setWorkerStall(id, 0ms);
    }
    const TimePoint healed = sim_.loop().now();
    const bool settled =
        sim_.loop().runUntilCondition([&] { return sim_.allAlive() && onePerPair(); }, healed + 30s);
    if (!settled) fail("(s) not every node alive over one link per pair 30 s after healing");
    sim_.loop().advance(15s);  // every open call ends (deadlines are at most 10 s)
    for (const auto& a : ids_) {
      for (const auto& b : ids_) {
        if (a == b) continue;
        auto o = std::make_shared<std::optional<Result<std::string>>>();
        sim_.core(a).call(b, "echo", "final", within(2s), [o](Result<std::string> r) { *o = std::move(r); });
        sim_.loop().advance(2100ms);
        if (!*o || !(*o)->isOk()) {
          fail("(s) call " + a + "->" + b +
               " after healing: " + (*o ? (*o)->status().toString() : "no answer"));
        }
      }
    }
    if (!open_.empty()) fail("(c) " + std::to_string(open_.size()) + " calls never completed");
  }

  const std::vector<std::string>& failures() const { return failures_; }
  std::string transcript() const {
    std::ostringstream out;
    for (const auto& t : trace_) out << "  " << t << "\n";
    return out.str();
  }
  std::uint64_t calls() const { return next_call_; }

 private:
  struct OpenCall {
    std::string caller;
    std::string what;
    TimePoint deadline;
  };

  static CallOptions within(Duration d) {
    CallOptions o;
    o.timeout = d;
    return o;
  }

  void note(const std::string& s) {
    trace_.push_back(std::to_string(toMillis(sim_.loop().elapsed())) + "ms " + s);
    if (trace_.size() > 200) trace_.erase(trace_.begin());
  }
  void fail(const std::string& s) {
    if (failures_.size() < 5)
      failures_.push_back("t=" + std::to_string(toMillis(sim_.loop().elapsed())) + "ms " + s);
  }

  void startNode(const std::string& id) {
    note("start " + id);
    // Sometimes the higher id dials at once too, so dials cross and duplicates must be resolved.
    std::uniform_int_distribution<int> eager(0, 2);
    const Duration higher_dial = eager(rng_) == 0 ? 0ms : eager(rng_) == 0 ? 30ms : 2s;
    sim_.start(
        id, [higher_dial](MeshOptions& o) { o.higher_dial_delay = higher_dial; },
        [this, id](MeshCore& core) {
          auto ok = [](Status s) {
            if (!s.isOk()) std::abort();
          };
          // (h), checked by every handler as it starts.
          auto fresh = [this, id](const CallContext& ctx) {
            if (sim_.loop().now() >= ctx.deadline()) fail("(h) " + id + " ran an expired request");
          };
          ok(core.handle("echo", [fresh](const CallContext& ctx, std::string r, Reply reply) {
            fresh(ctx);
            reply(std::move(r));
          }));
          ok(core.handle("fail", [fresh](const CallContext& ctx, std::string, Reply reply) {
            fresh(ctx);
            reply(Status(StatusCode::kAborted, "stale epoch"));
          }));
          ok(core.handle("hang", [fresh](const CallContext& ctx, std::string, Reply) { fresh(ctx); }));
          HandlerOptions few;
          few.max_concurrency = 2;
          few.max_queue = 4;
          ok(core.handle(
              "slow",
              [this, id, fresh](const CallContext& ctx, std::string r, Reply reply) {
                fresh(ctx);
                std::uniform_int_distribution<int> d(1, 800);
                sim_.scheduler(id).runAfter(std::chrono::milliseconds(d(rng_)),
                                            [reply, r = std::move(r)]() mutable { reply(std::move(r)); });
              },
              few));
        });
  }

  // The calls a killed process made die with it: nobody is left to be told.
  void crash(const std::string& id) {
    sim_.crash(id);
    for (auto it = open_.begin(); it != open_.end();) {
      it = it->second.caller == id ? open_.erase(it) : std::next(it);
    }
  }

  std::string pick() {
    std::uniform_int_distribution<std::size_t> d(0, ids_.size() - 1);
    return ids_[d(rng_)];
  }

  void chaos() {
    std::uniform_int_distribution<int> what(0, 99);
    const int w = what(rng_);
    const std::string a = pick();
    std::string b = pick();
    while (b == a) b = pick();
    if (w < 45) {
      if (sim_.running(a)) makeCall(a, b);
    } else if (w < 52) {
      note("partition " + a + " " + b);
      sim_.net().partition(a, b);
    } else if (w < 55) {
      note("partition one way " + a + "->" + b);
      sim_.net().partitionOneWay(a, b);
    } else if (w < 65) {
      note("heal " + a + " " + b);
      sim_.net().heal(a, b);
    } else if (w < 68) {
      note("reset " + a + " " + b);
      sim_.net().reset(a, b);
    } else if (w < 71) {
      if (sim_.running(a)) {
        note("crash " + a);
        crash(a);
      }
    } else if (w < 73) {
      if (sim_.running(a)) {
        note("stop " + a);
        sim_.stop(a);
        crash(a);  // the process exits after its clean stop
      }
    } else if (w < 80) {
      if (!sim_.running(a)) startNode(a);
    } else if (w < 83) {
      const bool cut = what(rng_) < 50;
      note(std::string(cut ? "cut " : "uncut ") + a + " from members");
      sim_.net().cutFromMembers(a, cut);
    } else if (w < 86) {
      const double p = what(rng_) < 50 ? 0.0 : 0.05;
      note("duplicates " + std::to_string(p));
      sim_.net().options().duplicate_probability = p;
    } else if (w < 89) {
      const auto max = std::chrono::milliseconds(1 + what(rng_) % 50);
      note("max delay " + std::to_string(max.count()) + "ms");
      sim_.net().options().max_delay = max;
    } else if (w < 93) {
      if (sim_.running(a)) makeAll(a);
    } else if (w < 97) {
      if (sim_.running(a)) makeAny(a);
    } else if (w < 98) {
      if (sim_.running(a)) sim_.core(a).broadcast("echo", "b");
    } else if (sim_.running(a)) {
      // Its workers are busy (blocking handlers): requests wait there, some past their deadline.
      const auto stall = what(rng_) < 40 ? 0ms : std::chrono::milliseconds(200 + 30 * what(rng_));
      note("worker stall " + a + " " + std::to_string(stall.count()) + "ms");
      sim_.setWorkerStall(a, stall);
    }
  }

  void track(const std::string& caller, const std::string& what, Duration timeout,
             const std::function<void(std::function<void()>)>& start) {
    const std::uint64_t id = next_call_++;
    open_[id] = {caller, what, sim_.loop().now() + timeout};
    start([this, id, what] {
      auto it = open_.find(id);
      if (it == open_.end()) {
        fail("(c) " + what + " completed twice");
        return;
      }
      if (sim_.loop().now() > it->second.deadline) fail("(c) " + what + " completed after its deadline");
      open_.erase(it);
    });
  }

  void makeCall(const std::string& a, const std::string& b) {
    static const char* kMethods[] = {"echo", "echo", "slow", "slow", "hang", "fail", "missing"};
    std::uniform_int_distribution<int> m(0, 6), t(1, 10);
    const std::string method = kMethods[m(rng_)];
    const Duration timeout = std::chrono::milliseconds(t(rng_) * 200);
    CallOptions o = within(timeout);
    o.wait_for_ready = m(rng_) == 0;
    track(a, "call " + a + "->" + b + " " + method, timeout, [&](std::function<void()> done) {
      sim_.core(a).call(b, method, "x", o, [done](Result<std::string>) { done(); });
    });
  }

  void makeAll(const std::string& a) {
    const Duration timeout = 1500ms;
    track(a, "all from " + a, timeout, [&](std::function<void()> done) {
      sim_.core(a).all("slow", "x", within(timeout), {}, [done](std::vector<PeerReply>) { done(); });
    });
  }

  void makeAny(const std::string& a) {
    CallOptions o = within(1s);
    o.idempotent = true;
    track(a, "any from " + a, 1s, [&](std::function<void()> done) {
      sim_.core(a).any("echo", "x", o, {}, [done](PeerReply) { done(); });
    });
  }

  bool onePerPair() {
    for (std::size_t i = 0; i < ids_.size(); ++i) {
      for (std::size_t j = i + 1; j < ids_.size(); ++j) {
        if (sim_.net().openLinks(ids_[i], ids_[j]) != 1) return false;
      }
    }
    return true;
  }

  void check() {
    const TimePoint now = sim_.loop().now();
    for (const auto& [id, c] : open_) {
      if (now > c.deadline) {
        fail("(c) " + c.what + " still open " + std::to_string(toMillis(now - c.deadline)) +
             " ms after its deadline");
        open_.erase(id);
        break;
      }
    }
    for (std::size_t i = 0; i < ids_.size(); ++i) {
      for (std::size_t j = i + 1; j < ids_.size(); ++j) {
        const auto key = std::make_pair(ids_[i], ids_[j]);
        if (sim_.net().openLinks(ids_[i], ids_[j]) > 1) {
          auto [it, fresh] = two_since_.emplace(key, now);
          if (!fresh && now - it->second > 1s) {
            fail("(l) two open connections between " + key.first + " and " + key.second + " for over 1 s");
            two_since_.erase(it);
          }
        } else {
          two_since_.erase(key);
        }
      }
    }
  }

  std::uint64_t seed_;
  std::mt19937_64 rng_;
  SimMesh sim_;
  std::vector<std::string> ids_;
  std::map<std::uint64_t, OpenCall> open_;
  std::uint64_t next_call_ = 0;
  std::map<std::pair<std::string, std::string>, TimePoint> two_since_;
  std::vector<std::string> failures_;
  std::vector<std::string> trace_;
};

TEST(MeshSim, InvariantsHoldUnderChaos) {
  const std::uint64_t one = envOr("HACOORD_SIM_SEED", 0);
  const std::uint64_t seeds = one != 0 ? 1 : envOr("HACOORD_SIM_SEEDS", 20);
  const std::uint64_t steps = envOr("HACOORD_SIM_STEPS", 300);
  if (envOr("HACOORD_SIM_VERBOSE", 0) != 0) setLogLevel("debug");
  std::uint64_t calls = 0;
  int failed = 0;
  for (std::uint64_t s = 0; s < seeds && failed < 3; ++s) {
    const std::uint64_t seed = one != 0 ? one : s + 1;
    MeshSim sim(seed);
    sim.run(steps);
    calls += sim.calls();
    if (!sim.failures().empty()) {
      ++failed;
      std::string all;
      for (const auto& f : sim.failures()) all += "  " + f + "\n";
      ADD_FAILURE() << "seed " << seed << " (replay: HACOORD_SIM_SEED=" << seed << "):\n"
                    << all << "last events:\n"
                    << sim.transcript();
    }
  }
  std::cout << "  " << seeds << " seeds x " << steps << " chaos steps, " << calls << " calls checked\n";
}

}  // namespace
}  // namespace hacoord::mesh
