// NatsKvBucket: bucket setup and settings check, generations and re-creation, reads, CAS writes;
// nats.c and JetStream error codes are turned into ours here.
#include "nats/nats_kv_bucket.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string_view>

#include <nats/nats.h>

#include "core/logging.h"
#include "nats/nats_connection.h"

namespace hacoord {
namespace {

constexpr milliseconds kCreateTimeout{5000};  // js_CreateKeyValue of a replicated bucket
// Probes that must not stall a caller long while a replicated stream elects a leader (its writes
// then fail with no responders for seconds, and stream info gets no answer).
constexpr milliseconds kProbeWait{250};

constinit const ModuleLog kLog("nats");

// nats.c keeps the detail of the last failure per thread; read it on the thread that failed.
std::string errorText(natsStatus s) { return natsErrorText(s); }

// Maps a failed nats.c call to the code callers react to (Unavailable = retry later;
// DeadlineExceeded = no answer, a write may have landed).
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

// The one place that decides whether a JetStream answer means "the stream does not exist": the
// bucket was deleted (a KV or JS API call answered 404 / JSStreamNotFoundErr).
bool streamMissing(natsStatus s, jsErrCode jerr) {
  return s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr;
}

std::string describeSettings(const KvBucketSettings& s) {
  return "history " + std::to_string(s.history) + ", " +
         (s.max_age.count() > 0 ? "max age " + std::to_string(s.max_age.count()) + " ms"
                                : std::string("no max age")) +
         ", file storage, " + std::to_string(s.replicas) + " replica(s)";
}

std::int64_t maxAgeNanos(const KvBucketSettings& s) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(s.max_age).count();
}

// The stream's creation time and last sequence. NotFound when the stream does not exist; `wait`
// bounds the request (0: the connection's request timeout).
Result<KvStreamState> readStreamState(NatsConnection& connection, const std::string& stream,
                                      milliseconds wait) {
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
  KvStreamState state{static_cast<std::uint64_t>(si->Created), si->State.LastSeq, si->State.Msgs};
  jsStreamInfo_Destroy(si);
  return state;
}

// Creates the bucket (identical settings: idempotent, so several nodes may race). InvalidArgument
// when it exists with other settings or the settings are impossible on this server.
Status createBucket(NatsConnection& connection, const KvBucketSettings& settings) {
  // Creating a replicated bucket is a Raft operation that took up to ~0.7 s here: it gets a
  // JetStream context with a longer wait than the per-write request timeout.
  const milliseconds create_timeout = std::max(connection.requestTimeout(), kCreateTimeout);
  kvConfig cfg;
  kvConfig_Init(&cfg);
  cfg.Bucket = settings.name.c_str();
  cfg.History = static_cast<uint8_t>(settings.history);
  cfg.TTL = maxAgeNanos(settings);  // nanoseconds (nats.c passes it on as the stream's MaxAge)
  cfg.Replicas = settings.replicas;
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
    return invalidArgument("bucket " + settings.name +
                           " already exists with another configuration (hacoord needs " +
                           describeSettings(settings) + "): " + text);
  }
  if (text.find("replicas > 1") != std::string::npos || s == NATS_INVALID_ARG) {
    return invalidArgument("cannot create bucket " + settings.name + " with " +
                           std::to_string(settings.replicas) + " replica(s): " + text);
  }
  return transportError(s, "cannot create bucket " + settings.name, create_timeout);
}

// The settings checked against an existing bucket's stream; gives its creation time in `created`.
Status checkBucketConfig(NatsConnection& connection, const KvBucketSettings& settings,
                         std::uint64_t* created) {
  const std::string stream = "KV_" + settings.name;
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&si, connection.js(), stream.c_str(), nullptr, &jerr);
  if (s != NATS_OK) {
    return transportError(s, "cannot read the configuration of bucket " + settings.name,
                          connection.requestTimeout());
  }
  *created = static_cast<std::uint64_t>(si->Created);
  const jsStreamConfig* c = si->Config;
  const bool same = c != nullptr && c->MaxMsgsPerSubject == settings.history &&
                    c->MaxAge == maxAgeNanos(settings) && c->Storage == js_FileStorage &&
                    c->Replicas == settings.replicas;
  std::string found;
  if (c != nullptr) {
    found = "history " + std::to_string(c->MaxMsgsPerSubject) + ", max age " +
            std::to_string(c->MaxAge / 1000000) + " ms, " +
            (c->Storage == js_FileStorage ? "file" : "memory") + " storage, " + std::to_string(c->Replicas) +
            " replica(s)";
  }
  jsStreamInfo_Destroy(si);
  if (same) return Status::ok();
  return invalidArgument("bucket " + settings.name + " already exists with another configuration (" + found +
                         "; hacoord needs " + describeSettings(settings) + "): delete it" +
                         (settings.settings_key.empty() ? "" : " or fix " + settings.settings_key));
}

}  // namespace

Result<std::unique_ptr<NatsKvBucket>> NatsKvBucket::open(NatsConnection& connection,
                                                         KvBucketSettings settings) {
  const std::string& name = settings.name;
  if (settings.replicas < 1) {
    return invalidArgument("bucket " + name + ": replicas must be >= 1, got " +
                           std::to_string(settings.replicas));
  }
  if (settings.history < 1 || settings.history > 64) {
    return invalidArgument("bucket " + name + ": history must be 1..64, got " +
                           std::to_string(settings.history));
  }
  if (settings.max_age.count() != 0 && settings.max_age < milliseconds(100)) {
    return invalidArgument("bucket " + name + ": max age must be 0 (none) or >= 100 ms, got " +
                           std::to_string(settings.max_age.count()) + " ms");
  }
  if (!connection.connected()) {
    return unavailable("cannot open bucket " + name + ": not connected to NATS (" + connection.serversText() +
                       ")");
  }
  // Bind first and compare the settings ourselves; create only when the bucket is missing. A
  // second js_CreateKeyValue of an R3 bucket created a moment before sometimes got no answer at
  // all from nats-server 2.9.10 (5 s timeouts, ~1 run in 6), whereas binding answers at once.
  Status last_error = internalError("bucket " + name + ": not opened");
  for (int attempt = 0; attempt < 3; ++attempt) {
    kvStore* kv = nullptr;
    natsStatus s = js_KeyValue(&kv, connection.js(), name.c_str());
    if (s == NATS_OK) {
      std::uint64_t generation = 0;
      Status config = checkBucketConfig(connection, settings, &generation);
      if (!config.isOk()) {
        kvStore_Destroy(kv);
        if (config.code() == StatusCode::kInvalidArgument) return config;
        last_error = config;
        continue;
      }
      kLog->info("{} {} ready ({} replica(s))", settings.label, name, settings.replicas);
      return std::unique_ptr<NatsKvBucket>(
          new NatsKvBucket(connection, kv, std::move(settings), generation, true));
    }
    if (s != NATS_NOT_FOUND) {
      last_error = transportError(s, "cannot open bucket " + name, connection.requestTimeout());
      continue;
    }
    Status created = createBucket(connection, settings);
    if (created.isOk()) {
      kLog->info("created {} {}", settings.label, name);
      continue;  // the next round binds
    }
    if (created.code() == StatusCode::kInvalidArgument) return created;
    last_error = created;
  }
  return last_error;
}

Result<std::unique_ptr<NatsKvBucket>> NatsKvBucket::bind(NatsConnection& connection,
                                                         const std::string& name) {
  if (!connection.connected()) {
    return unavailable("cannot read bucket " + name + ": not connected to NATS (" + connection.serversText() +
                       ")");
  }
  kvStore* kv = nullptr;
  natsStatus s = js_KeyValue(&kv, connection.js(), name.c_str());
  if (s == NATS_NOT_FOUND) return notFound("bucket " + name + " does not exist");
  if (s != NATS_OK) return transportError(s, "cannot open bucket " + name, connection.requestTimeout());
  KvBucketSettings settings;
  settings.name = name;
  return std::unique_ptr<NatsKvBucket>(new NatsKvBucket(connection, kv, std::move(settings), 0, false));
}

NatsKvBucket::NatsKvBucket(NatsConnection& connection, kvStore* kv, KvBucketSettings settings,
                           std::uint64_t generation, bool may_create)
    : connection_(connection),
      kv_(kv),
      settings_(std::move(settings)),
      stream_("KV_" + settings_.name),
      may_create_(may_create),
      generation_(generation) {}

NatsKvBucket::~NatsKvBucket() { kvStore_Destroy(kv_); }

milliseconds NatsKvBucket::probeWait() const { return std::min(connection_.requestTimeout(), kProbeWait); }

Result<KvStreamState> NatsKvBucket::probe(milliseconds wait) {
  return readStreamState(connection_, stream_, wait);
}

Result<KvStreamState> NatsKvBucket::stream(const std::string& why, milliseconds wait) {
  auto state = readStreamState(connection_, stream_, wait);
  if (!state.isOk() && state.status().code() == StatusCode::kNotFound && may_create_) {
    if (Status s = recreate(why); !s.isOk()) return s;
    state = readStreamState(connection_, stream_, milliseconds(0));
  }
  if (state.isOk()) noteGeneration(state->generation);
  return state;
}

void NatsKvBucket::noteGeneration(std::uint64_t generation) {
  const std::uint64_t before = generation_.exchange(generation);
  if (before != generation && before != 0) {
    kLog->info("{} {} is a new generation (stream created at {} ns, was {}): it was deleted and re-created",
               settings_.label, settings_.name, generation, before);
  }
}

Status NatsKvBucket::recreate(const std::string& why) {
  // One thread at a time (readers, writers and watchers may all find it missing); the second one
  // finds the stream there and does nothing.
  std::lock_guard lock(recreate_mutex_);
  auto again = readStreamState(connection_, stream_, milliseconds(0));
  if (again.isOk()) return Status::ok();
  if (again.status().code() != StatusCode::kNotFound) return again.status();
  Status s = createBucket(connection_, settings_);
  if (!s.isOk()) {
    // Every caller retries: say it once per distinct reason, not every round.
    if (s.toString() != last_recreate_error_) {
      last_recreate_error_ = s.toString();
      kLog->error("{} {} is missing ({}) and cannot be re-created: {}; retrying", settings_.label,
                  settings_.name, why, last_recreate_error_);
    }
    return s.code() == StatusCode::kInvalidArgument ? unavailable(s.message()) : s;
  }
  last_recreate_error_.clear();
  kLog->warn(
      "{} {} was deleted while in use ({}): re-created it with the same settings ({}); revisions restart at "
      "1",
      settings_.label, settings_.name, why, describeSettings(settings_));
  return Status::ok();
}

Status NatsKvBucket::recreateIfMissing(const std::string& why) {
  auto state = readStreamState(connection_, stream_, probeWait());
  if (state.isOk()) {
    noteGeneration(state->generation);
    return Status::ok();
  }
  if (state.status().code() != StatusCode::kNotFound) return state.status();
  if (!may_create_) return state.status();
  auto now = stream(why);
  return now.isOk() ? notFound("bucket " + settings_.name + " was missing and has been re-created")
                    : now.status();
}

bool NatsKvBucket::surprisingRead(const std::string& key, std::uint64_t revision, std::int64_t created_ns) {
  // Revisions never go back and a revision never changes its timestamp while the bucket lives:
  // either one means another stream answered.
  std::lock_guard lock(reads_mutex_);
  auto& [last_revision, last_created] = last_reads_[key];
  const bool surprise = revision < last_revision || (revision == last_revision && created_ns != last_created);
  last_revision = revision;
  last_created = created_ns;
  return surprise;
}

Result<KvRead> NatsKvBucket::get(const std::string& key) {
  const std::string what = "read " + settings_.name + "/" + key;
  // While reconnecting nats.c would buffer the request and time out later: answer now instead.
  if (!connection_.connected()) return unavailable(what + ": not connected to NATS");
  // At most two rounds: the second after the bucket was found missing and re-created.
  for (int round = 0;; ++round) {
    kvEntry* e = nullptr;
    natsStatus s = kvStore_Get(&e, kv_, key.c_str());
    if (s == NATS_NOT_FOUND) {
      // No message, or a delete / purge marker. The generation is read now (re-creating a missing
      // bucket), so an empty re-created bucket reads as empty in its new generation.
      auto state = stream(what);
      if (!state.isOk()) return state.status();
      surprisingRead(key, 0, 0);
      return KvRead{lastMarker(key), state->generation};
    }
    if (s != NATS_OK) {
      Status err = transportError(s, what, connection_.requestTimeout());
      // A deleted stream leaves a direct get unanswered (a timeout, measured with 2.9.10) or
      // without responders: find out, and re-create it.
      if (round == 0 && recreateIfMissing(what).code() == StatusCode::kNotFound) continue;
      return err;
    }
    KvEntry entry{key, kvEntry_Revision(e), false,
                  std::string(static_cast<const char*>(kvEntry_Value(e)),
                              static_cast<std::size_t>(kvEntry_ValueLen(e))),
                  kvEntry_Created(e)};
    kvEntry_Destroy(e);
    std::uint64_t generation = generation_.load();
    if (surprisingRead(key, entry.revision, entry.created_unix_ns) || generation == 0) {
      auto state = stream(what);
      if (!state.isOk()) return state.status();
      generation = state->generation;
    }
    return KvRead{std::move(entry), generation};
  }
}

Result<std::uint64_t> NatsKvBucket::put(const std::string& key, const std::string& value,
                                        std::uint64_t expected_revision,
                                        std::optional<std::uint64_t> expected_generation) {
  const std::string what = "write " + settings_.name + "/" + key;
  if (!connection_.connected()) return unavailable(what + ": not connected to NATS");
  // A write naming a generation, and a create (it must know where it may land), read the stream
  // first (re-creating a missing bucket). A compare-and-set on an existing revision waits at most
  // probeWait() for that: a renewal must not stall a whole request timeout on stream info while a
  // replicated stream elects a leader (its publish would find no responders anyway).
  std::optional<KvStreamState> before;
  if (expected_generation || expected_revision == 0) {
    auto state = stream(what, expected_revision == 0 ? milliseconds(0) : probeWait());
    if (!state.isOk()) {
      // Nothing was sent: never "outcome unknown".
      return state.status().code() == StatusCode::kDeadlineExceeded
                 ? unavailable(what + ": not sent: " + state.status().message())
                 : state.status();
    }
    before = *state;
    if (expected_generation && state->generation != *expected_generation) {
      return aborted(what + ": bucket is another generation (stream created at " +
                     std::to_string(state->generation) + " ns, the write expected " +
                     std::to_string(*expected_generation) + "): re-read");
    }
  }
  const std::string subj = subject(key);
  std::uint64_t expected = expected_revision;
  // At most two rounds: the second only when a create met a delete marker.
  for (int round = 0; round < 2; ++round) {
    natsMsg* msg = nullptr;
    natsStatus s = natsMsg_Create(&msg, subj.c_str(), nullptr, value.data(), static_cast<int>(value.size()));
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
      if (settings_.one_key) {
        // The key is alone in its stream, so an honest compare-and-set on `expected` creates
        // expected + 1, and a create with no message for the key lands right after the stream's
        // last sequence (1 in a new bucket, above it after a purge). Anything else means another
        // write was accepted on the same revision: nats-server 2.9 checks the expected sequence
        // on the stream leader before replication, and a stream-leader change lets two writes
        // pass (nats-server issue 4320). Refuse it; the other one is first.
        const std::uint64_t honest = expected != 0 ? expected + 1 : before->last_seq + 1;
        if (revision != honest) {
          kLog->warn(
              "{}: landed at revision {} instead of {}: a concurrent write was accepted on the same "
              "revision; treated as a lost race",
              what, revision, honest);
          return aborted(what + ": landed at revision " + std::to_string(revision) + " instead of " +
                         std::to_string(honest) + ": another write passed the same compare-and-set");
        }
      }
      if (expected_generation) {
        auto after = readStreamState(connection_, stream_, milliseconds(0));
        if (!after.isOk() || after->generation != *expected_generation) {
          // The stream may have been replaced between the check and the publish: the value may
          // then sit in the new one, on a revision number that only matched by chance. Unsure
          // counts as replaced (Aborted, never "outcome unknown": the elector would adopt a write
          // of unknown outcome from its revision and epoch alone, whatever its generation).
          if (after.isOk()) noteGeneration(after->generation);
          return aborted(what + ": landed at revision " + std::to_string(revision) + " but " +
                         (after.isOk()
                              ? "the bucket is another generation (re-created while it was in flight)"
                              : "its generation cannot be confirmed (" + after.status().message() + ")") +
                         ": not taking it");
        }
      }
      return revision;
    }
    if (jerr == JSStreamWrongLastSequenceErr) {
      if (expected == 0 && round == 0) {
        // kvStore_Create semantics: a deleted key counts as absent, CAS on the marker instead.
        if (auto marker = lastMarker(key)) {
          expected = marker->revision;
          continue;
        }
      }
      return aborted(what + ": wrong last sequence (expected revision " + std::to_string(expected_revision) +
                     "): someone else wrote");
    }
    Status err = jerr != 0 ? unavailable(what + ": JetStream error " +
                                         std::to_string(static_cast<int>(jerr)) + ": " + errorText(s))
                           : transportError(s, what, connection_.requestTimeout());
    const bool missing = streamMissing(s, jerr);
    if (missing || (s == NATS_NO_RESPONDERS && recreateIfMissing(what).code() == StatusCode::kNotFound)) {
      // A publish to a deleted stream finds no responders. The bucket was re-created empty: the
      // base of this write is gone, so it is lost like a race (re-read).
      if (missing) (void)stream(what);  // the next call retries whatever failed here
      return aborted(what + ": the bucket was deleted (re-created it empty): re-read");
    }
    return err;
  }
  return aborted(what + ": wrong last sequence (the delete marker moved on)");
}

Result<std::uint64_t> NatsKvBucket::putValue(const std::string& key, const std::string& value) {
  const std::string what = "write " + settings_.name + "/" + key;
  if (!connection_.connected()) return unavailable(what + ": not connected to NATS");
  // At most two rounds: the second after the bucket was found missing and re-created.
  for (int round = 0;; ++round) {
    std::uint64_t revision = 0;
    natsStatus s = kvStore_Put(&revision, kv_, key.c_str(), value.data(), static_cast<int>(value.size()));
    if (s == NATS_OK) return revision;
    Status err = transportError(s, what, connection_.requestTimeout());
    // A publish to a deleted stream finds no responders (or times out): find out, re-create it.
    if (round == 0 && (s == NATS_NOT_FOUND || recreateIfMissing(what).code() == StatusCode::kNotFound)) {
      if (s == NATS_NOT_FOUND) (void)stream(what);
      continue;
    }
    return err;
  }
}

Status NatsKvBucket::remove(const std::string& key) {
  const std::string what = "delete " + settings_.name + "/" + key;
  if (!connection_.connected()) return unavailable(what + ": not connected to NATS");
  natsStatus s = kvStore_Delete(kv_, key.c_str());
  if (s == NATS_OK) return Status::ok();
  return transportError(s, what, connection_.requestTimeout());
}

Result<std::vector<std::string>> NatsKvBucket::keys() {
  const std::string what = "list the keys of " + settings_.name;
  if (!connection_.connected()) return unavailable(what + ": not connected to NATS");
  // One stream-info request with a subjects filter, not kvStore_Keys: that one makes an ordered
  // consumer (a subscription and a server-side consumer) per call and tears it down at once, which
  // a poll every few seconds from every node would do forever.
  const std::string prefix = "$KV." + settings_.name + ".";
  const std::string filter = prefix + ">";
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Stream.Info.SubjectsFilter = filter.c_str();
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&si, connection_.js(), stream_.c_str(), &jo, &jerr);
  if (s != NATS_OK) {
    if (streamMissing(s, jerr)) {
      auto state = stream(what);  // re-created (open() only): it has no keys
      if (!state.isOk()) return state.status();
      return std::vector<std::string>{};
    }
    return transportError(s, what, connection_.requestTimeout());
  }
  noteGeneration(static_cast<std::uint64_t>(si->Created));
  std::vector<std::string> out;
  if (const jsStreamStateSubjects* subjects = si->State.Subjects; subjects != nullptr) {
    out.reserve(static_cast<std::size_t>(subjects->Count));
    for (int i = 0; i < subjects->Count; ++i) {
      const jsStreamStateSubject& subject = subjects->List[i];
      const std::string_view name = subject.Subject != nullptr ? subject.Subject : "";
      if (subject.Msgs > 0 && name.size() > prefix.size() && name.substr(0, prefix.size()) == prefix) {
        out.emplace_back(name.substr(prefix.size()));
      }
    }
  }
  jsStreamInfo_Destroy(si);
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<KvEntry> NatsKvBucket::lastMarker(const std::string& key) {
  natsMsg* msg = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  const std::string subj = subject(key);
  if (js_GetLastMsg(&msg, connection_.js(), stream_.c_str(), subj.c_str(), nullptr, &jerr) != NATS_OK) {
    return std::nullopt;
  }
  const char* op = nullptr;
  std::optional<KvEntry> marker;
  if (natsMsgHeader_Get(msg, "KV-Operation", &op) == NATS_OK && op != nullptr &&
      (std::strcmp(op, "DEL") == 0 || std::strcmp(op, "PURGE") == 0)) {
    marker = KvEntry{key, natsMsg_GetSequence(msg), true, {}, natsMsg_GetTime(msg)};
  }
  natsMsg_Destroy(msg);
  return marker;
}

std::uint64_t NatsKvBucket::latestRevision(const std::string& key) {
  if (!connection_.connected()) return 0;
  kvEntry* e = nullptr;
  if (kvStore_Get(&e, kv_, key.c_str()) != NATS_OK) return 0;  // absent or unknown: no evidence
  const std::uint64_t revision = kvEntry_Revision(e);
  kvEntry_Destroy(e);
  return revision;
}

}  // namespace hacoord
