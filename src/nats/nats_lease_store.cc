// NatsLeaseStore: KV bucket setup, CAS writes with JetStream error codes, reads, a self-healing watcher.
#include "nats/nats_lease_store.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string_view>

#include "core/logging.h"
#include "election/lease_codec.h"
#include "nats/nats_connection.h"

namespace hacoord {
namespace {

constexpr milliseconds kCreateTimeout{5000};   // js_CreateKeyValue, once at start-up
constexpr milliseconds kWatchPoll{500};        // kvWatcher_Next timeout: how often stop is checked
constexpr milliseconds kWatchRetryMin{100};    // first wait before recreating a failed watcher
constexpr milliseconds kWatchRetryMax{2000};
constexpr milliseconds kWatchCheckAfter{2000};  // idle time before a liveness check (watchLoop)
constexpr milliseconds kRestartGrace{500};       // restartWatch() -> liveness check
constexpr milliseconds kConfirmWait{200};        // a read's revision must arrive within this

std::shared_ptr<spdlog::logger> logger() {
  static auto log = moduleLogger("nats");
  return log;
}

// nats.c keeps the detail of the last failure per thread; read it on the thread that failed.
std::string errorText(natsStatus s) { return natsErrorText(s); }

// Maps a failed nats.c call to the code the election reacts to (Unavailable = retry later;
// DeadlineExceeded = no answer, the write may have landed).
Status transportError(natsStatus s, const std::string& what, milliseconds timeout) {
  switch (s) {
    case NATS_TIMEOUT:
      return deadlineExceeded(what + ": no answer within " + std::to_string(timeout.count()) +
                              " ms (the outcome is unknown)");
    case NATS_NO_RESPONDERS:
      return unavailable(what + ": no responders (JetStream down, or the stream has no leader)");
    default:
      return unavailable(what + ": " + errorText(s));
  }
}

std::string clusterOf(const std::string& bucket) {
  constexpr std::string_view kPrefix = "HACOORD_";
  if (bucket.compare(0, kPrefix.size(), kPrefix) == 0) return bucket.substr(kPrefix.size());
  return bucket;
}

// A stored value that is not a lease record still has a revision the elector must CAS against.
LeaseEntry decodeEntry(const std::string& bucket, std::uint64_t revision, std::string_view value,
                       std::string* error, std::atomic<std::uint64_t>* last_logged) {
  auto decoded = decodeLease(value);
  if (decoded.isOk()) return LeaseEntry::ofRecord(revision, std::move(decoded).value());
  if (error != nullptr) *error = decoded.status().message();
  // Once per revision: the poll and the watch would otherwise repeat it every renew interval.
  // Without a tracker (readLeaseOnce) the caller reports `error` itself.
  if (last_logged != nullptr && last_logged->exchange(revision) != revision) {
    logger()->error("bucket {} key {} revision {} is not a lease record ({}); the holder is "
                    "unknown until it is replaced",
                    bucket, NatsLeaseStore::kLeaderKey, revision, decoded.status().message());
  }
  return LeaseEntry::ofUndecodable(revision);
}

// The bucket settings DESIGN §3 requires, checked against an existing bucket's stream.
Status checkBucketConfig(NatsConnection& connection, const std::string& bucket, int replicas) {
  const std::string stream = "KV_" + bucket;
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&si, connection.js(), stream.c_str(), nullptr, &jerr);
  if (s != NATS_OK) {
    return transportError(s, "cannot read the configuration of bucket " + bucket,
                          connection.requestTimeout());
  }
  const jsStreamConfig* c = si->Config;
  const bool same = c != nullptr && c->MaxMsgsPerSubject == 1 && c->MaxAge == 0 &&
                    c->Storage == js_FileStorage && c->Replicas == replicas;
  std::string found;
  if (c != nullptr) {
    found = "history " + std::to_string(c->MaxMsgsPerSubject) + ", max age " +
            std::to_string(c->MaxAge / 1000000) + " ms, " +
            (c->Storage == js_FileStorage ? "file" : "memory") + " storage, " +
            std::to_string(c->Replicas) + " replica(s)";
  }
  jsStreamInfo_Destroy(si);
  if (same) return Status::ok();
  return invalidArgument("bucket " + bucket + " already exists with another configuration (" +
                         found + "; hacoord needs history 1, no max age, file storage, " +
                         std::to_string(replicas) + " replica(s)): delete it or fix " +
                         "election.bucketReplicas");
}

}  // namespace

Result<std::unique_ptr<NatsLeaseStore>> NatsLeaseStore::open(NatsConnection& connection,
                                                             const std::string& bucket,
                                                             int replicas, Scheduler& scheduler) {
  if (replicas < 1) {
    return invalidArgument("bucket " + bucket + ": replicas must be >= 1, got " +
                           std::to_string(replicas));
  }
  if (!connection.connected()) {
    return unavailable("cannot open bucket " + bucket + ": not connected to NATS (" +
                       connection.serversText() + ")");
  }
  // Bind first and compare the settings ourselves; create only when the bucket is missing. A
  // second js_CreateKeyValue of an R3 bucket created a moment before sometimes got no answer at
  // all from nats-server 2.9.10 (5 s timeouts, ~1 run in 6), whereas binding answers at once.
  // Creating a replicated bucket is a Raft operation that took up to ~0.7 s here: it gets a
  // JetStream context with a longer wait than the per-write request timeout.
  const milliseconds create_timeout = std::max(connection.requestTimeout(), kCreateTimeout);
  Status last_error = internalError("bucket " + bucket + ": not opened");
  for (int attempt = 0; attempt < 3; ++attempt) {
    kvStore* kv = nullptr;
    natsStatus s = js_KeyValue(&kv, connection.js(), bucket.c_str());
    if (s == NATS_OK) {
      Status config = checkBucketConfig(connection, bucket, replicas);
      if (!config.isOk()) {
        kvStore_Destroy(kv);
        if (config.code() == StatusCode::kInvalidArgument) return config;
        last_error = config;
        continue;
      }
      logger()->info("lease bucket {} ready ({} replica(s))", bucket, replicas);
      return std::unique_ptr<NatsLeaseStore>(new NatsLeaseStore(connection, kv, bucket, scheduler));
    }
    if (s != NATS_NOT_FOUND) {
      last_error = transportError(s, "cannot open bucket " + bucket, connection.requestTimeout());
      continue;
    }

    kvConfig cfg;
    kvConfig_Init(&cfg);
    cfg.Bucket = bucket.c_str();
    cfg.History = 1;
    cfg.TTL = 0;  // no MaxAge, ever: the record carries the epoch (DESIGN §3)
    cfg.Replicas = replicas;
    cfg.StorageType = js_FileStorage;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = create_timeout.count();
    jsCtx* create_js = nullptr;
    s = natsConnection_JetStream(&create_js, connection.raw(), &jo);
    if (s != NATS_OK) return internalError("natsConnection_JetStream: " + errorText(s));
    s = js_CreateKeyValue(&kv, create_js, &cfg);
    const std::string text = s == NATS_OK ? "" : errorText(s);
    // The next round binds on the connection's own context, whose wait later calls must use.
    kvStore_Destroy(kv);
    jsCtx_Destroy(create_js);
    if (s == NATS_OK) {
      logger()->info("created lease bucket {}", bucket);
      continue;
    }
    if (text.find("configuration is different") != std::string::npos) {
      // Someone created it with other settings between our bind and our create.
      return invalidArgument("bucket " + bucket + " already exists with another configuration "
                             "(hacoord needs history 1, no max age, file storage, " +
                             std::to_string(replicas) + " replica(s)): " + text);
    }
    if (text.find("replicas > 1") != std::string::npos || s == NATS_INVALID_ARG) {
      return invalidArgument("cannot create bucket " + bucket + " with " +
                             std::to_string(replicas) + " replica(s): " + text);
    }
    last_error = transportError(s, "cannot create bucket " + bucket, create_timeout);
  }
  return last_error;
}

NatsLeaseStore::NatsLeaseStore(NatsConnection& connection, kvStore* kv, std::string bucket,
                               Scheduler& scheduler)
    : connection_(connection),
      kv_(kv),
      bucket_(std::move(bucket)),
      subject_("$KV." + bucket_ + "." + kLeaderKey),
      stream_("KV_" + bucket_),
      scheduler_(scheduler),
      alive_(std::make_shared<std::atomic<bool>>(true)) {
  worker_ = std::thread([this] { workerLoop(); });
}

NatsLeaseStore::~NatsLeaseStore() {
  close();
  kvStore_Destroy(kv_);
}

void NatsLeaseStore::close() {
  alive_->store(false);
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
    jobs_.clear();
    // Wakes a blocked kvWatcher_Next at once (it returns NATS_ILLEGAL_STATE).
    if (watcher_ != nullptr) kvWatcher_Stop(watcher_);
  }
  work_cv_.notify_all();
  watch_cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  if (watch_thread_.joinable()) watch_thread_.join();
}

void NatsLeaseStore::enqueue(std::function<void()> job) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;  // closed: the callback is dropped, as promised
    jobs_.push_back(std::move(job));
  }
  work_cv_.notify_one();
}

void NatsLeaseStore::workerLoop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    work_cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
    if (stopping_) return;
    auto job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    job();
    lock.lock();
  }
}

void NatsLeaseStore::read(ReadDone done) {
  enqueue([this, done = std::move(done)]() mutable {
    auto result = doRead();
    scheduler_.post([alive = alive_, done = std::move(done), result = std::move(result)]() mutable {
      if (alive->load()) done(std::move(result));
    });
  });
}

void NatsLeaseStore::write(const LeaseRecord& record, std::uint64_t expected_revision,
                           std::optional<std::uint64_t> expected_generation, WriteDone done) {
  (void)expected_generation;  // TODO(lead): checked in the store rework
  enqueue([this, value = encodeLease(record), expected_revision, done = std::move(done)]() mutable {
    auto result = doWrite(value, expected_revision);
    scheduler_.post([alive = alive_, done = std::move(done), result = std::move(result)]() mutable {
      if (alive->load()) done(std::move(result));
    });
  });
}

Result<LeaseEntry> NatsLeaseStore::doRead() {
  // While reconnecting nats.c would buffer the request and time out later: answer now instead.
  if (!connection_.connected()) return unavailable("read " + bucket_ + ": not connected to NATS");
  kvEntry* e = nullptr;
  natsStatus s = kvStore_Get(&e, kv_, kLeaderKey);
  if (s == NATS_NOT_FOUND) {
    // Missing, or deleted / purged by hand. A marker has a revision: observers see it as
    // "holder unknown" there, and a compare-and-set names it.
    const std::uint64_t marker = tombstoneRevision();
    return marker != 0 ? LeaseEntry::ofMarker(marker) : LeaseEntry{};
  }
  if (s != NATS_OK) {
    return transportError(s, "read " + bucket_ + "/" + kLeaderKey, connection_.requestTimeout());
  }
  std::string_view value(static_cast<const char*>(kvEntry_Value(e)),
                         static_cast<std::size_t>(kvEntry_ValueLen(e)));
  LeaseEntry entry =
      decodeEntry(bucket_, kvEntry_Revision(e), value, nullptr, &last_undecodable_logged_);
  kvEntry_Destroy(e);
  return entry;
}

Result<std::uint64_t> NatsLeaseStore::doWrite(const std::string& value,
                                              std::uint64_t expected_revision) {
  const std::string what = "write " + bucket_ + "/" + kLeaderKey;
  if (!connection_.connected()) return unavailable(what + ": not connected to NATS");
  std::uint64_t expected = expected_revision;
  // At most two rounds: the second only when a create met a delete marker.
  for (int round = 0; round < 2; ++round) {
    natsMsg* msg = nullptr;
    natsStatus s = natsMsg_Create(&msg, subject_.c_str(), nullptr, value.data(),
                                  static_cast<int>(value.size()));
    if (s != NATS_OK) return internalError(what + ": natsMsg_Create: " + errorText(s));
    jsPubOptions po;
    jsPubOptions_Init(&po);
    if (expected == 0) {
      po.ExpectNoMessage = true;
    } else {
      po.ExpectLastSubjectSeq = expected;
    }
    jsPubAck* ack = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    s = js_PublishMsg(&ack, connection_.js(), msg, &po, &jerr);
    natsMsg_Destroy(msg);
    if (s == NATS_OK) {
      const std::uint64_t revision = ack->Sequence;
      jsPubAck_Destroy(ack);
      // The key is alone in its stream, so an honest compare-and-set on `expected` creates
      // expected + 1 (a first create: 1). Anything else means another write was accepted on the
      // same revision: nats-server 2.9 checks the expected sequence on the stream leader before
      // replication, and a stream-leader change lets two writes pass (nats-server issue 4320).
      // Refuse to lead on such a write; the other one is the first in the log.
      if (revision != expected + 1) {
        moduleLogger("nats")->warn(
            "{}: landed at revision {} instead of {}: a concurrent write was accepted on the same "
            "revision (or the bucket holds other keys); treated as a lost race",
            what, revision, expected + 1);
        return aborted(what + ": landed at revision " + std::to_string(revision) +
                       " instead of " + std::to_string(expected + 1) +
                       ": another write passed the same compare-and-set");
      }
      return revision;
    }
    if (jerr == JSStreamWrongLastSequenceErr) {
      if (expected == 0 && round == 0) {
        // kvStore_Create semantics: a deleted key counts as absent, CAS on the marker instead.
        const std::uint64_t marker = tombstoneRevision();
        if (marker != 0) {
          expected = marker;
          continue;
        }
      }
      return aborted(what + ": wrong last sequence (expected revision " +
                     std::to_string(expected_revision) + "): someone else wrote");
    }
    if (jerr != 0) {
      return unavailable(what + ": JetStream error " + std::to_string(static_cast<int>(jerr)) +
                         ": " + errorText(s));
    }
    return transportError(s, what, connection_.requestTimeout());
  }
  return aborted(what + ": wrong last sequence (the delete marker moved on)");
}

std::uint64_t NatsLeaseStore::tombstoneRevision() {
  natsMsg* msg = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  if (js_GetLastMsg(&msg, connection_.js(), stream_.c_str(), subject_.c_str(), nullptr, &jerr) !=
      NATS_OK) {
    return 0;
  }
  const char* op = nullptr;
  std::uint64_t revision = 0;
  if (natsMsgHeader_Get(msg, "KV-Operation", &op) == NATS_OK && op != nullptr &&
      (std::strcmp(op, "DEL") == 0 || std::strcmp(op, "PURGE") == 0)) {
    revision = natsMsg_GetSequence(msg);
  }
  natsMsg_Destroy(msg);
  return revision;
}

std::uint64_t NatsLeaseStore::latestRevision() {
  if (!connection_.connected()) return 0;
  kvEntry* e = nullptr;
  if (kvStore_Get(&e, kv_, kLeaderKey) != NATS_OK) return 0;  // absent or unknown: no evidence
  const std::uint64_t revision = kvEntry_Revision(e);
  kvEntry_Destroy(e);
  return revision;
}

void NatsLeaseStore::watch(WatchFn on_change) {
  std::lock_guard lock(mutex_);
  if (stopping_) return;
  on_change_ = std::make_shared<WatchFn>(std::move(on_change));
  if (!watch_thread_.joinable()) watch_thread_ = std::thread([this] { watchLoop(); });
}

void NatsLeaseStore::restartWatch() {
  std::lock_guard lock(mutex_);
  if (stopping_) return;
  // Only a request: the watch thread checks the watcher against a direct read a little later and
  // replaces it if it is behind. Stopping it here, right at a reconnect, would race with nats.c
  // recreating the ordered consumer itself (use-after-free in jsSub_deleteConsumer, seen under
  // ASan with 3.4.1). A watch thread waiting to retry a failed creation retries at once.
  restart_requested_ = true;
  watch_cv_.notify_all();
}

void NatsLeaseStore::watchBackoff(std::unique_lock<std::mutex>& lock, milliseconds delay) {
  watch_cv_.wait_for(lock, delay, [&] { return stopping_ || restart_requested_; });
}

void NatsLeaseStore::deliverEntry(kvEntry* e) {
  // A Delete / Purge marker (by hand: hacoord never deletes) means "holder unknown" there.
  LeaseEntry entry = LeaseEntry::ofMarker(kvEntry_Revision(e));
  const kvOperation op = kvEntry_Operation(e);
  if (op != kvOp_Delete && op != kvOp_Purge) {
    std::string_view value(static_cast<const char*>(kvEntry_Value(e)),
                           static_cast<std::size_t>(kvEntry_ValueLen(e)));
    entry = decodeEntry(bucket_, kvEntry_Revision(e), value, nullptr, &last_undecodable_logged_);
  }
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

// One watcher at a time, never left dead for long:
// - creation failures are retried with a backoff from 100 ms to 2 s;
// - a kvWatcher_Next error other than a timeout rebuilds the watcher after that backoff;
// - liveness: nats.c 3.4.1 watchers have no heartbeat, and one whose consumer is gone (its server
//   died while our link stayed up, or the consumer was deleted) blocks forever without an error.
//   So after kWatchCheckAfter without a delivery, or kRestartGrace after restartWatch(), the thread
//   reads the key directly; if the read has a newer revision than the watcher delivered and the
//   watcher still has not delivered it kConfirmWait later, the watcher is replaced at once.
void NatsLeaseStore::watchLoop() {
  using SteadyTime = std::chrono::steady_clock;
  milliseconds backoff = kWatchRetryMin;
  bool failing = false;
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    restart_requested_ = false;
    lock.unlock();
    kvWatcher* w = nullptr;
    natsStatus s = NATS_CONNECTION_DISCONNECTED;
    std::string failure = "not connected to NATS";
    if (connection_.connected()) {
      s = kvStore_Watch(&w, kv_, kLeaderKey, nullptr);
      if (s != NATS_OK) failure = errorText(s);
    }
    lock.lock();
    if (s != NATS_OK) {
      if (!failing) logger()->warn("cannot watch {}/{}: {}; retrying", bucket_, kLeaderKey, failure);
      failing = true;
      watchBackoff(lock, backoff);
      backoff = std::min(backoff * 2, kWatchRetryMax);
      continue;
    }
    if (failing) logger()->info("watch on {}/{} re-established", bucket_, kLeaderKey);
    failing = false;
    backoff = kWatchRetryMin;
    watcher_ = w;
    if (stopping_) kvWatcher_Stop(w);  // close() came while kvStore_Watch ran

    bool broken = false;
    std::uint64_t seen = 0;     // highest revision this watcher delivered (markers included)
    std::uint64_t suspect = 0;  // a newer revision a read found that the watcher had not given
    auto last_activity = SteadyTime::now();
    auto check_at = SteadyTime::time_point::max();  // a liveness check asked by restartWatch()
    while (!stopping_) {
      if (restart_requested_) {
        restart_requested_ = false;
        check_at = SteadyTime::now() + kRestartGrace;
      }
      lock.unlock();
      milliseconds wait = suspect != 0 ? kConfirmWait : kWatchPoll;
      if (check_at != SteadyTime::time_point::max()) {
        auto until = std::chrono::duration_cast<milliseconds>(check_at - SteadyTime::now());
        wait = std::clamp(until, milliseconds(1), wait);
      }
      kvEntry* e = nullptr;
      s = kvWatcher_Next(&e, w, wait.count());
      std::string problem;
      bool stale = false;
      if (s == NATS_OK && e != nullptr) {
        seen = std::max<std::uint64_t>(seen, kvEntry_Revision(e));
        if (seen >= suspect) suspect = 0;
        last_activity = SteadyTime::now();
        deliverEntry(e);
        kvEntry_Destroy(e);
      } else if (s == NATS_TIMEOUT) {
        const auto now = SteadyTime::now();
        if (suspect != 0) {
          // The read's revision did not arrive within kConfirmWait (a live watcher takes ~1 ms).
          problem = "it missed revision " + std::to_string(suspect) + " (delivered up to " +
                    std::to_string(seen) + ")";
          stale = true;
        } else if (now >= check_at || now - last_activity >= kWatchCheckAfter) {
          check_at = SteadyTime::time_point::max();
          last_activity = now;
          const std::uint64_t latest = latestRevision();
          if (latest > seen) suspect = latest;
        }
      } else if (s != NATS_OK) {
        problem = errorText(s);
      }
      lock.lock();
      // NATS_OK with no entry is the "initial values done" marker: nothing to deliver.
      if (!stale && (s == NATS_OK || s == NATS_TIMEOUT)) continue;
      if (!stopping_) {
        logger()->warn("watch on {}/{} replaced: {}", bucket_, kLeaderKey, problem);
        broken = !stale;  // a stale watcher is replaced at once, a failing one after a pause
      }
      break;
    }
    watcher_ = nullptr;
    lock.unlock();
    kvWatcher_Stop(w);  // unsubscribes; freed later (an update may be arriving right now)
    connection_.destroyLater([w] { kvWatcher_Destroy(w); });
    lock.lock();
    if (broken) {
      watchBackoff(lock, backoff);
      backoff = std::min(backoff * 2, kWatchRetryMax);
    }
  }
}

Result<LeaseSnapshot> readLeaseOnce(NatsConnection& connection, const std::string& bucket) {
  if (!connection.connected()) {
    return unavailable("cannot read bucket " + bucket + ": not connected to NATS (" +
                       connection.serversText() + ")");
  }
  kvStore* kv = nullptr;
  natsStatus s = js_KeyValue(&kv, connection.js(), bucket.c_str());
  if (s == NATS_NOT_FOUND) {
    return notFound("bucket " + bucket + " does not exist: no node of cluster " + clusterOf(bucket) +
                    " has started yet");
  }
  if (s != NATS_OK) {
    return transportError(s, "cannot open bucket " + bucket, connection.requestTimeout());
  }
  LeaseSnapshot snapshot;
  kvEntry* e = nullptr;
  s = kvStore_Get(&e, kv, NatsLeaseStore::kLeaderKey);
  if (s == NATS_NOT_FOUND) {
    kvStore_Destroy(kv);
    return snapshot;
  }
  if (s != NATS_OK) {
    Status err = transportError(s, "read " + bucket + "/" + NatsLeaseStore::kLeaderKey,
                                connection.requestTimeout());
    kvStore_Destroy(kv);
    return err;
  }
  std::string_view value(static_cast<const char*>(kvEntry_Value(e)),
                         static_cast<std::size_t>(kvEntry_ValueLen(e)));
  snapshot.entry = decodeEntry(bucket, kvEntry_Revision(e), value, &snapshot.decode_error, nullptr);
  snapshot.created_unix_ns = kvEntry_Created(e);
  kvEntry_Destroy(e);
  kvStore_Destroy(kv);
  return snapshot;
}

}  // namespace hacoord
