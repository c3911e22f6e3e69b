// NatsKvWatcher: one nats.c watcher at a time, checked for liveness and generation, replaced when
// broken; replaced ones retired through the connection.
#include "nats/nats_kv_watcher.h"

#include <algorithm>
#include <chrono>

#include <nats/nats.h>

#include "core/logging.h"
#include "core/runtime.h"
#include "nats/nats_connection.h"

namespace hacoord {
namespace {

constexpr milliseconds kPoll{500};      // kvWatcher_Next timeout: how often stop is checked
constexpr milliseconds kRetryMin{100};  // first wait before recreating a failed watcher
constexpr milliseconds kRetryMax{2000};
constexpr milliseconds kCheckAfter{2000};  // idle time before a liveness check; generation checks
constexpr milliseconds kCheckGrace{500};   // checkSoon() -> liveness check
constexpr milliseconds kConfirmWait{200};  // a read's revision must arrive within this

constinit const ModuleLog kLog("nats");

KvEntry entryOf(kvEntry* e) {
  const kvOperation op = kvEntry_Operation(e);
  KvEntry entry;
  entry.key = kvEntry_Key(e);
  entry.revision = kvEntry_Revision(e);
  entry.created_unix_ns = kvEntry_Created(e);
  entry.marker = op == kvOp_Delete || op == kvOp_Purge;
  if (!entry.marker) {
    entry.value.assign(static_cast<const char*>(kvEntry_Value(e)),
                       static_cast<std::size_t>(kvEntry_ValueLen(e)));
  }
  return entry;
}

}  // namespace

NatsKvWatcher::NatsKvWatcher(NatsKvBucket& bucket, std::string key, const char* thread_name, EventFn on_event)
    : bucket_(bucket),
      key_(std::move(key)),
      name_(bucket.name() + "/" + key_),
      on_event_(std::move(on_event)) {
  thread_ = Runtime::startThread(thread_name, [this] { run(); });
}

NatsKvWatcher::~NatsKvWatcher() { stop(); }

void NatsKvWatcher::stop() {
  {
    std::lock_guard lock(mutex_);
    if (!stopping_) {
      stopping_ = true;
      // Wakes a blocked kvWatcher_Next at once (it returns NATS_ILLEGAL_STATE), unless nats.c may
      // be re-creating its consumer after a reconnect (see NatsConnection::retire): then the thread
      // sees stopping_ within kPoll, and the watcher is retired.
      if (watcher_ != nullptr && bucket_.connection().settled()) kvWatcher_Stop(watcher_);
    }
  }
  cv_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void NatsKvWatcher::checkSoon() {
  std::lock_guard lock(mutex_);
  if (stopping_) return;
  // Only a request: the thread checks the watcher against a direct read a little later and
  // replaces it if it is behind. Stopping it here, right at a reconnect, would race with nats.c
  // re-creating the ordered consumer (NatsConnection::retire says why).
  check_requested_ = true;
  cv_.notify_all();
}

void NatsKvWatcher::backoff(std::unique_lock<std::mutex>& lock, milliseconds delay) {
  cv_.wait_for(lock, delay, [&] { return stopping_ || check_requested_; });
}

std::uint64_t NatsKvWatcher::latestRevision() {
  if (key_ != kAllKeys) return bucket_.latestRevision(key_);
  // Every message of the stream is some watched key's: the last sequence is the newest revision
  // (unless a purge by hand removed it: see run()).
  auto state = bucket_.probe(bucket_.probeWait());
  return state.isOk() && state->messages > 0 ? state->last_seq : 0;
}

void NatsKvWatcher::run() {
  using SteadyTime = std::chrono::steady_clock;
  NatsConnection& connection = bucket_.connection();
  milliseconds retry = kRetryMin;
  bool failing = false;
  // A revision a replaced watcher missed. If its successor has synced without it too, the message
  // is gone (a stream purge by hand can remove the newest message of an every-key watch while the
  // stream's last sequence stays): not suspected again, or the watcher would be replaced forever.
  std::uint64_t missed = 0;
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    check_requested_ = false;
    lock.unlock();
    kvWatcher* w = nullptr;
    natsStatus s = NATS_CONNECTION_DISCONNECTED;
    std::string failure = "not connected to NATS";
    std::uint64_t generation = 0;
    if (connection.connected()) {
      // The generation first: labelling a watcher with an older one only makes it replaced.
      auto stream = bucket_.stream("watch " + name_);
      if (stream.isOk()) {
        generation = stream->generation;
        s = key_ == kAllKeys ? kvStore_WatchAll(&w, bucket_.raw(), nullptr)
                             : kvStore_Watch(&w, bucket_.raw(), key_.c_str(), nullptr);
        if (s != NATS_OK) failure = natsErrorText(s);
      } else {
        s = NATS_ERR;
        failure = stream.status().toString();
      }
    }
    lock.lock();
    if (s != NATS_OK) {
      if (!failing) kLog->warn("cannot watch {}: {}; retrying", name_, failure);
      failing = true;
      lock.unlock();
      connection.collectRetired();
      lock.lock();
      backoff(lock, retry);
      retry = std::min(retry * 2, kRetryMax);
      continue;
    }
    if (failing) kLog->info("watch on {} re-established", name_);
    failing = false;
    retry = kRetryMin;
    watcher_ = w;  // if stop() came while kvStore_Watch ran, the loop below ends at once
    lock.unlock();
    on_event_({KvWatchEvent::Kind::kStart, generation, {}});
    lock.lock();

    bool broken = false;
    std::uint64_t seen = 0;     // highest revision this watcher delivered (markers included)
    std::uint64_t suspect = 0;  // a newer revision a read found that the watcher had not given
    bool synced = false;        // this watcher delivered its initial values
    auto last_activity = SteadyTime::now();
    auto check_at = SteadyTime::time_point::max();  // a liveness check asked by checkSoon()
    auto generation_check_at = SteadyTime::now() + kCheckAfter;
    while (!stopping_) {
      if (check_requested_) {
        check_requested_ = false;
        check_at = SteadyTime::now() + kCheckGrace;
      }
      lock.unlock();
      connection.collectRetired();  // stops the watchers replaced earlier once that is safe
      milliseconds wait = suspect != 0 ? kConfirmWait : kPoll;
      if (check_at != SteadyTime::time_point::max()) {
        auto until = std::chrono::duration_cast<milliseconds>(check_at - SteadyTime::now());
        wait = std::clamp(until, milliseconds(1), wait);
      }
      kvEntry* e = nullptr;
      s = kvWatcher_Next(&e, w, wait.count());
      std::string problem;
      bool stale = false;
      if (s == NATS_OK && e != nullptr) {
        KvWatchEvent event{KvWatchEvent::Kind::kEntry, generation, entryOf(e)};
        kvEntry_Destroy(e);
        seen = std::max(seen, event.entry.revision);
        if (seen >= suspect) suspect = 0;
        last_activity = SteadyTime::now();
        on_event_(std::move(event));
      } else if (s == NATS_OK) {
        // nats.c's "initial values done" marker (also when there were none).
        synced = true;
        on_event_({KvWatchEvent::Kind::kSynced, generation, {}});
      }
      if ((s == NATS_OK || s == NATS_TIMEOUT) && SteadyTime::now() >= generation_check_at) {
        generation_check_at = SteadyTime::now() + kCheckAfter;
        auto stream = bucket_.probe(bucket_.probeWait());
        const bool missing = !stream.isOk() && stream.status().code() == StatusCode::kNotFound;
        if (missing || (stream.isOk() && stream->generation != generation)) {
          if (stream.isOk()) bucket_.noteGeneration(stream->generation);
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
          missed = suspect;
          stale = true;
        } else if (now >= check_at || now - last_activity >= kCheckAfter) {
          check_at = SteadyTime::time_point::max();
          last_activity = now;
          const std::uint64_t latest = latestRevision();
          if (latest > seen && !(synced && latest == missed)) suspect = latest;
        }
      } else if (s != NATS_OK) {
        problem = natsErrorText(s);
      }
      lock.lock();
      if (!stale && (s == NATS_OK || s == NATS_TIMEOUT)) continue;
      if (!stopping_) {
        kLog->warn("watch on {} replaced: {}", name_, problem);
        broken = !stale;  // a stale watcher is replaced at once, a failing one after a pause
      }
      break;
    }
    watcher_ = nullptr;
    lock.unlock();
    // Unsubscribes once nats.c cannot be re-creating its consumer; freed a grace period later
    // (an update may be arriving right then).
    connection.retire([w] { kvWatcher_Stop(w); }, [w] { kvWatcher_Destroy(w); });
    lock.lock();
    if (broken) {
      backoff(lock, retry);
      retry = std::min(retry * 2, kRetryMax);
    }
  }
}

}  // namespace hacoord
