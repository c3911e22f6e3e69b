// NatsLeaseStore: the LeaseStore on a NATS JetStream KV bucket (CAS by publish with an expected sequence).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "hacoord/lease.h"
#include "hacoord/scheduler.h"
#include "hacoord/status.h"

namespace hacoord {

class NatsConnection;
class NatsKvBucket;
class NatsKvWatcher;
struct KvWatchEvent;

// Bucket HACOORD_<clusterId>, key `leader` (DESIGN §3), on a NatsKvBucket (generations, re-creation
// of a deleted bucket, compare-and-set) and a NatsKvWatcher. Blocking nats.c calls run on threads of
// the store's own, named as src/core/runtime.h lists them: hc-kvread (reads), hc-kvwrite (writes;
// a poll never waits behind a renewal), hc-kvwatch (the watcher); every result is posted to the
// Scheduler given to open(). The NatsConnection must outlive the store. Every entry carries the
// generation (the stream's creation time, unix ns) it was read in.
class NatsLeaseStore final : public LeaseStore {
 public:
  static constexpr const char* kLeaderKey = "leader";

  // Creates the bucket (History 1, no MaxAge: the record carries the epoch and must never expire;
  // file storage; `replicas` copies) or binds to it when it already exists with the same settings.
  // InvalidArgument when it exists with other settings, or when replicas > 1 on a server that is
  // not clustered; Unavailable / DeadlineExceeded when JetStream cannot be reached.
  static Result<std::unique_ptr<NatsLeaseStore>> open(NatsConnection& connection, const std::string& bucket,
                                                      int replicas, Scheduler& scheduler);
  ~NatsLeaseStore() override;  // close()
  NatsLeaseStore(const NatsLeaseStore&) = delete;
  NatsLeaseStore& operator=(const NatsLeaseStore&) = delete;

  // A missing key reads as absent (revision 0) with the generation read at that moment (so an
  // empty re-created bucket reads as absent in its new generation); a deleted or purged one as a
  // marker at the marker's revision. A value that is not a lease record is logged once per
  // revision and given as an undecodable entry (holder unknown).
  void read(ReadDone done) override;
  // CAS by js_PublishMsg on $KV.<bucket>.leader with the expected last subject sequence (or "no
  // message" for 0; over a delete marker, the marker's revision, like kvStore_Create). With
  // `expected_generation` the stream's creation time is checked before the publish and again
  // after the ack. Gives the revision of the ack: expected + 1, or for a create the stream's last
  // sequence + 1 (above 1 after a purge). Errors as NatsKvBucket::put: Aborted = wrong last
  // sequence (someone else wrote), another generation (before or after the publish), the bucket
  // was deleted (re-created empty), or the ack is not where an honest compare-and-set lands;
  // Unavailable = not sent, or no responders (stream without a leader); DeadlineExceeded = no ack
  // (outcome unknown).
  void write(const LeaseRecord& record, std::uint64_t expected_revision,
             std::optional<std::uint64_t> expected_generation, WriteDone done) override;
  // Starts the watcher (once; a second call replaces the callback). Every Put is delivered,
  // including the current value each time the watcher is (re)created; Delete / Purge markers are
  // delivered as marker entries. The watcher follows a re-created bucket (NatsKvWatcher): the new
  // one delivers the current entry, an absent one when the new bucket is empty.
  void watch(WatchFn on_change) override;
  // Stops both threads (waiting at most about one request timeout for a call in flight) and drops
  // every callback not yet delivered. Idempotent; safe from the scheduler's thread.
  void close() override;

  // Asks the watcher for a liveness check soon (NatsKvWatcher::checkSoon). Call it from the
  // connection's reconnected callback. Cheap and safe from any thread.
  void restartWatch();

  const std::string& bucket() const;

 private:
  NatsLeaseStore(std::unique_ptr<NatsKvBucket> bucket, Scheduler& scheduler);

  // One serial lane of blocking nats.c calls with its own thread: reads and writes never queue
  // behind each other (a leader's poll is not held up by a renewal waiting for its ack).
  struct Lane {
    std::deque<std::function<void()>> jobs;
    std::thread thread;
  };
  void enqueue(Lane& lane, std::function<void()> job);
  void workerLoop(Lane& lane);
  // On the watcher's thread: maps its events to lease entries.
  void onWatchEvent(const KvWatchEvent& event);
  void deliver(LeaseEntry entry);
  Result<LeaseEntry> doRead();

  std::unique_ptr<NatsKvBucket> bucket_;
  Scheduler& scheduler_;
  // Posted results check it: after close() they do nothing, even if already queued.
  std::shared_ptr<std::atomic<bool>> alive_;
  std::atomic<std::uint64_t> last_undecodable_logged_{0};
  // The watcher's thread only: what the current nats.c watcher delivered.
  bool watch_delivered_ = false;            // an entry since its kStart
  std::uint64_t delivered_generation_ = 0;  // generation of the last delivery (0: none yet)

  std::mutex mutex_;  // guards everything below
  std::condition_variable work_cv_;
  Lane reads_;
  Lane writes_;
  bool stopping_ = false;
  std::shared_ptr<WatchFn> on_change_;
  std::unique_ptr<NatsKvWatcher> watcher_;
};

// What `hacoord status` shows about the lease, read once without creating anything.
struct LeaseSnapshot {
  LeaseEntry entry;                  // revision 0: no record (yet)
  std::int64_t created_unix_ns = 0;  // when that revision was written, server clock; 0 if none
  std::string decode_error;          // set when the stored value is not a lease record
};

// Binds to an existing bucket (never creates it) and reads the record. NotFound when the bucket
// does not exist, i.e. no node of the cluster has started yet.
Result<LeaseSnapshot> readLeaseOnce(NatsConnection& connection, const std::string& bucket);

}  // namespace hacoord
