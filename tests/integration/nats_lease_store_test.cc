// NatsLeaseStore against a real nats-server: CAS, reads, watch, bad data, bucket config, outages.
#include "nats/nats_lease_store.h"

#include <atomic>
#include <chrono>
#include <future>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nats/nats.h>

#include "support/runtime_scheduler.h"
#include "nats/lease_codec.h"
#include "nats/nats_connection.h"
#include "support/eventually.h"
#include "support/nats_server_fixture.h"

namespace hacoord {
namespace {

using namespace std::chrono_literals;
using test::NatsServer;
using test::streamCreated;

using test::testNatsConfig;

LeaseRecord sampleRecord(std::uint64_t epoch, const std::string& holder = "node-a") {
  LeaseRecord r;
  r.holder = holder;
  r.incarnation = "inc-" + holder;
  r.epoch = Epoch(epoch);
  r.lease = 2000ms;
  r.successor = "node-b";
  return r;
}

// Runs one asynchronous call and waits (bounded) for its callback, checking that the callback
// came on the scheduler's thread and not inline.
template <typename T, typename Start>
Result<T> awaitCallback(test::RuntimeScheduler& scheduler, Start start, milliseconds timeout = 5000ms) {
  auto promise = std::make_shared<std::promise<Result<T>>>();
  auto future = promise->get_future();
  auto on_scheduler = std::make_shared<std::atomic<bool>>(false);
  const auto caller = std::this_thread::get_id();
  auto inline_call = std::make_shared<std::atomic<bool>>(false);
  start([promise, on_scheduler, inline_call, caller, &scheduler](Result<T> r) {
    on_scheduler->store(scheduler.inSchedulerThread());
    inline_call->store(std::this_thread::get_id() == caller);
    promise->set_value(std::move(r));
  });
  if (future.wait_for(timeout) != std::future_status::ready) {
    return internalError("test: no callback within " + std::to_string(timeout.count()) + " ms");
  }
  EXPECT_TRUE(on_scheduler->load()) << "callback did not run on the scheduler";
  EXPECT_FALSE(inline_call->load()) << "callback ran inline";
  return future.get();
}

Result<std::uint64_t> writeSync(test::RuntimeScheduler& s, LeaseStore& store, const LeaseRecord& record,
                                std::uint64_t expected) {
  return awaitCallback<std::uint64_t>(
      s, [&](auto done) { store.write(record, expected, std::nullopt, std::move(done)); });
}

Result<std::uint64_t> writeSyncGen(test::RuntimeScheduler& s, LeaseStore& store, const LeaseRecord& record,
                                   std::uint64_t expected, std::uint64_t generation) {
  return awaitCallback<std::uint64_t>(
      s, [&](auto done) { store.write(record, expected, generation, std::move(done)); });
}

Result<LeaseEntry> readSync(test::RuntimeScheduler& s, LeaseStore& store) {
  return awaitCallback<LeaseEntry>(s, [&](auto done) { store.read(std::move(done)); });
}

// Collects what a watch delivers, for assertions from the test thread.
struct WatchLog {
  std::mutex mutex;
  std::vector<LeaseEntry> entries;
  std::atomic<bool> off_scheduler{false};

  LeaseStore::WatchFn fn(test::RuntimeScheduler& scheduler) {
    return [this, &scheduler](const LeaseEntry& e) {
      if (!scheduler.inSchedulerThread()) off_scheduler = true;
      std::lock_guard lock(mutex);
      entries.push_back(e);
    };
  }
  bool sawRevision(std::uint64_t revision) {
    std::lock_guard lock(mutex);
    for (const auto& e : entries) {
      if (e.revision == revision) return true;
    }
    return false;
  }
  std::vector<LeaseEntry> snapshot() {
    std::lock_guard lock(mutex);
    return entries;
  }
};

class NatsLeaseStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<NatsServer>();
    conn_ = connect("store-test");
    ASSERT_NE(conn_, nullptr);
  }

  std::unique_ptr<NatsConnection> connect(const std::string& name, ConnectionEvents events = {}) {
    auto c = NatsConnection::connect(testNatsConfig({server_->url()}), name, std::move(events));
    EXPECT_TRUE(c.isOk()) << c.status().toString();
    return c.isOk() ? std::move(c).value() : nullptr;
  }

  std::unique_ptr<NatsLeaseStore> open(NatsConnection& conn, const std::string& bucket) {
    auto s = NatsLeaseStore::open(conn, bucket, 1, scheduler_);
    EXPECT_TRUE(s.isOk()) << s.status().toString();
    return s.isOk() ? std::move(s).value() : nullptr;
  }

  // Member order is destruction order in reverse: stores, then connections, then the server.
  test::RuntimeScheduler scheduler_;
  std::unique_ptr<NatsServer> server_;
  std::unique_ptr<NatsConnection> conn_;
};

TEST_F(NatsLeaseStoreTest, CreateOnAbsentKeyGivesRevisionAndSecondCreateIsAborted) {
  auto store = open(*conn_, "HACOORD_create");
  ASSERT_NE(store, nullptr);
  auto first = writeSync(scheduler_, *store, sampleRecord(1), 0);
  ASSERT_TRUE(first.isOk()) << first.status().toString();
  EXPECT_EQ(*first, 1u);

  auto second = writeSync(scheduler_, *store, sampleRecord(1, "node-b"), 0);
  ASSERT_FALSE(second.isOk());
  EXPECT_EQ(second.status().code(), StatusCode::kAborted) << second.status().toString();
  EXPECT_NE(second.status().message().find("wrong last sequence"), std::string::npos);

  // The losing create changed nothing.
  auto read = readSync(scheduler_, *store);
  ASSERT_TRUE(read.isOk()) << read.status().toString();
  EXPECT_EQ(read->revision, 1u);
  EXPECT_EQ(read->record.holder, "node-a");
}

TEST_F(NatsLeaseStoreTest, UpdateWithCurrentRevisionSucceedsAndStaleRevisionIsAborted) {
  auto store = open(*conn_, "HACOORD_update");
  ASSERT_NE(store, nullptr);
  auto rev1 = writeSync(scheduler_, *store, sampleRecord(1), 0);
  ASSERT_TRUE(rev1.isOk()) << rev1.status().toString();
  auto rev2 = writeSync(scheduler_, *store, sampleRecord(1), *rev1);
  ASSERT_TRUE(rev2.isOk()) << rev2.status().toString();
  EXPECT_GT(*rev2, *rev1);

  auto stale = writeSync(scheduler_, *store, sampleRecord(2, "node-b"), *rev1);
  ASSERT_FALSE(stale.isOk());
  EXPECT_EQ(stale.status().code(), StatusCode::kAborted) << stale.status().toString();

  auto read = readSync(scheduler_, *store);
  ASSERT_TRUE(read.isOk());
  EXPECT_EQ(read->revision, *rev2);
  EXPECT_EQ(read->record, sampleRecord(1));
}

TEST_F(NatsLeaseStoreTest, ReadGivesAbsentThenEveryFieldWritten) {
  auto store = open(*conn_, "HACOORD_read");
  ASSERT_NE(store, nullptr);
  auto absent = readSync(scheduler_, *store);
  ASSERT_TRUE(absent.isOk()) << absent.status().toString();
  EXPECT_EQ(absent->revision, 0u);
  EXPECT_FALSE(absent->exists());

  LeaseRecord r;
  r.holder = "node-7";
  r.incarnation = "0123456789abcdef";
  r.epoch = Epoch(Epoch::kMax);  // the largest accepted epoch survives JSON
  r.lease = 12345ms;
  r.successor = "node-9";
  auto rev = writeSync(scheduler_, *store, r, 0);
  ASSERT_TRUE(rev.isOk()) << rev.status().toString();
  auto read = readSync(scheduler_, *store);
  ASSERT_TRUE(read.isOk()) << read.status().toString();
  EXPECT_EQ(read->revision, *rev);
  EXPECT_EQ(read->record, r);

  // A vacant record (planned handover) round-trips too.
  LeaseRecord vacant = r;
  vacant.holder.clear();
  vacant.successor.clear();
  auto rev2 = writeSync(scheduler_, *store, vacant, *rev);
  ASSERT_TRUE(rev2.isOk());
  read = readSync(scheduler_, *store);
  ASSERT_TRUE(read.isOk());
  EXPECT_TRUE(read->record.vacant());
  EXPECT_EQ(read->record, vacant);
}

TEST_F(NatsLeaseStoreTest, WatchDeliversEveryRevisionWrittenByAnotherInstance) {
  WatchLog log;  // declared before the store: it must outlive every delivery
  auto watcher = open(*conn_, "HACOORD_watch");
  ASSERT_NE(watcher, nullptr);
  watcher->watch(log.fn(scheduler_));

  auto other_conn = connect("store-test-writer");
  ASSERT_NE(other_conn, nullptr);
  auto writer = open(*other_conn, "HACOORD_watch");
  ASSERT_NE(writer, nullptr);

  std::vector<std::uint64_t> revisions;
  std::uint64_t last = 0;
  for (std::uint64_t epoch = 1; epoch <= 5; ++epoch) {
    auto rev = writeSync(scheduler_, *writer, sampleRecord(epoch), last);
    ASSERT_TRUE(rev.isOk()) << rev.status().toString();
    last = *rev;
    revisions.push_back(last);
    // Each one is seen before the next write (History 1 keeps only the latest value, so a watch
    // that lagged behind several writes could legitimately skip some).
    ASSERT_TRUE(eventually([&] { return log.sawRevision(last); }, 3000ms))
        << "revision " << last << " not delivered";
  }
  auto seen = log.snapshot();
  std::vector<std::uint64_t> seen_revisions;
  for (const auto& e : seen) seen_revisions.push_back(e.revision);
  EXPECT_EQ(seen_revisions, revisions);
  EXPECT_EQ(seen.back().record, sampleRecord(5));
  EXPECT_FALSE(log.off_scheduler.load());
}

TEST_F(NatsLeaseStoreTest, WatchStartsWithTheCurrentValue) {
  WatchLog log;
  auto store = open(*conn_, "HACOORD_watchinit");
  ASSERT_NE(store, nullptr);
  auto rev = writeSync(scheduler_, *store, sampleRecord(3), 0);
  ASSERT_TRUE(rev.isOk());
  store->watch(log.fn(scheduler_));
  ASSERT_TRUE(eventually([&] { return log.sawRevision(*rev); }, 3000ms));
  EXPECT_EQ(log.snapshot().front().record, sampleRecord(3));
}

TEST_F(NatsLeaseStoreTest, UndecodableValueIsDeliveredAsPlaceholderAndCanBeOverwritten) {
  WatchLog log;
  auto store = open(*conn_, "HACOORD_garbage");
  ASSERT_NE(store, nullptr);
  store->watch(log.fn(scheduler_));

  kvStore* kv = nullptr;
  ASSERT_EQ(js_KeyValue(&kv, conn_->js(), "HACOORD_garbage"), NATS_OK);
  std::uint64_t garbage_rev = 0;
  ASSERT_EQ(kvStore_PutString(&garbage_rev, kv, "leader", "{not json"), NATS_OK);
  kvStore_Destroy(kv);

  auto read = readSync(scheduler_, *store);
  ASSERT_TRUE(read.isOk()) << read.status().toString();
  EXPECT_EQ(read->revision, garbage_rev);
  EXPECT_EQ(read->kind, LeaseEntryKind::kUndecodable);
  EXPECT_EQ(read->record.epoch, Epoch(0));
  EXPECT_EQ(read->record.lease, 0ms);

  ASSERT_TRUE(eventually([&] { return log.sawRevision(garbage_rev); }, 3000ms));
  for (const auto& e : log.snapshot()) {
    if (e.revision == garbage_rev) {
      EXPECT_EQ(e.kind, LeaseEntryKind::kUndecodable);
    }
  }

  // `hacoord status` sees the same placeholder and the reason.
  auto snap = readLeaseOnce(*conn_, "HACOORD_garbage");
  ASSERT_TRUE(snap.isOk()) << snap.status().toString();
  EXPECT_EQ(snap->entry.kind, LeaseEntryKind::kUndecodable);
  EXPECT_FALSE(snap->decode_error.empty());

  // The elector recovers by a CAS on that revision.
  auto rev = writeSync(scheduler_, *store, sampleRecord(1), garbage_rev);
  ASSERT_TRUE(rev.isOk()) << rev.status().toString();
  read = readSync(scheduler_, *store);
  ASSERT_TRUE(read.isOk());
  EXPECT_EQ(read->record, sampleRecord(1));
}

// Someone deleted the key by hand: observers must see a newer revision (a vacant record at the
// marker), or a follower would keep retrying a compare-and-set on the deleted revision forever.
TEST_F(NatsLeaseStoreTest, DeletedKeyReadsAsVacantAtTheMarkerRevisionAndCasWorksOnIt) {
  WatchLog log;
  auto store = open(*conn_, "HACOORD_deleted");
  ASSERT_NE(store, nullptr);
  store->watch(log.fn(scheduler_));
  auto rev = writeSync(scheduler_, *store, sampleRecord(4), 0);
  ASSERT_TRUE(rev.isOk());
  ASSERT_TRUE(eventually([&] { return log.sawRevision(*rev); }, 3000ms));

  kvStore* kv = nullptr;
  ASSERT_EQ(js_KeyValue(&kv, conn_->js(), "HACOORD_deleted"), NATS_OK);
  ASSERT_EQ(kvStore_Delete(kv, "leader"), NATS_OK);
  kvStore_Destroy(kv);

  auto read = readSync(scheduler_, *store);
  ASSERT_TRUE(read.isOk());
  EXPECT_EQ(read->revision, *rev + 1) << "the marker's revision";
  EXPECT_TRUE(read->record.vacant());
  // The marker reaches the watcher as a vacant record at its revision.
  ASSERT_TRUE(eventually(
      [&] {
        auto all = log.snapshot();
        return !all.empty() && all.back().revision == *rev + 1 && all.back().record.vacant();
      },
      3000ms));

  auto on_marker = writeSync(scheduler_, *store, sampleRecord(5), read->revision);
  ASSERT_TRUE(on_marker.isOk()) << on_marker.status().toString();
  EXPECT_EQ(*on_marker, *rev + 2);
  auto stale = writeSync(scheduler_, *store, sampleRecord(5, "node-c"), read->revision);
  EXPECT_EQ(stale.status().code(), StatusCode::kAborted);
}

TEST_F(NatsLeaseStoreTest, OpenIsIdempotentForTheSameConfig) {
  auto a = open(*conn_, "HACOORD_twice");
  ASSERT_NE(a, nullptr);
  auto b = open(*conn_, "HACOORD_twice");
  ASSERT_NE(b, nullptr);
  auto rev = writeSync(scheduler_, *a, sampleRecord(1), 0);
  ASSERT_TRUE(rev.isOk());
  auto read = readSync(scheduler_, *b);
  ASSERT_TRUE(read.isOk());
  EXPECT_EQ(read->revision, *rev);
}

TEST_F(NatsLeaseStoreTest, ExistingBucketWithOtherConfigIsInvalidArgument) {
  kvConfig cfg;
  kvConfig_Init(&cfg);
  cfg.Bucket = "HACOORD_other";
  cfg.History = 5;
  kvStore* kv = nullptr;
  ASSERT_EQ(js_CreateKeyValue(&kv, conn_->js(), &cfg), NATS_OK);
  kvStore_Destroy(kv);

  auto store = NatsLeaseStore::open(*conn_, "HACOORD_other", 1, scheduler_);
  ASSERT_FALSE(store.isOk());
  EXPECT_EQ(store.status().code(), StatusCode::kInvalidArgument) << store.status().toString();
  EXPECT_NE(store.status().message().find("HACOORD_other"), std::string::npos);
  EXPECT_NE(store.status().message().find("already exists with another configuration (history 5"),
            std::string::npos)
      << store.status().message();
}

TEST_F(NatsLeaseStoreTest, ReplicasOnASingleServerIsInvalidArgument) {
  auto store = NatsLeaseStore::open(*conn_, "HACOORD_r3", 3, scheduler_);
  ASSERT_FALSE(store.isOk());
  EXPECT_EQ(store.status().code(), StatusCode::kInvalidArgument) << store.status().toString();
  EXPECT_NE(store.status().message().find("replicas > 1"), std::string::npos) << store.status().message();
}

TEST_F(NatsLeaseStoreTest, CloseDropsCallbacksNotYetDelivered) {
  std::atomic<int> delivered{0};
  WatchLog log;
  auto store = open(*conn_, "HACOORD_close");
  ASSERT_NE(store, nullptr);
  scheduler_.runSync([&] {
    store->watch(log.fn(scheduler_));
    for (int i = 0; i < 20; ++i) {
      store->read([&](Result<LeaseEntry>) { ++delivered; });
      store->write(sampleRecord(1), 0, std::nullopt, [&](Result<std::uint64_t>) { ++delivered; });
    }
    // Nothing ran yet (this task occupies the scheduler). close() joins the worker, so all that it
    // posted is queued before the marker below, and must be dropped.
    store->close();
  });
  scheduler_.runSync([] {});  // everything queued before this has run
  EXPECT_EQ(delivered.load(), 0);
  EXPECT_TRUE(log.snapshot().empty());
  // Calls after close are dropped too, and close is idempotent.
  store->read([&](Result<LeaseEntry>) { ++delivered; });
  store->close();
  scheduler_.runSync([] {});
  EXPECT_EQ(delivered.load(), 0);
}

TEST_F(NatsLeaseStoreTest, ReadLeaseOnceOnMissingBucketIsNotFound) {
  auto snap = readLeaseOnce(*conn_, "HACOORD_nobody");
  ASSERT_FALSE(snap.isOk());
  EXPECT_EQ(snap.status().code(), StatusCode::kNotFound);
  EXPECT_NE(snap.status().message().find("bucket HACOORD_nobody does not exist"), std::string::npos)
      << snap.status().message();
  EXPECT_NE(snap.status().message().find("no node of cluster nobody"), std::string::npos);
}

TEST_F(NatsLeaseStoreTest, ReadLeaseOnceGivesEntryAndServerTimestamp) {
  auto store = open(*conn_, "HACOORD_status");
  ASSERT_NE(store, nullptr);
  auto empty = readLeaseOnce(*conn_, "HACOORD_status");
  ASSERT_TRUE(empty.isOk()) << empty.status().toString();
  EXPECT_EQ(empty->entry.revision, 0u);
  EXPECT_EQ(empty->created_unix_ns, 0);

  auto rev = writeSync(scheduler_, *store, sampleRecord(9), 0);
  ASSERT_TRUE(rev.isOk());
  auto snap = readLeaseOnce(*conn_, "HACOORD_status");
  ASSERT_TRUE(snap.isOk()) << snap.status().toString();
  EXPECT_EQ(snap->entry.revision, *rev);
  EXPECT_EQ(snap->entry.record, sampleRecord(9));
  EXPECT_TRUE(snap->decode_error.empty());
  const auto now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  // Same machine, so the server's clock is ours: the write happened within the last minute.
  EXPECT_LT(std::llabs(now_ns - snap->created_unix_ns), 60'000'000'000LL);
}

// Deletes every consumer of the bucket's stream, as a server that lost its state would.
int deleteConsumers(NatsConnection& conn, const std::string& stream) {
  jsConsumerNamesList* list = nullptr;
  if (js_ConsumerNames(&list, conn.js(), stream.c_str(), nullptr, nullptr) != NATS_OK) return -1;
  int deleted = 0;
  for (int i = 0; i < list->Count; ++i) {
    if (js_DeleteConsumer(conn.js(), stream.c_str(), list->List[i], nullptr, nullptr) == NATS_OK) {
      ++deleted;
    }
  }
  jsConsumerNamesList_Destroy(list);
  return deleted;
}

TEST_F(NatsLeaseStoreTest, RestartWatchRecoversAWatcherWhoseConsumerIsGone) {
  WatchLog log;
  auto store = open(*conn_, "HACOORD_lost");
  ASSERT_NE(store, nullptr);
  store->watch(log.fn(scheduler_));
  auto rev = writeSync(scheduler_, *store, sampleRecord(1), 0);
  ASSERT_TRUE(rev.isOk());
  ASSERT_TRUE(eventually([&] { return log.sawRevision(*rev); }, 3000ms));

  // nats.c 3.4.1 watchers have no heartbeat: one whose consumer vanished would wait forever.
  ASSERT_EQ(deleteConsumers(*conn_, "KV_HACOORD_lost"), 1);
  auto next = writeSync(scheduler_, *store, sampleRecord(2), *rev);
  ASSERT_TRUE(next.isOk()) << next.status().toString();
  store->restartWatch();  // (without this line the test fails: checked)

  // restartWatch() is seen by the watch thread within one 0.5 s poll, checks 0.5 s later and
  // confirms within 0.2 s: ~1.2 s plus round trips, before the thread's own idle check (2 s
  // after the last delivery, then 0.2 s) could have noticed.
  EXPECT_TRUE(eventually([&] { return log.sawRevision(*next); }, 2000ms)) << "the watcher was not rebuilt";
}

TEST_F(NatsLeaseStoreTest, AWatcherThatFallsBehindAReadIsReplacedWithoutHelp) {
  WatchLog log;
  auto store = open(*conn_, "HACOORD_stale");
  ASSERT_NE(store, nullptr);
  store->watch(log.fn(scheduler_));
  auto rev = writeSync(scheduler_, *store, sampleRecord(1), 0);
  ASSERT_TRUE(rev.isOk());
  ASSERT_TRUE(eventually([&] { return log.sawRevision(*rev); }, 3000ms));

  // The consumer vanishes while our link stays up: no reconnect, no restartWatch().
  ASSERT_EQ(deleteConsumers(*conn_, "KV_HACOORD_stale"), 1);
  auto next = writeSync(scheduler_, *store, sampleRecord(2), *rev);
  ASSERT_TRUE(next.isOk()) << next.status().toString();
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(eventually([&] { return log.sawRevision(*next); }, 6000ms)) << "a dead watcher was kept";
  std::cout << "[ watch ] stale watcher replaced after "
            << std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - t0).count()
            << " ms\n";
  // The new watcher is live: the next write arrives at once.
  auto third = writeSync(scheduler_, *store, sampleRecord(3), *next);
  ASSERT_TRUE(third.isOk());
  EXPECT_TRUE(eventually([&] { return log.sawRevision(*third); }, 1000ms));
}

// Deletes a bucket as an operator would (`nats kv del`), from a connection of its own.
void deleteBucket(NatsConnection& conn, const std::string& bucket) {
  ASSERT_TRUE(test::deleteKvBucket(conn, bucket));
  ASSERT_EQ(streamCreated(conn, "KV_" + bucket), 0u);
}

TEST_F(NatsLeaseStoreTest, EntriesCarryTheStreamCreationTimeAsGeneration) {
  WatchLog log;
  auto store = open(*conn_, "HACOORD_gen");
  ASSERT_NE(store, nullptr);
  const std::uint64_t created = streamCreated(*conn_, "KV_HACOORD_gen");
  ASSERT_NE(created, 0u);
  auto absent = readSync(scheduler_, *store);
  ASSERT_TRUE(absent.isOk()) << absent.status().toString();
  EXPECT_EQ(absent->generation, created);
  store->watch(log.fn(scheduler_));
  auto rev = writeSyncGen(scheduler_, *store, sampleRecord(1), 0, created);
  ASSERT_TRUE(rev.isOk()) << rev.status().toString();
  auto read = readSync(scheduler_, *store);
  ASSERT_TRUE(read.isOk());
  EXPECT_EQ(read->generation, created);
  ASSERT_TRUE(eventually([&] { return log.sawRevision(*rev); }, 3000ms));
  for (const auto& e : log.snapshot()) EXPECT_EQ(e.generation, created);
  // A write naming another generation is refused before anything is published.
  auto wrong = writeSyncGen(scheduler_, *store, sampleRecord(2), *rev, created + 1);
  ASSERT_FALSE(wrong.isOk());
  EXPECT_EQ(wrong.status().code(), StatusCode::kAborted);
  EXPECT_NE(wrong.status().message().find("bucket is another generation"), std::string::npos)
      << wrong.status().message();
  read = readSync(scheduler_, *store);
  ASSERT_TRUE(read.isOk());
  EXPECT_EQ(read->revision, *rev);
}

// (a) The bucket is deleted under an open store: the store re-creates it with the same settings,
// an empty bucket reads as absent in the new generation, and only a write naming it may win.
TEST_F(NatsLeaseStoreTest, DeletedBucketIsRecreatedAndReadsAbsentInANewGeneration) {
  auto store = open(*conn_, "HACOORD_gone");
  ASSERT_NE(store, nullptr);
  const std::uint64_t old_gen = streamCreated(*conn_, "KV_HACOORD_gone");
  auto rev = writeSyncGen(scheduler_, *store, sampleRecord(7), 0, old_gen);
  ASSERT_TRUE(rev.isOk()) << rev.status().toString();
  auto rev2 = writeSync(scheduler_, *store, sampleRecord(7), *rev);
  ASSERT_TRUE(rev2.isOk()) << rev2.status().toString();
  auto before = readSync(scheduler_, *store);
  ASSERT_TRUE(before.isOk());
  ASSERT_EQ(before->generation, old_gen);

  auto admin = connect("store-test-admin");
  ASSERT_NE(admin, nullptr);
  deleteBucket(*admin, "HACOORD_gone");

  auto read = readSync(scheduler_, *store);
  ASSERT_TRUE(read.isOk()) << read.status().toString();
  EXPECT_EQ(read->kind, LeaseEntryKind::kAbsent);
  EXPECT_EQ(read->revision, 0u);
  const std::uint64_t new_gen = streamCreated(*admin, "KV_HACOORD_gone");
  ASSERT_NE(new_gen, 0u) << "the store did not re-create the bucket";
  EXPECT_NE(new_gen, old_gen);
  EXPECT_EQ(read->generation, new_gen);

  // Same settings as open() used.
  jsStreamInfo* si = nullptr;
  ASSERT_EQ(js_GetStreamInfo(&si, admin->js(), "KV_HACOORD_gone", nullptr, nullptr), NATS_OK);
  EXPECT_EQ(si->Config->MaxMsgsPerSubject, 1);
  EXPECT_EQ(si->Config->MaxAge, 0);
  EXPECT_EQ(si->Config->Storage, js_FileStorage);
  EXPECT_EQ(si->Config->Replicas, 1);
  jsStreamInfo_Destroy(si);

  // A campaign that still names the old generation loses, even on the right revision (0).
  auto stale = writeSyncGen(scheduler_, *store, sampleRecord(8, "node-b"), 0, old_gen);
  ASSERT_FALSE(stale.isOk());
  EXPECT_EQ(stale.status().code(), StatusCode::kAborted) << stale.status().toString();
  EXPECT_NE(stale.status().message().find("bucket is another generation"), std::string::npos);
  auto still = readSync(scheduler_, *store);
  ASSERT_TRUE(still.isOk());
  EXPECT_EQ(still->revision, 0u) << "the refused write was published";

  auto fresh = writeSyncGen(scheduler_, *store, sampleRecord(8, "node-b"), 0, new_gen);
  ASSERT_TRUE(fresh.isOk()) << fresh.status().toString();
  EXPECT_EQ(*fresh, 1u);
  auto after = readSync(scheduler_, *store);
  ASSERT_TRUE(after.isOk());
  EXPECT_EQ(after->revision, 1u);
  EXPECT_EQ(after->generation, new_gen);
  EXPECT_EQ(after->record, sampleRecord(8, "node-b"));
}

// A renewal (no generation named) on a deleted bucket is lost, and the bucket comes back.
TEST_F(NatsLeaseStoreTest, RenewalOnADeletedBucketIsAbortedAndTheBucketComesBack) {
  auto store = open(*conn_, "HACOORD_renewgone");
  ASSERT_NE(store, nullptr);
  auto rev = writeSync(scheduler_, *store, sampleRecord(3), 0);
  ASSERT_TRUE(rev.isOk());
  auto admin = connect("store-test-admin");
  ASSERT_NE(admin, nullptr);
  deleteBucket(*admin, "HACOORD_renewgone");
  auto renew = writeSync(scheduler_, *store, sampleRecord(3), *rev);
  ASSERT_FALSE(renew.isOk());
  EXPECT_EQ(renew.status().code(), StatusCode::kAborted) << renew.status().toString();
  EXPECT_NE(streamCreated(*admin, "KV_HACOORD_renewgone"), 0u) << "not re-created";
}

// (b) A watcher bound to a deleted stream goes silent: it must notice the new stream, deliver the
// absent key in the new generation, then the writes made there.
TEST_F(NatsLeaseStoreTest, WatcherFollowsADeletedAndRecreatedBucket) {
  WatchLog log;
  auto store = open(*conn_, "HACOORD_watchgone");
  ASSERT_NE(store, nullptr);
  store->watch(log.fn(scheduler_));
  const std::uint64_t old_gen = streamCreated(*conn_, "KV_HACOORD_watchgone");
  auto rev = writeSync(scheduler_, *store, sampleRecord(1), 0);
  ASSERT_TRUE(rev.isOk());
  ASSERT_TRUE(eventually([&] { return log.sawRevision(*rev); }, 3000ms));

  // Deleted and re-created by someone else (another node); this store never reads or writes.
  auto admin = connect("store-test-admin");
  ASSERT_NE(admin, nullptr);
  deleteBucket(*admin, "HACOORD_watchgone");
  auto other = open(*admin, "HACOORD_watchgone");
  ASSERT_NE(other, nullptr);
  const std::uint64_t new_gen = streamCreated(*admin, "KV_HACOORD_watchgone");
  ASSERT_NE(new_gen, old_gen);

  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(eventually(
      [&] {
        for (const auto& e : log.snapshot()) {
          if (e.generation == new_gen && e.kind == LeaseEntryKind::kAbsent) return true;
        }
        return false;
      },
      6000ms))
      << "the watcher did not report the new, empty bucket";
  std::cout << "[ watch ] new generation delivered after "
            << std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - t0).count()
            << " ms\n";
  auto next = writeSyncGen(scheduler_, *other, sampleRecord(2, "node-b"), 0, new_gen);
  ASSERT_TRUE(next.isOk()) << next.status().toString();
  ASSERT_TRUE(eventually(
      [&] {
        auto all = log.snapshot();
        return all.back().generation == new_gen && all.back().revision == *next &&
               all.back().record == sampleRecord(2, "node-b");
      },
      3000ms))
      << "the new watcher does not deliver";
}

// (c) After a stream purge the key has no message but the stream's last sequence stays: a create
// lands above it, and the store reports the revision of the ack.
TEST_F(NatsLeaseStoreTest, CreateAfterAPurgeReportsTheAckedRevision) {
  auto store = open(*conn_, "HACOORD_purged");
  ASSERT_NE(store, nullptr);
  std::uint64_t last = 0;
  for (std::uint64_t epoch = 1; epoch <= 3; ++epoch) {
    auto rev = writeSync(scheduler_, *store, sampleRecord(epoch), last);
    ASSERT_TRUE(rev.isOk()) << rev.status().toString();
    last = *rev;
  }
  ASSERT_EQ(js_PurgeStream(conn_->js(), "KV_HACOORD_purged", nullptr, nullptr), NATS_OK);
  auto read = readSync(scheduler_, *store);
  ASSERT_TRUE(read.isOk()) << read.status().toString();
  ASSERT_EQ(read->kind, LeaseEntryKind::kAbsent);
  ASSERT_EQ(read->revision, 0u);

  auto created = writeSyncGen(scheduler_, *store, sampleRecord(4), 0, read->generation);
  ASSERT_TRUE(created.isOk()) << created.status().toString();
  EXPECT_EQ(*created, last + 1) << "a create lands at the stream's last sequence + 1";
  read = readSync(scheduler_, *store);
  ASSERT_TRUE(read.isOk());
  EXPECT_EQ(read->revision, *created);
  auto renewed = writeSync(scheduler_, *store, sampleRecord(4), *created);
  ASSERT_TRUE(renewed.isOk()) << renewed.status().toString();
  EXPECT_EQ(*renewed, *created + 1);

  // The same after the delete markers were purged (kvStore_PurgeDeletes): no marker to CAS on.
  kvStore* kv = nullptr;
  ASSERT_EQ(js_KeyValue(&kv, conn_->js(), "HACOORD_purged"), NATS_OK);
  ASSERT_EQ(kvStore_Delete(kv, "leader"), NATS_OK);
  kvPurgeOptions po;
  kvPurgeOptions_Init(&po);
  po.DeleteMarkersOlderThan = -1;
  ASSERT_EQ(kvStore_PurgeDeletes(kv, &po), NATS_OK);
  kvStore_Destroy(kv);
  read = readSync(scheduler_, *store);
  ASSERT_TRUE(read.isOk());
  ASSERT_EQ(read->kind, LeaseEntryKind::kAbsent) << leaseEntryKindName(read->kind);
  auto again = writeSyncGen(scheduler_, *store, sampleRecord(5), 0, read->generation);
  ASSERT_TRUE(again.isOk()) << again.status().toString();
  EXPECT_GT(*again, *renewed + 1);
  auto cas = writeSync(scheduler_, *store, sampleRecord(5), *again);
  ASSERT_TRUE(cas.isOk()) << cas.status().toString();
  EXPECT_EQ(*cas, *again + 1);
}

// nats-server 2.9 can accept two compare-and-sets on one revision right after a stream-leader
// change (issue 4320). Forced here deterministically: a foreign write to another key of the same
// stream moves the stream on, so the next compare-and-set on the key's revision R is accepted by
// the server but lands at R + 2. The store must call that a lost race (Aborted), never a success:
// the elector would otherwise lead on a write that may have been one of two accepted.
TEST_F(NatsLeaseStoreTest, ACompareAndSetThatLandsPastRPlusOneIsALostRace) {
  auto store = open(*conn_, "HACOORD_double");
  ASSERT_NE(store, nullptr);
  auto first = writeSync(scheduler_, *store, sampleRecord(1), 0);
  ASSERT_TRUE(first.isOk()) << first.status().toString();
  kvStore* kv = nullptr;
  ASSERT_EQ(js_KeyValue(&kv, conn_->js(), "HACOORD_double"), NATS_OK);
  std::uint64_t foreign_rev = 0;
  ASSERT_EQ(kvStore_PutString(&foreign_rev, kv, "intruder", "x"), NATS_OK);
  kvStore_Destroy(kv);
  ASSERT_EQ(foreign_rev, *first + 1);
  auto second = writeSync(scheduler_, *store, sampleRecord(1), *first);
  ASSERT_FALSE(second.isOk()) << "accepted a compare-and-set that landed at " << *second;
  EXPECT_EQ(second.status().code(), StatusCode::kAborted) << second.status().toString();
  EXPECT_NE(second.status().message().find("landed at revision " + std::to_string(*first + 2)),
            std::string::npos)
      << second.status().toString();
}

// The server goes away (SIGTERM or SIGKILL) and comes back on the same port and store.
class NatsLeaseStoreOutageTest : public NatsLeaseStoreTest, public ::testing::WithParamInterface<bool> {};

TEST_P(NatsLeaseStoreOutageTest, WritesFailFastThenRecoverAndTheWatchResumes) {
  const bool hard_kill = GetParam();
  // The owner's wiring: the reconnected callback asks the store for a new watcher.
  WatchLog log;
  std::atomic<NatsLeaseStore*> target{nullptr};
  std::atomic<int> reconnects{0};
  ConnectionEvents events;
  events.onReconnected = [&] {
    ++reconnects;
    if (auto* s = target.load()) s->restartWatch();
  };
  auto conn = connect("outage-watcher", std::move(events));
  ASSERT_NE(conn, nullptr);
  auto store = open(*conn, "HACOORD_outage");
  ASSERT_NE(store, nullptr);
  target = store.get();
  store->watch(log.fn(scheduler_));
  auto rev = writeSync(scheduler_, *store, sampleRecord(1), 0);
  ASSERT_TRUE(rev.isOk());
  ASSERT_TRUE(eventually([&] { return log.sawRevision(*rev); }, 3000ms));

  if (hard_kill) {
    server_->kill9();
  } else {
    server_->stop();
  }
  ASSERT_TRUE(eventually([&] { return !conn->connected(); }, 5000ms));

  const auto t0 = std::chrono::steady_clock::now();
  auto failed = writeSync(scheduler_, *store, sampleRecord(1), *rev);
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(failed.isOk());
  EXPECT_TRUE(failed.status().code() == StatusCode::kUnavailable ||
              failed.status().code() == StatusCode::kDeadlineExceeded)
      << failed.status().toString();
  EXPECT_LT(took, 1500ms) << "a write during an outage must not hang";
  auto failed_read = readSync(scheduler_, *store);
  EXPECT_EQ(failed_read.status().code(), StatusCode::kUnavailable);

  server_->start();
  // Writes work again once the client is back (the record survived in the file store).
  std::uint64_t current = *rev;
  ASSERT_TRUE(eventually(
      [&] {
        auto r = writeSync(scheduler_, *store, sampleRecord(2), current);
        if (r.isOk()) {
          current = *r;
          return true;
        }
        if (r.status().code() == StatusCode::kAborted) {
          auto fresh = readSync(scheduler_, *store);
          if (fresh.isOk()) current = fresh->revision;
        }
        return false;
      },
      15000ms, 100ms));
  // nats.c marks the connection up before its callback thread reports the reconnect.
  EXPECT_TRUE(eventually([&] { return reconnects.load() >= 1; }, 2000ms));
  ASSERT_TRUE(eventually([&] { return log.sawRevision(current); }, 5000ms))
      << "the watch did not resume after the restart";

  // And it keeps delivering writes made by someone else.
  auto other_conn = connect("outage-writer");
  ASSERT_NE(other_conn, nullptr);
  auto writer = open(*other_conn, "HACOORD_outage");
  ASSERT_NE(writer, nullptr);
  auto next = writeSync(scheduler_, *writer, sampleRecord(3, "node-b"), current);
  ASSERT_TRUE(next.isOk()) << next.status().toString();
  EXPECT_TRUE(eventually([&] { return log.sawRevision(*next); }, 5000ms));
  writer.reset();
  target = nullptr;
  store.reset();
}

INSTANTIATE_TEST_SUITE_P(StopKinds, NatsLeaseStoreOutageTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? "Sigkill" : "Sigterm";
                         });

}  // namespace
}  // namespace hacoord
