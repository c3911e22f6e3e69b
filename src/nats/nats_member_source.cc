// NatsMemberSource: our record re-put on a thread of its own, everyone's watched and polled; every
// decision about what to deliver is taken on the Scheduler, against what it delivered before.
#include "nats/nats_member_source.h"

#include <algorithm>
#include <chrono>
#include <utility>
#include <vector>

#include "core/logging.h"
#include "core/runtime.h"
#include "hacoord/config.h"
#include "nats/nats_connection.h"
#include "nats/nats_kv_watcher.h"

namespace hacoord {
namespace {

using Steady = std::chrono::steady_clock;

constinit const ModuleLog kLog("nats");

constexpr std::string_view kKeyPrefix = "m.";
constexpr milliseconds kMaxPutRetry{1000};   // a failed put is retried after min(refresh, this)
constexpr milliseconds kMaxIdleWait{60000};  // the worker's longest wait (nothing to do yet)

// The node of a members key, or "" when the key is not m.<node>.
std::string nodeOf(const std::string& key) {
  if (key.size() <= kKeyPrefix.size() || key.compare(0, kKeyPrefix.size(), kKeyPrefix) != 0) return "";
  return key.substr(kKeyPrefix.size());
}

}  // namespace

// Shared by the source and every task it posts. Everything but `alive` is touched only on the
// Scheduler, so it needs no mutex.
struct NatsMemberSource::Delivery {
  std::atomic<bool> alive{true};
  std::string bucket;
  Events events;
  struct Known {
    mesh::MemberRecord record;
    Steady::time_point observed;  // when the watcher last saw its value (equal or not)
  };
  std::map<std::string, Known> delivered;  // nodes delivered by on_upsert and not gone since

  // The watcher saw `node` at `when`: a record, or nothing usable (a marker, an undecodable value).
  void observe(const std::string& node, std::optional<mesh::MemberRecord> record, Steady::time_point when) {
    if (!alive.load()) return;
    auto it = delivered.find(node);
    if (!record) {
      if (it != delivered.end()) gone(it, "its record was deleted or is unreadable");
      return;
    }
    if (it != delivered.end()) {
      it->second.observed = std::max(it->second.observed, when);
      if (it->second.record == *record) return;  // a refresh: nothing new
      kLog->debug("member {} changed (incarnation {}, meta version {})", node, record->incarnation,
                  record->meta_version);
      it->second.record = *record;
    } else {
      kLog->info("member {} is present in {} (incarnation {}, {} address(es))", node, bucket,
                 record->incarnation, record->addrs.size());
      delivered.emplace(node, Known{*record, when});
    }
    if (events.on_upsert) events.on_upsert(*record);
  }

  // A watcher's full snapshot: the nodes holding a record now.
  void synced(const std::set<std::string>& present) {
    for (auto it = delivered.begin(); it != delivered.end() && alive.load();) {
      auto next = std::next(it);
      if (present.count(it->first) == 0) gone(it, "absent when the watch resynchronised");
      it = next;
    }
  }

  // The keys listed by a poll that started at `started`. A node the watcher saw after that moment
  // may have been written after the listing: only older sightings count as vanished.
  void polled(const std::set<std::string>& present, Steady::time_point started) {
    for (auto it = delivered.begin(); it != delivered.end() && alive.load();) {
      auto next = std::next(it);
      if (present.count(it->first) == 0 && it->second.observed < started)
        gone(it, "its record vanished (expired, or the bucket was emptied)");
      it = next;
    }
  }

  void gone(std::map<std::string, Known>::iterator it, const char* why) {
    const std::string node = it->first;
    delivered.erase(it);
    kLog->info("member {} is gone from {}: {}", node, bucket, why);
    if (events.on_gone) events.on_gone(node);
  }
};

KvBucketSettings NatsMemberSource::bucketSettings(const NatsMemberSourceOptions& options) {
  KvBucketSettings s;
  s.name = bucketName(options.cluster_id);
  s.replicas = options.replicas;
  s.history = 1;                    // only the current record matters
  s.max_age = options.refresh * 3;  // DESIGN §6.1: a node that stops re-putting vanishes
  s.label = "members bucket";
  return s;
}

Result<std::unique_ptr<NatsMemberSource>> NatsMemberSource::open(NatsConnection& connection,
                                                                 NatsMemberSourceOptions options,
                                                                 Scheduler& scheduler) {
  if (!isValidId(options.cluster_id)) {
    return invalidArgument("members bucket: cluster id \"" + options.cluster_id + "\" is not [A-Za-z0-9_-]+");
  }
  // The server refuses a MaxAge under 100 ms.
  if (options.refresh * 3 < milliseconds(100)) {
    return invalidArgument("members bucket: refresh interval " + std::to_string(options.refresh.count()) +
                           " ms is too short (its MaxAge, 3x, must be at least 100 ms)");
  }
  auto kv = NatsKvBucket::open(connection, bucketSettings(options));
  if (!kv.isOk()) return kv.status();
  return std::unique_ptr<NatsMemberSource>(
      new NatsMemberSource(std::move(kv).value(), std::move(options), scheduler));
}

NatsMemberSource::NatsMemberSource(std::unique_ptr<NatsKvBucket> bucket, NatsMemberSourceOptions options,
                                   Scheduler& scheduler)
    : bucket_(std::move(bucket)),
      options_(std::move(options)),
      scheduler_(scheduler),
      delivery_(std::make_shared<Delivery>()) {
  delivery_->bucket = bucket_->name();
  worker_ = Runtime::startThread("hc-members", [this] { workerLoop(); });
}

NatsMemberSource::~NatsMemberSource() {
  stop();
  if (worker_.joinable()) worker_.join();  // its last call deletes our record
  watcher_.reset();                        // stops and joins the watcher's thread
}

const std::string& NatsMemberSource::bucket() const { return bucket_->name(); }

void NatsMemberSource::start(Events events) {
  std::lock_guard lock(mutex_);
  if (stopping_ || started_) return;
  started_ = true;
  // Set before the watcher exists: its first task is posted after this (the Scheduler runs tasks in
  // order), and nothing else reads `events` off the Scheduler.
  delivery_->events = std::move(events);
  watcher_ = std::make_unique<NatsKvWatcher>(*bucket_, NatsKvWatcher::kAllKeys, "hc-mbwatch",
                                             [this](const KvWatchEvent& event) { onWatchEvent(event); });
  cv_.notify_all();  // the worker starts polling
}

void NatsMemberSource::publish(const mesh::MemberRecord& self) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    self_key_ = keyOf(self.node);
    self_value_ = mesh::encodeMemberRecord(self);
    publish_now_ = true;
  }
  cv_.notify_all();
}

void NatsMemberSource::stop() {
  delivery_->alive.store(false);
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();  // hc-members deletes our record and ends; the destructor joins it
}

void NatsMemberSource::restartWatch() {
  std::lock_guard lock(mutex_);
  if (watcher_) watcher_->checkSoon();
}

void NatsMemberSource::workerLoop() {
  auto next_put = Steady::time_point::max();
  auto next_poll = Steady::time_point::max();
  bool polling = false;
  bool put_failing = false;
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    auto now = Steady::now();
    if (publish_now_) {
      publish_now_ = false;
      next_put = now;
    }
    if (started_ && !polling) {
      polling = true;
      next_poll = now + options_.refresh;  // the watcher's snapshot comes first
    }
    if (self_key_ && now >= next_put) {
      const std::string key = *self_key_;
      const std::string value = self_value_;
      lock.unlock();
      auto put = bucket_->putValue(key, value);
      if (!put.isOk() && !put_failing) {
        kLog->warn("cannot publish our member record {} in {}: {}; retrying", key, bucket_->name(),
                   put.status().toString());
      } else if (put.isOk() && put_failing) {
        kLog->info("published our member record {} in {} again (revision {})", key, bucket_->name(), *put);
      }
      put_failing = !put.isOk();
      lock.lock();
      next_put = Steady::now() + (put.isOk() ? options_.refresh : std::min(options_.refresh, kMaxPutRetry));
      continue;
    }
    if (polling && now >= next_poll) {
      lock.unlock();
      poll();
      lock.lock();
      next_poll = Steady::now() + options_.refresh;
      continue;
    }
    const auto wake = std::min({next_put, next_poll, now + kMaxIdleWait});
    cv_.wait_until(lock, wake, [&] { return stopping_ || publish_now_ || started_ != polling; });
  }
  // A clean departure: the others see a delete marker at once instead of waiting for the expiry.
  if (self_key_) {
    const std::string key = *self_key_;
    lock.unlock();
    Status removed = bucket_->remove(key);
    if (removed.isOk()) {
      kLog->info("deleted our member record {} from {}", key, bucket_->name());
    } else {
      kLog->warn("cannot delete our member record {} from {} ({}); it expires within {} ms", key,
                 bucket_->name(), removed.toString(), (options_.refresh * 3).count());
    }
  }
}

void NatsMemberSource::poll() {
  const auto started = Steady::now();
  auto keys = bucket_->keys();
  if (!keys.isOk()) {
    // The watcher and the next poll carry on; an outage of NATS is logged by the connection.
    kLog->debug("cannot list the keys of {}: {}", bucket_->name(), keys.status().toString());
    return;
  }
  std::set<std::string> present;
  for (const auto& key : *keys) {
    if (std::string node = nodeOf(key); !node.empty()) present.insert(std::move(node));
  }
  scheduler_.post(
      [delivery = delivery_, present = std::move(present), started] { delivery->polled(present, started); });
}

void NatsMemberSource::logUndecodable(const std::string& key, std::uint64_t revision,
                                      const std::string& why) {
  auto [it, inserted] = undecodable_logged_.emplace(key, revision);
  if (!inserted && it->second == revision) return;
  it->second = revision;
  kLog->error(
      "bucket {} key {} revision {} is not a member record ({}); treated as gone until it is replaced",
      bucket_->name(), key, revision, why);
}

void NatsMemberSource::onWatchEvent(const KvWatchEvent& event) {
  switch (event.kind) {
    case KvWatchEvent::Kind::kStart:
      snapshot_.emplace();
      return;
    case KvWatchEvent::Kind::kSynced:
      if (snapshot_) {
        scheduler_.post(
            [delivery = delivery_, present = std::move(*snapshot_)] { delivery->synced(present); });
        snapshot_.reset();
      }
      return;
    case KvWatchEvent::Kind::kEntry:
      break;
  }
  const KvEntry& e = event.entry;
  const std::string node = nodeOf(e.key);
  if (node.empty()) {
    if (!e.marker) logUndecodable(e.key, e.revision, "the key is not m.<node>");
    return;
  }
  std::optional<mesh::MemberRecord> record;
  if (!e.marker) {
    auto decoded = mesh::decodeMemberRecord(node, e.value);
    if (decoded.isOk()) {
      record = std::move(decoded).value();
      if (snapshot_) snapshot_->insert(node);
    } else {
      logUndecodable(e.key, e.revision, decoded.status().message());
    }
  }
  scheduler_.post([delivery = delivery_, node, record = std::move(record), when = Steady::now()]() mutable {
    delivery->observe(node, std::move(record), when);
  });
}

}  // namespace hacoord
