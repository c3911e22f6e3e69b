// NatsKvBucket: one JetStream KV bucket with fixed settings: open or create it, follow its
// generation, re-create it when deleted, read keys, compare-and-set writes.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "hacoord/clock.h"
#include "hacoord/status.h"

// nats.c's opaque handle, declared exactly as nats.h declares it: only src/nats/*.cc include
// nats.h, so its names and macros stay out of every other translation unit.
typedef struct __kvStore kvStore;

namespace hacoord {

class NatsConnection;

// What a bucket is made with. A bucket found with other settings is refused, never changed.
struct KvBucketSettings {
  std::string name;               // the bucket; its stream is KV_<name>
  int replicas = 1;               // copies (> 1 needs a clustered JetStream)
  int history = 1;                // values kept per key
  milliseconds max_age{0};        // the stream's MaxAge: every message expires this long after its
                                  // write (0: never; the lease bucket). The server wants >= 100 ms
  bool one_key = false;           // holds a single key: a compare-and-set lands at exactly
                                  // expected + 1, which detects a second accepted write
  std::string label = "bucket";   // how logs name it ("lease bucket")
  std::string settings_key = "";  // the config key an operator fixes on a mismatch
};

// The bucket's stream at one moment.
struct KvStreamState {
  std::uint64_t generation = 0;  // the stream's creation time (unix ns): the bucket's generation
  std::uint64_t last_seq = 0;    // the stream's last sequence: where a create lands, minus one
  std::uint64_t messages = 0;    // messages it holds (0 after a purge of the whole stream)
};

// One message of a key: a value, or a delete / purge marker.
struct KvEntry {
  std::string key;
  std::uint64_t revision = 0;
  bool marker = false;  // a delete or purge marker (then `value` is empty)
  std::string value;
  std::int64_t created_unix_ns = 0;  // when the server stored it (server clock)
};

// A read: the key's latest message (none when the key never had one in this generation) and the
// generation it was read in.
struct KvRead {
  std::optional<KvEntry> entry;
  std::uint64_t generation = 0;
};

// Generations: revisions restart at 1 when a bucket is deleted and re-created, so every read names
// the stream's creation time it came from. It is cached and read again whenever something is
// surprising (an absent key or a marker, a revision that went back or changed its timestamp, an
// error, a write naming a generation). A bucket opened with open() and found missing later is
// re-created at once with the same settings, with one warning.
//
// Thread-safe: every call blocks on nats.c (at most about one request timeout) and may run on any
// thread; callers keep them off strands. The NatsConnection must outlive the bucket.
class NatsKvBucket {
 public:
  // Binds to the bucket, or creates it when missing (file storage; settings.max_age, by default
  // none: nothing expires).
  // InvalidArgument when it exists with other settings, or when replicas > 1 on a server that is
  // not clustered; Unavailable / DeadlineExceeded when JetStream cannot be reached.
  static Result<std::unique_ptr<NatsKvBucket>> open(NatsConnection& connection, KvBucketSettings settings);
  // Binds to an existing bucket and never creates or re-creates it. NotFound when it is missing.
  static Result<std::unique_ptr<NatsKvBucket>> bind(NatsConnection& connection, const std::string& name);
  ~NatsKvBucket();
  NatsKvBucket(const NatsKvBucket&) = delete;
  NatsKvBucket& operator=(const NatsKvBucket&) = delete;

  const std::string& name() const { return settings_.name; }
  const std::string& label() const { return settings_.label; }
  NatsConnection& connection() const { return connection_; }
  kvStore* raw() const { return kv_; }
  std::uint64_t cachedGeneration() const { return generation_.load(); }

  // The key's latest message, a delete / purge marker included. A missing bucket is re-created
  // (open() only; bind(): NotFound) and reads as empty in its new generation. Unavailable when not
  // connected (without waiting) or unreachable; DeadlineExceeded when unanswered.
  Result<KvRead> get(const std::string& key);
  // Compare-and-set: writes `value` only if the key's last revision is `expected_revision` (0: no
  // message, or a delete marker, like kvStore_Create). With `expected_generation` the stream's
  // creation time is checked before the publish and again after the ack. Gives the new revision.
  // Aborted = someone else wrote, another generation (before or after), the bucket was deleted (it
  // is re-created empty), or (one_key) the ack is not where an honest compare-and-set lands;
  // Unavailable = not sent (not connected, the generation could not be read) or no responders, other
  // transport errors; DeadlineExceeded = no ack (outcome unknown). An ack whose generation cannot be
  // confirmed afterwards is Aborted: unsure counts as another generation.
  Result<std::uint64_t> put(const std::string& key, const std::string& value, std::uint64_t expected_revision,
                            std::optional<std::uint64_t> expected_generation);

  // Writes `value` whatever the key holds (no compare-and-set: a key only its owner writes, like a
  // members record) and gives the new revision. A missing bucket is re-created (open() only) and
  // the write made there. Unavailable = not sent or no responders; DeadlineExceeded = no ack.
  Result<std::uint64_t> putValue(const std::string& key, const std::string& value);
  // Puts a delete marker on `key` (kvStore_Delete: watchers see it). Errors as putValue; a missing
  // bucket is not re-created for it (nothing to delete).
  Status remove(const std::string& key);
  // The keys holding a message now, sorted: a value, or a delete / purge marker (the stream does
  // not tell them apart without reading each key); keys whose messages expired (MaxAge) or were
  // purged away are not listed. One stream-info request with a subjects filter. A missing bucket
  // is re-created (open() only) and has none. Unavailable / DeadlineExceeded as get.
  Result<std::vector<std::string>> keys();

  // The stream's state now, re-creating a missing bucket first (open() only); caches the
  // generation. `wait` bounds the first request (0: the request timeout).
  Result<KvStreamState> stream(const std::string& why, milliseconds wait = milliseconds(0));
  // The stream's state without re-creating anything: NotFound when the bucket is missing.
  Result<KvStreamState> probe(milliseconds wait);
  // A wait for probes that must not stall a caller long while a replicated stream elects a leader.
  milliseconds probeWait() const;
  // The key's revision by a direct read, or 0 when absent or unreachable (no evidence either way).
  std::uint64_t latestRevision(const std::string& key);
  // Records `generation` as the current one, saying once when it changed.
  void noteGeneration(std::uint64_t generation);

 private:
  NatsKvBucket(NatsConnection& connection, kvStore* kv, KvBucketSettings settings, std::uint64_t generation,
               bool may_create);
  std::string subject(const std::string& key) const { return "$KV." + settings_.name + "." + key; }
  // Re-creates the missing bucket with the settings it was opened with (one thread at a time).
  Status recreate(const std::string& why);
  // After an error that a deleted stream also gives (no responders, a timeout): NotFound when the
  // bucket was missing and is re-created now, OK when it exists, else the probe's error.
  Status recreateIfMissing(const std::string& why);
  // For a create that met an existing message, and for a get of a deleted key: the key's delete /
  // purge marker, or none when its latest message is a value (or it has none).
  std::optional<KvEntry> lastMarker(const std::string& key);
  // True when `revision` of `key` went back or changed its timestamp since the last get of it.
  bool surprisingRead(const std::string& key, std::uint64_t revision, std::int64_t created_ns);

  NatsConnection& connection_;
  kvStore* kv_;
  const KvBucketSettings settings_;
  const std::string stream_;  // KV_<name>
  const bool may_create_;     // open(): re-creates a deleted bucket; bind(): never
  std::atomic<std::uint64_t> generation_;
  std::mutex recreate_mutex_;        // one re-creation at a time; guards the next line
  std::string last_recreate_error_;  // the last re-creation failure logged
  std::mutex reads_mutex_;           // guards the next line
  std::unordered_map<std::string, std::pair<std::uint64_t, std::int64_t>> last_reads_;  // revision, created
};

}  // namespace hacoord
