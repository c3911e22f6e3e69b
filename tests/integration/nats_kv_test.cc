// NatsKvBucket and NatsKvWatcher against a real nats-server: a bucket of several keys (as the
// members bucket of the mesh will be), settings checks, bind without creating, compare-and-set
// between keys, a watcher of every key through markers, a deleted bucket and a lost consumer.
#include "nats/nats_kv_bucket.h"

#include <algorithm>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nats/nats.h>

#include "nats/nats_connection.h"
#include "nats/nats_kv_watcher.h"
#include "support/eventually.h"
#include "support/nats_server_fixture.h"

namespace hacoord {
namespace {

using namespace std::chrono_literals;
using test::NatsServer;

KvBucketSettings settingsOf(const std::string& name, int history = 1) {
  KvBucketSettings s;
  s.name = name;
  s.history = history;
  s.label = "test bucket";
  s.settings_key = "test.bucket";
  return s;
}

// What a watcher reported, for assertions from the test thread.
struct EventLog {
  std::mutex mutex;
  std::vector<KvWatchEvent> events;

  NatsKvWatcher::EventFn fn() {
    return [this](const KvWatchEvent& e) {
      std::lock_guard lock(mutex);
      events.push_back(e);
    };
  }
  std::vector<KvWatchEvent> snapshot() {
    std::lock_guard lock(mutex);
    return events;
  }
  int starts() {
    int n = 0;
    for (const auto& e : snapshot()) n += e.kind == KvWatchEvent::Kind::kStart ? 1 : 0;
    return n;
  }
  // The entries between the last kStart and the kSynced after it, once that snapshot is complete.
  std::optional<std::vector<KvEntry>> lastSnapshot() {
    auto all = snapshot();
    std::optional<std::vector<KvEntry>> result;
    std::vector<KvEntry> current;
    bool open = false;
    for (const auto& e : all) {
      if (e.kind == KvWatchEvent::Kind::kStart) {
        current.clear();
        open = true;
        result.reset();
      } else if (e.kind == KvWatchEvent::Kind::kEntry && open) {
        current.push_back(e.entry);
      } else if (e.kind == KvWatchEvent::Kind::kSynced && open) {
        result = current;
        open = false;
      }
    }
    return result;
  }
  bool sawLive(const std::string& key, std::uint64_t revision) {
    bool synced = false;
    for (const auto& e : snapshot()) {
      if (e.kind == KvWatchEvent::Kind::kSynced) synced = true;
      if (synced && e.kind == KvWatchEvent::Kind::kEntry && e.entry.key == key &&
          e.entry.revision == revision) {
        return true;
      }
    }
    return false;
  }
};

class NatsKvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<NatsServer>();
    conn_ = connect("kv-test");
    ASSERT_NE(conn_, nullptr);
  }
  std::unique_ptr<NatsConnection> connect(const std::string& name) {
    auto c = NatsConnection::connect(test::testNatsConfig({server_->url()}), name, {});
    EXPECT_TRUE(c.isOk()) << c.status().toString();
    return c.isOk() ? std::move(c).value() : nullptr;
  }
  std::unique_ptr<NatsKvBucket> open(const KvBucketSettings& settings) {
    auto b = NatsKvBucket::open(*conn_, settings);
    EXPECT_TRUE(b.isOk()) << b.status().toString();
    return b.isOk() ? std::move(b).value() : nullptr;
  }

  std::unique_ptr<NatsServer> server_;
  std::unique_ptr<NatsConnection> conn_;
};

TEST_F(NatsKvTest, CompareAndSetPerKeyInABucketOfSeveralKeys) {
  auto bucket = open(settingsOf("KV_TEST_members"));
  ASSERT_NE(bucket, nullptr);
  auto a1 = bucket->put("members.a", "a-1", 0, std::nullopt);
  ASSERT_TRUE(a1.isOk()) << a1.status().toString();
  auto b1 = bucket->put("members.b", "b-1", 0, std::nullopt);
  ASSERT_TRUE(b1.isOk()) << b1.status().toString();
  // a's revision is still a1 although the stream moved on: a CAS on it lands past a1 + 1, which is
  // normal in a bucket of several keys (one_key is off).
  auto a2 = bucket->put("members.a", "a-2", *a1, bucket->cachedGeneration());
  ASSERT_TRUE(a2.isOk()) << a2.status().toString();
  EXPECT_EQ(*a2, *b1 + 1);
  // A stale base, and a create on an existing key, are lost races.
  auto stale = bucket->put("members.a", "a-x", *a1, std::nullopt);
  EXPECT_EQ(stale.status().code(), StatusCode::kAborted) << stale.status().toString();
  auto again = bucket->put("members.b", "b-x", 0, std::nullopt);
  EXPECT_EQ(again.status().code(), StatusCode::kAborted) << again.status().toString();

  auto read = bucket->get("members.a");
  ASSERT_TRUE(read.isOk()) << read.status().toString();
  ASSERT_TRUE(read->entry.has_value());
  EXPECT_EQ(read->entry->revision, *a2);
  EXPECT_EQ(read->entry->value, "a-2");
  EXPECT_FALSE(read->entry->marker);
  EXPECT_GT(read->entry->created_unix_ns, 0);
  EXPECT_EQ(read->generation, test::streamCreated(*conn_, "KV_KV_TEST_members"));
  auto none = bucket->get("members.zz");
  ASSERT_TRUE(none.isOk()) << none.status().toString();
  EXPECT_FALSE(none->entry.has_value());
}

TEST_F(NatsKvTest, DeletedKeyReadsAsAMarkerWithItsTimeAndACreateLandsOnIt) {
  auto bucket = open(settingsOf("KV_TEST_marker"));
  ASSERT_NE(bucket, nullptr);
  ASSERT_TRUE(bucket->put("k", "v", 0, std::nullopt).isOk());
  ASSERT_EQ(kvStore_Delete(bucket->raw(), "k"), NATS_OK);
  auto read = bucket->get("k");
  ASSERT_TRUE(read.isOk()) << read.status().toString();
  ASSERT_TRUE(read->entry.has_value());
  EXPECT_TRUE(read->entry->marker);
  EXPECT_EQ(read->entry->revision, 2u);
  EXPECT_GT(read->entry->created_unix_ns, 0) << "a marker keeps the time the server stored it";
  auto created = bucket->put("k", "v2", 0, std::nullopt);
  ASSERT_TRUE(created.isOk()) << created.status().toString();
  EXPECT_EQ(*created, 3u);
}

TEST_F(NatsKvTest, OpenRefusesABucketWithOtherSettingsAndNamesTheConfigKey) {
  ASSERT_NE(open(settingsOf("KV_TEST_hist", 1)), nullptr);
  auto other = NatsKvBucket::open(*conn_, settingsOf("KV_TEST_hist", 5));
  ASSERT_FALSE(other.isOk());
  EXPECT_EQ(other.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(other.status().message().find("history 1"), std::string::npos) << other.status().toString();
  EXPECT_NE(other.status().message().find("test.bucket"), std::string::npos) << other.status().toString();
  auto zero = NatsKvBucket::open(*conn_, settingsOf("KV_TEST_hist0", 0));
  EXPECT_EQ(zero.status().code(), StatusCode::kInvalidArgument) << zero.status().toString();
}

TEST_F(NatsKvTest, BindNeverCreatesNorRecreatesABucket) {
  auto missing = NatsKvBucket::bind(*conn_, "KV_TEST_none");
  ASSERT_FALSE(missing.isOk());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(test::streamCreated(*conn_, "KV_KV_TEST_none"), 0u);

  auto owner = open(settingsOf("KV_TEST_bind"));
  ASSERT_NE(owner, nullptr);
  ASSERT_TRUE(owner->put("k", "v", 0, std::nullopt).isOk());
  auto bound = NatsKvBucket::bind(*conn_, "KV_TEST_bind");
  ASSERT_TRUE(bound.isOk()) << bound.status().toString();
  auto read = (*bound)->get("k");
  ASSERT_TRUE(read.isOk()) << read.status().toString();
  ASSERT_TRUE(read->entry.has_value());
  EXPECT_EQ(read->entry->value, "v");
  EXPECT_NE(read->generation, 0u);

  ASSERT_TRUE(test::deleteKvBucket(*conn_, "KV_TEST_bind"));
  auto after = (*bound)->get("k");
  EXPECT_FALSE(after.isOk()) << "a bound bucket read something after its deletion";
  EXPECT_EQ(test::streamCreated(*conn_, "KV_KV_TEST_bind"), 0u) << "bind() re-created the bucket";
}

TEST_F(NatsKvTest, EveryKeyWatcherGivesTheWholeStateThenLiveUpdatesAndMarkers) {
  auto bucket = open(settingsOf("KV_TEST_all"));
  ASSERT_NE(bucket, nullptr);
  ASSERT_TRUE(bucket->put("a", "1", 0, std::nullopt).isOk());
  ASSERT_TRUE(bucket->put("b", "2", 0, std::nullopt).isOk());
  ASSERT_EQ(kvStore_Delete(bucket->raw(), "a"), NATS_OK);  // revision 3: a marker

  EventLog log;
  NatsKvWatcher watcher(*bucket, NatsKvWatcher::kAllKeys, "hc-test-watch", log.fn());
  ASSERT_TRUE(eventually([&] { return log.lastSnapshot().has_value(); }, 5000ms));
  auto snapshot = *log.lastSnapshot();
  ASSERT_EQ(snapshot.size(), 2u);
  std::sort(snapshot.begin(), snapshot.end(),
            [](const KvEntry& x, const KvEntry& y) { return x.key < y.key; });
  EXPECT_EQ(snapshot[0].key, "a");
  EXPECT_TRUE(snapshot[0].marker);
  EXPECT_EQ(snapshot[0].revision, 3u);
  EXPECT_EQ(snapshot[1].key, "b");
  EXPECT_EQ(snapshot[1].value, "2");
  EXPECT_EQ(log.snapshot().front().generation, bucket->cachedGeneration());

  auto c = bucket->put("c", "3", 0, std::nullopt);
  ASSERT_TRUE(c.isOk());
  EXPECT_TRUE(eventually([&] { return log.sawLive("c", *c); }, 2000ms));
  ASSERT_EQ(kvStore_Purge(bucket->raw(), "b", nullptr), NATS_OK);  // revision 5: a purge marker
  EXPECT_TRUE(eventually([&] { return log.sawLive("b", 5); }, 2000ms));
  for (const auto& e : log.snapshot()) {
    if (e.kind == KvWatchEvent::Kind::kEntry && e.entry.key == "b" && e.entry.revision == 5) {
      EXPECT_TRUE(e.entry.marker);
    }
  }
  EXPECT_EQ(log.starts(), 1) << "a healthy watcher was replaced";
}

TEST_F(NatsKvTest, WatcherFollowsADeletedBucketIntoItsNewGeneration) {
  auto bucket = open(settingsOf("KV_TEST_gone"));
  ASSERT_NE(bucket, nullptr);
  ASSERT_TRUE(bucket->put("k", "old", 0, std::nullopt).isOk());
  const std::uint64_t old_gen = bucket->cachedGeneration();
  EventLog log;
  NatsKvWatcher watcher(*bucket, "k", "hc-test-watch", log.fn());
  ASSERT_TRUE(eventually([&] { return log.lastSnapshot().has_value(); }, 5000ms));
  ASSERT_EQ(log.lastSnapshot()->size(), 1u);

  auto admin = connect("kv-test-admin");
  ASSERT_NE(admin, nullptr);
  ASSERT_TRUE(test::deleteKvBucket(*admin, "KV_TEST_gone"));
  // The watcher notices (generation check every 2 s), re-creates the bucket (open() settings) and
  // starts over in the new generation: an empty snapshot.
  ASSERT_TRUE(eventually(
      [&] {
        auto events = log.snapshot();
        return log.starts() >= 2 && events.back().generation != old_gen && log.lastSnapshot().has_value();
      },
      8000ms));
  EXPECT_TRUE(log.lastSnapshot()->empty());
  const std::uint64_t new_gen = test::streamCreated(*admin, "KV_KV_TEST_gone");
  ASSERT_NE(new_gen, 0u);
  EXPECT_EQ(log.snapshot().back().generation, new_gen);
  auto k = bucket->put("k", "new", 0, new_gen);
  ASSERT_TRUE(k.isOk()) << k.status().toString();
  EXPECT_EQ(*k, 1u);
  EXPECT_TRUE(
      eventually([&] { return log.sawLive("k", 1) && log.snapshot().back().generation == new_gen; }, 2000ms));
}

TEST_F(NatsKvTest, AWatcherWhoseConsumerIsDeletedIsReplacedAndCatchesUp) {
  auto bucket = open(settingsOf("KV_TEST_lost"));
  ASSERT_NE(bucket, nullptr);
  EventLog log;
  NatsKvWatcher watcher(*bucket, NatsKvWatcher::kAllKeys, "hc-test-watch", log.fn());
  ASSERT_TRUE(eventually([&] { return log.lastSnapshot().has_value(); }, 5000ms));
  // Delete every consumer of the stream behind the watcher's back: it blocks without an error.
  jsConsumerNamesList* names = nullptr;
  ASSERT_EQ(js_ConsumerNames(&names, conn_->js(), "KV_KV_TEST_lost", nullptr, nullptr), NATS_OK);
  ASSERT_GE(names->Count, 1);
  for (int i = 0; i < names->Count; ++i) {
    ASSERT_EQ(js_DeleteConsumer(conn_->js(), "KV_KV_TEST_lost", names->List[i], nullptr, nullptr), NATS_OK);
  }
  jsConsumerNamesList_Destroy(names);
  auto x = bucket->put("x", "1", 0, std::nullopt);
  ASSERT_TRUE(x.isOk());
  // Liveness: within 2 s idle + 0.2 s confirmation the watcher is replaced; its snapshot has x.
  ASSERT_TRUE(eventually(
      [&] {
        auto snap = log.lastSnapshot();
        return log.starts() >= 2 && snap && snap->size() == 1 && snap->front().key == "x";
      },
      8000ms));
  watcher.checkSoon();  // cheap; a healthy watcher stays
  auto y = bucket->put("y", "2", 0, std::nullopt);
  ASSERT_TRUE(y.isOk());
  EXPECT_TRUE(eventually([&] { return log.sawLive("y", *y); }, 2000ms));
}

}  // namespace
}  // namespace hacoord
