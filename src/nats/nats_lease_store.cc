// NatsLeaseStore: KV bucket setup, CAS writes with JetStream error codes, reads, a self-healing watcher.
#include "nats/nats_lease_store.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string_view>

#include <nats/nats.h>

#include "core/logging.h"
#include "core/runtime.h"
#include "election/lease_codec.h"
#include "nats/nats_connection.h"

namespace hacoord {

// What the store needs to know about the bucket's stream at one moment.
struct NatsStreamState {
  std::uint64_t generation = 0;  // the stream's creation time (unix ns): the bucket's generation
  std::uint64_t last_seq = 0;    // the stream's last sequence: where a create lands, minus one
};

namespace {

constexpr milliseconds kCreateTimeout{5000};  // js_CreateKeyValue, once at start-up
constexpr milliseconds kWatchPoll{500};       // kvWatcher_Next timeout: how often stop is checked
constexpr milliseconds kWatchRetryMin{100};   // first wait before recreating a failed watcher
constexpr milliseconds kWatchRetryMax{2000};
constexpr milliseconds kWatchCheckAfter{2000};  // idle time before a liveness check (watchLoop)
constexpr milliseconds kRestartGrace{500};      // restartWatch() -> liveness check
constexpr milliseconds kConfirmWait{200};       // a read's revision must arrive within this
// Probes that must not stall the worker long while a replicated stream elects a leader (its
// writes then fail with no responders for seconds, and stream info gets no answer).
constexpr milliseconds kProbeWait{250};

constinit const ModuleLog kLog("nats");

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
    kLog->error(
        "bucket {} key {} revision {} is not a lease record ({}); the holder is "
        "unknown until it is replaced",
        bucket, NatsLeaseStore::kLeaderKey, revision, decoded.status().message());
  }
  return LeaseEntry::ofUndecodable(revision);
}

// The one place that decides whether a JetStream answer means "the stream does not exist": the
// bucket was deleted (a KV or JS API call answered 404 / JSStreamNotFoundErr).
bool streamMissing(natsStatus s, jsErrCode jerr) {
  return s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr;
}

// The stream's creation time (the bucket's generation) and its last sequence. NotFound when the
// stream does not exist; `wait` bounds the request (0: the connection's request timeout).
Result<NatsStreamState> readStreamState(NatsConnection& connection, const std::string& stream,
                                        milliseconds wait = milliseconds(0)) {
  jsOptions jo;
  jsOptions_Init(&jo);
  if (wait.count() > 0) jo.Wait = wait.count();
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&si, connection.js(), stream.c_str(), &jo, &jerr);
  if (s != NATS_OK) {
    if (streamMissing(s, jerr)) return notFound("stream " + stream + " does not exist");
    return transportError(s, "cannot read stream " + stream,
                          wait.count() > 0 ? wait : connection.requestTimeout());
  }
  NatsStreamState state{static_cast<std::uint64_t>(si->Created), si->State.LastSeq};
  jsStreamInfo_Destroy(si);
  return state;
}

// Creates the bucket with the settings DESIGN §3 requires (identical settings: idempotent, so
// several nodes may race). InvalidArgument when it exists with other settings or the settings are
// impossible on this server; Unavailable / DeadlineExceeded when JetStream cannot be reached.
Status createBucket(NatsConnection& connection, const std::string& bucket, int replicas) {
  // Creating a replicated bucket is a Raft operation that took up to ~0.7 s here: it gets a
  // JetStream context with a longer wait than the per-write request timeout.
  const milliseconds create_timeout = std::max(connection.requestTimeout(), kCreateTimeout);
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
  natsStatus s = natsConnection_JetStream(&create_js, connection.raw(), &jo);
  if (s != NATS_OK) return internalError("natsConnection_JetStream: " + errorText(s));
  kvStore* kv = nullptr;
  s = js_CreateKeyValue(&kv, create_js, &cfg);
  const std::string text = s == NATS_OK ? "" : errorText(s);
  // Callers bind on the connection's own context, whose wait later calls must use.
  kvStore_Destroy(kv);
  jsCtx_Destroy(create_js);
  if (s == NATS_OK) return Status::ok();
  if (text.find("configuration is different") != std::string::npos) {
    // Someone created it with other settings between our bind and our create.
    return invalidArgument("bucket " + bucket +
                           " already exists with another configuration "
                           "(hacoord needs history 1, no max age, file storage, " +
                           std::to_string(replicas) + " replica(s)): " + text);
  }
  if (text.find("replicas > 1") != std::string::npos || s == NATS_INVALID_ARG) {
    return invalidArgument("cannot create bucket " + bucket + " with " + std::to_string(replicas) +
                           " replica(s): " + text);
  }
  return transportError(s, "cannot create bucket " + bucket, create_timeout);
}

// The bucket settings DESIGN §3 requires, checked against an existing bucket's stream; gives the
// stream's creation time (the generation) in `created`.
Status checkBucketConfig(NatsConnection& connection, const std::string& bucket, int replicas,
                         std::uint64_t* created) {
  const std::string stream = "KV_" + bucket;
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&si, connection.js(), stream.c_str(), nullptr, &jerr);
  if (s != NATS_OK) {
    return transportError(s, "cannot read the configuration of bucket " + bucket,
                          connection.requestTimeout());
  }
  *created = static_cast<std::uint64_t>(si->Created);
  const jsStreamConfig* c = si->Config;
  const bool same = c != nullptr && c->MaxMsgsPerSubject == 1 && c->MaxAge == 0 &&
                    c->Storage == js_FileStorage && c->Replicas == replicas;
  std::string found;
  if (c != nullptr) {
    found = "history " + std::to_string(c->MaxMsgsPerSubject) + ", max age " +
            std::to_string(c->MaxAge / 1000000) + " ms, " +
            (c->Storage == js_FileStorage ? "file" : "memory") + " storage, " + std::to_string(c->Replicas) +
            " replica(s)";
  }
  jsStreamInfo_Destroy(si);
  if (same) return Status::ok();
  return invalidArgument("bucket " + bucket + " already exists with another configuration (" + found +
                         "; hacoord needs history 1, no max age, file storage, " + std::to_string(replicas) +
                         " replica(s)): delete it or fix " + "election.bucketReplicas");
}

}  // namespace

Result<std::unique_ptr<NatsLeaseStore>> NatsLeaseStore::open(NatsConnection& connection,
                                                             const std::string& bucket, int replicas,
                                                             Scheduler& scheduler) {
  if (replicas < 1) {
    return invalidArgument("bucket " + bucket + ": replicas must be >= 1, got " + std::to_string(replicas));
  }
  if (!connection.connected()) {
    return unavailable("cannot open bucket " + bucket + ": not connected to NATS (" +
                       connection.serversText() + ")");
  }
  // Bind first and compare the settings ourselves; create only when the bucket is missing. A
  // second js_CreateKeyValue of an R3 bucket created a moment before sometimes got no answer at
  // all from nats-server 2.9.10 (5 s timeouts, ~1 run in 6), whereas binding answers at once.
  Status last_error = internalError("bucket " + bucket + ": not opened");
  for (int attempt = 0; attempt < 3; ++attempt) {
    kvStore* kv = nullptr;
    natsStatus s = js_KeyValue(&kv, connection.js(), bucket.c_str());
    if (s == NATS_OK) {
      std::uint64_t generation = 0;
      Status config = checkBucketConfig(connection, bucket, replicas, &generation);
      if (!config.isOk()) {
        kvStore_Destroy(kv);
        if (config.code() == StatusCode::kInvalidArgument) return config;
        last_error = config;
        continue;
      }
      kLog->info("lease bucket {} ready ({} replica(s))", bucket, replicas);
      return std::unique_ptr<NatsLeaseStore>(
          new NatsLeaseStore(connection, kv, bucket, replicas, generation, scheduler));
    }
    if (s != NATS_NOT_FOUND) {
      last_error = transportError(s, "cannot open bucket " + bucket, connection.requestTimeout());
      continue;
    }
    Status created = createBucket(connection, bucket, replicas);
    if (created.isOk()) {
      kLog->info("created lease bucket {}", bucket);
      continue;  // the next round binds
    }
    if (created.code() == StatusCode::kInvalidArgument) return created;
    last_error = created;
  }
  return last_error;
}

NatsLeaseStore::NatsLeaseStore(NatsConnection& connection, kvStore* kv, std::string bucket, int replicas,
                               std::uint64_t generation, Scheduler& scheduler)
    : connection_(connection),
      kv_(kv),
      bucket_(std::move(bucket)),
      subject_("$KV." + bucket_ + "." + kLeaderKey),
      stream_("KV_" + bucket_),
      replicas_(replicas),
      scheduler_(scheduler),
      alive_(std::make_shared<std::atomic<bool>>(true)),
      generation_(generation) {
  reads_.thread = Runtime::startThread("hc-kvread", [this] { workerLoop(reads_); });
  writes_.thread = Runtime::startThread("hc-kvwrite", [this] { workerLoop(writes_); });
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
    reads_.jobs.clear();
    writes_.jobs.clear();
    // Wakes a blocked kvWatcher_Next at once (it returns NATS_ILLEGAL_STATE), unless nats.c may
    // be re-creating its consumer after a reconnect (see NatsConnection::retire): then the watch
    // thread sees stopping_ within kWatchPoll, and the watcher is retired.
    if (watcher_ != nullptr && connection_.settled()) kvWatcher_Stop(watcher_);
  }
  work_cv_.notify_all();
  watch_cv_.notify_all();
  if (reads_.thread.joinable()) reads_.thread.join();
  if (writes_.thread.joinable()) writes_.thread.join();
  if (watch_thread_.joinable()) watch_thread_.join();
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
    auto result = doWrite(value, expected_revision, expected_generation);
    scheduler_.post([alive = alive_, done = std::move(done), result = std::move(result)]() mutable {
      if (alive->load()) done(std::move(result));
    });
  });
}

milliseconds NatsLeaseStore::probeWait() const { return std::min(connection_.requestTimeout(), kProbeWait); }

Result<NatsStreamState> NatsLeaseStore::currentStream(const std::string& why, milliseconds wait) {
  auto state = readStreamState(connection_, stream_, wait);
  if (!state.isOk() && state.status().code() == StatusCode::kNotFound) {
    if (Status s = recreateBucket(why); !s.isOk()) return s;
    state = readStreamState(connection_, stream_);
  }
  if (state.isOk()) noteGeneration(state->generation);
  return state;
}

void NatsLeaseStore::noteGeneration(std::uint64_t generation) {
  const std::uint64_t before = generation_.exchange(generation);
  if (before != generation && before != 0) {
    kLog->info(
        "lease bucket {} is a new generation (stream created at {} ns, was {}): it was "
        "deleted and re-created",
        bucket_, generation, before);
  }
}

Status NatsLeaseStore::recreateBucket(const std::string& why) {
  // One thread at a time (worker and watcher may both find it missing); the second one finds the
  // stream there and does nothing.
  std::lock_guard lock(recreate_mutex_);
  auto again = readStreamState(connection_, stream_);
  if (again.isOk()) return Status::ok();
  if (again.status().code() != StatusCode::kNotFound) return again.status();
  Status s = createBucket(connection_, bucket_, replicas_);
  if (!s.isOk()) {
    // Every poll retries: say it once per distinct reason, not every renew interval.
    if (s.toString() != last_recreate_error_) {
      last_recreate_error_ = s.toString();
      kLog->error("lease bucket {} is missing ({}) and cannot be re-created: {}; retrying", bucket_, why,
                  last_recreate_error_);
    }
    return s.code() == StatusCode::kInvalidArgument ? unavailable(s.message()) : s;
  }
  last_recreate_error_.clear();
  kLog->warn(
      "lease bucket {} was deleted while in use ({}): re-created it with the same "
      "settings (history 1, no max age, file storage, {} replica(s)); revisions "
      "restart at 1 and every node waits a full TTL before campaigning",
      bucket_, why, replicas_);
  return Status::ok();
}

Status NatsLeaseStore::recreateIfMissing(const std::string& why) {
  auto state = readStreamState(connection_, stream_, probeWait());
  if (state.isOk()) {
    noteGeneration(state->generation);
    return Status::ok();
  }
  if (state.status().code() != StatusCode::kNotFound) return state.status();
  auto now = currentStream(why);
  return now.isOk() ? notFound("bucket " + bucket_ + " was missing and has been re-created") : now.status();
}

bool NatsLeaseStore::surprisingRead(std::uint64_t revision, std::int64_t created_ns) {
  // Only the read lane's thread uses these. Revisions never go back and a revision never changes its
  // timestamp while the bucket lives: either one means another stream answered.
  const bool surprise = revision < last_read_revision_ ||
                        (revision == last_read_revision_ && created_ns != last_read_created_ns_);
  last_read_revision_ = revision;
  last_read_created_ns_ = created_ns;
  return surprise;
}

Result<LeaseEntry> NatsLeaseStore::doRead() {
  const std::string what = "read " + bucket_ + "/" + kLeaderKey;
  // While reconnecting nats.c would buffer the request and time out later: answer now instead.
  if (!connection_.connected()) return unavailable(what + ": not connected to NATS");
  // At most two rounds: the second after the bucket was found missing and re-created.
  for (int round = 0;; ++round) {
    kvEntry* e = nullptr;
    natsStatus s = kvStore_Get(&e, kv_, kLeaderKey);
    if (s == NATS_NOT_FOUND) {
      // Missing, or deleted / purged by hand: hacoord never deletes the key, so the bucket may be
      // new. The generation is read now (re-creating a missing bucket), so an empty re-created
      // bucket reads as absent in its new generation. A marker has a revision: observers see it
      // as "holder unknown" there, and a compare-and-set names it.
      auto stream = currentStream(what);
      if (!stream.isOk()) return stream.status();
      surprisingRead(0, 0);
      const std::uint64_t marker = tombstoneRevision();
      return marker != 0 ? LeaseEntry::ofMarker(marker, stream->generation)
                         : LeaseEntry{0, {}, LeaseEntryKind::kAbsent, stream->generation};
    }
    if (s != NATS_OK) {
      Status err = transportError(s, what, connection_.requestTimeout());
      // A deleted stream leaves a direct get unanswered (a timeout, measured with 2.9.10) or
      // without responders: find out, and re-create it.
      if (round == 0 && recreateIfMissing(what).code() == StatusCode::kNotFound) {
        continue;
      }
      return err;
    }
    const std::uint64_t revision = kvEntry_Revision(e);
    const std::int64_t created = kvEntry_Created(e);
    std::string value(static_cast<const char*>(kvEntry_Value(e)),
                      static_cast<std::size_t>(kvEntry_ValueLen(e)));
    kvEntry_Destroy(e);
    std::uint64_t generation = generation_.load();
    if (surprisingRead(revision, created)) {
      auto stream = currentStream(what);
      if (!stream.isOk()) return stream.status();
      generation = stream->generation;
    }
    LeaseEntry entry = decodeEntry(bucket_, revision, value, nullptr, &last_undecodable_logged_);
    entry.generation = generation;
    return entry;
  }
}

Result<std::uint64_t> NatsLeaseStore::doWrite(const std::string& value, std::uint64_t expected_revision,
                                              std::optional<std::uint64_t> expected_generation) {
  const std::string what = "write " + bucket_ + "/" + kLeaderKey;
  if (!connection_.connected()) return unavailable(what + ": not connected to NATS");
  // A campaign names the generation it saw; a create must know where it may land. Both read the
  // stream first (re-creating a missing bucket).
  std::optional<NatsStreamState> before;
  if (expected_generation || expected_revision == 0) {
    auto stream = currentStream(what);
    if (!stream.isOk()) return stream.status();
    before = *stream;
    if (expected_generation && stream->generation != *expected_generation) {
      return aborted(what + ": bucket is another generation (stream created at " +
                     std::to_string(stream->generation) + " ns, the write expected " +
                     std::to_string(*expected_generation) + "): re-read");
    }
  }
  std::uint64_t expected = expected_revision;
  // At most two rounds: the second only when a create met a delete marker.
  for (int round = 0; round < 2; ++round) {
    natsMsg* msg = nullptr;
    natsStatus s =
        natsMsg_Create(&msg, subject_.c_str(), nullptr, value.data(), static_cast<int>(value.size()));
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
      // expected + 1, and a create with no message for the key lands right after the stream's
      // last sequence (1 in a new bucket, above it after a purge). Anything else means another
      // write was accepted on the same revision: nats-server 2.9 checks the expected sequence on
      // the stream leader before replication, and a stream-leader change lets two writes pass
      // (nats-server issue 4320). Refuse to lead on such a write; the other one is first.
      const std::uint64_t honest = expected != 0 ? expected + 1 : before->last_seq + 1;
      if (revision != honest) {
        kLog->warn(
            "{}: landed at revision {} instead of {}: a concurrent write was accepted on the same "
            "revision (or the bucket holds other keys); treated as a lost race",
            what, revision, honest);
        return aborted(what + ": landed at revision " + std::to_string(revision) + " instead of " +
                       std::to_string(honest) + ": another write passed the same compare-and-set");
      }
      if (expected_generation) {
        // The stream may have been replaced between the check and the publish: the record may
        // then sit in the new stream, where nobody checked it. Refuse it (the elector treats an
        // own record it cannot adopt as holder unknown: safe). Unsure counts as replaced.
        auto after = readStreamState(connection_, stream_);
        if (!after.isOk() || after->generation != before->generation) {
          if (after.isOk()) noteGeneration(after->generation);
          return aborted(what + ": bucket is another generation after the write (" +
                         (after.isOk() ? "the stream was re-created while it was in flight"
                                       : "cannot confirm it: " + after.status().message()) +
                         "); not leading on revision " + std::to_string(revision));
        }
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
      return aborted(what + ": wrong last sequence (expected revision " + std::to_string(expected_revision) +
                     "): someone else wrote");
    }
    Status err = jerr != 0 ? unavailable(what + ": JetStream error " +
                                         std::to_string(static_cast<int>(jerr)) + ": " + errorText(s))
                           : transportError(s, what, connection_.requestTimeout());
    if (streamMissing(s, jerr) ||
        (s == NATS_NO_RESPONDERS && recreateIfMissing(what).code() == StatusCode::kNotFound)) {
      // A publish to a deleted stream finds no responders. The bucket was re-created empty:
      // the base of this write is gone, so it is lost like a race (re-read).
      if (streamMissing(s, jerr)) {
        auto recreated = currentStream(what);
        (void)recreated;  // the next call retries whatever failed here
      }
      return aborted(what + ": the bucket was deleted (re-created it empty): re-read");
    }
    return err;
  }
  return aborted(what + ": wrong last sequence (the delete marker moved on)");
}

std::uint64_t NatsLeaseStore::tombstoneRevision() {
  natsMsg* msg = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  if (js_GetLastMsg(&msg, connection_.js(), stream_.c_str(), subject_.c_str(), nullptr, &jerr) != NATS_OK) {
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
  if (!watch_thread_.joinable()) {
    watch_thread_ = Runtime::startThread("hc-kvwatch", [this] { watchLoop(); });
  }
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

void NatsLeaseStore::deliverEntry(kvEntry* e, std::uint64_t generation) {
  // A Delete / Purge marker (by hand: hacoord never deletes) means "holder unknown" there.
  LeaseEntry entry = LeaseEntry::ofMarker(kvEntry_Revision(e), generation);
  const kvOperation op = kvEntry_Operation(e);
  if (op != kvOp_Delete && op != kvOp_Purge) {
    std::string_view value(static_cast<const char*>(kvEntry_Value(e)),
                           static_cast<std::size_t>(kvEntry_ValueLen(e)));
    entry = decodeEntry(bucket_, kvEntry_Revision(e), value, nullptr, &last_undecodable_logged_);
    entry.generation = generation;
  }
  deliver(std::move(entry));
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

// One watcher at a time, never left dead for long:
// - creation failures are retried with a backoff from 100 ms to 2 s;
// - a kvWatcher_Next error other than a timeout rebuilds the watcher after that backoff;
// - liveness: nats.c 3.4.1 watchers have no heartbeat, and one whose consumer is gone (its server
//   died while our link stayed up, or the consumer was deleted) blocks forever without an error.
//   So after kWatchCheckAfter without a delivery, or kRestartGrace after restartWatch(), the thread
//   reads the key directly; if the read has a newer revision than the watcher delivered and the
//   watcher still has not delivered it kConfirmWait later, the watcher is replaced at once.
// - generation: a watcher is bound to the stream it was created on. When the bucket is deleted
//   (and re-created, by us or another node) it goes silent for good. Every kWatchCheckAfter, and
//   at each creation, the thread compares the stream's creation time with the watcher's, and
//   re-creates a missing bucket; a watcher on an old stream is replaced at once, and the new one
//   delivers the current entry: an absent key in the new generation when the bucket is empty.
void NatsLeaseStore::watchLoop() {
  using SteadyTime = std::chrono::steady_clock;
  milliseconds backoff = kWatchRetryMin;
  bool failing = false;
  std::uint64_t delivered_generation = 0;  // generation the last watcher showed (0: none yet)
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    restart_requested_ = false;
    lock.unlock();
    kvWatcher* w = nullptr;
    natsStatus s = NATS_CONNECTION_DISCONNECTED;
    std::string failure = "not connected to NATS";
    std::uint64_t generation = 0;
    if (connection_.connected()) {
      // The generation first: labelling a watcher with an older one only makes it replaced.
      auto stream = currentStream("watch " + bucket_ + "/" + kLeaderKey);
      if (stream.isOk()) {
        generation = stream->generation;
        s = kvStore_Watch(&w, kv_, kLeaderKey, nullptr);
        if (s != NATS_OK) failure = errorText(s);
      } else {
        s = NATS_ERR;
        failure = stream.status().toString();
      }
    }
    lock.lock();
    if (s != NATS_OK) {
      if (!failing) kLog->warn("cannot watch {}/{}: {}; retrying", bucket_, kLeaderKey, failure);
      failing = true;
      lock.unlock();
      connection_.collectRetired();
      lock.lock();
      watchBackoff(lock, backoff);
      backoff = std::min(backoff * 2, kWatchRetryMax);
      continue;
    }
    if (failing) kLog->info("watch on {}/{} re-established", bucket_, kLeaderKey);
    failing = false;
    backoff = kWatchRetryMin;
    watcher_ = w;  // if close() came while kvStore_Watch ran, the loop below ends at once

    bool broken = false;
    bool delivered = false;     // this watcher delivered an entry (or the absent key)
    std::uint64_t seen = 0;     // highest revision this watcher delivered (markers included)
    std::uint64_t suspect = 0;  // a newer revision a read found that the watcher had not given
    auto last_activity = SteadyTime::now();
    auto check_at = SteadyTime::time_point::max();  // a liveness check asked by restartWatch()
    auto generation_check_at = SteadyTime::now() + kWatchCheckAfter;
    while (!stopping_) {
      if (restart_requested_) {
        restart_requested_ = false;
        check_at = SteadyTime::now() + kRestartGrace;
      }
      lock.unlock();
      connection_.collectRetired();  // stops the watchers replaced earlier once that is safe
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
        deliverEntry(e, generation);
        delivered = true;
        delivered_generation = generation;
        kvEntry_Destroy(e);
      } else if (s == NATS_OK) {
        // The initial values are done. Nothing came: the key is absent. After a new generation,
        // say so (the first watcher leaves that to the reads: nothing changed for it to tell).
        if (!delivered) {
          if (delivered_generation != 0 && delivered_generation != generation) {
            deliver(LeaseEntry{0, {}, LeaseEntryKind::kAbsent, generation});
          }
          delivered_generation = generation;
        }
        delivered = true;
      }
      if ((s == NATS_OK || s == NATS_TIMEOUT) && SteadyTime::now() >= generation_check_at) {
        generation_check_at = SteadyTime::now() + kWatchCheckAfter;
        auto stream = readStreamState(connection_, stream_, probeWait());
        const bool missing = !stream.isOk() && stream.status().code() == StatusCode::kNotFound;
        if (missing || (stream.isOk() && stream->generation != generation)) {
          if (stream.isOk()) noteGeneration(stream->generation);
          problem = missing ? "the bucket was deleted" : "the bucket was re-created";
          stale = true;  // replaced at once; the next watcher re-creates a missing bucket
        }
      }
      if (stale) {
        // Already decided: replace it.
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
        kLog->warn("watch on {}/{} replaced: {}", bucket_, kLeaderKey, problem);
        broken = !stale;  // a stale watcher is replaced at once, a failing one after a pause
      }
      break;
    }
    watcher_ = nullptr;
    lock.unlock();
    // Unsubscribes once nats.c cannot be re-creating its consumer; freed a grace period later
    // (an update may be arriving right then).
    connection_.retire([w] { kvWatcher_Stop(w); }, [w] { kvWatcher_Destroy(w); });
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
    Status err =
        transportError(s, "read " + bucket + "/" + NatsLeaseStore::kLeaderKey, connection.requestTimeout());
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
