// NatsLeaseStore: the lease key on a NatsKvBucket and a NatsKvWatcher; lanes of blocking calls.
#include "nats/nats_lease_store.h"

#include <string_view>

#include "core/logging.h"
#include "core/runtime.h"
#include "nats/lease_codec.h"
#include "nats/nats_connection.h"
#include "nats/nats_kv_bucket.h"
#include "nats/nats_kv_watcher.h"

namespace hacoord {
namespace {

constinit const ModuleLog kLog("nats");

std::string clusterOf(const std::string& bucket) {
  constexpr std::string_view kPrefix = "HACOORD_";
  if (bucket.compare(0, kPrefix.size(), kPrefix) == 0) return bucket.substr(kPrefix.size());
  return bucket;
}

// A stored message as a lease entry of `generation`. A Delete / Purge marker (by hand: hacoord
// never deletes) means "holder unknown" there; so does a value that is not a lease record, which
// still has a revision the elector must CAS against.
LeaseEntry leaseEntryOf(const std::string& bucket, const KvEntry& e, std::uint64_t generation,
                        std::string* error, std::atomic<std::uint64_t>* last_logged) {
  LeaseEntry entry = LeaseEntry::ofMarker(e.revision, generation);
  if (e.marker) return entry;
  auto decoded = decodeLease(e.value);
  if (decoded.isOk()) return LeaseEntry::ofRecord(e.revision, std::move(decoded).value(), generation);
  if (error != nullptr) *error = decoded.status().message();
  // Once per revision: the poll and the watch would otherwise repeat it every renew interval.
  // Without a tracker (readLeaseOnce) the caller reports `error` itself.
  if (last_logged != nullptr && last_logged->exchange(e.revision) != e.revision) {
    kLog->error(
        "bucket {} key {} revision {} is not a lease record ({}); the holder is "
        "unknown until it is replaced",
        bucket, NatsLeaseStore::kLeaderKey, e.revision, decoded.status().message());
  }
  return LeaseEntry::ofUndecodable(e.revision, generation);
}

}  // namespace

Result<std::unique_ptr<NatsLeaseStore>> NatsLeaseStore::open(NatsConnection& connection,
                                                             const std::string& bucket, int replicas,
                                                             Scheduler& scheduler) {
  KvBucketSettings settings;
  settings.name = bucket;
  settings.replicas = replicas;
  settings.history = 1;  // DESIGN §3: the record carries the epoch; no max age, it never expires
  settings.one_key = true;
  settings.label = "lease bucket";
  settings.settings_key = "election.bucketReplicas";
  auto kv = NatsKvBucket::open(connection, std::move(settings));
  if (!kv.isOk()) return kv.status();
  return std::unique_ptr<NatsLeaseStore>(new NatsLeaseStore(std::move(kv).value(), scheduler));
}

NatsLeaseStore::NatsLeaseStore(std::unique_ptr<NatsKvBucket> bucket, Scheduler& scheduler)
    : bucket_(std::move(bucket)), scheduler_(scheduler), alive_(std::make_shared<std::atomic<bool>>(true)) {
  reads_.thread = Runtime::startThread("hc-kvread", [this] { workerLoop(reads_); });
  writes_.thread = Runtime::startThread("hc-kvwrite", [this] { workerLoop(writes_); });
}

NatsLeaseStore::~NatsLeaseStore() { close(); }

const std::string& NatsLeaseStore::bucket() const { return bucket_->name(); }

void NatsLeaseStore::close() {
  alive_->store(false);
  std::unique_ptr<NatsKvWatcher> watcher;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
    reads_.jobs.clear();
    writes_.jobs.clear();
    watcher = std::move(watcher_);
  }
  work_cv_.notify_all();
  watcher.reset();  // stops and joins its thread
  if (reads_.thread.joinable()) reads_.thread.join();
  if (writes_.thread.joinable()) writes_.thread.join();
}

void NatsLeaseStore::enqueue(Lane& lane, std::function<void()> job) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;  // closed: the callback is dropped, as promised
    lane.jobs.push_back(std::move(job));
  }
  work_cv_.notify_all();
}

void NatsLeaseStore::workerLoop(Lane& lane) {
  std::unique_lock lock(mutex_);
  for (;;) {
    work_cv_.wait(lock, [&] { return stopping_ || !lane.jobs.empty(); });
    if (stopping_) return;
    auto job = std::move(lane.jobs.front());
    lane.jobs.pop_front();
    lock.unlock();
    job();
    lock.lock();
  }
}

void NatsLeaseStore::read(ReadDone done) {
  enqueue(reads_, [this, done = std::move(done)]() mutable {
    auto result = doRead();
    scheduler_.post([alive = alive_, done = std::move(done), result = std::move(result)]() mutable {
      if (alive->load()) done(std::move(result));
    });
  });
}

void NatsLeaseStore::write(const LeaseRecord& record, std::uint64_t expected_revision,
                           std::optional<std::uint64_t> expected_generation, WriteDone done) {
  enqueue(writes_, [this, value = encodeLease(record), expected_revision, expected_generation,
                    done = std::move(done)]() mutable {
    auto result = bucket_->put(kLeaderKey, value, expected_revision, expected_generation);
    scheduler_.post([alive = alive_, done = std::move(done), result = std::move(result)]() mutable {
      if (alive->load()) done(std::move(result));
    });
  });
}

Result<LeaseEntry> NatsLeaseStore::doRead() {
  auto read = bucket_->get(kLeaderKey);
  if (!read.isOk()) return read.status();
  if (!read->entry) return LeaseEntry{0, {}, LeaseEntryKind::kAbsent, read->generation};
  return leaseEntryOf(bucket_->name(), *read->entry, read->generation, nullptr, &last_undecodable_logged_);
}

void NatsLeaseStore::watch(WatchFn on_change) {
  std::lock_guard lock(mutex_);
  if (stopping_) return;
  on_change_ = std::make_shared<WatchFn>(std::move(on_change));
  if (!watcher_) {
    watcher_ = std::make_unique<NatsKvWatcher>(*bucket_, kLeaderKey, "hc-kvwatch",
                                               [this](const KvWatchEvent& event) { onWatchEvent(event); });
  }
}

void NatsLeaseStore::restartWatch() {
  std::lock_guard lock(mutex_);
  if (watcher_) watcher_->checkSoon();
}

void NatsLeaseStore::onWatchEvent(const KvWatchEvent& event) {
  switch (event.kind) {
    case KvWatchEvent::Kind::kStart:
      watch_delivered_ = false;
      return;
    case KvWatchEvent::Kind::kEntry:
      watch_delivered_ = true;
      delivered_generation_ = event.generation;
      deliver(
          leaseEntryOf(bucket_->name(), event.entry, event.generation, nullptr, &last_undecodable_logged_));
      return;
    case KvWatchEvent::Kind::kSynced:
      // Nothing came: the key is absent. After a new generation, say so (the first watcher leaves
      // that to the reads: nothing changed for it to tell).
      if (!watch_delivered_ && delivered_generation_ != 0 && delivered_generation_ != event.generation) {
        deliver(LeaseEntry{0, {}, LeaseEntryKind::kAbsent, event.generation});
      }
      delivered_generation_ = event.generation;
      watch_delivered_ = true;
      return;
  }
}

void NatsLeaseStore::deliver(LeaseEntry entry) {
  std::shared_ptr<WatchFn> fn;
  {
    std::lock_guard lock(mutex_);
    fn = on_change_;
  }
  if (!fn) return;
  scheduler_.post([alive = alive_, fn, entry = std::move(entry)] {
    if (alive->load()) (*fn)(entry);
  });
}

Result<LeaseSnapshot> readLeaseOnce(NatsConnection& connection, const std::string& bucket) {
  auto kv = NatsKvBucket::bind(connection, bucket);
  if (!kv.isOk()) {
    if (kv.status().code() != StatusCode::kNotFound) return kv.status();
    return notFound("bucket " + bucket + " does not exist: no node of cluster " + clusterOf(bucket) +
                    " has started yet");
  }
  auto read = (*kv)->get(NatsLeaseStore::kLeaderKey);
  if (!read.isOk()) return read.status();
  LeaseSnapshot snapshot;
  if (!read->entry) return snapshot;
  snapshot.entry = leaseEntryOf(bucket, *read->entry, read->generation, &snapshot.decode_error, nullptr);
  snapshot.created_unix_ns = read->entry->created_unix_ns;
  return snapshot;
}

}  // namespace hacoord
