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

// nats.c's opaque handles, declared exactly as nats.h declares them: only src/nats/*.cc include
// nats.h, so its names and macros stay out of every other translation unit.
typedef struct __kvStore kvStore;
typedef struct __kvWatcher kvWatcher;
typedef struct __kvEntry kvEntry;

namespace hacoord {

class NatsConnection;
struct NatsStreamState;

// Bucket HACOORD_<clusterId>, key `leader` (DESIGN §3). Blocking nats.c calls run on threads of
// the store's own, named as src/core/runtime.h lists them: hc-kvread (reads), hc-kvwrite (writes;
// a poll never waits behind a renewal), hc-kvwatch (the watcher); every result is posted to the
// Scheduler given to open(). The NatsConnection must outlive the store.
//
// Generations: every entry carries the creation time (unix ns) of the stream it was read from.
// It is cached and read again whenever something is surprising (an absent key or a marker, a
// revision that went back or changed its timestamp, an error, a write naming a generation). A
// bucket found missing (deleted while nodes run) is re-created at once with the settings open()
// used, with one warning; entries then carry the new generation.
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

  // Missing, deleted or purged key: revision 0, with the generation read at that moment (so an
  // empty re-created bucket reads as absent in its new generation). A value that is not a lease
  // record is logged once per revision and given as an undecodable entry (holder unknown).
  void read(ReadDone done) override;
  // CAS by js_PublishMsg on $KV.<bucket>.leader with the expected last subject sequence (or "no
  // message" for 0; over a delete marker, the marker's revision, like kvStore_Create). With
  // `expected_generation` the stream's creation time is checked before the publish and again
  // after the ack. Gives the revision of the ack: expected + 1, or for a create the stream's last
  // sequence + 1 (above 1 after a purge). Errors: Aborted = wrong last sequence (someone else
  // wrote), another generation (before or after the publish), the bucket was deleted (re-created
  // empty), or the ack is not where an honest compare-and-set lands; Unavailable = not connected,
  // no responders (stream without a leader), other transport errors; DeadlineExceeded = no ack.
  void write(const LeaseRecord& record, std::uint64_t expected_revision,
             std::optional<std::uint64_t> expected_generation, WriteDone done) override;
  // Starts the watcher thread (once; a second call replaces the callback). Every Put is delivered,
  // including the current value each time the watcher is (re)created; Delete / Purge markers are
  // delivered as marker entries. A watcher follows a re-created bucket (checked every 2 s and on
  // errors): the new one delivers the current entry, an absent one when the new bucket is empty.
  void watch(WatchFn on_change) override;
  // Stops both threads (waiting at most about one request timeout for a call in flight) and drops
  // every callback not yet delivered. Idempotent; safe from the scheduler's thread.
  void close() override;

  // Asks for a liveness check of the watcher soon (about 0.5 s later): if a direct read shows a
  // revision the watcher has not delivered, the watcher is replaced. Call it from the
  // connection's reconnected callback. nats.c itself recreates the watcher's consumer after a
  // reconnect (a single server restart needs nothing), but a watcher whose consumer was lost in
  // another way would never deliver again. The watch thread also runs this check by itself after
  // 2 s without a delivery. Cheap and safe from any thread.
  void restartWatch();

  const std::string& bucket() const { return bucket_; }

 private:
  NatsLeaseStore(NatsConnection& connection, kvStore* kv, std::string bucket, int replicas,
                 std::uint64_t generation, Scheduler& scheduler);

  // One serial lane of blocking nats.c calls with its own thread: reads and writes never queue
  // behind each other (a leader's poll is not held up by a renewal waiting for its ack).
  struct Lane {
    std::deque<std::function<void()>> jobs;
    std::thread thread;
  };
  void enqueue(Lane& lane, std::function<void()> job);
  void workerLoop(Lane& lane);
  void watchLoop();
  // Sleeps up to `delay` in the watch thread, waking early on close() or restartWatch().
  void watchBackoff(std::unique_lock<std::mutex>& lock, milliseconds delay);
  void deliverEntry(kvEntry* entry, std::uint64_t generation);
  void deliver(LeaseEntry entry);
  Result<LeaseEntry> doRead();
  Result<std::uint64_t> doWrite(const std::string& value, std::uint64_t expected_revision,
                                std::optional<std::uint64_t> expected_generation);
  // The stream's state now, re-creating the bucket first when it is missing; caches the
  // generation. `wait` bounds the first request (0: the request timeout).
  Result<NatsStreamState> currentStream(const std::string& why, milliseconds wait = milliseconds(0));
  // Re-creates the missing bucket with open()'s settings (once, whichever thread comes first).
  Status recreateBucket(const std::string& why);
  // After an error that a deleted stream also gives (no responders): NotFound when the bucket was
  // missing and is re-created now, OK when it exists, else the probe's error.
  Status recreateIfMissing(const std::string& why);
  void noteGeneration(std::uint64_t generation);
  // Worker thread only: true when `revision` went back or changed its timestamp since the last read.
  bool surprisingRead(std::uint64_t revision, std::int64_t created_ns);
  milliseconds probeWait() const;
  // For a create (expected 0) that hit an existing message: the revision of a delete / purge
  // marker, or 0 when the latest message is a live value.
  std::uint64_t tombstoneRevision();
  // The key's revision by a direct read, or 0 when absent or unreachable (watch liveness check).
  std::uint64_t latestRevision();

  NatsConnection& connection_;
  kvStore* kv_;
  const std::string bucket_;
  const std::string subject_;  // $KV.<bucket>.leader
  const std::string stream_;   // KV_<bucket>
  const int replicas_;         // what a re-created bucket gets, like the first one
  Scheduler& scheduler_;
  // Posted results check it: after close() they do nothing, even if already queued.
  std::shared_ptr<std::atomic<bool>> alive_;
  std::atomic<std::uint64_t> generation_;  // creation time of the stream last seen (unix ns)
  std::mutex recreate_mutex_;              // one re-creation at a time; guards the next line
  std::string last_recreate_error_;        // the last re-creation failure logged
  std::uint64_t last_read_revision_ = 0;   // read lane only
  std::int64_t last_read_created_ns_ = 0;  // read lane only

  std::mutex mutex_;  // guards everything below
  std::condition_variable work_cv_;
  std::condition_variable watch_cv_;
  Lane reads_;
  Lane writes_;
  bool stopping_ = false;
  bool restart_requested_ = false;
  kvWatcher* watcher_ = nullptr;  // the live watcher, so that close/restartWatch can stop it
  std::shared_ptr<WatchFn> on_change_;
  std::thread watch_thread_;
  std::atomic<std::uint64_t> last_undecodable_logged_{0};
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
