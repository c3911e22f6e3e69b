// MeshCore on virtual time: discovery, one link per pair, RPC deadlines and errors, all/any,
// liveness reasons, identity checks, metadata (DESIGN §6.1-6.3).
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "mesh/mesh_core.h"
#include "support/sim_mesh.h"

namespace hacoord::mesh {
namespace {

using namespace std::chrono_literals;
using test::FakeMeshNetwork;
using test::SimMesh;

void echo(MeshCore& core) {
  ASSERT_TRUE(
      core.handle("echo", [](const CallContext&, std::string req, Reply reply) { reply(std::move(req)); })
          .isOk());
}

// The result of one call, with when it ended and how often (exactly once is the rule).
struct Outcome {
  std::optional<Result<std::string>> result;
  int times = 0;
  TimePoint at{};
};

Done<Result<std::string>> record(SimMesh& sim, Outcome& o) {
  return [&sim, &o](Result<std::string> r) {
    ++o.times;
    o.at = sim.loop().now();
    o.result = std::move(r);
  };
}

CallOptions within(Duration d) {
  CallOptions o;
  o.timeout = d;
  return o;
}

// Runs until `who` sees `peer` alive with `incarnation` (false if not by `until`).
bool seesAliveAgain(SimMesh& sim, const std::string& who, const std::string& peer, std::uint64_t incarnation,
                    TimePoint until) {
  return sim.loop().runUntilCondition(
      [&] {
        auto p = sim.core(who).peer(peer);
        return p && p->state == PeerState::kAlive && p->incarnation == incarnation;
      },
      until);
}

bool settle(SimMesh& sim, Duration bound = 3s) {
  return sim.loop().runUntilCondition([&] { return sim.allAlive(); }, sim.loop().now() + bound);
}

TEST(MeshCore, TwoNodesFindEachOtherOverOneLinkAndCall) {
  SimMesh sim;
  sim.start("a", {}, echo);
  sim.start("b", {}, echo);
  ASSERT_TRUE(settle(sim));
  EXPECT_EQ(sim.net().openLinks("a", "b"), 1u);
  Outcome o;
  sim.core("a").call("b", "echo", "hello", within(1s), record(sim, o));
  sim.loop().advance(100ms);
  ASSERT_EQ(o.times, 1);
  ASSERT_TRUE(o.result->isOk()) << o.result->status().toString();
  EXPECT_EQ(o.result->value(), "hello");
  auto info = sim.core("b").peer("a");
  ASSERT_TRUE(info);
  EXPECT_EQ(info->state, PeerState::kAlive);
  EXPECT_TRUE(info->connected);
  EXPECT_EQ(info->incarnation, 1u);
}

TEST(MeshCore, BothDialingAtOnceEndsWithOneLink) {
  // The higher id dials too when it hears nothing: make it dial at once, so both dial together.
  SimMesh sim;
  auto eager = [](MeshOptions& o) { o.higher_dial_delay = 0ms; };
  sim.start("a", eager, echo);
  sim.start("b", eager, echo);
  ASSERT_TRUE(settle(sim));
  sim.loop().advance(500ms);
  EXPECT_EQ(sim.net().openLinks("a", "b"), 1u);
  EXPECT_GE(sim.core("a").counters().links_duplicate + sim.core("b").counters().links_duplicate, 1u)
      << "both dialed: one link must have been refused as a duplicate";
  Outcome o;
  sim.core("b").call("a", "echo", "x", within(1s), record(sim, o));
  sim.loop().advance(100ms);
  ASSERT_TRUE(o.result && o.result->isOk());
}

TEST(MeshCore, ErrorRepliesKeepTheirCodeAndMessage) {
  SimMesh sim;
  sim.start("a");
  sim.start("b", {}, [](MeshCore& c) {
    ASSERT_TRUE(c.handle("fail", [](const CallContext&, std::string, Reply reply) {
                   reply(Status(StatusCode::kFailedPrecondition, "not the leader, ask n3"));
                 }).isOk());
  });
  ASSERT_TRUE(settle(sim));
  Outcome fail, missing;
  sim.core("a").call("b", "fail", "", within(1s), record(sim, fail));
  sim.core("a").call("b", "nope", "", within(1s), record(sim, missing));
  sim.loop().advance(100ms);
  ASSERT_EQ(fail.times, 1);
  EXPECT_EQ(fail.result->status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(fail.result->status().message(), "not the leader, ask n3");
  ASSERT_EQ(missing.times, 1);
  EXPECT_EQ(missing.result->status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.result->status().message().find("nope"), std::string::npos);
}

TEST(MeshCore, ACallEndsAtItsDeadlineOnceAndTheHandlerSeesTheCancel) {
  SimMesh sim;
  std::optional<CallContext> seen;
  Reply held;
  sim.start("a");
  sim.start("b", {}, [&](MeshCore& c) {
    ASSERT_TRUE(c.handle("hang", [&](const CallContext& ctx, std::string, Reply reply) {
                   seen.emplace(ctx);
                   held = std::move(reply);
                 }).isOk());
  });
  ASSERT_TRUE(settle(sim));
  Outcome o;
  const TimePoint sent = sim.loop().now();
  sim.core("a").call("b", "hang", "", within(300ms), record(sim, o));
  sim.loop().advance(1s);
  ASSERT_EQ(o.times, 1);
  EXPECT_EQ(o.result->status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(o.at, sent + 300ms);
  ASSERT_TRUE(seen);
  EXPECT_TRUE(seen->cancelled()) << "RPC_CANCEL must reach the handler";
  EXPECT_LE(seen->deadline(), sent + 300ms + 10ms);
  held(std::string("late"));  // a reply after the deadline changes nothing
  sim.loop().advance(100ms);
  EXPECT_EQ(o.times, 1);
}

TEST(MeshCore, ARequestThatExpiresInTheQueueIsNeverRun) {
  SimMesh sim;
  int runs = 0;
  std::vector<Reply> held;
  sim.start("a");
  sim.start("b", {}, [&](MeshCore& c) {
    HandlerOptions one;
    one.max_concurrency = 1;
    ASSERT_TRUE(c.handle(
                     "slow",
                     [&](const CallContext&, std::string, Reply reply) {
                       ++runs;
                       held.push_back(std::move(reply));
                     },
                     one)
                    .isOk());
  });
  ASSERT_TRUE(settle(sim));
  Outcome first, second;
  sim.core("a").call("b", "slow", "", within(5s), record(sim, first));
  sim.core("a").call("b", "slow", "", within(200ms), record(sim, second));
  sim.loop().advance(500ms);
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(second.result->status().code(), StatusCode::kDeadlineExceeded);
  held.front()(std::string("done"));  // frees the slot: the queued request is expired and must not run
  sim.loop().advance(100ms);
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(sim.core("b").counters().requests_expired, 1u);
  ASSERT_TRUE(first.result && first.result->isOk());
}

// B1 of the mesh review: the workers are busy (blocking handlers), so a request handed to them
// waits there. One that waited past its deadline is never run, frees its slot, and is counted as
// expired, not served; one still in time runs.
TEST(MeshCore, ARequestThatExpiresWaitingForAWorkerIsNeverRun) {
  SimMesh sim;
  int runs = 0;
  sim.start("a");
  sim.start("b", {}, [&](MeshCore& c) {
    HandlerOptions one;
    one.max_concurrency = 1;
    ASSERT_TRUE(c.handle(
                     "count",
                     [&](const CallContext&, std::string r, Reply reply) {
                       ++runs;
                       reply(std::move(r));
                     },
                     one)
                    .isOk());
  });
  ASSERT_TRUE(settle(sim));
  sim.setWorkerStall("b", 500ms);
  Outcome late, in_time;
  sim.core("a").call("b", "count", "late", within(200ms), record(sim, late));
  sim.loop().advance(1s);
  ASSERT_EQ(late.times, 1);
  EXPECT_EQ(late.result->status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(runs, 0) << "a request whose deadline passed while it waited for a worker ran";
  EXPECT_EQ(sim.core("b").counters().requests_expired, 1u);
  EXPECT_EQ(sim.core("b").counters().requests_served, 0u);
  // Its slot (max_concurrency 1) was freed: a call with time to spare is served.
  sim.core("a").call("b", "count", "in time", within(2s), record(sim, in_time));
  sim.loop().advance(1s);
  ASSERT_EQ(in_time.times, 1);
  ASSERT_TRUE(in_time.result->isOk()) << in_time.result->status().toString();
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(sim.core("b").counters().requests_served, 1u);
}

// A wait_for_ready call made while its peer is suspect (link still up, nothing heard for a while)
// is sent as soon as the peer is heard again, not left to time out.
TEST(MeshCore, AWaitForReadyCallToASuspectPeerGoesOutWhenItIsHeardAgain) {
  SimMesh sim;
  sim.start("a", {}, echo);
  sim.start("b", {}, echo);
  ASSERT_TRUE(settle(sim));
  sim.net().partitionOneWay("b", "a");  // a hears nothing from b; the link stays
  ASSERT_TRUE(sim.loop().runUntilCondition(
      [&] { return sim.core("a").peer("b")->state == PeerState::kSuspect; }, sim.loop().now() + 10s));
  Outcome o;
  CallOptions wait = within(3s);
  wait.wait_for_ready = true;
  sim.core("a").call("b", "echo", "ready?", wait, record(sim, o));
  sim.loop().advance(200ms);
  EXPECT_EQ(o.times, 0);
  const TimePoint healed = sim.loop().now();
  sim.net().heal("a", "b");
  ASSERT_TRUE(sim.loop().runUntilCondition([&] { return o.times > 0; }, healed + 3s));
  ASSERT_TRUE(o.result->isOk()) << o.result->status().toString();
  EXPECT_EQ(o.result->value(), "ready?");
}

// Nodes may have different maxMessageBytes. Each says its own in HELLO and the other keeps to it:
// an oversize request or reply fails alone (ResourceExhausted naming the limit) instead of
// reaching a receiver that would close the connection with every call on it.
TEST(MeshCore, RequestsAndRepliesKeepToThePeersMessageLimit) {
  SimMesh sim;
  auto small = [](MeshOptions& o) { o.max_message_bytes = 1000; };
  sim.start("a", {}, [](MeshCore& c) {
    echo(c);
    ASSERT_TRUE(c.handle("big", [](const CallContext&, std::string, Reply reply) {
                   reply(std::string(2000, 'r'));
                 }).isOk());
  });
  sim.start("b", small, [](MeshCore& c) {
    echo(c);
    ASSERT_TRUE(c.handle("big", [](const CallContext&, std::string, Reply reply) {
                   reply(std::string(2000, 'r'));
                 }).isOk());
  });
  ASSERT_TRUE(settle(sim));
  Outcome request_too_big, reply_too_big, fine;
  sim.core("a").call("b", "echo", std::string(2000, 'q'), within(1s), record(sim, request_too_big));
  sim.core("b").call("a", "big", "", within(1s), record(sim, reply_too_big));
  sim.loop().advance(200ms);
  ASSERT_EQ(request_too_big.times, 1);
  EXPECT_EQ(request_too_big.result->status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(request_too_big.result->status().message().find("peer b's maxMessageBytes 1000"),
            std::string::npos)
      << request_too_big.result->status().toString();
  ASSERT_EQ(reply_too_big.times, 1);
  EXPECT_EQ(reply_too_big.result->status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(reply_too_big.result->status().message().find("reply of 2000 bytes"), std::string::npos)
      << reply_too_big.result->status().toString();
  // The link carries on.
  sim.core("a").call("b", "echo", std::string(900, 'q'), within(1s), record(sim, fine));
  sim.loop().advance(200ms);
  ASSERT_EQ(fine.times, 1);
  EXPECT_TRUE(fine.result->isOk()) << fine.result->status().toString();
  EXPECT_EQ(sim.net().openLinks("a", "b"), 1u);
  EXPECT_EQ(sim.core("a").counters().protocol_errors + sim.core("b").counters().protocol_errors, 0u);
}

// Queued requests are bounded in bytes too, not only in number (1024 x 16 MiB would be 16 GiB).
TEST(MeshCore, QueuedRequestBytesAreBounded) {
  SimMesh sim;
  std::vector<Reply> held;
  sim.start("a");
  sim.start(
      "b", [](MeshOptions& o) { o.max_queued_request_bytes = 1500; },
      [&](MeshCore& c) {
        HandlerOptions one;
        one.max_concurrency = 1;
        ASSERT_TRUE(
            c.handle(
                 "hold",
                 [&](const CallContext&, std::string, Reply reply) { held.push_back(std::move(reply)); }, one)
                .isOk());
      });
  ASSERT_TRUE(settle(sim));
  Outcome running, queued, refused;
  sim.core("a").call("b", "hold", std::string(1000, 'x'), within(5s), record(sim, running));
  sim.core("a").call("b", "hold", std::string(1000, 'x'), within(5s), record(sim, queued));
  sim.core("a").call("b", "hold", std::string(1000, 'x'), within(5s), record(sim, refused));
  sim.loop().advance(100ms);
  ASSERT_EQ(refused.times, 1);
  EXPECT_EQ(refused.result->status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(refused.result->status().message().find("1000 bytes of requests queued"), std::string::npos)
      << refused.result->status().toString();
  EXPECT_EQ(queued.times, 0);
  ASSERT_EQ(held.size(), 1u);
  held[0](std::string("one"));  // the queued one runs; its bytes leave the queue
  sim.loop().advance(100ms);
  ASSERT_EQ(held.size(), 2u);
  Outcome again;
  sim.core("a").call("b", "hold", std::string(1000, 'x'), within(5s), record(sim, again));
  sim.loop().advance(100ms);
  EXPECT_EQ(again.times, 0) << "queued, not refused: " << again.result->status().toString();
}

// stop(): running handlers see cancellation, queued requests never run.
TEST(MeshCore, StopCancelsRunningHandlersAndDropsQueuedRequests) {
  SimMesh sim;
  std::vector<std::pair<CallContext, Reply>> held;
  sim.start("a");
  sim.start("b", {}, [&](MeshCore& c) {
    HandlerOptions one;
    one.max_concurrency = 1;
    ASSERT_TRUE(c.handle(
                     "hold",
                     [&](const CallContext& ctx, std::string, Reply reply) {
                       held.emplace_back(ctx, std::move(reply));
                     },
                     one)
                    .isOk());
  });
  ASSERT_TRUE(settle(sim));
  Outcome first, second;
  sim.core("a").call("b", "hold", "1", within(5s), record(sim, first));
  sim.core("a").call("b", "hold", "2", within(5s), record(sim, second));
  sim.loop().advance(100ms);
  ASSERT_EQ(held.size(), 1u);
  EXPECT_FALSE(held[0].first.cancelled());
  sim.core("b").stop();
  EXPECT_TRUE(held[0].first.cancelled()) << "a running handler was not told the mesh stopped";
  held[0].second(std::string("late"));
  sim.loop().advance(1s);
  EXPECT_EQ(held.size(), 1u) << "a queued request ran after stop()";
  EXPECT_EQ(sim.core("b").counters().requests_expired, 1u);
  EXPECT_EQ(first.times, 1);
  EXPECT_EQ(second.times, 1);
}

// Peers with different timings (gRPC's keepalive mismatch): b pings every 200 ms and declares
// silence of 1 s dead; a pings every second by its own config. Each side's liveness rests on its
// own pings (answered by PONG), so an idle but healthy a never looks dead to b, and a never
// refuses b's frequent pings.
TEST(MeshCore, PeersWithDifferentTimingsStayAliveWhenIdle) {
  SimMesh sim;
  sim.start("a", {}, echo);
  sim.start(
      "b",
      [](MeshOptions& o) {
        o.ping_interval = 200ms;
        o.suspect_after = 600ms;
        o.dead_after = 1s;
      },
      echo);
  ASSERT_TRUE(settle(sim));
  for (int i = 0; i < 100; ++i) {  // 10 s, idle
    sim.loop().advance(100ms);
    ASSERT_EQ(sim.core("b").peer("a")->state, PeerState::kAlive) << "after " << (i + 1) * 100 << " ms idle";
  }
  EXPECT_EQ(sim.net().openLinks("a", "b"), 1u);
}

TEST(MeshCore, AFullQueueAnswersResourceExhausted) {
  SimMesh sim;
  std::vector<Reply> held;
  sim.start("a");
  sim.start("b", {}, [&](MeshCore& c) {
    HandlerOptions tiny;
    tiny.max_concurrency = 1;
    tiny.max_queue = 1;
    ASSERT_TRUE(c.handle(
                     "slow",
                     [&](const CallContext&, std::string, Reply reply) { held.push_back(std::move(reply)); },
                     tiny)
                    .isOk());
  });
  ASSERT_TRUE(settle(sim));
  Outcome o1, o2, o3;
  sim.core("a").call("b", "slow", "", within(1s), record(sim, o1));
  sim.core("a").call("b", "slow", "", within(1s), record(sim, o2));
  sim.core("a").call("b", "slow", "", within(1s), record(sim, o3));
  sim.loop().advance(50ms);
  ASSERT_EQ(o3.times, 1);
  EXPECT_EQ(o3.result->status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(o1.times + o2.times, 0);
}

TEST(MeshCore, CallsFailFastWithAReason) {
  SimMesh sim;
  sim.start("a");
  Outcome unknown, bad;
  sim.core("a").call("zz", "echo", "", within(1s), record(sim, unknown));
  sim.core("a").call("zz", "echo", "", within(0ms), record(sim, bad));
  sim.loop().advance(1ms);
  EXPECT_EQ(unknown.result->status().code(), StatusCode::kUnavailable);
  EXPECT_NE(unknown.result->status().message().find("not a member"), std::string::npos);
  EXPECT_EQ(bad.result->status().code(), StatusCode::kInvalidArgument);
  Outcome big;
  sim.start("b", [](MeshOptions& o) { o.max_message_bytes = 1024; });
  sim.core("b").call("a", "echo", std::string(2000, 'x'), within(1s), record(sim, big));
  sim.loop().advance(1ms);
  EXPECT_EQ(big.result->status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(big.result->status().message().find("2000"), std::string::npos);
  EXPECT_NE(big.result->status().message().find("1024"), std::string::npos);
}

TEST(MeshCore, AllNeverWaitsOnAPeerThatDies) {
  SimMesh sim;
  Reply held;
  sim.start("a");
  sim.start("b", {}, echo);
  sim.start("c", {}, [&](MeshCore& c) {
    ASSERT_TRUE(c.handle("echo", [&](const CallContext&, std::string, Reply reply) {
                   held = std::move(reply);
                 }).isOk());
  });
  ASSERT_TRUE(settle(sim));
  std::optional<std::vector<PeerReply>> replies;
  int times = 0;
  const TimePoint sent = sim.loop().now();
  sim.core("a").all("echo", "hi", within(10s), {}, [&](std::vector<PeerReply> r) {
    ++times;
    replies = std::move(r);
  });
  sim.loop().advance(50ms);
  EXPECT_EQ(times, 0);  // c holds its answer
  sim.crash("c");       // the kernel closes c's connections: FIN to a
  sim.loop().advance(100ms);
  ASSERT_EQ(times, 1);
  EXPECT_LT(sim.loop().now() - sent, 1s);
  ASSERT_EQ(replies->size(), 2u);
  EXPECT_EQ((*replies)[0].peer, "b");
  EXPECT_TRUE((*replies)[0].reply.isOk());
  EXPECT_EQ((*replies)[1].peer, "c");
  EXPECT_EQ((*replies)[1].reply.status().code(), StatusCode::kUnavailable);
}

TEST(MeshCore, AnyPicksTheLeastBusyAndSkipsDeadPeers) {
  SimMesh sim;
  std::vector<Reply> held_b;
  sim.start("a");
  sim.start("b", {}, [&](MeshCore& c) {
    ASSERT_TRUE(c.handle("work", [&](const CallContext&, std::string, Reply r) {
                   held_b.push_back(std::move(r));
                 }).isOk());
  });
  sim.start("c", {}, [](MeshCore& c) {
    ASSERT_TRUE(
        c.handle("work", [](const CallContext&, std::string, Reply r) { r(std::string("c")); }).isOk());
  });
  sim.start("d", {}, [](MeshCore& c) {
    ASSERT_TRUE(
        c.handle("work", [](const CallContext&, std::string, Reply r) { r(std::string("d")); }).isOk());
  });
  ASSERT_TRUE(settle(sim));
  // Make b busy with calls of ours, and kill d: any must answer from c every time.
  for (int i = 0; i < 3; ++i) sim.core("a").call("b", "work", "", within(10s), [](Result<std::string>) {});
  sim.crash("d");
  sim.loop().advance(50ms);
  for (int i = 0; i < 5; ++i) {
    std::optional<PeerReply> got;
    sim.core("a").any("work", "", within(1s), {}, [&](PeerReply r) { got = std::move(r); });
    sim.loop().advance(20ms);
    ASSERT_TRUE(got);
    EXPECT_EQ(got->peer, "c");
    ASSERT_TRUE(got->reply.isOk()) << got->reply.status().toString();
  }
}

TEST(MeshCore, DivisionsMatchWholeSegments) {
  EXPECT_TRUE(divisionMatches("", "dc1/r2"));
  EXPECT_TRUE(divisionMatches("dc1/r2", "dc1/r2"));
  EXPECT_TRUE(divisionMatches("dc1/r2", "dc1/r2/h3"));
  EXPECT_TRUE(divisionMatches("dc1", "dc1/r20"));
  EXPECT_FALSE(divisionMatches("dc1/r2", "dc1/r20"));
  EXPECT_FALSE(divisionMatches("dc1/r2", "dc1"));
  EXPECT_FALSE(divisionMatches("dc1/r2", ""));
  SimMesh sim;
  sim.start("a");
  sim.start(
      "b", [](MeshOptions& o) { o.division = "dc1/r2"; }, echo);
  sim.start(
      "c", [](MeshOptions& o) { o.division = "dc1/r20"; }, echo);
  ASSERT_TRUE(settle(sim));
  std::optional<std::vector<PeerReply>> replies;
  PeerFilter f;
  f.division = "dc1/r2";
  sim.core("a").all("echo", "", within(1s), f, [&](std::vector<PeerReply> r) { replies = std::move(r); });
  sim.loop().advance(50ms);
  ASSERT_TRUE(replies);
  ASSERT_EQ(replies->size(), 1u);
  EXPECT_EQ((*replies)[0].peer, "b");
}

TEST(MeshCore, APartitionMakesPeersDeadUnreachableAndHealingBringsThemBack) {
  SimMesh sim;
  sim.start("a", {}, echo);
  sim.start("b", {}, echo);
  ASSERT_TRUE(settle(sim));
  std::vector<PeerInfo> events;
  sim.core("a").onPeerEvent([&](const PeerInfo& p) { events.push_back(p); });
  const TimePoint cut = sim.loop().now();
  sim.net().partition("a", "b");  // NATS still works for both: records stay fresh
  ASSERT_TRUE(sim.loop().runUntilCondition([&] { return sim.core("a").peer("b")->state == PeerState::kDead; },
                                           cut + 10s));
  EXPECT_LE(sim.loop().now() - cut, 5s + 200ms);  // dead_after plus one tick
  EXPECT_EQ(sim.core("a").peer("b")->reason, DeadReason::kUnreachable);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.front().state, PeerState::kSuspect);
  Outcome o;
  sim.core("a").call("b", "echo", "", within(1s), record(sim, o));
  sim.loop().advance(1ms);
  EXPECT_EQ(o.result->status().code(), StatusCode::kUnavailable);
  EXPECT_NE(o.result->status().message().find("unreachable"), std::string::npos);
  sim.net().heal("a", "b");
  ASSERT_TRUE(settle(sim, 10s)) << "reconnect after the heal";
  EXPECT_EQ(sim.net().openLinks("a", "b"), 1u);
}

TEST(MeshCore, ADepartedPeerIsDeadAtOnceAndARestartReconnectsWithin200ms) {
  SimMesh sim;
  sim.start("a", {}, echo);
  sim.start("b", {}, echo);
  ASSERT_TRUE(settle(sim));
  sim.stop("b");
  sim.loop().advance(50ms);
  EXPECT_EQ(sim.core("a").peer("b")->state, PeerState::kDead);
  EXPECT_EQ(sim.core("a").peer("b")->reason, DeadReason::kDeparted);
  EXPECT_EQ(sim.core("a").peer("b")->incarnation, 1u) << "a departed peer keeps its last incarnation";
  // b crashes instead (record stays), then restarts with a new incarnation.
  sim.start("b", {}, echo);
  ASSERT_TRUE(settle(sim));
  sim.crash("b");
  sim.loop().advance(10ms);
  const TimePoint restart = sim.loop().now();
  sim.start("b", {}, echo);
  ASSERT_TRUE(seesAliveAgain(sim, "a", "b", 3, restart + 2s));
  EXPECT_LE(sim.loop().now() - restart, 200ms);
}

// The restart comes while a dial to the old process hangs (a blackholed address, up to the 3 s
// dial timeout): the changed record starts a new dial at once instead of waiting for that one.
TEST(MeshCore, ARestartReconnectsWithin200msEvenWhileADialHangs) {
  SimMesh sim;
  sim.start("a", {}, echo);
  sim.start("b", {}, echo);
  ASSERT_TRUE(settle(sim));
  sim.net().partition("a", "b");
  ASSERT_TRUE(sim.loop().runUntilCondition([&] { return sim.core("a").peer("b")->state == PeerState::kDead; },
                                           sim.loop().now() + 10s));
  sim.loop().advance(300ms);  // a redials b into the blackhole
  sim.crash("b");
  sim.net().heal("a", "b");
  const TimePoint restart = sim.loop().now();
  sim.start("b", {}, echo);
  ASSERT_TRUE(seesAliveAgain(sim, "a", "b", 2, restart + 5s));
  EXPECT_LE(sim.loop().now() - restart, 200ms);
}

TEST(MeshCore, AConnectionWhoseCertificateIsNotInTheRecordIsRefused) {
  SimMesh sim;
  sim.start("a", {}, echo);
  // b's record lists another fingerprint (its certificate was rotated away, or this is an impostor
  // holding a CA-signed certificate for "b" that the operator never enrolled).
  sim.start(
      "b", [](MeshOptions& o) { o.cert_sha256 = {std::string(64, 'f')}; }, echo);
  sim.loop().advance(3s);
  EXPECT_NE(sim.core("a").peer("b")->state, PeerState::kAlive);
  EXPECT_GE(sim.core("a").counters().links_refused_identity, 1u);
  EXPECT_EQ(sim.net().openLinks("a", "b"), 0u);
}

TEST(MeshCore, ADialedPeerPresentingAnotherIdIsRefused) {
  SimMesh sim;
  sim.start("a");
  sim.net().presentAs("b", "c", FakeMeshNetwork::fingerprintOf("c"));
  sim.start("b");
  sim.loop().advance(3s);
  EXPECT_NE(sim.core("a").peer("b")->state, PeerState::kAlive);
  EXPECT_EQ(sim.net().openLinks("a", "b"), 0u);
  // a dialed b and met a certificate for c; b's own dial reached a as "c", which has no record.
  EXPECT_GE(sim.transport("a").refusals()[RefusedReason::kSan], 1u);
  EXPECT_GE(sim.core("a").counters().links_refused_identity, 1u);
}

TEST(MeshCore, MetadataReachesPeersAndTheHighestVersionWins) {
  SimMesh sim;
  sim.start("a");
  sim.start("b");
  ASSERT_TRUE(settle(sim));
  ASSERT_TRUE(sim.core("a").setMeta("role", "db").isOk());
  ASSERT_TRUE(sim.core("a").setMeta("zone", "z1").isOk());
  sim.loop().advance(200ms);
  auto p = sim.core("b").peer("a");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->meta.at("role"), "db");
  EXPECT_EQ(p->meta.at("zone"), "z1");
  EXPECT_EQ(p->meta_version, 2u);
  EXPECT_EQ(sim.core("a").setMeta("big", std::string(kMaxMetaBytes, 'x')).code(),
            StatusCode::kResourceExhausted);
  EXPECT_EQ(sim.core("a").meta().count("big"), 0u);
  // A node that connects later gets the current map on HELLO.
  sim.start("c");
  ASSERT_TRUE(settle(sim));
  sim.loop().advance(100ms);
  EXPECT_EQ(sim.core("c").peer("a")->meta.at("zone"), "z1");
}

TEST(MeshCore, AHigherEpochOnAFrameIsReported) {
  SimMesh sim;
  sim.start("a");
  sim.start("b");
  ASSERT_TRUE(settle(sim));
  std::vector<std::uint64_t> seen;
  sim.core("b").onHigherEpoch([&](std::uint64_t e) { seen.push_back(e); });
  sim.core("a").noteEpoch(42);
  sim.loop().advance(3s);  // pings carry it
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back(), 42u);
}

TEST(MeshCore, TimersThatSlipDeclareOurselvesDegradedNotOthersDead) {
  SimMesh sim;
  sim.start("a");
  sim.start("b");
  ASSERT_TRUE(settle(sim));
  sim.scheduler("a").pause();  // SIGSTOP of a for 8 s: b is silent to a only because a slept
  sim.loop().advance(8s);
  sim.scheduler("a").resume();
  sim.loop().advance(150ms);
  EXPECT_TRUE(sim.core("a").degraded() || sim.core("a").counters().slipped_ticks > 0);
  EXPECT_NE(sim.core("a").peer("b")->reason, DeadReason::kUnreachable);
}

}  // namespace
}  // namespace hacoord::mesh
