// The lease record (DESIGN §3) and the LeaseStore interface the election writes it through.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "hacoord/clock.h"
#include "hacoord/epoch.h"
#include "hacoord/status.h"

namespace hacoord {

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

// One observed version of the record. revision 0 means the key does not exist yet. A key deleted
// by hand (hacoord never deletes it) is reported as a vacant record at the marker's revision.
struct LeaseEntry {
  std::uint64_t revision = 0;
  LeaseRecord record;
  bool exists() const { return revision != 0; }
};

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

  // Writes `record` only if the key's revision is still `expected_revision` (0: only if absent).
  // Successful writes create exactly expected_revision + 1 (the key is alone in its stream); a
  // store that sees any other outcome must report Aborted.
  // Gives the new revision, or: Aborted = someone else wrote (CAS lost, re-read);
  // Unavailable / DeadlineExceeded = outcome unknown (the write may have landed).
  virtual void write(const LeaseRecord& record, std::uint64_t expected_revision, WriteDone done) = 0;

  // Starts delivering every new revision seen by a watch (best effort: the caller also polls).
  virtual void watch(WatchFn on_change) = 0;

  // Stops the watch and drops callbacks not yet delivered. Idempotent.
  virtual void close() = 0;
};

}  // namespace hacoord
