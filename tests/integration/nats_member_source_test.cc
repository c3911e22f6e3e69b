// NatsMemberSource against a real nats-server: two sources see each other, changes once, a clean
// departure, an expiry (no watch event on 2.9), garbage in the bucket, a bucket deleted live.
#include "nats/nats_member_source.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nats/nats.h>

#include "hacoord/config.h"
#include "nats/nats_connection.h"
#include "nats/nats_kv_bucket.h"
#include "support/eventually.h"
#include "support/log_capture.h"
#include "support/nats_server_fixture.h"
#include "support/runtime_scheduler.h"

namespace hacoord {
namespace {

using namespace std::chrono_literals;
using mesh::MemberRecord;
using test::NatsServer;

MemberRecord recordOf(const std::string& node, std::uint64_t incarnation) {
  MemberRecord r;
  r.node = node;
  r.incarnation = incarnation;
  r.addrs = {"127.0.0.1:7400"};
  r.division = "dc1";
  r.type = "db";
  r.cert_sha256 = {std::string(64, 'a')};
  return r;
}

// What a source delivered, in order, with a check that every callback ran on the scheduler.
class Recorder {
 public:
  using Steady = std::chrono::steady_clock;
  struct Event {
    bool gone = false;
    std::string node;
    MemberRecord record;  // upserts only
    Steady::time_point at;
  };

  explicit Recorder(test::RuntimeScheduler& scheduler) : scheduler_(scheduler) {}

  mesh::MemberSource::Events events() {
    mesh::MemberSource::Events e;
    e.on_upsert = [this](const MemberRecord& r) { add({false, r.node, r, Steady::now()}); };
    e.on_gone = [this](const std::string& node) { add({true, node, {}, Steady::now()}); };
    return e;
  }
  std::vector<Event> all() {
    std::lock_guard lock(mutex_);
    return events_;
  }
  // True when the last event about `node` is an upsert with this incarnation.
  bool has(const std::string& node, std::uint64_t incarnation) {
    auto events = all();
    for (auto it = events.rbegin(); it != events.rend(); ++it) {
      if (it->node == node) return !it->gone && it->record.incarnation == incarnation;
    }
    return false;
  }
  // True when the last event about `node` is on_gone.
  bool gone(const std::string& node) {
    auto events = all();
    for (auto it = events.rbegin(); it != events.rend(); ++it) {
      if (it->node == node) return it->gone;
    }
    return false;
  }
  int upserts(const std::string& node, std::uint64_t incarnation) {
    int n = 0;
    for (const auto& e : all()) n += !e.gone && e.node == node && e.record.incarnation == incarnation ? 1 : 0;
    return n;
  }
  int gones(const std::string& node) {
    int n = 0;
    for (const auto& e : all()) n += e.gone && e.node == node ? 1 : 0;
    return n;
  }
  std::optional<Steady::time_point> firstGone(const std::string& node) {
    for (const auto& e : all()) {
      if (e.gone && e.node == node) return e.at;
    }
    return std::nullopt;
  }
  int offScheduler() const { return off_scheduler_.load(); }
  std::string text() {
    std::string out;
    for (const auto& e : all()) {
      out += (e.gone ? "gone " : "upsert ") + e.node +
             (e.gone ? "" : " inc " + std::to_string(e.record.incarnation)) + "\n";
    }
    return out;
  }

 private:
  void add(Event e) {
    if (!scheduler_.inSchedulerThread()) off_scheduler_.fetch_add(1);
    std::lock_guard lock(mutex_);
    events_.push_back(std::move(e));
  }

  test::RuntimeScheduler& scheduler_;
  std::atomic<int> off_scheduler_{0};
  std::mutex mutex_;
  std::vector<Event> events_;
};

class NatsMemberSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<NatsServer>();
    conn_ = connect("members-test");
    ASSERT_NE(conn_, nullptr);
  }
  std::unique_ptr<NatsConnection> connect(const std::string& name) {
    auto c = NatsConnection::connect(test::testNatsConfig({server_->url()}), name, {});
    EXPECT_TRUE(c.isOk()) << c.status().toString();
    return c.isOk() ? std::move(c).value() : nullptr;
  }
  static NatsMemberSourceOptions options(milliseconds refresh) {
    NatsMemberSourceOptions o;
    o.cluster_id = "mt";
    o.refresh = refresh;
    return o;
  }
  std::unique_ptr<NatsMemberSource> open(NatsConnection& conn, milliseconds refresh, Scheduler& scheduler) {
    auto s = NatsMemberSource::open(conn, options(refresh), scheduler);
    EXPECT_TRUE(s.isOk()) << s.status().toString();
    return s.isOk() ? std::move(s).value() : nullptr;
  }
  // A handle of our own on the members bucket, to write into it as a node or an operator would.
  std::unique_ptr<NatsKvBucket> rawBucket(milliseconds refresh) {
    auto b = NatsKvBucket::open(*conn_, NatsMemberSource::bucketSettings(options(refresh)));
    EXPECT_TRUE(b.isOk()) << b.status().toString();
    return b.isOk() ? std::move(b).value() : nullptr;
  }

  std::unique_ptr<NatsServer> server_;
  std::unique_ptr<NatsConnection> conn_;
};

TEST(NatsMemberSourceSettings, SeparateBucketWithHistoryOneAndMaxAgeThreeRefreshes) {
  NatsMemberSourceOptions o;
  o.cluster_id = "c1";
  const KvBucketSettings s = NatsMemberSource::bucketSettings(o);
  EXPECT_EQ(s.name, "HACOORD_c1_MEMBERS");
  EXPECT_EQ(s.history, 1);
  EXPECT_EQ(s.max_age, 15000ms) << "default refresh 5 s";
  Config config;
  config.cluster_id = "c1";
  EXPECT_NE(s.name, config.bucketName()) << "the members bucket must not be the lease bucket";
  o.refresh = 300ms;
  EXPECT_EQ(NatsMemberSource::bucketSettings(o).max_age, 900ms);
  EXPECT_EQ(NatsMemberSource::keyOf("n1"), "m.n1");
}

TEST_F(NatsMemberSourceTest, TheServersStreamHasTheMaxAgeAndHistoryAndBadOptionsAreRefused) {
  test::RuntimeScheduler scheduler;
  auto source = open(*conn_, 2000ms, scheduler);
  ASSERT_NE(source, nullptr);
  EXPECT_EQ(source->bucket(), "HACOORD_mt_MEMBERS");
  jsStreamInfo* si = nullptr;
  ASSERT_EQ(js_GetStreamInfo(&si, conn_->js(), "KV_HACOORD_mt_MEMBERS", nullptr, nullptr), NATS_OK);
  EXPECT_EQ(si->Config->MaxAge, 6'000'000'000LL) << "3 x 2 s, in ns";
  EXPECT_EQ(si->Config->MaxMsgsPerSubject, 1);
  jsStreamInfo_Destroy(si);

  // The same bucket with another refresh is another MaxAge: refused, never changed.
  auto other = NatsMemberSource::open(*conn_, options(3000ms), scheduler);
  EXPECT_EQ(other.status().code(), StatusCode::kInvalidArgument) << other.status().toString();
  auto fast = NatsMemberSource::open(*conn_, options(20ms), scheduler);
  EXPECT_EQ(fast.status().code(), StatusCode::kInvalidArgument) << fast.status().toString();
  NatsMemberSourceOptions bad = options(1000ms);
  bad.cluster_id = "a.b";
  EXPECT_EQ(NatsMemberSource::open(*conn_, bad, scheduler).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(NatsMemberSourceTest, TwoSourcesSeeEachOtherAndAChangeIsDeliveredOnce) {
  test::RuntimeScheduler scheduler_a;
  test::RuntimeScheduler scheduler_b;
  // Declared before the sources: it outlives every callback they deliver (one's departure reaches
  // the other while it stops).
  Recorder log_a(scheduler_a);
  Recorder log_b(scheduler_b);
  auto conn_b = connect("members-b");
  ASSERT_NE(conn_b, nullptr);
  auto a = open(*conn_, 300ms, scheduler_a);
  auto b = open(*conn_b, 300ms, scheduler_b);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  a->start(log_a.events());
  b->start(log_b.events());
  a->publish(recordOf("a", 1));
  b->publish(recordOf("b", 1));
  ASSERT_TRUE(eventually([&] { return log_a.has("b", 1) && log_b.has("a", 1); }, 5000ms))
      << "a:\n"
      << log_a.text() << "b:\n"
      << log_b.text();
  EXPECT_TRUE(log_a.has("a", 1)) << "a source delivers its own record too";

  // A new incarnation: delivered once, however many times it is re-put afterwards.
  b->publish(recordOf("b", 2));
  ASSERT_TRUE(eventually([&] { return log_a.has("b", 2); }, 5000ms)) << log_a.text();
  auto raw = rawBucket(300ms);
  ASSERT_NE(raw, nullptr);
  auto revisionOfB = [&]() -> std::uint64_t {
    auto r = raw->get("m.b");
    return r.isOk() && r->entry ? r->entry->revision : 0;
  };
  std::uint64_t seen = revisionOfB();
  int re_puts = 0;
  ASSERT_TRUE(eventually(
      [&] {
        const std::uint64_t now = revisionOfB();
        if (now > seen) {
          seen = now;
          ++re_puts;
        }
        return re_puts >= 3;
      },
      5000ms))
      << "b did not re-put its record every refresh";
  b->publish(recordOf("b", 3));  // everything before it was delivered first (one ordered stream)
  ASSERT_TRUE(eventually([&] { return log_a.has("b", 3); }, 5000ms)) << log_a.text();
  EXPECT_EQ(log_a.upserts("b", 2), 1) << log_a.text();
  EXPECT_EQ(log_a.upserts("b", 1), 1) << log_a.text();
  EXPECT_EQ(log_a.gones("b"), 0) << log_a.text();
  EXPECT_EQ(log_a.offScheduler(), 0) << "a callback ran off the scheduler";
  EXPECT_EQ(log_b.offScheduler(), 0) << "a callback ran off the scheduler";
}

TEST_F(NatsMemberSourceTest, StopDeletesTheRecordAndTheOtherSideSeesItGoneLongBeforeExpiry) {
  test::RuntimeScheduler scheduler_a;
  test::RuntimeScheduler scheduler_b;
  // Declared before the sources: it outlives every callback they deliver (one's departure reaches
  // the other while it stops).
  Recorder log_a(scheduler_a);
  Recorder log_b(scheduler_b);
  auto conn_b = connect("members-b");
  ASSERT_NE(conn_b, nullptr);
  auto a = open(*conn_, 5000ms, scheduler_a);  // MaxAge 15 s: an expiry would take that long
  auto b = open(*conn_b, 5000ms, scheduler_b);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  a->start(log_a.events());
  b->start(log_b.events());
  b->publish(recordOf("b", 7));
  ASSERT_TRUE(eventually([&] { return log_a.has("b", 7); }, 5000ms)) << log_a.text();
  const auto stopped = std::chrono::steady_clock::now();
  b->stop();
  EXPECT_TRUE(eventually([&] { return log_a.gone("b"); }, 3000ms)) << log_a.text();
  EXPECT_LT(std::chrono::steady_clock::now() - stopped, 5000ms);
  auto raw = rawBucket(5000ms);
  ASSERT_NE(raw, nullptr);
  auto read = raw->get("m.b");
  ASSERT_TRUE(read.isOk()) << read.status().toString();
  ASSERT_TRUE(read->entry.has_value());
  EXPECT_TRUE(read->entry->marker) << "stop() left " << read->entry->value;
  b->stop();  // idempotent
  EXPECT_EQ(log_a.gones("b"), 1) << log_a.text();
}

TEST_F(NatsMemberSourceTest, ARecordThatExpiresByMaxAgeIsReportedGone) {
  test::RuntimeScheduler scheduler;
  // Declared before the sources: it outlives every callback they deliver (one's departure reaches
  // the other while it stops).
  Recorder log(scheduler);
  auto a = open(*conn_, 300ms, scheduler);  // MaxAge 900 ms
  ASSERT_NE(a, nullptr);
  a->start(log.events());
  // A node that wrote once and stopped re-putting (crashed): no delete marker, no watch event.
  auto raw = rawBucket(300ms);
  ASSERT_NE(raw, nullptr);
  const auto written = std::chrono::steady_clock::now();
  auto put = raw->putValue("m.z", mesh::encodeMemberRecord(recordOf("z", 1)));
  ASSERT_TRUE(put.isOk()) << put.status().toString();
  ASSERT_TRUE(eventually([&] { return log.has("z", 1); }, 3000ms)) << log.text();
  ASSERT_TRUE(eventually([&] { return log.gone("z"); }, 5000ms)) << log.text();
  // Gone by expiry (after MaxAge), not by anything else; found by the poll within about a refresh.
  const auto after = *log.firstGone("z") - written;
  EXPECT_GE(after, 850ms) << "reported gone before the record could have expired";
  EXPECT_LE(after, 3000ms);
  EXPECT_EQ(log.gones("z"), 1) << log.text();
}

TEST_F(NatsMemberSourceTest, GarbageUnderAMemberKeyIsGoneAndLoggedOnce) {
  test::LogCapture capture("nats");
  test::RuntimeScheduler scheduler;
  // Declared before the sources: it outlives every callback they deliver (one's departure reaches
  // the other while it stops).
  Recorder log(scheduler);
  auto a = open(*conn_, 2000ms, scheduler);
  ASSERT_NE(a, nullptr);
  a->start(log.events());
  auto raw = rawBucket(2000ms);
  ASSERT_NE(raw, nullptr);
  ASSERT_TRUE(raw->putValue("m.x", mesh::encodeMemberRecord(recordOf("x", 1))).isOk());
  ASSERT_TRUE(eventually([&] { return log.has("x", 1); }, 3000ms)) << log.text();
  auto garbage = raw->putValue("m.x", "{not json");
  ASSERT_TRUE(garbage.isOk());
  ASSERT_TRUE(eventually([&] { return log.gone("x"); }, 3000ms)) << log.text();
  // A record naming another node than its key is refused too; a key of no node is ignored.
  ASSERT_TRUE(raw->putValue("m.y", mesh::encodeMemberRecord(recordOf("not-y", 1))).isOk());
  ASSERT_TRUE(raw->putValue("other", "x").isOk());
  a->restartWatch();  // a liveness check must not log the same revision again
  ASSERT_TRUE(raw->putValue("m.w", mesh::encodeMemberRecord(recordOf("w", 1))).isOk());
  ASSERT_TRUE(eventually([&] { return log.has("w", 1); }, 3000ms)) << log.text();
  int x_lines = 0;
  for (const auto& line : capture.lines()) {
    if (line.find("key m.x revision " + std::to_string(*garbage)) != std::string::npos) ++x_lines;
  }
  EXPECT_EQ(x_lines, 1) << capture.text();
  EXPECT_TRUE(capture.contains("not a JSON object")) << capture.text();
  EXPECT_TRUE(capture.contains("key m.y")) << capture.text();
  EXPECT_EQ(log.upserts("y", 1), 0) << log.text();
  EXPECT_EQ(log.gones("y"), 0) << "never delivered, so never gone: " << log.text();
}

TEST_F(NatsMemberSourceTest, ABucketDeletedLiveIsRecreatedAndTheRecordsComeBack) {
  test::RuntimeScheduler scheduler_a;
  test::RuntimeScheduler scheduler_b;
  // Declared before the sources: it outlives every callback they deliver (one's departure reaches
  // the other while it stops).
  Recorder log_a(scheduler_a);
  Recorder log_b(scheduler_b);
  auto conn_b = connect("members-b");
  ASSERT_NE(conn_b, nullptr);
  auto a = open(*conn_, 300ms, scheduler_a);
  auto b = open(*conn_b, 300ms, scheduler_b);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  a->start(log_a.events());
  b->start(log_b.events());
  a->publish(recordOf("a", 1));
  b->publish(recordOf("b", 1));
  ASSERT_TRUE(eventually([&] { return log_a.has("b", 1) && log_b.has("a", 1); }, 5000ms));
  const std::uint64_t old_gen = test::streamCreated(*conn_, "KV_HACOORD_mt_MEMBERS");
  ASSERT_NE(old_gen, 0u);

  auto admin = connect("members-admin");
  ASSERT_NE(admin, nullptr);
  ASSERT_TRUE(test::deleteKvBucket(*admin, "HACOORD_mt_MEMBERS"));
  // The sources re-create it (their next put, or the watcher's generation check) with the same
  // settings, and re-put both records into it.
  ASSERT_TRUE(eventually(
      [&] {
        const std::uint64_t gen = test::streamCreated(*admin, "KV_HACOORD_mt_MEMBERS");
        if (gen == 0 || gen == old_gen) return false;
        auto bound = NatsKvBucket::bind(*admin, "HACOORD_mt_MEMBERS");
        if (!bound.isOk()) return false;
        auto keys = (*bound)->keys();
        return keys.isOk() && std::find(keys->begin(), keys->end(), "m.a") != keys->end() &&
               std::find(keys->begin(), keys->end(), "m.b") != keys->end();
      },
      10000ms));
  jsStreamInfo* si = nullptr;
  ASSERT_EQ(js_GetStreamInfo(&si, admin->js(), "KV_HACOORD_mt_MEMBERS", nullptr, nullptr), NATS_OK);
  EXPECT_EQ(si->Config->MaxAge, 900'000'000LL) << "re-created with other settings";
  jsStreamInfo_Destroy(si);
  // Both sides follow the new generation: a change made there reaches the other side.
  b->publish(recordOf("b", 2));
  EXPECT_TRUE(eventually([&] { return log_a.has("b", 2); }, 8000ms)) << log_a.text();
  a->publish(recordOf("a", 2));
  EXPECT_TRUE(eventually([&] { return log_b.has("a", 2); }, 8000ms)) << log_b.text();
  EXPECT_EQ(log_a.offScheduler() + log_b.offScheduler(), 0);
}

TEST_F(NatsMemberSourceTest, KeysListsKeysWithAMessageAndNotExpiredOnes) {
  auto raw = rawBucket(300ms);  // MaxAge 900 ms
  ASSERT_NE(raw, nullptr);
  auto none = raw->keys();
  ASSERT_TRUE(none.isOk()) << none.status().toString();
  EXPECT_TRUE(none->empty());
  ASSERT_TRUE(raw->putValue("m.b", "2").isOk());
  ASSERT_TRUE(raw->putValue("m.a", "1").isOk());
  ASSERT_TRUE(raw->remove("m.a").isOk());
  auto keys = raw->keys();
  ASSERT_TRUE(keys.isOk()) << keys.status().toString();
  EXPECT_EQ(*keys, (std::vector<std::string>{"m.a", "m.b"})) << "sorted; a marker is a message";
  // Expiry removes both (no watch event would say so).
  EXPECT_TRUE(eventually(
      [&] {
        auto now = raw->keys();
        return now.isOk() && now->empty();
      },
      5000ms));
  // A deleted bucket is re-created by a listing (open() settings) and lists nothing.
  ASSERT_TRUE(raw->putValue("m.c", "3").isOk());
  ASSERT_TRUE(test::deleteKvBucket(*conn_, "HACOORD_mt_MEMBERS"));
  auto after = raw->keys();
  ASSERT_TRUE(after.isOk()) << after.status().toString();
  EXPECT_TRUE(after->empty());
  EXPECT_NE(test::streamCreated(*conn_, "KV_HACOORD_mt_MEMBERS"), 0u);
}

}  // namespace
}  // namespace hacoord
