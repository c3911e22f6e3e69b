// NatsMemberSource: the mesh's MemberSource on the members bucket HACOORD_<clusterId>_MEMBERS
// (DESIGN §6.1): publishes our record, watches and polls everyone's.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "hacoord/clock.h"
#include "hacoord/scheduler.h"
#include "hacoord/status.h"
#include "mesh/member.h"
#include "nats/nats_kv_bucket.h"

namespace hacoord {

class NatsConnection;
class NatsKvWatcher;
struct KvWatchEvent;

struct NatsMemberSourceOptions {
  std::string cluster_id;      // the bucket is HACOORD_<cluster_id>_MEMBERS
  milliseconds refresh{5000};  // re-put and poll interval; the bucket's MaxAge is 3x this
  int replicas = 1;            // copies of the bucket (> 1 needs a clustered JetStream)
};

// Keys are m.<node>, values encodeMemberRecord() JSON. The bucket has History 1 and MaxAge =
// 3 x refresh, so a node that stops re-putting (crash, partition from NATS) vanishes; it is never
// the lease bucket, which must not expire.
//
// Where events come from, all delivered on the Scheduler given to open() (never on a nats.c or
// watcher thread), and only while started:
// - an every-key NatsKvWatcher: a value that decodes to a record different from the one last
//   delivered for that node -> on_upsert; a delete / purge marker -> on_gone; a value that does not
//   decode (logged once per node and revision) -> on_gone; at each (re)sync of the watcher, the
//   nodes absent from its snapshot -> on_gone;
// - a poll of the bucket's keys (NatsKvBucket::keys) every refresh interval, because MaxAge expiry
//   emits no watch event on nats-server 2.9: a node last seen by the watcher before the poll
//   started whose key has no message any more -> on_gone (a delete marker still counts as a
//   message: deletes are the watcher's to report).
// on_gone is only said for a node that was delivered (and not gone since). Our own record is
// delivered like any other (the mesh ignores itself).
//
// Threads (src/core/runtime.h): hc-members (puts, the poll, the final delete: blocking nats.c
// calls) and hc-mbwatch (the watcher). The NatsConnection must outlive the source.
class NatsMemberSource final : public mesh::MemberSource {
 public:
  static std::string bucketName(const std::string& cluster_id) {
    return "HACOORD_" + cluster_id + "_MEMBERS";
  }
  static std::string keyOf(const std::string& node) { return "m." + node; }
  // What the bucket is made with: History 1, MaxAge 3 x refresh, file storage.
  static KvBucketSettings bucketSettings(const NatsMemberSourceOptions& options);

  // Creates the bucket or binds to it (NatsKvBucket::open: InvalidArgument when it exists with
  // other settings, or for a refresh under 100 ms / 3; Unavailable when JetStream is unreachable).
  static Result<std::unique_ptr<NatsMemberSource>> open(NatsConnection& connection,
                                                        NatsMemberSourceOptions options,
                                                        Scheduler& scheduler);
  ~NatsMemberSource() override;  // stop()
  NatsMemberSource(const NatsMemberSource&) = delete;
  NatsMemberSource& operator=(const NatsMemberSource&) = delete;

  // Starts the watcher and the poll (once; a second call is ignored).
  void start(Events events) override;
  // Puts `self` at once (on hc-members) and again every refresh interval; a later call replaces
  // the record (a node publishes under one name: a record under an earlier name is left to
  // expire). Never blocks the caller. A failed put is retried after min(refresh, 1 s).
  void publish(const mesh::MemberRecord& self) override;
  // Stops the refresh and the poll and has hc-members delete our record if we published one; no
  // event is delivered afterwards, even one already queued. Never blocks (the mesh calls it on its
  // strand, which hc-io shares): the destructor waits for the delete (at most about one request
  // timeout) and stops the watcher. Idempotent.
  void stop() override;

  // Asks the watcher for a liveness check soon (NatsKvWatcher::checkSoon): call it from the
  // connection's reconnected callback. Cheap and safe from any thread.
  void restartWatch();

  const std::string& bucket() const;
  milliseconds refresh() const { return options_.refresh; }

 private:
  // What the scheduler's tasks share; it outlives the source for tasks still queued.
  struct Delivery;

  NatsMemberSource(std::unique_ptr<NatsKvBucket> bucket, NatsMemberSourceOptions options,
                   Scheduler& scheduler);
  void workerLoop();
  void poll();
  // On the watcher's thread.
  void onWatchEvent(const KvWatchEvent& event);
  // Logs an undecodable value once per (node, revision); the watcher's thread only.
  void logUndecodable(const std::string& key, std::uint64_t revision, const std::string& why);

  std::unique_ptr<NatsKvBucket> bucket_;
  const NatsMemberSourceOptions options_;
  Scheduler& scheduler_;
  std::shared_ptr<Delivery> delivery_;

  // The watcher's thread only.
  std::optional<std::set<std::string>> snapshot_;            // nodes seen since kStart, until kSynced
  std::map<std::string, std::uint64_t> undecodable_logged_;  // key -> revision last logged

  std::mutex mutex_;  // guards everything below
  std::condition_variable cv_;
  bool started_ = false;
  bool stopping_ = false;
  std::optional<std::string> self_key_;  // m.<our node> once published
  std::string self_value_;               // its encoded record
  bool publish_now_ = false;             // publish() was called: put at once
  std::unique_ptr<NatsKvWatcher> watcher_;
  std::thread worker_;
};

}  // namespace hacoord
