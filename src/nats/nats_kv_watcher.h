// NatsKvWatcher: follows one key, or every key, of a NatsKvBucket on a thread of its own, and keeps
// following it through lost consumers, reconnects and a deleted and re-created bucket.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "nats/nats_kv_bucket.h"

typedef struct __kvWatcher kvWatcher;

namespace hacoord {

// What a watcher reports. Each nats.c watcher it creates (at start, and whenever it replaces a
// broken or outdated one) reports kStart, then the current message of every watched key (values
// and delete / purge markers) as kEntry, then kSynced; later kEntry events are live updates. So
// between kStart and kSynced the entries are the whole current state of the watched keys in that
// generation: a key not among them has no message there.
struct KvWatchEvent {
  enum class Kind { kStart, kEntry, kSynced };
  Kind kind = Kind::kEntry;
  std::uint64_t generation = 0;  // the bucket generation the watcher was created in
  KvEntry entry;                 // kEntry only
};

// Threading contract: `on_event` runs on the watcher's thread (named `thread_name`), one event at a
// time, in order; keep it short (copy, post to a strand). It never runs after stop() returned.
//
// Why the watcher never stays dead for long (nats.c 3.4.1 watchers are ordered consumers without
// a heartbeat; a watcher whose consumer is gone blocks forever without an error):
// - creation failures are retried with a backoff from 100 ms to 2 s;
// - an error other than a timeout from kvWatcher_Next rebuilds the watcher after that backoff;
// - liveness: after 2 s without an event, or 0.5 s after checkSoon(), the thread reads the key
//   directly (every key: the stream's last sequence); a revision the watcher has not delivered
//   that still has not come 200 ms later replaces the watcher at once;
// - generation: every 2 s, and at each creation, the stream's creation time is compared with the
//   watcher's; a missing bucket is re-created (NatsKvBucket::open), and a watcher on an old
//   stream is replaced at once.
// Replaced watchers are retired through NatsConnection::retire: stopped only once the connection
// has settled (nats.c re-creates an ordered consumer on a thread of its own after a reconnect).
class NatsKvWatcher {
 public:
  using EventFn = std::function<void(const KvWatchEvent&)>;
  static constexpr const char* kAllKeys = ">";

  // Starts watching `key` (or kAllKeys) of `bucket`, which must outlive the watcher.
  NatsKvWatcher(NatsKvBucket& bucket, std::string key, const char* thread_name, EventFn on_event);
  ~NatsKvWatcher();  // stop()
  NatsKvWatcher(const NatsKvWatcher&) = delete;
  NatsKvWatcher& operator=(const NatsKvWatcher&) = delete;

  // Asks for a liveness check soon (about 0.5 s later), and retries a failing creation at once.
  // Call it when the connection reconnected. Cheap and safe from any thread.
  void checkSoon();
  // Stops the thread (within about 0.5 s). Idempotent; never from `on_event`.
  void stop();

 private:
  void run();
  // Sleeps up to `delay`, waking early on stop() or checkSoon().
  void backoff(std::unique_lock<std::mutex>& lock, milliseconds delay);
  // The highest revision of the watched keys by a direct read; 0 when absent or unreachable.
  std::uint64_t latestRevision();

  NatsKvBucket& bucket_;
  const std::string key_;
  const std::string name_;  // <bucket>/<key> for logs
  EventFn on_event_;

  std::mutex mutex_;  // guards everything below
  std::condition_variable cv_;
  bool stopping_ = false;
  bool check_requested_ = false;
  kvWatcher* watcher_ = nullptr;  // the live watcher, so that stop() can wake it
  std::thread thread_;
};

}  // namespace hacoord
