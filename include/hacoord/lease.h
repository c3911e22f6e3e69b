// The lease record (DESIGN §3) and the LeaseStore interface the election writes it through.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "hacoord/clock.h"
#include "hacoord/epoch.h"
#include "hacoord/status.h"

namespace hacoord {

// The longest lease a record, a floor reply or a state file may announce: config's bound on every
// duration (one day). A longer one is refused as damaged: a node that believed it would never
// campaign again after the holder became unknown (and ms -> ns would overflow near 2^63 ns).
inline constexpr milliseconds kMaxLease{86'400'000};

// The value of key `leader` in bucket HACOORD_<clusterId>, stored as JSON:
// {"holder","incarnation","epoch","leaseMs","successor"}.
struct LeaseRecord {
  std::string holder;       // nodeId of the leader; "" when vacant (planned handover)
  std::string incarnation;  // random per process start: a record is "mine" only if both match
  Epoch epoch;              // incremented by every acquire, kept by renewals and releases
  milliseconds lease{0};    // the holder's TTL: followers wait this long without a new revision
  std::string successor;    // set on a promote: others hold back for one renew interval

  bool vacant() const { return holder.empty(); }
  bool operator==(const LeaseRecord&) const = default;
};

// What the key holds at one revision.
enum class LeaseEntryKind {
  kAbsent,       // no message for the key (revision 0): never written, or the bucket is new
  kRecord,       // a lease record (held or vacant)
  kMarker,       // a delete or purge marker (by hand: hacoord never deletes the key)
  kUndecodable,  // a value that is not a lease record
};

// One observed version of the key. Only kRecord says who holds the lease; a marker, an
// undecodable value, or a key that vanished after it existed mean "holder unknown", never
// "vacant": the holder may still be inside its lease (DESIGN §3).
struct LeaseEntry {
  std::uint64_t revision = 0;
  LeaseRecord record;  // meaningful only for kRecord
  LeaseEntryKind kind = LeaseEntryKind::kAbsent;
  // Which incarnation of the bucket this came from (NATS: its stream's creation time). Revisions
  // restart when the bucket is re-created, so an equal revision (an absent key, say) seen before
  // and after a node was cut off may hide a whole history; the generation tells them apart.
  std::uint64_t generation = 0;

  bool exists() const { return revision != 0; }  // some message is there (a compare-and-set base)
  bool hasRecord() const { return kind == LeaseEntryKind::kRecord; }
  bool operator==(const LeaseEntry&) const = default;

  static LeaseEntry ofRecord(std::uint64_t revision, LeaseRecord record, std::uint64_t generation = 0) {
    return {revision, std::move(record), LeaseEntryKind::kRecord, generation};
  }
  static LeaseEntry ofMarker(std::uint64_t revision, std::uint64_t generation = 0) {
    return {revision, {}, LeaseEntryKind::kMarker, generation};
  }
  static LeaseEntry ofUndecodable(std::uint64_t revision, std::uint64_t generation = 0) {
    return {revision, {}, LeaseEntryKind::kUndecodable, generation};
  }
};
std::string_view leaseEntryKindName(LeaseEntryKind kind);

// Compare-and-set access to the lease key. Every callback runs on the Scheduler the store was
// given, never inline inside the call that started it.
class LeaseStore {
 public:
  using ReadDone = std::function<void(Result<LeaseEntry>)>;
  using WriteDone = std::function<void(Result<std::uint64_t>)>;
  using WatchFn = std::function<void(const LeaseEntry&)>;

  virtual ~LeaseStore() = default;

  // Latest known entry (may be stale when read from a replica). Unavailable when the store cannot
  // be reached.
  virtual void read(ReadDone done) = 0;

  // Writes `record` only if the key's revision is still `expected_revision` (0: only if absent;
  // a marker or undecodable value is replaced by giving its revision) and, when
  // `expected_generation` is set, only if the bucket is still that generation: a revision (0
  // above all) can come back after the bucket was re-created, and a node whose knowledge is a TTL
  // old must not win on a stream it never saw. The elector sets it on every write: a renewal or a
  // release held back behind a slow write could otherwise land on the same revision number of a
  // new generation, over another node's record.
  // Successful writes report the revision they created: with a base b >= 1 that is b + 1 (the key
  // is alone in its stream); a create lands at the stream's last sequence + 1, above 1 after a
  // purge (never assume expected_revision + 1 for a create). A store that sees a write land
  // anywhere an honest compare-and-set could not have put it must report Aborted.
  // Gives the new revision, or: Aborted = someone else wrote, or the bucket is another
  // generation (CAS lost, re-read); Unavailable / DeadlineExceeded = outcome unknown (the write
  // may have landed).
  virtual void write(const LeaseRecord& record, std::uint64_t expected_revision,
                     std::optional<std::uint64_t> expected_generation, WriteDone done) = 0;

  // Starts delivering every entry seen by a watch (best effort: the caller also polls), markers
  // and an absent key included (a bucket that was deleted and re-created restarts revisions).
  virtual void watch(WatchFn on_change) = 0;

  // Stops the watch and drops callbacks not yet delivered. Idempotent.
  virtual void close() = 0;
};

}  // namespace hacoord
